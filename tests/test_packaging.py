"""Packaging: the wheel ships every built-in plugin package, and no top-level `plugins`."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _builtin_packages() -> set[str]:
    return {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()}


def test_wheel_contains_every_builtin_plugin(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("gzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "plugins" not in tops
    assert {"gzoo", *_builtin_packages()} <= tops
    eps = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(eps).decode()
    assert "[gzoo]" in text and "[console_scripts]" in text and "gzoo = gzoo.cli:main" in text
    for pkg in _builtin_packages():
        assert f"{pkg}.plugin" in text or f"= {pkg}" in text, f"{pkg} has no gzoo entry point"
    assert any(n.startswith("gzoo/") and n.endswith(".py") for n in names)


def test_installed_entry_points_cover_builtin_plugins():
    eps = {ep.value.split(".")[0].split(":")[0] for ep in metadata.entry_points(group="gzoo")}
    assert _builtin_packages() <= eps


def test_example_plugin_is_listed_when_installed():
    """CI installs docs/examples/gzoo-drift (see .ci/run); then `gzoo list --json` shows it."""
    try:
        metadata.distribution("gzoo-drift")
    except metadata.PackageNotFoundError:
        pytest.skip("docs/examples/gzoo-drift is not installed (pip install ./docs/examples/gzoo-drift)")
    r = subprocess.run([sys.executable, "-m", "gzoo", "list", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    comps = {(c["kind"], c["name"]): c for c in json.loads(r.stdout)["components"]}
    assert comps[("regularizer", "drift")]["plugin"] == "drift"
