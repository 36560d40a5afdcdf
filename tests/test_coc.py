"""CoC plugin: exact numerics against loop implementations, hard assignment, regions,
convolution/attention freedom, and end-to-end training and visualisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import gzoo
from gzoo.errors import ShapeError, UsageError
from gzoo_coc.cluster import (
    IMPLS,
    ClusterBlock,
    ContextCluster,
    cluster_map,
    propose_centers,
    recording,
)
from gzoo_coc.points import PointIncreaser, PointReducer, coordinates, image_to_points


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models run many small ops: one thread avoids waiting on OpenMP partners when the
    machine is shared (and keeps the numerics independent of the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = ["--gen-opt", "head_dim=4", "--gen-opt", "mlp_r=2", "--disc-opt", "head_dim=4", "--disc-opt", "mlp_r=2"]


def _pool_bins(n: int, c: int) -> list[tuple[int, int]]:
    """adaptive_avg_pool's bins, written out."""
    return [(math.floor(i * n / c), math.ceil((i + 1) * n / c)) for i in range(c)]


def loop_context_cluster(m: ContextCluster, p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The Context Cluster token mixer with explicit loops over batch, heads, regions, points."""
    B, _, D = p.shape
    E, d, R = m.heads, m.head_dim, m.regions
    S, V = m.f(p), m.v(p)  # (B, N, E*d)
    out = torch.zeros(B, h * w, E * d, dtype=p.dtype)
    hr, wr = h // R, w // R
    for b in range(B):
        for e in range(E):
            for ri in range(R):
                for rj in range(R):
                    pts = [(ri * hr + y) * w + (rj * wr + x) for y in range(hr) for x in range(wr)]
                    s = S[b, pts, e * d : (e + 1) * d]
                    v = V[b, pts, e * d : (e + 1) * d]
                    c = min(m.centers, hr, wr)
                    cs, cv = [], []
                    for y0, y1 in _pool_bins(hr, c):
                        for x0, x1 in _pool_bins(wr, c):
                            idx = [y * wr + x for y in range(y0, y1) for x in range(x0, x1)]
                            cs.append(s[idx].mean(0))
                            cv.append(v[idx].mean(0))
                    for k, vc in enumerate(cv):
                        members, weights = [], []
                        for i in range(len(pts)):
                            sims = [F.cosine_similarity(s[i], cc, dim=0) for cc in cs]
                            best = max(range(len(cs)), key=lambda j: sims[j])
                            if best == k:
                                members.append(i)
                                weights.append(torch.sigmoid(m.alpha * sims[k] + m.beta)[0])
                        g = (vc + sum((wt * v[i] for i, wt in zip(members, weights, strict=True)), torch.zeros(d))) / (
                            1 + sum(weights, torch.tensor(0.0))
                        )
                        for i, wt in zip(members, weights, strict=True):
                            out[b, pts[i], e * d : (e + 1) * d] = wt * g
    return m.proj(out)


@pytest.mark.parametrize("h,regions,centers", [(8, 2, 2), (6, 2, 2), (6, 1, 3), (4, 1, 1)])
@pytest.mark.parametrize("impl", IMPLS)
def test_context_cluster_matches_loop_implementation(h, regions, centers, impl):
    torch.manual_seed(0)
    m = ContextCluster(5, heads=2, head_dim=3, regions=regions, centers=centers, impl=impl).double()
    with torch.no_grad():
        m.alpha.fill_(1.7)
        m.beta.fill_(-0.3)
    p = torch.randn(2, h * h, 5, dtype=torch.float64)
    torch.testing.assert_close(m(p, h, h), loop_context_cluster(m, p, h, h), atol=1e-10, rtol=1e-8)


def test_implementations_agree_with_gradients():
    torch.manual_seed(1)
    m = ContextCluster(8, heads=4, head_dim=8, regions=2, centers=2).double()
    with torch.no_grad():
        m.alpha.fill_(0.8)
        m.beta.fill_(0.4)
    p = torch.randn(3, 64, 8, dtype=torch.float64, requires_grad=True)
    params = [p, *m.parameters()]
    m.impl = "broadcast"
    b = m(p, 8, 8)
    gb = torch.autograd.grad(b.square().sum(), params)
    for impl in ("fused", "bmm", "scatter"):
        m.impl = impl
        a = m(p, 8, 8)
        ga = torch.autograd.grad(a.square().sum(), params)
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
        for x, y in zip(ga, gb, strict=True):  # input, f, v, proj, alpha and beta gradients
            torch.testing.assert_close(x, y, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("impl", IMPLS)
def test_hard_assignment_one_center_per_point(impl):
    torch.manual_seed(2)
    m = ContextCluster(6, heads=2, head_dim=4, regions=2, centers=2, impl=impl)
    p = torch.randn(2, 64, 6)
    with recording(m):
        m(p, 8, 8)
        a = m.last_assignment  # (B, heads, R*R, n)
        ids = cluster_map(m, head=1)
    assert m.last_assignment is None and not m.record  # recording is switched off again
    assert a.shape == (2, 2, 4, 16) and a.dtype == torch.long
    onehot = F.one_hot(a, 4)  # (B, heads, R*R, n, M): each point in exactly one cluster
    assert (onehot.sum(-1) == 1).all() and onehot.sum((-2, -1)).eq(16).all()
    # ... and it is the most similar center: recompute the cosine similarities directly
    s = m.f(p).view(2, 2, 4, 2, 4, 2, 4).permute(0, 5, 1, 3, 2, 4, 6)  # (B, heads, R, R, hr, wr, d)
    s = s.reshape(2, 2, 4, 4, 4, 4)  # (B, heads, R*R, hr, wr, d)
    sim = F.cosine_similarity(propose_centers(s, 2).unsqueeze(-2), s.flatten(3, 4).unsqueeze(-3), dim=-1)
    assert torch.equal(sim.argmax(-2), a)  # (B, heads, R*R, n)
    # the map: 4 regions x 4 centers; region 0 (top left) holds ids 0-3, region 3 ids 12-15
    assert ids.shape == (2, 8, 8) and ids[:, :4, :4].lt(4).all() and ids[:, 4:, 4:].ge(12).all()
    torch.testing.assert_close(ids[:, :4, :4].reshape(2, 16), a[:, 1, 0])


def test_regions_equal_running_each_region_alone():
    torch.manual_seed(3)
    full = ContextCluster(6, heads=2, head_dim=4, regions=2, centers=2)
    alone = ContextCluster(6, heads=2, head_dim=4, regions=1, centers=2)
    alone.load_state_dict(full.state_dict())
    p = torch.randn(2, 8, 8, 6)
    out = full(p.reshape(2, 64, 6), 8, 8).view(2, 8, 8, 6)
    for i in (0, 4):
        for j in (0, 4):
            quad = p[:, i : i + 4, j : j + 4].reshape(2, 16, 6)
            torch.testing.assert_close(out[:, i : i + 4, j : j + 4].reshape(2, 16, 6), alone(quad, 4, 4), atol=1e-6, rtol=1e-5)


def test_points_coordinates_and_reducer_increaser():
    c = coordinates(2, 4)
    assert c[1].tolist() == [0.25 - 0.5, -0.5] and c[4].tolist() == [-0.5, 0.5 - 0.5]
    x = torch.randn(2, 3, 4, 4)
    pts = image_to_points(x)
    assert pts.shape == (2, 16, 5)
    torch.testing.assert_close(pts[:, 5, :3], x[:, :, 1, 1])
    red = PointReducer(5, 7, 2)
    out, h, w = red(pts, 4, 4)
    assert (h, w) == (2, 2) and out.shape == (2, 4, 7)
    cell = torch.cat([pts[:, i] for i in (2, 3, 6, 7)], 1)  # anchor (0, 1): points (0,2),(0,3),(1,2),(1,3)
    torch.testing.assert_close(out[:, 1], red.fc(cell))
    inc = PointIncreaser(7, 3, 2)
    assert inc.pos.weight.abs().sum() == 0  # the coordinate term starts at zero
    torch.nn.init.normal_(inc.pos.weight)
    up, h2, w2 = inc(out, 2, 2)
    assert (h2, w2) == (4, 4) and up.shape == (2, 16, 3)
    pieces = inc.fc(out[:, 3]).view(2, 4, 3)  # point (1, 1) -> new points (2..3, 2..3)
    for k, (y, x_) in enumerate([(2, 2), (2, 3), (3, 2), (3, 3)]):
        xy = torch.tensor([x_ / 4 - 0.5, y / 4 - 0.5])  # each new point's own coordinates
        torch.testing.assert_close(up[:, y * 4 + x_], pieces[:, k] + inc.pos(xy))


FORBIDDEN_FUNCS = [
    (F, "conv1d"), (F, "conv2d"), (F, "conv3d"), (F, "conv_transpose1d"), (F, "conv_transpose2d"),
    (F, "conv_transpose3d"), (F, "scaled_dot_product_attention"), (F, "multi_head_attention_forward"),
    (F, "softmax"), (torch, "softmax"), (torch.Tensor, "softmax"), (torch, "conv1d"), (torch, "conv2d"),
    (torch, "conv3d"), (torch, "conv_transpose1d"), (torch, "conv_transpose2d"), (torch, "conv_transpose3d"),
]
FORBIDDEN_OPS = ("conv", "softmax", "attention")  # substrings of ATen operator names


class AtenOps(TorchDispatchMode):
    """Records the name of every ATen operator that runs (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def forbidden_ops(model_fn) -> set[str]:
    with AtenOps() as rec:
        model_fn()
    return {op for op in rec.ops if any(bad in op for bad in FORBIDDEN_OPS)}


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_cocgan_and_coc_are_convolution_and_attention_free(shape, monkeypatch):
    G = gzoo.create("generator", "cocgan", image_shape=shape, head_dim=4, mlp_r=2)
    D = gzoo.create("discriminator", "coc", image_shape=shape, head_dim=4, mlp_r=2)
    for model in (G, D):
        for mod in model.modules():
            assert not isinstance(mod, torch.nn.modules.conv._ConvNd | torch.nn.MultiheadAttention | torch.nn.Softmax), type(mod)
            assert "attention" not in type(mod).__name__.lower()

    def forbidden(*a, **k):
        raise AssertionError("convolution or softmax attention called")

    for owner, name in FORBIDDEN_FUNCS:
        monkeypatch.setattr(owner, name, forbidden)
    x = G(torch.randn(2, G.latent_dim))
    D(x).sum().backward()
    assert x.shape == (2, *shape)
    # and at the ATen level, whatever Python function would have called them
    assert forbidden_ops(lambda: D(G(torch.randn(2, G.latent_dim))).sum().backward()) == set()


def test_the_trace_check_would_catch_a_convolution(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("convolution called")

    monkeypatch.setattr(F, "conv2d", forbidden)
    G = gzoo.create("generator", "dcgan", image_shape=(1, 28, 28), ch=4)
    with pytest.raises(AssertionError, match="convolution"):
        G(torch.randn(2, G.latent_dim))
    monkeypatch.undo()
    assert "convolution" in forbidden_ops(lambda: G(torch.randn(2, G.latent_dim)).sum().backward())
    attn = torch.nn.MultiheadAttention(8, 2)
    assert forbidden_ops(lambda: attn(*[torch.randn(3, 1, 8)] * 3)[0].sum().backward())


def test_conditional_cocgan_and_coc():
    torch.manual_seed(0)
    G = gzoo.create("generator", "cocgan", image_shape=(1, 28, 28), num_classes=10, head_dim=4, mlp_r=2)
    D = gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=10, head_dim=4, mlp_r=2)
    z = torch.randn(2, G.latent_dim)
    a, b = G(z, torch.tensor([0, 1])), G(z, torch.tensor([5, 5]))
    assert not torch.allclose(a, b)
    z2 = z.clone()
    z2[:, G.latent_dim // 2 :] += 1.0  # the second half of z is replaced by label features
    torch.testing.assert_close(G(z2, torch.tensor([0, 1])), a)
    assert D(a, torch.tensor([0, 1])).shape == (2,)


def test_cocgan_and_coc_shape_and_label_checks():
    """The base classes' checks: images only, square, conditional models need labels."""
    for kind, name in (("generator", "cocgan"), ("discriminator", "coc")):
        with pytest.raises(ShapeError, match=rf"^{name}.* works on images \(C, H, W\), but the data has shape \(2,\)"):
            gzoo.create(kind, name, image_shape=(2,))
        with pytest.raises(ShapeError, match=r"needs square images, got 28x32"):
            gzoo.create(kind, name, image_shape=(1, 28, 32))
        with pytest.raises(UsageError, match="has no option 'sn'"):
            gzoo.create(kind, name, image_shape=(1, 28, 28), sn=True)
    G = gzoo.create("generator", "cocgan", image_shape=(1, 28, 28), num_classes=3, head_dim=4, mlp_r=2)
    with pytest.raises(UsageError, match="this generator is conditional: it needs labels y"):
        G(torch.randn(2, G.latent_dim))
    D = gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=3, head_dim=4, mlp_r=2,
                    cond_head="multihead")
    assert D.head.mode == "multihead" and D.feature_dim == D.specs[-1].dim == D.head.linear.in_features
    with pytest.raises(UsageError, match="this discriminator is conditional: it needs labels y"):
        D(torch.randn(2, 1, 28, 28))


def test_stage_options_are_checked():
    with pytest.raises(UsageError, match="bad stage"):
        gzoo.create("generator", "cocgan", image_shape=(1, 28, 28), stages="2:16")
    with pytest.raises(ShapeError, match="make 16x16 images"):
        gzoo.create("generator", "cocgan", image_shape=(1, 28, 28), stages="4:16:1,4:8:1")
    with pytest.raises(UsageError, match="regions do not divide"):
        gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), stages="2:16:1:3:2")
    G = gzoo.create("generator", "cocgan", image_shape=(1, 28, 28), stages="7:8:1:1:2,4:8:1:2:2")
    assert G(torch.randn(1, G.latent_dim)).shape == (1, 1, 28, 28)


