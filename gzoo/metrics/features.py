"""The domain feature extractor: a LeNet-style classifier trained on the real data.

Pretrained Inception weights cannot be downloaded here, so gzoo measures images in the
feature space of a small CNN it trains itself, once per (dataset, resolution), on the
real training split. It is cached under ``$GZOO_CACHE`` (default ``~/.cache/gzoo``) in
``classifiers/<dataset>-r<resolution>-c<channels>-<code hash>.pt`` with a JSON file
beside it that records its test accuracy. The code hash covers this file and the
training settings, so changing either retrains.

* ``features(x)``: the 128-d penultimate layer (FID, KID, precision/recall...).
* ``probs(x)``: softmax class probabilities (Inception-Score analogue, class histograms).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError

FEATURE_DIM = 128


def cache_dir() -> Path:
    return Path(os.environ.get("GZOO_CACHE", "~/.cache/gzoo")).expanduser() / "classifiers"


class LeNet(nn.Module):
    """conv5-pool-conv5-pool -> 7x7 -> fc 128 (features) -> fc classes."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7), nn.Flatten(),
            nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        )
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x))


@dataclass
class TrainSettings:
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


class Classifier:
    """A trained :class:`LeNet` with batched ``features``/``probs`` on any device."""

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
        return self._batched(x, self.net.body)

    def logits(self, x: Tensor) -> Tensor:
        return self._batched(x, self.net)

    def probs(self, x: Tensor) -> Tensor:
        return self.logits(x).softmax(1)


def code_hash(settings: TrainSettings) -> str:
    src = Path(__file__).read_bytes()
    return hashlib.sha256(src + repr(settings).encode()).hexdigest()[:12]


def _paths(dataset: str, resolution: int, channels: int, settings: TrainSettings) -> tuple[Path, Path]:
    stem = f"{dataset}-r{resolution}-c{channels}-{code_hash(settings)}"
    return cache_dir() / f"{stem}.pt", cache_dir() / f"{stem}.json"


def get_classifier(
    dataset: str,
    resolution: int,
    *,
    settings: TrainSettings | None = None,
    progress: bool = True,
    registry: Any = None,
    data_opt: dict[str, Any] | None = None,
) -> Classifier:
    """The cached classifier for ``dataset`` at ``resolution``; trained on first use."""
    from ..plugins import get_plugin_manager

    settings = settings or TrainSettings()
    registry = registry or get_plugin_manager().registry
    data_opt = {k: v for k, v in (data_opt or {}).items() if k not in ("resolution", "split")}
    if "resolution" not in registry.get("dataset", dataset).options:
        raise UsageError(f"dataset {dataset!r} holds points, not images: use the mode metrics instead")
    train = registry.create("dataset", dataset, **data_opt, resolution=resolution, split="train")
    if len(train.image_shape) != 3:
        raise UsageError(f"dataset {dataset!r} holds points, not images: use the mode metrics instead")
    if not train.num_classes or train.labels() is None:
        raise UsageError(
            f"dataset {dataset!r} has no labels, so gzoo cannot train its feature classifier; "
            "evaluate with Inception features (--inception-weights) instead"
        )
    channels = train.image_shape[0]
    weights, meta_path = _paths(dataset, resolution, channels, settings)
    if weights.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        net = LeNet(channels, meta["num_classes"])
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return Classifier(net, meta)
    test = registry.create("dataset", dataset, **data_opt, resolution=resolution, split="test")
    net, meta = train_classifier(train, test, settings, progress=progress)
    meta.update(dataset=dataset, resolution=resolution, channels=channels, code_hash=code_hash(settings))
    weights.parent.mkdir(parents=True, exist_ok=True)
    from ..run import save_checkpoint

    save_checkpoint(net.state_dict(), weights)
    meta_path.write_text(json.dumps(meta, indent=2))
    return Classifier(net, meta)


def train_classifier(train: Any, test: Any, settings: TrainSettings, *, progress: bool = True) -> tuple[LeNet, dict]:
    """Train a :class:`LeNet` on ``train``; report accuracy on ``test``."""
    from rich.progress import Progress

    g = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    net = LeNet(train.image_shape[0], train.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    n = len(train)
    steps_per_epoch = max(1, n // settings.batch_size)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"training the {train.name} feature classifier", total=settings.epochs * steps_per_epoch)
        for _ in range(settings.epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(steps_per_epoch):
                x, y = train.get_batch(perm[i * settings.batch_size : (i + 1) * settings.batch_size])
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
    return net, {"num_classes": train.num_classes, "test_accuracy": acc, "train_size": n, "test_size": len(test),
                 "settings": vars(settings)}
