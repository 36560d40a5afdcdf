"""The plugin manager: loads built-in and third-party plugins and builds the registry.

Plugins come from the ``gzoo`` entry-point group -- built-ins (``gzoo_classic``,
``gzoo_coc``, ...) included -- plus gzoo's own default plugin modules listed in
:data:`DEFAULT_PLUGINS`.

Environment variables:

``GZOO_DISABLE_PLUGIN_AUTOLOAD=1``
    Load only the plugins that ship with gzoo itself; skip third-party entry points.
``GZOO_DISABLE_PLUGINS=name1,name2``
    Block individual plugins by entry-point name.

A third-party plugin that fails to import or register gives one warning naming it;
everything else keeps working.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import (
    hookimpl,  # noqa: F401  (re-exported for plugins)
    hookspecs,
)
from .errors import GzooError
from .registry import Registry

#: modules of the core that are plugins themselves (registered first).
DEFAULT_PLUGINS = ("gzoo.datasets", "gzoo.conditioning", "gzoo.evaluation")

#: the distribution that owns the built-in entry points.
OWN_DIST = "gzoo"


class PluginWarning(UserWarning):
    """A plugin failed to load or register; it is skipped."""


@dataclass
class PluginInfo:
    name: str
    module: str
    dist: str
    version: str
    builtin: bool
    components: list[str] = field(default_factory=list)
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
        seen = set()
        for ep in sorted(metadata.entry_points(group="gzoo"), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "?"
            builtin = _normalize(dist) == OWN_DIST
            if ep.name in blocked or ep.name in seen or (not builtin and not self.autoload):
                continue
            seen.add(ep.name)
            dversion = ep.dist.version if ep.dist is not None else "?"
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break gzoo
                if builtin:
                    raise
                self._fail(ep.name, ep.value, dist, dversion, f"failed to import: {exc!r}")
                continue
            self._add(ep.name, module, dist=dist, version=dversion, builtin=builtin)

    def _fail(self, name: str, module: str, dist: str, version: str, why: str) -> None:
        self.info[name] = PluginInfo(name, module, dist, version, False, error=why)
        warnings.warn(f"gzoo plugin {name!r} ({dist} {version}) {why}; it is skipped", PluginWarning, stacklevel=3)

    def _add(self, name: str, plugin: Any, *, dist: str, version: str, builtin: bool) -> None:
        """Register one plugin object and the components it declares."""
        modname = getattr(plugin, "__name__", type(plugin).__name__)
        try:
            self.pm.register(plugin, name=name)
            self._register_components(name)
        except GzooError:
            raise  # duplicate names: a clear error naming both plugins
        except Exception as exc:
            self.registry.unregister_plugin(name)
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            if builtin:
                raise
            self._fail(name, modname, dist, version, f"failed to register: {exc!r}")
            return
        comps = [s.id for s in self.registry.list() if s.plugin == name]
        self.info[name] = PluginInfo(name, modname, dist, version, builtin, comps)

    def _register_components(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        for hookname, reg in (
            ("gzoo_register_components", self.registry.register),
            ("gzoo_register_presets", self.registry.register_preset),
        ):
            for impl in getattr(self.pm.hook, hookname).get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=_bind_plugin(reg, name))

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin at run time (tests, notebooks). Returns its name."""
        name = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
        self._add(name, plugin, dist="(runtime)", version="", builtin=False)
        if name not in self.info or self.info[name].error:
            raise GzooError(f"plugin {name!r} could not be registered: {self.info.get(name)}")
        return name

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.registry.unregister_plugin(name)
        self.info.pop(name, None)

    def versions(self) -> dict[str, str]:
        return {n: i.version for n, i in self.info.items() if not i.error}


def _bind_plugin(reg: Any, plugin: str) -> Any:
    def register(*args: Any, **kwargs: Any) -> Any:
        return reg(*args, plugin=plugin, **kwargs)

    return register


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
