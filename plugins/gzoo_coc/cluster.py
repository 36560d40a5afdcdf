"""The Context Cluster token mixer and block (Ma et al., "Image as Set of Points", ICLR 2023).

For points ``P (B, N, D)`` on an ``H x W`` lattice, one :class:`ContextCluster`:

1. projects the points to a similarity space ``P_s`` and a value space ``P_v``, each with
   ``heads x head_dim`` channels (``nn.Linear``);
2. partitions the lattice into ``regions x regions`` regions; in each region proposes
   ``centers x centers`` centers by adaptive average pooling of the region's points (the
   same pooling gives the centers' values ``v_c``);
3. computes the cosine similarity ``s`` between every center and every point of its region,
   and assigns each point to its most similar center only (hard assignment, ``argmax s``);
4. aggregates each cluster: ``g = (v_c + sum_i sig(a s_i + b) v_i) / (1 + sum_i sig(a s_i + b))``,
   with learnable ``a`` (init 1) and ``b`` (init 0) shared by the heads;
5. dispatches ``sig(a s_i + b) g`` back to each point of the cluster;
6. fuses the heads with a linear layer ``heads*head_dim -> D`` (the FC of
   ``p_i' = p_i + FC(sig(a s_i + b) g)``; the residual is added by :class:`ClusterBlock`).

Hard assignment makes aggregation and dispatch a sparse, one-center-per-point operation.
The default ``impl="bmm"`` writes the assignment as a ``(B', M, n)`` matrix holding each
point's weight ``sig(a s_i + b)`` in its center's row and zeros elsewhere, so aggregation is
one ``baddbmm`` (``v_c + A @ V``) and dispatch one ``bmm`` (``A^T @ g``); ``impl="scatter"``
does the same with ``scatter_add``/``gather``; ``impl="broadcast"`` is the direct dense form
(a ``B' x M x n x d`` broadcast, as in the original code), kept as the reference for tests
and the speed benchmark (``benchmarks/bench_coc_mixer.py``). The cosine similarity
normalises the centers and divides the ``(B', M, n)`` dot products by the point norms,
instead of normalising the larger ``(B', n, d)`` point tensor. Everything is vectorised over
batch, heads and regions.

:class:`ClusterBlock` is the original block: ``x + ls1 * mixer(norm1(x))`` then
``x + ls2 * mlp(norm2(x))`` with GroupNorm(1) over the point set, a point-wise MLP of ratio
``mlp_r`` and layer scale.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.errors import UsageError
from gzoo.interfaces import Block

from .points import image_to_points, points_to_image

IMPLS = ("bmm", "scatter", "broadcast")


def _fold(x: Tensor, h: int, w: int, heads: int, regions: int) -> Tensor:
    """``(B, H*W, heads*d)`` -> ``(B*heads*R*R, H/R, W/R, d)``: one row per (batch, head, region)."""
    b, _, c = x.shape
    d, R = c // heads, regions
    x = x.view(b, R, h // R, R, w // R, heads, d)  # (B, R, hr, R, wr, E, d)
    x = x.permute(0, 5, 1, 3, 2, 4, 6)  # (B, E, R, R, hr, wr, d)
    return x.reshape(b * heads * R * R, h // R, w // R, d)


def _unfold(x: Tensor, b: int, h: int, w: int, heads: int, regions: int) -> Tensor:
    """Inverse of :func:`_fold`: ``(B*heads*R*R, n, d)`` -> ``(B, H*W, heads*d)``."""
    R, d = regions, x.shape[-1]
    x = x.view(b, heads, R, R, h // R, w // R, d)  # (B, E, R, R, hr, wr, d)
    x = x.permute(0, 2, 4, 3, 5, 1, 6)  # (B, R, hr, R, wr, E, d)
    return x.reshape(b, h * w, heads * d)


def propose_centers(x: Tensor, c: int) -> Tensor:
    """Adaptive average pooling of a region's points ``(B', hr, wr, d)`` to ``(B', c*c, d)``."""
    bp, hr, wr, d = x.shape
    if hr % c == 0 and wr % c == 0:  # equal cells: a mean over a view, no layout change
        return x.view(bp, c, hr // c, c, wr // c, d).mean(dim=(2, 4)).reshape(bp, c * c, d)
    return F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), c).flatten(2).transpose(1, 2)


