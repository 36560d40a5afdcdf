"""The Context Cluster token mixer and block (Ma et al., "Image as Set of Points", ICLR 2023).

For points ``P (B, N, D)`` on an ``H x W`` lattice, one :class:`ContextCluster`:

1. projects the points to a similarity space ``P_s = f(P)`` and a value space ``P_v = v(P)``,
   each with ``heads x head_dim`` channels (``nn.Linear``);
2. partitions the lattice into ``regions x regions`` regions; in each region proposes
   ``centers x centers`` centers by adaptive average pooling of the region's points (the
   same pooling gives the centers' values ``v_c``). As in the official code, the windows of
   the pooling overlap when ``centers`` does not divide the region's side, and ``centers``
   may exceed the side (then windows repeat points; from ``2 x side`` on, some centers are
   pooled from the same points, tie, and the later ones get no members);
3. computes the cosine similarity ``s`` between every center and every point of its region,
   and assigns each point to its most similar center only (hard assignment, ``argmax s``);
4. aggregates each cluster: ``g = (v_c + sum_i sig(a s_i + b) v_i) / (1 + sum_i sig(a s_i + b))``,
   with learnable ``a`` (init 1) and ``b`` (init 0) shared by the heads;
5. dispatches ``sig(a s_i + b) g`` back to each point of the cluster;
6. fuses the heads with a linear layer ``heads*head_dim -> D`` (the FC of
   ``p_i' = p_i + FC(sig(a s_i + b) g)``; the residual is added by :class:`ClusterBlock`).

Hard assignment makes aggregation and dispatch sparse: one center per point. Four
implementations compute the same function (``impl=``), all vectorised over batch, heads,
regions, centers and points:

* ``"fused"`` (default): the assignment is a ``(B, R*R, n, heads*M)`` matrix ``A`` holding each
  point's weight ``sig(a s_i + b)`` in the column of its center (one non-zero per head).
  Because ``v``, the center pooling and the head fusion are affine, they commute with the
  cluster sums, so the per-point values are never formed: aggregation is ``A^T @ P`` on the
  *input* points followed by ``v`` on the ``heads*M`` sums, dispatch and head fusion are one
  ``A @ (W_proj g)``; the cosine similarities come from ``P @ (W_f^T c)`` for the unit centers
  ``c`` and the norms of ``f(P)``. Only ``f(P)`` is ever computed per point, for its norms,
  in chunks of points (:func:`rowwise`); as ``|f(p)|`` is common to a point's centers, the
  argmax is taken on the dot products and only the best one is divided by it.
* ``"bmm"``: per-point values folded to ``(B*heads*R*R, n, d)``; aggregation is one ``baddbmm``
  (``v_c + A V``) and dispatch one ``bmm`` (``A^T g``).
* ``"scatter"``: the same with ``scatter_add`` / ``gather``.
* ``"broadcast"``: the direct dense form of the original code (``B' x M x n x d`` broadcasts),
  the reference for tests and ``benchmarks/bench_coc_mixer.py``.

Implementations may differ in the last bits of a similarity, so in float32 a point whose two
best centers tie to ~1e-7 can be assigned differently; in float64 they agree to 1e-10.

:class:`ClusterBlock` is the original block: ``x + ls1 * mixer(norm1(x))`` then
``x + ls2 * mlp(norm2(x))`` with GroupNorm(1) over the point set (computed as a layer norm
over each sample's ``(N, D)`` points), a point-wise MLP of ratio ``mlp_r`` (run in chunks of
points, :func:`rowwise`) and layer scale. Its MLP starts from PyTorch's default initialisation
(``init="torch"``) or, as in the official code, from a truncated normal of std 0.02 with
zero biases (``init="official"``); ``f``, ``v`` and ``proj`` are 1x1 convolutions there, left at
PyTorch's default, which for a 1x1 convolution is the same distribution as ``nn.Linear``'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.errors import UsageError
from gzoo.interfaces import Block

from .points import image_to_points, points_to_image

IMPLS = ("fused", "bmm", "scatter", "broadcast")
INITS = ("torch", "official")

#: Point-wise work on wide intermediates (the blocks' MLP hidden layer, ``f(P)`` for the
#: similarity norms) runs in chunks of points whose wide tensors hold about this many elements
#: (1 MiB in float32) when torch runs on at most ``CHUNK_MAX_THREADS`` threads: each chunk's
#: intermediates are still in cache for the next op, and for the backward, instead of
#: ``(points, width)`` tensors streaming through memory between ops. On two CPU threads they made a
#: CoC-GAN training step 1.32x *slower*: every op of every chunk is split between the threads, and
#: each split wakes a sleeping OpenMP thread (gzoo's ``OMP_WAIT_POLICY=PASSIVE``), so on more than
#: one thread the work runs whole. On one they made no difference beyond the noise and stay as they
#: were (``benchmarks/coc_step_ablation.py``; docs/coc.md, "Speed of a training step").
#: Each row sees the same ops, so the values are unchanged up to the matrix products' blocking;
#: autograd (double backward included) is plain.
CHUNK_ELEMENTS = 1 << 18
CHUNK_MAX_THREADS = 1


def rowwise(fn: Callable[[Tensor], Tensor], x: Tensor, width: int) -> Tensor:
    """``fn`` applied to the rows of ``x (..., C)``: ``fn`` must act on each row alone,
    ``(rows, C) -> (rows, C')``; ``width`` is the width of its widest intermediate. On up to
    ``CHUNK_MAX_THREADS`` threads the rows go in chunks of ``CHUNK_ELEMENTS // width``, concatenated."""
    rows = max(1, CHUNK_ELEMENTS // width)
    flat = x.reshape(-1, x.shape[-1])
    # under torch.compile the compiler fuses and tiles (and get_num_threads would break its graph)
    if torch.compiler.is_compiling() or flat.shape[0] <= rows or torch.get_num_threads() > CHUNK_MAX_THREADS:
        out = fn(flat)
    else:
        out = torch.cat([fn(c) for c in flat.split(rows)])
    return out.view(*x.shape[:-1], out.shape[-1])


def fold_regions(x: Tensor, h: int, w: int, regions: int) -> Tensor:
    """``(B, H*W, C)`` -> ``(B, R*R, H/R * W/R, C)``: points grouped by region (row-major)."""
    b, _, c = x.shape
    R = regions
    if R == 1:
        return x.unsqueeze(1)
    x = x.view(b, R, h // R, R, w // R, c).transpose(2, 3)  # (B, R, R, hr, wr, C)
    return x.reshape(b, R * R, (h // R) * (w // R), c)


def unfold_regions(x: Tensor, h: int, w: int, regions: int) -> Tensor:
    """Inverse of :func:`fold_regions`."""
    b, c, R = x.shape[0], x.shape[-1], regions
    if R == 1:
        return x.squeeze(1)
    x = x.view(b, R, R, h // R, w // R, c).transpose(2, 3)  # (B, R, hr, R, wr, C)
    return x.reshape(b, h * w, c)


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
    """Adaptive average pooling of regions ``(..., hr, wr, d)`` to ``c x c`` centers ``(..., c*c, d)``."""
    *lead, hr, wr, d = x.shape
    if hr % c == 0 and wr % c == 0:  # equal cells: a mean over a view, no layout change
        return x.reshape(*lead, c, hr // c, c, wr // c, d).mean(dim=(-4, -2)).reshape(*lead, c * c, d)
    flat = x.reshape(-1, hr, wr, d).permute(0, 3, 1, 2)  # (B', d, hr, wr)
    return F.adaptive_avg_pool2d(flat, c).flatten(2).transpose(1, 2).reshape(*lead, c * c, d)


class ContextCluster(nn.Module):
    """The Context Cluster token mixer on point sets ``(B, N, D)`` on an ``h x w`` lattice."""

    def __init__(self, dim: int, *, heads: int = 4, head_dim: int = 32, regions: int = 1, centers: int = 2,
                 impl: str = "fused"):
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
        self.record = False  # keep the last hard assignment (see recording())
        self.last_assignment: Tensor | None = None  # (B, heads, R*R, n) center index of each point
        self.last_lattice: tuple[int, int, int] | None = None  # (h, w, centers per region)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, regions={self.regions}, centers={self.centers}, impl={self.impl}"

    def check_lattice(self, h: int, w: int) -> None:
        if h % self.regions or w % self.regions:
            valid = [r for r in range(1, min(h, w) + 1) if h % r == 0 and w % r == 0]
            raise UsageError(f"{self.regions}x{self.regions} regions do not divide a {h}x{w} lattice; valid: {valid}")

    def forward(self, p: Tensor, h: int, w: int) -> Tensor:
        self.check_lattice(h, w)
        if self.impl == "fused":
            return self._fused(p, h, w)
        return self._unfused(p, h, w)

    def _remember(self, idx: Tensor, h: int, w: int, m: int) -> None:
        if self.record:
            self.last_assignment, self.last_lattice = idx.detach(), (h, w, m)

    # -- the default: values and head fusion applied to cluster sums ---------------------
    def _fused(self, p: Tensor, h: int, w: int) -> Tensor:
        B, _, D = p.shape
        E, d, R = self.heads, self.head_dim, self.regions
        hr, wr = h // R, w // R
        c = self.centers  # adaptive pooling: may overlap, may exceed the region's side
        M = c * c
        pr = fold_regions(p, h, w, R)  # (B, RR, n, D)
        pc = propose_centers(pr.view(B, R * R, hr, wr, D), c)  # (B, RR, M, D): f, v commute with the mean
        # clustering: cosine similarity of each point to the M unit centers of its region, per head
        # every weight is read once: a parametrised one (spectral norm) is the same matrix in all its uses
        fw, fb, vw, vb, pw = self.f.weight, self.f.bias, self.v.weight, self.v.bias, self.proj.weight
        # |f(p)| per head, in chunks of points: (B, RR, n, E)
        s_norm = rowwise(lambda x: torch.linalg.vector_norm(F.linear(x, fw, fb).view(-1, E, d), dim=-1), pr, E * d)
        ctr = F.normalize(F.linear(pc, fw, fb).view(B, R * R, M, E, d), dim=-1)  # (B, RR, M, E, d)
        wf, bf = fw.view(E, d, D), fb.view(E, d)
        u = torch.einsum("brmed,edk->bremk", ctr, wf).reshape(B, R * R, E * M, D)  # W_f^T c
        k = torch.einsum("brmed,ed->brem", ctr, bf).reshape(B, R * R, 1, E * M)  # c . b_f
        dots = (torch.matmul(pr, u.transpose(-1, -2)) + k).view(B, R * R, hr * wr, E, M)  # c . f(p)
        best, idx = dots.max(dim=-1)  # (B, RR, n, E): |f(p)| > 0 is common to a point's centers
        sim = best / s_norm.clamp_min(1e-12)  # cosine similarity to the most similar center
        self._remember(idx.permute(0, 3, 1, 2), h, w, M)
        wgt = torch.sigmoid(self.alpha * sim + self.beta)  # (B, RR, n, E)
        A = torch.zeros_like(dots).scatter(-1, idx.unsqueeze(-1), wgt.unsqueeze(-1).to(dots.dtype))  # (B, RR, n, E, M)
        A = A.view(B, R * R, hr * wr, E * M)  # one weighted non-zero per point and head
        # aggregation: sum_i w_i v(p_i) = W_v (sum_i w_i p_i) + b_v sum_i w_i
        psum = torch.matmul(A.transpose(-1, -2), pr).view(B, R * R, E, M, D)  # (B, RR, E, M, D)
        wsum = A.sum(2).view(B, R * R, E, M, 1)  # (B, RR, E, M, 1)
        wv, bv = vw.view(E, d, D), vb.view(E, d)
        num = torch.einsum("bremk,edk->bremd", psum, wv) + wsum * bv.unsqueeze(1)  # (B, RR, E, M, d)
        v_ctr = F.linear(pc, vw, vb).view(B, R * R, M, E, d).transpose(2, 3)  # (B, RR, E, M, d): v_c
        g = (v_ctr + num) / (1.0 + wsum)  # (B, RR, E, M, d)
        # dispatch + head fusion: proj(concat_e w_e g_e) = sum_e w_e (W_proj,e g_e) + b_proj
        gp = torch.einsum("bremd,ked->bremk", g, pw.view(D, E, d))  # (B, RR, E, M, D)
        out = torch.matmul(A, gp.reshape(B, R * R, E * M, D)) + self.proj.bias  # (B, RR, n, D)
        return unfold_regions(out, h, w, R)

    # -- per-point values folded to (B*heads*R*R, n, d) -----------------------------------
    def _unfused(self, p: Tensor, h: int, w: int) -> Tensor:
        b = p.shape[0]
        E, R = self.heads, self.regions
        s_pts = _fold(self.f(p), h, w, E, R)  # (B', hr, wr, d), B' = B*E*R*R
        v_pts = _fold(self.v(p), h, w, E, R)
        c = self.centers
        s_ctr = propose_centers(s_pts, c)  # (B', M, d), M = c*c centers per region
        v_ctr = propose_centers(v_pts, c)  # (B', M, d): the centers' values v_c
        s_pts = s_pts.flatten(1, 2)  # (B', n, d)
        v_pts = v_pts.flatten(1, 2)  # (B', n, d)
        dots = F.normalize(s_ctr, dim=-1) @ s_pts.transpose(1, 2)  # (B', M, n)
        sim = dots / s_pts.norm(dim=-1).clamp_min(1e-12).unsqueeze(1)  # cosine similarity
        s, idx = sim.max(dim=1)  # (B', n): each point's most similar center and its similarity
        self._remember(idx.view(b, E, R * R, -1), h, w, sim.shape[1])
        out = getattr(self, f"_{self.impl}")(sim, s, idx, v_pts, v_ctr)  # (B', n, d)
        return self.proj(_unfold(out, b, h, w, E, R))

    def _bmm(self, sim: Tensor, s: Tensor, idx: Tensor, v: Tensor, v_ctr: Tensor) -> Tensor:
        wgt = torch.sigmoid(self.alpha * s + self.beta)  # (B', n)
        assign = torch.zeros_like(sim).scatter(1, idx.unsqueeze(1), wgt.unsqueeze(1).to(sim.dtype))  # (B', M, n)
        g = torch.baddbmm(v_ctr, assign, v) / (1.0 + assign.sum(-1, keepdim=True))  # (B', M, d)
        return assign.transpose(1, 2) @ g  # (B', n, d): w_i * g of the point's center

    def _scatter(self, sim: Tensor, s: Tensor, idx: Tensor, v: Tensor, v_ctr: Tensor) -> Tensor:
        wgt = torch.sigmoid(self.alpha * s + self.beta)  # (B', n)
        bp, m, d = v_ctr.shape
        index = idx.unsqueeze(-1).expand(-1, -1, d)  # (B', n, d)
        num = v_ctr.scatter_add(1, index, wgt.unsqueeze(-1) * v)  # (B', M, d): v_c + sum w_i v_i
        den = torch.ones(bp, m, device=v.device, dtype=v.dtype).scatter_add(1, idx, wgt)  # (B', M): 1 + sum w_i
        g = num / den.unsqueeze(-1)  # (B', M, d)
        return wgt.unsqueeze(-1) * g.gather(1, index)  # (B', n, d): dispatch to each point's center

    def _broadcast(self, sim: Tensor, s: Tensor, idx: Tensor, v: Tensor, v_ctr: Tensor) -> Tensor:
        mask = torch.zeros_like(sim).scatter_(1, idx.unsqueeze(1), 1.0)  # (B', M, n) one-hot hard assignment
        wgt = torch.sigmoid(self.alpha * sim + self.beta) * mask  # (B', M, n)
        agg = (v.unsqueeze(1) * wgt.unsqueeze(-1)).sum(2)  # (B', M, n, d) -> (B', M, d)
        g = (agg + v_ctr) / (wgt.sum(-1, keepdim=True) + 1.0)  # (B', M, d)
        return (g.unsqueeze(2) * wgt.unsqueeze(-1)).sum(1)  # (B', M, n, d) -> (B', n, d)


class PointGroupNorm(nn.Module):
    """GroupNorm with one group over a point set: statistics over all (N, D) of a sample.

    Computed as ``F.layer_norm`` over the sample's ``(N, D)`` slice with the per-channel weight
    and bias expanded over the points: the same function as GroupNorm(1), in one fused kernel
    forward and backward (~5x faster than ``var_mean`` and four elementwise passes).
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, p: Tensor) -> Tensor:
        n, d = p.shape[1:]
        return F.layer_norm(p, (n, d), self.weight.expand(n, d), self.bias.expand(n, d), self.eps)


def check_init(init: str) -> str:
    if init not in INITS:
        raise UsageError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    return init


#: activations of the blocks' point-wise MLP: GELU (the official code's) or LeakyReLU of slope
#: 0.2 (DCGAN's), which bends at 0 whatever its inputs' scale. A tightly clipped WGAN critic keeps
#: GELU's inputs near 0, where GELU is almost linear; LeakyReLU in its place did not train the
#: critic at 0.01 any better (docs/coc.md, "The WGAN version's clip bound")
ACTS = {"gelu": nn.GELU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def make_act(act: str) -> nn.Module:
    if act not in ACTS:
        raise UsageError(f"unknown act {act!r}; valid: {', '.join(ACTS)}")
    return ACTS[act]()


def official_init_(linear: nn.Linear) -> None:
    """The official code's initialisation of its linear layers: weights from a truncated normal
    of std 0.02 (timm's ``trunc_normal_``, cut at +-2 absolute), biases zero."""
    from timm.layers import trunc_normal_  # imported here: timm is slow to import and rarely needed

    trunc_normal_(linear.weight, std=0.02)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def make_drop_path(rate: float) -> nn.Module:
    """timm's ``DropPath`` (stochastic depth per sample) for ``0 < rate < 1``; the identity for 0."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise UsageError(f"drop_path must be in [0, 1), got {rate}")
    if rate == 0.0:
        return nn.Identity()
    from timm.layers import DropPath  # imported here: timm is slow to import and rarely needed

    return DropPath(rate)


class ClusterBlock(nn.Module):
    """Context Cluster block: norm, token mixer, residual with layer scale; norm, MLP, residual.

    ``init="official"`` re-initialises the MLP's two linear layers as the official ``Mlp`` does
    (:func:`official_init_`); ``"torch"`` keeps PyTorch's defaults. ``drop_path`` is the
    stochastic-depth rate of both residual branches (timm's ``DropPath``, as in the official
    block; 0 = off, the default: an identity, so outputs are unchanged). ``act`` is the MLP's
    activation: ``"gelu"`` (the official one) or ``"leaky_relu"`` (slope 0.2).
    """

    def __init__(self, dim: int, *, heads: int = 4, head_dim: int = 32, regions: int = 1, centers: int = 2,
                 mlp_r: int = 8, layer_scale: float = 1e-5, impl: str = "fused", init: str = "torch",
                 drop_path: float = 0.0, act: str = "gelu"):
        super().__init__()
        check_init(init)
        self.drop_path = make_drop_path(drop_path)
        self.norm1 = PointGroupNorm(dim)
        self.mixer = ContextCluster(dim, heads=heads, head_dim=head_dim, regions=regions, centers=centers, impl=impl)
        self.norm2 = PointGroupNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_r), make_act(act), nn.Linear(dim * mlp_r, dim))
        if init == "official":
            official_init_(self.mlp[0])
            official_init_(self.mlp[2])
        self.ls1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.ls2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, p: Tensor, h: int, w: int) -> Tensor:
        p = p + self.drop_path(self.ls1 * self.mixer(self.norm1(p), h, w))  # (B, N, D)
        # the weights are read once, outside the chunks: a parametrised weight (spectral norm) is then
        # computed, and its power iteration stepped, once per forward as in any other layer
        (fc1, act, fc2), width = self.mlp, self.mlp[0].out_features
        w1, b1, w2, b2 = fc1.weight, fc1.bias, fc2.weight, fc2.bias
        mlp = lambda x: F.linear(act(F.linear(x, w1, b1)), w2, b2)  # noqa: E731
        return p + self.drop_path(self.ls2 * rowwise(mlp, self.norm2(p), width))


class ContextClusterBlock(Block):
    """A Context Cluster block on feature maps (N, C, H, W), for insertion into conv models.

    Args:
        heads: clustering heads
        head_dim: width of each head's similarity and value spaces
        regions: the feature map is split into regions x regions (must divide H and W)
        centers: centers x centers proposed per region by adaptive average pooling (windows
            overlap when centers does not divide the region's side; may exceed it)
        mlp_r: hidden-width ratio of the point-wise MLP (channels * mlp_r)
        layer_scale: initial layer-scale of both residual branches
        init: initialisation of the MLP: "torch" (PyTorch's default) or "official" (the official
            Context Clusters code's truncated normal, std 0.02, zero biases)
        drop_path: stochastic-depth rate of both residual branches (timm's DropPath; 0 = off)
    """

    def __init__(self, *, channels: int, heads: int = 4, head_dim: int = 32, regions: int = 1, centers: int = 2,
                 mlp_r: int = 4, layer_scale: float = 1e-5, init: str = "torch", drop_path: float = 0.0):
        super().__init__()
        self.channels = channels
        self.coords = nn.Linear(channels + 2, channels)  # fold the coordinates into the features
        self.block = ClusterBlock(channels, heads=heads, head_dim=head_dim, regions=regions, centers=centers,
                                  mlp_r=mlp_r, layer_scale=layer_scale, init=init, drop_path=drop_path)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        p = self.coords(image_to_points(x))  # (B, N, C): features with coordinates folded in
        return x + points_to_image(self.block(p, h, w) - p, h, w)  # the block's update, as a residual


def cluster_map(mixer: ContextCluster, head: int = 0) -> Tensor:
    """The last recorded hard assignment as a ``(B, H, W)`` map of cluster ids
    (``region * centers + center``) for one head."""
    if mixer.last_assignment is None or mixer.last_lattice is None:
        raise RuntimeError("no recorded assignment: run the model inside recording()")
    h, w, m = mixer.last_lattice
    R = mixer.regions
    a = mixer.last_assignment[:, head]  # (B, RR, n)
    ids = a + m * torch.arange(R * R, device=a.device).view(1, R * R, 1)  # (B, RR, n)
    return unfold_regions(ids.unsqueeze(-1), h, w, R).view(-1, h, w)


@contextlib.contextmanager
def recording(*models: nn.Module | None) -> Iterator[list[ContextCluster]]:
    """Make every ContextCluster in ``models`` keep its last hard assignment, in module order."""
    mixers = [m for model in models if model is not None for m in model.modules() if isinstance(m, ContextCluster)]
    for m in mixers:
        m.record = True
    try:
        yield mixers
    finally:
        for m in mixers:
            m.record = False
            m.last_assignment = m.last_lattice = None
