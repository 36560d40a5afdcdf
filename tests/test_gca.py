"""GCA plugin: the gca and nonlocal blocks against direct computations written here (attention,
normalised adjacency, a hand-computed graph), identity at initialisation, block insertion with
options (a test plugin's block too) and its errors, SAGAN's layout and spectral norm, end-to-end
training of dcgan and sagan with each block, the presets, and the attention visualizer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import gzoo
from gzoo.errors import UsageError
from gzoo.interfaces import Block
from gzoo.testing import check_component, check_training
from gzoo_gca.blocks import GCABlock, NonLocalBlock, binarize_adjacency, gcn_adjacency
from gzoo_gca.models import SAGANDiscriminator, SAGANGenerator

SHAPES = [(8, 4, 4), (16, 8, 8), (32, 6, 10), (3, 5, 7)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _perturb(block: nn.Module) -> None:
    """Give the residual scale (alpha / gamma) a non-zero value."""
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name in ("alpha", "gamma"):
                p.fill_(0.7)


# -- identity at init, shapes -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gca", "nonlocal"])
@pytest.mark.parametrize("shape", SHAPES)
def test_blocks_are_the_identity_at_init_and_preserve_shapes(name, shape):
    c, h, w = shape
    torch.manual_seed(0)
    block = gzoo.create("block", name, channels=c)
    x = torch.randn(3, c, h, w)
    assert torch.equal(block(x), x)  # alpha = gamma = 0
    _perturb(block)
    out = block(x)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)  # the branch acts once its scale is non-zero
    out.square().sum().backward()
    grads = {n: p.grad for n, p in block.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["f.weight" if name == "gca" else "theta.weight"].abs().sum() > 0  # attention learns


@pytest.mark.parametrize("name, options", [("gca", {}), ("gca", {"k": 2, "layers": 2, "binarize": 1.0}),
                                           ("nonlocal", {}), ("nonlocal", {"pool": False})])
def test_blocks_keep_the_block_contract(name, options):
    check_component("block", name, **options)


def test_sagan_keeps_the_model_contract():
    check_component("generator", "sagan", image_shape=(1, 32, 32), ch=8)
    check_component("discriminator", "sagan", image_shape=(1, 32, 32), ch=8)
    check_component("generator", "sagan", image_shape=(3, 64, 64), ch=4, attn="gca", attn_res=8)


# -- GCA numerics ----------------------------------------------------------------------------


def test_gca_attention_is_eq1_computed_directly():
    torch.manual_seed(1)
    block = GCABlock(channels=8, k=2)
    x = torch.randn(2, 8, 3, 4)
    n = 12
    f = torch.einsum("oc,bcn->bon", block.f.weight[:, :, 0, 0], x.flatten(2))  # (B, c, N)
    g = torch.einsum("oc,bcn->bon", block.g.weight[:, :, 0, 0], x.flatten(2))
    A = torch.empty(2, n, n)
    for b in range(2):
        for j in range(n):
            r = torch.stack([f[b, :, i] @ g[b, :, j] for i in range(n)])  # r_{i,j} over i
            A[b, j] = r.exp() / r.exp().sum()  # a_{j,i} = exp r_ij / sum_i exp r_ij
    got = block.attention(x)
    torch.testing.assert_close(got, A, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(-1), torch.ones(2, n))  # rows of A sum to 1


@pytest.mark.parametrize("kind", ["softmax", "binary", "weighted"])
def test_normalised_adjacency_matches_the_direct_formula(kind):
    torch.manual_seed(2)
    n = 9
    if kind == "softmax":
        A = torch.softmax(torch.randn(3, n, n), -1)
    elif kind == "binary":
        A = (torch.rand(3, n, n) > 0.6).float()
    else:
        A = torch.rand(3, n, n) * 3
    got = gcn_adjacency(A)
    for b in range(3):
        a_tilde = A[b] + torch.eye(n)
        d = torch.diag(a_tilde.sum(1) ** -0.5)  # degrees from the row sums of A + I
        torch.testing.assert_close(got[b], d @ a_tilde @ d)
    if kind == "softmax":  # every degree is 2: the normalisation is (A + I) / 2
        torch.testing.assert_close(got, (A + torch.eye(n)) / 2)


def _set(conv: nn.Module, weight: torch.Tensor) -> None:
    with torch.no_grad():
        conv.weight.copy_(weight.view_as(conv.weight))


def test_gca_on_a_hand_computed_graph():
    """Two nodes, f = g = 0 (uniform attention 1/2), J, Theta, M, V the identity, alpha = 1:
    A + I = [[1.5, .5], [.5, 1.5]], degrees 2, A_hat = [[.75, .25], [.25, .75]],
    J = [[1, 2], [3, 4]] (node x channel), Y = A_hat J = [[1.5, 2.5], [2.5, 3.5]], o = Y^T + x."""
    block = GCABlock(channels=2, k=1)
    eye = torch.eye(2)
    for conv in (block.j, block.m, block.v):
        _set(conv, eye)
    _set(block.theta[0], eye)
    for conv in (block.f, block.g):
        _set(conv, torch.zeros(2, 2))
    with torch.no_grad():
        block.alpha.fill_(1.0)
    x = torch.tensor([[1.0, 3.0], [2.0, 4.0]]).view(1, 2, 1, 2)  # channel 0: [1, 3], channel 1: [2, 4]
    expected = torch.tensor([[1.5 + 1, 2.5 + 3], [2.5 + 2, 3.5 + 4]]).view(1, 2, 1, 2)
    torch.testing.assert_close(block(x), expected)
    block.record = True
    block(x)
    torch.testing.assert_close(block.last["adjacency"][0], torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


def test_binarised_adjacency_by_hand():
    A = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.45, 0.45], [0.3, 0.4, 0.3]]], requires_grad=True)
    hard = binarize_adjacency(A, 1.0)  # edges with A >= 1/3
    torch.testing.assert_close(hard.detach(), torch.tensor([[[1.0, 0, 0], [0, 1, 1], [0, 1, 0]]]))
    # A + I = [[2,0,0],[0,2,1],[0,1,1]], degrees 2, 3, 2
    s6 = 1 / math.sqrt(6)
    want = torch.tensor([[[1.0, 0, 0], [0, 2 / 3, s6], [0, s6, 0.5]]])
    torch.testing.assert_close(gcn_adjacency(hard).detach(), want)
    hard.sum().backward()  # straight-through: A still gets a gradient
    torch.testing.assert_close(A.grad, torch.ones_like(A))


def test_gca_layers_apply_theta_with_relu_between():
    torch.manual_seed(3)
    block = GCABlock(channels=8, k=2, layers=2)
    _perturb(block)
    x = torch.randn(2, 8, 4, 4)
    A_hat = gcn_adjacency(block.attention(x))
    J = block.j(x).flatten(2).transpose(1, 2)  # (B, N, c)
    W0, W1 = block.theta[0].weight, block.theta[1].weight
    Y = A_hat @ (F.relu(A_hat @ (J @ W0.T)) @ W1.T)
    p = block.v(block.m(Y.transpose(1, 2).reshape(2, 4, 4, 4)))
    torch.testing.assert_close(block(x), 0.7 * p + x)


def test_gca_binarize_option_changes_the_graph():
    torch.manual_seed(4)
    plain, binar = GCABlock(channels=8), GCABlock(channels=8, binarize=1.0)
    binar.load_state_dict(plain.state_dict())
    _perturb(plain), _perturb(binar)
    x = torch.randn(2, 8, 4, 4)
    assert not torch.allclose(plain(x), binar(x))
    binar.record = True
    binar(x)
    assert set(binar.last["A"].unique().tolist()) <= {0.0, 1.0}


# -- non-local numerics ----------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(4, 6), (5, 7)])
def test_nonlocal_matches_a_direct_computation(hw):
    torch.manual_seed(5)
    h, w = hw
    block = NonLocalBlock(channels=16)
    _perturb(block)
    x = torch.randn(2, 16, h, w)

    def conv(m, t):
        return torch.einsum("oc,bchw->bohw", m.weight[:, :, 0, 0], t)

    q = conv(block.theta, x).flatten(2)  # (B, 2, N)
    kpad = F.pad(conv(block.phi, x), (0, w % 2, 0, h % 2), value=-math.inf)
    vpad = F.pad(conv(block.g, x), (0, w % 2, 0, h % 2), value=-math.inf)
    k = kpad.unfold(2, 2, 2).unfold(3, 2, 2).amax((-1, -2)).flatten(2)  # 2x2 max pooling
    v = vpad.unfold(2, 2, 2).unfold(3, 2, 2).amax((-1, -2)).flatten(2)
    assert k.shape[-1] == math.ceil(h / 2) * math.ceil(w / 2)
    A = torch.softmax(q.transpose(1, 2) @ k, -1)  # (B, N, N')
    o = (v @ A.transpose(1, 2)).view(2, 8, h, w)
    want = 0.7 * conv(block.o, o) + x
    torch.testing.assert_close(block(x), want, rtol=1e-4, atol=1e-5)


# -- insertion ----------------------------------------------------------------------------------


def _stage_io(model, x_or_z, *args):
    """Run ``model`` and return, per stage resolution, the stage body's output shape and what
    each inserted block received."""
    seen: dict[int, dict[str, object]] = {}
    hooks = []
    for stage in model.stages:
        rec = seen.setdefault(stage.resolution, {"blocks": []})
        hooks.append(stage.body.register_forward_hook(lambda m, i, o, rec=rec: rec.__setitem__("body", o.shape)))
        for b in stage.after:
            hooks.append(b.register_forward_hook(lambda m, i, o, rec=rec: rec["blocks"].append((type(m).__name__, i[0].shape))))
    model(x_or_z, *args)
    for hk in hooks:
        hk.remove()
    return seen


@pytest.mark.parametrize("gen", ["dcgan", "sagan"])
def test_insertion_after_the_requested_stage_in_g_and_d(gen):
    shape = (1, 32, 32)
    opts = {"ch": 8} if gen == "dcgan" else {"ch": 4, "attn": "none"}
    G = gzoo.create("generator", gen, image_shape=shape, insert="gca@8:k=2,nonlocal@16", **opts)
    D = gzoo.create("discriminator", gen, image_shape=shape, insert=["nonlocal@8", "gca@8:layers=2"], **opts)
    G.eval(), D.eval()
    seen = _stage_io(G, torch.randn(2, G.latent_dim))
    assert seen[8]["blocks"] == [("GCABlock", seen[8]["body"])]
    assert seen[16]["blocks"] == [("NonLocalBlock", seen[16]["body"])]
    assert seen[32]["blocks"] == []
    assert G.stages[0].after[0].k == 2 and G.stages[0].after[0].channels == G.stages[0].channels
    seen = _stage_io(D, torch.randn(2, *shape))
    assert [b[0] for b in seen[8]["blocks"]] == ["NonLocalBlock", "GCABlock"]  # in the order given
    assert all(b[1] == seen[8]["body"] for b in seen[8]["blocks"])
    assert len(D.stages[1].after[1].theta) == 2
    assert all(not s.after for s in D.stages if s.resolution != 8)


class Scale(Block):
    """A test plugin's block: multiplies the features and counts its calls.

    Args:
        factor: the multiplier
    """

    def __init__(self, *, channels: int, factor: float = 1.0):
        super().__init__()
        self.channels, self.factor, self.calls = channels, factor, 0
        self.w = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        self.calls += 1
        return x * self.factor * self.w[:, None, None]


def test_a_test_plugins_block_inserts_with_options(register_component):
    register_component("block", "scale", Scale)
    G = gzoo.create("generator", "dcgan", image_shape=(1, 28, 28), ch=8, insert="scale@14:factor=0")
    D = gzoo.create("discriminator", "dcgan", image_shape=(1, 28, 28), ch=8, insert="scale@7:factor=2.5")
    g_block, d_block = G.stages[0].after[0], D.stages[1].after[0]
    assert isinstance(g_block, Scale) and g_block.factor == 0.0 and g_block.channels == G.stages[0].channels
    assert d_block.factor == 2.5 and d_block.channels == D.stages[1].channels
    G.eval()
    out = G(torch.randn(2, G.latent_dim))
    # factor 0 after the 14x14 stage zeroes everything the last stage sees: the image is a constant
    assert g_block.calls == 1 and torch.allclose(out, out[:1].expand_as(out))
    D(torch.randn(2, 1, 28, 28))
    assert d_block.calls == 1


def test_sagan_spectral_norm_in_g_itself_in_d_by_the_regularizer_never_twice():
    from gzoo_classic.regularizers import SpectralNorm

    def sn_layers(model):
        layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        return [len(m.parametrizations.weight) if hasattr(m, "parametrizations") else 0 for m in layers]

    G = gzoo.create("generator", "sagan", image_shape=(1, 32, 32), ch=4, insert="gca@8")
    assert isinstance(G.stages[0].after[0], GCABlock)
    assert sn_layers(G) and set(sn_layers(G)) == {1}  # every layer, the inserted gca block's too
    D = gzoo.create("discriminator", "sagan", image_shape=(1, 32, 32), ch=4, insert="gca@8")
    assert set(sn_layers(D)) == {0}  # D's spectral norm is --reg sn
    SpectralNorm().wrap_discriminator(D)
    assert set(sn_layers(D)) == {1}
    SpectralNorm().wrap_discriminator(D)  # applied again: skipped
    assert set(sn_layers(D)) == {1}
    G = gzoo.create("generator", "sagan", image_shape=(1, 32, 32), ch=4, sn=False, insert="gca@8")
    assert set(sn_layers(G)) == {0}


@pytest.mark.parametrize("side, g_at, d_at", [(32, 32, 16), (64, 32, 32), (28, 28, 14)])
def test_sagan_places_its_attention_block(side, g_at, d_at):
    shape = (1, side, side)
    for attn, cls in (("nonlocal", NonLocalBlock), ("gca", GCABlock)):
        G = SAGANGenerator(image_shape=shape, ch=4, attn=attn)
        D = SAGANDiscriminator(image_shape=shape, ch=4, attn=attn)
        for model, at in ((G, g_at), (D, d_at)):
            placed = {s.resolution: [type(b) for b in s.after] for s in model.stages}
            assert placed.pop(at) == [cls] and not any(placed.values())
    G = SAGANGenerator(image_shape=shape, ch=4, attn="none")
    assert not any(s.after for s in G.stages)
    assert G(torch.randn(2, G.latent_dim)).shape == (2, *shape)


def test_conditional_sagan_uses_the_labels():
    torch.manual_seed(6)
    G = SAGANGenerator(image_shape=(1, 32, 32), num_classes=10, ch=4)
    D = SAGANDiscriminator(image_shape=(1, 32, 32), num_classes=10, ch=4)
    with torch.no_grad():
        for m in G.modules():  # conditional BN starts at gain 1, bias 0: move it
            if isinstance(m, nn.Embedding):
                m.weight.normal_()
    G.eval()
    z = torch.randn(2, G.latent_dim)
    assert not torch.allclose(G(z, torch.tensor([0, 0])), G(z, torch.tensor([1, 1])))
    x = torch.randn(2, 1, 32, 32)
    assert not torch.allclose(D(x, torch.tensor([0, 0])), D(x, torch.tensor([1, 1])))
    with pytest.raises(UsageError, match="conditional"):
        G(z)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("insert, message", [
    ("gcca@8", r"unknown block 'gcca'\. Did you mean 'gca'"),
    ("gca@9", r"no stage of resolution 9; valid resolutions: 8, 16, 32"),
    ("gca@8:kk=2", r"no option 'kk'\. Did you mean 'k'.*Valid options: k=8, layers=1"),
    ("gca@8:k=two", r"option 'k' of block 'gca' must be int"),
    ("gca@8:k", r"block options are KEY=VALUE"),
    ("gca", r"expected BLOCK@RESOLUTION"),
    ("gca@8:channels=4", r"'channels' comes from the stage"),
])
def test_insertion_errors_are_one_line(insert, message):
    with pytest.raises(UsageError, match=message) as exc:
        gzoo.create("generator", "dcgan", image_shape=(1, 32, 32), ch=8, insert=insert)
    assert "\n" not in str(exc.value)


def test_a_model_without_stages_refuses_insertion():
    with pytest.raises(UsageError, match=r"declares no stages.*valid resolutions: none"):
        gzoo.create("generator", "mlp", image_shape=(1, 28, 28), insert="gca@8")


def test_repeated_insert_flags_reach_the_model(cli, tmp_path):
    out = tmp_path / "run"
    r = cli("run", "--gen", "dcgan", "--disc", "dcgan", "--data", "digits", "--data-opt", "resolution=32",
            "--gen-opt", "ch=8", "--disc-opt", "ch=8", "--gen-opt", "insert=gca@8:k=4",
            "--gen-opt", "insert=nonlocal@8", "--disc-opt", "insert=gca@16", "--steps", "1", "--batch-size", "4",
            "--sample-every", "0", "--quiet", "--threads", "1", "--out", str(out))
    assert r.exit_code == 0, r.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["gen_opt"]["insert"] == ["gca@8:k=4", "nonlocal@8"]
    from gzoo.run import load_run

    run = load_run(out)  # rebuilt from the config with both blocks, weights loaded
    assert [type(b).__name__ for b in run.G.stages[0].after] == ["GCABlock", "NonLocalBlock"]
    assert run.G.stages[0].after[0].k == 4
    assert [type(b).__name__ for b in run.D.stages[0].after] == ["GCABlock"]
    r = cli("run", "--gen", "dcgan", "--data", "digits", "--data-opt", "resolution=32", "--gen-opt", "insert=gca@5",
            "--steps", "1", "--quiet", "--out", str(tmp_path / "bad"))
    assert r.exit_code == 2 and "valid resolutions: 8, 16, 32" in r.output
    assert not (tmp_path / "bad").exists()


# -- training, presets, visualizer ----------------------------------------------------------


@pytest.mark.parametrize("gen, block", [("dcgan", "gca"), ("dcgan", "nonlocal"), ("sagan", "gca"), ("sagan", "nonlocal")])
def test_models_with_each_block_train(gen, block, tmp_path):
    if gen == "dcgan":
        opts = {"ch": 8, "insert": f"{block}@8"}
        trainer = check_training(gen, gen, data="digits", data_opt={"resolution": 32}, gen_opt=dict(opts),
                                 disc_opt=dict(opts), tmp_path=tmp_path)
    else:
        opts = {"ch": 4, "attn": block, "attn_res": 8}
        trainer = check_training(gen, gen, "hinge", data="digits", data_opt={"resolution": 32}, gen_opt=dict(opts),
                                 disc_opt=dict(opts), lr_d=4e-4, reg=["sn"], tmp_path=tmp_path)
    cls = GCABlock if block == "gca" else NonLocalBlock
    for model in (trainer.G, trainer.D):
        blocks = [m for m in model.modules() if isinstance(m, cls)]
        assert len(blocks) == 1
        scale = blocks[0].alpha if block == "gca" else blocks[0].gamma
        assert scale.item() != 0.0  # the block's scale left 0: it is trained


def test_conditional_sagan_trains(tmp_path):
    check_training("sagan", "sagan", "hinge", data="digits", data_opt={"resolution": 32}, cond="labels", reg=["sn"],
                   gen_opt={"ch": 4, "attn": "gca", "attn_res": 16}, disc_opt={"ch": 4}, tmp_path=tmp_path)


@pytest.mark.parametrize("preset, block", [("dcgan-gca", GCABlock), ("dcgan-nonlocal", NonLocalBlock),
                                           ("sagan-gca", GCABlock), ("sagan-paper", NonLocalBlock)])
def test_presets_build_the_papers_models(pm, preset, block):
    from gzoo.config import RunConfig

    config = RunConfig().updated(pm.registry.get_preset(preset))
    side = config.data_opt.get("resolution", 32)
    where = {}
    for kind, opts in (("generator", config.gen_opt), ("discriminator", config.disc_opt)):
        name = config.gen if kind == "generator" else config.disc
        model = gzoo.create(kind, name, image_shape=(1, side, side), **{**opts, "ch": 4})
        where[kind] = [s.resolution for s in model.stages if any(isinstance(b, block) for b in s.after)]
    if preset == "sagan-paper":
        assert where == {"generator": [32], "discriminator": [16]}
        assert (config.loss, config.lr, config.lr_d, tuple(config.betas)) == ("hinge", 1e-4, 4e-4, (0.0, 0.999))
        assert config.reg == ["sn"]
    else:
        assert side == 64 and where == {"generator": [8], "discriminator": [8]}  # §4: the 8x8 map at 64x64


def test_attention_visualizer_writes_heatmaps(cli, tmp_path):
    check_component("visualizer", "attention",
                    run={"gen": "dcgan", "disc": "dcgan", "data": "digits", "data_opt": {"resolution": 32},
                         "gen_opt": {"ch": 8, "insert": "gca@8"}, "disc_opt": {"ch": 8, "insert": "nonlocal@8"}})
    out = tmp_path / "run"
    r = cli("run", "--gen", "dcgan", "--disc", "dcgan", "--data", "digits", "--data-opt", "resolution=32",
            "--gen-opt", "ch=8", "--disc-opt", "ch=8", "--gen-opt", "insert=gca@8", "--disc-opt", "insert=nonlocal@8",
            "--steps", "1", "--batch-size", "4", "--sample-every", "0", "--quiet", "--out", str(out))
    assert r.exit_code == 0, r.output
    png = tmp_path / "att.png"
    r = cli("viz", "--run", str(out), "--what", "attention", "--out", str(png), "--opt", "n=2", "--opt", "queries=2")
    assert r.exit_code == 0, r.output
    from PIL import Image

    im = Image.open(png)
    # per row: the image, gca (A and adjacency) x 2 queries, nonlocal (A) x 2 queries = 7 tiles,
    # the 32-pixel images enlarged to 96 (size=96), 2 pixels of padding
    assert im.size == (7 * 98 + 2, 2 * 98 + 2)
    r = cli("viz", "--run", str(out), "--what", "attention", "--out", str(tmp_path / "small.png"), "--opt", "n=1",
            "--opt", "queries=1", "--opt", "size=0")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "small.png").size == (4 * 34 + 2, 34 + 2)  # image, gca A and adjacency, nonlocal A
    plain = tmp_path / "plain"
    r = cli("run", "--gen", "dcgan", "--disc", "dcgan", "--data", "digits", "--gen-opt", "ch=8", "--disc-opt", "ch=8",
            "--steps", "1", "--batch-size", "4", "--sample-every", "0", "--quiet", "--out", str(plain))
    r = cli("viz", "--run", str(plain), "--what", "attention", "--out", str(tmp_path / "x.png"))
    assert r.exit_code == 2 and "needs a gca or nonlocal block" in r.output


def test_heat_tile_puts_the_rows_weights_where_they_belong():
    from gzoo_gca.viz import colormap, heat_tile

    row = torch.zeros(16)
    row[6] = 2.0  # 4x4 key grid: cell (1, 2), the row's maximum
    row[0] = 1.0  # cell (0, 0), half of it
    tile = heat_tile(row, (4, 4), torch.zeros(3, 32, 32), (0.75, 0.0, 0.25, 0.25))  # query cell (3, 0)
    torch.testing.assert_close(tile[:, 12, 20], 0.65 * colormap(torch.tensor(1.0)))  # inside cell (1, 2)
    torch.testing.assert_close(tile[:, 3, 3], 0.65 * colormap(torch.tensor(0.5)))  # inside cell (0, 0)
    torch.testing.assert_close(tile[:, 20, 28], torch.zeros(3))  # weight 0: black over a black image
    assert tile[:, 24, 3].tolist() == [0.0, 1.0, 1.0] and tile[:, 28, 7].tolist() == [0.0, 1.0, 1.0]  # outline
    assert tile[:, 28, 3].tolist() != [0.0, 1.0, 1.0]  # inside the outline: the map
