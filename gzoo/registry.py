"""The component registry: every generator, discriminator, loss, regularizer, block,
dataset and conditioner that gzoo knows, with its options.

Plugins register components through the ``gzoo_register_components(register)`` hook.
``register`` is :meth:`Registry.register` bound to the calling plugin, so duplicate
names, aliases and option discovery are handled here, in one place.

A component's *options* are the keyword arguments of its factory that have defaults,
minus the *context* arguments the trainer supplies (``image_shape``, ``num_classes``,
``channels``). Values given as strings (from the CLI) are parsed as YAML scalars and
checked against the annotation (``int | None`` is an ``int`` option that also takes
``null``) or else the default's type. Google-style ``Args:`` sections of the factory's
docstring (for a class: the class docstring, then ``__init__``'s) become the options' help.

Registration checks what can be known without building anything -- every factory argument
that is not a context argument has a default, a class implements its kind's interface
(:data:`INTERFACES`), a preset type-checks, a name is free -- and raises
:class:`RegistrationError` otherwise (the plugin manager turns that into a warning and skips
the entry for third-party plugins). :meth:`Registry.create` checks what factories return,
which is all that can be checked of a function.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from torch import nn

from .config import RunConfig, float_from_text
from .data import check_dataset
from .errors import GzooError, UnknownNameError, UsageError, one_line, suggest
from .interfaces import Block, Discriminator, Generator, Loss, MetricFamily, Regularizer

KINDS = ("generator", "discriminator", "loss", "regularizer", "block", "dataset", "conditioner", "visualizer",
         "metric")

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
    "metric": (),
}

#: hints for names that are not options (any more): ``{option: what to use instead}``.
#: :meth:`ComponentSpec.validate` adds the hint to the unknown-option error.
OPTION_HINTS: dict[str, str] = {
    "sn": "spectral norm is the regularizer --reg sn",
}

_NULLS = ("null", "Null", "NULL", "~")


@dataclass(frozen=True)
class Option:
    """One option of a component: a keyword argument of its factory, with its default.

    ``type`` is ``bool``, ``int``, ``float``, ``str``, ``tuple`` or None (not checked);
    ``optional`` is True when the option also takes None (``int | None``, or a None default).
    """

    name: str
    default: Any
    type: type | None
    help: str = ""
    optional: bool = False

    @property
    def type_name(self) -> str:
        """``"int"``, ``"float | None"``, ``"any"``..."""
        if self.type is None:
            return "any"
        return f"{self.type.__name__} | None" if self.optional else self.type.__name__

    def coerce(self, value: Any, *, owner: str) -> Any:
        """Parse ``value`` (a CLI string or a Python value) and check its type."""
        if isinstance(value, str) and self.type is not str:
            try:
                value = yaml.safe_load(value) if value != "" else value
            except yaml.YAMLError:
                pass
        elif isinstance(value, str) and self.optional and value in _NULLS:
            value = None
        t = self.type
        if t is None:
            return value
        if value is None:
            if self.optional:
                return None
            raise UsageError(f"option {self.name!r} of {owner} must be {t.__name__}, got None")
        if t is float:
            value = float_from_text(value)
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t is tuple and isinstance(value, list):
            return tuple(value)
        if t is str and not isinstance(value, str):
            return str(value)
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise UsageError(
                f"option {self.name!r} of {owner} must be {self.type_name}, got {value!r}"
            )
        return value

    def describe(self) -> dict[str, Any]:
        """``{"type", "default", "help"}`` (JSON-friendly)."""
        return {"type": self.type_name, "default": _jsonable(self.default), "help": self.help}


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
    def default_reg(self) -> tuple[str, ...]:
        """The regularizers the component asks for (:attr:`gzoo.interfaces.Discriminator.default_reg`;
        empty for most)."""
        return tuple(getattr(self.factory, "default_reg", ()))

    @property
    def default_reg_opt(self) -> dict[str, dict[str, Any]]:
        """The options of those regularizers (:attr:`gzoo.interfaces.Discriminator.default_reg_opt`)."""
        return {name: dict(opts) for name, opts in getattr(self.factory, "default_reg_opt", {}).items()}

    @property
    def wasserstein_opt(self) -> dict[str, Any]:
        """The options a generator takes under a Wasserstein loss unless the run sets them
        (:attr:`gzoo.interfaces.Generator.wasserstein_opt`; empty for most)."""
        return dict(getattr(self.factory, "wasserstein_opt", {}) or {})

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description (used by ``gzoo list --json`` and registry.yaml).

        ``options`` maps each option to its default; ``option_details`` adds its type and help.
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "plugin": self.plugin,
            "summary": self.summary,
            "paper": self.paper,
            "aliases": list(self.aliases),
            "conditional": self.conditional if self.kind in ("generator", "discriminator") else None,
            "default_reg": list(self.default_reg),
            "default_reg_opt": {name: {k: _jsonable(v) for k, v in opts.items()}
                                for name, opts in self.default_reg_opt.items()},
            "wasserstein_opt": {k: _jsonable(v) for k, v in self.wasserstein_opt.items()},
            "options": {o.name: _jsonable(o.default) for o in self.options.values()},
            "option_details": {o.name: o.describe() for o in self.options.values()},
        }

    def validate(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check option names and types; return coerced options."""
        out = {}
        owner = f"{self.kind} {self.name!r}"
        for key, value in options.items():
            if key not in self.options:
                valid = ", ".join(f"{o.name}={_jsonable(o.default)!r}" for o in self.options.values())
                hint = f" ({OPTION_HINTS[key]})" if key in OPTION_HINTS else ""
                raise UnknownNameError(
                    f"{owner} has no option {key!r}{hint}.{suggest(key, self.options)} "
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


# -- options --------------------------------------------------------------------------------


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    """The arguments a call of ``factory`` takes (a class's ``__init__`` without ``self``)."""
    if inspect.isclass(factory):
        params = list(inspect.signature(factory.__init__).parameters.values())
        return params[1:]
    return list(inspect.signature(factory).parameters.values())


def options_from_signature(factory: Callable[..., Any], context: tuple[str, ...]) -> dict[str, Option]:
    """Discover options from the keyword arguments (with defaults) of ``factory``.

    Types come from the annotations (``int``, ``int | None``, ``Optional[float]``...) or else
    from the defaults; help from the docstrings' ``Args:`` sections (:func:`doc_args`).
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = inspect.get_annotations(target, eval_str=True)
    except Exception:  # unresolvable annotations: fall back to the default's type
        hints = {}
    helps = doc_args(factory)
    opts: dict[str, Option] = {}
    for p in _parameters(factory):
        if p.name in ("self",) or p.name in context:
            continue
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is p.empty:
            continue
        t, optional = _simple_type(hints.get(p.name), p.default)
        opts[p.name] = Option(p.name, p.default, t, helps.get(p.name, ""), optional)
    return opts


_SIMPLE = (bool, int, float, str, tuple)


def _simple_type(hint: Any, default: Any) -> tuple[type | None, bool]:
    """``(type, optional)`` of an option, from its annotation or else its default."""
    optional = default is None
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, (rest[0] if len(rest) == 1 else None)
    for t in _SIMPLE:
        if hint is t or (t is tuple and typing.get_origin(hint) is tuple):
            return t, optional
    if default is not None and type(default) in _SIMPLE:
        return type(default), optional
    return None, optional


_SECTION = re.compile(r"^(\s*)(Args|Arguments|Keyword Args|Keyword Arguments|Parameters|Options):\s*$")
_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:(?:\s+(.*))?$")


def parse_args_section(doc: str) -> dict[str, str]:
    """``{name: description}`` from the Google-style ``Args:`` sections of ``doc``.

    An entry is ``name: text`` or ``name (type): text``; more-indented lines continue it
    and are joined with single spaces. ``Arguments:``, ``Keyword Args:`` and ``Parameters:``
    sections are read too.
    """
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    i = 0
    while i < len(lines):
        m = _SECTION.match(lines[i])
        i += 1
        if not m:
            continue
        indent = len(m.group(1))
        entry_indent: int | None = None
        current: str | None = None
        while i < len(lines):
            line = lines[i]
            text = line.strip()
            width = len(line) - len(line.lstrip())
            if text and width <= indent:
                break  # the section ended
            i += 1
            if not text:
                continue
            if entry_indent is None:
                entry_indent = width
            entry = _ENTRY.match(text) if width <= entry_indent else None
            if entry:
                current = entry.group(1)
                out[current] = (entry.group(2) or "").strip()
            elif current is not None:
                out[current] = f"{out[current]} {text}".strip()
    return out


def doc_args(factory: Callable[..., Any]) -> dict[str, str]:
    """Option help of ``factory``: its docstring's ``Args:``; for a class, then ``__init__``'s."""
    helps = parse_args_section(inspect.getdoc(factory) or "")
    if inspect.isclass(factory):
        for name, text in parse_args_section(inspect.getdoc(factory.__init__) or "").items():
            helps.setdefault(name, text)
    return helps


# -- interfaces and registration problems ---------------------------------------------------

#: the base class of each kind whose interface gzoo checks (at registration for classes, on
#: what :meth:`Registry.create` builds for functions).
INTERFACES: dict[str, type] = {
    "generator": Generator,
    "discriminator": Discriminator,
    "loss": Loss,
    "regularizer": Regularizer,
    "block": Block,
    "metric": MetricFamily,
}

#: what a regularizer without a penalty must override to do anything.
REGULARIZER_HOOKS = ("after_d_step", "after_g_step", "wrap_discriminator", "wrap_generator")


def _overrides(cls: type, base: type, method: str) -> bool:
    return getattr(cls, method, None) is not getattr(base, method, None)


def interface_problems(kind: str, cls: type) -> list[str]:
    """What ``cls`` (registered as, or built by a factory of, ``kind``) lacks; [] if nothing."""
    base = INTERFACES.get(kind)
    if base is None:
        return []
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        name = getattr(cls, "__name__", repr(cls))
        return [f"{name} is not a gzoo.interfaces.{base.__name__}; subclass it"]
    problems = []
    if kind == "generator" and not _overrides(cls, Generator, "forward"):
        problems.append("it does not implement forward(z, y=None) -> (N, *image_shape)")
    elif kind == "discriminator" and not _overrides(cls, Discriminator, "features"):
        problems.append("it does not implement features(x) -> (N, d)")
    elif kind == "loss":
        missing = [m for m in ("d_loss", "g_loss") if not _overrides(cls, Loss, m)]
        if missing:
            problems.append(f"it does not implement {' and '.join(missing)}")
    elif kind == "regularizer":
        if cls.has_penalty and not _overrides(cls, Regularizer, "penalty"):
            problems.append("has_penalty is True but it does not implement "
                            "penalty(D, real, fake, y_real, y_fake)")
        elif not cls.has_penalty and not any(_overrides(cls, Regularizer, m) for m in REGULARIZER_HOOKS):
            problems.append("it has no penalty (has_penalty = False) and overrides none of "
                            f"{', '.join(REGULARIZER_HOOKS)}, so it does nothing")
    elif kind == "block" and not _overrides(cls, Block, "forward"):
        problems.append("it does not implement forward(x) -> (N, C, H, W)")
    elif kind == "metric":
        if not _overrides(cls, MetricFamily, "measure"):
            problems.append("it does not implement measure(samples, data, metrics, ...) -> dict")
        elif not cls.names:
            problems.append("its names (the metrics it reports) are empty")
    return problems


class RegistrationError(UsageError):
    """A component or preset that cannot be registered, and why, in one line:
    ``generator 'resmlp' of plugin 'x': argument 'width' has no default; ...``.

    The plugin manager turns it into a warning and skips the entry for third-party plugins.
    """

    def __init__(self, kind: str, name: str, plugin: str, problem: str) -> None:
        self.kind, self.name, self.plugin, self.problem = kind, name, plugin, problem
        super().__init__(f"{kind} {name!r} of plugin {plugin!r}: {problem}")

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


class NameConflictError(RegistrationError):
    """The name or an alias is taken: by :attr:`kept_name` of plugin :attr:`kept`."""

    def __init__(self, kind: str, name: str, plugin: str, *, key: str, kept: str, kept_name: str) -> None:
        self.key, self.kept, self.kept_name = key, kept, kept_name
        if key != name:
            problem = f"its alias {key!r} is already registered by {kept!r}"
            problem += f" (an alias of {kept_name!r})" if kept_name != key else ""
        elif kept_name != key:
            problem = f"{key!r} is already an alias of {kind} {kept_name!r} of plugin {kept!r}"
        else:
            problem = f"already registered by {kept!r}"
        super().__init__(kind, name, plugin, problem)


# -- the registry ---------------------------------------------------------------------------


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
        """Add one component; :class:`RegistrationError` when it cannot work (see the module)."""

        def fail(problem: str) -> RegistrationError:
            return RegistrationError(kind, name, plugin, problem)

        if kind not in KINDS:
            raise fail(f"unknown kind {kind!r}.{suggest(str(kind), KINDS)} Valid kinds: {', '.join(KINDS)}")
        if not isinstance(name, str) or not name.strip():
            raise fail("the name must be a non-empty string")
        aliases = (aliases,) if isinstance(aliases, str) else tuple(aliases)
        for key in (name, *aliases):
            other = self._lookup(kind, key)
            if other is not None:
                raise NameConflictError(kind, name, plugin, key=key, kept=other.plugin, kept_name=other.name)
        if not callable(factory):
            raise fail(f"the factory must be a class or a function, got a {type(factory).__name__}")
        context = tuple(CONTEXT_ARGS[kind])
        try:
            params = _parameters(factory)
        except (TypeError, ValueError) as exc:
            raise fail(f"cannot read the arguments of its factory: {one_line(exc)}") from None
        for p in params:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in context:
                continue
            if p.default is p.empty:
                raise fail(f"argument {p.name!r} has no default; every option needs one")
        if inspect.isclass(factory):
            problems = interface_problems(kind, factory)
            if problems:
                raise fail(problems[0])
        present_context = tuple(c for c in context if any(p.name == c for p in params))
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
            aliases=aliases,
            options=options_from_signature(factory, context),
            context=present_context,
        )
        self._specs[kind][name] = spec
        for a in spec.aliases:
            self._aliases[kind][a] = name
        return spec

    def register_preset(self, name: str, settings: dict[str, Any], *, plugin: str = "?") -> None:
        """Add a named preset; its settings must type-check as a :class:`RunConfig` update."""
        if name in self.presets:
            raise NameConflictError("preset", name, plugin, key=name, kept=self.preset_plugins[name], kept_name=name)
        if not isinstance(settings, dict):
            raise RegistrationError("preset", name, plugin,
                                    f"settings must be a mapping of run settings, got a {type(settings).__name__}")
        source = f"preset {name!r} of plugin {plugin!r}"
        try:
            RunConfig().updated(settings, source=source)
        except UsageError as exc:
            problem = str(exc).removeprefix(f"{source}: ")
            raise RegistrationError("preset", name, plugin, problem) from None
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

    def find(self, name: str) -> list[ComponentSpec]:
        """Every component called ``name`` (or with that alias), one per kind at most."""
        return [s for s in (self._lookup(k, name) for k in KINDS) if s is not None]

    def names(self) -> list[str]:
        """Every component name and alias, and every preset name (for did-you-mean hints)."""
        out = {n for k in KINDS for n in (*self._specs[k], *self._aliases[k])}
        return sorted(out | set(self.presets))

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
        """Build a component. ``kwargs`` holds options and context arguments.

        What the factory returns is checked (:meth:`check_built`) before it is handed out.
        """
        spec = self.get(kind, name)
        context = {k: kwargs.pop(k) for k in list(kwargs) if k in CONTEXT_ARGS[kind]}
        insert = kwargs.pop("insert", None) if kind in ("generator", "discriminator") else None
        if context.get("num_classes") and not spec.conditional:
            raise UsageError(
                f"{kind} {name!r} cannot be class-conditioned (it takes no num_classes); "
                f"conditional {plural(kind)}: {', '.join(s.name for s in self.list(kind) if s.conditional)}"
            )
        given = dict(context)
        context = {k: v for k, v in context.items() if k in spec.context}
        options = spec.validate(kwargs)
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        failed = f"could not build {kind} {name!r}" + (f" with {shown}" if shown else "")
        try:
            with warnings.catch_warnings():  # torch's warning for zero-size layers; reported below
                warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
                obj = spec.factory(**context, **options)
        except GzooError:
            raise
        except Exception as exc:  # a bad option value the factory itself rejects (ch=-4, ...)
            raise UsageError(f"{failed}: {type(exc).__name__}: {one_line(exc)}") from exc
        self.check_built(spec, obj, given)
        if isinstance(obj, nn.Module) and any(p.numel() == 0 for p in obj.parameters()):
            raise UsageError(f"{failed}: it has layers of size 0 (a width or size option is 0)")
        if insert:
            self._insert_blocks(obj, insert, owner=f"{kind} {name!r}")
        return obj

    @staticmethod
    def check_built(spec: ComponentSpec, obj: Any, context: dict[str, Any]) -> None:
        """Check what ``spec``'s factory returned; one-line :class:`UsageError` otherwise.

        Datasets: :func:`gzoo.data.check_dataset`. Generators, discriminators, losses,
        regularizers and blocks: the right base class and interface; a generator has an int
        ``latent_dim > 0`` and the ``image_shape`` it was given; a discriminator that keeps the
        default ``forward`` has a ``head``.
        """
        kind = spec.kind
        if kind == "dataset":
            check_dataset(obj, spec.name, spec.plugin)
            return
        base = INTERFACES.get(kind)
        if base is None:
            return
        owner = f"{kind} {spec.name!r} (plugin {spec.plugin!r})"
        if not isinstance(obj, base):
            raise UsageError(f"{owner} returned a {type(obj).__name__}, not a gzoo.interfaces.{base.__name__}")
        if type(obj) is not spec.factory:  # a registered class was checked at registration
            problems = interface_problems(kind, type(obj))
            if problems:
                raise UsageError(f"{owner} returned a {type(obj).__name__}: {problems[0]}")
        if kind == "generator":
            latent = getattr(obj, "latent_dim", None)
            if not isinstance(latent, int) or isinstance(latent, bool) or latent <= 0:
                raise UsageError(f"{owner}: latent_dim must be an int > 0, got {latent!r} "
                                 "(set self.latent_dim in __init__)")
            want = context.get("image_shape")
            got = getattr(obj, "image_shape", None)
            if want is not None and not (isinstance(got, tuple | list) and tuple(got) == tuple(want)):
                raise UsageError(f"{owner}: image_shape is {got!r}, but it was built for "
                                 f"{tuple(want)!r}; set self.image_shape = tuple(image_shape)")
        elif kind == "discriminator" and not _overrides(type(obj), Discriminator, "forward"):
            if not isinstance(getattr(obj, "head", None), nn.Module):
                raise UsageError(f"{owner}: it keeps the default forward, which needs self.head "
                                 "(a gzoo.interfaces.ConditionalHead); set it or implement forward(x, y=None)")

    def _insert_blocks(self, model: Any, insert: str | list[str], *, owner: str) -> None:
        """Handle ``insert=BLOCK@RES[:KEY=VALUE[:KEY=VALUE...]]`` for models that declare stages.

        ``insert`` is one such item, several joined by commas, or a list of them (a config
        file's YAML list; ``--gen-opt insert=...`` given several times). Blocks are built with
        ``create("block", BLOCK, channels=<the stage's channels>, **options)`` (options checked
        like any component's) and appended after the stage whose output has ``RES`` pixels a
        side, in the order given (several blocks at one resolution run one after the other).
        """
        items = insert if isinstance(insert, list | tuple) else [insert]
        items = [part for item in items for part in str(item).split(",") if part.strip()]
        resolutions = model.stage_resolutions() if hasattr(model, "stage_resolutions") else []
        for item in items:
            head, *opts = str(item).strip().split(":")
            block_name, sep, res = head.strip().partition("@")
            res = res.strip()
            if not sep or not block_name.strip() or not res.isdigit():
                raise UsageError(f"insert={item!r} for {owner}: expected BLOCK@RESOLUTION[:KEY=VALUE...], "
                                 "e.g. gca@8 or gca@8:k=4")
            spec = self.get("block", block_name.strip())  # unknown name: did-you-mean
            options: dict[str, Any] = {}
            for opt in opts:
                key, eq, value = opt.partition("=")
                if not eq or not key.strip():
                    raise UsageError(f"insert={item!r} for {owner}: block options are KEY=VALUE after a colon, "
                                     f"got {opt!r} (e.g. {spec.name}@{res}:KEY=VALUE)")
                options[key.strip()] = value.strip()
            if not resolutions:
                raise UsageError(f"{owner} declares no stages, so no block can be inserted "
                                 "(valid resolutions: none)")
            if int(res) not in resolutions:
                raise UsageError(f"insert={item!r}: {owner} has no stage of resolution {res}; "
                                 f"valid resolutions: {', '.join(map(str, resolutions))}")
            channels = model.stage_channels(int(res))
            if "channels" in options:
                raise UsageError(f"insert={item!r} for {owner}: 'channels' comes from the stage "
                                 f"({channels} at {res}x{res}); do not set it")
            block = self.create("block", spec.name, channels=channels, **options)
            model.insert_block(block, int(res))