def test_context_cluster_block_in_a_conv_model():
    torch.manual_seed(0)
    base = gzoo.create("generator", "dcgan", image_shape=(1, 28, 28), ch=8)
    G = gzoo.create("generator", "dcgan", image_shape=(1, 28, 28), ch=8, insert="context-cluster@14")
    G.load_state_dict(base.state_dict(), strict=False)
    z = torch.randn(2, G.latent_dim)
    base.eval(), G.eval()
    # layer scale starts at 1e-5: the inserted block is almost the identity at first
    torch.testing.assert_close(G(z), base(z), atol=1e-3, rtol=0)
    assert isinstance(G.stages[0].after[0], gzoo.interfaces.Block)


def test_cluster_block_shapes_and_gradients():
    blk = ClusterBlock(8, heads=2, head_dim=4, regions=2, centers=2, mlp_r=2)
    p = torch.randn(2, 36, 8, requires_grad=True)
    out = blk(p, 6, 6)
    assert out.shape == p.shape
    out.sum().backward()
    assert torch.isfinite(p.grad).all() and blk.mixer.alpha.grad is not None


def test_cocgan_coc_train_end_to_end_and_viz(cli, tmp_path):
    out = tmp_path / "coc"
    r = cli("run", "--gen", "cocgan", "--disc", "coc", "--loss", "wgan", "--reg", "clip", "--data", "digits",
            "--steps", "2", "--batch-size", "4", "--sample-every", "0", "--viz", "clusters", "--quiet", "--out", out, *SMALL)
    assert r.exit_code == 0, r.output
    assert (out / "samples" / "step_000002_clusters.png").exists()  # the trainer runs it beside every sample grid
    r = cli("viz", "--run", out, "--out", tmp_path / "clusters.png")
    assert r.exit_code == 0, r.output
    from PIL import Image

    im = Image.open(tmp_path / "clusters.png")
    # 4 rows of (image + 3+2+2+1 G blocks + 1+2+2+2 D blocks) 28-pixel tiles with 2-pixel padding
    assert im.size == (2 + 16 * 30, 2 + 4 * 30)


