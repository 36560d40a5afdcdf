"""`gzoo eval`, evaluate_generator, periodic evaluation and the best checkpoint."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import pytest
import torch

import gzoo
from gzoo.config import RunConfig
from gzoo.datasets import TensorGanDataset
from gzoo.errors import UsageError
from gzoo.evaluation import (
    IMAGE_METRICS,
    better,
    classifier_for,
    evaluate_generator,
    evaluate_run,
    evaluate_samples,
    format_table,
    metric_names,
    min_samples,
)
from gzoo.metrics import features as feat
from gzoo.run import load_checkpoint
from gzoo.trainer import Trainer, train

DIGITS = dict(gen="dcgan", disc="dcgan", data="digits", batch_size=16, progress=False, sample_every=0,
              gen_opt={"ch": 8}, disc_opt={"ch": 8})
RING = dict(gen="mlp", disc="mlp", data="ring", progress=False, sample_every=0)


TINY = feat.TrainSettings(max_steps=15, batch_size=64)


@pytest.fixture(scope="module")
def trained_cache(tmp_path_factory):
    """The digits classifiers (28 and 16 px, tiny settings), trained once for this module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GZOO_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        for res in (28, 16):
            classifier_for("digits", res, settings=TINY, progress=False)
        yield feat.cache_dir()
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def tiny_classifier(monkeypatch, trained_cache):
    """Default-settings classifiers are the tiny ones, already in this test's GZOO_CACHE."""
    monkeypatch.setattr(feat, "DEFAULT_SETTINGS", TINY)
    shutil.copytree(trained_cache, feat.cache_dir(), dirs_exist_ok=True)


