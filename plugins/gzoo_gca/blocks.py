"""Attention blocks for feature maps: the Graph Convolutional Architecture (``gca``, Peng et al.,
ICANN 2021, §3) and SAGAN's non-local self-attention (``nonlocal``, Zhang et al. 2019).

Both are :class:`~gzoo.interfaces.Block` s: shape-preserving ``(B, C, H, W) -> (B, C, H, W)``
(``B`` the batch, ``N = H * W`` the number of positions, i.e. graph nodes), residual with a
learnable scale initialised to 0, so a freshly inserted block is exactly the identity.

Both can record their attention for the ``attention`` visualizer: set ``block.record = True``
and the next forward stores ``block.last`` (detached tensors, see each class).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.errors import UsageError
from gzoo.interfaces import Block


def _conv1x1(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=bias)


def gcn_adjacency(A: Tensor) -> Tensor:
    """Eq. 2's normalised adjacency ``D~^-1/2 (A + I) D~^-1/2`` with ``D~_ii = sum_j (A + I)_ij``
    (degrees from the row sums, as the paper writes them). ``A``: ``(B, N, N)`` -> ``(B, N, N)``.

    For a row-softmax ``A`` every row of ``A + I`` sums to 2, so ``D~ = 2 I`` and the result is
    ``(A + I) / 2``: row-stochastic, not symmetric (``A`` is not). With a binarised ``A`` the
    degrees differ from node to node and the two-sided scaling matters.
    """
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    a_tilde = A + eye  # (B, N, N)
    d = a_tilde.sum(-1).rsqrt()  # (B, N): D~^-1/2 as a vector
    return d.unsqueeze(-1) * a_tilde * d.unsqueeze(-2)


def binarize_adjacency(A: Tensor, threshold: float) -> Tensor:
    """``1[A_ij >= threshold / N]`` (``threshold`` relative to the uniform weight ``1/N``), with the
    straight-through gradient of ``A`` so that ``f`` and ``g`` still learn. ``(B, N, N)``."""
    return _StraightThrough.apply(A, threshold / A.shape[-1])


class _StraightThrough(torch.autograd.Function):
    """Forward: exact 0/1 edges; backward: the gradient of ``A`` passes unchanged."""

    @staticmethod
    def forward(ctx: Any, A: Tensor, cut: float) -> Tensor:
        return (A >= cut).to(A.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class GCABlock(Block):
    """GCA (Peng et al. 2021, §3): graph convolution on a pixel graph built by self-attention.

    A pixel-level graph from self-attention, a graph convolution on it, added back to the input.

    Shapes (``B`` batch, ``C`` channels, ``N = H * W`` nodes, ``c = max(1, C // k)``)::

        x                      (B, C, H, W)    input feature map
        f(x), g(x)             (B, c, N)       1x1 convs W_f, W_g: C -> c
        r = f(x)^T g(x)        (B, N, N)       r[i, j] = f(x_i) . g(x_j)
        A = softmax            (B, N, N)       A[j, i] = exp r[i, j] / sum_i exp r[i, j]  (eq. 1)
                                               row j (query j) sums to 1 over the keys i
        A (binarize > 0)       (B, N, N)       1[A >= binarize / N], straight-through gradient
        A_hat                  (B, N, N)       D~^-1/2 (A + I) D~^-1/2, D~_ii = sum_j (A + I)_ij
        J = W_j x              (B, N, c)       node features, 1x1 conv C -> c
        Y = A_hat J Theta      (B, N, c)       eq. 2; Theta a (c, c) matrix per GCN layer,
                                               ReLU between layers (layers > 1)
        Z = W_m Y              (B, C, H, W)    eq. 3, 1x1 conv c -> C on Y laid out as (B, c, H, W)
        p = W_v Z              (B, C, H, W)    eq. 4, 1x1 conv C -> C
        o = alpha p + x        (B, C, H, W)    eq. 5, alpha a scalar initialised to 0

    The paper's own shapes do not fit together (``J`` and ``Theta`` in ``R^{NxN}``, ``W_j`` in
    ``R^{c x 1}``, ``M = W_j x``); this is the reading gzoo takes (docs/gca.md): ``Theta`` lives in
    channel space, so the block works at any resolution and adds ``layers * c^2`` parameters
    (an ``N x N`` Theta would tie it to one feature-map size and cost ``N^2``: 4,096 at 8x8,
    1M at 32x32). ``M`` is read as the projection ``W_m`` (the paper lists ``W_m`` but writes
    ``M = W_j x``), taking the ``c`` graph channels back to ``C``; ``W_m`` and ``W_v`` have no
    nonlinearity between them, as in eqs. 3-4. Softmax rows make every degree 2, so the
    normalisation is ``(A + I) / 2`` unless ``binarize`` is on.

    Memory: ``A_hat`` is never built (``A_hat y = d * (A (d * y) + d * y)``, ``d = D~^-1/2``), so
    one ``N x N`` map per sample (``A``) is kept for backward, with the scores ``r`` passing
    through: ``4 N^2`` bytes in float32, 16 KB per sample at 8x8, 256 KB at 16x16, 4 MB at
    32x32, 64 MB at 64x64. Up to 32x32 is affordable (batch 64: about 0.5 GB for ``r`` and
    ``A``); at 64x64 a batch of 64 needs about 8 GB for them alone, and time grows as ``N^2``.

    Args:
        k: channel reduction: f, g and the node features J have C // k channels (the paper
            allows 1, 2, 4, 8 and uses 8)
        layers: graph-convolution layers sharing the adjacency (eq. 2 is one layer)
        binarize: 0 = off (the weighted adjacency); t > 0 keeps the edges with A_ij >= t / N
            (t = 1: the edges above the uniform weight) as 1s, the rest 0 (the paper's dotted box)
        bias: biases in the 1x1 convolutions (the paper's equations have none)
    """

    def __init__(self, *, channels: int, k: int = 8, layers: int = 1, binarize: float = 0.0, bias: bool = False):
        super().__init__()
        if k < 1:
            raise UsageError(f"gca: k must be >= 1, got {k}")
        if layers < 1:
            raise UsageError(f"gca: layers must be >= 1, got {layers}")
        if binarize < 0:
            raise UsageError(f"gca: binarize must be >= 0 (0 = off), got {binarize}")
        self.channels = channels
        self.k, self.binarize = k, float(binarize)
        c = max(1, channels // k)
        self.hidden = c
        self.f = _conv1x1(channels, c, bias)
        self.g = _conv1x1(channels, c, bias)
        self.j = _conv1x1(channels, c, bias)
        self.theta = nn.ModuleList(nn.Linear(c, c, bias=False) for _ in range(layers))
        self.m = _conv1x1(c, channels, bias)
        self.v = _conv1x1(channels, channels, bias)
        self.alpha = nn.Parameter(torch.zeros(()))
        self.record = False
        self.last: dict[str, Any] | None = None

    def attention(self, x: Tensor) -> Tensor:
        """``A`` of eq. 1 (before binarisation): ``(B, N, N)``, row ``j`` = query ``j``."""
        f = self.f(x).flatten(2)  # (B, c, N)
        g = self.g(x).flatten(2)  # (B, c, N)
        return torch.softmax(torch.bmm(g.transpose(1, 2), f), dim=-1)  # [b, j, i] = softmax_i f_i.g_j

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        A = self.attention(x)  # (B, N, N)
        if self.binarize > 0:
            A = binarize_adjacency(A, self.binarize)
        # A_hat y = d * (A (d * y) + d * y), d = D~^-1/2 from the row sums of A + I: the same as
        # gcn_adjacency(A) @ y without building A + I or A_hat (only A is kept for backward)
        d = (A.sum(-1, keepdim=True) + 1).rsqrt()  # (B, N, 1)
        y = self.j(x).flatten(2).transpose(1, 2)  # J: (B, N, c)
        for i, theta in enumerate(self.theta):
            if i:
                y = F.relu(y)
            y = d * theta(y)  # D~^-1/2 (J Theta): (B, N, c)
            y = d * (torch.bmm(A, y) + y)  # A_hat J Theta: (B, N, c)
        z = self.m(y.transpose(1, 2).reshape(b, self.hidden, h, w))  # (B, C, H, W)
        if self.record:
            self.last = {"A": A.detach(), "adjacency": gcn_adjacency(A.detach()), "hw": (h, w), "key_hw": (h, w)}
        return self.alpha * self.v(z) + x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, k={self.k}, layers={len(self.theta)}, binarize={self.binarize}"


class NonLocalBlock(Block):
    """SAGAN's self-attention block (Zhang et al. 2019; the layout of the SAGAN and BigGAN code).

    Shapes (``B`` batch, ``N = H * W``, ``N' = ceil(H/2) * ceil(W/2)`` with ``pool``)::

        x                          (B, C, H, W)
        theta(x)                   (B, C/8, N)      queries, 1x1 conv
        phi(x), max-pool 2x2       (B, C/8, N')     keys
        g(x),   max-pool 2x2       (B, C/2, N')     values
        A = softmax(theta^T phi)   (B, N, N')       row = one query position, sums to 1
        o = W_o (g A^T)            (B, C, H, W)     1x1 conv C/2 -> C
        out = gamma o + x          (B, C, H, W)     gamma a scalar initialised to 0

    Odd sides are pooled with ``ceil_mode`` (a 7x7 map has 4x4 keys). ``A`` holds ``B * N * N'``
    numbers (``N^2 / 4`` per sample with pooling).

    Args:
        pool: 2x2 max-pool the keys and values (SAGAN/BigGAN); false attends to all N positions
        reduction: queries and keys have C // reduction channels (8 in SAGAN), values C // 2
    """

    def __init__(self, *, channels: int, pool: bool = True, reduction: int = 8):
        super().__init__()
        if reduction < 1:
            raise UsageError(f"nonlocal: reduction must be >= 1, got {reduction}")
        self.channels = channels
        self.pool = bool(pool)
        ck, cv = max(1, channels // reduction), max(1, channels // 2)
        self.cv = cv
        self.theta = _conv1x1(channels, ck)
        self.phi = _conv1x1(channels, ck)
        self.g = _conv1x1(channels, cv)
        self.o = _conv1x1(cv, channels)
        self.gamma = nn.Parameter(torch.zeros(()))
        self.record = False
        self.last: dict[str, Any] | None = None

    def _keys(self, t: Tensor) -> Tensor:
        return F.max_pool2d(t, 2, 2, ceil_mode=True) if self.pool else t

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q = self.theta(x).flatten(2)  # (B, C/8, N)
        k = self._keys(self.phi(x))  # (B, C/8, h', w')
        kh, kw = k.shape[-2:]
        v = self._keys(self.g(x)).flatten(2)  # (B, C/2, N')
        A = torch.softmax(torch.bmm(q.transpose(1, 2), k.flatten(2)), dim=-1)  # (B, N, N')
        o = torch.bmm(v, A.transpose(1, 2)).view(b, self.cv, h, w)  # (B, C/2, H, W)
        if self.record:
            self.last = {"A": A.detach(), "hw": (h, w), "key_hw": (kh, kw)}
        return self.gamma * self.o(o) + x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, pool={self.pool}"


ATTENTION_BLOCKS = (GCABlock, NonLocalBlock)
