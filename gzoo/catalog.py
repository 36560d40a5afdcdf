"""The catalogue of built-in components and presets, as written to ``registry.yaml``.

``registry.yaml`` at the top of the repository is generated from the live registry and a
test keeps the two equal. After adding or changing a built-in component, run::

    python -m gzoo.catalog > registry.yaml
"""

from __future__ import annotations

from typing import Any

import yaml

HEADER = """\
# gzoo registry: the built-in plugins, their components and the paper presets.
# Generated from the live registry by `python -m gzoo.catalog > registry.yaml`;
# tests/test_registry_yaml.py keeps this file equal to what `gzoo list --json` reports.
"""


def catalog(pm: Any = None) -> dict[str, Any]:
    """Built-in plugins, components and presets (third-party plugins excluded)."""
    from .config import WGAN_CLIP, wgan_clip
    from .plugins import PluginManager

    pm = pm or PluginManager(autoload=False)
    builtin = {name for name, info in pm.info.items() if info.builtin}
    plugins = {name: {"module": pm.info[name].module} for name in sorted(builtin)}
    components = []
    for spec in pm.registry.list():
        if spec.plugin not in builtin:
            continue
        d = spec.describe()
        entry = {k: d[k] for k in ("kind", "name", "plugin", "paper", "summary")}
        if d["aliases"]:
            entry["aliases"] = d["aliases"]
        if d["conditional"] is not None:
            entry["conditional"] = d["conditional"]
        if d["default_reg"]:
            entry["default_reg"] = d["default_reg"]
        if d["default_reg_opt"]:
            entry["default_reg_opt"] = d["default_reg_opt"]
        if d["wasserstein_opt"]:
            entry["wasserstein_opt"] = d["wasserstein_opt"]
        clip = wgan_clip(spec.factory)
        if spec.kind == "discriminator" and clip != WGAN_CLIP:
            entry["wgan_clip"] = clip  # what --reg clip does to it without clip.clip / clip.params
        entry["options"] = d["options"]
        components.append(entry)
    presets = {
        name: {"plugin": pm.registry.preset_plugins[name], "settings": settings}
        for name, settings in sorted(pm.registry.presets.items())
        if pm.registry.preset_plugins[name] in builtin
    }
    return {"plugins": plugins, "components": components, "presets": presets}


class _NoAliases(yaml.SafeDumper):
    """Write shared objects (two presets with the same option dict) out in full, no ``&id`` anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(pm: Any = None) -> str:
    return HEADER + yaml.dump(catalog(pm), Dumper=_NoAliases, sort_keys=False, width=100)


if __name__ == "__main__":  # pragma: no cover
    print(dump(), end="")
