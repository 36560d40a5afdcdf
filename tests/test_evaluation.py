"""`gzoo eval`, periodic evaluation and the best checkpoint."""

from __future__ import annotations

import json

import pytest

from gzoo.config import RunConfig
from gzoo.errors import UsageError
from gzoo.evaluation import better, evaluate_samples
from gzoo.run import load_checkpoint
from gzoo.trainer import Trainer, train

DIGITS = dict(gen="dcgan", disc="dcgan", data="digits", batch_size=16, progress=False, sample_every=0,
              gen_opt={"ch": 8}, disc_opt={"ch": 8})


def test_eval_command_writes_eval_json(cli, tmp_path):
    train(RunConfig(**DIGITS, steps=2, ema=0.5, out=str(tmp_path / "r")))
    r = cli("eval", "--run", tmp_path / "r", "--n", "300", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for key in ("fid_lenet", "kid_lenet", "is_lenet", "precision", "recall", "density", "coverage",
                "class_coverage", "class_rkl", "classifier_accuracy"):
        assert key in res
    assert res["ema"] is True and res["step"] == 2 and res["n"] == 300
    assert json.loads((tmp_path / "r" / "eval.json").read_text())["fid_lenet"] == res["fid_lenet"]
    table = cli("eval", "--run", tmp_path / "r", "--n", "300")
    assert table.exit_code == 0 and "fid_lenet" in table.stdout


def test_eval_of_a_2d_run_reports_modes(cli, tmp_path):
    train(RunConfig(gen="mlp", disc="mlp", data="ring", steps=2, progress=False, sample_every=0, out=str(tmp_path / "r")))
    with pytest.warns(UserWarning, match="at least 2500"):
        r = cli("eval", "--run", tmp_path / "r", "--n", "100", "--json")
    res = json.loads(r.stdout)
    assert {"modes", "high_quality", "reverse_kl"} <= set(res) and res["num_modes"] == 8


def test_periodic_evaluation_keeps_the_best_checkpoint(tmp_path):
    t = train(RunConfig(gen="mlp", disc="mlp", data="ring", steps=4, eval_every=2, eval_n=200, eval_metric="high_quality",
                        progress=False, sample_every=0, out=str(tmp_path / "r")))
    best = load_checkpoint(t.run_dir / "checkpoints" / "best.pt")
    info = best["plugins"]["evaluation"]
    assert info["best_step"] in (2, 4) and best["step"] == info["best_step"]
    rows = [json.loads(x) for x in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_high_quality" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert info["best"] == max(r["eval_high_quality"] for r in evals)


def test_unknown_eval_metric_is_refused(tmp_path):
    with pytest.raises(UsageError, match="valid: modes, high_quality, reverse_kl"):
        Trainer(RunConfig(gen="mlp", disc="mlp", data="ring", steps=2, eval_every=1, progress=False,
                          out=str(tmp_path / "r"))).fit()


def test_metric_directions():
    assert better("fid_lenet", 1.0, 2.0) and not better("fid_lenet", 3.0, 2.0)
    assert better("coverage", 0.9, 0.5) and better("modes", 8, None)


def test_evaluate_samples_needs_image_shape():
    import torch

    with pytest.raises(UsageError, match="need samples"):
        evaluate_samples(torch.zeros(10, 2), "digits")
