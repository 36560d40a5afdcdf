"""Evaluation: ``gzoo eval``, periodic evaluation during training, and a helper for
benchmarks.

What is measured depends on the data:

* images -- in the feature space of gzoo's own LeNet classifier (:mod:`gzoo.metrics.features`):
  ``fid_lenet``, ``kid_lenet``, ``is_lenet``, ``precision``, ``recall``, ``density``,
  ``coverage``, ``class_coverage``, ``class_rkl``; the real reference is a seeded random
  subset of the training split of the same size as the generated set (at most its length);
* stacked datasets -- the same, with features of the base classifier per channel
  (concatenated), plus ``modes`` (of 1000) and ``reverse_kl``;
* the 2-D mixtures -- ``modes``, ``high_quality`` and ``reverse_kl``.

This module is also a plugin of the core: with ``--eval-every N`` it evaluates
``--eval-n`` samples every N steps, logs them, and keeps ``checkpoints/best.pt`` by
``--eval-metric``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import hookimpl
from .errors import UsageError

LOWER_IS_BETTER = {"fid_lenet", "kid_lenet", "class_rkl", "reverse_kl", "fid_inception", "kid_inception"}
IMAGE_METRICS = ["fid_lenet", "kid_lenet", "is_lenet", "precision", "recall", "density", "coverage",
                 "class_coverage", "class_rkl"]
MIXTURE_METRICS = ["modes", "high_quality", "reverse_kl"]
STACKED_METRICS = IMAGE_METRICS + ["modes", "reverse_kl"]


def metric_names(dataset: str) -> list[str]:
    from .datasets import MIXTURES

    if dataset in MIXTURES:
        return MIXTURE_METRICS
    return STACKED_METRICS if dataset.startswith("stacked-") else IMAGE_METRICS


def better(metric: str, new: float, old: float | None) -> bool:
    if old is None or (isinstance(old, float) and math.isnan(old)):
        return True
    return new < old if metric in LOWER_IS_BETTER else new > old


class _StackedFeatures:
    """Per-channel features of a 1-channel classifier, concatenated."""

    def __init__(self, base: Any):
        self.base = base

    def features(self, x: Tensor) -> Tensor:
        return torch.cat([self.base.features(x[:, c : c + 1]) for c in range(x.shape[1])], 1)


def evaluate_samples(
    samples: Tensor,
    dataset: str,
    *,
    data_opt: dict[str, Any] | None = None,
    seed: int = 0,
    kid_subsets: int = 100,
    inception_weights: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every metric that fits ``dataset`` for ``samples`` (on the CPU, in [-1, 1])."""
    from .metrics import (
        class_histogram_metrics,
        fid_from_features,
        inception_score,
        kid_from_features,
        prdc,
    )
    from .metrics.features import get_classifier
    from .metrics.modes import mixture_mode_metrics, stacked_mode_metrics
    from .plugins import get_plugin_manager

    registry = get_plugin_manager().registry
    samples = samples.detach().float().cpu()
    n = len(samples)
    data_opt = {k: v for k, v in (data_opt or {}).items() if k != "split"}
    out: dict[str, Any] = {"dataset": dataset, "n": n}
    if metric_names(dataset) is MIXTURE_METRICS:
        return {**out, **mixture_mode_metrics(samples, dataset)}
    if samples.dim() != 4:
        raise UsageError(f"image metrics need samples (N, C, H, W), got {tuple(samples.shape)}")
    resolution = samples.shape[-1]
    real_ds = registry.create("dataset", dataset, **{**data_opt, "resolution": resolution})
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(real_ds), generator=g)[: min(n, len(real_ds))]
    real, real_y = real_ds.get_batch(idx)
    stacked = dataset.startswith("stacked-")
    base_name = dataset[len("stacked-"):] if stacked else dataset
    clf = get_classifier(base_name, resolution, progress=progress,
                         data_opt={k: v for k, v in data_opt.items() if k not in ("n", "seed")})
    extractor = _StackedFeatures(clf) if stacked else clf
    fr, ff = extractor.features(real), extractor.features(samples)
    out.update(n_real=len(real), resolution=resolution, classifier_accuracy=clf.accuracy)
    out["fid_lenet"] = fid_from_features(fr, ff)
    out["kid_lenet"], out["kid_lenet_std"] = kid_from_features(fr, ff, subsets=kid_subsets, seed=seed)
    if stacked:
        out.update({k: v for k, v in stacked_mode_metrics(samples, base_name, clf, real_labels=real_ds.labels()).items() if k in ("modes", "num_modes", "reverse_kl")})
        probs = None
    else:
        probs = clf.probs(samples)
        out["is_lenet"] = inception_score(probs)
        out.update(class_histogram_metrics(probs, real_ds.labels(), real_ds.num_classes))
    if stacked:
        out["is_lenet"] = float("nan")
        out["class_coverage"] = float("nan")
        out["class_rkl"] = float("nan")
    out.update(prdc(fr, ff))
    if inception_weights:
        from .metrics.inception import inception_fid_kid

        out.update(inception_fid_kid(real, samples, inception_weights))
    return out


