"""gzoo: a plugin-based zoo of generative adversarial architectures for PyTorch.

>>> import gzoo
>>> G = gzoo.create("generator", "dcgan", image_shape=(1, 28, 28))
>>> [s.name for s in gzoo.list_components("loss")]  # doctest: +SKIP
['hinge', 'lsgan', 'minimax', 'nonsaturating', 'wgan']
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.2.0"

hookimpl = pluggy.HookimplMarker("gzoo")

if TYPE_CHECKING:  # pragma: no cover
    from .registry import ComponentSpec


def create(kind: str, name: str, /, **options: Any) -> Any:
    """Build a registered component: ``create("generator", "dcgan", image_shape=(1, 28, 28))``."""
    from .plugins import get_plugin_manager

    return get_plugin_manager().registry.create(kind, name, **options)


def list_components(kind: str | None = None, pattern: str | None = None) -> list[ComponentSpec]:
    """Registered components, optionally of one ``kind`` and matching a glob ``pattern``."""
    from .plugins import get_plugin_manager

    return get_plugin_manager().registry.list(kind, pattern)


def get_registry() -> Any:
    from .plugins import get_plugin_manager

    return get_plugin_manager().registry


#: modules that moved, old name -> new home. ``import gzoo.datasets`` still works and gives the
#: very module object of the new home (attributes, private names, monkeypatching: all the same).
MOVED = {
    "gzoo.datasets": "gzoo.default_plugins.datasets",
    "gzoo.conditioning": "gzoo.default_plugins.conditioning",
    "gzoo.evaluation": "gzoo.default_plugins.evaluation",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves the old names in :data:`MOVED` to their new modules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import system is about to overwrite it
        return module

    def exec_module(self, module: Any) -> None:
        # the new module is already executed; give it back its own spec, so that its relative
        # imports keep resolving against its real package
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())

__all__ = ["create", "list_components", "get_registry", "hookimpl", "__version__"]
