"""The plugin contract: name clashes, checks at registration and build time, option help
from docstrings, ``gzoo list NAME``, option hints, and the dataset contract (gzoo.data)."""

from __future__ import annotations

import json
import re
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import pytest
import torch
from torch.utils.data import TensorDataset

import gzoo
import gzoo.datasets
from gzoo import interfaces
from gzoo.config import RunConfig
from gzoo.data import DatasetLike, GanDataset, TensorGanDataset, check_dataset
from gzoo.errors import GzooError, UnknownNameError, UsageError
from gzoo.plugins import PluginManager, PluginWarning
from gzoo.registry import (
    OPTION_HINTS,
    NameConflictError,
    RegistrationError,
    Registry,
    doc_args,
    parse_args_section,
)
from gzoo.trainer import Trainer

# -- helpers ------------------------------------------------------------------------------------

WIDE = {"COLUMNS": "400"}  # rich tables without folded cells


@contextmanager
def plugin_warnings():
    """Collect the messages of every PluginWarning raised inside the block."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    messages.extend(str(w.message) for w in caught if issubclass(w.category, PluginWarning))


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"


@dataclass
class FakeEntryPoint:
    """What gzoo.plugins reads of an entry point: name, value, dist, load()."""

    name: str
    plugin: Any
    dist: FakeDist

    @property
    def value(self) -> str:
        return f"{self.name}_plugin"

    def load(self) -> Any:
        return self.plugin


def fake_entry_points(monkeypatch, extra: list[FakeEntryPoint]) -> None:
    """The real ``gzoo`` entry points plus ``extra``, in the order given (gzoo must sort)."""
    from importlib import metadata

    original = metadata.entry_points
    real = list(original(group="gzoo"))

    def entry_points(*args, **kwargs):
        if kwargs.get("group") == "gzoo":
            return [*extra, *real]
        return original(*args, **kwargs)

    monkeypatch.setattr("gzoo.plugins.metadata.entry_points", entry_points)


class Plugin:
    """A throwaway plugin: ``Plugin(components=[(kind, name, factory, kwargs)], presets={...})``."""

    def __init__(self, components=(), presets=None):
        self.components, self.presets = list(components), dict(presets or {})

    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        for kind, name, factory, kwargs in self.components:
            register(kind, name, factory, **kwargs)

    @gzoo.hookimpl
    def gzoo_register_presets(self, register):
        for name, settings in self.presets.items():
            register(name, settings)


class ResMLP(interfaces.Generator):
    """A residual-MLP generator for 2-D data.

    Args:
        width: hidden width of each residual block,
            in units. Continued [bold]here[/bold].
        depth (int): number of residual blocks.
    """

    def __init__(self, *, image_shape, num_classes: int = 0, width: int = 32, depth: int = 2,
                 dropout: float | None = None):
        """Build it.

        Args:
            width: overridden by the class docstring.
            dropout: dropout probability, or None for none.
        """
        super().__init__()
        self.latent_dim, self.image_shape, self.num_classes = 4, tuple(image_shape), num_classes
        self.lin = torch.nn.Linear(4, int(torch.tensor(image_shape).prod()))

    def forward(self, z, y=None):
        return self.lin(z).view(-1, *self.image_shape)


def resmlp_gen(**kwargs):
    return ResMLP(**kwargs)


# -- 1. name clashes skip the newcomer -----------------------------------------------------------


def test_clash_skips_only_the_clashing_entry_with_one_warning_naming_both(pm, register_plugin):
    evil = Plugin(components=[("generator", "dcgan", ResMLP, {}), ("generator", "resmlp", ResMLP, {})],
                  presets={"wgan-gp": {"lr": 1e-3}, "evil-fast": {"lr": 1e-3}})
    with plugin_warnings() as msgs:
        register_plugin(evil, "evil")
    assert msgs == [
        "gzoo plugin 'evil' (registered at run time): generator 'dcgan' is already registered by 'classic'; "
        "evil's dcgan is skipped",
        "gzoo plugin 'evil' (registered at run time): preset 'wgan-gp' is already registered by 'classic'; "
        "evil's wgan-gp is skipped",
    ]
    assert pm.registry.get("generator", "dcgan").plugin == "classic"
    assert pm.registry.get("generator", "resmlp").plugin == "evil"  # the rest of the plugin loads
    assert pm.registry.preset_plugins["wgan-gp"] == "classic" and "evil-fast" in pm.registry.presets
    info = pm.info["evil"]
    assert info.conflicts == ["generator:dcgan (the name kept by classic)", "preset:wgan-gp (the name kept by classic)"]
    assert "generator:resmlp" in info.components and "generator:dcgan" not in info.components


@pytest.mark.parametrize("name,aliases,fragment", [
    ("myloss", ("ns",), "loss 'myloss': its alias 'ns' is already registered by 'classic' (an alias of 'nonsaturating')"),
    ("ns", (), "loss 'ns': 'ns' is already an alias of loss 'nonsaturating' of plugin 'classic'"),
    ("myloss", ("hinge",), "loss 'myloss': its alias 'hinge' is already registered by 'classic'"),
])
def test_alias_clashes_skip_the_entry_too(pm, register_plugin, name, aliases, fragment):
    class MyLoss(interfaces.Loss):
        def d_loss(self, real, fake):
            return fake.mean() - real.mean()

        def g_loss(self, fake, real=None):
            return -fake.mean()

    with plugin_warnings() as msgs:
        register_plugin(Plugin(components=[("loss", name, MyLoss, {"aliases": aliases})]), "aliasing")
    assert len(msgs) == 1 and fragment in msgs[0] and msgs[0].endswith(f"aliasing's {name} is skipped")
    assert pm.registry.get("loss", "ns").name == "nonsaturating"
    assert "myloss" not in {s.name for s in pm.registry.list("loss")}
    clash = f"its alias {aliases[0]!r}" if aliases else "the name"
    assert pm.info["aliasing"].conflicts == [f"loss:{name} ({clash} kept by classic)"]


def test_builtins_load_before_third_party_entry_points(monkeypatch, cli):
    # "aaa" sorts before "classic": by name alone it would load first and take 'dcgan'
    fake_entry_points(monkeypatch, [FakeEntryPoint("aaa", Plugin(components=[("generator", "dcgan", ResMLP, {})]),
                                                   FakeDist("gzoo-aaa", "2.0"))])
    with plugin_warnings() as msgs:
        pm = PluginManager()
    assert msgs == ["gzoo plugin 'aaa' (gzoo-aaa 2.0): generator 'dcgan' is already registered by 'classic'; "
                    "aaa's dcgan is skipped"]
    assert pm.registry.get("generator", "dcgan").plugin == "classic"
    names = list(pm.info)
    assert names.index("aaa") > max(names.index(n) for n in ("classic", "coc", "selfcond"))
    with plugin_warnings():
        r = cli("list", "--kind", "generator")
    assert r.exit_code == 0 and "dcgan" in r.stdout


def test_between_third_parties_the_first_by_entry_point_name_wins(monkeypatch):
    zeta = Plugin(components=[("generator", "resmlp", ResMLP, {})])
    alpha = Plugin(components=[("generator", "resmlp", ResMLP, {}), ("generator", "alpha-only", ResMLP, {})])
    fake_entry_points(monkeypatch, [FakeEntryPoint("zeta", zeta, FakeDist("gzoo-zeta")),
                                    FakeEntryPoint("alpha", alpha, FakeDist("gzoo-alpha"))])
    with plugin_warnings() as msgs:
        pm = PluginManager()
    assert msgs == ["gzoo plugin 'zeta' (gzoo-zeta 1.0): generator 'resmlp' is already registered by 'alpha'; "
                    "zeta's resmlp is skipped"]
    assert pm.registry.get("generator", "resmlp").plugin == "alpha"
    assert pm.info["zeta"].conflicts == ["generator:resmlp (the name kept by alpha)"] and not pm.info["zeta"].error


def test_a_clash_between_builtins_is_an_error(monkeypatch):
    own = FakeEntryPoint("zzz-builtin", Plugin(components=[("generator", "dcgan", ResMLP, {})]), FakeDist("gzoo"))
    fake_entry_points(monkeypatch, [own])
    with pytest.raises(NameConflictError, match="generator 'dcgan' of plugin 'zzz-builtin': already registered by 'classic'"):
        PluginManager()


def test_plugins_command_shows_conflicts_and_hooks(cli, register_plugin):
    class Logger(Plugin):
        @gzoo.hookimpl
        def gzoo_after_g_step(self, trainer, step, losses):
            pass

    with plugin_warnings():
        register_plugin(Logger(components=[("generator", "dcgan", ResMLP, {})]), "logger")
    r = cli("plugins", "--json")
    assert r.exit_code == 0, r.output
    row = {p["name"]: p for p in json.loads(r.stdout)}["logger"]
    assert row["conflicts"] == ["generator:dcgan (the name kept by classic)"]
    assert row["hooks"] == ["gzoo_after_g_step", "gzoo_register_components", "gzoo_register_presets"]
    assert "gzoo_register_components" in {p["name"]: p for p in json.loads(r.stdout)}["classic"]["hooks"]
    r = cli("plugins", env=WIDE)
    assert r.exit_code == 0 and "generator:dcgan (the name kept by classic)" in r.stdout


# -- 2. checks at registration ------------------------------------------------------------------


def test_option_without_default_is_refused_at_registration(pm, register_plugin):
    def resmlp(*, image_shape, num_classes=0, width):
        return ResMLP(image_shape=image_shape, num_classes=num_classes, width=width)

    with pytest.raises(RegistrationError) as err:
        Registry().register("generator", "resmlp", resmlp, plugin="x")
    assert str(err.value) == "generator 'resmlp' of plugin 'x': argument 'width' has no default; every option needs one"
    with plugin_warnings() as msgs:
        register_plugin(Plugin(components=[("generator", "resmlp", resmlp, {}), ("generator", "ok", ResMLP, {})]), "x")
    assert msgs == ["gzoo plugin 'x' (registered at run time): generator 'resmlp' of plugin 'x': argument 'width' "
                    "has no default; every option needs one; it is skipped"]
    assert pm.registry.get("generator", "ok")
    with pytest.raises(UnknownNameError):
        pm.registry.get("generator", "resmlp")
    assert pm.info["x"].problems == ["generator:resmlp: argument 'width' has no default; every option needs one"]


class NoForward(interfaces.Generator):
    def __init__(self, *, image_shape):
        super().__init__()


class NoFeatures(interfaces.Discriminator):
    def __init__(self, *, image_shape):
        super().__init__()

    def forward(self, x, y=None):
        return x.flatten(1).sum(1)


class HalfLoss(interfaces.Loss):
    def d_loss(self, real, fake):
        return fake.mean()


class NotALoss:
    def d_loss(self, real, fake):
        return fake.mean()

    def g_loss(self, fake, real=None):
        return -fake.mean()


class PenaltyFree(interfaces.Regularizer):
    """has_penalty is True (the default) but there is no penalty."""


class DoesNothing(interfaces.Regularizer):
    has_penalty = False


class PlainModule(torch.nn.Module):
    def __init__(self, *, channels):
        super().__init__()

    def forward(self, x):
        return x


class NoForwardBlock(interfaces.Block):
    def __init__(self, *, channels):
        super().__init__()


@pytest.mark.parametrize("kind,factory,problem", [
    ("generator", NoForward, "it does not implement forward(z, y=None)"),
    ("discriminator", NoFeatures, "it does not implement features(x) -> (N, d)"),
    ("loss", HalfLoss, "it does not implement g_loss"),
    ("loss", NotALoss, "NotALoss is not a gzoo.interfaces.Loss; subclass it"),
    ("regularizer", PenaltyFree, "has_penalty is True but it does not implement penalty("),
    ("regularizer", DoesNothing, "overrides none of after_d_step, after_g_step, wrap_discriminator, wrap_generator"),
    ("block", PlainModule, "PlainModule is not a gzoo.interfaces.Block"),
    ("block", NoForwardBlock, "it does not implement forward(x)"),
    ("generator", interfaces.Discriminator, "Discriminator is not a gzoo.interfaces.Generator"),
])
def test_classes_that_do_not_implement_their_interface_are_refused(kind, factory, problem):
    with pytest.raises(RegistrationError, match=rf"^{kind} 'bad' of plugin 'x': .*") as err:
        Registry().register(kind, "bad", factory, plugin="x")
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_builtin_components_keep_the_contract(pm):
    from gzoo.registry import interface_problems

    for spec in pm.registry.list():
        if isinstance(spec.factory, type):
            assert not interface_problems(spec.kind, spec.factory), spec.id


def test_third_party_contract_problem_skips_the_component(pm, register_plugin):
    with plugin_warnings() as msgs:
        register_plugin(Plugin(components=[("loss", "half", HalfLoss, {}), ("generator", "resmlp", ResMLP, {})]), "x")
    assert len(msgs) == 1 and "loss 'half' of plugin 'x': it does not implement g_loss; it is skipped" in msgs[0]
    assert pm.registry.get("generator", "resmlp")
    with pytest.raises(UnknownNameError):
        pm.registry.get("loss", "half")


def _linear(**kwargs):
    return torch.nn.Linear(2, 2)


def _zero_latent(*, image_shape, num_classes=0):
    g = ResMLP(image_shape=image_shape)
    g.latent_dim = 0
    return g


def _wrong_shape(*, image_shape):
    return ResMLP(image_shape=(3,))


def _featureless(*, image_shape):
    return NoFeatures(image_shape=image_shape)


def _headless(*, image_shape):
    class Headless(interfaces.Discriminator):
        def features(self, x):
            return x.flatten(1)

    return Headless()


@pytest.mark.parametrize("kind,factory,message", [
    ("generator", _linear, "generator 'fn' (plugin 'fns') returned a Linear, not a gzoo.interfaces.Generator"),
    ("generator", _zero_latent, "generator 'fn' (plugin 'fns'): latent_dim must be an int > 0, got 0"),
    ("generator", _wrong_shape, "generator 'fn' (plugin 'fns'): image_shape is (3,), but it was built for (2,)"),
    ("discriminator", _featureless, "discriminator 'fn' (plugin 'fns') returned a NoFeatures: it does not implement features"),
    ("discriminator", _headless, "discriminator 'fn' (plugin 'fns'): it keeps the default forward, which needs self.head"),
    ("loss", lambda: object(), "loss 'fn' (plugin 'fns') returned a object, not a gzoo.interfaces.Loss"),
    ("regularizer", lambda: DoesNothing(), "regularizer 'fn' (plugin 'fns') returned a DoesNothing: it has no penalty"),
])
def test_what_functions_return_is_checked_when_built(pm, register_plugin, kind, factory, message):
    register_plugin(Plugin(components=[(kind, "fn", factory, {})]), "fns")
    context = {"image_shape": (2,)} if kind in ("generator", "discriminator") else {}
    with pytest.raises(UsageError) as err:
        pm.registry.create(kind, "fn", **context)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_bad_function_factory_fails_before_the_run_directory_exists(register_plugin, tmp_path):
    register_plugin(Plugin(components=[("generator", "fn", _zero_latent, {})]), "fns")
    with pytest.raises(UsageError, match="latent_dim must be an int > 0"):
        Trainer(RunConfig(gen="fn", disc="mlp", data="ring", steps=1, progress=False, out=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


class TypoHook(Plugin):
    @gzoo.hookimpl
    def gzoo_after_g_setp(self, trainer, step, losses):
        pass


def test_typo_in_a_hook_name_names_the_closest_hook(pm):
    with plugin_warnings() as msgs, pytest.raises(GzooError) as err:
        pm.register(TypoHook(components=[("generator", "resmlp", ResMLP, {})]), "typo")
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert msgs[0].startswith("gzoo plugin 'typo' (registered at run time) failed to register: it implements "
                              "'gzoo_after_g_setp', which is not a gzoo hook. Did you mean 'gzoo_after_g_step'?")
    assert "gzoo_after_g_setp" in str(err.value)
    assert not pm.pm.has_plugin("typo") and "typo" not in pm.info  # nothing of it is left behind
    with pytest.raises(UnknownNameError):
        pm.registry.get("generator", "resmlp")
    pm.register(Plugin(), "later")  # and the next plugin is not blamed for it


def test_typo_hook_in_an_entry_point_leaves_gzoo_working(monkeypatch, cli):
    fake_entry_points(monkeypatch, [FakeEntryPoint("typo", TypoHook(), FakeDist("gzoo-typo"))])
    with plugin_warnings() as msgs:
        pm = PluginManager()
    assert len(msgs) == 1 and "Did you mean 'gzoo_after_g_step'?" in msgs[0]
    assert "gzoo_after_g_setp" in pm.info["typo"].error and pm.registry.get("generator", "dcgan")


def test_hook_function_without_the_marker_is_reported(pm):
    mod = types.ModuleType("gzoo_test_unmarked")
    mod.gzoo_after_g_step = lambda trainer, step, losses: None
    with plugin_warnings() as msgs:
        pm.register(mod, "unmarked")
    assert msgs == ["gzoo plugin 'unmarked': gzoo_after_g_step is not marked @gzoo.hookimpl, so gzoo never calls it"]


def test_registration_warnings_show_a_traceback_only_with_gzoo_debug(pm, monkeypatch):
    def bad():
        return Plugin(components=[("loss", "half", HalfLoss, {})])

    with plugin_warnings() as msgs:
        pm.register(bad(), "quiet")
    assert len(msgs) == 1 and "\n" not in msgs[0] and "Traceback" not in msgs[0]
    monkeypatch.setenv("GZOO_DEBUG", "1")
    with plugin_warnings() as msgs:
        pm.register(bad(), "loud")
    assert len(msgs) == 1 and "Traceback (most recent call last)" in msgs[0]
    assert "register(kind, name, factory, **kwargs)" in msgs[0]  # the plugin's own line


def typed(*, n: int | None = None, m: Optional[float] = 1.0, s: str | None = None, k: int = 3):  # noqa: UP045
    return interfaces.Loss()


@pytest.mark.parametrize("option,given,expected", [
    ("n", "3", 3), ("n", "null", None), ("n", None, None),
    ("m", "2", 2.0), ("m", "~", None),
    ("m", "1e-5", 1e-5), ("m", "2E3", 2000.0),  # PyYAML reads exponents without a point as text
    ("s", "abc", "abc"), ("s", "null", None),
])
def test_optional_options_are_typed(option, given, expected):
    spec = Registry().register("visualizer", "typed", typed, plugin="x")
    assert spec.validate({option: given}) == {option: expected}


@pytest.mark.parametrize("option,given,message", [
    ("n", "abc", "option 'n' of visualizer 'typed' must be int | None, got 'abc'"),
    ("n", "1.5", "must be int | None, got 1.5"),
    ("m", "fast", "option 'm' of visualizer 'typed' must be float | None, got 'fast'"),
    ("m", "1e", "must be float | None, got '1e'"), ("m", "inf", "must be float | None, got 'inf'"),
    ("k", "null", "option 'k' of visualizer 'typed' must be int, got None"),
])
def test_optional_options_refuse_other_types(option, given, message):
    spec = Registry().register("visualizer", "typed", typed, plugin="x")
    assert spec.options["n"].type_name == "int | None" and spec.options["k"].type_name == "int"
    with pytest.raises(UsageError, match=re.escape(message)):
        spec.validate({option: given})


@pytest.mark.parametrize("settings,problem", [
    ({"reg": ["gp"], "reg_opt": {"gp": 3}}, "setting 'reg_opt' must be a mapping"),
    ({"lr": "fast"}, "setting 'lr' must be a number, got 'fast'"),
    ({"lrr": 0.1}, "unknown setting 'lrr'. Did you mean 'lr'"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    (["lr", 0.1], "settings must be a mapping of run settings, got a list"),
])
def test_presets_are_type_checked_at_registration(pm, register_plugin, settings, problem):
    with pytest.raises(RegistrationError, match=r"^preset 'bad' of plugin 'x': ") as err:
        Registry().register_preset("bad", settings, plugin="x")
    assert problem in str(err.value)
    with plugin_warnings() as msgs:
        register_plugin(Plugin(presets={"bad": settings, "good": {"lr": 1e-3}}), "x")
    assert len(msgs) == 1 and problem in msgs[0] and msgs[0].endswith("it is skipped")
    assert "bad" not in pm.registry.presets and "good" in pm.registry.presets


# -- 3. option help from docstrings; gzoo list NAME --------------------------------------------


def test_google_style_args_sections_are_parsed():
    doc = """Summary.

    Args:
        width: hidden width
            of each block.
        depth (int): number of blocks.
        *args: ignored.

    Returns:
        not: an argument.
    """
    assert parse_args_section(doc) == {"width": "hidden width of each block.", "depth": "number of blocks.",
                                       "args": "ignored."}
    assert parse_args_section("No sections here.") == {}


def test_option_help_comes_from_the_class_then_init_docstring():
    helps = doc_args(ResMLP)
    assert helps["width"].startswith("hidden width of each residual block, in units.")
    assert helps["depth"] == "number of residual blocks."
    assert helps["dropout"] == "dropout probability, or None for none."
    spec = Registry().register("generator", "resmlp", ResMLP, plugin="x")
    assert spec.options["width"].help.startswith("hidden width") and spec.options["dropout"].type_name == "float | None"


def test_list_name_shows_one_component_in_detail(cli, register_plugin):
    register_plugin(Plugin(components=[("generator", "resmlp", ResMLP, {"paper": "none [x]", "aliases": ("rm",)})]), "x")
    r = cli("list", "rm", env=WIDE)
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    for text in ("generator", "resmlp", "plugin x", "none [x]", "A residual-MLP generator for 2-D data.",
                 "width │ int │ 32 │ hidden width of each residual block,", "[bold]here[/bold]",
                 "dropout │ float | None │ None │ dropout probability", "--gen-opt KEY=VALUE"):
        assert text in out, text
    r = cli("list", "resmlp", "--json")
    data = json.loads(r.stdout)
    assert data["name"] == "resmlp" and data["options"]["width"] == 32
    assert data["option_details"]["depth"] == {"type": "int", "default": 2, "help": "number of residual blocks."}


def test_list_name_shows_every_kind_unless_kind_is_given(cli):
    r = cli("list", "dcgan", "--json")
    assert r.exit_code == 0, r.output
    assert sorted(c["kind"] for c in json.loads(r.stdout)) == ["discriminator", "generator"]
    r = cli("list", "dcgan", "--kind", "discriminator", "--json")
    assert json.loads(r.stdout)["kind"] == "discriminator"
    r = cli("list", "dcgan")
    assert r.stdout.count("Radford") == 2
    r = cli("list", "wgan-gp")
    assert r.exit_code == 0 and "gzoo run --preset wgan-gp" in r.stdout


@pytest.mark.parametrize("args,message", [
    (("dcgn",), "no component or preset is called 'dcgn'. Did you mean 'dcgan'"),
    (("dcgn", "--kind", "generator"), "unknown generator 'dcgn'. Did you mean 'dcgan'"),
    (("wgan-gq", "--kind", "preset"), "unknown preset 'wgan-gq'. Did you mean 'wgan-gp'"),
])
def test_list_unknown_name_is_a_one_line_usage_error(cli, args, message):
    r = cli("list", *args)
    assert r.exit_code == 2 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_list_without_name_still_works(cli):
    r = cli("list", "--json")
    assert r.exit_code == 0 and {"components", "presets"} <= set(json.loads(r.stdout))
    assert cli("list", "--filter", "dc*").exit_code == 0


# -- 4. unknown option hints --------------------------------------------------------------------


def test_unknown_option_with_a_known_replacement_says_so(pm):
    assert OPTION_HINTS["sn"] == "spectral norm is the regularizer --reg sn"
    with pytest.raises(UnknownNameError, match=r"loss 'hinge' has no option 'sn' \(spectral norm is the "
                                               r"regularizer --reg sn\)\. .*Valid options: none"):
        pm.registry.create("loss", "hinge", sn=True)
    with pytest.raises(UnknownNameError) as err:
        pm.registry.create("loss", "hinge", snn=True)
    assert "--reg sn" not in str(err.value)


# -- 5. the dataset contract --------------------------------------------------------------------


def test_dataset_classes_live_in_gzoo_data_and_keep_their_old_home():
    assert gzoo.datasets.GanDataset is GanDataset and gzoo.datasets.TensorGanDataset is TensorGanDataset
    assert isinstance(gzoo.create("dataset", "ring", n=10), DatasetLike)
    assert not isinstance(TensorDataset(torch.zeros(3, 2)), DatasetLike)


def moons(*, n: int = 64, split: str = "train"):
    """Two half-moons, returned the torch way (not gzoo's)."""
    return TensorDataset(torch.randn(n, 2), torch.zeros(n, dtype=torch.long))


def test_dataset_returning_a_torch_dataset_gets_one_line(cli, register_plugin, tmp_path):
    register_plugin(Plugin(components=[("dataset", "moons", moons, {})]), "x")
    message = ("dataset 'moons' (plugin 'x') returned a TensorDataset, which lacks image_shape, num_classes, "
               "get_batch; return a gzoo.data.TensorGanDataset(x, y, name=..., num_classes=...) or implement "
               "gzoo.data.DatasetLike")
    with pytest.raises(UsageError) as err:
        gzoo.create("dataset", "moons")
    assert str(err.value) == message
    r = cli("run", "--gen", "mlp", "--disc", "mlp", "--data", "moons", "--steps", "1", "--quiet",
            "--out", tmp_path / "r")
    assert r.exit_code == 2 and r.stderr.strip() == f"Error: {message}"
    assert not (tmp_path / "r").exists()


class Points(GanDataset):
    def __init__(self, *, shape: tuple = (2,), classes: int = 0, x_shape: tuple = (), y_float: bool = False):
        self.image_shape, self.num_classes = shape, classes
        self.x_shape, self.y_float = x_shape, y_float

    def __len__(self):
        return 5

    def get_batch(self, idx):
        x = torch.rand(len(idx), *(self.x_shape or self.image_shape))
        y = torch.full((len(idx),), -1.0 if self.y_float else -1)
        return x, y.long() if not self.y_float else y


@pytest.mark.parametrize("options,message", [
    ({"shape": [2]}, "image_shape must be a tuple of positive ints such as (1, 28, 28) or (2,), got [2]"),
    ({"shape": (0, 2)}, "image_shape must be a tuple of positive ints"),
    ({"classes": -1}, "num_classes must be an int >= 0 (0 = unlabelled), got -1"),
    ({"x_shape": (3,)}, "get_batch returned x of shape (2, 3) and dtype torch.float32 for 2 indices; "
                        "expected a float tensor of shape (2, 2)"),
    ({"y_float": True}, "get_batch returned y of shape (2,) and dtype torch.float32"),
])
def test_dataset_shapes_are_checked_when_built(options, message):
    with pytest.raises(UsageError) as err:
        check_dataset(Points(**options), "points", "x")
    assert str(err.value).startswith("dataset 'points' (plugin 'x'): ") and message in str(err.value)


def test_a_good_dataset_passes_and_the_check_leaves_the_random_state_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_dataset(Points(), "points", "x")  # its get_batch draws random numbers
    assert torch.equal(torch.rand(3), expected)
    check_dataset(TensorGanDataset(torch.zeros(0, 2), None, name="empty"), "empty", "x")  # nothing to read


def test_every_builtin_option_has_help():
    """Every option of a built-in plugin's component is documented in its factory's ``Args:``."""
    pm = PluginManager(autoload=False)
    builtin = {name for name, info in pm.info.items() if info.builtin}
    specs = [s for s in pm.registry.list() if s.plugin in builtin]
    assert {s.plugin for s in specs} == builtin  # every built-in plugin registers components
    missing = [f"{s.kind} {s.name!r} (plugin {s.plugin!r}): option {key!r}"
               for s in specs for key, opt in s.options.items() if not opt.help.strip()]
    assert not missing, "options without help (add them to the factory's Args: section): " + "; ".join(missing)
