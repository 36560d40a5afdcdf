"""Property tests over every registered component (like timm's test_models).

New plugins' components are picked up automatically: every generator and
discriminator must build for at least one of the standard data shapes, run forward and
backward without NaN, give the documented output shapes, and take an optimizer step.
"""

from __future__ import annotations

import pytest
import torch

import gzoo
from gzoo.errors import ShapeError, UsageError
from gzoo.interfaces import Discriminator, Generator
from gzoo.plugins import PluginManager

_REG = PluginManager().registry
SHAPES = [(1, 28, 28), (3, 32, 32), (2,)]
GENERATORS = [s.name for s in _REG.list("generator")]
DISCRIMINATORS = [s.name for s in _REG.list("discriminator")]
LOSSES = [s.name for s in _REG.list("loss")]
REGULARIZERS = [s.name for s in _REG.list("regularizer")]
BLOCKS = [s.name for s in _REG.list("block")]


def _build(kind: str, name: str, shape, num_classes: int = 0):
    try:
        return gzoo.create(kind, name, image_shape=shape, num_classes=num_classes)
    except ShapeError:
        return None


def _supported(kind: str, name: str) -> list[tuple]:
    return [s for s in SHAPES if _build(kind, name, s) is not None]


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_contract(name):
    torch.manual_seed(0)
    shapes = _supported("generator", name)
    assert shapes, f"generator {name} supports none of {SHAPES}"
    for shape in shapes:
        G = gzoo.create("generator", name, image_shape=shape)
        assert isinstance(G, Generator)
        assert G.image_shape == shape and G.num_classes == 0 and G.latent_dim > 0
        z = torch.randn(3, G.latent_dim)
        x = G(z)
        assert x.shape == (3, *shape)
        assert torch.isfinite(x).all()
        if len(shape) == 3:
            assert x.min() >= -1 and x.max() <= 1, "image generators output [-1, 1]"
        opt = torch.optim.SGD(G.parameters(), lr=0.1)
        before = [p.detach().clone() for p in G.parameters()]
        x.square().mean().backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in G.parameters())
        opt.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, G.parameters(), strict=True))
        assert G.sample(2).shape == (2, *shape)


@pytest.mark.parametrize("name", [s.name for s in _REG.list("generator") if s.conditional])
def test_conditional_generator(name):
    torch.manual_seed(0)
    shape = _supported("generator", name)[0]
    G = gzoo.create("generator", name, image_shape=shape, num_classes=5)
    assert G.num_classes == 5
    z = torch.randn(4, G.latent_dim)
    a = G.eval()(z, torch.tensor([0, 1, 2, 3]))
    b = G(z, torch.tensor([4, 4, 4, 4]))
    assert a.shape == (4, *shape)
    assert not torch.allclose(a, b), "labels must change the output"


@pytest.mark.parametrize("name", DISCRIMINATORS)
def test_discriminator_contract(name):
    torch.manual_seed(0)
    shapes = _supported("discriminator", name)
    assert shapes, f"discriminator {name} supports none of {SHAPES}"
    for shape in shapes:
        D = gzoo.create("discriminator", name, image_shape=shape)
        x = torch.rand(4, *shape) * 2 - 1
        out = D(x)
        feats = D.features(x)
        assert out.shape == (4,)
        assert feats.dim() == 2 and feats.shape[0] == 4
        assert torch.isfinite(out).all() and torch.isfinite(feats).all()
        opt = torch.optim.SGD(D.parameters(), lr=0.1)
        out.mean().backward()
        opt.step()
        assert torch.isfinite(D(x)).all()


@pytest.mark.parametrize("name", [s.name for s in _REG.list("discriminator") if s.conditional])
@pytest.mark.parametrize("head", ["projection", "multihead"])
def test_conditional_discriminator(name, head):
    torch.manual_seed(0)
    shape = _supported("discriminator", name)[0]
    spec = _REG.get("discriminator", name)
    opts = {"cond_head": head} if "cond_head" in spec.options else {}
    D = gzoo.create("discriminator", name, image_shape=shape, num_classes=3, **opts)
    x = torch.randn(2, *shape).clamp(-1, 1)
    a, b = D(x, torch.tensor([0, 0])), D(x, torch.tensor([2, 2]))
    assert a.shape == (2,)
    if head == "multihead" or not torch.allclose(a, b):
        assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_contract(name):
    loss = gzoo.create("loss", name)
    good_real, good_fake = torch.full((8,), 2.0), torch.full((8,), -2.0)
    # D prefers real scored high and fake low; G prefers fake scored high.
    assert loss.d_loss(good_real, good_fake) < loss.d_loss(good_fake, good_real)
    assert loss.g_loss(good_real) < loss.g_loss(good_fake)
    r = torch.randn(8, requires_grad=True)
    f = torch.randn(8, requires_grad=True)
    d, g = loss.d_loss(r, f), loss.g_loss(f)
    assert d.dim() == 0 and g.dim() == 0 and torch.isfinite(d) and torch.isfinite(g)
    d.backward()
    assert torch.isfinite(r.grad).all()


