"""The plugin manager: loads built-in and third-party plugins and builds the registry.

Plugins come from the ``gzoo`` entry-point group -- built-ins (``gzoo_classic``,
``gzoo_coc``, ...) included -- plus gzoo's own default plugin modules listed in
:data:`DEFAULT_PLUGINS`.

Load order: :data:`DEFAULT_PLUGINS`, then the entry points of gzoo's own distribution, then
third-party entry points, each group sorted by entry-point name. A name is kept by the first
plugin that registers it, so built-ins always win, and between two third-party plugins the
first by entry-point name wins.

Environment variables:

``GZOO_DISABLE_PLUGIN_AUTOLOAD=1``
    Load only the plugins that ship with gzoo itself; skip third-party entry points.
``GZOO_DISABLE_PLUGINS=name1,name2``
    Block individual plugins by entry-point name.
``GZOO_DEBUG=1``
    Add the traceback to each plugin warning.

Problems of third-party plugins never stop gzoo; each gives one :class:`PluginWarning`:

* a component or preset whose name (or alias) is taken, or that breaks its contract
  (:class:`gzoo.registry.RegistrationError`), is skipped; the rest of the plugin loads;
* a plugin that fails to import, raises while registering, or implements a hook gzoo does
  not have (a typo such as ``gzoo_after_g_setp``) or with arguments gzoo does not pass, is
  skipped as a whole.

The same problems in a built-in plugin are errors.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import (
    hookimpl,  # noqa: F401  (re-exported for plugins)
    hookspecs,
)
from .errors import GzooError, UsageError, one_line
from .registry import NameConflictError, RegistrationError, Registry

#: modules of the core that are plugins themselves (registered first).
DEFAULT_PLUGINS = ("gzoo.default_plugins.datasets", "gzoo.default_plugins.conditioning", "gzoo.default_plugins.evaluation")

#: the distribution that owns the built-in entry points.
OWN_DIST = "gzoo"

#: where :meth:`PluginManager.register` plugins say they come from.
RUNTIME = "(runtime)"


class PluginWarning(UserWarning):
    """A plugin, or one of its components, failed to load or register; it is skipped."""


@dataclass
class PluginInfo:
    """What ``gzoo plugins`` shows about one plugin."""

    name: str
    module: str
    dist: str
    version: str
    builtin: bool
    #: ids (``kind:name``) of the components it registered
    components: list[str] = field(default_factory=list)
    #: the hooks it implements (``gzoo_after_g_step``...)
    hooks: list[str] = field(default_factory=list)
    #: entries skipped because another plugin has the name: ``"generator:dcgan (kept: classic)"``
    conflicts: list[str] = field(default_factory=list)
    #: entries skipped because they break the contract: ``"generator:resmlp: argument ..."``
    problems: list[str] = field(default_factory=list)
    #: why the whole plugin was skipped
    error: str | None = None


class PluginManager:
    """pluggy's manager plus the registry built from its plugins."""

    def __init__(self, *, autoload: bool | None = None) -> None:
        self.pm = pluggy.PluginManager("gzoo")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.info: dict[str, PluginInfo] = {}
        if autoload is None:
            autoload = not _truthy(os.environ.get("GZOO_DISABLE_PLUGIN_AUTOLOAD"))
        self.autoload = autoload
        self._load()

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # -- loading ------------------------------------------------------------------------------
    def _load(self) -> None:
        version = _dist_version(OWN_DIST)
        for modname in DEFAULT_PLUGINS:
            module = importlib.import_module(modname)
            self._add(modname.rsplit(".", 1)[-1], module, dist=OWN_DIST, version=version, builtin=True)
        blocked = {n.strip() for n in os.environ.get("GZOO_DISABLE_PLUGINS", "").split(",") if n.strip()}
        eps = sorted(metadata.entry_points(group="gzoo"), key=lambda e: e.name)
        own = [ep for ep in eps if _is_own(ep)]
        third = [ep for ep in eps if not _is_own(ep)] if self.autoload else []
        loaded: dict[str, tuple[str, str]] = {}  # entry-point name -> (distribution, value)
        for ep in own + third:
            builtin = _is_own(ep)
            dist = ep.dist.name if ep.dist is not None else "?"
            dversion = ep.dist.version if ep.dist is not None else "?"
            if ep.name in blocked:
                continue
            if ep.name in loaded or ep.name in self.info:
                if loaded.get(ep.name) != (dist, ep.value):  # not the same one found twice
                    owner = self.info[ep.name].dist if ep.name in self.info else loaded[ep.name][0]
                    _warn(f"gzoo plugin {ep.name!r} ({dist} {dversion}): the plugin name {ep.name!r} "
                          f"is already taken by {owner}; it is skipped")
                continue
            loaded[ep.name] = (dist, ep.value)
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break gzoo
                if builtin:
                    raise
                self._fail(ep.name, ep.value, dist, dversion, f"failed to import: {_describe(exc)}", exc)
                continue
            self._add(ep.name, module, dist=dist, version=dversion, builtin=builtin)

    def _fail(self, name: str, module: str, dist: str, version: str, why: str,
              exc: BaseException | None = None) -> None:
        self.info[name] = PluginInfo(name, module, dist, version, False, error=why)
        _warn(f"{_label(name, dist, version)} {why}; it is skipped", exc)

    def _add(self, name: str, plugin: Any, *, dist: str, version: str, builtin: bool) -> None:
        """Register one plugin object, check its hooks, register its components."""
        modname = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name, modname, dist, version, builtin)
        try:
            self._register_hooks(name, plugin)
            self._register_components(info)
        except Exception as exc:
            self.registry.unregister_plugin(name)
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            if builtin:
                raise
            self._fail(name, modname, dist, version, f"failed to register: {_describe(exc)}", exc)
            return
        info.components = [s.id for s in self.registry.list() if s.plugin == name]
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or ())
        self.info[name] = info

    def _register_hooks(self, name: str, plugin: Any) -> None:
        """``pm.register`` and ``pm.check_pending``, with one-line messages naming the hook."""
        valid = sorted(n for n, f in vars(hookspecs).items() if n.startswith("gzoo_") and callable(f))
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise UsageError(_bad_arguments(self.pm, plugin, valid) or one_line(exc)) from exc
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = sorted(
                hc.name for hc in self.pm.get_hookcallers(plugin) or ()
                if not hc.has_spec() and any(i.plugin is plugin and not i.optionalhook for i in hc.get_hookimpls())
            )
            if unknown:  # else: registered straight into pluggy by someone else, not this plugin
                hook = unknown[0]
                close = difflib.get_close_matches(hook, valid, n=1, cutoff=0.5)
                hint = f" Did you mean {close[0]!r}?" if close else f" gzoo's hooks: {', '.join(valid)}"
                raise UsageError(f"it implements {hook!r}, which is not a gzoo hook.{hint}") from exc
        for attr in valid:  # a hook function without @gzoo.hookimpl is never called
            func = getattr(plugin, attr, None)
            if callable(func) and self.pm.parse_hookimpl_opts(plugin, attr) is None:
                _warn(f"gzoo plugin {name!r}: {attr} is not marked @gzoo.hookimpl, so gzoo never calls it")

    def _register_components(self, info: PluginInfo) -> None:
        plugin = self.pm.get_plugin(info.name)
        for hookname, reg in (
            ("gzoo_register_components", self.registry.register),
            ("gzoo_register_presets", self.registry.register_preset),
        ):
            for impl in getattr(self.pm.hook, hookname).get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=self._bind(reg, info))

    def declared_options(self, name: str) -> dict[str, Any] | None:
        """The ``{key: default}`` options plugin ``name`` declares (``gzoo_plugin_options``),
        or None when it declares none."""
        plugin = self.pm.get_plugin(name)
        for impl in self.pm.hook.gzoo_plugin_options.get_hookimpls():
            if impl.plugin is plugin:
                options = impl.function()
                if not isinstance(options, dict):
                    raise UsageError(f"plugin {name!r}: gzoo_plugin_options must return a dict of defaults, "
                                     f"got {type(options).__name__}")
                return options
        return None

    def _bind(self, reg: Any, info: PluginInfo) -> Any:
        """``reg`` for plugin ``info``: a problem skips the entry (third party) or raises (built-in)."""

        def register(*args: Any, **kwargs: Any) -> Any:
            try:
                return reg(*args, plugin=info.name, **kwargs)
            except RegistrationError as exc:
                if info.builtin:
                    raise
                where = None
                if _debug():  # the plugin's own lines: where it called register
                    where = ("".join(traceback.format_stack(sys._getframe(1)))
                             + "".join(traceback.format_exception_only(exc)))
                self._skip(info, exc, where)
                return None

        return register

    def _skip(self, info: PluginInfo, exc: RegistrationError, where: str | None = None) -> None:
        label = _label(info.name, info.dist, info.version)
        if isinstance(exc, NameConflictError):
            clash = "the name" if exc.key == exc.name else f"its alias {exc.key!r}"
            info.conflicts.append(f"{exc.id} ({clash} kept by {exc.kept})")
            sep = " is " if exc.key == exc.name == exc.kept_name else ": "
            what = f"{exc.kind} {exc.name!r}{sep}{exc.problem}"
            _warn(f"{label}: {what}; {info.name}'s {exc.name} is skipped", exc, where)
        else:
            info.problems.append(f"{exc.id}: {exc.problem}")
            _warn(f"{label}: {exc}; it is skipped", exc, where)

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin at run time (tests, notebooks). Returns its name.

        Like an entry point, except that a plugin that cannot register at all raises
        :class:`GzooError` (after its warning). Entries that clash or break the contract are
        skipped with a warning, as for third-party plugins.
        """
        name = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
        if name in self.info or self.pm.has_plugin(name):
            raise UsageError(f"a plugin named {name!r} is already registered; choose another name")
        self._add(name, plugin, dist=RUNTIME, version="", builtin=False)
        if name not in self.info or self.info[name].error:
            why = self.info[name].error if name in self.info else "could not be registered"
            self.info.pop(name, None)
            raise GzooError(f"plugin {name!r} {why}")
        return name

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.registry.unregister_plugin(name)
        self.info.pop(name, None)

    def versions(self) -> dict[str, str]:
        return {n: i.version for n, i in self.info.items() if not i.error}


def _bad_arguments(pm: pluggy.PluginManager, plugin: Any, valid: list[str]) -> str:
    """A one-line reason for pluggy's validation error: a hook asking for unknown arguments."""
    for attr in valid:
        # pluggy >= 1.6 reads the attribute without a default: ask only for what the plugin has
        if not hasattr(plugin, attr) or pm.parse_hookimpl_opts(plugin, attr) is None:
            continue
        try:
            asked = list(inspect.signature(getattr(plugin, attr)).parameters)
        except (TypeError, ValueError):
            continue
        given = list(inspect.signature(getattr(hookspecs, attr)).parameters)
        extra = [a for a in asked if a not in given]
        if extra:
            return (f"its {attr} asks for {', '.join(map(repr, extra))}, which gzoo does not pass; "
                    f"{attr} gets: {', '.join(given)}")
    return ""


