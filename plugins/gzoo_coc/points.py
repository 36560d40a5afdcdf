"""Images as sets of points, and the Point Reducer / Point Increaser.

A point set is ``(B, N, D)`` features on an ``H x W`` lattice stored row-major (``N = H*W``);
the lattice is what regions, center proposals and the reducer/increaser use to find
neighbours. Per-point transforms are ``nn.Linear`` over the last dimension.

Coordinates follow the Context Clusters *paper* (and CoC-GAN): pixel ``(i, j)`` (column
``i``, row ``j``) of a ``w x h`` image sits at ``[i/w - 0.5, j/h - 0.5]`` and is
concatenated to its colour, so an RGB image becomes points of 5 values and a grayscale one
of 3. The official Context Clusters code differs: it uses ``[j/(h-1) - 0.5, i/(w-1) - 0.5]``
(row first, and spanning exactly ``[-0.5, 0.5]``); gzoo keeps the papers' form (see
docs/coc.md, "Deviations from the official Context Clusters code").

Reducers and increasers come in two kinds (``mode=``): ``"cell"`` reads or writes the
non-overlapping ``r x r`` cell of a point (a stride-``r`` convolution / transposed
convolution with kernel ``r``, written as a reshape and a linear layer), ``"overlap"``
reads overlapping neighbourhoods (the official code's 3x3 stride-2 reducer between stages,
and its transpose-style counterpart for the increaser), gathered as windows of the zero-padded
lattice (one overlapping strided view and one copy forward, the adjoint's additions backward:
:func:`neighbourhoods`) and fused by a linear layer. Neither uses a convolution module or operator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.errors import UsageError

MODES = ("cell", "overlap", "copy")  #: Point Increaser modes
REDUCER_MODES = ("cell", "overlap", "even")  #: Point Reducer modes


def coordinates(h: int, w: int, device: torch.device | None = None) -> Tensor:
    """``(h*w, 2)`` coordinates ``[i/w - 0.5, j/h - 0.5]``, row-major (i = column, j = row)."""
    j, i = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([i.flatten() / w - 0.5, j.flatten() / h - 0.5], 1).float()


def image_to_points(x: Tensor, with_coords: bool = True) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C [+ 2])``."""
    b, c, h, w = x.shape
    pts = x.flatten(2).transpose(1, 2)  # (B, N, C)
    if with_coords:
        pts = torch.cat([pts, coordinates(h, w, x.device).expand(b, -1, -1)], 2)
    return pts


def points_to_image(p: Tensor, h: int, w: int) -> Tensor:
    """``(B, H*W, D)`` -> ``(B, D, H, W)``."""
    return p.transpose(1, 2).reshape(p.shape[0], p.shape[2], h, w)


def check_mode(mode: str, what: str, valid: tuple[str, ...] = MODES) -> str:
    if mode not in valid:
        raise UsageError(f"unknown {what} {mode!r}; valid: {', '.join(valid)}")
    return mode


def overlap_window(r: int) -> int:
    """Side of the overlap reducer's window at rate ``r``: the smallest odd number above ``r``
    (3 for ``r = 1, 2``: the official 3x3 neighbourhoods), so every point is read and the
    windows of neighbouring anchors overlap."""
    return r + 1 + r % 2


def even_window(r: int) -> int:
    """Side of the even reducer's window at rate ``r``: the smallest multiple of ``r`` above
    ``r`` that can be centred on an ``r x r`` cell (``2r`` for even ``r``, ``3r`` for odd), so
    that every point is read by the same number of anchors, ``(k/r)^2``."""
    return 2 * r if r % 2 == 0 else 3 * r


class _Gather(torch.autograd.Function):
    """``(B, h*w, D)`` -> ``(B, lh*lw, k*k*D)``: every anchor's window of the zero-padded lattice.

    Forward: the windows as one overlapping ``as_strided`` view of the padded lattice, then one
    copy. Backward: the adjoint, ``k*k`` strided additions into a zero lattice (:class:`_Scatter`);
    the two are each other's adjoints, so second-order gradients (R1) are exact too. PyTorch's own
    backward of the overlapping view takes a generic path several times slower.
    """

    @staticmethod
    def forward(ctx, p: Tensor, h: int, w: int, k: int, stride: int, pad: int) -> Tensor:
        ctx.geometry = (h, w, k, stride, pad)
        return strided_view_neighbourhoods(p, h, w, k, stride, pad)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        return _Scatter.apply(grad, *ctx.geometry), None, None, None, None, None


