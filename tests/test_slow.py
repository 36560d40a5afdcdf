"""Longer training runs (deselected by default; `python -m pytest -m slow`)."""

from __future__ import annotations

import pytest

from gzoo import get_registry
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


#: run quietly; the settings are the presets that benchmarks/bench_modes.py runs (seed 0)
QUIET = dict(progress=False, sample_every=0, ckpt_every=0, log_every=0)


def _preset(name: str, tmp_path) -> RunConfig:
    return RunConfig().updated(get_registry().get_preset(name)).updated({**QUIET, "out": str(tmp_path / "r")})


def test_ring_gan_finds_several_modes(tmp_path):
    t = Trainer(_preset("gan-ring", tmp_path))
    t.fit()
    res = evaluate_samples(t.generate(2500), "ring")
    assert res["modes"] >= 6 and res["high_quality"] > 0.5, res


def test_self_conditioned_ring_reaches_the_targets(tmp_path):
    """Issue targets: every mode, >= 95% high quality, reverse KL <= 0.05 (benchmarks.md),
    with nothing but ``gzoo run --preset selfcond-ring``."""
    t = Trainer(_preset("selfcond-ring", tmp_path))
    t.fit()
    res = evaluate_samples(t.generate(2500), "ring")
    assert res["modes"] == 8 and res["high_quality"] >= 0.95 and res["reverse_kl"] <= 0.05, res
