"""Longer training runs (deselected by default; `python -m pytest -m slow`)."""

from __future__ import annotations

import pytest

from gzoo.config import RunConfig
from gzoo.evaluation import evaluate_samples
from gzoo.trainer import Trainer

pytestmark = pytest.mark.slow


def test_default_job_improves_fid_over_the_untrained_generator(tmp_path):
    """The README's embedded default (DCGAN on digits) learns: FID drops well below the start."""
    t = Trainer(RunConfig(steps=300, progress=False, sample_every=0, out=str(tmp_path / "r")))
    before = evaluate_samples(t.generate(1000), "digits", progress=False)["fid_lenet"]
    t.fit()
    after = evaluate_samples(t.generate(1000), "digits", progress=False)["fid_lenet"]
    assert after < 0.5 * before, (before, after)


def test_ring_gan_finds_several_modes(tmp_path):
    t = Trainer(RunConfig(gen="mlp", disc="mlp", data="ring", steps=2000, batch_size=256, lr=5e-4,
                          progress=False, sample_every=0, out=str(tmp_path / "r")))
    t.fit()
    res = evaluate_samples(t.generate(2500), "ring")
    assert res["modes"] >= 4 and res["high_quality"] > 0.5, res
