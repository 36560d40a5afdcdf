"""The plugin system: throwaway plugins, broken plugins, duplicates, switches, hooks."""

from __future__ import annotations

import inspect
import json
import sys
import types
import warnings
from importlib import metadata
from pathlib import Path

import pytest
import torch

import gzoo
from gzoo import hookspecs
from gzoo.config import RunConfig
from gzoo.errors import GzooError, UsageError
from gzoo.plugins import PluginManager, PluginWarning
from gzoo.trainer import Trainer, resume

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("gzoo_"))


class TinyGenerator(gzoo.interfaces.Generator):
    """A throwaway generator: one linear layer."""

    def __init__(self, *, image_shape, num_classes=0, latent_dim: int = 4):
        super().__init__()
        self.latent_dim, self.image_shape, self.num_classes = latent_dim, tuple(image_shape), num_classes
        self.lin = torch.nn.Linear(latent_dim, int(torch.tensor(image_shape).prod()))

    def forward(self, z, y=None):
        return self.lin(z).view(-1, *self.image_shape)


class TinyPlugin:
    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        register("generator", "tiny", TinyGenerator, paper="none")


def test_throwaway_plugin_is_listed_and_trains(cli, register_plugin, tmp_path):
    register_plugin(TinyPlugin(), "tiny-plugin")
    r = cli("list", "--kind", "generator", "--json")
    entry = {c["name"]: c for c in json.loads(r.stdout)["components"]}["tiny"]
    assert entry["plugin"] == "tiny-plugin" and entry["options"] == {"latent_dim": 4}
    r = cli("run", "--gen", "tiny", "--disc", "mlp", "--data", "ring", "--steps", "3", "--quiet",
            "--sample-every", "0", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r" / "checkpoints" / "last.pt").exists()


def test_unregister_removes_components(pm, register_plugin):
    name = register_plugin(TinyPlugin(), "tiny-plugin")
    assert pm.registry.get("generator", "tiny")
    pm.unregister(name)
    with pytest.raises(UsageError):
        pm.registry.get("generator", "tiny")


def test_duplicate_component_name_is_skipped_and_names_both_plugins(pm):
    class Clash:
        @gzoo.hookimpl
        def gzoo_register_components(self, register):
            register("generator", "mlp", TinyGenerator)
            register("generator", "tiny", TinyGenerator)

    with pytest.warns(PluginWarning, match="generator 'mlp' is already registered by 'classic'; clash's mlp is skipped"):
        pm.register(Clash(), "clash")
    assert pm.registry.get("generator", "mlp").plugin == "classic"  # the built-in keeps its name
    assert pm.registry.get("generator", "tiny").plugin == "clash"  # the rest of the plugin loads
    assert pm.info["clash"].conflicts == ["generator:mlp (the name kept by classic)"]


def _fake_entry_points(monkeypatch, extra):
    real = list(metadata.entry_points(group="gzoo"))

    def entry_points(group=None, **kw):
        return real + extra if group == "gzoo" else metadata.entry_points(group=group, **kw)

    monkeypatch.setattr("gzoo.plugins.metadata.entry_points", entry_points)


def test_broken_plugin_warns_once_and_everything_else_works(monkeypatch):
    broken_import = metadata.EntryPoint("broken", "gzoo_test_no_such_module_xyz", "gzoo")
    mod = types.ModuleType("gzoo_test_bad_register")

    @gzoo.hookimpl
    def gzoo_register_components(register):
        raise RuntimeError("boom")

    mod.gzoo_register_components = gzoo_register_components
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    broken_register = metadata.EntryPoint("badreg", mod.__name__, "gzoo")
    _fake_entry_points(monkeypatch, [broken_import, broken_register])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = PluginManager()
    msgs = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert len(msgs) == 2
    assert any("'broken'" in m and "failed to import" in m for m in msgs)
    assert any("'badreg'" in m and "boom" in m for m in msgs)
    assert pm.registry.get("generator", "dcgan")  # built-ins still work
    assert pm.info["broken"].error and pm.info["badreg"].error


def test_disable_autoload_and_block_plugins(monkeypatch):
    mod = types.ModuleType("gzoo_test_third_party")
    mod.gzoo_register_components = gzoo.hookimpl(lambda register: register("generator", "third", TinyGenerator))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    _fake_entry_points(monkeypatch, [metadata.EntryPoint("third", mod.__name__, "gzoo")])
    assert PluginManager().registry.get("generator", "third")
    monkeypatch.setenv("GZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = PluginManager()
    assert "third" not in pm.info and pm.registry.get("generator", "dcgan")  # built-ins stay
    monkeypatch.delenv("GZOO_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("GZOO_DISABLE_PLUGINS", "third")
    assert "third" not in PluginManager().info


class Recorder:
    """Records every lifecycle hook call (one method per hook of gzoo.hookspecs)."""

    def __init__(self):
        self.calls, self.loaded = [], None

    @gzoo.hookimpl
    def gzoo_train_start(self, trainer):
        self.calls.append("gzoo_train_start")

    @gzoo.hookimpl
    def gzoo_before_d_step(self, trainer, step):
        self.calls.append("gzoo_before_d_step")

    @gzoo.hookimpl
    def gzoo_after_d_step(self, trainer, step, losses):
        assert "loss_d" in losses
        self.calls.append("gzoo_after_d_step")

    @gzoo.hookimpl
    def gzoo_after_g_step(self, trainer, step, losses):
        assert step == trainer.step and "loss_g" in losses
        self.calls.append("gzoo_after_g_step")

    @gzoo.hookimpl
    def gzoo_on_sample(self, trainer, step, path):
        assert path.exists()
        self.calls.append("gzoo_on_sample")

    @gzoo.hookimpl
    def gzoo_checkpoint_save(self, trainer, state):
        state["plugins"]["recorder"] = torch.tensor([1, 2, 3])
        self.calls.append("gzoo_checkpoint_save")

    @gzoo.hookimpl
    def gzoo_checkpoint_load(self, trainer, state):
        self.loaded = state["plugins"]["recorder"]
        self.calls.append("gzoo_checkpoint_load")

    @gzoo.hookimpl
    def gzoo_train_end(self, trainer, status):
        self.calls.append("gzoo_train_end")


def test_every_lifecycle_hook_is_called(register_plugin, tmp_path):
    rec = Recorder()
    register_plugin(rec, "recorder")
    cfg = RunConfig(gen="mlp", disc="mlp", data="ring", steps=2, n_critic=2, batch_size=8, sample_every=1,
                    progress=False, out=str(tmp_path / "r"))
    Trainer(cfg).fit()
    c = rec.calls
    assert c[0] == "gzoo_train_start" and c[-1] == "gzoo_train_end"
    assert c[1:4] == ["gzoo_before_d_step", "gzoo_after_d_step", "gzoo_before_d_step"]
    assert c.count("gzoo_after_g_step") == 2 and c.count("gzoo_after_d_step") == 4
    assert "gzoo_on_sample" in c and "gzoo_checkpoint_save" in c
    resume(tmp_path / "r", {"steps": 3})
    assert torch.equal(rec.loaded, torch.tensor([1, 2, 3]))
    # registration hooks are called at load time (and gzoo_plugin_options when a run names the
    # plugin in --plugin-opt: tests/test_trainer.py::test_plugin_options_reach_the_plugin_and_are_saved)
    lifecycle = {h for h in HOOKS if not h.startswith("gzoo_register") and h != "gzoo_plugin_options"}
    assert lifecycle <= set(rec.calls), lifecycle - set(rec.calls)


def test_every_hook_is_documented():
    doc = (ROOT / "docs" / "writing-plugins.md").read_text()
    for name in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"{name}({params})" in doc, f"docs/writing-plugins.md lacks {name}({params})"


def test_hookimpl_with_unknown_argument_is_refused_in_one_line(pm):
    """gzoo's registration (not pluggy's) names the plugin, the hook and the argument, in one
    line, and leaves nothing of the plugin behind."""

    class Bad:
        @gzoo.hookimpl
        def gzoo_register_components(self, register):
            register("generator", "tiny", TinyGenerator)

        @gzoo.hookimpl
        def gzoo_train_start(self, trainer, nonsense):
            pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(GzooError) as err:
            pm.register(Bad(), name="bad")
    msgs = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    expected = ("its gzoo_train_start asks for 'nonsense', which gzoo does not pass; "
                "gzoo_train_start gets: trainer")
    assert msgs == [f"gzoo plugin 'bad' (registered at run time) failed to register: {expected}; it is skipped"]
    assert str(err.value) == f"plugin 'bad' failed to register: {expected}"
    assert not pm.pm.has_plugin("bad") and "bad" not in pm.info
    with pytest.raises(UsageError):
        pm.registry.get("generator", "tiny")


@pytest.mark.parametrize("old,new", [("gzoo.datasets", "gzoo.default_plugins.datasets"),
                                     ("gzoo.conditioning", "gzoo.default_plugins.conditioning"),
                                     ("gzoo.evaluation", "gzoo.default_plugins.evaluation")])
def test_moved_modules_keep_working_under_their_old_names(old, new):
    """The core's own plugins moved into gzoo.default_plugins; old imports give the same module."""
    import importlib
    import subprocess
    import sys

    assert importlib.import_module(old) is importlib.import_module(new)
    code = (f"import warnings; warnings.simplefilter('error'); import {old} as m; "
            f"assert m.__name__ == '{new}' and m.__spec__.name == '{new}'; "
            f"from {old} import *; import importlib; importlib.reload(m)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
