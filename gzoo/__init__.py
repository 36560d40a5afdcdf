"""gzoo: a plugin-based zoo of generative adversarial architectures for PyTorch.

>>> import gzoo
>>> G = gzoo.create("generator", "dcgan", image_shape=(1, 28, 28))
>>> [s.name for s in gzoo.list_components("loss")]  # doctest: +SKIP
['hinge', 'lsgan', 'minimax', 'nonsaturating', 'wgan']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

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


__all__ = ["create", "list_components", "get_registry", "hookimpl", "__version__"]