def test_coc_discriminator_trains_against_dcgan(cli, tmp_path):
    r = cli("run", "--gen", "dcgan", "--disc", "coc", "--loss", "nonsaturating", "--data", "digits",
            "--steps", "2", "--batch-size", "4", "--sample-every", "0", "--quiet", "--out", tmp_path / "r",
            "--gen-opt", "ch=8", "--disc-opt", "head_dim=4", "--disc-opt", "mlp_r=2")
    assert r.exit_code == 0, r.output


def test_clusters_viz_draws_d_maps_for_any_generator(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    torch.manual_seed(0)
    G = gzoo.create("generator", "dcgan", image_shape=(1, 28, 28), num_classes=10, ch=8)
    D = gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=10, head_dim=4, mlp_r=2)
    run = SimpleNamespace(G=G, D=D, G_ema=None, device=torch.device("cpu"))
    (path,) = gzoo.create("visualizer", "clusters", run=run, out=tmp_path / "c.png", n=3)
    assert Image.open(path).size == (2 + 8 * 30, 2 + 3 * 30)  # image + 7 D blocks, 3 samples
    assert G.training and D.training  # modes restored
    with pytest.raises(UsageError, match="Context Cluster"):
        gzoo.create("visualizer", "clusters", run=SimpleNamespace(G=G, D=None, G_ema=None), out=tmp_path / "x.png")


def test_clusters_viz_refuses_runs_without_context_clusters(cli, tmp_path):
    out = tmp_path / "r"
    assert cli("run", "--gen", "dcgan", "--disc", "dcgan", "--gen-opt", "ch=8", "--disc-opt", "ch=8", "--steps", "1",
               "--batch-size", "4", "--sample-every", "0", "--quiet", "--out", out).exit_code == 0
    r = cli("viz", "--run", out, "--what", "clusters", "--out", tmp_path / "c.png")
    assert r.exit_code == 2 and "Context Cluster" in r.stderr


def test_presets_follow_the_paper(pm):
    p = pm.registry.get_preset("cocgan-paper")
    assert (p["optimizer"], p["lr"], p["batch_size"], p["cosine"], p["epochs"], p["loss"]) == ("adam", 2e-4, 256, True, 50, "minimax")
    w = pm.registry.get_preset("cocgan-paper-wgan")
    assert (w["optimizer"], w["loss"], w["reg"]) == ("rmsprop", "wgan", ["clip"])
