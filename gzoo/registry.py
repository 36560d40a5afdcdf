"""The component registry: every generator, discriminator, loss, regularizer, block,
dataset and conditioner that gzoo knows, with its options.

Plugins register components through the ``gzoo_register_components(register)`` hook.
``register`` is :meth:`Registry.register` bound to the calling plugin, so duplicate
names, aliases and option discovery are handled here, in one place.

A component's *options* are the keyword arguments of its factory that have defaults,
minus the *context* arguments the trainer supplies (``image_shape``, ``num_classes``,
``channels``). Values given as strings (from the CLI) are parsed as YAML scalars and
checked against the default's type.
"""

from __future__ import annotations

import fnmatch
import inspect
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from torch import nn

from .errors import GzooError, UnknownNameError, UsageError, one_line, suggest

KINDS = ("generator", "discriminator", "loss", "regularizer", "block", "dataset", "conditioner", "visualizer")

#: arguments the trainer passes to factories; they are not user options.
CONTEXT_ARGS = {
    "generator": ("image_shape", "num_classes"),
    "discriminator": ("image_shape", "num_classes"),
    "block": ("channels",),
    "dataset": (),
    "loss": (),
    "regularizer": (),
    "conditioner": ("dataset",),
    "visualizer": ("run", "out"),
}


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    type: type | None
    help: str = ""

    def coerce(self, value: Any, *, owner: str) -> Any:
        """Parse ``value`` (a CLI string or a Python value) and check its type."""
        if isinstance(value, str) and self.type is not str:
            try:
                value = yaml.safe_load(value) if value != "" else value
            except yaml.YAMLError:
                pass
        t = self.type
        if t is None or value is None:
            return value
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t is tuple and isinstance(value, list):
            return tuple(value)
        if t is str and not isinstance(value, str):
            return str(value)
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise UsageError(
                f"option {self.name!r} of {owner} must be {t.__name__}, got {value!r}"
            )
        return value


@dataclass
class ComponentSpec:
    """One registry entry."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    summary: str = ""
    paper: str = ""
    aliases: tuple[str, ...] = ()
    options: dict[str, Option] = field(default_factory=dict)
    context: tuple[str, ...] = ()

    @property
    def conditional(self) -> bool:
        """Whether the component accepts ``num_classes`` (can be class-conditioned)."""
        return "num_classes" in self.context

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description (used by ``gzoo list --json`` and registry.yaml)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "plugin": self.plugin,
            "summary": self.summary,
            "paper": self.paper,
            "aliases": list(self.aliases),
            "conditional": self.conditional if self.kind in ("generator", "discriminator") else None,
            "options": {o.name: _jsonable(o.default) for o in self.options.values()},
        }

    def validate(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check option names and types; return coerced options."""
        out = {}
        owner = f"{self.kind} {self.name!r}"
        for key, value in options.items():
            if key not in self.options:
                valid = ", ".join(f"{o.name}={_jsonable(o.default)!r}" for o in self.options.values())
                raise UnknownNameError(
                    f"{owner} has no option {key!r}.{suggest(key, self.options)} "
                    f"Valid options: {valid or 'none'}"
                )
            out[key] = self.options[key].coerce(value, owner=owner)
        return out


def plural(kind: str) -> str:
    """``loss`` -> ``losses``, ``generator`` -> ``generators``."""
    return kind + ("es" if kind.endswith("s") else "s")


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v


