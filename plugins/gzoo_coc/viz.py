"""Cluster maps (CoC-GAN §4.5, Fig. 5): the hard assignment of every Context Cluster block.

One row per sample: the generated image, then one map per Context Cluster block of G
(stage by stage, when G has any: ``cocgan``, or a conv G with an inserted
``context-cluster`` block) and of D on that image (when D has any: ``coc``). Each cluster
is a colour (head 0; cluster ``region * centers + center``), and each map is enlarged to the
image size by nearest-neighbour. Built with torch and torchvision only (no matplotlib).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gzoo.errors import UsageError
from gzoo.imaging import figure_inputs, palette

from .cluster import ContextCluster, cluster_map, recording


def has_context_clusters(model: Any) -> bool:
    return isinstance(model, torch.nn.Module) and any(isinstance(m, ContextCluster) for m in model.modules())


def colour_clusters(ids: Tensor, size: int) -> Tensor:
    """Cluster ids ``(n, h, w)`` -> colours ``(n, 3, size, size)``."""
    col = palette(int(ids.max()) + 1, saturation=0.65, values=(0.95,))[ids.cpu()].permute(0, 3, 1, 2)  # (n, 3, h, w)
    return F.interpolate(col, size=(size, size), mode="nearest")


@torch.no_grad()
def cluster_figure(G: Any, D: Any, n: int = 4, seed: int = 0) -> Tensor:
    """``(n * (1 + blocks), 3, S, S)`` tiles, sample by sample: the image, then its cluster maps."""
    D = D if has_context_clusters(D) else None
    z, y = figure_inputs(G, D, n, seed)  # (n, latent_dim), labels 0, 1, ... when conditional
    with recording(G, D) as mixers:
        x = G(z, y)  # (n, C, S, S)
        if D is not None:
            D(x, y)
        maps = [cluster_map(m) for m in mixers if m.last_assignment is not None]  # (n, h, w) each
    size = x.shape[-1]
    img = (x.float().cpu().clamp(-1, 1) + 1) / 2
    img = img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img[:, :3]
    tiles = [img] + [colour_clusters(ids, size) for ids in maps]
    return torch.stack(tiles, 1).flatten(0, 1)  # (n * (1 + blocks), 3, S, S)


def clusters(*, run: Any, out: Path, n: int = 4, seed: int = 0) -> list[Path]:
    """Cluster maps of every Context Cluster block of G and D, next to the generated images.

    Args:
        n: number of generated samples, one row each (a conditional G gets labels 0, 1, ...)
        seed: seed of the samples' latent codes
    """
    from torchvision.utils import save_image

    G = run.G_ema if getattr(run, "G_ema", None) is not None else run.G
    D = getattr(run, "D", None)
    if not has_context_clusters(G) and not has_context_clusters(D):
        raise UsageError("the clusters visualizer needs Context Cluster blocks in G or D (--gen cocgan or --disc coc)")
    modes = [(m, m.training) for m in (G, D) if isinstance(m, torch.nn.Module)]
    try:
        for m, _ in modes:
            m.eval()
        tiles = cluster_figure(G, D, n=n, seed=seed)
    finally:
        for m, was in modes:
            m.train(was)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(tiles, str(out), nrow=tiles.shape[0] // n, padding=2, pad_value=1.0)
    return [out]
