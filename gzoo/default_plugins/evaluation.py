"""Evaluation: ``gzoo eval``, periodic evaluation during training, and helpers for
benchmarks.

What is measured depends on the data, and the data says so: a dataset's ``measured_by``
attribute names a registered **metric family** (kind ``metric``), or is None when nothing
measures it (then evaluation says so in one line). gzoo registers three (docs/metrics.md):

* ``images`` -- in the feature space of gzoo's own LeNet classifier (:mod:`gzoo.metrics.features`),
  trained on the dataset's labelled training split: ``fid_lenet``, ``kid_lenet``, ``is_lenet``,
  ``precision``, ``recall``, ``density``, ``coverage``, ``class_coverage``, ``class_rkl``; the
  real reference is a seeded random subset of the training split of the same size as the
  generated set (at most its length). Labelled image datasets default to it.
* ``stacked`` -- datasets with a ``base`` dataset whose images fill the channels:
  ``fid_lenet`` ... ``coverage`` with the base classifier's features of the channels
  concatenated, plus ``modes`` (of 1000) and ``reverse_kl``;
* ``mixture`` -- point sets with known ``modes`` ``(K, d)`` and ``sigma``: ``modes``,
  ``high_quality`` and ``reverse_kl``;
* and optionally ``fid_inception``/``kid_inception`` with local Inception weights (images).

A plugin adds a family by registering a :class:`MetricFamily` subclass as kind ``metric``
and pointing its datasets' ``measured_by`` at it.

Entry points: :func:`evaluate_run` (a run directory; writes ``eval.json``),
:func:`evaluate_generator` (a sampling function or a tensor of samples; for benchmarks),
:func:`evaluate_samples`, :func:`format_table`. This module is also a plugin of the core:
with ``--eval-every N`` it evaluates ``--eval-n`` samples every N steps, logs ``eval_*``
metrics, and keeps ``checkpoints/best.pt`` by ``--eval-metric``. The metric functions in
:mod:`gzoo.metrics` take tensors and dataset objects; only this module turns names into
datasets.
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

from .. import hookimpl
from ..errors import UsageError
from ..interfaces import MetricFamily

IMAGE_METRICS = ["fid_lenet", "kid_lenet", "is_lenet", "precision", "recall", "density", "coverage",
                 "class_coverage", "class_rkl"]
MIXTURE_METRICS = ["modes", "high_quality", "reverse_kl"]
STACKED_METRICS = ["fid_lenet", "kid_lenet", "precision", "recall", "density", "coverage", "modes", "reverse_kl"]
INCEPTION_METRICS = ["fid_inception", "kid_inception"]
PRDC = ("precision", "recall", "density", "coverage")
#: metrics that compare the samples with a real set of the same size (at most the dataset's)
REAL_SET_METRICS = ("fid_lenet", "kid_lenet", *PRDC, *INCEPTION_METRICS)
LOWER_IS_BETTER = {"fid_lenet", "kid_lenet", "class_rkl", "reverse_kl", "fid_inception", "kid_inception"}


# -- metric families -----------------------------------------------------------------------------


def _prdc_k() -> int:
    from ..metrics.image import prdc

    defaults = inspect.signature(prdc).parameters
    return max(defaults["k_pr"].default, defaults["k_dc"].default)


def _real_set_needs(metrics: list[str]) -> tuple[int, str]:
    k = _prdc_k()
    needs = {**dict.fromkeys(PRDC, (k + 1, f"precision/recall/density/coverage use each sample's {k} nearest "
                                           "neighbours among the others")),
             **dict.fromkeys(("fid_lenet", "fid_inception"), (2, "FID fits a covariance")),
             **dict.fromkeys(("kid_lenet", "kid_inception"), (2, "KID's unbiased estimate needs 2 samples per set"))}
    chosen = [needs.get(m, (1, "")) for m in metrics]
    n = max((c[0] for c in chosen), default=1)
    return n, "; ".join(dict.fromkeys(why for need, why in chosen if need == n and why))


class _StackedFeatures:
    """Per-channel features of a 1-channel classifier, concatenated: ``(N, 3 * 128)``."""

    def __init__(self, base: Any):
        self.base = base

    def features(self, x: Tensor) -> Tensor:
        return torch.cat([self.base.features(x[:, c : c + 1]) for c in range(x.shape[1])], 1)


class ImageMetrics(MetricFamily):
    """LeNet-feature FID/KID/IS, precision/recall/density/coverage and class histograms."""

    names = IMAGE_METRICS
    lower_is_better = {"fid_lenet", "kid_lenet", "class_rkl", "fid_inception", "kid_inception"}
    optional = INCEPTION_METRICS

    def min_samples(self, metrics: list[str], data: Any) -> tuple[int, str]:
        return _real_set_needs(metrics)

    def classifier(self, data: Any, make_dataset: Callable[..., Any] | None, progress: bool,
                   feature_model: str = "lenet") -> Any:
        return _classifier(data, make_dataset, progress=progress, feature_model=feature_model)

    def measure(self, samples: Tensor, data: Any, metrics: list[str], *, seed: int,
                make_dataset: Callable[..., Any] | None, progress: bool, kid_subsets: int = 100,
                kid_subset_size: int = 1000, inception_weights: str | None = None, labels: Tensor | None = None,
                feature_model: str = "lenet", **_: Any) -> dict[str, Any]:
        from ..metrics import (
            class_histogram_metrics,
            fid_from_features,
            inception_score,
            kid_from_features,
            prdc,
        )

        if samples.dim() != 4:
            raise UsageError(f"image metrics need samples (N, C, H, W), got {tuple(samples.shape)}")
        if tuple(data.image_shape) != tuple(samples.shape[1:]):
            raise UsageError(f"samples of shape {tuple(samples.shape[1:])} do not match {data.name!r} "
                             f"{tuple(data.image_shape)}")
        need, why = self.min_samples([m for m in metrics if m in REAL_SET_METRICS], data)
        if len(data) < need:
            raise UsageError(f"dataset {data.name!r} has {len(data)} images, but the metrics need {need} "
                             f"real ones ({why})")
        n = len(samples)
        g = torch.Generator().manual_seed(seed)
        real, _ = data.get_batch(torch.randperm(len(data), generator=g)[: min(n, len(data))])  # (n_real, C, H, W)
        clf = self.classifier(data, make_dataset, progress, feature_model)
        out: dict[str, Any] = {"n_real": len(real), "resolution": samples.shape[-1],
                               "classifier_accuracy": clf.accuracy}
        if feature_model != "lenet":  # the *_lenet metrics are then measured in this model's features
            out["feature_model"] = feature_model
        extractor = self.extractor(clf)
        if {"fid_lenet", "kid_lenet", *PRDC} & set(metrics):
            fr, ff = extractor.features(real), extractor.features(samples)  # (n_real, d), (n, d)
            if "fid_lenet" in metrics:
                out["fid_lenet"] = fid_from_features(fr, ff)
            if "kid_lenet" in metrics:
                out["kid_lenet"], out["kid_lenet_std"] = kid_from_features(
                    fr, ff, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
            if set(PRDC) & set(metrics):
                out.update({k: v for k, v in prdc(fr, ff).items() if k in metrics})
        class_metrics = {"is_lenet", "class_coverage", "class_rkl"} & set(metrics)
        probs = clf.probs(samples) if class_metrics or labels is not None else None  # (n, K), computed once
        if class_metrics:
            if "is_lenet" in metrics:
                out["is_lenet"] = inception_score(probs)
            hist = class_histogram_metrics(probs, data.labels(), data.num_classes)
            out.update({k: v for k, v in hist.items() if k in metrics})
        if labels is not None:  # a conditional G: does the classifier see the class it was asked for?
            out["label_agreement"] = float((probs.argmax(1) == labels.cpu()).float().mean())
        out.update(self.more(samples, data, clf, metrics))
        if set(INCEPTION_METRICS) & set(metrics):
            from ..metrics.inception import inception_fid_kid

            out.update(inception_fid_kid(real, samples, inception_weights, seed=seed))
        return out

    def extractor(self, clf: Any) -> Any:
        return clf

    def more(self, samples: Tensor, data: Any, clf: Any, metrics: list[str]) -> dict[str, Any]:
        return {}


class StackedMetrics(ImageMetrics):
    """Image metrics on the channels' base-classifier features, plus 1000-mode coverage."""

    names = STACKED_METRICS
    lower_is_better = {"fid_lenet", "kid_lenet", "reverse_kl", "fid_inception", "kid_inception"}

    def min_samples(self, metrics: list[str], data: Any) -> tuple[int, str]:
        n, why = _real_set_needs(metrics)
        if {"modes", "reverse_kl"} & set(metrics) and n <= 1000:
            modes_why = f"modes and reverse_kl need a sample per mode, and {getattr(data, 'name', '?')!r} has 1000"
            return 1000, modes_why if n < 1000 else f"{why}; {modes_why}"
        return n, why

    def classifier(self, data: Any, make_dataset: Callable[..., Any] | None, progress: bool,
                   feature_model: str = "lenet") -> Any:
        return _classifier(*_stacked_base(data, make_dataset), progress=progress, feature_model=feature_model)

    def extractor(self, clf: Any) -> Any:
        return _StackedFeatures(clf)

    def more(self, samples: Tensor, data: Any, clf: Any, metrics: list[str]) -> dict[str, Any]:
        from ..metrics.modes import stacked_mode_metrics

        if not {"modes", "reverse_kl"} & set(metrics):
            return {}
        res = stacked_mode_metrics(samples, clf, data.labels())
        return {"num_modes": res["num_modes"], **{k: res[k] for k in ("modes", "reverse_kl") if k in metrics}}