def options_from_signature(factory: Callable[..., Any], context: tuple[str, ...]) -> dict[str, Option]:
    """Discover options from the keyword arguments (with defaults) of ``factory``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    sig = inspect.signature(target)
    try:
        hints = inspect.get_annotations(target, eval_str=True)
    except Exception:  # unresolvable annotations: fall back to the default's type
        hints = {}
    opts: dict[str, Option] = {}
    for p in sig.parameters.values():
        if p.name in ("self",) or p.name in context:
            continue
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is p.empty:
            continue
        t = _simple_type(hints.get(p.name), p.default)
        opts[p.name] = Option(p.name, p.default, t)
    return opts


def _simple_type(hint: Any, default: Any) -> type | None:
    for t in (bool, int, float, str, tuple):
        if hint is t:
            return t
    if default is not None and type(default) in (bool, int, float, str, tuple):
        return type(default)
    return None


class Registry:
    """All components by kind and name."""

    def __init__(self) -> None:
        self._specs: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}
        self._aliases: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        self.presets: dict[str, dict[str, Any]] = {}
        self.preset_plugins: dict[str, str] = {}

    # -- registration ------------------------------------------------------------------
    def register(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        *,
        plugin: str = "?",
        summary: str = "",
        paper: str = "",
        aliases: tuple[str, ...] | list[str] = (),
    ) -> ComponentSpec:
        if kind not in KINDS:
            raise UsageError(
                f"plugin {plugin!r} registers unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}"
            )
        context = tuple(CONTEXT_ARGS[kind])
        target = factory.__init__ if inspect.isclass(factory) else factory
        params = inspect.signature(target).parameters
        present_context = tuple(c for c in context if c in params)
        if not summary:
            doc = inspect.getdoc(factory) or ""
            summary = doc.strip().splitlines()[0] if doc.strip() else ""
        spec = ComponentSpec(
            kind=kind,
            name=name,
            factory=factory,
            plugin=plugin,
            summary=summary,
            paper=paper,
            aliases=tuple(aliases),
            options=options_from_signature(factory, context),
            context=present_context,
        )
        for key in (name, *spec.aliases):
            other = self._lookup(kind, key)
            if other is not None:
                raise UsageError(
                    f"{kind} name {key!r} is claimed by two plugins: {other.plugin!r} and {plugin!r}. "
                    f"Uninstall or disable one of them (GZOO_DISABLE_PLUGINS={plugin})."
                )
        self._specs[kind][name] = spec
        for a in spec.aliases:
            self._aliases[kind][a] = name
        return spec

    def register_preset(self, name: str, settings: dict[str, Any], *, plugin: str = "?") -> None:
        if name in self.presets:
            raise UsageError(
                f"preset {name!r} is claimed by two plugins: {self.preset_plugins[name]!r} and {plugin!r}"
            )
        self.presets[name] = dict(settings)
        self.preset_plugins[name] = plugin

    def unregister_plugin(self, plugin: str) -> None:
        for kind in KINDS:
            for name in [n for n, s in self._specs[kind].items() if s.plugin == plugin]:
                spec = self._specs[kind].pop(name)
                for a in spec.aliases:
                    self._aliases[kind].pop(a, None)
        for name in [n for n, p in self.preset_plugins.items() if p == plugin]:
            self.presets.pop(name)
            self.preset_plugins.pop(name)

    # -- lookup --------------------------------------------------------------------------
    def _lookup(self, kind: str, name: str) -> ComponentSpec | None:
        name = self._aliases[kind].get(name, name)
        return self._specs[kind].get(name)

    def get(self, kind: str, name: str) -> ComponentSpec:
        if kind not in KINDS:
            raise UnknownNameError(f"unknown kind {kind!r}.{suggest(kind, KINDS)} Valid kinds: {', '.join(KINDS)}")
        spec = self._lookup(kind, name)
        if spec is None:
            names = sorted(self._specs[kind]) + sorted(self._aliases[kind])
            raise UnknownNameError(
                f"unknown {kind} {name!r}.{suggest(name, names)} "
                f"Valid {plural(kind)}: {', '.join(sorted(self._specs[kind])) or 'none'} (see `gzoo list --kind {kind}`)"
            )
        return spec

    def get_preset(self, name: str) -> dict[str, Any]:
        if name not in self.presets:
            raise UnknownNameError(
                f"unknown preset {name!r}.{suggest(name, self.presets)} "
                f"Valid presets: {', '.join(sorted(self.presets)) or 'none'}"
            )
        return dict(self.presets[name])

    def list(self, kind: str | None = None, pattern: str | None = None) -> list[ComponentSpec]:
        kinds = KINDS if kind is None else (kind,)
        if kind is not None and kind not in KINDS:
            raise UnknownNameError(f"unknown kind {kind!r}.{suggest(kind, KINDS)} Valid kinds: {', '.join(KINDS)}")
        out = []
        for k in kinds:
            for name in sorted(self._specs[k]):
                if pattern is None or fnmatch.fnmatch(name, pattern):
                    out.append(self._specs[k][name])
        return out

    def __iter__(self) -> Iterator[ComponentSpec]:
        return iter(self.list())

    # -- construction --------------------------------------------------------------------
    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        """Build a component. ``kwargs`` holds options and context arguments."""
        spec = self.get(kind, name)
        context = {k: kwargs.pop(k) for k in list(kwargs) if k in CONTEXT_ARGS[kind]}
        insert = kwargs.pop("insert", None) if kind in ("generator", "discriminator") else None
        if context.get("num_classes") and not spec.conditional:
            raise UsageError(
                f"{kind} {name!r} cannot be class-conditioned (it takes no num_classes); "
                f"conditional {plural(kind)}: {', '.join(s.name for s in self.list(kind) if s.conditional)}"
            )
        context = {k: v for k, v in context.items() if k in spec.context}
        options = spec.validate(kwargs)
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        failed = f"could not build {kind} {name!r}" + (f" with {given}" if given else "")
        try:
            with warnings.catch_warnings():  # torch's warning for zero-size layers; reported below
                warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
                obj = spec.factory(**context, **options)
        except GzooError:
            raise
        except Exception as exc:  # a bad option value the factory itself rejects (ch=-4, ...)
            raise UsageError(f"{failed}: {type(exc).__name__}: {one_line(exc)}") from exc
        if isinstance(obj, nn.Module) and any(p.numel() == 0 for p in obj.parameters()):
            raise UsageError(f"{failed}: it has layers of size 0 (a width or size option is 0)")
        if insert:
            self._insert_blocks(obj, insert, owner=f"{kind} {name!r}")
        return obj

    def _insert_blocks(self, model: Any, insert: str | list[str], *, owner: str) -> None:
        """Handle ``insert=NAME@RES[,NAME@RES...]`` for models that declare stages."""
        items = insert if isinstance(insert, list | tuple) else str(insert).split(",")
        for item in items:
            block_name, sep, res = str(item).strip().partition("@")
            if not sep or not res.isdigit():
                raise UsageError(f"insert={item!r} for {owner}: expected BLOCK@RESOLUTION, e.g. gca@8")
            if not hasattr(model, "insert_block"):
                raise UsageError(f"{owner} declares no stages, so no block can be inserted")
            channels = model.stage_channels(int(res))
            block = self.create("block", block_name, channels=channels)
            model.insert_block(block, int(res))
