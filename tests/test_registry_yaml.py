"""registry.yaml must equal the live registry of built-in plugins."""

from __future__ import annotations

from pathlib import Path

import yaml

from gzoo.catalog import catalog

ROOT = Path(__file__).resolve().parents[1]


def test_registry_yaml_equals_live_registry():
    on_disk = yaml.safe_load((ROOT / "registry.yaml").read_text())
    live = catalog()
    for section in ("plugins", "presets"):
        assert on_disk[section] == live[section], f"registry.yaml [{section}] is stale: run python -m gzoo.catalog > registry.yaml"
    disk = {(c["kind"], c["name"]): c for c in on_disk["components"]}
    now = {(c["kind"], c["name"]): c for c in live["components"]}
    assert disk.keys() == now.keys(), f"missing: {now.keys() - disk.keys()}, extra: {disk.keys() - now.keys()}"
    for key, entry in now.items():
        assert disk[key] == entry, f"registry.yaml entry {key} is stale: run python -m gzoo.catalog > registry.yaml"


def test_every_builtin_component_names_a_paper_or_source():
    for c in catalog()["components"]:
        if c["kind"] in ("generator", "discriminator", "loss", "regularizer"):
            assert c["paper"], f"{c['kind']} {c['name']} has no paper reference"
        assert c["summary"], f"{c['kind']} {c['name']} has no summary"