def evaluate_run(
    run_dir: str | Path,
    *,
    n: int = 10000,
    which: str = "last",
    ema: bool = True,
    seed: int = 0,
    inception_weights: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint (EMA weights where present); writes ``eval.json``."""
    from .metrics.inception import check_weights
    from .run import load_run

    if inception_weights:
        check_weights(inception_weights)  # fail before generating anything
    run = load_run(run_dir, which)
    t0 = time.perf_counter()
    samples = run.generate(n, ema=ema, seed=seed)
    results = evaluate_samples(samples, run.config.data, data_opt=run.config.data_opt, seed=seed,
                               inception_weights=inception_weights, progress=progress)
    results.update(
        run=str(run.run_dir), checkpoint=str(run.checkpoint_path), step=run.step,
        ema=bool(ema and run.G_ema is not None), seed=seed, seconds=round(time.perf_counter() - t0, 2),
    )
    (run.run_dir / "eval.json").write_text(json.dumps(results, indent=2))
    return results


def format_table(results: dict[str, Any]) -> Any:
    from rich.table import Table

    title = f"{results.get('dataset', '')}: {results.get('n', '?')} samples"
    if "step" in results:
        title += f", step {results['step']}" + (" (EMA)" if results.get("ema") else "")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in results.items():
        if k in ("dataset", "run", "checkpoint", "n", "step", "ema", "seed"):
            continue
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    return table


# -- periodic evaluation (a plugin of the core) ------------------------------------------------


@hookimpl
def gzoo_train_start(trainer: Any) -> None:
    c = trainer.config
    if c.eval_every and c.eval_metric not in metric_names(c.data):
        raise UsageError(
            f"--eval-metric {c.eval_metric!r} is not measured on {c.data!r}; valid: {', '.join(metric_names(c.data))}"
        )
    trainer.plugin_state.setdefault("evaluation", {"best": None, "best_step": None})


@hookimpl
def gzoo_after_g_step(trainer: Any, step: int) -> None:
    c = trainer.config
    if not c.eval_every or step % c.eval_every:
        return
    res = evaluate_samples(trainer.generate(c.eval_n, seed=c.seed), c.data, data_opt=c.data_opt, seed=c.seed,
                           kid_subsets=10, progress=False)
    trainer.log_metrics({f"eval_{k}": v for k, v in res.items() if isinstance(v, float | int) and k not in ("n",)})
    state = trainer.plugin_state.setdefault("evaluation", {"best": None, "best_step": None})
    value = float(res[c.eval_metric])
    if better(c.eval_metric, value, state["best"]):
        state.update(best=value, best_step=step)
        trainer.save_checkpoint("best")


@hookimpl
def gzoo_checkpoint_save(trainer: Any, state: dict[str, Any]) -> None:
    if "evaluation" in trainer.plugin_state:
        state["plugins"]["evaluation"] = dict(trainer.plugin_state["evaluation"])


@hookimpl
def gzoo_checkpoint_load(trainer: Any, state: dict[str, Any]) -> None:
    if "evaluation" in state.get("plugins", {}):
        trainer.plugin_state["evaluation"] = dict(state["plugins"]["evaluation"])