class MixtureMetrics(MetricFamily):
    """Modes recovered, % high-quality samples and reverse KL of a Gaussian mixture."""

    names = MIXTURE_METRICS
    lower_is_better = {"reverse_kl"}

    def min_samples(self, metrics: list[str], data: Any) -> tuple[int, str]:
        if {"modes", "reverse_kl"} & set(metrics):
            k = len(data.modes)
            return k, f"modes and reverse_kl need a sample per mode, and {getattr(data, 'name', '?')!r} has {k}"
        return 1, ""

    def measure(self, samples: Tensor, data: Any, metrics: list[str], **_: Any) -> dict[str, Any]:
        from ..metrics.modes import mixture_mode_metrics

        res = mixture_mode_metrics(samples, data.modes, data.sigma)
        return {"num_modes": res["num_modes"], **{k: res[k] for k in metrics}}


def measured_by(data: Any) -> str | None:
    """The metric family of a dataset object: its ``measured_by``, else ``images`` for
    labelled images, else None (nothing measures it)."""
    if hasattr(data, "measured_by"):
        return data.measured_by
    labelled = bool(getattr(data, "num_classes", 0)) and getattr(data, "labels", lambda: None)() is not None
    return "images" if len(tuple(data.image_shape)) == 3 and labelled else None