def _warn(message: str, exc: BaseException | None = None, where: str | None = None) -> None:
    """One :class:`PluginWarning`; with ``GZOO_DEBUG=1``, the traceback follows: ``where``
    (the stack of a plugin's call) or else that of ``exc``."""
    if exc is not None and _debug():
        trace = where or "".join(traceback.format_exception(exc))
        if not trace.startswith("Traceback"):
            trace = "Traceback (most recent call last):\n" + trace
        message += "\n" + trace.rstrip()
    warnings.warn(message, PluginWarning, stacklevel=4)


def _debug() -> bool:
    return _truthy(os.environ.get("GZOO_DEBUG"))


def _label(name: str, dist: str, version: str) -> str:
    where = "registered at run time" if dist == RUNTIME else f"{dist} {version}".strip()
    return f"gzoo plugin {name!r} ({where})"


def _describe(exc: BaseException) -> str:
    """``exc`` in one line: gzoo's own errors by their message, others with their type."""
    if isinstance(exc, GzooError):
        return one_line(exc)
    return f"{type(exc).__name__}: {one_line(exc)}"


def _is_own(ep: metadata.EntryPoint) -> bool:
    return ep.dist is not None and _normalize(ep.dist.name) == OWN_DIST


def _truthy(v: str | None) -> bool:
    return bool(v) and v.strip().lower() not in ("0", "false", "no", "")


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-")


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0+unknown"


_MANAGER: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (built on first use)."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
    return _MANAGER


def reset_plugin_manager() -> None:
    """Forget the cached manager (tests; after changing GZOO_* variables)."""
    global _MANAGER
    _MANAGER = None
