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


#: the 2-D settings of benchmarks/bench_modes.py (seed 0), so these tests guard its table
RING = dict(gen="mlp", disc="mlp", loss="nonsaturating", data="ring", gen_opt={"hidden": 128}, disc_opt={"hidden": 128},
            steps=5000, batch_size=128, lr=1e-3, cosine=True, progress=False, sample_every=0, ckpt_every=0, log_every=0)


def test_ring_gan_finds_several_modes(tmp_path):
    t = Trainer(RunConfig(**RING, out=str(tmp_path / "r")))
    t.fit()
    res = evaluate_samples(t.generate(2500), "ring")
    assert res["modes"] >= 6 and res["high_quality"] > 0.5, res


def test_self_conditioned_ring_reaches_the_targets(tmp_path):
    """Issue targets: every mode, >= 95% high quality, reverse KL <= 0.05 (benchmarks.md)."""
    t = Trainer(RunConfig(**RING, cond="selfcond", cond_opt={"k": 50, "recluster_every": 500, "subset": 5000},
                          out=str(tmp_path / "r")))
    t.fit()
    res = evaluate_samples(t.generate(2500), "ring")
    assert res["modes"] == 8 and res["high_quality"] >= 0.95 and res["reverse_kl"] <= 0.05, res