def test_eval_command_writes_eval_json(cli, tmp_path):
    train(RunConfig(**DIGITS, steps=2, ema=0.5, out=str(tmp_path / "r")))
    r = cli("eval", "--run", tmp_path / "r", "--n", "300", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for key in (*IMAGE_METRICS, "kid_lenet_std", "classifier_accuracy"):
        assert isinstance(res[key], float), key
    assert res["ema"] is True and res["step"] == 2 and res["n"] == 300 and res["n_real"] == 300
    assert json.loads((tmp_path / "r" / "eval.json").read_text())["fid_lenet"] == res["fid_lenet"]
    table = cli("eval", "--run", tmp_path / "r", "--n", "300")
    assert table.exit_code == 0 and "fid_lenet" in table.stdout and "not comparable with Inception" in table.stdout


def test_evaluate_run_picks_metrics_and_checkpoint(tmp_path):
    train(RunConfig(**DIGITS, steps=2, out=str(tmp_path / "r")))
    res = evaluate_run(tmp_path / "r", n=200, metrics=["fid_lenet", "coverage"], ema=True, progress=False)
    assert res["ema"] is False  # no EMA weights in this run
    assert {"fid_lenet", "coverage"} <= set(res) and not {"kid_lenet", "precision", "is_lenet"} & set(res)
    assert res["checkpoint"].endswith("last.pt")
    with pytest.raises(UsageError, match="valid: fid_lenet"):
        evaluate_run(tmp_path / "r", n=200, metrics=["modes"], progress=False)


def test_evaluate_generator_takes_samples_or_a_function():
    real = gzoo.create("dataset", "digits", resolution=28).x
    res = evaluate_generator(real, "digits", 28, n=400, progress=False)
    assert res["n"] == 400 and res["fid_lenet"] < 20 and res["coverage"] > 0.5

    def noise(n, seed=0):
        return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1

    bad = evaluate_generator(noise, "digits", 28, n=400, progress=False)
    assert bad["fid_lenet"] > 5 * res["fid_lenet"] and bad["coverage"] < res["coverage"]
    assert evaluate_generator(noise, "digits", 28, n=400, progress=False)["fid_lenet"] == bad["fid_lenet"]
    with pytest.raises(UsageError, match="expected 32 px"):
        evaluate_generator(noise, "digits", 32, n=10, progress=False)
    with pytest.raises(UsageError, match="asked for 400 samples"):
        evaluate_generator(real[:10], "digits", n=400, progress=False)


def test_evaluate_generator_on_points_reports_modes():
    from gzoo.datasets import ring_modes

    pts = ring_modes().float().repeat(400, 1)  # (3200, 2) exactly on the 8 modes
    res = evaluate_generator(lambda n: pts[:n], "ring", n=3200)
    assert res["modes"] == 8 and res["num_modes"] == 8 and res["high_quality"] == 1.0
    assert res["reverse_kl"] == pytest.approx(0.0, abs=1e-9)


def test_evaluate_stacked_reports_modes_and_image_metrics():
    data = gzoo.create("dataset", "stacked-digits", resolution=16)
    res = evaluate_generator(data.get_batch(torch.arange(1000))[0], "stacked-digits", 16, n=1000, progress=False)
    assert {"fid_lenet", "kid_lenet", "precision", "recall", "density", "coverage", "modes", "reverse_kl"} <= set(res)
    assert "is_lenet" not in res and res["num_modes"] == 1000 and 0 < res["modes"] <= 1000


def test_eval_of_a_2d_run_reports_modes(cli, tmp_path):
    train(RunConfig(**RING, steps=2, out=str(tmp_path / "r")))
    with pytest.warns(UserWarning, match="at least 2500"):
        r = cli("eval", "--run", tmp_path / "r", "--n", "100", "--json")
    res = json.loads(r.stdout)
    assert {"modes", "high_quality", "reverse_kl"} <= set(res) and res["num_modes"] == 8


def test_periodic_evaluation_keeps_the_best_checkpoint(tmp_path):
    with pytest.warns(UserWarning, match="at least 2500"):
        t = train(RunConfig(**RING, steps=4, eval_every=2, eval_n=200, eval_metric="high_quality",
                            out=str(tmp_path / "r")))
    best = load_checkpoint(t.run_dir / "checkpoints" / "best.pt")
    info = best["plugins"]["evaluation"]
    assert info["best_step"] in (2, 4) and best["step"] == info["best_step"] and info["metric"] == "high_quality"
    rows = [json.loads(x) for x in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_high_quality" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert info["best"] == max(r["eval_high_quality"] for r in evals)
    last = load_checkpoint(t.run_dir / "checkpoints" / "last.pt")
    assert last["plugins"]["evaluation"] == info  # the best value travels with every checkpoint


def test_periodic_evaluation_on_images_with_fid(tmp_path):
    t = train(RunConfig(**DIGITS, steps=2, eval_every=1, eval_n=100, out=str(tmp_path / "r")))
    rows = [json.loads(x) for x in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    fids = {r["step"]: r["eval_fid_lenet"] for r in rows if "eval_fid_lenet" in r}
    assert sorted(fids) == [1, 2]
    info = load_checkpoint(t.run_dir / "checkpoints" / "best.pt")["plugins"]["evaluation"]
    assert info["best"] == min(fids.values()) and info["metric"] == "fid_lenet"


def test_unknown_eval_metric_is_refused_and_the_default_fits_the_data(tmp_path):
    with pytest.raises(UsageError, match="valid: modes, high_quality, reverse_kl"):
        Trainer(RunConfig(**RING, steps=2, eval_every=1, eval_metric="fid_lenet", out=str(tmp_path / "r")))
    t = train(RunConfig(**RING, steps=2, eval_every=2, eval_n=2500, out=str(tmp_path / "d")))
    state = load_checkpoint(t.run_dir / "checkpoints" / "best.pt")
    assert state["plugins"]["evaluation"]["metric"] == "modes"  # the first metric of the ring's family


def test_metric_directions():
    assert better("fid_lenet", 1.0, 2.0) and not better("fid_lenet", 3.0, 2.0)
    assert better("coverage", 0.9, 0.5) and better("modes", 8, None) and better("reverse_kl", 0.1, math.nan)
    assert not better("fid_lenet", math.nan, 2.0)


def test_evaluate_samples_checks_shapes_and_metric_names():
    with pytest.raises(UsageError, match="need samples"):
        evaluate_samples(torch.zeros(10, 2), "digits")
    with pytest.raises(UsageError, match="do not match"):
        evaluate_samples(torch.zeros(10, 3, 28, 28), "digits")
    with pytest.raises(UsageError, match="'fid' not measured"):
        evaluate_samples(torch.zeros(10, 1, 28, 28), "digits", metrics=["fid"])
    with pytest.raises(UsageError, match="not measured on 'ring'"):
        evaluate_samples(torch.zeros(10, 2), "ring", metrics=["fid_inception"])


# -- the fewest samples the metrics can be computed from ------------------------------------------

CLI_RUNS = {
    "digits": ["--gen", "dcgan", "--disc", "dcgan", "--data", "digits", "--gen-opt", "ch=8", "--disc-opt", "ch=8"],
    "ring": ["--gen", "mlp", "--disc", "mlp", "--data", "ring", "--gen-opt", "hidden=16", "--disc-opt", "hidden=16"],
}


@pytest.mark.parametrize("data,minimum,why", [
    ("digits", 6, "precision/recall/density/coverage use each sample's 5 nearest neighbours among the others"),
    ("ring", 8, "modes and reverse_kl need a sample per mode, and 'ring' has 8"),
])
def test_eval_with_too_few_samples_is_one_line_exit_2(cli, tmp_path, data, minimum, why):
    run = tmp_path / "r"
    r = cli("run", *CLI_RUNS[data], "--steps", "1", "--batch-size", "8", "--sample-every", "0", "--quiet",
            "--out", run)
    assert r.exit_code == 0, r.output
    for n in ("5", str(minimum - 1)):
        r = cli("eval", "--run", run, "--n", n)
        assert r.exit_code == 2 and "Traceback" not in r.output and r.stdout == ""
        assert r.stderr.splitlines() == [f"Error: gzoo eval needs --n >= {minimum} for {data!r} ({why}); got {n}"]
    assert not (run / "eval.json").exists()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="mode metrics from")  # ring: fewer than 2500 samples
        r = cli("eval", "--run", run, "--n", str(minimum), "--json")  # the minimum itself works
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["n"] == minimum and all(res[m] is not None for m in metric_names(data))
    if data == "digits":
        assert res["n_real"] == minimum and all(math.isfinite(res[m]) for m in IMAGE_METRICS)


def test_min_samples_depends_on_the_metrics():
    assert min_samples("digits")[0] == 6 and min_samples("stacked-digits")[0] == 1000
    assert min_samples("digits", ["fid_lenet", "kid_lenet"]) == (2, "FID fits a covariance; "
                                                                   "KID's unbiased estimate needs 2 samples per set")
    assert min_samples("digits", ["is_lenet", "class_coverage"])[0] == 1
    assert min_samples("stacked-digits", ["fid_lenet", "coverage"])[0] == 6
    assert min_samples("grid")[0] == 25 and min_samples("ring", ["high_quality"])[0] == 1


@pytest.mark.parametrize("data,metrics,minimum", [
    ("digits", None, 6), ("digits", ["fid_lenet", "kid_lenet"], 2), ("stacked-digits", ["coverage"], 6),
    ("ring", None, 8), ("grid", None, 25),
])
def test_evaluate_samples_works_from_the_minimum(data, metrics, minimum):
    if data in ("ring", "grid"):
        from gzoo.datasets import MIXTURES

        x = MIXTURES[data][0]().float().repeat(4, 1)
    else:
        x = gzoo.create("dataset", data, resolution=16).get_batch(torch.arange(minimum))[0]
    with pytest.raises(UsageError, match=rf"needs n >= {minimum} for '{data}'.*; got {minimum - 1}$"):
        evaluate_samples(x[: minimum - 1], data, metrics=metrics, progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="mode metrics from")
        res = evaluate_samples(x[:minimum], data, metrics=metrics, progress=False)
    wanted = metrics or metric_names(data)
    assert all(math.isfinite(res[m]) for m in wanted), res
    if data in ("ring", "grid"):
        assert res["modes"] == minimum and res["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_too_small_a_real_dataset_is_a_clear_error(register_plugin):
    class Plugin:
        @gzoo.hookimpl
        def gzoo_register_components(self, register):
            register("dataset", "four", lambda *, resolution=8, split="train": TensorGanDataset(
                torch.zeros(4, 1, resolution, resolution), torch.arange(4), name="four", num_classes=4))

    register_plugin(Plugin(), "four-plugin")
    with pytest.raises(UsageError, match=r"dataset 'four' has 4 images, but the metrics need 6 real ones \(precision"):
        evaluate_samples(torch.zeros(10, 1, 8, 8), "four", progress=False)


def test_periodic_evaluation_that_cannot_work_is_refused_before_training(tmp_path, register_plugin):
    class Plugin:
        @gzoo.hookimpl
        def gzoo_register_components(self, register):
            register("dataset", "blank", lambda *, resolution=28: TensorGanDataset(
                torch.zeros(40, 1, resolution, resolution), None, name="blank"))

    register_plugin(Plugin(), "blank-plugin")
    cases = [
        (dict(**RING, eval_metric="modes", eval_n=5), r"periodic evaluation needs --eval-n >= 8 for 'ring' .*; got 5$"),
        (dict(**DIGITS, eval_n=5), r"needs --eval-n >= 6 for 'digits' \(precision/recall.*; got 5$"),
        (dict(**{**DIGITS, "data": "blank"}, eval_n=10), r"--eval-every: no metrics measure dataset 'blank' \(shape \(1, 28, 28\), no labels\).*drop --eval-every$"),
        (dict(**{**DIGITS, "gen": "mlp", "disc": "mlp", "gen_opt": {}, "disc_opt": {}, "data_opt": {"resolution": 4}},
              eval_n=10),
         r"measures 8-64 px images .*; 'digits' has shape \(1, 4, 4\)"),
    ]
    for i, (config, message) in enumerate(cases):
        out = tmp_path / f"r{i}"
        with pytest.raises(UsageError, match=message):
            train(RunConfig(**config, steps=2, eval_every=1, out=str(out)))
        assert not (out / "checkpoints").exists()


def test_format_table_shows_directions():
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(format_table({"dataset": "digits", "n": 10, "fid_lenet": 1.5, "coverage": 0.5, "step": 3}))
    text = console.export_text()
    assert "fid_lenet" in text and "lower" in text and "higher" in text and "step 3" in text


# -- metric families: datasets say how they are measured ---------------------------------------------


class Moons(TensorGanDataset):
    """Two interleaved half circles: a plugin's 2-D dataset (``measured_by`` set per instance)."""

    def __init__(self, *, n: int = 3000, split: str = "train", family: str = "none"):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        t = torch.rand(n, generator=g) * math.pi
        y = torch.randint(2, (n,), generator=g)
        x = torch.stack([t.cos() - y, t.sin() * (1 - 2 * y) + 0.5 * y], 1)
        super().__init__(x, y, name="moons", num_classes=2, measured_by=None if family == "none" else family)


class MeanDistance(gzoo.interfaces.MetricFamily):
    """A plugin's metric family: the distance between the means of real and generated points."""

    names = ["mean_gap", "spread"]
    lower_is_better = {"mean_gap"}

    def min_samples(self, metrics, data):
        return (2, "spread needs 2 samples") if "spread" in metrics else (1, "")

    def measure(self, samples, data, metrics, **_):
        real = data.get_batch(torch.arange(len(data)))[0]
        out = {"mean_gap": float((samples.mean(0) - real.mean(0)).norm()), "spread": float(samples.std(0).mean())}
        return {k: out[k] for k in metrics}


class MoonsPlugin:
    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        register("dataset", "moons", Moons)
        register("metric", "mean-distance", MeanDistance)


def _moons_run(cli, tmp_path, family):
    out = tmp_path / family
    r = cli("run", "--gen", "mlp", "--disc", "mlp", "--data", "moons", "--data-opt", f"family={family}",
            "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", "--steps", "2", "--batch-size", "8",
            "--sample-every", "0", "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_a_dataset_nothing_measures_gets_one_line(cli, tmp_path, register_plugin):
    register_plugin(MoonsPlugin(), "moons-plugin")
    out = _moons_run(cli, tmp_path, "none")
    r = cli("eval", "--run", out, "--n", "100")
    assert r.exit_code == 2 and "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1
    assert "no metrics measure dataset 'moons'" in r.stderr


def test_a_plugin_metric_family_measures_its_dataset(cli, tmp_path, register_plugin):
    register_plugin(MoonsPlugin(), "moons-plugin")
    out = _moons_run(cli, tmp_path, "mean-distance")
    r = cli("eval", "--run", out, "--n", "500", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["dataset"] == "moons" and set(res) >= {"mean_gap", "spread"} and res["mean_gap"] > 0
    real = Moons().x
    assert evaluate_samples(real, Moons(family="mean-distance"))["mean_gap"] == pytest.approx(0.0, abs=1e-6)
    assert better("mean_gap", 0.1, 0.2) and better("eval_spread", 0.3, 0.2)  # directions from the family
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(format_table(res))
    table = console.export_text()
    assert "mean_gap" in table and "lower" in table and "higher" in table
    assert "LeNet" not in table  # the Inception caveat belongs to image metrics only
    r = cli("eval", "--run", out, "--n", "1")
    assert r.exit_code == 2 and "needs --n >= 2 for 'moons' (spread needs 2 samples)" in r.stderr
    # periodic evaluation with the plugin's metric, and a metric the family does not have
    t = train(RunConfig(gen="mlp", disc="mlp", data="moons", data_opt={"family": "mean-distance"},
                        gen_opt={"hidden": 8}, disc_opt={"hidden": 8}, steps=2, batch_size=8, sample_every=0,
                        progress=False, eval_every=1, eval_n=50, eval_metric="mean_gap", out=str(tmp_path / "p")))
    assert (t.run_dir / "checkpoints" / "best.pt").exists()
    with pytest.raises(UsageError, match="'fid_lenet' is not measured on 'moons'; valid: mean_gap, spread"):
        Trainer(RunConfig(gen="mlp", disc="mlp", data="moons", data_opt={"family": "mean-distance"},
                          eval_every=1, eval_metric="fid_lenet", out=str(tmp_path / "q")))


def test_metric_modules_take_tensors_and_datasets_not_names():
    """The layering: gzoo.metrics never reaches for the plugin manager or the registry."""
    from pathlib import Path

    import gzoo.metrics

    for path in Path(gzoo.metrics.__file__).parent.glob("*.py"):
        text = path.read_text()
        for word in ("get_plugin_manager", "registry", "..plugins", "..datasets"):
            assert word not in text, f"{path.name} uses {word}"


def test_a_metric_family_that_cannot_work_is_refused_at_registration(pm):
    class NoMeasure(gzoo.interfaces.MetricFamily):
        names = ["x"]

    class NoNames(MeanDistance):
        names = []

    class Plugin:
        @gzoo.hookimpl
        def gzoo_register_components(self, register):
            register("metric", "no-measure", NoMeasure)
            register("metric", "no-names", NoNames)

    with pytest.warns(UserWarning) as record:
        pm.register(Plugin(), "bad-metrics")
    messages = " ".join(str(w.message) for w in record)
    assert "does not implement measure" in messages and "names (the metrics it reports) are empty" in messages
    assert not pm.registry.list("metric", "no-*")


def test_label_agreement_is_the_classifiers_agreement_with_the_requested_labels():
    data = gzoo.create("dataset", "digits", resolution=16)
    x, y = data.get_batch(torch.arange(200))
    clf = classifier_for("digits", 16)
    pred = clf.probs(x).argmax(1)  # the independent computation: the same classifier, called directly
    for labels in (y, (y + 1) % 10, pred):
        res = evaluate_samples(x, "digits", metrics=["is_lenet"], labels=labels, data_opt={"resolution": 16},
                               progress=False)
        assert res["label_agreement"] == pytest.approx(float((pred == labels).float().mean()))
    assert evaluate_samples(x, "digits", metrics=["is_lenet"], labels=pred, progress=False)["label_agreement"] == 1.0
    assert "label_agreement" not in evaluate_samples(x, "digits", metrics=["is_lenet"], progress=False)
    with pytest.raises(UsageError, match="199 labels for 200 samples"):
        evaluate_samples(x, "digits", labels=y[:-1], progress=False)


def test_gzoo_eval_reports_label_agreement_for_label_conditioned_runs(tmp_path):
    t = train(RunConfig(**DIGITS, steps=2, cond="labels", out=str(tmp_path / "c")))
    res = evaluate_run(t.run_dir, n=200, progress=False, metrics=["is_lenet"])
    assert 0.0 <= res["label_agreement"] <= 1.0
    t = train(RunConfig(**DIGITS, steps=2, out=str(tmp_path / "u")))
    assert "label_agreement" not in evaluate_run(t.run_dir, n=200, progress=False, metrics=["is_lenet"])
