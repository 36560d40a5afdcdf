"""CoC plugin: exact numerics against loop implementations, hard assignment, regions,
convolution/attention freedom, and end-to-end training and visualisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import gzoo
from gzoo.config import RunConfig, complete_for_models
from gzoo.errors import ShapeError, UsageError
from gzoo_coc.cluster import (
    IMPLS,
    ClusterBlock,
    ContextCluster,
    cluster_map,
    propose_centers,
    recording,
)
from gzoo_coc.points import (
    PointIncreaser,
    PointReducer,
    coordinates,
    even_window,
    image_to_points,
    overlap_window,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = ["--gen-opt", "head_dim=4", "--gen-opt", "mlp_r=2", "--disc-opt", "head_dim=4", "--disc-opt", "mlp_r=2"]


def _pool_bins(n: int, c: int) -> list[tuple[int, int]]:
    """adaptive_avg_pool's bins, written out: bin i is [floor(i*n/c), ceil((i+1)*n/c)); bins
    overlap when c does not divide n, and c may exceed n (the official code's center proposal)."""
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
                    c = m.centers  # not capped at the region's side: the official code pools to c x c
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


@pytest.mark.parametrize(
    "h,regions,centers",
    [(8, 2, 2), (6, 2, 2), (6, 1, 3), (4, 1, 1),
     (7, 1, 2),  # overlapping pooling windows (4x4 cells sharing a row and a column)
     (6, 2, 4),  # more centers (4 a side) than the 3x3 regions have points a side
     (2, 1, 3)],  # ... and on a 2x2 lattice
)
@pytest.mark.parametrize("impl", IMPLS)
def test_context_cluster_matches_loop_implementation(h, regions, centers, impl):
    torch.manual_seed(0)
    m = ContextCluster(5, heads=2, head_dim=3, regions=regions, centers=centers, impl=impl).double()
    with torch.no_grad():
        m.alpha.fill_(1.7)
        m.beta.fill_(-0.3)
    p = torch.randn(2, h * h, 5, dtype=torch.float64)
    torch.testing.assert_close(m(p, h, h), loop_context_cluster(m, p, h, h), atol=1e-10, rtol=1e-8)


def test_centers_are_not_capped_at_the_region_side():
    """6x6 lattice, 3x3 regions, 4x4 centers: 16 centers per region (adaptive pooling with
    overlapping windows, as the official code), not the 3x3 of a cap at the region's side."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 3, 5)
    ctr = propose_centers(x, 4)  # (2, 16, 5)
    assert ctr.shape == (2, 16, 5)
    torch.testing.assert_close(ctr[:, 5], x[:, :2, :2].mean((1, 2)))  # center (1, 1): rows 0-1, cols 0-1
    torch.testing.assert_close(ctr[:, 15], x[:, 2, 2])  # center (3, 3): the corner point alone
    m = ContextCluster(6, heads=2, head_dim=4, regions=2, centers=4)
    capped = ContextCluster(6, heads=2, head_dim=4, regions=2, centers=3)
    capped.load_state_dict(m.state_dict())
    p = torch.randn(2, 36, 6)
    with recording(m):
        out = m(p, 6, 6)
        assert m.last_lattice == (6, 6, 16) and int(m.last_assignment.max()) < 16
    assert not torch.allclose(out, capped(p, 6, 6))  # what the former cap computed differs


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


def direct_overlap_reducer(red: PointReducer, p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Anchor by anchor: concatenate the k x k points around lattice point (r*a, r*b) (zeros
    outside the lattice), row-major, and apply the linear layer."""
    r, k, d = red.r, red.k, p.shape[-1]
    lat = p.view(p.shape[0], h, w, d)
    out = []
    for a in range(h // r):
        for b in range(w // r):
            pts = []
            for dy in range(k):
                for dx in range(k):
                    y, x = r * a + dy - k // 2, r * b + dx - k // 2
                    pts.append(lat[:, y, x] if 0 <= y < h and 0 <= x < w else torch.zeros_like(lat[:, 0, 0]))
            out.append(red.fc(torch.cat(pts, 1)))
    return torch.stack(out, 1)


@pytest.mark.parametrize("h,w,r", [(4, 4, 2), (6, 4, 2), (3, 3, 1), (6, 6, 3), (8, 4, 4)])
def test_overlap_point_reducer_matches_direct_computation(h, w, r):
    torch.manual_seed(5)
    red = PointReducer(3, 4, r, mode="overlap").double()
    assert red.k == overlap_window(r) and red.k % 2 == 1 and red.k > r  # windows overlap, every point is read
    assert (overlap_window(1), overlap_window(2), overlap_window(3), overlap_window(4)) == (3, 3, 5, 5)
    p = torch.randn(2, h * w, 3, dtype=torch.float64)
    out, h2, w2 = red(p, h, w)
    assert (h2, w2) == (h // r, w // r) and out.shape == (2, h2 * w2, 4)
    torch.testing.assert_close(out, direct_overlap_reducer(red, p, h, w), atol=1e-12, rtol=1e-10)
    # the same function as a k x k convolution with stride r and padding k // 2 (the official
    # code's nn.Conv2d(kernel_size=3, stride=2, padding=1) at r = 2), here only as a reference
    k = red.k
    weight = red.fc.weight.view(4, k, k, 3).permute(0, 3, 1, 2)  # (D_out, D_in, k, k)
    conv = F.conv2d(p.transpose(1, 2).reshape(2, 3, h, w), weight, red.fc.bias, stride=r, padding=k // 2)
    torch.testing.assert_close(out, conv.flatten(2).transpose(1, 2), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("h,w,k,stride,pad", [(4, 4, 3, 2, 1), (6, 4, 3, 1, 1), (5, 7, 3, 2, 1), (1, 1, 3, 1, 1),
                                              (6, 6, 5, 3, 2), (8, 4, 4, 2, 1), (6, 6, 9, 3, 3)])
def test_neighbourhoods_gradients_are_exact_to_second_order(h, w, k, stride, pad):
    """The gather and its hand-written adjoint: values and first and second derivatives equal
    PyTorch's autograd through a strided view, and pass gradcheck/gradgradcheck (R1 needs both)."""
    from gzoo_coc.points import neighbourhoods, strided_view_neighbourhoods

    torch.manual_seed(7)
    p = torch.randn(2, h * w, 3, dtype=torch.float64, requires_grad=True)
    out, ref = neighbourhoods(p, h, w, k, stride, pad), strided_view_neighbourhoods(p, h, w, k, stride, pad)
    assert torch.equal(out, ref)
    v = torch.randn_like(out, requires_grad=True)
    (g,) = torch.autograd.grad((out * v).sum(), p, create_graph=True)
    (g_ref,) = torch.autograd.grad((ref * v).sum(), p, create_graph=True)
    torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(g.square().sum(), v)[0],
                               torch.autograd.grad(g_ref.square().sum(), v)[0], atol=1e-12, rtol=1e-12)
    fn = lambda t: neighbourhoods(t, h, w, k, stride, pad)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (p,)) and torch.autograd.gradgradcheck(fn, (p,))


def direct_even_reducer(red: PointReducer, p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Anchor by anchor: the k x k window centred on the anchor's r x r cell (rows and columns
    r*a - (k-r)/2 .. r*a - (k-r)/2 + k - 1), row-major, zeros outside the lattice, concatenated,
    then the linear layer. For r <= 2 the window is exactly the k*k lattice points nearest to
    the cell's centre (checked by sorting distances)."""
    r, k, d = red.r, red.k, p.shape[-1]
    lat = p.view(p.shape[0], h, w, d)
    out = []
    for a in range(h // r):
        for b in range(w // r):
            y0, x0 = r * a - (k - r) // 2, r * b - (k - r) // 2
            window = [(y0 + dy, x0 + dx) for dy in range(k) for dx in range(k)]
            if r <= 2:
                cy, cx = r * a + (r - 1) / 2, r * b + (r - 1) / 2  # the cell's centre
                span = range(-k, max(h, w) + k)
                cand = sorted(((y - cy) ** 2 + (x - cx) ** 2, y, x) for y in span for x in span)
                assert cand[k * k - 1][0] < cand[k * k][0]  # the k*k nearest are well defined ...
                assert sorted((y, x) for _, y, x in cand[:k * k]) == window  # ... and are the window
            pts = [lat[:, y, x] if 0 <= y < h and 0 <= x < w else torch.zeros_like(lat[:, 0, 0]) for y, x in window]
            out.append(red.fc(torch.cat(pts, 1)))
    return torch.stack(out, 1)


@pytest.mark.parametrize("h,w,r", [(4, 4, 2), (6, 4, 2), (3, 3, 1), (6, 6, 3), (8, 4, 4)])
def test_even_point_reducer_reads_the_nearest_points_and_covers_the_lattice_evenly(h, w, r):
    torch.manual_seed(6)
    red = PointReducer(3, 4, r, mode="even").double()
    assert red.k == even_window(r) and red.k % r == 0 and red.k > r
    assert (even_window(1), even_window(2), even_window(3), even_window(4)) == (3, 4, 9, 8)
    p = torch.randn(2, h * w, 3, dtype=torch.float64, requires_grad=True)
    out, h2, w2 = red(p, h, w)
    assert (h2, w2) == (h // r, w // r) and out.shape == (2, h2 * w2, 4)
    torch.testing.assert_close(out, direct_even_reducer(red, p, h, w), atol=1e-12, rtol=1e-10)
    # how many anchors read each point: (k/r)^2 for every point away from the border, where
    # the official 3x3 stride-2 windows alternate between 1 and 2 a side (checked below)
    ones = torch.ones(1, h * w, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        red.fc.weight.fill_(1.0)
        red.fc.bias.zero_()
    (grad,) = torch.autograd.grad(red(ones, h, w)[0].sum(), ones)
    reads = grad[0, :, 0].view(h, w) / red.fc.out_features
    m = red.k // 2  # the border: windows there reach outside the lattice
    inner = reads[m:h - m, m:w - m]
    if inner.numel():
        assert torch.all(inner == (red.k // r) ** 2)


def test_official_overlap_reducer_reads_points_unevenly():
    """The reason for ``even``: 3x3 windows at stride 2 read alternate rows once and twice."""
    red = PointReducer(1, 1, 2, mode="overlap").double()
    with torch.no_grad():
        red.fc.weight.fill_(1.0)
        red.fc.bias.zero_()
    ones = torch.ones(1, 64, 1, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(red(ones, 8, 8)[0].sum(), ones)
    assert grad.view(8, 8)[2:6, 2:6].tolist() == [[1, 2, 1, 2], [2, 4, 2, 4], [1, 2, 1, 2], [2, 4, 2, 4]]


def test_cell_point_reducer_is_unchanged_and_reads_no_neighbours():
    red = PointReducer(3, 4, 2)
    assert red.mode == "cell" and red.k == 2 and red.fc.in_features == 12
    assert PointReducer(3, 4, 2, mode="overlap").fc.in_features == 27  # 3x3 points of 3 values
    with pytest.raises(UsageError, match="unknown point reducer 'conv'"):
        PointReducer(3, 4, 2, mode="conv")
    with pytest.raises(UsageError, match="unknown point increaser 'conv'"):
        PointIncreaser(3, 4, 2, mode="conv")


def direct_overlap_increaser(inc: PointIncreaser, p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Child by child: the new point (y, x) is chunk (y % r, x % r) of the linear layer applied to
    the concatenated 3x3 parents around its parent (y // r, x // r), zeros outside the lattice,
    plus its coordinate term."""
    r, d = inc.r, inc.dim_out
    lat = p.view(p.shape[0], h, w, -1)
    out = torch.zeros(p.shape[0], h * r * w * r, d, dtype=p.dtype)
    for y in range(h * r):
        for x in range(w * r):
            py, px = y // r, x // r
            pts = []
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = py + dy, px + dx
                    pts.append(lat[:, yy, xx] if 0 <= yy < h and 0 <= xx < w else torch.zeros_like(lat[:, 0, 0]))
            chunk = inc.fc(torch.cat(pts, 1)).view(-1, r * r, d)[:, (y % r) * r + x % r]
            xy = (torch.tensor([x, y]) / torch.tensor([w * r, h * r]) - 0.5).to(p.dtype)  # computed in float32
            out[:, y * w * r + x] = chunk + inc.pos(xy)
    return out


@pytest.mark.parametrize("h,w,r", [(2, 2, 2), (3, 2, 3), (1, 1, 2), (3, 3, 1)])
def test_overlap_point_increaser_is_a_transpose_style_gather(h, w, r):
    torch.manual_seed(6)
    inc = PointIncreaser(3, 2, r, mode="overlap").double()
    assert inc.fc.in_features == 9 * 3 and inc.fc.out_features == r * r * 2
    torch.nn.init.normal_(inc.pos.weight)
    p = torch.randn(2, h * w, 3, dtype=torch.float64)
    up, h2, w2 = inc(p, h, w)
    assert (h2, w2) == (h * r, w * r) and up.shape == (2, h * r * w * r, 2)
    torch.testing.assert_close(up, direct_overlap_increaser(inc, p, h, w), atol=1e-12, rtol=1e-10)
    # the same function as a transposed convolution with kernel 3r, stride r and padding r:
    # weight[(a, b, o), (ky, kx, i)] sits at kernel tap (r*(2-ky) + a, r*(2-kx) + b)
    weight = inc.fc.weight.view(r, r, 2, 3, 3, 3).permute(5, 2, 3, 0, 4, 1).flip(2, 4).reshape(3, 2, 3 * r, 3 * r)
    bias = inc.fc.bias.view(r, r, 2)  # one bias per child offset: a periodic image, not a conv bias
    tconv = F.conv_transpose2d(p.transpose(1, 2).reshape(2, 3, h, w), weight, stride=r, padding=r)  # (2, 2, hr, wr)
    tconv = tconv + bias.permute(2, 0, 1).repeat(1, h, w)
    ref = tconv.flatten(2).transpose(1, 2) + inc.pos(coordinates(h * r, w * r).double())
    torch.testing.assert_close(up, ref, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("h,w,r", [(2, 2, 2), (3, 2, 3), (2, 3, 1)])
def test_copy_point_increaser_is_resize_then_3x3(h, w, r):
    torch.manual_seed(8)
    inc = PointIncreaser(3, 2, r, mode="copy").double()
    assert inc.copy and inc.fc.in_features == 9 * 3 and inc.fc.out_features == 2  # one weight for every new point
    torch.nn.init.normal_(inc.pos.weight)
    p = torch.randn(2, h * w, 3, dtype=torch.float64)
    up, h2, w2 = inc(p, h, w)
    assert (h2, w2) == (h * r, w * r) and up.shape == (2, h * r * w * r, 2)
    # independently: a nearest-neighbour resize of the image, then a 3x3 convolution with zero padding;
    # fc's input channel (dy*3 + dx)*D_in + c is kernel tap (dy, dx) of input channel c
    img = F.interpolate(p.transpose(1, 2).reshape(2, 3, h, w), scale_factor=r, mode="nearest")
    weight = inc.fc.weight.view(2, 3, 3, 3).permute(0, 3, 1, 2)
    ref = F.conv2d(img, weight, inc.fc.bias, padding=1).flatten(2).transpose(1, 2)
    ref = ref + inc.pos(coordinates(h * r, w * r).double())
    torch.testing.assert_close(up, ref, atol=1e-12, rtol=1e-10)
    single = PointIncreaser(3, 2, 4, mode="copy", single=True)  # one input point: overlap's per-offset slices
    assert not single.copy and single.fc.weight.shape == (4 * 4 * 2, 3)
    G = gzoo.create("generator", "cocgan", image_shape=(1, 28, 28), increaser="copy", head_dim=4, mlp_r=2)
    assert [inc.copy for inc in G.increasers] == [False, True, True] and G(torch.randn(2, 100)).shape == (2, 1, 28, 28)


def test_single_point_increaser_stores_only_the_slice_that_acts():
    torch.manual_seed(3)
    full, single = PointIncreaser(5, 3, 4, mode="overlap"), PointIncreaser(5, 3, 4, mode="overlap", single=True)
    assert single.fc.weight.shape == (4 * 4 * 3, 5) and full.fc.weight.shape == (4 * 4 * 3, 9 * 5)
    bound = 1 / (9 * 5) ** 0.5  # initialised like the full layer: uniform, bound 1/sqrt(fan_in of 9 points)
    assert single.fc.weight.abs().max() <= bound and single.fc.weight.abs().max() > 0.9 * bound
    with torch.no_grad():  # the centre neighbour (1, 1) is channels 4*5 .. 5*5 of the full layer
        single.fc.weight.copy_(full.fc.weight[:, 4 * 5:5 * 5])
        single.fc.bias.copy_(full.fc.bias)
        single.pos.weight.copy_(torch.randn_like(single.pos.weight))
        full.pos.weight.copy_(single.pos.weight)
    p = torch.randn(2, 1, 5)
    torch.testing.assert_close(single(p, 1, 1)[0], full(p, 1, 1)[0])
    with pytest.raises(UsageError, match="reads one point"):
        single(torch.randn(2, 4, 5), 2, 2)
    G = gzoo.create("generator", "cocgan", image_shape=(1, 28, 28))
    assert G.increasers[0].single and not any(inc.single for inc in G.increasers[1:])
    torch.manual_seed(5)  # for the same seed, the stored slice is the full layer's own initial centre slice
    full = PointIncreaser(5, 3, 4, mode="overlap")
    torch.manual_seed(5)
    single = PointIncreaser(5, 3, 4, mode="overlap", single=True)
    assert torch.equal(single.fc.weight, full.fc.weight[:, 4 * 5:5 * 5]) and torch.equal(single.fc.bias, full.fc.bias)
    after_single = torch.randn(3)
    torch.manual_seed(5)
    PointIncreaser(5, 3, 4, mode="overlap")
    assert torch.equal(torch.randn(3), after_single)  # the same random draws: later layers initialise as before


def test_overlap_point_increaser_gradients_reach_every_weight():
    torch.manual_seed(7)
    inc = PointIncreaser(4, 3, 2, mode="overlap")
    p = torch.randn(2, 9, 4, requires_grad=True)
    up, _, _ = inc(p, 3, 3)
    (up * torch.randn_like(up)).sum().backward()
    for name, param in [*inc.named_parameters(), ("input", p)]:
        assert param.grad is not None and (param.grad != 0).all(), name  # every neighbour slice is used
    # and neighbouring cells do share inputs: a parent moves the children of its neighbours' cells
    q = p.detach().clone()
    q[:, 4] += 1.0  # the centre parent (1, 1)
    diff = (inc(q, 3, 3)[0] - up.detach()).abs().sum(-1).view(2, 6, 6)
    assert (diff > 0).all()  # on a 3x3 lattice every child is within one parent of the centre
    cell = PointIncreaser(4, 3, 2)
    cell.load_state_dict({"fc.weight": inc.fc.weight[:, 16:20], "fc.bias": inc.fc.bias, "pos.weight": inc.pos.weight})
    diff = (cell(q, 3, 3)[0] - cell(p, 3, 3)[0]).abs().sum(-1).view(2, 6, 6)
    assert diff[:, 2:4, 2:4].gt(0).all() and diff.gt(0).sum() == 2 * 4  # "cell": only its own 2x2 cell


def _mlp_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return [lin for blk in model.modules() if isinstance(blk, ClusterBlock) for lin in (blk.mlp[0], blk.mlp[2])]


def test_official_init_is_a_truncated_normal_on_the_mlp_only():
    torch.manual_seed(8)
    ref = ClusterBlock(64, heads=2, head_dim=8, mlp_r=8)
    torch.manual_seed(8)
    blk = ClusterBlock(64, heads=2, head_dim=8, mlp_r=8, init="official")
    for lin in (blk.mlp[0], blk.mlp[2]):  # 64 x 512 weights each
        assert abs(lin.weight.std().item() - 0.02) < 1e-3 and lin.weight.abs().max() < 2.0
        assert abs(lin.weight.mean().item()) < 1e-3 and torch.equal(lin.bias, torch.zeros_like(lin.bias))
    # f, v and proj are 1x1 convolutions in the official code, which it leaves at PyTorch's default
    assert all(torch.equal(a, b) for a, b in zip(ref.mixer.parameters(), blk.mixer.parameters(), strict=True))
    # "torch" (the default) is PyTorch's nn.Linear initialisation: uniform, bound 1/sqrt(fan_in)
    torch.manual_seed(8)
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), ClusterBlock(64, heads=2, head_dim=8, mlp_r=8,
                                                                                init="torch").parameters(), strict=True))
    for lin in (ref.mlp[0], ref.mlp[2]):
        bound = 1 / math.sqrt(lin.in_features)
        assert lin.weight.abs().max() <= bound and abs(lin.weight.std().item() - bound / math.sqrt(3)) < 0.05 * bound
        assert lin.bias.abs().max() <= bound and lin.bias.abs().sum() > 0
    with pytest.raises(UsageError, match="unknown init 'xavier'"):
        ClusterBlock(8, init="xavier")


def test_act_option_sets_the_mlp_activation_of_every_block():
    """``act=leaky_relu`` swaps GELU for LeakyReLU(0.2) in every block's MLP (G and D), draws the
    same weights, and the block computes norm -> fc1 -> LeakyReLU -> fc2 on the MLP branch."""
    kw = {"image_shape": (1, 28, 28), "head_dim": 4, "mlp_r": 2}
    for kind, name in (("generator", "cocgan"), ("discriminator", "coc")):
        torch.manual_seed(3)
        gelu = gzoo.create(kind, name, **kw)
        torch.manual_seed(3)
        leaky = gzoo.create(kind, name, act="leaky_relu", **kw)
        blocks = [m for m in leaky.modules() if isinstance(m, ClusterBlock)]
        assert blocks and all(isinstance(b.mlp[1], torch.nn.LeakyReLU) and b.mlp[1].negative_slope == 0.2
                              for b in blocks)
        assert all(isinstance(b.mlp[1], torch.nn.GELU) for b in gelu.modules() if isinstance(b, ClusterBlock))
        assert all(torch.equal(a, b) for a, b in zip(gelu.parameters(), leaky.parameters(), strict=True))
    torch.manual_seed(0)
    blk = ClusterBlock(8, heads=2, head_dim=4, regions=2, centers=2, mlp_r=2, layer_scale=1.0, act="leaky_relu").double()
    p = torch.randn(2, 16, 8, dtype=torch.float64)
    mid = p + blk.ls1 * blk.mixer(blk.norm1(p), 4, 4)
    hidden = blk.norm2(mid) @ blk.mlp[0].weight.T + blk.mlp[0].bias
    expected = mid + blk.ls2 * (torch.where(hidden > 0, hidden, 0.2 * hidden) @ blk.mlp[2].weight.T + blk.mlp[2].bias)
    torch.testing.assert_close(blk(p, 4, 4), expected)
    with pytest.raises(UsageError, match="unknown act 'relu'; valid: gelu, leaky_relu"):
        gzoo.create("discriminator", "coc", act="relu", **kw)


def test_init_option_of_cocgan_coc_and_the_block():
    kw = {"image_shape": (1, 28, 28), "head_dim": 4, "mlp_r": 2}
    G = gzoo.create("generator", "cocgan", init="official", **kw)
    D = gzoo.create("discriminator", "coc", init="official", num_classes=3, **kw)
    blk = gzoo.create("block", "context-cluster", channels=16, init="official")
    for model in (G, D, blk):
        lins = _mlp_linears(model)
        assert len(lins) == 2 * sum(isinstance(m, ClusterBlock) for m in model.modules()) > 0
        w = torch.cat([lin.weight.flatten() for lin in lins])
        assert abs(w.std().item() - 0.02) < 2e-3 and all(lin.bias.abs().sum() == 0 for lin in lins)
    assert D.head.linear.bias.abs().sum() == 0 and D.head.linear.weight.abs().max() < 0.1  # the classifier too
    torch.manual_seed(0)
    Gt = gzoo.create("generator", "cocgan", init="torch", **kw)
    torch.manual_seed(0)
    Gd = gzoo.create("generator", "cocgan", init="official", **kw)  # the default
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in
               zip(Gd.parameters(), gzoo.create("generator", "cocgan", **kw).parameters(), strict=True))
    assert all(lin.bias.abs().sum() > 0 for lin in _mlp_linears(Gt))  # PyTorch's default: random biases
    assert all(lin.bias.abs().sum() == 0 for lin in _mlp_linears(Gd))
    with pytest.raises(UsageError, match="unknown init"):
        gzoo.create("discriminator", "coc", init="xavier", **kw)


def test_reducer_and_increaser_options():
    kw = {"image_shape": (1, 28, 28), "head_dim": 4, "mlp_r": 2}
    G = gzoo.create("generator", "cocgan", increaser="overlap", stages="table1", **kw)
    D = gzoo.create("discriminator", "coc", reducer="cell,overlap,overlap,overlap", **kw)  # the official layout
    assert [inc.mode for inc in G.increasers] == ["overlap"] * 4
    assert [red.mode for red in D.reducers] == ["cell", "overlap", "overlap", "overlap"]
    assert [red.k for red in D.reducers] == [2, 3, 3, 3]
    # the defaults: overlapping increasers, the official reducer layout, for any number of stages
    assert [inc.mode for inc in gzoo.create("generator", "cocgan", **kw).increasers] == ["overlap"] * 3
    assert gzoo.create("discriminator", "coc", **kw).reducer_modes == ["cell", "overlap", "overlap", "overlap"]
    assert gzoo.create("discriminator", "coc", stages="2:8:1,2:8:1", **kw).reducer_modes == ["cell", "overlap"]
    assert gzoo.create("discriminator", "coc", reducer="cell", **kw).reducer_modes == ["cell"] * 4
    x = G(torch.randn(2, G.latent_dim))
    assert x.shape == (2, 1, 28, 28) and D(x).shape == (2,)
    D(x).sum().backward()
    assert all(p.grad is not None for p in G.parameters())
    with pytest.raises(UsageError, match="unknown value 'conv'; valid: cell, overlap, even"):
        gzoo.create("discriminator", "coc", reducer="conv", **kw)
    D = gzoo.create("discriminator", "coc", reducer="cell,even,even,even", **kw)
    assert [red.k for red in D.reducers] == [2, 4, 3, 3] and D(x).shape == (2,)
    with pytest.raises(UsageError, match="unknown value 'even'; valid: cell, overlap, copy "):
        gzoo.create("generator", "cocgan", increaser="even", **kw)  # reducers only
    with pytest.raises(UsageError, match="lists 2 values for 3 stages"):
        gzoo.create("generator", "cocgan", increaser="cell,overlap", **kw)


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


@pytest.mark.parametrize("shape,mode,reducer", [((1, 28, 28), "cell", "cell"), ((3, 32, 32), "cell", "cell"),
                                                ((1, 28, 28), "overlap", "overlap"), ((1, 28, 28), "copy", "even")])
def test_cocgan_and_coc_are_convolution_and_attention_free(shape, mode, reducer, monkeypatch):
    G = gzoo.create("generator", "cocgan", image_shape=shape, head_dim=4, mlp_r=2, increaser=mode)
    D = gzoo.create("discriminator", "coc", image_shape=shape, head_dim=4, mlp_r=2, reducer=reducer)
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


@pytest.mark.parametrize("stage", [1, 3])
def test_label_stage_adds_the_label_to_every_point_after_that_stages_reducer(stage):
    torch.manual_seed(0)
    D = gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=10, head_dim=4, mlp_r=2,
                    label_stage=stage)
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 4, 9])
    seen = {}
    D.reducers[stage - 1].register_forward_hook(lambda m, i, o: seen.__setitem__("reduced", o[0]))
    D.stage_blocks[stage - 1][0].register_forward_pre_hook(lambda m, i: seen.__setitem__("block_in", i[0]))
    D(x, y)
    expected = seen["reduced"] + D.label_fc.weight.T[y].unsqueeze(1)  # class y's column on every point
    torch.testing.assert_close(seen["block_in"], expected, rtol=0, atol=0)
    with torch.no_grad():  # the head cannot see the label: only the points can
        D.head.embed.weight.zero_()
    assert not torch.allclose(D(x, y), D(x, torch.tensor([5, 5, 5])))
    seen.clear()
    D.features(x)  # no label: the mean of the classes' vectors on every point
    torch.testing.assert_close(seen["block_in"], seen["reduced"] + D.label_fc.weight.mean(1))
    with torch.no_grad():  # without the label's vectors the forward is the head on the features
        D.label_fc.weight.zero_()
    torch.testing.assert_close(D(x, y), D.head(D.features(x), y), rtol=0, atol=0)
    D0 = gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=10, head_dim=4, mlp_r=2,
                     label_stage=0)
    assert gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=10).label_stage == 1  # default
    with torch.no_grad():
        D0.head.embed.weight.zero_()
    torch.testing.assert_close(D0(x, y), D0(x, torch.tensor([5, 5, 5])), rtol=0, atol=0)


def test_label_stage_1_is_the_label_concatenated_to_every_input_point():
    """With the cell reducer, the label added after stage 1's reducer equals a reducer over input
    points that carry the one-hot label too (colour, coordinates, label)."""
    torch.manual_seed(0)
    k = 10
    D = gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=k, head_dim=4, mlp_r=2,
                    label_stage=1)
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 4, 9])
    seen = {}
    D.stage_blocks[0][0].register_forward_pre_hook(lambda m, i: seen.__setitem__("block_in", i[0]))
    D(x, y)
    fc, d = D.reducers[0].fc, 3  # 2x2 cells of (colour, x, y) points
    wide = nn.Linear(4 * (d + k), fc.out_features)
    with torch.no_grad():  # per cell position: the reducer's weights for the point, a quarter of the label's
        w = torch.cat([fc.weight.view(-1, 4, d), D.label_fc.weight.unsqueeze(1).expand(-1, 4, -1) / 4], 2)
        wide.weight.copy_(w.reshape(-1, 4 * (d + k)))
        wide.bias.copy_(fc.bias)
    pts = torch.cat([image_to_points(x), F.one_hot(y, k).float().unsqueeze(1).expand(-1, 784, -1)], 2)
    cells = pts.view(3, 14, 2, 14, 2, d + k).permute(0, 1, 3, 2, 4, 5).reshape(3, 196, 4 * (d + k))
    torch.testing.assert_close(seen["block_in"], wide(cells))


def test_label_stage_is_checked_ignored_without_classes_and_spectrally_normed():
    with pytest.raises(UsageError, match=r"^coc option label_stage=5: valid: 0 \(off\) to 4, the number of stages$"):
        gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=10, label_stage=5)
    D = gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), head_dim=4, mlp_r=2, label_stage=2)
    assert D.label_stage == 0 and not hasattr(D, "label_fc")
    assert D(torch.randn(2, 1, 28, 28)).shape == (2,)
    D = gzoo.create("discriminator", "coc", image_shape=(1, 28, 28), num_classes=10, head_dim=4, mlp_r=2,
                    label_stage=2)
    gzoo.interfaces.apply_spectral_norm(D)
    assert torch.nn.utils.parametrize.is_parametrized(D.label_fc, "weight")
    sigma = torch.linalg.matrix_norm(D.label_fc.weight.detach(), ord=2)
    assert sigma.item() == pytest.approx(1.0, rel=0.2)  # one power iteration per forward, so approximate
    D(torch.randn(2, 1, 28, 28), torch.tensor([1, 2])).sum().backward()
    assert D.label_fc.parametrizations.weight.original.grad.abs().sum() > 0


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
    # 4 rows of (image + 3+2+1 G blocks + 1+2+2+2 D blocks) 28-pixel tiles with 2-pixel padding
    assert im.size == (2 + 14 * 30, 2 + 4 * 30)


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
    # the paper names no regularizer: its presets say so, so coc's default spectral norm is not added
    t = pm.registry.get_preset("cocgan-paper-table1")
    assert p["reg"] == [] and t["reg"] == []
    assert complete_for_models(RunConfig().updated(p), pm.registry, explicit=set(p))[0].reg == []
    without = {k: v for k, v in p.items() if k != "reg"}  # the same settings, naming no regularizer
    assert complete_for_models(RunConfig().updated(without), pm.registry, explicit=set(without))[0].reg == ["sn", "r1"]


@pytest.mark.parametrize("impl", ["fused", "bmm"])
def test_spectral_norm_weights_are_computed_once_per_forward(monkeypatch, impl):
    """Under spectral norm (train mode: each computation of a weight steps its power iteration) a
    block computes every weight once per forward, however many chunks its point-wise work takes and
    however often the fused mixer uses a matrix: the same outputs and power-iteration state as the
    block with its parametrisations cached (one computation each)."""
    import copy

    from torch.nn.utils import parametrize

    from gzoo.interfaces import apply_spectral_norm
    from gzoo_coc import cluster

    monkeypatch.setattr(cluster, "CHUNK_ELEMENTS", 64)  # many chunks
    monkeypatch.setattr(cluster, "CHUNK_MAX_THREADS", torch.get_num_threads())  # on any thread count
    torch.manual_seed(0)
    blk = ClusterBlock(8, heads=2, head_dim=4, regions=2, centers=2, mlp_r=2, layer_scale=1.0, impl=impl)
    blk = apply_spectral_norm(blk.double())
    ref = copy.deepcopy(blk)
    p = torch.randn(2, 36, 8, dtype=torch.float64)
    out = blk(p, 6, 6)
    with parametrize.cached():
        expected = ref(p, 6, 6)
    torch.testing.assert_close(out, expected)
    us = [(m.parametrizations.weight[0]._u, r.parametrizations.weight[0]._u)
          for m, r in zip(blk.modules(), ref.modules(), strict=True) if hasattr(m, "parametrizations")]
    assert len(us) == 5  # f, v, proj, and the MLP's two layers
    for u, u_ref in us:
        torch.testing.assert_close(u, u_ref)


def test_rowwise_chunks_only_up_to_chunk_max_threads(monkeypatch):
    """Chunks on few threads (cache locality), the whole array on more (each chunk's ops would
    wake the other threads once more); the result is the same either way."""
    from gzoo_coc import cluster

    x = torch.randn(10, 3, 4, dtype=torch.float64)
    calls = []

    def fn(rows):
        calls.append(rows.shape[0])
        return rows * 2

    monkeypatch.setattr(cluster, "CHUNK_ELEMENTS", 8)  # 8 // width 2 = 4 rows a chunk
    threads = torch.get_num_threads()
    monkeypatch.setattr(cluster, "CHUNK_MAX_THREADS", threads)
    torch.testing.assert_close(cluster.rowwise(fn, x, 2), x * 2)
    assert calls == [4] * 7 + [2]  # 30 rows
    calls.clear()
    monkeypatch.setattr(cluster, "CHUNK_MAX_THREADS", threads - 1)
    torch.testing.assert_close(cluster.rowwise(fn, x, 2), x * 2)
    assert calls == [30]


def test_cluster_block_chunks_are_exact(monkeypatch):
    """The block's point-wise work runs in chunks of points (cluster.rowwise): forcing many chunks
    gives the same values, gradients and second-order gradients as one chunk."""
    from gzoo_coc import cluster

    torch.manual_seed(0)
    blk = ClusterBlock(8, heads=2, head_dim=4, regions=2, centers=2, mlp_r=2).double()
    with torch.no_grad():
        for q in blk.parameters():
            q.add_(0.3 * torch.randn_like(q))
    p = torch.randn(3, 64, 8, dtype=torch.float64, requires_grad=True)

    def run():
        out = blk(p, 8, 8)
        (g,) = torch.autograd.grad(out.square().sum(), p, create_graph=True)
        return [out, g, *torch.autograd.grad(g.square().sum(), [p, *blk.parameters()])]

    whole = run()
    monkeypatch.setattr(cluster, "CHUNK_ELEMENTS", 40)
    monkeypatch.setattr(cluster, "CHUNK_MAX_THREADS", torch.get_num_threads())
    for a, b in zip(run(), whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_drop_path_is_timms_rising_linearly_and_off_by_default():
    from timm.layers import DropPath

    torch.manual_seed(0)
    kw = dict(image_shape=(1, 28, 28), head_dim=4, mlp_r=2)
    plain = gzoo.create("discriminator", "coc", **kw)
    assert not any(isinstance(m, DropPath) for m in plain.modules())
    D = gzoo.create("discriminator", "coc", drop_path=0.3, **kw)
    paths = [blk.drop_path for blocks in D.stage_blocks for blk in blocks]
    rates = [getattr(m, "drop_prob", 0.0) for m in paths]
    n = len(rates)
    assert n > 1 and isinstance(paths[0], nn.Identity) and all(isinstance(m, DropPath) for m in paths[1:])
    assert rates == pytest.approx([0.3 * i / (n - 1) for i in range(n)])
    D.load_state_dict(plain.state_dict())
    x = torch.randn(8, 1, 28, 28)
    assert torch.allclose(D.eval()(x), plain.eval()(x), atol=1e-6)  # eval: no dropping
    # train: the last block's branches are dropped for some samples only (per-sample stochastic depth)
    blk = D.stage_blocks[-1][-1].train()
    blk.ls1.data.fill_(1.0)
    blk.ls2.data.fill_(1.0)
    p = torch.randn(64, 4, D.specs[-1].dim)
    side = 2
    torch.manual_seed(1)
    out = blk(p, side, side)
    kept = [not torch.allclose(out[i], p[i]) for i in range(64)]
    assert 0 < sum(kept) < 64
    with pytest.raises(UsageError, match=r"drop_path must be in \[0, 1\)"):
        gzoo.create("block", "context-cluster", channels=8, drop_path=1.5)


@pytest.mark.parametrize("layer_scale", [1e-5, 1.0])
def test_block_share_measures_what_the_generators_blocks_add(cli, tmp_path, layer_scale):
    """benchmarks/coc_block_share.py: a block's ratio is ||block(p) - p|| / ||p||, recomputed here by
    hand for G's last block; "G without blocks" is 0 when the blocks are near the identity (layer
    scale 1e-5) and large at layer scale 1; the generator is left as it was."""
    share = _load_benchmark("coc_block_share")
    out = tmp_path / "r"
    r = cli("run", "--gen", "cocgan", "--disc", "coc", "--data", "digits", "--steps", "1", "--batch-size", "4",
            "--sample-every", "0", "--quiet", "--out", out, "--gen-opt", f"layer_scale={layer_scale}", *SMALL)
    assert r.exit_code == 0, r.output
    row = share.measure(str(out), n=8)
    from gzoo.run import load_run

    loaded = load_run(out)
    G = loaded.G
    z = torch.randn(8, G.latent_dim, generator=torch.Generator().manual_seed(0))
    last = G.stage_blocks[-1][-1]
    seen = []
    hook = last.register_forward_hook(lambda m, i, o: seen.append(((o - i[0]).norm() / i[0].norm()).item()))
    with torch.no_grad():
        G(z)
    hook.remove()
    ratios = []
    hooks = [b.register_forward_hook(lambda m, i, o: ratios.append(((o - i[0]).norm() / i[0].norm()).item()))
             for b in G.stage_blocks[-1]]
    with torch.no_grad():
        G(z)
    for h in hooks:
        h.remove()
    assert float(row[f"G stage {len(G.stage_blocks)}"]) == pytest.approx(sum(ratios) / len(ratios), abs=1e-3)
    assert seen[0] == pytest.approx(ratios[-1])
    without = float(row["G without blocks"])
    if layer_scale < 1e-3:  # one Adam step moves the layer scales to about lr (2e-4)
        assert without < 0.02 and all(r < 0.02 for r in ratios)
    else:
        assert without > 0.2
    assert {f"D stage {k}" for k in range(1, len(loaded.D.stage_blocks) + 1)} <= set(row)


def _load_benchmark(name):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_ablation_row_is_divided_by_a_dcgan_trained_the_same_way():
    """benchmarks/bench_coc_ablations.py: each variant's ``fid / DCGAN's`` baseline is a defined DCGAN
    row with the same conditioning, moving average and learning-rate schedule (a cosine row against
    DCGAN without it would credit CoC-GAN with the schedule)."""
    bench = _load_benchmark("bench_coc_ablations")
    for variant in bench.VARIANTS:
        base = bench.baseline(variant)
        assert base in bench.VARIANTS, (variant, base)
        mine, theirs = bench.settings(variant), bench.settings(base)
        assert (theirs["gen"], theirs["disc"]) == ("dcgan", "dcgan"), (variant, base)
        for key in bench.BASELINE_KEYS:
            assert mine.get(key) == theirs.get(key), (variant, base, key)


def test_ablation_ratio_divides_by_dcgan_on_the_same_seeds():
    """``fid / DCGAN's`` compares like with like: DCGAN's mean on the row's own seeds; all of DCGAN's
    seeds, marked with a dagger, only when DCGAN lacks one of them; "-" with no DCGAN row."""
    ratio = _load_benchmark("bench_coc_ablations").ratio
    dcgan = {0: 80.0, 1: 100.0, 2: 300.0}
    assert ratio([90.0, 110.0], [0, 1], dcgan) == ("1.11", False)  # (90 + 110) / (80 + 100)
    assert ratio([120.0], [2], dcgan) == ("0.40", False)
    assert ratio([240.0], [5], dcgan) == ("1.50†", True)  # 240 / mean(80, 100, 300)
    assert ratio([240.0], [0], {}) == ("-", False)


def test_generator_and_discriminator_trace_whole_under_torch_compile():
    """``--compile`` gets one graph per model: nothing in G or D breaks torch.compile's trace
    (``rowwise`` asked ``torch.get_num_threads()``, a graph break at every block once the points
    outnumbered a chunk: here 16 x 16 x 16 = 4,096 rows of the MLP's hidden width)."""
    import torch._dynamo as dynamo

    registry = gzoo.get_registry()
    torch.manual_seed(0)
    G = registry.create("generator", "cocgan", image_shape=(1, 16, 16))
    D = registry.create("discriminator", "coc", image_shape=(1, 16, 16))
    z = G.sample_latent(16)
    dynamo.reset()
    for model, x in ((G, z), (D, G(z).detach())):
        explained = dynamo.explain(model)(x)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    dynamo.reset()
