"""Run configuration: one dataclass, documented field by field.

Precedence, lowest first: these defaults < ``--preset`` < ``--config FILE.yaml`` <
explicit command-line flags. A run directory keeps the resolved config in
``config.yaml`` and in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
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
    #: options of plugins that act through hooks: plugin name -> options (``--plugin-opt NAME.KEY=V``)
    plugin_opt: dict[str, dict[str, Any]] = field(default_factory=dict)
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
    eval_metric: str | None = None  #: metric that decides the best checkpoint (None: the data's first,
    #: e.g. fid_lenet for images, modes for ring/grid)
    eval_n: int = 2500  #: samples per periodic evaluation
    viz: list[str] = field(default_factory=list)  #: visualizers run at every sample grid
    progress: bool = True  #: rich progress bar
    # -- speed (may change when resuming; docs/distributed.md) -------------------------------
    amp: str = "off"  #: mixed precision of the forward passes: "off", "bf16" or "fp16" (CUDA, with a gradient scaler)
    compile: bool = False  #: train through torch.compile'd G and D
    channels_last: bool = False  #: channels-last memory format for image models and batches
    sync_bn: bool = True  #: under torch.distributed on CUDA, BatchNorm statistics over all ranks (SyncBatchNorm)

    OPTIMIZERS = ("adam", "rmsprop")
    AMP = ("off", "bf16", "fp16")

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
            value = _coerce(key, value, source)
            if key.endswith("_opt"):
                merged = dict(getattr(new, key))
                if key in ("reg_opt", "plugin_opt"):
                    for rname, opts in value.items():
                        merged[rname] = {**merged.get(rname, {}), **opts}
                else:
                    merged.update(value)
                value = merged
            setattr(new, key, value)
        new.check()
        return new

    def check(self) -> None:
        """Reject settings that cannot work, with the valid choices."""
        if self.optimizer not in self.OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(self.OPTIMIZERS)}")
        if self.amp not in self.AMP:
            raise UsageError(f"unknown amp mode {self.amp!r}; valid: {', '.join(self.AMP)}")
        for name in ("batch_size", "n_critic"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UsageError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.epochs is None and (not isinstance(self.steps, int) or self.steps < 0):
            raise UsageError(f"steps must be a non-negative integer, got {self.steps!r}")
        if self.epochs is not None and not (math.isfinite(self.epochs) and self.epochs > 0):
            raise UsageError(f"epochs must be positive, got {self.epochs!r}")
        if not (0.0 <= self.ema < 1.0):
            raise UsageError(f"ema must be in [0, 1), got {self.ema}")
        for name in ("lr", "lr_d"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name} must be a positive finite number, got {value!r}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise UsageError(f"grad_clip must be a finite number >= 0, got {self.grad_clip}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise UsageError(f"betas must be two numbers in [0, 1), got {list(self.betas)!r}")
        for name in ("log_every", "sample_every", "ckpt_every", "eval_every"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        for name in ("n_samples", "eval_n"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be a positive integer, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def default_name(self) -> str:
        cond = f"-{self.cond}" if self.cond else ""
        return f"{self.gen}-{self.disc}-{self.loss}-{self.data}{cond}-s{self.seed}"


# -- typed settings -------------------------------------------------------------------------

_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


def _describe(tp: Any) -> str:
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        return _describe(next(a for a in args if a is not type(None))) + " or null"
    if origin is list:
        return "a list of strings (or one string)"
    if origin is tuple:
        return f"a list of {len(args)} numbers"
    if origin is dict:
        return "a mapping (KEY: VALUE)"
    return str(tp)


def _coerce(key: str, value: Any, source: str) -> Any:
    """``value`` as the type of setting ``key``, or one clear :class:`UsageError`.

    Config files and presets are YAML, so ``lr: fast`` or ``betas: 0.5`` reach here as a
    string and a float; they must fail here rather than deep inside the trainer.
    """
    tp = _field_types()[key]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if type(None) in args:  # Optional[X]
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    ok, out = True, value
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        value = float_from_text(value)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        out = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is list:
        out = [value] if isinstance(value, str) else value
        ok = isinstance(out, list | tuple) and all(isinstance(v, str) for v in out)
        out = list(out) if ok else out
    elif origin is tuple:
        value = [float_from_text(v) for v in value] if isinstance(value, list | tuple) else value
        ok = (isinstance(value, list | tuple) and len(value) == len(args)
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))
        out = tuple(float(v) for v in value) if ok else value
    elif origin is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        if ok and key in ("reg_opt", "plugin_opt"):
            ok = all(isinstance(v, dict) for v in value.values())
    if not ok:
        raise UsageError(f"{source}: setting {key!r} must be {_describe(_field_types()[key])}, got {value!r}")
    return out


def float_from_text(value: Any) -> Any:
    """``"1e-4"`` -> ``0.0001``: YAML 1.1 (PyYAML) reads exponents without a decimal point as
    strings, so a float setting or option written ``1e-4`` arrives as text. Other values pass
    through unchanged (the caller's type check then names them)."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value
        if math.isfinite(number):
            return number
    return value


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


def save_yaml(config: RunConfig, path: Path, notes: list[str] | tuple[str, ...] = ()) -> None:
    """Write ``config`` as YAML; ``notes`` (settings gzoo chose for the user) become comments."""
    header = "".join(f"# {n}\n" for n in notes)
    path.write_text(header + yaml.safe_dump(config.to_dict(), sort_keys=False))


# -- settings a loss cannot do without -------------------------------------------------------

#: what a Wasserstein loss gets when no Lipschitz constraint is chosen (Arjovsky et al. 2017:
#: weight clipping at 0.01 and RMSprop; CoC-GAN §4.2 trains its WGAN version the same way).
WGAN_DEFAULTS = {"reg": "clip", "optimizer": "rmsprop"}


def complete_for_loss(config: RunConfig, registry: Any, explicit: Any = None) -> tuple[RunConfig, list[str]]:
    """Add what the chosen loss needs and the user left out; returns the config and notes.

    A Wasserstein critic (``loss.wasserstein``) is unbounded without a Lipschitz
    constraint, and training then diverges or draws noise. When none of ``config.reg`` is
    one (``Regularizer.lipschitz``: clip, gp, sn), weight clipping is added and, unless the
    optimizer was chosen (``explicit`` holds the settings the user gave; default: those
    that differ from :class:`RunConfig`'s defaults), RMSprop, as the WGAN paper does.
    Under any Wasserstein loss the generator's ``wasserstein_opt`` fills the options its
    ``gen_opt`` leaves unset (:func:`wasserstein_gen_opt`).
    """
    if not getattr(registry.get("loss", config.loss).factory, "wasserstein", False):
        return config, []
    config, notes = wasserstein_gen_opt(config, registry)
    if any(getattr(registry.get("regularizer", r).factory, "lipschitz", False) for r in config.reg):
        return config, notes
    explicit = _explicit(config, explicit)
    changes: dict[str, Any] = {"reg": [*config.reg, WGAN_DEFAULTS["reg"]]}
    if "optimizer" not in explicit:
        changes["optimizer"] = WGAN_DEFAULTS["optimizer"]
    clip = wgan_clip_text(wgan_clip(registry.get("discriminator", config.disc).factory, config.reg_opt.get("clip", {})))
    added = ", ".join(f"{k}={v if k != 'reg' else f'clip ({clip})'}" for k, v in changes.items())
    note = (f"loss {config.loss!r} needs a Lipschitz constraint on D and none was given: gzoo added {added} "
            "(WGAN paper; CoC-GAN §4.2). Choose one yourself with --reg clip, gp or sn.")
    return config.updated(changes, source="wgan defaults"), [note, *notes]


def pin_clip(config: RunConfig, registry: Any) -> RunConfig:
    """``config`` with the clipping it will train with written into ``reg_opt.clip`` (bound and
    parameters, :func:`wgan_clip`), when ``clip`` is one of its regularizers.

    The bound left to the discriminator (``clip_bound``) is a default of gzoo's code; pinned in the
    run's saved settings, a run resumed under a later gzoo whose default moved keeps the bound it
    started with (as the generator's ``wasserstein_opt`` is kept in ``gen_opt``)."""
    if "clip" not in config.reg or not any(s.kind == "regularizer" for s in registry.find("clip")):
        return config
    given = config.reg_opt.get("clip", {})
    pinned = {**given, **wgan_clip(registry.get("discriminator", config.disc).factory, given)}
    if pinned == given:
        return config
    return config.updated({"reg_opt": {"clip": pinned}}, source="clip bound of the discriminator")


def wasserstein_gen_opt(config: RunConfig, registry: Any) -> tuple[RunConfig, list[str]]:
    """The generator's :attr:`~gzoo.interfaces.Generator.wasserstein_opt` that the run's
    ``gen_opt`` leaves unset, added to it; returns the config and a note (none when nothing is added)."""
    wanted = registry.get("generator", config.gen).wasserstein_opt
    added = {k: v for k, v in wanted.items() if k not in config.gen_opt}
    if not added:
        return config, []
    text = " ".join(f"--gen-opt {k}={v}" for k, v in added.items())
    note = (f"generator {config.gen!r} trains under a Wasserstein loss with {text} unless told otherwise "
            "(set them with --gen-opt to choose others).")
    return config.updated({"gen_opt": {**added, **config.gen_opt}}, source=f"{config.gen} wasserstein defaults"), [note]


#: WGAN weight clipping as the WGAN paper does it: every parameter to [-0.01, 0.01]
WGAN_CLIP = {"clip": 0.01, "params": "all"}


def wgan_clip(disc: Any, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``--reg clip`` does to discriminator class ``disc``: ``{"clip": bound, "params": which}``,
    the model's ``clip_bound`` and ``clip_params`` (:data:`WGAN_CLIP` unless it says otherwise) under
    the options ``given`` to ``clip`` (its ``None`` / ``"auto"`` defer to the model)."""
    out = {"clip": getattr(disc, "clip_bound", WGAN_CLIP["clip"]),
           "params": getattr(disc, "clip_params", WGAN_CLIP["params"])}
    return {**out, **{k: v for k, v in (given or {}).items() if k in out and v not in (None, "auto")}}


def wgan_clip_text(clip: dict[str, Any]) -> str:
    """``c=0.1, weight matrices only`` or ``c=0.01, every parameter``, for :func:`wgan_clip`'s result."""
    return f"c={clip['clip']}, {'weight matrices only' if clip['params'] == 'weights' else 'every parameter'}"


def plugin_options(config: RunConfig, plugin: str, defaults: Any) -> dict[str, Any]:
    """The options ``--plugin-opt PLUGIN.KEY=VALUE`` gave ``plugin`` in ``config``, over its
    ``defaults``; each value is checked against its default's type, unknown keys are refused."""
    from .registry import Option

    out = dict(defaults)
    for key, value in config.plugin_opt.get(plugin, {}).items():
        if key not in defaults:
            raise UsageError(f"plugin {plugin!r} has no option {key!r}; valid: "
                             + (", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"))
        default = defaults[key]
        option = Option(key, default, None if default is None else type(default))
        out[key] = option.coerce(value, owner=f"plugin {plugin!r}")
    return out


def complete_for_models(config: RunConfig, registry: Any, explicit: Any = None) -> tuple[RunConfig, list[str]]:
    """Add the regularizers the discriminator asks for (:attr:`Discriminator.default_reg
    <gzoo.interfaces.Discriminator.default_reg>`) when the run chose none; returns the config
    and notes.

    Nothing is added when the settings name ``reg`` (``explicit``, as in
    :func:`complete_for_loss`; ``--reg none`` names an empty list) or the loss is a
    Wasserstein one (it gets :func:`complete_for_loss`'s clipping, as its paper trains it); a
    regularizer that needs labels (``Regularizer.needs_labels``) only when the run is conditional.
    """
    spec = registry.get("discriminator", config.disc)
    labelled = () if config.cond else labelled_regs(registry, spec.default_reg)
    wanted = [r for r in spec.default_reg if any(s.kind == "regularizer" for s in registry.find(r))  # registered
              and r not in labelled]
    if not wanted or config.reg or "reg" in _explicit(config, explicit):
        return config, []
    if getattr(registry.get("loss", config.loss).factory, "wasserstein", False):
        return config, []
    given = config.reg_opt  # the run's own --reg-opt for them wins, key by key
    opts = {r: {**spec.default_reg_opt.get(r, {}), **given.get(r, {})} for r in wanted
            if spec.default_reg_opt.get(r) or given.get(r)}
    note = (f"discriminator {config.disc!r} trains with {default_reg_text(wanted, spec.default_reg_opt)} unless told "
            f"otherwise: gzoo added reg={','.join(wanted)}"
            + "".join(f" --reg-opt {r}.{k}={v}" for r, o in spec.default_reg_opt.items() if r in wanted
                      for k, v in o.items() if k not in given.get(r, {}))
            + ". Choose others with --reg, or --reg none for no regularizer.")
    return config.updated({"reg": wanted, "reg_opt": opts}, source=f"{config.disc} defaults"), [note]


def labelled_regs(registry: Any, names: Any) -> set[str]:
    """Those of ``names`` that are registered regularizers reading labels (``needs_labels``)."""
    return {r for r in names for s in registry.find(r)
            if s.kind == "regularizer" and getattr(s.factory, "needs_labels", False)}


def default_reg_text(regs: Any, opts: dict[str, dict[str, Any]], labelled: Any = ()) -> str:
    """``sn, r1 (weight=1.0), mismatch (conditional runs)``: a discriminator's default
    regularizers with their options; those in ``labelled`` are added to conditional runs only."""
    def notes(r: str) -> list[str]:
        return [f"{k}={v}" for k, v in opts.get(r, {}).items()] + (["conditional runs"] if r in labelled else [])

    return ", ".join(r + (" (" + ", ".join(notes(r)) + ")" if notes(r) else "") for r in regs)


def _explicit(config: RunConfig, explicit: Any) -> set[str]:
    """The settings the user gave: ``explicit``, or (None) those that differ from the defaults."""
    if explicit is not None:
        return set(explicit)
    default = RunConfig().to_dict()
    return {k for k, v in config.to_dict().items() if v != default[k]}
