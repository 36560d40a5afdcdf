"""Images as sets of points, and the Point Reducer / Point Increaser.

A point set is ``(B, N, D)`` features on an ``H x W`` lattice stored row-major (``N = H*W``);
the lattice is what regions, center proposals and the reducer/increaser use to find
neighbours. Per-point transforms are ``nn.Linear`` over the last dimension.

Coordinates follow Context Clusters: pixel ``(i, j)`` of a ``w x h`` image sits at
``[i/w - 0.5, j/h - 0.5]`` and is concatenated to its colour, so an RGB image becomes
points of 5 values and a grayscale one of 3.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gzoo.errors import UsageError


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


class PointReducer(nn.Module):
    """Downsample a lattice of points by ``r`` (CoC's Point Reducer).

    Anchors sit at the centres of the ``r x r`` cells of the lattice; each anchor gathers its
    ``r*r`` nearest points (its cell), concatenates them along the channels and fuses them
    with one linear layer ``r*r*D_in -> D_out``. ``r = 1`` is a per-point linear layer.
    """

    def __init__(self, dim_in: int, dim_out: int, r: int):
        super().__init__()
        self.r = r
        self.fc = nn.Linear(dim_in * r * r, dim_out)

    def forward(self, p: Tensor, h: int, w: int) -> tuple[Tensor, int, int]:
        r, b, d = self.r, p.shape[0], p.shape[2]
        if h % r or w % r:
            raise UsageError(f"point reducer rate {r} does not divide the {h}x{w} lattice")
        # (B, h, w, D) -> (B, h/r, r, w/r, r, D) -> (B, h/r, w/r, r, r, D) -> (B, N/r^2, r*r*D)
        cells = p.view(b, h // r, r, w // r, r, d).permute(0, 1, 3, 2, 4, 5).reshape(b, (h // r) * (w // r), r * r * d)
        return self.fc(cells), h // r, w // r


class PointIncreaser(nn.Module):
    """Upsample a lattice of points by ``r`` (CoC-GAN §3.2): the inverse of the reducer.

    Our reading of "distinct input channels are transformed in a piecemeal manner via a linear
    layer": one linear layer maps each point's ``D_in`` channels to ``r*r*D_out`` values, which
    are cut piecewise into ``r*r`` chunks of ``D_out`` channels; chunk ``k`` becomes the new
    point at offset ``(k // r, k % r)`` of the point's ``r x r`` cell, so every new point has
    its own slice of the weights. Each new point also gets its new coordinates
    ``[i/w - 0.5, j/h - 0.5]``, concatenated and fused by a linear layer (``coords=True``:
    ``+ W_pos [x, y]``), as the image's points carry theirs. ``W_pos`` starts at zero: a
    random coordinate term would swamp the latent signal at initialisation (every sample
    the same pattern).
    """

    def __init__(self, dim_in: int, dim_out: int, r: int, coords: bool = True):
        super().__init__()
        self.r, self.dim_out = r, dim_out
        self.fc = nn.Linear(dim_in, r * r * dim_out)
        self.pos = nn.Linear(2, dim_out, bias=False) if coords else None
        if self.pos is not None:  # start as a function of the parent point only; positions are learnt
            nn.init.zeros_(self.pos.weight)

    def forward(self, p: Tensor, h: int, w: int) -> tuple[Tensor, int, int]:
        r, b, d = self.r, p.shape[0], self.dim_out
        x = self.fc(p).view(b, h, w, r, r, d)  # (B, h, w, r, r, D_out)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, h * r * w * r, d)  # (B, hr*wr, D_out) cells on the lattice
        if self.pos is not None:
            x = x + self.pos(coordinates(h * r, w * r, p.device).to(x.dtype))  # new coordinates
        return x, h * r, w * r
