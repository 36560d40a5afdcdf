"""Building a run's components, checkpoint I/O, and loading a finished run.

Shared by the trainer (:mod:`gzoo.trainer`) and by ``gzoo sample``/``eval``/``viz``,
so a run is rebuilt the same way everywhere.

Checkpoints are plain dicts of tensors, numbers, strings, lists and dicts, written
atomically (temp file + rename) and read with ``torch.load(weights_only=True)``: an
untrusted checkpoint cannot execute code.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import RunConfig
from .errors import CheckpointError, ShapeError, UsageError
from .interfaces import Discriminator, Generator

CHECKPOINT_FORMAT = "gzoo-checkpoint"
CHECKPOINT_VERSION = 1


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
        except (RuntimeError, ValueError) as exc:
            raise ShapeError(f"generator {config.gen!r} failed on a test batch for data of shape {image_shape}: {exc}") from None
        if tuple(x.shape[1:]) != image_shape:
            raise ShapeError(
                f"generator {config.gen!r} makes samples of shape {tuple(x.shape[1:])}, "
                f"but dataset {config.data!r} has shape {image_shape}"
            )
        try:
            out = D(x, y)
            feats = D.features(x)
        except (RuntimeError, ValueError) as exc:
            raise ShapeError(f"discriminator {config.disc!r} failed on samples of shape {image_shape}: {exc}") from None
        if tuple(out.shape) != (2,):
            raise ShapeError(f"discriminator {config.disc!r} returns logits of shape {tuple(out.shape)}, expected (N,)")
        if feats.dim() != 2:
            raise ShapeError(f"discriminator {config.disc!r} features() returns shape {tuple(feats.shape)}, expected (N, d)")
    finally:
        G.train(was[0]), D.train(was[1])


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return dev


@torch.no_grad()
def generate(
    G: Generator,
    n: int,
    *,
    cond: Any = None,
    seed: int = 0,
    batch_size: int = 500,
    y: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """``n`` samples on the CPU, in eval mode, reproducible from ``seed``.

    Labels come from ``y``, else the conditioner's ``fake_labels`` (class frequencies),
    else uniformly when G is conditional.
    """
    was = G.training
    G.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    try:
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
            z = G.sample_latent(b, generator=g)
            if options:
                x = G.sample(b, None if yb is None else yb.to(z.device), generator=g, **options)
            else:
                x = G(z, None if yb is None else yb.to(z.device))
            out.append(x.float().cpu())
    finally:
        G.train(was)
    return torch.cat(out) if out else torch.empty(0)


# -- checkpoint I/O ------------------------------------------------------------------------------


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load safely (``weights_only=True``) and check that it is a gzoo checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or unsafe, refusing to load it ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a gzoo checkpoint")
    if state.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer gzoo (format {state['format_version']}); upgrade gzoo")
    return state


def find_checkpoint(run_dir: Path, which: str = "last") -> Path:
    run_dir = Path(run_dir)
    if which in ("last", "best"):
        if not run_dir.is_dir():
            raise UsageError(f"run directory {run_dir} does not exist")
        path = run_dir / "checkpoints" / f"{which}.pt"
        if not path.is_file():
            have = sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
            raise CheckpointError(
                f"no {which!r} checkpoint in {run_dir}; available: {', '.join(have) or 'none (is this a gzoo run directory?)'}"
            )
        return path
    path = Path(which)
    if not path.is_absolute() and not path.exists():
        path = run_dir / which
    return path


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
        self.config = RunConfig.from_dict(self.state["config"], source=str(self.checkpoint_path))
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
            raise CheckpointError(f"checkpoint {self.checkpoint_path} does not match its config: {exc}") from None
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

    def generate(self, n: int, *, ema: bool = True, seed: int = 0, **options: Any) -> Tensor:
        G = self.generator(ema)
        return generate(G, n, cond=self.cond if G.num_classes else None, seed=seed, **options)


def load_run(run_dir: str | Path, which: str = "last", device: str = "cpu") -> LoadedRun:
    """Rebuild a run from ``run_dir/checkpoints/<which>.pt`` (or a checkpoint path)."""
    return LoadedRun(Path(run_dir), which, device)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
