"""Shared fixtures: a fresh plugin manager, a CLI runner that goes through ``main``
(so exit codes and one-line errors are what users see), throwaway plugins, and the
tiny run configs most tests train (``ring_config``, ``digits_config``).

``gzoo_pm`` and ``gzoo_plugin`` are the fixtures gzoo ships to plugin authors
(:mod:`gzoo.testing`); they are imported here so gzoo's own tests use them too."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import gzoo
import gzoo.interfaces
from gzoo.config import RunConfig
from gzoo.plugins import get_plugin_manager, reset_plugin_manager
from gzoo.testing import gzoo_plugin, gzoo_pm  # noqa: F401  (fixtures, as `pytest_plugins = ["gzoo.testing"]` gives)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run ``gzoo ARGS`` through the console-script entry point, in-process."""
    from gzoo.cli import main

    runner = CliRunner()
    with runner.isolation(env=env) as streams:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return CliResult(code, out, err)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    models of many small ops do not wait on OpenMP partners when the machine is shared, and
    their numerics do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli():
    return invoke


@pytest.fixture(autouse=True)
def _isolate(tmp_path_factory, monkeypatch):
    """Each test gets its own cache, data dir and working directory, and a fresh manager."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("GZOO_CACHE", str(base / "cache"))
    monkeypatch.chdir(base)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def pm():
    return get_plugin_manager()


@pytest.fixture
def register_plugin(pm):
    """Register a throwaway plugin object for one test; unregistered at teardown."""
    names = []

    def _register(plugin, name: str | None = None) -> str:
        n = pm.register(plugin, name=name)
        names.append(n)
        return n

    yield _register
    for n in names:
        pm.unregister(n)


class UncondGenerator(gzoo.interfaces.Generator):
    """A 2-D generator that takes no ``num_classes``: it cannot be class-conditioned."""

    def __init__(self, *, image_shape):
        super().__init__()
        self.latent_dim, self.image_shape = 2, tuple(image_shape)
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, z, y=None):
        return self.lin(z)


@pytest.fixture
def uncond_generator(register_plugin) -> str:
    """Registers ``uncond``, an unconditional generator, for one test; returns its name."""

    class Plugin:
        @gzoo.hookimpl
        def gzoo_register_components(self, register):
            register("generator", "uncond", UncondGenerator)

    register_plugin(Plugin(), "uncond-plugin")
    return "uncond"


FAST = ["--steps", "2", "--batch-size", "8", "--sample-every", "0", "--quiet"]


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"



@pytest.fixture
def register_component(register_plugin):
    """``register_component(kind, name, factory, **register_kwargs) -> name``: a throwaway
    plugin that registers one component, for one test."""

    def _register(kind: str, name: str, factory, **kwargs) -> str:
        class Plugin:
            @gzoo.hookimpl
            def gzoo_register_components(self, register):
                register(kind, name, factory, **kwargs)

        register_plugin(Plugin(), f"test-{kind}-{name}")
        return name

    return _register


#: a tiny 2-D run: narrow MLPs on the ring, quiet, on the CPU.
RING = dict(gen="mlp", disc="mlp", data="ring", data_opt={"n": 2000}, batch_size=16, gen_opt={"hidden": 32},
            disc_opt={"hidden": 32}, sample_every=0, progress=False, device="cpu")
#: a tiny image run: narrow DCGANs on the bundled 28x28 digits, quiet, on the CPU.
DIGITS = dict(gen="dcgan", disc="dcgan", data="digits", batch_size=16, gen_opt={"ch": 8}, disc_opt={"ch": 8},
              sample_every=0, progress=False, device="cpu")


def _config_factory(base: dict, tmp_path: Path):
    def make(steps: int = 2, **overrides) -> RunConfig:
        """A RunConfig of ``base`` with ``overrides`` (replacing whole settings, e.g. gen_opt),
        training ``steps`` steps into ``tmp_path/"run"`` unless ``out`` is given."""
        return RunConfig.from_dict({**base, "steps": steps, "out": str(tmp_path / "run"), **overrides})

    return make


@pytest.fixture
def ring_config(tmp_path):
    """``ring_config(steps=2, **overrides) -> RunConfig``: a tiny 2-D run (:data:`RING`)."""
    return _config_factory(RING, tmp_path)


@pytest.fixture
def digits_config(tmp_path):
    """``digits_config(steps=2, **overrides) -> RunConfig``: a tiny image run (:data:`DIGITS`)."""
    return _config_factory(DIGITS, tmp_path)


def make_image_folder(root: Path, classes: tuple[str, ...] = ("a", "b"), per_class: int = 3) -> Path:
    """A tiny ``folder`` dataset: ``root/<class>/<i>.png``, 12x12 RGB images of a few colours."""
    from PIL import Image

    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 12), (40 * i, 90, 200)).save(root / cls / f"{i}.png")
    return root