class _Scatter(torch.autograd.Function):
    """The adjoint of :class:`_Gather`: ``(B, lh*lw, k*k*D)`` window values summed back onto the
    ``(B, h*w, D)`` lattice points they were read from."""

    @staticmethod
    def forward(ctx, g: Tensor, h: int, w: int, k: int, stride: int, pad: int) -> Tensor:
        ctx.geometry = (h, w, k, stride, pad)
        b, lh = g.shape[0], (h + 2 * pad - k) // stride + 1
        lw = (w + 2 * pad - k) // stride + 1
        d = g.shape[2] // (k * k)
        g = g.reshape(b, lh, lw, k * k, d)
        x = g.new_zeros(b, h + 2 * pad, w + 2 * pad, d)
        for dy in range(k):  # each window position's values onto the rows and columns its anchors read
            for dx in range(k):
                x[:, dy:dy + stride * (lh - 1) + 1:stride, dx:dx + stride * (lw - 1) + 1:stride] += g[:, :, :, dy * k + dx]
        return x[:, pad:pad + h, pad:pad + w].reshape(b, h * w, d)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        return _Gather.apply(grad, *ctx.geometry), None, None, None, None, None


def neighbourhoods(p: Tensor, h: int, w: int, k: int, stride: int, pad: int | None = None) -> Tensor:
    """The ``k x k`` neighbourhood of every anchor, concatenated point by point.

    Anchors sit at lattice points ``(stride*a, stride*b)``; the window is centred on the
    anchor (``k`` odd; ``pad = k // 2``) or, with ``pad = (k - stride) // 2``, on the anchor's
    ``stride x stride`` cell, and reads zeros outside the lattice. ``(B, h*w, D)`` ->
    ``(B, L, k*k*D)`` with ``L = ceil(h/stride) * ceil(w/stride)`` anchors, row-major, and the
    neighbours in row-major window order (neighbour ``(dy, dx)`` at channels
    ``((dy*k + dx)*D, ..., (dy*k + dx + 1)*D)``), like the cells of the ``"cell"`` reducer.
    """
    return _Gather.apply(p, h, w, k, stride, k // 2 if pad is None else pad)


def strided_view_neighbourhoods(p: Tensor, h: int, w: int, k: int, stride: int, pad: int | None = None) -> Tensor:
    """:func:`neighbourhoods`' values as one overlapping ``as_strided`` view of the padded lattice,
    then one copy; differentiated by autograd's generic backward of the view. :func:`neighbourhoods`
    computes it without gradients and supplies the adjoint; used with autograd, it is the reference
    for tests and the "before" rows of ``benchmarks/bench_coc_speed.py`` and ``coc_step_ablation.py``."""
    b, _, d = p.shape
    pad = k // 2 if pad is None else pad
    x = F.pad(p.reshape(b, h, w, d), (0, 0, pad, pad, pad, pad))  # (B, h+2pad, w+2pad, D): zeros outside
    lh, lw = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1  # anchors a side
    sb, sh, sw, sd = x.stride()  # the windows as one overlapping view of the padded lattice, then one copy
    x = x.as_strided((b, lh, lw, k, k, d), (sb, sh * stride, sw * stride, sh, sw, sd))  # (B, Lh, Lw, dy, dx, D)
    return x.reshape(b, lh * lw, k * k * d)  # (B, L, k*k*D)


class PointReducer(nn.Module):
    """Downsample a lattice of points by ``r`` (CoC's Point Reducer).

    ``mode="cell"``: anchors sit at the centres of the ``r x r`` cells of the lattice; each
    anchor gathers its ``r*r`` nearest points (its cell), concatenates them along the channels
    and fuses them with one linear layer ``r*r*D_in -> D_out`` (a convolution with kernel and
    stride ``r``). ``r = 1`` is a per-point linear layer.

    ``mode="overlap"``: the official code's reducer between stages ("each anchor takes its
    closest 9 neighbours into account"): anchors at every ``r``-th lattice point, each reading
    the ``k x k`` window centred on it (``k`` = :func:`overlap_window`, 3 for ``r <= 2``; zeros
    outside the lattice), concatenated point by point and fused by one linear layer
    ``k*k*D_in -> D_out``. At ``r = 2`` this is the official 3x3, stride 2, padding 1 reducer;
    at ``r = 1`` a 3x3 neighbourhood around every point. With ``k = 3`` and stride 2 the
    windows cover the lattice unevenly: every other row and column of points is read by two
    anchors, the others by one, so D's gradient with respect to its input has a period-2
    pattern on that lattice (the checkerboard of strided convolutions whose kernel the stride
    does not divide).

    ``mode="even"``: anchors at the centres of the ``r x r`` cells, each reading the
    ``k x k`` window centred on its cell (``k`` = :func:`even_window`), which for ``r = 2`` is
    the 16 points nearest to the anchor (4x4) and for ``r = 1`` its 9 nearest (3x3); every
    point away from the border is read by the same number of anchors, ``(k/r)^2`` (4 at
    ``r = 2``), as in DCGAN's kernel-4, stride-2 discriminator.
    """

    def __init__(self, dim_in: int, dim_out: int, r: int, mode: str = "cell"):
        super().__init__()
        self.r, self.mode = r, check_mode(mode, "point reducer", REDUCER_MODES)
        self.k = {"cell": r, "overlap": overlap_window(r), "even": even_window(r)}[mode]  # window side
        self.fc = nn.Linear(dim_in * self.k * self.k, dim_out)

    def extra_repr(self) -> str:
        return f"r={self.r}, mode={self.mode}, window={self.k}"

    def forward(self, p: Tensor, h: int, w: int) -> tuple[Tensor, int, int]:
        r, b, d = self.r, p.shape[0], p.shape[2]
        if h % r or w % r:
            raise UsageError(f"point reducer rate {r} does not divide the {h}x{w} lattice")
        if self.mode == "overlap":
            return self.fc(neighbourhoods(p, h, w, self.k, r)), h // r, w // r
        if self.mode == "even":
            return self.fc(neighbourhoods(p, h, w, self.k, r, pad=(self.k - r) // 2)), h // r, w // r
        # (B, h, w, D) -> (B, h/r, r, w/r, r, D) -> (B, h/r, w/r, r, r, D) -> (B, N/r^2, r*r*D)
        cells = p.view(b, h // r, r, w // r, r, d).permute(0, 1, 3, 2, 4, 5).reshape(b, (h // r) * (w // r), r * r * d)
        return self.fc(cells), h // r, w // r


class PointIncreaser(nn.Module):
    """Upsample a lattice of points by ``r`` (CoC-GAN §3.2): the inverse of the reducer.

    Our reading of "distinct input channels are transformed in a piecemeal manner via a linear
    layer": one linear layer maps each point's input to ``r*r*D_out`` values, which are cut
    piecewise into ``r*r`` chunks of ``D_out`` channels; chunk ``k`` becomes the new point at
    offset ``(k // r, k % r)`` of the point's ``r x r`` cell, so every new point has its own
    slice of the weights. The input of the linear layer is

    * ``mode="cell"``: the parent point alone (``D_in`` channels): each ``r x r`` cell is a
      linear function of one point, a transposed convolution with kernel and stride ``r``;
    * ``mode="overlap"``: the parent's ``3 x 3`` neighbourhood of points, concatenated
      (``9*D_in`` channels, zeros outside the lattice), so neighbouring cells share inputs
      and their seams are learnt: a transposed convolution with kernel ``3r``, stride ``r``
      and padding ``r``, written as a gather (:func:`neighbourhoods`) and a linear layer.

    ``mode="copy"`` (gzoo's addition) gives no new point its own weights: every new point first
    takes a copy of its parent's features (the nearest point of the coarse lattice), then one
    linear layer ``9*D_in -> D_out``, the same for every new point, fuses the ``3 x 3``
    neighbourhood of copies around it on the fine lattice (zeros outside). This is the point-set
    form of resize-then-convolve upsampling (nearest resize, a 3x3 convolution): the
    neighbours of a new point differ only by where the cell boundaries fall, so there is no
    per-offset weight slice to leave an ``r``-periodic pattern in the samples. It costs the
    ``"overlap"`` increaser's FLOPs (``9*D_in*D_out`` per new point). A ``single`` increaser
    (one input point) has no neighbours to copy from and keeps the per-offset slices of ``"overlap"``.
    Not ``cocgan``'s default: on Fashion-MNIST's WGAN benchmark it trails ``"overlap"``; with the
    non-saturating loss it leads on two seeds and not over four (docs/coc.md).

    Each new point also gets its new coordinates ``[i/w - 0.5, j/h - 0.5]``, concatenated and
    fused by a linear layer (``coords=True``: ``+ W_pos [x, y]``), as the image's points carry
    theirs. ``W_pos`` starts at zero: a random coordinate term would swamp the latent signal at
    initialisation (every sample the same pattern).

    ``single=True`` declares that the input is always one point (a 1x1 lattice, e.g. the
    generator's stem): its 3x3 neighbourhood is then the point and eight zeros, so in
    ``"overlap"`` mode only the centre slice of the linear layer ever acts, and only that slice
    is stored (``D_in`` inputs), cut from the full ``9*D_in``-input layer as PyTorch initialised
    it: the same function, and for the same seed the same initial weights.
    """

    def __init__(self, dim_in: int, dim_out: int, r: int, coords: bool = True, mode: str = "cell",
                 single: bool = False):
        super().__init__()
        self.r, self.dim_out, self.mode = r, dim_out, check_mode(mode, "point increaser")
        self.k = 1 if mode == "cell" else 3  # parents a side that each new point reads
        self.single = single
        self.copy = mode == "copy" and not single  # one weight for every new point (see above)
        self.fc = nn.Linear(dim_in * self.k * self.k, dim_out if self.copy else r * r * dim_out)
        if single and self.k > 1:  # a lone point's neighbours are zeros: keep only the centre slice
            centre = (self.k * self.k // 2) * dim_in  # neighbour (1, 1) of the row-major window
            full, self.fc = self.fc, nn.Linear(dim_in, r * r * dim_out, device="meta")  # meta: no second init
            self.fc.weight = nn.Parameter(full.weight.detach()[:, centre:centre + dim_in].clone())
            self.fc.bias = nn.Parameter(full.bias.detach().clone())
        self.pos = nn.Linear(2, dim_out, bias=False) if coords else None
        if self.pos is not None:  # start as a function of the parent point only; positions are learnt
            nn.init.zeros_(self.pos.weight)

    def extra_repr(self) -> str:
        parents = f"copies={self.k}x{self.k}" if self.copy else f"parents={self.k}x{self.k}"
        return f"r={self.r}, mode={self.mode}, {parents}" + (", single point" if self.single else "")

    def forward(self, p: Tensor, h: int, w: int) -> tuple[Tensor, int, int]:
        r, b, d = self.r, p.shape[0], self.dim_out
        if self.single and (h, w) != (1, 1):
            raise UsageError(f"this point increaser reads one point (single=True), got a {h}x{w} lattice")
        if self.copy:  # every new point a copy of its parent, then the 3x3 neighbourhoods of the copies
            near = p.view(b, h, 1, w, 1, -1).expand(-1, -1, r, -1, r, -1).reshape(b, h * r * w * r, -1)
            x = self.fc(neighbourhoods(near, h * r, w * r, self.k, 1))  # (B, hr*wr, D_out)
        else:
            src = p if self.mode == "cell" or self.single else neighbourhoods(p, h, w, self.k, 1)  # (B, h*w, k*k*D_in)
            x = self.fc(src).view(b, h, w, r, r, d)  # (B, h, w, r, r, D_out)
            x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, h * r * w * r, d)  # (B, hr*wr, D_out) cells on the lattice
        if self.pos is not None:
            x = x + self.pos(coordinates(h * r, w * r, p.device).to(x.dtype))  # new coordinates
        return x, h * r, w * r
