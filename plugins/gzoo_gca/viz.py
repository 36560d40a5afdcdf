"""Attention heatmaps (GCA paper, Fig. 5): where each query position of an attention block looks.

One row per generated sample: the image, then for every ``gca``/``nonlocal`` block of G and of
D (D run on that image), stage by stage, and for every query position, the query's row of the
attention map ``A`` as a heatmap over the image; for ``gca`` blocks also the row of the
normalised adjacency ``D~^-1/2 (A + I) D~^-1/2`` that the graph convolution uses. Each map is
scaled to its own maximum (black = 0, yellow = the row's largest weight), enlarged to the
image by nearest-neighbour and laid over the grey image; the query's cell is outlined in cyan.
Images smaller than ``size`` (96) pixels are enlarged first.
Built with torch and torchvision only.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.errors import UsageError
from gzoo.imaging import figure_inputs

from .blocks import ATTENTION_BLOCKS, GCABlock

#: query positions as fractions (row, column) of the feature map, in the order they are used
QUERIES = ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))
#: black -> purple -> orange -> yellow
_STOPS = torch.tensor([[0.0, 0.0, 0.0], [0.45, 0.05, 0.55], [0.95, 0.45, 0.1], [1.0, 1.0, 0.3]])


def attention_blocks(model: Any) -> list[nn.Module]:
    if not isinstance(model, nn.Module):
        return []
    return [m for m in model.modules() if isinstance(m, ATTENTION_BLOCKS)]


def colormap(v: Tensor) -> Tensor:
    """Values in ``[0, 1]`` of shape ``(...)`` -> colours ``(..., 3)``."""
    t = v.clamp(0, 1) * (len(_STOPS) - 1)
    lo = t.floor().long().clamp(max=len(_STOPS) - 2)
    frac = (t - lo).unsqueeze(-1)
    return _STOPS[lo] * (1 - frac) + _STOPS[lo + 1] * frac


@contextmanager
def recording(*models: Any):
    blocks = [b for m in models for b in attention_blocks(m)]
    for b in blocks:
        b.record, b.last = True, None
    try:
        yield blocks
    finally:
        for b in blocks:
            b.record = False


def query_index(hw: tuple[int, int], q: tuple[float, float]) -> tuple[int, int]:
    h, w = hw
    return min(h - 1, int(q[0] * h)), min(w - 1, int(q[1] * w))


def heat_tile(row: Tensor, key_hw: tuple[int, int], img: Tensor, cell: tuple[float, float, float, float]) -> Tensor:
    """One map: ``row`` ``(N')`` over the ``key_hw`` grid, laid over ``img`` ``(3, S, S)``, with the
    query's cell ``(top, left, height, width)`` (fractions of the side) outlined. ``(3, S, S)``."""
    size = img.shape[-1]
    m = row.float().view(1, 1, *key_hw)
    m = m / m.max().clamp_min(1e-12)
    m = F.interpolate(m, size=(size, size), mode="nearest")[0, 0]  # (S, S)
    grey = img.mean(0, keepdim=True).expand(3, -1, -1)
    tile = 0.35 * grey + 0.65 * colormap(m).permute(2, 0, 1)
    top, left = int(cell[0] * size), int(cell[1] * size)
    bottom, right = min(size, int(round((cell[0] + cell[2]) * size))), min(size, int(round((cell[1] + cell[3]) * size)))
    cyan = torch.tensor([0.0, 1.0, 1.0])[:, None]
    tile[:, top, left:right] = cyan
    tile[:, bottom - 1, left:right] = cyan
    tile[:, top:bottom, left] = cyan
    tile[:, top:bottom, right - 1] = cyan
    return tile


@torch.no_grad()
def attention_figure(G: Any, D: Any, n: int = 4, queries: int = 3, seed: int = 0, size: int = 96) -> tuple[Tensor, int]:
    """``(tiles, per_row)``: ``n`` rows of ``(3, S, S)`` tiles (image, then the maps)."""
    if not 1 <= queries <= len(QUERIES):
        raise UsageError(f"attention: queries must be 1..{len(QUERIES)}, got {queries}")
    D = D if attention_blocks(D) else None
    z, y = figure_inputs(G, D, n, seed)  # (n, latent_dim), labels 0, 1, ... when conditional
    with recording(G, D) as blocks:
        x = G(z, y)  # (n, C, S, S)
        if D is not None:
            D(x, y)
    img = ((x.float().cpu().clamp(-1, 1) + 1) / 2)
    img = img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img[:, :3]
    if size > img.shape[-1]:  # enlarge small images so that the maps stay readable
        img = F.interpolate(img, size=(size, size), mode="nearest")
    rows = []
    for s in range(n):
        tiles = [img[s]]
        for b in blocks:
            if b.last is None:
                continue
            kinds = ("A", "adjacency") if isinstance(b, GCABlock) else ("A",)
            for q in QUERIES[:queries]:
                (h, w), (qi, qj) = b.last["hw"], query_index(b.last["hw"], q)
                cell = (qi / h, qj / w, 1 / h, 1 / w)  # the query's cell on the image
                idx = qi * w + qj
                for kind in kinds:
                    mat = b.last[kind]  # (n, N, N') or (n, N, N)
                    tiles.append(heat_tile(mat[s, idx].cpu(), b.last["key_hw"], img[s], cell))
        rows.append(torch.stack(tiles))
    return torch.cat(rows), rows[0].shape[0]


def attention(*, run: Any, out: Path, n: int = 4, queries: int = 3, seed: int = 0, size: int = 96) -> list[Path]:
    """Heatmaps of the attention rows of every gca/nonlocal block in G and D (GCA paper, Fig. 5).

    Args:
        n: generated samples, one row each (a conditional G gets labels 0, 1, ...)
        queries: query positions per block (1-5: centre, then the four quarter points)
        seed: seed of the samples' latent codes
        size: smaller images are enlarged to this side (nearest-neighbour) so the maps stay readable
    """
    from torchvision.utils import save_image

    G = run.G_ema if getattr(run, "G_ema", None) is not None else run.G
    D = getattr(run, "D", None)
    if not attention_blocks(G) and not attention_blocks(D):
        raise UsageError("the attention visualizer needs a gca or nonlocal block in G or D "
                         "(--gen sagan, or --gen-opt insert=gca@8)")
    modes = [(m, m.training) for m in (G, D) if isinstance(m, nn.Module)]
    try:
        for m, _ in modes:
            m.eval()
        tiles, per_row = attention_figure(G, D, n=n, queries=queries, seed=seed, size=size)
    finally:
        for m, was in modes:
            m.train(was)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(tiles, str(out), nrow=per_row, padding=2, pad_value=1.0)
    return [out]