class ContextCluster(nn.Module):
    """The Context Cluster token mixer on point sets ``(B, N, D)``."""

    def __init__(self, dim: int, *, heads: int = 4, head_dim: int = 32, regions: int = 1, centers: int = 2,
                 impl: str = "bmm"):
        super().__init__()
        if impl not in IMPLS:
            raise UsageError(f"unknown context-cluster impl {impl!r}; valid: {', '.join(IMPLS)}")
        self.heads, self.head_dim, self.regions, self.centers, self.impl = heads, head_dim, regions, centers, impl
        inner = heads * head_dim
        self.f = nn.Linear(dim, inner)  # similarity space
        self.v = nn.Linear(dim, inner)  # value space
        self.proj = nn.Linear(inner, dim)  # head fusion (the dispatch FC)
        self.alpha = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.zeros(1))
        self.record = False
        self.last_assignment: Tensor | None = None  # (B*heads*R*R, n) center index per point
        self.last_lattice: tuple[int, int, int] | None = None  # (h, w, centers per region)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, regions={self.regions}, centers={self.centers}, impl={self.impl}"

    def check_lattice(self, h: int, w: int) -> None:
        if h % self.regions or w % self.regions:
            valid = [r for r in range(1, min(h, w) + 1) if h % r == 0 and w % r == 0]
            raise UsageError(f"{self.regions}x{self.regions} regions do not divide a {h}x{w} lattice; valid: {valid}")

    def forward(self, p: Tensor, h: int, w: int) -> Tensor:
        self.check_lattice(h, w)
        b = p.shape[0]
        E, R = self.heads, self.regions
        s_pts = _fold(self.f(p), h, w, E, R)  # (B', hr, wr, d), B' = B*E*R*R
        v_pts = _fold(self.v(p), h, w, E, R)
        c = min(self.centers, s_pts.shape[1], s_pts.shape[2])
        s_ctr = propose_centers(s_pts, c)  # (B', M, d), M = c*c centers per region
        v_ctr = propose_centers(v_pts, c)  # (B', M, d): the centers' values v_c
        s_pts = s_pts.flatten(1, 2)  # (B', n, d)
        v_pts = v_pts.flatten(1, 2)  # (B', n, d)
        dots = F.normalize(s_ctr, dim=-1) @ s_pts.transpose(1, 2)  # (B', M, n)
        sim = dots / s_pts.norm(dim=-1).clamp_min(1e-12).unsqueeze(1)  # cosine similarity
        if self.record:
            self.last_lattice = (h, w, s_ctr.shape[1])
        out = getattr(self, f"_{self.impl}")(sim, v_pts, v_ctr)  # (B', n, d)
        return self.proj(_unfold(out, b, h, w, E, R))

    def _bmm(self, sim: Tensor, v: Tensor, v_ctr: Tensor) -> Tensor:
        s, idx = sim.max(dim=1)  # (B', n): each point's most similar center and its similarity
        if self.record:
            self.last_assignment = idx.detach()
        wgt = torch.sigmoid(self.alpha * s + self.beta)  # (B', n)
        assign = F.one_hot(idx, sim.shape[1]).to(v.dtype).transpose(1, 2) * wgt.unsqueeze(1)  # (B', M, n)
        g = torch.baddbmm(v_ctr, assign, v) / (1.0 + assign.sum(-1, keepdim=True))  # (B', M, d)
        return assign.transpose(1, 2) @ g  # (B', n, d): w_i * g of the point's center

    def _scatter(self, sim: Tensor, v: Tensor, v_ctr: Tensor) -> Tensor:
        s, idx = sim.max(dim=1)  # (B', n): each point's most similar center and its similarity
        if self.record:
            self.last_assignment = idx.detach()
        wgt = torch.sigmoid(self.alpha * s + self.beta)  # (B', n)
        bp, m, d = v_ctr.shape
        index = idx.unsqueeze(-1).expand(-1, -1, d)  # (B', n, d)
        num = v_ctr.scatter_add(1, index, wgt.unsqueeze(-1) * v)  # (B', M, d): v_c + sum w_i v_i
        den = torch.ones(bp, m, device=v.device, dtype=v.dtype).scatter_add(1, idx, wgt)  # (B', M): 1 + sum w_i
        g = num / den.unsqueeze(-1)  # (B', M, d)
        return wgt.unsqueeze(-1) * g.gather(1, index)  # (B', n, d): dispatch to each point's center

    def _broadcast(self, sim: Tensor, v: Tensor, v_ctr: Tensor) -> Tensor:
        s, idx = sim.max(dim=1, keepdim=True)  # (B', 1, n)
        if self.record:
            self.last_assignment = idx[:, 0].detach()
        mask = torch.zeros_like(sim).scatter_(1, idx, 1.0)  # (B', M, n) one-hot hard assignment
        wgt = torch.sigmoid(self.alpha * sim + self.beta) * mask  # (B', M, n)
        agg = (v.unsqueeze(1) * wgt.unsqueeze(-1)).sum(2)  # (B', M, n, d) -> (B', M, d)
        g = (agg + v_ctr) / (wgt.sum(-1, keepdim=True) + 1.0)  # (B', M, d)
        return (g.unsqueeze(2) * wgt.unsqueeze(-1)).sum(1)  # (B', M, n, d) -> (B', n, d)