def family(data: Any, registry: Any = None) -> MetricFamily:
    """The :class:`MetricFamily` that measures ``data``; one clear line when none does."""
    name = measured_by(data)
    if name is None:
        raise UsageError(
            f"no metrics measure dataset {getattr(data, 'name', '?')!r} (shape {tuple(data.image_shape)}"
            f"{', no labels' if not getattr(data, 'num_classes', 0) else ''}); gzoo eval cannot score it"
        )
    if registry is None:
        from ..plugins import get_plugin_manager

        registry = get_plugin_manager().registry
    return registry.create("metric", name)


def _dataset(name: str, data_opt: dict[str, Any] | None = None, **extra: Any) -> Any:
    """Build registered dataset ``name`` with ``data_opt`` plus ``extra`` (options it lacks dropped)."""
    from ..plugins import get_plugin_manager

    registry = get_plugin_manager().registry
    spec = registry.get("dataset", name)
    opts = {k: v for k, v in {**(data_opt or {}), **extra}.items() if k in spec.options}
    return registry.create("dataset", spec.name, **opts)


def dataset_maker(name: str, data_opt: dict[str, Any] | None = None) -> Callable[..., Any]:
    """``make(split=..., resolution=...)``: registered dataset ``name`` with other options."""
    base = {k: v for k, v in (data_opt or {}).items() if k not in ("split", "resolution")}

    def make(**opts: Any) -> Any:
        return _dataset(name, base, **opts)

    return make


