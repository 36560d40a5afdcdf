"""Component tests beyond the shared contract.

The registry-wide contract (build, shapes, finite values, gradients reaching every parameter,
one optimizer step, eval determinism, labels used) lives in :mod:`gzoo.testing`, so plugin
authors get the same checks; tests/test_testing_kit.py runs it over every registered component.
Here: the conditional heads against their formulas, gradients of ``features`` with both heads,
the classic losses and penalties against closed forms, clipping and spectral norm, block
insertion, typed options and the base classes' helpers.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

import gzoo
from gzoo.errors import ShapeError, UnknownNameError, UsageError
from gzoo.interfaces import ConditionalHead, Discriminator, Generator
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


def _tiny_shape(kind: str, name: str) -> tuple:
    """The smallest standard data shape the component supports."""
    shapes = _supported(kind, name)
    assert shapes, f"{kind} {name} supports none of {SHAPES}"
    return min(shapes, key=lambda s: torch.Size(s).numel())


def _assert_grads(params, what: str) -> None:
    for n, p in params:
        assert p.grad is not None, f"{what}: parameter {n} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{what}: parameter {n} has a non-finite gradient"


@pytest.mark.parametrize("name", [s.name for s in _REG.list("discriminator") if s.conditional])
@pytest.mark.parametrize("head", ["projection", "multihead"])
def test_conditional_discriminator(name, head):
    torch.manual_seed(0)
    shape = _supported("discriminator", name)[0]
    spec = _REG.get("discriminator", name)
    opts = {"cond_head": head} if "cond_head" in spec.options else {}
    D = gzoo.create("discriminator", name, image_shape=shape, num_classes=3, **opts).eval()
    x = torch.rand(2, *shape) * 2 - 1
    ya, yb = torch.tensor([0, 1]), torch.tensor([2, 2])
    a, b = D(x, ya), D(x, yb)
    assert a.shape == (2,)
    # The projection head's embedding starts at N(0, 0.02): the label's effect is small at
    # init but not zero. Perturb the head so it is large, then check the output against the
    # head's formula and that the label changes it.
    assert not torch.equal(a, b), "labels must change the output"
    head_module = getattr(D, "head", None)
    with torch.no_grad():
        for p in (head_module if isinstance(head_module, ConditionalHead) else D).parameters():
            p.add_(torch.randn_like(p))
    a, b = D(x, ya), D(x, yb)
    assert ((a - b).abs() > 1e-3 * (1 + a.abs())).all(), "labels must change the output"
    if isinstance(head_module, ConditionalHead):  # features(x, y) where D reads the label before its head
        h = D.features(x, ya) if "y" in inspect.signature(D.features).parameters else D.features(x)
        logits = head_module.linear(h)  # (N, 1) or (N, K)
        if head_module.mode == "projection":
            expected = logits[:, 0] + (head_module.embed(ya) * h).sum(1)  # w.h + b + <embed(y), h>
        else:
            expected = logits.gather(1, ya.view(-1, 1))[:, 0]  # the output of y's class
        torch.testing.assert_close(a, expected)
        if opts:
            assert head_module.mode == head


@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize("name", DISCRIMINATORS)
def test_every_discriminator_parameter_gets_a_gradient(name, conditional):
    spec = _REG.get("discriminator", name)
    if conditional and not spec.conditional:
        pytest.skip(f"discriminator {name} is not conditional")
    shape = _tiny_shape("discriminator", name)
    heads = ["projection", "multihead"] if conditional and "cond_head" in spec.options else [None]
    for head in heads:
        torch.manual_seed(0)
        opts = {"cond_head": head} if head else {}
        D = gzoo.create("discriminator", name, image_shape=shape, num_classes=3 if conditional else 0, **opts)
        x = torch.rand(3, *shape) * 2 - 1
        y = torch.tensor([0, 1, 2]) if conditional else None
        out = D(x, y)
        (out * torch.randn_like(out)).sum().backward()
        _assert_grads(D.named_parameters(), f"discriminator {name} {head or ''}")
        # features(x) reaches every parameter but the head's
        D.zero_grad(set_to_none=True)
        feats = D.features(x)
        (feats * torch.randn_like(feats)).sum().backward()
        head_params = set(D.head.parameters()) if hasattr(D, "head") else set()
        _assert_grads([(n, p) for n, p in D.named_parameters() if p not in head_params],
                      f"discriminator {name} features")


def test_classic_losses_match_their_formulas():
    """Against the textbook definitions written with sigmoid and log directly."""
    torch.manual_seed(0)
    r, f = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    sig, bce = torch.sigmoid, torch.nn.functional.binary_cross_entropy
    ones, zeros = torch.ones(16, dtype=torch.float64), torch.zeros(16, dtype=torch.float64)
    expected = {
        "minimax": (-(sig(r).log() + (1 - sig(f)).log()).mean(), (1 - sig(f)).log().mean()),
        "nonsaturating": (-(sig(r).log() + (1 - sig(f)).log()).mean(), -sig(f).log().mean()),
        "wgan": (f.mean() - r.mean(), -f.mean()),
        "hinge": (torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(), -f.mean()),
        "lsgan": (0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean(), 0.5 * ((f - 1) ** 2).mean()),
        # RaSGAN as binary cross-entropy on sigmoid probabilities of the relative logits
        "ragan": ((bce(sig(r - f.mean()), ones) + bce(sig(f - r.mean()), zeros)) / 2,
                  (bce(sig(f - r.mean()), ones) + bce(sig(r - f.mean()), zeros)) / 2),
    }
    for name, (d, g) in expected.items():
        loss = gzoo.create("loss", name)
        torch.testing.assert_close(loss.d_loss(r, f), d)
        torch.testing.assert_close(loss.g_loss(f, r), g)


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


def test_clip_and_spectral_norm():
    D = gzoo.create("discriminator", "mlp", image_shape=(2,))
    clip = gzoo.create("regularizer", "clip", clip=0.05)
    with torch.no_grad():
        for p in D.parameters():
            p.normal_(0, 1)
    clip.after_d_step(D)
    assert max(p.abs().max() for p in D.parameters()) <= 0.05
    weights_only = gzoo.create("regularizer", "clip", clip=0.05, params="weights")
    with torch.no_grad():
        for p in D.parameters():
            p.fill_(3.0)
    weights_only.after_d_step(D)
    assert all(float(p.detach().abs().max()) == pytest.approx(0.05 if p.dim() >= 2 else 3.0) for p in D.parameters())
    assert any(p.dim() < 2 for p in D.parameters())  # biases stay free
    with pytest.raises(UsageError, match="valid: auto, all, weights"):
        gzoo.create("regularizer", "clip", params="gains")
    auto = gzoo.create("regularizer", "clip", clip=0.05)  # params="auto": what D asks for
    for name, clamped_vectors in (("mlp", True), ("coc", False)):  # coc: clip_params = "weights"
        D = gzoo.create("discriminator", name, image_shape=(2,) if name == "mlp" else (1, 8, 8),
                        **({"stages": "2:8:1"} if name == "coc" else {}))
        with torch.no_grad():
            for p in D.parameters():
                p.fill_(3.0)
        auto.after_d_step(D)
        vectors = [float(p.detach().abs().max()) for p in D.parameters() if p.dim() < 2]
        assert vectors and all(v == pytest.approx(0.05 if clamped_vectors else 3.0) for v in vectors)
        assert all(float(p.detach().abs().max()) == pytest.approx(0.05) for p in D.parameters() if p.dim() >= 2)
    bound = gzoo.create("regularizer", "clip")  # clip=None: the bound D asks for (Discriminator.clip_bound)
    for name, c in (("mlp", 0.01), ("coc", 0.1)):  # the WGAN paper's 0.01; coc asks for 0.1
        D = gzoo.create("discriminator", name, image_shape=(2,) if name == "mlp" else (1, 8, 8),
                        **({"stages": "2:8:1"} if name == "coc" else {}))
        with torch.no_grad():
            for p in D.parameters():
                p.fill_(-3.0)
        bound.after_d_step(D)
        assert all(float(p.detach().min()) == pytest.approx(-c) for p in D.parameters() if p.dim() >= 2)
    for bad in (0.0, -0.01, float("nan")):
        with pytest.raises(UsageError, match="clip must be positive"):
            gzoo.create("regularizer", "clip", clip=bad)
    D = gzoo.create("regularizer", "sn").wrap_discriminator(gzoo.create("discriminator", "mlp", image_shape=(2,)))
    for _ in range(20):  # power iterations converge in training mode
        D(torch.randn(4, 2))
    lin = D.body[1]
    sigma = torch.linalg.matrix_norm(lin.weight.detach(), ord=2)
    assert abs(float(sigma) - 1.0) < 0.05


class LabelTableD(gzoo.interfaces.Discriminator):
    """D(x, y) = table[y] + x[:, 0]: its logits show which label each image was scored with."""

    def __init__(self, k):
        super().__init__(image_shape=(2,), num_classes=k)
        self.table = torch.nn.Parameter(torch.arange(k, dtype=torch.float) * 10)
        self.seen = []

    def features(self, x):
        return x.flatten(1)

    def forward(self, x, y=None):
        self.seen.append(y.clone())
        return self.table[y] + x[:, 0]


def test_mismatch_scores_real_images_under_another_label_with_the_losses_fake_term():
    torch.manual_seed(0)
    k, n = 3, 3000
    D = LabelTableD(k)
    real, y = torch.randn(n, 2), torch.randint(0, k, (n,))
    expected = {"logistic": F.softplus, "hinge": lambda t: F.relu(1 + t), "wasserstein": lambda t: t}
    for form, f in expected.items():
        reg = gzoo.create("regularizer", "mismatch", form=form)
        assert reg.wrap_discriminator(D) is D and reg.weight == 1.0 and reg.every == 1
        D.seen.clear()
        p = reg.penalty(D, real, None, y, None)
        (wrong,) = D.seen
        assert (wrong != y).all()  # every image gets a label other than its own
        torch.testing.assert_close(p, f(D.table[wrong] + real[:, 0]).mean())
        for c in range(k):  # the other labels, uniformly: 1/2 each for k = 3
            others = wrong[y == c]
            shares = torch.bincount(others, minlength=k).float() / len(others)
            assert shares[c] == 0 and all(abs(shares[o] - 0.5) < 0.05 for o in range(k) if o != c)
    with pytest.raises(UsageError, match="valid: logistic, hinge, wasserstein"):
        gzoo.create("regularizer", "mismatch", form="wgan")
    for classes in (0, 1):
        with pytest.raises(UsageError, match="needs a conditional run with at least 2 classes"):
            gzoo.create("regularizer", "mismatch").wrap_discriminator(
                gzoo.create("discriminator", "mlp", image_shape=(2,), num_classes=classes))


def test_mismatch_teaches_d_to_check_the_label():
    """Trained on real pairs only, D cannot tell a right label from a wrong one; with the
    mismatch term it scores real images higher under their own label."""
    torch.manual_seed(0)
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])

    def margin(with_mismatch):
        torch.manual_seed(1)
        D = gzoo.create("discriminator", "mlp", image_shape=(2,), num_classes=3, hidden=32)
        reg = gzoo.create("regularizer", "mismatch")
        opt = torch.optim.Adam(D.parameters(), lr=3e-3)
        for _ in range(150):
            y = torch.randint(0, 3, (64,))
            x = centres[y] + 0.3 * torch.randn(64, 2)
            loss = F.softplus(-D(x, y)).mean() + (reg.penalty(D, x, None, y, None) if with_mismatch else 0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        y = torch.randint(0, 3, (600,))
        x = centres[y] + 0.3 * torch.randn(600, 2)
        with torch.no_grad():
            return (D(x, y) - D(x, (y + 1) % 3)).mean().item()

    assert margin(True) > 2.0 > margin(False)


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


# -- the base classes' helpers ---------------------------------------------------------------


class _BareG(Generator):
    def forward(self, z, y=None):
        return z


class _BareD(Discriminator):
    def features(self, x):
        return x.flatten(1)


def test_require_image_messages():
    assert _BareG(image_shape=(3, 32, 32)).require_image("g") == (3, 32)
    assert _BareG(image_shape=(1, 28, 28)).require_image("g", sizes=(28, 32)) == (1, 28)
    with pytest.raises(ShapeError, match=r"^dcgan generator works on images \(C, H, W\), but the data has shape "
                                         r"\(2,\); use 'mlp' for 2-D data$"):
        _BareG(image_shape=(2,)).require_image("dcgan generator")
    with pytest.raises(ShapeError, match=r"^g needs square images, got 28x32$"):
        _BareG(image_shape=(1, 28, 32)).require_image("g")
    assert _BareG(image_shape=(1, 28, 32)).require_image("g", square=False) == (1, 28)
    with pytest.raises(ShapeError, match=r"^d supports square images of \[28, 32, 64\] pixels, got 20x20$"):
        _BareD(image_shape=(1, 20, 20)).require_image("d", sizes={64: 4, 28: 7, 32: 4})
    with pytest.raises(ShapeError, match=r"supports square images of \[28, 32\] pixels, got 28x32"):
        _BareD(image_shape=(1, 28, 32)).require_image("d", sizes=(28, 32))
    with pytest.raises(ShapeError, match=r"^_BareD works on images"):  # who defaults to the class name
        _BareD(image_shape=(2,)).require_image()
    # the built-in models go through it
    with pytest.raises(ShapeError, match="dcgan discriminator works on images"):
        gzoo.create("discriminator", "dcgan", image_shape=(2,))
    with pytest.raises(ShapeError, match=r"dcgan generator supports square images of \[28, 32, 64\]"):
        gzoo.create("generator", "dcgan", image_shape=(1, 20, 20))


def test_check_labels():
    G, D = _BareG(image_shape=(2,), num_classes=3), _BareD(image_shape=(2,), num_classes=3)
    with pytest.raises(UsageError, match="^this generator is conditional: it needs labels y$"):
        G.check_labels(None)
    with pytest.raises(UsageError, match="^this discriminator is conditional: it needs labels y$"):
        D.check_labels(None)
    y = G.check_labels(torch.tensor([0.0, 2.0]))
    assert y.dtype == torch.long and y.tolist() == [0, 2]
    assert _BareG(image_shape=(2,)).check_labels(None) is None  # unconditional: no labels needed
    for name in ("mlp", "dcgan"):
        G = gzoo.create("generator", name, image_shape=(1, 28, 28), num_classes=3)
        with pytest.raises(UsageError, match="this generator is conditional: it needs labels y"):
            G(torch.randn(2, G.latent_dim))
        D = gzoo.create("discriminator", name, image_shape=(1, 28, 28), num_classes=3)
        with pytest.raises(UsageError, match="this discriminator is conditional: it needs labels y"):
            D(torch.randn(2, 1, 28, 28))


def test_label_embedding_and_condition():
    G = _BareG(image_shape=(2,), num_classes=4, latent_dim=5)
    assert (G.image_shape, G.num_classes, G.latent_dim) == ((2,), 4, 5)
    assert G.init_label_embedding(3) == 3 and G.embed.weight.shape == (4, 3)
    z, y = torch.randn(2, 5), torch.tensor([1, 3])
    h = G.condition(z, y)
    assert h.shape == (2, 8)
    torch.testing.assert_close(h[:, :5], z)
    torch.testing.assert_close(h[:, 5:], torch.nn.functional.normalize(G.embed.weight[y], dim=1))
    with pytest.raises(UsageError, match="needs labels y"):
        G.condition(z, None)
    U = _BareG(image_shape=(2,), latent_dim=5)
    assert U.init_label_embedding(3) == 0 and U.embed is None
    assert U.condition(z, None) is z and U.condition(z, y) is z  # unconditional: labels are ignored
    with pytest.raises(RuntimeError, match="init_label_embedding"):
        _BareG(image_shape=(2,), num_classes=4, latent_dim=5).condition(z, y)


@pytest.mark.parametrize("mode", ["projection", "multihead"])
def test_init_head(mode):
    D = _BareD(image_shape=(6,), num_classes=3, cond_head=mode)
    head = D.init_head(6)
    assert head is D.head and isinstance(head, ConditionalHead) and D.feature_dim == 6
    assert (head.num_classes, head.mode, head.linear.in_features) == (3, mode, 6)
    assert head.linear.out_features == (3 if mode == "multihead" else 1)
    x = torch.randn(4, 6)
    assert D(x, torch.tensor([0, 1, 2, 0])).shape == (4,)  # the default forward: head(features(x), y)
    U = _BareD(image_shape=(6,))
    U.init_head(6)
    assert U.head.linear.out_features == 1 and not hasattr(U.head, "embed") and U(x).shape == (4,)
    with pytest.raises(UsageError, match="unknown conditional head 'proj'; valid: projection, multihead"):
        _BareD(image_shape=(6,), num_classes=3, cond_head="proj").init_head(6)


def test_third_party_subclasses_that_set_attributes_themselves():
    """Code written against the old docs: plain ``super().__init__()``, then the attributes."""

    class OldG(Generator):
        def __init__(self, *, image_shape, num_classes=0):
            super().__init__()
            self.latent_dim, self.image_shape, self.num_classes = 4, tuple(image_shape), num_classes
            self.lin = torch.nn.Linear(4 + self.init_label_embedding(2), 6)

        def forward(self, z, y=None):
            return self.lin(self.condition(z, y)).view(-1, *self.image_shape)

    class OldD(Discriminator):
        def __init__(self, *, image_shape, num_classes=0):
            super().__init__()
            self.image_shape, self.num_classes = tuple(image_shape), num_classes
            self.body = torch.nn.Linear(6, 5)
            self.head = ConditionalHead(5, num_classes)

        def features(self, x):
            return self.body(x.flatten(1))

    class OlderD(Discriminator):  # no features/head at all: its own forward
        def __init__(self, *, image_shape):
            super().__init__()
            self.image_shape = tuple(image_shape)
            self.lin = torch.nn.Linear(6, 1)

        def forward(self, x, y=None):
            return self.lin(x.flatten(1))[:, 0]

    for nc in (0, 2):
        G, D = OldG(image_shape=(1, 2, 3), num_classes=nc), OldD(image_shape=(1, 2, 3), num_classes=nc)
        assert G.num_classes == D.num_classes == nc and G.image_shape == (1, 2, 3)
        assert D.cond_head == "projection"  # the class default
        assert G.require_image("old", square=False) == (1, 2)
        x = G.sample(3)
        assert x.shape == (3, 1, 2, 3)
        y = torch.tensor([0, 1, 1]) if nc else None
        assert D(x, y).shape == (3,)
    assert OlderD(image_shape=(6,))(torch.randn(2, 6)).shape == (2,)


@pytest.mark.parametrize("name", DISCRIMINATORS)
def test_spectral_norm_is_the_regularizer_not_an_option(name):
    assert "sn" not in _REG.get("discriminator", name).options
    shape = _tiny_shape("discriminator", name)
    with pytest.raises(UnknownNameError, match="has no option 'sn'"):
        gzoo.create("discriminator", name, image_shape=shape, sn=True)
    torch.manual_seed(0)
    D = gzoo.create("regularizer", "sn").wrap_discriminator(gzoo.create("discriminator", name, image_shape=shape))
    x = torch.rand(3, *shape) * 2 - 1
    out = D(x)
    assert out.shape == (3,) and torch.isfinite(out).all()
    wrapped = [m for m in D.modules() if hasattr(m, "parametrizations") and "weight" in m.parametrizations]
    assert wrapped, f"sn wrapped no layer of {name}"
