"""Evaluation: ``gzoo eval``, periodic evaluation during training, and helpers for
benchmarks.

What is measured depends on the data (see docs/metrics.md):

* images -- in the feature space of gzoo's own LeNet classifier (:mod:`gzoo.metrics.features`):
  ``fid_lenet``, ``kid_lenet``, ``is_lenet``, ``precision``, ``recall``, ``density``,
  ``coverage``, ``class_coverage``, ``class_rkl``; the real reference is a seeded random
  subset of the training split of the same size as the generated set (at most its length);
* stacked datasets -- ``fid_lenet`` ... ``coverage`` with the base classifier's features of
  the three channels concatenated, plus ``modes`` (of 1000) and ``reverse_kl``;
* the 2-D mixtures -- ``modes``, ``high_quality`` and ``reverse_kl``;
* optionally ``fid_inception``/``kid_inception`` with local Inception weights.

Entry points: :func:`evaluate_run` (a run directory; writes ``eval.json``),
:func:`evaluate_generator` (a sampling function or a tensor of samples; for benchmarks),
:func:`format_table`. This module is also a plugin of the core: with ``--eval-every N``
it evaluates ``--eval-n`` samples every N steps, logs ``eval_*`` metrics, and keeps
``checkpoints/best.pt`` by ``--eval-metric``.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Iterable
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
STACKED_METRICS = ["fid_lenet", "kid_lenet", "precision", "recall", "density", "coverage", "modes", "reverse_kl"]
INCEPTION_METRICS = ["fid_inception", "kid_inception"]
PRDC = ("precision", "recall", "density", "coverage")
#: metrics that compare the samples with a real set of the same size (at most the dataset's)
REAL_SET_METRICS = ("fid_lenet", "kid_lenet", *PRDC, *INCEPTION_METRICS)


def metric_names(dataset: str) -> list[str]:
    """The offline metrics gzoo reports for ``dataset`` (Inception ones not included)."""
    from .datasets import MIXTURES

    if dataset in MIXTURES:
        return MIXTURE_METRICS
    return STACKED_METRICS if dataset.startswith("stacked-") else IMAGE_METRICS


def higher_is_better(metric: str) -> bool:
    return metric.removeprefix("eval_") not in LOWER_IS_BETTER


def better(metric: str, new: float, old: float | None) -> bool:
    """Whether ``new`` improves on ``old`` for ``metric`` (``old`` None/NaN: yes; ``new`` NaN: no)."""
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return False
    if old is None or (isinstance(old, float) and math.isnan(old)):
        return True
    return new > old if higher_is_better(metric) else new < old


def _selected(dataset: str, metrics: Iterable[str] | None) -> list[str]:
    valid = metric_names(dataset)
    if metrics is None:
        return list(valid)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    extra = INCEPTION_METRICS if valid is not MIXTURE_METRICS else []
    bad = [m for m in metrics if m not in valid and m not in extra]
    if bad:
        raise UsageError(f"metric(s) {', '.join(map(repr, bad))} not measured on {dataset!r}; valid: {', '.join(valid)}")
    return metrics


def _num_modes(dataset: str) -> int:
    from .datasets import MIXTURES

    return len(MIXTURES[dataset][0]()) if dataset in MIXTURES else 1000  # stacked: 10^3 triples


def min_samples(dataset: str, metrics: Iterable[str] | None = None) -> tuple[int, str]:
    """The fewest samples (generated, and real) from which ``metrics`` of ``dataset`` are
    computable, and why: ``(n, reason)``.

    * precision/recall/density/coverage: each sample's k-th nearest neighbour among the others
      of its set (k = 5 for density/coverage), so k + 1 samples per set;
    * FID and KID: a covariance / an unbiased MMD estimate, so 2 samples per set;
    * ``modes`` and ``reverse_kl``: one sample per mode (8 for ``ring``, 25 for ``grid``, 1000 for
      stacked datasets), else even a perfect generator could not recover every mode.
    """
    from .metrics.image import prdc

    defaults = inspect.signature(prdc).parameters
    k = max(defaults["k_pr"].default, defaults["k_dc"].default)
    prdc_why = f"precision/recall/density/coverage use each sample's {k} nearest neighbours among the others"
    needs: dict[str, tuple[int, str]] = {
        **dict.fromkeys(PRDC, (k + 1, prdc_why)),
        **dict.fromkeys(("fid_lenet", "fid_inception"), (2, "FID fits a covariance")),
        **dict.fromkeys(("kid_lenet", "kid_inception"), (2, "KID's unbiased estimate needs 2 samples per set")),
    }
    if dataset.startswith("stacked-") or metric_names(dataset) is MIXTURE_METRICS:
        modes = _num_modes(dataset)
        modes_why = f"modes and reverse_kl need a sample per mode, and {dataset!r} has {modes}"
        needs.update(dict.fromkeys(("modes", "reverse_kl"), (modes, modes_why)))
    chosen = [needs.get(m, (1, "")) for m in _selected(dataset, metrics)]
    n = max((c[0] for c in chosen), default=1)
    return n, "; ".join(dict.fromkeys(why for need, why in chosen if need == n and why))


def check_sample_count(
    n: int, dataset: str, metrics: Iterable[str] | None = None, *, what: str = "evaluation", flag: str = "n"
) -> None:
    """A one-line :class:`UsageError` when ``n`` samples are too few (see :func:`min_samples`)."""
    need, why = min_samples(dataset, metrics)
    if n < need:
        raise UsageError(f"{what} needs {flag} >= {need} for {dataset!r} ({why}); got {n}")


def check_evaluable(data: Any, config: Any) -> None:
    """Refuse, before training, periodic evaluation (``--eval-every``) that would fail at its first
    evaluation: an unknown ``--eval-metric``, too small an ``--eval-n`` or real dataset (see
    :func:`min_samples`), or images the feature classifier cannot measure (no labels, a size
    outside its range)."""
    from .metrics.features import MAX_RESOLUTION, MIN_RESOLUTION

    name = config.data
    valid = metric_names(name)
    if config.eval_metric not in valid:
        raise UsageError(f"--eval-metric {config.eval_metric!r} is not measured on {name!r}; valid: {', '.join(valid)}")
    check_sample_count(config.eval_n, name, what="periodic evaluation", flag="--eval-n")
    if metric_names(name) is MIXTURE_METRICS:
        return
    need, why = min_samples(name, [m for m in valid if m in REAL_SET_METRICS])
    if len(data) < need:
        raise UsageError(f"periodic evaluation needs {need} real images of {name!r} ({why}); it has {len(data)}")
    if len(data.image_shape) != 3 or not MIN_RESOLUTION <= data.image_shape[-1] <= MAX_RESOLUTION:
        raise UsageError(f"periodic evaluation measures {MIN_RESOLUTION}-{MAX_RESOLUTION} px images with "
                         f"gzoo's feature classifier; {name!r} has shape {tuple(data.image_shape)}")
    if not data.num_classes or data.labels() is None:
        raise UsageError(f"periodic evaluation trains gzoo's feature classifier on the labels of {name!r}, "
                         "which has none: drop --eval-every")


class _StackedFeatures:
    """Per-channel features of a 1-channel classifier, concatenated: ``(N, 3 * 128)``."""

    def __init__(self, base: Any):
        self.base = base

    def features(self, x: Tensor) -> Tensor:
        return torch.cat([self.base.features(x[:, c : c + 1]) for c in range(x.shape[1])], 1)


def evaluate_samples(
    samples: Tensor,
    dataset: str,
    *,
    metrics: Iterable[str] | None = None,
    data_opt: dict[str, Any] | None = None,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    inception_weights: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The metrics that fit ``dataset`` (or those named in ``metrics``) for ``samples``.

    ``samples`` are on any device, images in [-1, 1] ``(N, C, H, W)`` or points ``(N, 2)``.
    Inception metrics are added when ``inception_weights`` is given or ``metrics`` names them.
    """
    from .metrics import (
        class_histogram_metrics,
        fid_from_features,
        inception_score,
        kid_from_features,
        prdc,
    )
    from .metrics.features import base_dataset, get_classifier
    from .metrics.modes import mixture_mode_metrics, stacked_mode_metrics
    from .plugins import get_plugin_manager

    want = _selected(dataset, metrics)
    want_inception = bool(inception_weights) or any(m in INCEPTION_METRICS for m in want)
    check_sample_count(len(samples), dataset, want)
    if want_inception:
        from .metrics.inception import find_weights

        inception_weights = str(find_weights(inception_weights))  # fail before any work
    registry = get_plugin_manager().registry
    samples = samples.detach().float().cpu()
    n = len(samples)
    data_opt = {k: v for k, v in (data_opt or {}).items() if k not in ("split", "resolution")}
    out: dict[str, Any] = {"dataset": dataset, "n": n}
    if metric_names(dataset) is MIXTURE_METRICS:
        res = mixture_mode_metrics(samples, dataset)
        return {**out, "num_modes": res["num_modes"], **{k: res[k] for k in want}}
    if samples.dim() != 4:
        raise UsageError(f"image metrics need samples (N, C, H, W), got {tuple(samples.shape)}")
    resolution = samples.shape[-1]
    real_ds = registry.create("dataset", dataset, **data_opt, resolution=resolution)
    if tuple(real_ds.image_shape) != tuple(samples.shape[1:]):
        raise UsageError(f"samples of shape {tuple(samples.shape[1:])} do not match {dataset!r} {tuple(real_ds.image_shape)}")
    need, why = min_samples(dataset, [m for m in want if m in REAL_SET_METRICS])
    if len(real_ds) < need:
        raise UsageError(f"dataset {dataset!r} has {len(real_ds)} images, but the metrics need {need} "
                         f"real ones ({why})")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(real_ds), generator=g)[: min(n, len(real_ds))]
    real, _ = real_ds.get_batch(idx)  # (n_real, C, H, W)
    stacked = dataset.startswith("stacked-")
    clf = get_classifier(base_dataset(dataset), resolution, progress=progress, data_opt=data_opt)
    out.update(n_real=len(real), resolution=resolution, classifier_accuracy=clf.accuracy)
    lenet = [m for m in want if m not in INCEPTION_METRICS]
    if {"fid_lenet", "kid_lenet", *PRDC} & set(lenet):
        extractor = _StackedFeatures(clf) if stacked else clf
        fr, ff = extractor.features(real), extractor.features(samples)  # (n_real, d), (n, d)
        if "fid_lenet" in lenet:
            out["fid_lenet"] = fid_from_features(fr, ff)
        if "kid_lenet" in lenet:
            out["kid_lenet"], out["kid_lenet_std"] = kid_from_features(
                fr, ff, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
        if set(PRDC) & set(lenet):
            out.update({k: v for k, v in prdc(fr, ff).items() if k in lenet})
    if stacked and {"modes", "reverse_kl"} & set(lenet):
        res = stacked_mode_metrics(samples, base_dataset(dataset), clf, real_labels=real_ds.labels())
        out.update(num_modes=res["num_modes"], **{k: res[k] for k in ("modes", "reverse_kl") if k in lenet})
    if not stacked and {"is_lenet", "class_coverage", "class_rkl"} & set(lenet):
        probs = clf.probs(samples)  # (n, K)
        if "is_lenet" in lenet:
            out["is_lenet"] = inception_score(probs)
        hist = class_histogram_metrics(probs, real_ds.labels(), real_ds.num_classes)
        out.update({k: v for k, v in hist.items() if k in lenet})
    if want_inception:
        from .metrics.inception import inception_fid_kid

        out.update(inception_fid_kid(real, samples, inception_weights, seed=seed))
    return out


def evaluate_generator(
    source: Callable[..., Tensor] | Tensor,
    dataset: str,
    resolution: int | None = None,
    n: int = 10000,
    *,
    seed: int = 0,
    metrics: Iterable[str] | None = None,
    data_opt: dict[str, Any] | None = None,
    inception_weights: str | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate a generator without a run directory (benchmarks, notebooks).

    ``source`` is a tensor of samples (the first ``n`` are used) or a function
    ``generate(n)`` / ``generate(n, seed=...)`` returning ``(n, C, H, W)`` images in [-1, 1]
    or ``(n, 2)`` points, e.g. ``trainer.generate``. ``resolution``, when given, is checked
    against the samples. Other keyword arguments go to :func:`evaluate_samples`.
    """
    t0 = time.perf_counter()
    if isinstance(source, Tensor):
        samples = source[:n]
    elif callable(source):
        try:
            takes_seed = "seed" in inspect.signature(source).parameters
        except (TypeError, ValueError):
            takes_seed = False
        samples = source(n, seed=seed) if takes_seed else source(n)
    else:
        raise UsageError(f"evaluate_generator needs samples or a function generate(n), got {type(source).__name__}")
    if len(samples) < n:
        raise UsageError(f"asked for {n} samples, got {len(samples)}")
    if resolution is not None and samples.dim() == 4 and samples.shape[-1] != resolution:
        raise UsageError(f"samples are {samples.shape[-1]} px, expected {resolution} px")
    out = evaluate_samples(samples, dataset, metrics=metrics, data_opt=data_opt, seed=seed,
                           inception_weights=inception_weights, progress=progress, **options)
    out.update(seed=seed, seconds=round(time.perf_counter() - t0, 2))
    return out


def evaluate_run(
    run_dir: str | Path,
    *,
    n: int = 10000,
    which: str = "last",
    ema: bool = True,
    metrics: Iterable[str] | None = None,
    seed: int = 0,
    inception_weights: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint (EMA weights where present); writes ``eval.json`` into the run."""
    from .run import load_run

    if inception_weights:
        from .metrics.inception import find_weights

        find_weights(inception_weights)  # fail before generating anything
    run = load_run(run_dir, which)
    check_sample_count(n, run.config.data, metrics, what="gzoo eval", flag="--n")  # before generating
    t0 = time.perf_counter()
    samples = run.generate(n, ema=ema, seed=seed)
    results = evaluate_samples(samples, run.config.data, metrics=metrics, data_opt=run.config.data_opt, seed=seed,
                               inception_weights=inception_weights, progress=progress)
    results.update(
        run=str(run.run_dir), checkpoint=str(run.checkpoint_path), step=run.step,
        ema=bool(ema and run.G_ema is not None), seed=seed, seconds=round(time.perf_counter() - t0, 2),
    )
    (run.run_dir / "eval.json").write_text(json.dumps(_jsonable(results), indent=2))
    return results


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf become None so eval.json stays strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def format_table(results: dict[str, Any]) -> Any:
    """A rich table of one evaluation, with the direction of each metric."""
    from rich.table import Table

    title = f"{results.get('dataset', '')}: {results.get('n', '?')} samples"
    if "step" in results:
        title += f", step {results['step']}" + (" (EMA)" if results.get("ema") else "")
    table = Table(title=title, caption="LeNet-feature metrics: not comparable with Inception FID (docs/metrics.md)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("better")
    known = set(IMAGE_METRICS) | set(MIXTURE_METRICS) | set(STACKED_METRICS) | set(INCEPTION_METRICS)
    for k, v in results.items():
        if k in ("dataset", "run", "checkpoint", "n", "step", "ema", "seed"):
            continue
        arrow = ("higher" if higher_is_better(k) else "lower") if k in known else ""
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v), arrow)
    return table


# -- periodic evaluation (a plugin of the core) ------------------------------------------------

_EMPTY = {"best": None, "best_step": None, "metric": None}


@hookimpl
def gzoo_train_start(trainer: Any) -> None:
    c = trainer.config
    if c.eval_every:
        check_evaluable(trainer.data, c)  # the trainer's preflight does too; here for any trainer
    trainer.plugin_state.setdefault("evaluation", dict(_EMPTY))


@hookimpl
def gzoo_after_g_step(trainer: Any, step: int) -> None:
    c = trainer.config
    if not c.eval_every or step % c.eval_every:
        return
    res = evaluate_samples(trainer.generate(c.eval_n, seed=c.seed), c.data, data_opt=c.data_opt, seed=c.seed,
                           kid_subsets=10, progress=c.progress)
    trainer.log_metrics({f"eval_{k}": v for k, v in res.items()
                         if isinstance(v, float | int) and not isinstance(v, bool) and k not in ("n", "n_real", "resolution")})
    state = trainer.plugin_state.setdefault("evaluation", dict(_EMPTY))
    value = float(res[c.eval_metric])
    if state.get("metric") not in (None, c.eval_metric):  # resumed with another metric: start over
        state.update(_EMPTY)
    if better(c.eval_metric, value, state["best"]):
        state.update(best=value, best_step=step, metric=c.eval_metric)
        trainer.save_checkpoint("best")


@hookimpl
def gzoo_checkpoint_save(trainer: Any, state: dict[str, Any]) -> None:
    if "evaluation" in trainer.plugin_state:
        state["plugins"]["evaluation"] = dict(trainer.plugin_state["evaluation"])


@hookimpl
def gzoo_checkpoint_load(trainer: Any, state: dict[str, Any]) -> None:
    if "evaluation" in state.get("plugins", {}):
        trainer.plugin_state["evaluation"] = dict(state["plugins"]["evaluation"])