def _stacked_base(data: Any, make_dataset: Callable[..., Any] | None) -> tuple[Any, Callable[..., Any] | None]:
    """The 1-channel dataset whose images fill a stacked dataset's channels, and a maker of its
    splits (None when ``make_dataset`` is None)."""
    if make_dataset is None:
        return data.base, None

    def make_base(**opts: Any) -> Any:
        return make_dataset(**opts).base

    return data.base, make_base


def _classifier(train: Any, make_dataset: Callable[..., Any] | None, *, progress: bool,
                settings: Any = None, feature_model: str = "lenet") -> Any:
    """The cached feature classifier of ``train``; its accuracy on the test split when one exists."""
    from ..metrics.features import get_classifier

    test = None
    if make_dataset is not None:
        try:
            test = make_dataset(split="test", resolution=train.image_shape[-1])
        except UsageError:
            test = None  # e.g. no test files: accuracy is then measured on the training split
    return get_classifier(train, test, key=train.name, settings=settings, progress=progress,
                          feature_model=feature_model)


def classifier_for(dataset: str, resolution: int, *, data_opt: dict[str, Any] | None = None,
                   settings: Any = None, progress: bool = True, feature_model: str = "lenet") -> Any:
    """The feature classifier that measures registered dataset ``dataset`` at ``resolution``
    (for ``stacked-<base>``: the base's, applied channel by channel)."""
    make = dataset_maker(dataset, data_opt)
    train = make(split="train", resolution=resolution)
    if measured_by(train) == "stacked":
        train, make = _stacked_base(train, make)
    if measured_by(train) != "images":
        why = "holds points, not images" if len(train.image_shape) != 3 else "has no labels"
        raise UsageError(f"dataset {dataset!r} {why}: gzoo's feature classifier cannot measure it")
    return _classifier(train, make, progress=progress, settings=settings, feature_model=feature_model)


# -- names, directions, sample counts ------------------------------------------------------------


def _data(dataset: Any, data_opt: dict[str, Any] | None = None) -> Any:
    return _dataset(dataset, data_opt) if isinstance(dataset, str) else dataset


def metric_names(dataset: Any, data_opt: dict[str, Any] | None = None) -> list[str]:
    """The offline metrics gzoo reports for ``dataset`` (a name or a dataset object; Inception
    ones not included)."""
    return list(family(_data(dataset, data_opt)).names)


def _families() -> list[Any]:
    from ..plugins import get_plugin_manager

    return [s.factory for s in get_plugin_manager().registry.list("metric")]


