"""Building a run's components, drawing samples, and loading a finished run.

Shared by the trainer (:mod:`gzoo.trainer`) and by ``gzoo sample``/``eval``/``viz``,
so a run is rebuilt the same way everywhere. Checkpoint files are read and written by
:mod:`gzoo.checkpoint` (re-exported here).

A run directory may come from someone else, so what a loaded run reads is bounded:
its checkpoint is loaded with ``weights_only=True`` and validated; its config never
downloads anything (``download`` is dropped from the data options); and sampling draws
labels from the class weights stored in the checkpoint, so ``gzoo sample`` reads no
training data at all.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (  # noqa: F401  (re-exported: ``from gzoo.run import load_checkpoint``)
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    find_checkpoint,
    load_checkpoint,
    nonfinite,
    save_checkpoint,
)
from .config import RunConfig
from .errors import CheckpointError, GzooError, ShapeError, UsageError, one_line
from .interfaces import Discriminator, Generator, _device_of


@dataclass
class Components:
    G: Generator
    D: Discriminator
    loss: Any
    regs: dict[str, Any]


def build_components(config: RunConfig, image_shape: tuple[int, ...], num_classes: int, registry: Any) -> Components:
    """Create G, D, loss and regularizers for ``config`` and check they fit the data."""
    image_shape = tuple(image_shape)
    G = registry.create("generator", config.gen, image_shape=image_shape, num_classes=num_classes, **config.gen_opt)
    D = registry.create("discriminator", config.disc, image_shape=image_shape, num_classes=num_classes, **config.disc_opt)
    loss = registry.create("loss", config.loss, **config.loss_opt)
    unknown = set(config.reg_opt) - set(config.reg)
    if unknown:
        raise UsageError(f"options given for regularizer(s) {sorted(unknown)} that are not in --reg {config.reg}")
    regs = {name: registry.create("regularizer", name, **config.reg_opt.get(name, {})) for name in config.reg}
    for r in regs.values():
        D = r.wrap_discriminator(D)
        G = r.wrap_generator(G)
    check_shapes(G, D, image_shape, config)
    return Components(G, D, loss, regs)


@torch.no_grad()
def check_shapes(G: Generator, D: Discriminator, image_shape: tuple[int, ...], config: RunConfig) -> None:
    """Refuse incompatible G/D/data before training starts, saying why."""
    was = G.training, D.training
    G.eval(), D.eval()
    try:
        y = torch.zeros(2, dtype=torch.long) if G.num_classes else None
        try:
            x = G(G.sample_latent(2), y)
        except GzooError:
            raise
        except Exception as exc:
            raise ShapeError(f"generator {config.gen!r} failed on a test batch for data of shape {image_shape}: "
                             f"{one_line(exc)}") from None
        if tuple(x.shape[1:]) != image_shape:
            raise ShapeError(
                f"generator {config.gen!r} makes samples of shape {tuple(x.shape[1:])}, "
                f"but dataset {config.data!r} has shape {image_shape}"
            )
        try:
            out = D(x, y)
            feats = D.features(x)
        except GzooError:
            raise
        except Exception as exc:
            raise ShapeError(f"discriminator {config.disc!r} failed on samples of shape {image_shape}: "
                             f"{one_line(exc)}") from None
        if tuple(out.shape) != (2,):
            raise ShapeError(f"discriminator {config.disc!r} returns logits of shape {tuple(out.shape)}, expected (N,)")
        if feats.dim() != 2:
            raise ShapeError(f"discriminator {config.disc!r} features() returns shape {tuple(feats.shape)}, expected (N, d)")
    finally:
        G.train(was[0]), D.train(was[1])


DEVICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(name: str) -> torch.device:
    """``name`` as a device this machine has, or one clear :class:`UsageError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {name!r}; valid: {DEVICES}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise UsageError(f"device {name!r} is not available: this machine has no CUDA device; use --device cpu or auto")
        if dev.index is not None and dev.index >= count:
            raise UsageError(f"device {name!r} is not available: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"device {name!r} is not available on this machine; use --device cpu or auto")
        return dev
    raise UsageError(f"cannot train on device {name!r}; valid: {DEVICES}")


def generate(
    G: Generator,
    n: int,
    *,
    cond: Any = None,
    seed: int = 0,
    batch_size: int = 500,
    y: Tensor | None = None,
    return_labels: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, Tensor | None]:
    """``n`` samples on the CPU, in eval mode, reproducible from ``seed``; with
    ``return_labels``, ``(samples, labels)`` (labels None for an unconditional G).

    Labels come from ``y``, else the conditioner's ``fake_labels`` (class frequencies),
    else uniformly when G is conditional.
    """
    xs, ys = [], []
    for x, yb in generate_batches(G, n, cond=cond, seed=seed, batch_size=batch_size, y=y, **options):
        xs.append(x)
        ys.append(yb)
    samples = torch.cat(xs) if xs else torch.empty(0)
    if not return_labels:
        return samples
    return samples, (torch.cat(ys) if ys and ys[0] is not None else None)


def generate_batches(
    G: Generator,
    n: int,
    *,
    cond: Any = None,
    seed: int = 0,
    batch_size: int = 500,
    y: Tensor | None = None,
    **options: Any,
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """:func:`generate` one CPU batch at a time, ``(samples, labels)`` (the same numbers):
    for output streamed to disk."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        if y is not None:
            yb = y[start : start + b]
        elif G.num_classes and cond is not None:
            yb = cond.fake_labels(b, generator=g)
        elif G.num_classes:
            yb = torch.randint(G.num_classes, (b,), generator=g)
        else:
            yb = None
        was = G.training
        G.eval()
        try:
            with torch.no_grad():
                yd = None if yb is None else yb.to(_device_of(G))  # where sample_latent puts z
                if options:  # G.sample draws the latents itself, as the plain path below does
                    x = G.sample(b, yd, generator=g, **options)
                else:
                    x = G(G.sample_latent(b, generator=g), yd)
        finally:
            G.train(was)
        yield x.float().cpu(), (None if yb is None else yb.cpu())


# -- loaded runs ---------------------------------------------------------------------------------


class LoadedRun:
    """A finished (or running) run rebuilt from its checkpoint, for sampling and evaluation."""

    def __init__(self, run_dir: Path, which: str = "last", device: str = "cpu", registry: Any = None):
        from .plugins import get_plugin_manager

        self.pm = get_plugin_manager()
        self.registry = registry or self.pm.registry
        self.run_dir = Path(run_dir)
        self.checkpoint_path = find_checkpoint(self.run_dir, which)
        self.state = load_checkpoint(self.checkpoint_path)
        self.config = untrusted_config(self.state["config"], source=str(self.checkpoint_path))
        self.device = resolve_device(device)
        self.step = int(self.state["step"])
        self.image_shape = tuple(self.state["image_shape"])
        self.num_classes = int(self.state["num_classes"])
        comps = build_components(self.config, self.image_shape, self.num_classes, self.registry)
        self.G, self.D, self.loss, self.regs = comps.G, comps.D, comps.loss, comps.regs
        try:
            self.G.load_state_dict(self.state["G"])
            self.D.load_state_dict(self.state["D"])
            self.G_ema: Generator | None = None
            if self.state.get("G_ema") is not None:
                self.G_ema = copy.deepcopy(self.G)
                self.G_ema.load_state_dict(self.state["G_ema"])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} does not match its config: {one_line(exc)}") from None
        bad = nonfinite(self.state["G"]) + nonfinite(self.state.get("G_ema") or {})
        if bad:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} holds non-finite generator weights "
                                  f"({', '.join(bad[:3])}); it cannot draw samples. Try --which best or an earlier run")
        for m in (self.G, self.D, self.G_ema):
            if m is not None:
                m.to(self.device).eval()
        self._datasets: dict[str, Any] = {}

    def dataset(self, split: str = "train") -> Any:
        if split not in self._datasets:
            opts = dict(self.config.data_opt)
            if split != "train":
                opts["split"] = split
            self._datasets[split] = self.registry.create("dataset", self.config.data, **opts)
        return self._datasets[split]

    @property
    def data(self) -> Any:
        return self.dataset("train")

    @cached_property
    def cond(self) -> Any:
        if not self.config.cond:
            return None
        cond = self.registry.create("conditioner", self.config.cond, dataset=self.data, **self.config.cond_opt)
        cond.setup(self)
        cond.load_state_dict(self.state.get("cond") or {})
        return cond

    def generator(self, ema: bool = True) -> Generator:
        return self.G_ema if (ema and self.G_ema is not None) else self.G

    @cached_property
    def labels(self) -> Any:
        """What draws the generator's labels: the class weights the conditioner stored in the
        checkpoint (no data read), else the rebuilt conditioner (reads the training data)."""
        weights = (self.state.get("cond") or {}).get("label_weights")
        if isinstance(weights, Tensor) and weights.dim() == 1 and len(weights) == self.num_classes:
            return StoredLabels(weights)
        return self.cond

    def generate(self, n: int, *, ema: bool = True, seed: int = 0, **options: Any) -> Any:
        """Like :meth:`gzoo.trainer.Trainer.generate` (``return_labels`` too); reads no data."""
        G = self.generator(ema)
        return generate(G, n, cond=self._label_source(G, options), seed=seed, **options)

    def generate_batches(self, n: int, *, ema: bool = True, seed: int = 0,
                         **options: Any) -> Iterator[tuple[Tensor, Tensor | None]]:
        G = self.generator(ema)
        return generate_batches(G, n, cond=self._label_source(G, options), seed=seed, **options)

    def _label_source(self, G: Generator, options: dict[str, Any]) -> Any:
        return self.labels if G.num_classes and options.get("y") is None else None


class StoredLabels:
    """Labels drawn like a conditioner's ``fake_labels``, from its stored ``label_weights``."""

    def __init__(self, weights: Tensor):
        self.weights = weights.double()

    def fake_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)


def untrusted_config(data: dict[str, Any], *, source: str) -> RunConfig:
    """The config of a checkpoint, which may come from someone else: it never downloads."""
    config = RunConfig.from_dict(data, source=source)
    if "download" in config.data_opt:
        config = dataclasses.replace(config, data_opt={k: v for k, v in config.data_opt.items() if k != "download"})
    return config


def load_run(run_dir: str | Path, which: str = "last", device: str = "cpu") -> LoadedRun:
    """Rebuild a run from ``run_dir/checkpoints/<which>.pt`` (or a checkpoint path)."""
    return LoadedRun(Path(run_dir), which, device)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
