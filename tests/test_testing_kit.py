"""The plugin authors' test kit (gzoo.testing): every built-in passes it, and every check
trips on a deliberately broken throwaway component, with a message that names it."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn

import gzoo
from gzoo.data import TensorGanDataset
from gzoo.errors import DatasetNotFoundError, ShapeError, UnknownNameError, UsageError
from gzoo.interfaces import Block, Conditioner, Discriminator, Generator, Loss, Regularizer
from gzoo.plugins import PluginManager
from gzoo.testing import CHECKED_KINDS, check_component, check_training, supported_shapes

from .conftest import make_image_folder

_REG = PluginManager().registry
BUILTINS = [(kind, s.name) for kind in CHECKED_KINDS for s in _REG.list(kind)]

#: what some built-ins need to be checked: the run a visualizer draws.
COC_RUN = {"gen": "cocgan", "disc": "coc", "data": "digits", "gen_opt": {}, "disc_opt": {}}
GCA_RUN = {"gen": "dcgan", "disc": "dcgan", "data": "digits", "data_opt": {"resolution": 32},
           "gen_opt": {"ch": 8, "insert": "gca@8"}, "disc_opt": {"ch": 8, "insert": "nonlocal@8"}}
NEEDS = {("visualizer", "clusters"): {"run": COC_RUN}, ("visualizer", "attention"): {"run": GCA_RUN}}


@pytest.mark.parametrize(("kind", "name"), BUILTINS, ids=[f"{k}:{n}" for k, n in BUILTINS])
def test_every_registered_component_passes(kind, name, tmp_path, monkeypatch):
    options = dict(NEEDS.get((kind, name), {}))
    if kind == "metric":  # the image families train a feature classifier: a small one will do
        from gzoo.metrics import features

        monkeypatch.setattr(features, "DEFAULT_SETTINGS", features.TrainSettings(max_steps=20, batch_size=32))
    if (kind, name) == ("dataset", "folder"):
        options["root"] = str(make_image_folder(tmp_path / "images"))
    try:
        check_component(kind, name, **options)
    except DatasetNotFoundError as exc:
        pytest.skip(f"dataset files absent: {exc}")


def test_unknown_kind_or_name_is_one_clear_error():
    with pytest.raises(ValueError, match="no contract check for kind 'gizmo'"):
        check_component("gizmo", "x")
    with pytest.raises(UnknownNameError, match="Did you mean 'dcgan'"):
        check_component("generator", "dcgam")


def test_import_gzoo_does_not_import_the_kit_or_pytest():
    code = ("import sys, gzoo, gzoo.plugins, gzoo.trainer, gzoo.cli; gzoo.list_components(); "
            "bad = {'gzoo.testing', 'pytest'} & set(sys.modules); assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# -- broken throwaway components: each check must trip ------------------------------------------------


class PointG(Generator):
    """A small 2-D/images generator; subclasses break one thing each."""

    def __init__(self, *, image_shape, latent_dim: int = 4):
        super().__init__(image_shape=image_shape, latent_dim=latent_dim)
        self.lin = nn.Linear(latent_dim, int(torch.Size(self.image_shape).numel()))

    def forward(self, z, y=None):
        return torch.tanh(self.lin(z)).view(-1, *self.image_shape)


class WrongShapeG(PointG):
    def __init__(self, *, image_shape):
        if len(image_shape) != 1:
            raise ShapeError("wrong-shape makes 2-D points only")
        super().__init__(image_shape=image_shape)

    def forward(self, z, y=None):
        return torch.cat([super().forward(z, y), z[:, :1]], 1)  # (N, 3) for (2,)


class UnusedParamG(PointG):
    def __init__(self, *, image_shape):
        super().__init__(image_shape=image_shape)
        self.unused = nn.Linear(3, 3)


class NaNG(PointG):
    def forward(self, z, y=None):
        return super().forward(z, y) * float("nan")


class NaNGradG(PointG):
    def __init__(self, *, image_shape):
        super().__init__(image_shape=image_shape)
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, z, y=None):
        return super().forward(z, y) + 0 * self.w.sqrt()  # finite output, NaN gradient at 0


class NoTanhImageG(PointG):
    def __init__(self, *, image_shape):
        super().__init__(image_shape=image_shape)
        self.require_image("no-tanh")

    def forward(self, z, y=None):
        return 3 * super().forward(z, y)


class NoisyG(PointG):
    def forward(self, z, y=None):
        return torch.tanh(self.lin(z) + torch.randn(z.shape[0], self.lin.out_features)).view(-1, *self.image_shape)


class FrozenOutputG(PointG):
    def forward(self, z, y=None):
        same = torch.tanh(z[:, :1]).view(-1, *[1] * len(self.image_shape))
        return super().forward(z, y) * 0 + same  # gradients are all zero: Adam cannot move it


class NoShapeG(PointG):
    def __init__(self, *, image_shape):
        raise ShapeError(f"no-shape supports nothing, got {tuple(image_shape)}")


class DeafG(PointG):
    """Conditional in name only: it takes num_classes but ignores the labels."""

    def __init__(self, *, image_shape, num_classes: int = 0):
        super().__init__(image_shape=image_shape)
        self.num_classes = num_classes


class PointD(Discriminator):
    def __init__(self, *, image_shape, num_classes: int = 0):
        super().__init__(image_shape=image_shape, num_classes=num_classes)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(self.image_shape).numel()), 8), nn.ReLU())
        self.init_head(8)

    def features(self, x):
        return self.body(x)


class ColumnD(PointD):
    def forward(self, x, y=None):
        return super().forward(x, y)[:, None]  # (N, 1)


class FlatFeaturesD(PointD):
    def features(self, x):
        return self.body(x).sum(1)  # (N,)

    def forward(self, x, y=None):
        return self.head(self.body(x), y)


class DetachingD(PointD):
    def forward(self, x, y=None):
        return super().forward(x.detach(), y)


class UnusedParamD(PointD):
    def __init__(self, *, image_shape, num_classes: int = 0):
        super().__init__(image_shape=image_shape, num_classes=num_classes)
        self.spare = nn.Parameter(torch.ones(2))


class DeafD(PointD):
    def forward(self, x, y=None):
        return self.head(self.features(x), None if y is None else torch.zeros_like(y))  # never looks at y


class InfD(PointD):
    def forward(self, x, y=None):
        return super().forward(x, y) / 0.0


class NaNLoss(Loss):
    def d_loss(self, real, fake):
        return (real - fake).mean() * float("nan")

    def g_loss(self, fake, real=None):
        return -fake.mean()


class InvertedLoss(Loss):
    def d_loss(self, real, fake):
        return real.mean() - fake.mean()  # D would learn to score fakes high

    def g_loss(self, fake, real=None):
        return -fake.mean()


class WrongWayGLoss(Loss):
    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    def g_loss(self, fake, real=None):
        return fake.mean()


class PerSampleLoss(Loss):
    def d_loss(self, real, fake):
        return fake - real  # (N,), not a scalar

    def g_loss(self, fake, real=None):
        return -fake.mean()


class NaiveLoss(Loss):
    """The textbook minimax loss written with log(sigmoid): -inf for confident logits."""

    def d_loss(self, real, fake):
        return -(torch.sigmoid(real).log() + (1 - torch.sigmoid(fake)).log()).mean()

    def g_loss(self, fake, real=None):
        return -torch.sigmoid(fake).log().mean()


class SecretlyRelativisticLoss(Loss):
    """Needs the real logits but does not say so (relativistic = False): real is None."""

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    def g_loss(self, fake, real=None):
        return real.mean() - fake.mean()


class NaNPenalty(Regularizer):
    def penalty(self, D, real, fake, y_real, y_fake):
        return D(real, y_real).mean() * float("nan")


class DetachedPenalty(Regularizer):
    def penalty(self, D, real, fake, y_real, y_fake):
        return D(real, y_real).pow(2).mean().detach()


class VectorPenalty(Regularizer):
    def penalty(self, D, real, fake, y_real, y_fake):
        return D(real, y_real).pow(2)


class BadWrap(Regularizer):
    has_penalty = False

    def wrap_discriminator(self, D):
        return nn.Sequential(D)


class PoisonStep(Regularizer):
    has_penalty = False

    def after_d_step(self, D):
        with torch.no_grad():
            for p in D.parameters():
                p.fill_(float("nan"))


class ImagesOnlyPenalty(Regularizer):
    """A sound regularizer that fits image discriminators only, and says so."""

    def penalty(self, D, real, fake, y_real, y_fake):
        if real.dim() != 4:
            raise UsageError("images-only needs image data (N, C, H, W)")
        return D(real.flip(3), y_real).sub(D(real, y_real)).pow(2).mean()


class NeverFits(ImagesOnlyPenalty):
    def penalty(self, D, real, fake, y_real, y_fake):
        raise UsageError("never-fits fits nothing")


class Shrink(Block):
    def __init__(self, *, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class SpareBlock(Block):
    def __init__(self, *, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.spare = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x + self.conv(x)


class NaNBlock(Block):
    def __init__(self, *, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return self.conv(x).log()  # log of negatives


def _images(lo: float, hi: float, n: int = 20) -> torch.Tensor:
    return torch.linspace(lo, hi, n * 4).view(n, 1, 2, 2)


def raw_pixels(*, n: int = 20):
    """Images in [0, 255]: forgot to scale."""
    return TensorGanDataset(_images(0, 255, n), torch.arange(n) % 2, name="raw", num_classes=2)


def label_overflow(*, n: int = 20):
    return TensorGanDataset(_images(-1, 1, n), torch.arange(n) % 3, name="overflow", num_classes=2)


def no_examples(*, n: int = 0):
    return TensorGanDataset(torch.zeros(0, 2), None, name="empty")


class LyingLabels(TensorGanDataset):
    def labels(self):
        return torch.zeros(len(self), dtype=torch.long)


def lying_labels(*, n: int = 20):
    return LyingLabels(_images(-1, 1, n), torch.arange(n) % 2 + 0, name="lying", num_classes=2)


def int32_labels(*, n: int = 20):
    ds = TensorGanDataset(_images(-1, 1, n), torch.arange(n) % 2, name="int32", num_classes=2)
    ds.y = ds.y.int()
    return ds


class _Cond(Conditioner):
    def __init__(self, *, dataset, k: int = 4):
        self.num_classes = k

    def real_labels(self, x, y):
        return torch.zeros(x.shape[0], dtype=torch.long)

    def fake_labels(self, n, generator=None):
        return torch.randint(self.num_classes, (n,), generator=generator)


class OverflowCond(_Cond):
    def fake_labels(self, n, generator=None):
        return torch.full((n,), self.num_classes)


class FloatCond(_Cond):
    def real_labels(self, x, y):
        return torch.zeros(x.shape[0])


class UnseededCond(_Cond):
    def fake_labels(self, n, generator=None):
        return torch.randint(self.num_classes, (n,))  # ignores the generator: resume breaks


def no_fit_viz(*, run, out):
    raise UsageError("draw-nothing fits no run")


def crashing_viz(*, run, out):
    return run.no_such_attribute


def phantom_viz(*, run, out):
    return [out]  # says it wrote a file; did not


def text_viz(*, run, out):
    Path(out).write_text("not an image")
    return [out]


BROKEN = [
    # (kind, factory, options, what the message must say)
    ("generator", WrongShapeG, {}, r"image_shape=\(2,\).*returned shape \(4, 3\), expected \(4, 2\)"),
    ("generator", UnusedParamG, {}, r"reaches no gradient to parameter\(s\) unused.weight, unused.bias"),
    ("generator", NaNG, {}, r"returned non-finite values"),
    ("generator", NaNGradG, {}, r"non-finite gradients to w"),
    ("generator", NoTanhImageG, {}, r"images must lie in \[-1, 1\].*end with tanh"),
    ("generator", NoisyG, {}, r"not deterministic in eval mode"),
    ("generator", FrozenOutputG, {}, r"one Adam step on its parameters does not change the samples"),
    ("generator", NoShapeG, {}, r"builds for none of the shapes .*no-shape supports nothing"),
    ("generator", DeafG, {}, r"num_classes=3: labels y do not change the samples"),
    ("discriminator", ColumnD, {}, r"forward\(x\) for 4 samples returned shape \(4, 1\), expected \(4,\)"),
    ("discriminator", FlatFeaturesD, {}, r"features\(x\) returned shape \(4,\) for 4 samples, expected \(4, d\)"),
    ("discriminator", DetachingD, {}, r"gradient with respect to the input x is missing"),
    ("discriminator", UnusedParamD, {}, r"reaches no gradient to parameter\(s\) spare"),
    ("discriminator", DeafD, {}, r"num_classes=3: labels y do not change the logits"),
    ("discriminator", InfD, {}, r"returned non-finite values"),
    ("loss", NaNLoss, {}, r"d_loss\(real, fake\) on logits of scale 1 returned non-finite"),
    ("loss", InvertedLoss, {}, r"d_loss must be lower when real logits are high"),
    ("loss", WrongWayGLoss, {}, r"g_loss must be lower when fake logits are high"),
    ("loss", PerSampleLoss, {}, r"d_loss\(real, fake\) .* returned shape \(8,\), expected \(\)"),
    ("loss", NaiveLoss, {}, r"on logits of scale 30 returned non-finite"),
    ("loss", SecretlyRelativisticLoss, {}, r"g_loss\(fake\) raised AttributeError.*set relativistic = True"),
    ("regularizer", NaNPenalty, {}, r"penalty\(D, real, fake, y_real, y_fake\) returned non-finite"),
    ("regularizer", DetachedPenalty, {}, r"not differentiable with respect to D's parameters"),
    ("regularizer", VectorPenalty, {}, r"penalty.* returned shape \(4,\), expected \(\)"),
    ("regularizer", BadWrap, {}, r"wrap_discriminator returned a Sequential, not a Discriminator"),
    ("regularizer", PoisonStep, {}, r"after a step and after_d_step returned non-finite"),
    ("regularizer", NeverFits, {}, r"fits none of the discriminators .*never-fits fits nothing"),
    ("block", Shrink, {}, r"channels=16 on \(4, 16, 8, 8\).*returned shape \(4, 16, 4, 4\)"),
    ("block", SpareBlock, {}, r"reaches no gradient to parameter\(s\) spare.weight"),
    ("block", NaNBlock, {}, r"returned non-finite"),
    ("dataset", raw_pixels, {}, r"images must lie in \[-1, 1\].*\[0, 255\]"),
    ("dataset", label_overflow, {}, r"labels must lie in \[-1, num_classes=2\).*\[0, 2\]"),
    ("dataset", no_examples, {}, r"is empty"),
    ("dataset", lying_labels, {}, r"labels\(\) disagrees with the labels get_batch returns"),
    ("dataset", int32_labels, {}, r"y of dtype torch.int32, expected torch.long"),
    ("conditioner", OverflowCond, {}, r"fake_labels\(32, generator\) returned labels in \[4, 4\]"),
    ("conditioner", FloatCond, {}, r"real_labels\(x, y\) returned shape \(16,\) and dtype torch.float32"),
    ("conditioner", UnseededCond, {}, r"not reproducible from the generator's seed"),
    ("conditioner", _Cond, {"k": 0}, r"num_classes must be an int >= 1, got 0"),
    ("visualizer", no_fit_viz, {}, r"drew nothing for any tiny run .*draw-nothing fits no run"),
    ("visualizer", crashing_viz, {}, r"raised AttributeError.*must raise gzoo.errors.UsageError"),
    ("visualizer", phantom_viz, {}, r"which does not exist"),
    ("visualizer", text_viz, {}, r"which is not a PNG file"),
]


@pytest.mark.parametrize(("kind", "factory", "options", "message"), BROKEN,
                         ids=[f"{k}:{f.__name__}" for k, f, _, _ in BROKEN])
def test_each_check_trips_on_a_broken_component(register_component, kind, factory, options, message):
    name = register_component(kind, "broken-" + factory.__name__.lower(), factory)
    with pytest.raises(AssertionError, match=message) as info:
        check_component(kind, name, **options)
    assert f"{kind} {name!r}" in str(info.value), "the message names the component"


def test_a_sound_throwaway_component_passes(register_component):
    """The broken ones above differ from these by one defect each."""
    check_component("generator", register_component("generator", "sound-g", PointG))
    check_component("discriminator", register_component("discriminator", "sound-d", PointD))
    check_component("conditioner", register_component("conditioner", "sound-c", _Cond))
    check_component("regularizer", register_component("regularizer", "images-only", ImagesOnlyPenalty))


def test_context_arguments_choose_what_is_checked(register_component):
    name = register_component("generator", "only-images", NoTanhImageG)
    with pytest.raises(AssertionError, match=r"image_shape=\(3, 32, 32\)"):
        check_component("generator", name, image_shape=(3, 32, 32))
    check_component("block", "context-cluster", channels=32)
    check_component("conditioner", "labels", dataset="digits")
    assert supported_shapes("generator", "dcgan") == [(1, 28, 28), (3, 32, 32), (1, 32, 32), (3, 64, 64)]


def test_check_training_runs_the_real_trainer(tmp_path):
    trainer = check_training("mlp", "mlp", "hinge", reg=["gp"], tmp_path=tmp_path)
    assert trainer.step == 2 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert check_training("dcgan", "dcgan", gen_opt={"ch": 8}, disc_opt={"ch": 8}).config.data == "digits"


def test_check_training_fails_on_a_diverging_run(register_component, tmp_path):
    name = register_component("loss", "nan-loss", NaNLoss)
    with pytest.raises(AssertionError, match=r"training mlp/mlp with loss 'nan-loss'.*DivergenceError"):
        check_training("mlp", "mlp", name, tmp_path=tmp_path)


def test_the_kit_leaves_the_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_component("loss", "hinge")
    check_component("generator", "mlp")
    assert torch.equal(torch.rand(3), expected)


# -- the worked example plugin tests itself with the kit ------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "gzoo-drift"


def test_the_example_plugins_own_tests_pass(tmp_path):
    """docs/examples/gzoo-drift/tests use gzoo.testing as a third party would (its conftest.py
    says pytest_plugins = ["gzoo.testing"]); CI installs the example, so they run here."""
    try:
        metadata.distribution("gzoo-drift")
    except metadata.PackageNotFoundError:
        pytest.skip("docs/examples/gzoo-drift is not installed (pip install ./docs/examples/gzoo-drift)")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
         str(EXAMPLE / "tests")], capture_output=True, text=True, cwd=EXAMPLE, env=env,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout, r.stdout[-2000:]


class NaNFamily(gzoo.interfaces.MetricFamily):
    """Reports NaN."""

    names = ["gap"]

    def measure(self, samples, data, metrics, **_):
        return {"gap": float("nan")}


class VagueFamily(NaNFamily):
    """Its min_samples is not (int, reason)."""

    def min_samples(self, metrics, data):
        return "a few"

    def measure(self, samples, data, metrics, **_):
        return {"gap": 0.0}


class GoodFamily(NaNFamily):
    def measure(self, samples, data, metrics, **_):
        return {"gap": float(samples.mean())}


class Dots(TensorGanDataset):
    def __init__(self, *, family: str = "nan-family"):
        super().__init__(torch.randn(50, 2, generator=torch.Generator().manual_seed(0)), None, name="dots")
        self.measured_by = family


class MetricPlugin:
    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        register("metric", "nan-family", NaNFamily)
        register("metric", "vague-family", VagueFamily)
        register("metric", "good-family", GoodFamily)
        register("dataset", "dots", Dots)


def test_metric_family_checks(register_plugin):
    register_plugin(MetricPlugin(), "metric-plugin")
    with pytest.raises(AssertionError, match=r"metric 'nan-family': measure\(\) reported gap=nan"):
        check_component("metric", "nan-family", dataset="dots")
    with pytest.raises(AssertionError, match="measures none of the datasets tried"):
        check_component("metric", "nan-family")  # no built-in dataset names it
    with pytest.raises(AssertionError, match="min_samples must return"):
        check_component("metric", "vague-family", dataset="dots", data_opt={"family": "vague-family"})
    check_component("metric", "good-family", dataset="dots", data_opt={"family": "good-family"})