def _metric_names() -> set[str]:
    """Every metric a registered family reports (or offers), and gzoo's own."""
    names = set(IMAGE_METRICS) | set(MIXTURE_METRICS) | set(STACKED_METRICS) | set(INCEPTION_METRICS)
    names.add("label_agreement")  # conditional generators (evaluate_samples(labels=...))
    for fam in _families():
        names |= set(getattr(fam, "names", ())) | set(getattr(fam, "optional", ()))
    return names


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric`` (``eval_`` prefix allowed), from every registered metric family."""
    name = metric.removeprefix("eval_")
    if name in LOWER_IS_BETTER:
        return False
    return not any(name in getattr(fam, "lower_is_better", ()) for fam in _families())


def better(metric: str, new: float, old: float | None) -> bool:
    """Whether ``new`` improves on ``old`` for ``metric`` (``old`` None/NaN: yes; ``new`` NaN: no)."""
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return False
    if old is None or (isinstance(old, float) and math.isnan(old)):
        return True
    return new > old if higher_is_better(metric) else new < old


def _selected(fam: MetricFamily, name: str, metrics: Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list(fam.names)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    bad = [m for m in metrics if m not in fam.names and m not in fam.optional]
    if bad:
        raise UsageError(f"metric(s) {', '.join(map(repr, bad))} not measured on {name!r}; "
                         f"valid: {', '.join(fam.names)}")
    return metrics


def min_samples(dataset: Any, metrics: Iterable[str] | None = None) -> tuple[int, str]:
    """The fewest samples (generated, and real) from which ``metrics`` of ``dataset`` (a name
    or a dataset object) are computable, and why: ``(n, reason)``.

    * precision/recall/density/coverage: each sample's k-th nearest neighbour among the others
      of its set (k = 5 for density/coverage), so k + 1 samples per set;
    * FID and KID: a covariance / an unbiased MMD estimate, so 2 samples per set;
    * ``modes`` and ``reverse_kl``: one sample per mode (8 for ``ring``, 25 for ``grid``, 1000 for
      stacked datasets), else even a perfect generator could not recover every mode.
    """
    data = _data(dataset)
    fam = family(data)
    return fam.min_samples(_selected(fam, data.name, metrics), data)


def check_sample_count(
    n: int, dataset: Any, metrics: Iterable[str] | None = None, *, what: str = "evaluation", flag: str = "n"
) -> None:
    """A one-line :class:`UsageError` when ``n`` samples are too few (see :func:`min_samples`)."""
    data = _data(dataset)
    need, why = min_samples(data, metrics)
    if n < need:
        raise UsageError(f"{what} needs {flag} >= {need} for {data.name!r} ({why}); got {n}")


def check_evaluable(data: Any, config: Any) -> None:
    """Refuse, before training, periodic evaluation (``--eval-every``) that would fail at its first
    evaluation: data no metric family measures, an unknown ``--eval-metric``, too small an
    ``--eval-n`` or real dataset (see :func:`min_samples`), or images the feature classifier
    cannot measure (a size outside its range)."""
    from ..metrics.features import MAX_RESOLUTION, MIN_RESOLUTION

    name = config.data
    try:
        fam = family(data)
    except UsageError as exc:
        raise UsageError(f"--eval-every: {exc}; drop --eval-every") from None
    if config.eval_metric is not None and config.eval_metric not in fam.names:
        raise UsageError(f"--eval-metric {config.eval_metric!r} is not measured on {name!r}; "
                         f"valid: {', '.join(fam.names)}")
    check_sample_count(config.eval_n, data, what="periodic evaluation", flag="--eval-n")
    if not isinstance(fam, ImageMetrics):
        return
    need, why = fam.min_samples([m for m in fam.names if m in REAL_SET_METRICS], data)
    if len(data) < need:
        raise UsageError(f"periodic evaluation needs {need} real images of {name!r} ({why}); it has {len(data)}")
    if not MIN_RESOLUTION <= data.image_shape[-1] <= MAX_RESOLUTION:
        raise UsageError(f"periodic evaluation measures {MIN_RESOLUTION}-{MAX_RESOLUTION} px images with "
                         f"gzoo's feature classifier; {name!r} has shape {tuple(data.image_shape)}")


# -- evaluating samples ---------------------------------------------------------------------------


def evaluate_samples(
    samples: Tensor,
    dataset: Any,
    *,
    metrics: Iterable[str] | None = None,
    data_opt: dict[str, Any] | None = None,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    inception_weights: str | None = None,
    progress: bool = True,
    labels: Tensor | None = None,
    feature_model: str = "lenet",
) -> dict[str, Any]:
    """The metrics that fit ``dataset`` (or those named in ``metrics``) for ``samples``.

    ``dataset`` is a registered name (built with ``data_opt`` at the samples' resolution) or a
    dataset object. ``samples`` are on any device, images in [-1, 1] ``(N, C, H, W)`` or points
    ``(N, d)``. Inception metrics are added when ``inception_weights`` is given or ``metrics``
    names them. ``labels`` (images only) are the dataset classes a conditional generator was
    asked for, one per sample: ``label_agreement`` is then the fraction of samples that the
    domain classifier puts in their requested class. ``feature_model`` picks the domain
    classifier of image metrics: ``lenet`` (default) or ``timm:NAME`` (trained and cached alike).
    """
    from ..metrics.features import parse_feature_model

    feature_model = parse_feature_model(feature_model)
    if labels is not None and len(labels) != len(samples):
        raise UsageError(f"{len(labels)} labels for {len(samples)} samples")
    samples = samples.detach().float().cpu()
    make = None
    if isinstance(dataset, str):
        make = dataset_maker(dataset, data_opt)
        data = make(resolution=samples.shape[-1]) if samples.dim() == 4 else make()
    else:
        data = dataset
    fam = family(data)
    name = getattr(data, "name", str(dataset))
    want = _selected(fam, name, metrics)
    if inception_weights and not isinstance(fam, ImageMetrics):
        raise UsageError(f"Inception metrics measure images; {name!r} is measured by {measured_by(data)!r}")
    if inception_weights:
        want = [*want, *(m for m in INCEPTION_METRICS if m not in want)]
    if any(m in INCEPTION_METRICS for m in want):
        from ..metrics.inception import find_weights

        inception_weights = str(find_weights(inception_weights))  # fail before any work
    check_sample_count(len(samples), data, [m for m in want if m not in INCEPTION_METRICS] or None)
    out: dict[str, Any] = {"dataset": name, "n": len(samples)}
    if labels is not None and not isinstance(fam, ImageMetrics):
        raise UsageError(f"label agreement needs image samples; {name!r} is measured by {measured_by(data)!r}")
    if feature_model != "lenet" and not isinstance(fam, ImageMetrics):
        raise UsageError(f"--feature-model picks the classifier of image metrics; {name!r} is measured by "
                         f"{measured_by(data)!r}")
    out.update(fam.measure(samples, data, want, seed=seed, make_dataset=make, progress=progress,
                           kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                           inception_weights=inception_weights, labels=labels, feature_model=feature_model))
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
    feature_model: str = "lenet",
) -> dict[str, Any]:
    """Evaluate a run's checkpoint (EMA weights where present); writes ``eval.json`` into the run.
    ``feature_model``: the domain classifier of image metrics, ``lenet`` or ``timm:NAME``."""
    from ..metrics.features import parse_feature_model
    from ..run import load_run

    feature_model = parse_feature_model(feature_model)  # fail before loading or generating anything
    if inception_weights:
        from ..metrics.inception import find_weights

        find_weights(inception_weights)  # fail before generating anything
    run = load_run(run_dir, which)
    check_sample_count(n, run.data, metrics, what="gzoo eval", flag="--n")  # before generating
    t0 = time.perf_counter()
    samples, labels = run.generate(n, ema=ema, seed=seed, return_labels=True)
    if run.config.cond != "labels" or samples.dim() != 4:
        labels = None  # only the dataset's own classes can be checked by its classifier
    results = evaluate_samples(samples, run.config.data, metrics=metrics, data_opt=run.config.data_opt, seed=seed,
                               inception_weights=inception_weights, progress=progress, labels=labels,
                               feature_model=feature_model)
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
    lenet = any(k.endswith("_lenet") for k in results)
    model = results.get("feature_model", "LeNet")
    caption = (f"{model}-feature metrics (named *_lenet): not comparable with Inception FID (docs/metrics.md)"
               if lenet else None)
    table = Table(title=title, caption=caption)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("better")
    known = _metric_names()
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
    metric = c.eval_metric or family(trainer.data).names[0]
    value = float(res[metric])
    if state.get("metric") not in (None, metric):  # resumed with another metric: start over
        state.update(_EMPTY)
    if better(metric, value, state["best"]):
        state.update(best=value, best_step=step, metric=metric)
        trainer.save_checkpoint("best")


@hookimpl
def gzoo_checkpoint_save(trainer: Any, state: dict[str, Any]) -> None:
    if "evaluation" in trainer.plugin_state:
        state["plugins"]["evaluation"] = dict(trainer.plugin_state["evaluation"])


@hookimpl
def gzoo_checkpoint_load(trainer: Any, state: dict[str, Any]) -> None:
    if "evaluation" in state.get("plugins", {}):
        trainer.plugin_state["evaluation"] = dict(state["plugins"]["evaluation"])


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("metric", "images", ImageMetrics, paper="Heusel et al. 2017 (FID); Binkowski et al. 2018 (KID); "
             "Naeem et al. 2020 (density/coverage), in the features of gzoo's LeNet")
    register("metric", "stacked", StackedMetrics, paper="Metz et al. 2017 (stacked MNIST modes)")
    register("metric", "mixture", MixtureMetrics, paper="Srivastava et al. 2017 (VEEGAN); Lin et al. 2018 (PacGAN)")