def test_classic_losses_match_their_formulas():
    """Against the textbook definitions written with sigmoid and log directly."""
    torch.manual_seed(0)
    r, f = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    sig = torch.sigmoid
    expected = {
        "minimax": (-(sig(r).log() + (1 - sig(f)).log()).mean(), (1 - sig(f)).log().mean()),
        "nonsaturating": (-(sig(r).log() + (1 - sig(f)).log()).mean(), -sig(f).log().mean()),
        "wgan": (f.mean() - r.mean(), -f.mean()),
        "hinge": (torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(), -f.mean()),
        "lsgan": (0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean(), 0.5 * ((f - 1) ** 2).mean()),
    }
    for name, (d, g) in expected.items():
        loss = gzoo.create("loss", name)
        torch.testing.assert_close(loss.d_loss(r, f), d)
        torch.testing.assert_close(loss.g_loss(f), g)


class LinearD(Discriminator):
    """D(x) = w . x, whose input gradient is w everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def features(self, x):
        return x.flatten(1)

    def forward(self, x, y=None):
        return x.flatten(1) @ self.w


def test_gradient_penalties_match_closed_form():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5
    D = LinearD(w)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    gp = gzoo.create("regularizer", "gp")
    r1 = gzoo.create("regularizer", "r1")
    torch.testing.assert_close(gp.penalty(D, real, fake, None, None), torch.tensor(16.0))  # (5 - 1)^2
    torch.testing.assert_close(r1.penalty(D, real, fake, None, None), torch.tensor(12.5))  # 0.5 * 25
    assert r1.every == 16 and not r1.due(3) and r1.due(32)


@pytest.mark.parametrize("name", REGULARIZERS)
def test_regularizer_contract(name):
    torch.manual_seed(0)
    reg = gzoo.create("regularizer", name)
    D = reg.wrap_discriminator(gzoo.create("discriminator", "mlp", image_shape=(2,)))
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    if reg.has_penalty:
        p = reg.penalty(D, real, fake, None, None)
        assert p.dim() == 0 and torch.isfinite(p) and p >= 0
        p.backward()
    with torch.no_grad():
        for prm in D.parameters():
            prm.mul_(100)
    reg.after_d_step(D)
    assert torch.isfinite(D(real)).all()


def test_clip_and_spectral_norm():
    D = gzoo.create("discriminator", "mlp", image_shape=(2,))
    clip = gzoo.create("regularizer", "clip", clip=0.05)
    with torch.no_grad():
        for p in D.parameters():
            p.normal_(0, 1)
    clip.after_d_step(D)
    assert max(p.abs().max() for p in D.parameters()) <= 0.05
    D = gzoo.create("regularizer", "sn").wrap_discriminator(gzoo.create("discriminator", "mlp", image_shape=(2,)))
    for _ in range(20):  # power iterations converge in training mode
        D(torch.randn(4, 2))
    lin = D.body[1]
    sigma = torch.linalg.matrix_norm(lin.weight.detach(), ord=2)
    assert abs(float(sigma) - 1.0) < 0.05


@pytest.mark.parametrize("name", BLOCKS)
def test_block_contract(name):
    torch.manual_seed(0)
    block = gzoo.create("block", name, channels=16)
    x = torch.randn(2, 16, 8, 8)
    y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.mean().backward()


def test_block_insertion_into_staged_models():
    if not BLOCKS:
        pytest.skip("no block registered")
    G = gzoo.create("generator", "dcgan", image_shape=(1, 28, 28), insert=f"{BLOCKS[0]}@14")
    assert len(G.stages[0].after) == 1
    assert G(torch.randn(2, G.latent_dim)).shape == (2, 1, 28, 28)
    with pytest.raises(UsageError, match="valid resolutions"):
        gzoo.create("generator", "dcgan", image_shape=(1, 28, 28), insert=f"{BLOCKS[0]}@9")


def test_options_are_typed_and_listed():
    with pytest.raises(UsageError, match="must be int"):
        gzoo.create("generator", "mlp", image_shape=(2,), hidden="wide")
    with pytest.raises(UsageError, match=r"Did you mean 'hidden'.*Valid options"):
        gzoo.create("generator", "mlp", image_shape=(2,), hiden=3)
    G = gzoo.create("generator", "mlp", image_shape=(2,), hidden="32")  # CLI strings are parsed
    assert G.net[0].out_features == 32
