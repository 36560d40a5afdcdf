"""Run configuration: one dataclass, documented field by field.

Precedence, lowest first: these defaults < ``--preset`` < ``--config FILE.yaml`` <
explicit command-line flags. A run directory keeps the resolved config in
``config.yaml`` and in every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UnknownNameError, UsageError, suggest


@dataclass
class RunConfig:
    # -- components -----------------------------------------------------------------------
    gen: str = "dcgan"  #: generator name (``gzoo list --kind generator``)
    disc: str = "dcgan"  #: discriminator name
    loss: str = "nonsaturating"  #: loss name
    reg: list[str] = field(default_factory=list)  #: regularizer names
    data: str = "digits"  #: dataset name
    cond: str | None = None  #: conditioner: None, "labels", or a plugin's ("selfcond")
    gen_opt: dict[str, Any] = field(default_factory=dict)
    disc_opt: dict[str, Any] = field(default_factory=dict)
    loss_opt: dict[str, Any] = field(default_factory=dict)
    reg_opt: dict[str, dict[str, Any]] = field(default_factory=dict)  #: regularizer name -> options
    data_opt: dict[str, Any] = field(default_factory=dict)
    cond_opt: dict[str, Any] = field(default_factory=dict)
    # -- schedule -------------------------------------------------------------------------
    steps: int = 600  #: generator updates (ignored when ``epochs`` is set)
    epochs: float | None = None  #: passes over the data by D; overrides ``steps``
    batch_size: int = 64
    n_critic: int = 1  #: D updates per G update
    # -- optimisation ---------------------------------------------------------------------
    optimizer: str = "adam"  #: "adam" or "rmsprop"
    lr: float = 2e-4  #: learning rate of G (and of D unless ``lr_d``)
    lr_d: float | None = None
    betas: tuple[float, float] = (0.5, 0.999)  #: Adam betas
    cosine: bool = False  #: cosine learning-rate decay to 0 over the run
    grad_clip: float = 0.0  #: clip gradient norms of G and D (0 = off)
    ema: float = 0.0  #: EMA decay of G's weights (0 = off; e.g. 0.999)
    # -- run ------------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"  #: "auto", "cpu", "cuda", "cuda:1"...
    out: str | None = None  #: run directory (default ``runs/<gen>-<disc>-<loss>-<data>``)
    log_every: int = 10  #: steps between metrics.jsonl lines
    sample_every: int = 100  #: steps between sample grids (0 = only at the end)
    ckpt_every: int = 500  #: steps between checkpoints (0 = only at the end)
    n_samples: int = 64  #: images in a sample grid
    eval_every: int = 0  #: steps between evaluations (0 = off); keeps checkpoints/best.pt
    eval_metric: str = "fid_lenet"  #: metric that decides the best checkpoint
    eval_n: int = 2500  #: samples per periodic evaluation
    viz: list[str] = field(default_factory=list)  #: visualizers run at every sample grid
    progress: bool = True  #: rich progress bar

    OPTIMIZERS = ("adam", "rmsprop")

    # ---------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> RunConfig:
        return cls().updated(d, source=source)

    def updated(self, d: dict[str, Any], *, source: str = "config") -> RunConfig:
        """A copy with ``d`` applied (option dicts are merged key by key)."""
        names = self.field_names()
        new = dataclasses.replace(self)
        for key, value in d.items():
            key = key.replace("-", "_")
            if key not in names:
                raise UnknownNameError(
                    f"{source}: unknown setting {key!r}.{suggest(key, names)} Valid settings: {', '.join(names)}"
                )
            if key.endswith("_opt") and isinstance(value, dict):
                merged = dict(getattr(new, key))
                if key == "reg_opt":
                    for rname, opts in value.items():
                        merged[rname] = {**merged.get(rname, {}), **dict(opts)}
                else:
                    merged.update(value)
                value = merged
            if key in ("reg", "viz") and isinstance(value, str):
                value = [value]
            if key == "betas" and value is not None:
                value = tuple(float(b) for b in value)
            setattr(new, key, value)
        new.check()
        return new

    def check(self) -> None:
        """Reject settings that cannot work, with the valid choices."""
        if self.optimizer not in self.OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(self.OPTIMIZERS)}")
        for name in ("batch_size", "n_critic"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UsageError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.epochs is None and (not isinstance(self.steps, int) or self.steps < 0):
            raise UsageError(f"steps must be a non-negative integer, got {self.steps!r}")
        if self.epochs is not None and self.epochs <= 0:
            raise UsageError(f"epochs must be positive, got {self.epochs!r}")
        if not (0.0 <= self.ema < 1.0):
            raise UsageError(f"ema must be in [0, 1), got {self.ema}")
        if self.lr <= 0 or (self.lr_d is not None and self.lr_d <= 0):
            raise UsageError("learning rates must be positive")
        if self.grad_clip < 0:
            raise UsageError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if len(self.betas) != 2:
            raise UsageError(f"betas must be two numbers, got {self.betas!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def default_name(self) -> str:
        cond = f"-{self.cond}" if self.cond else ""
        return f"{self.gen}-{self.disc}-{self.loss}-{self.data}{cond}-s{self.seed}"


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {p} must hold a mapping of settings, got {type(data).__name__}")
    return data


def save_yaml(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