class PointGroupNorm(nn.Module):
    """GroupNorm with one group over a point set: statistics over all (N, D) of a sample."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, p: Tensor) -> Tensor:
        mean = p.mean(dim=(1, 2), keepdim=True)
        var = p.var(dim=(1, 2), keepdim=True, unbiased=False)
        return (p - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class ClusterBlock(nn.Module):
    """Context Cluster block: norm, token mixer, residual with layer scale; norm, MLP, residual."""

    def __init__(self, dim: int, *, heads: int = 4, head_dim: int = 32, regions: int = 1, centers: int = 2,
                 mlp_r: int = 8, layer_scale: float = 1e-5, impl: str = "bmm"):
        super().__init__()
        self.norm1 = PointGroupNorm(dim)
        self.mixer = ContextCluster(dim, heads=heads, head_dim=head_dim, regions=regions, centers=centers, impl=impl)
        self.norm2 = PointGroupNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_r), nn.GELU(), nn.Linear(dim * mlp_r, dim))
        self.ls1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.ls2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, p: Tensor, h: int, w: int) -> Tensor:
        p = p + self.ls1 * self.mixer(self.norm1(p), h, w)
        return p + self.ls2 * self.mlp(self.norm2(p))


class ContextClusterBlock(Block):
    """A Context Cluster block on feature maps (N, C, H, W), for insertion into conv models."""

    def __init__(self, *, channels: int, heads: int = 4, head_dim: int = 32, regions: int = 1, centers: int = 2,
                 mlp_r: int = 4, layer_scale: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.coords = nn.Linear(channels + 2, channels)  # fold the coordinates into the features
        self.block = ClusterBlock(channels, heads=heads, head_dim=head_dim, regions=regions, centers=centers,
                                  mlp_r=mlp_r, layer_scale=layer_scale)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        p = self.coords(image_to_points(x))  # (B, N, C): features with coordinates folded in
        return x + points_to_image(self.block(p, h, w) - p, h, w)  # the block's update, as a residual


def cluster_map(mixer: ContextCluster, batch: int, head: int = 0) -> Tensor:
    """The last recorded hard assignment as a ``(batch, H, W)`` map of cluster ids
    (``region * centers + center``) for one head."""
    assert mixer.last_assignment is not None and mixer.last_lattice is not None, "run the model under recording()"
    h, w, m = mixer.last_lattice
    R, E = mixer.regions, mixer.heads
    a = mixer.last_assignment.view(batch, E, R, R, h // R, w // R)[:, head]  # (B, R, R, hr, wr)
    region = torch.arange(R * R, device=a.device).view(1, R, R, 1, 1)
    ids = region * m + a  # (B, R, R, hr, wr)
    return ids.permute(0, 1, 3, 2, 4).reshape(batch, h, w)


@contextlib.contextmanager
def recording(*models: nn.Module) -> Iterator[list[ContextCluster]]:
    """Make every ContextCluster in ``models`` keep its last hard assignment."""
    mixers = [m for model in models if model is not None for m in model.modules() if isinstance(m, ContextCluster)]
    for m in mixers:
        m.record = True
    try:
        yield mixers
    finally:
        for m in mixers:
            m.record = False
