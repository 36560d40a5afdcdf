"""The domain feature extractor: a LeNet-style classifier trained on the real data.

Pretrained Inception weights cannot be downloaded here, so gzoo measures images in the
feature space of a small CNN it trains itself, once per (dataset, resolution), on the
real training split. It is cached under ``$GZOO_CACHE`` (default ``~/.cache/gzoo``) in
``classifiers/<dataset>-r<resolution>-c<channels>-<code hash>.pt`` with a JSON file
beside it that records its test accuracy. The code hash covers the source of the
network and of its training function, and the training settings, so changing either retrains.
A corrupt cache (unreadable JSON or weights, or weights that do not fit) is rebuilt with a
one-line warning.

* ``features(x)``: the 128-d penultimate layer (FID, KID, precision/recall...).
* ``probs(x)``: softmax class probabilities (Inception-Score analogue, class histograms).

This module takes dataset objects, never names: :func:`gzoo.evaluation.classifier_for`
builds the splits from a registered name (and gives a stacked dataset the classifier of its
base dataset, applied channel by channel).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError

FEATURE_DIM = 128
MIN_RESOLUTION, MAX_RESOLUTION = 8, 64


def cache_dir() -> Path:
    return Path(os.environ.get("GZOO_CACHE", "~/.cache/gzoo")).expanduser() / "classifiers"


def parse_feature_model(spec: str) -> str:
    """Check a feature-model name: ``lenet`` (the default) or ``timm:NAME``; returns it."""
    spec = str(spec or "lenet").strip()
    if spec == "lenet":
        return spec
    kind, _, name = spec.partition(":")
    if kind != "timm" or not name:
        raise UsageError(f"feature model must be 'lenet' or 'timm:NAME' (e.g. timm:resnet18), got {spec!r}")
    from ..backbones import check_model_name

    check_model_name(name)
    return spec


def make_net(feature_model: str, channels: int, num_classes: int, resolution: int) -> nn.Module:
    """The untrained classifier: :class:`LeNet` or :class:`TimmNet` (``timm:NAME``)."""
    if feature_model == "lenet":
        return LeNet(channels, num_classes, resolution)
    return TimmNet(feature_model.partition(":")[2], channels, num_classes, resolution)


class TimmNet(nn.Module):
    """A timm architecture as the domain classifier: ``body`` = its pooled features (fitted to small
    images as :class:`gzoo.backbones.TimmBackbone` does, BatchNorm kept: a classifier sees
    real batches only), ``fc`` = a linear layer to the classes."""

    def __init__(self, name: str, channels: int, num_classes: int, resolution: int):
        super().__init__()
        from ..backbones import TimmBackbone

        self.body = TimmBackbone(name, channels=channels, side=resolution, norm="batch")
        self.fc = nn.Linear(self.body.width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x))


class LeNet(nn.Module):
    """LeNet-style CNN: conv5(16)-pool-conv5(32)-pool -> s x s -> fc 128 (features) -> fc classes.

    ``s = min(7, resolution // 4)``: 7x7 for 28-64 px (adaptive average pooling), smaller
    below 28 px so that 8-px images are not upsampled.
    """

    def __init__(self, channels: int, num_classes: int, resolution: int = 28, width: int = 16):
        super().__init__()
        s = max(1, min(7, resolution // 4))
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, H/4, W/4)
            nn.AdaptiveAvgPool2d(s), nn.Flatten(),  # (B, 2w*s*s)
            nn.Linear(2 * width * s * s, FEATURE_DIM), nn.ReLU(),  # (B, 128) = the features
        )
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x))


@dataclass
class TrainSettings:
    """How the feature classifier is trained (part of the cache key)."""

    epochs: float = 3.0  #: passes over the training split
    min_steps: int = 1000  #: at least this many steps (small sets: digits' 1,438 images are 11 steps an epoch)
    max_steps: int = 0  #: stop after this many steps (0 = no cap; wins over min_steps)
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


#: settings used when none are given (tests swap in tiny ones).
DEFAULT_SETTINGS = TrainSettings()


class Classifier:
    """A trained :class:`LeNet` (or :class:`TimmNet`) with batched ``features``/``probs`` on any device."""

    def __init__(self, net: LeNet, meta: dict[str, Any]):
        self.net = net.eval()
        self.meta = meta
        self.accuracy = float(meta.get("test_accuracy", float("nan")))
        self.num_classes = int(meta["num_classes"])

    @torch.no_grad()
    def _batched(self, x: Tensor, fn: Any, batch_size: int = 1000) -> Tensor:
        dev = next(self.net.parameters()).device
        return torch.cat([fn(x[i : i + batch_size].to(dev).float()).cpu() for i in range(0, len(x), batch_size)])

    def features(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` in [-1, 1] -> ``(N, d)`` penultimate activations (d = 128 for LeNet)."""
        return self._batched(x, self.net.body)

    def logits(self, x: Tensor) -> Tensor:
        return self._batched(x, self.net)

    def probs(self, x: Tensor) -> Tensor:
        return self.logits(x).softmax(1)


def code_hash(settings: TrainSettings, feature_model: str = "lenet") -> str:
    """Hash of the classifier's code (the network and its training) and its settings; for a
    timm feature model also of the backbone code, the architecture and timm's version."""
    src = inspect.getsource(LeNet) + inspect.getsource(train_classifier)
    if feature_model != "lenet":
        import timm

        from .. import backbones

        src += inspect.getsource(TimmNet) + inspect.getsource(backbones) + feature_model + timm.__version__
    return hashlib.sha256((src + repr(settings)).encode()).hexdigest()[:12]


def cache_paths(dataset: str, resolution: int, channels: int, settings: TrainSettings,
                feature_model: str = "lenet") -> tuple[Path, Path]:
    """``(weights, meta json)`` of the cached classifier."""
    arch = "" if feature_model == "lenet" else "-" + feature_model.replace(":", "-")
    stem = f"{dataset}-r{resolution}-c{channels}{arch}-{code_hash(settings, feature_model)}"
    return cache_dir() / f"{stem}.pt", cache_dir() / f"{stem}.json"


def get_classifier(
    train: Any,
    test: Any = None,
    *,
    key: str | None = None,
    settings: TrainSettings | None = None,
    progress: bool = True,
    feature_model: str = "lenet",
) -> Classifier:
    """The classifier of the labelled image dataset ``train`` (a dataset object), trained on
    first use and cached under ``key`` (default ``train.name``), its resolution and channels.

    Its accuracy is measured on ``test`` (default: ``train``). ``feature_model`` is ``lenet``
    (default) or ``timm:NAME``, any timm architecture (:class:`TimmNet`), trained and cached the
    same way. :func:`gzoo.evaluation.classifier_for` builds the datasets from a name and options.
    """
    feature_model = parse_feature_model(feature_model)
    if isinstance(train, str):
        raise UsageError(f"get_classifier takes dataset objects since gzoo 0.2; for the registered dataset "
                         f"{train!r} use gzoo.evaluation.classifier_for({train!r}, resolution)")
    settings = settings or DEFAULT_SETTINGS
    key = key or getattr(train, "name", None) or "dataset"
    shape = tuple(train.image_shape)
    if len(shape) != 3:
        raise UsageError(f"dataset {key!r} holds points of shape {shape}, not images: use the mode metrics instead")
    channels, resolution = shape[0], shape[-1]
    if not (MIN_RESOLUTION <= resolution <= MAX_RESOLUTION):
        raise UsageError(
            f"the feature classifier takes {MIN_RESOLUTION}-{MAX_RESOLUTION} px images, got {resolution} px"
        )
    if not train.num_classes or train.labels() is None:
        raise UsageError(
            f"dataset {key!r} has no labels, so gzoo cannot train its feature classifier; "
            "evaluate with Inception features (--inception-weights) instead"
        )
    weights, meta_path = cache_paths(key, resolution, channels, settings, feature_model)
    if weights.is_file() and meta_path.is_file():
        cached = _load_cached(weights, meta_path, channels, resolution, train.num_classes, feature_model)
        if isinstance(cached, Classifier):
            return cached
        bad, why = cached
        warnings.warn(f"the feature classifier cache file {bad} is corrupt ({why}); rebuilding it",
                      stacklevel=2)
    net, meta = train_classifier(train, test if test is not None else train, settings, progress=progress,
                                 feature_model=feature_model)
    meta.update(dataset=key, resolution=resolution, channels=channels, feature_model=feature_model,
                code_hash=code_hash(settings, feature_model), accuracy_split="test" if test is not None else "train")
    from ..checkpoint import save_checkpoint  # atomic write

    save_checkpoint(net.state_dict(), weights)
    _write_text_atomic(meta_path, json.dumps(meta, indent=2))
    return Classifier(net, meta)


def _load_cached(
    weights: Path, meta_path: Path, channels: int, resolution: int, num_classes: int, feature_model: str = "lenet"
) -> Classifier | tuple[Path, str]:
    """The cached classifier, or ``(file, what is wrong with it)``."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        return meta_path, type(exc).__name__
    if not isinstance(meta, dict) or meta.get("num_classes") != num_classes:
        got = meta.get("num_classes") if isinstance(meta, dict) else type(meta).__name__
        return meta_path, f"num_classes {got!r}, expected {num_classes}"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net = make_net(feature_model, channels, num_classes, resolution)
        net.load_state_dict(state)
        classifier = Classifier(net, meta)
    except Exception as exc:  # truncated zip, unpickling refused, missing or misshapen tensors...
        return weights, type(exc).__name__
    if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
        return weights, "non-finite weights"
    return classifier


def _write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def train_classifier(train: Any, test: Any, settings: TrainSettings, *, progress: bool = True,
                     feature_model: str = "lenet") -> tuple[nn.Module, dict]:
    """Train a :class:`LeNet` (or ``timm:NAME``) on ``train`` (Adam, cross-entropy); report
    accuracy on ``test``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    g = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    net = make_net(feature_model, train.image_shape[0], train.num_classes, train.image_shape[-1])
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    n = len(train)
    bs = min(settings.batch_size, n)
    steps = max(1, settings.min_steps, round(settings.epochs * (n // bs)))
    if settings.max_steps:
        steps = min(steps, settings.max_steps)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        what = "" if feature_model == "lenet" else f" ({feature_model})"
        task = bar.add_task(f"training the {train.name} feature classifier{what} (once; cached)", total=steps)
        perm, pos = torch.randperm(n, generator=g), 0
        for _ in range(steps):
            if pos + bs > n:
                perm, pos = torch.randperm(n, generator=g), 0
            x, y = train.get_batch(perm[pos : pos + bs])  # (B, C, H, W), (B,)
            pos += bs
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.advance(task)
    net.eval()
    x, y = test.get_batch(torch.arange(len(test)))
    with torch.no_grad():
        pred = torch.cat([net(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    acc = float((pred == y).float().mean())
    meta = {"num_classes": train.num_classes, "test_accuracy": acc, "train_size": n, "test_size": len(test),
            "steps": steps, "settings": asdict(settings)}
    return net, meta
