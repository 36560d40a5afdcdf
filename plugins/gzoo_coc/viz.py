"""Cluster maps (CoC-GAN §4.5, Fig. 5): the hard assignment of every Context Cluster block.

One row per sample: the generated image, then one map per Context Cluster block of G
(stage by stage) and of D (when D is ``coc``), each cluster a colour (head 0; the map is
enlarged to the image size by nearest-neighbour).
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gzoo.errors import UsageError

from .cluster import ContextCluster, cluster_map, recording


def palette(k: int) -> Tensor:
    """``k`` distinct colours ``(k, 3)`` in [0, 1] (golden-ratio hues)."""
    cols = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95) for i in range(k)]
    return torch.tensor(cols, dtype=torch.float32)


def _has_mixers(model: Any) -> bool:
    return model is not None and any(isinstance(m, ContextCluster) for m in model.modules())


@torch.no_grad()
def cluster_figure(G: Any, D: Any, n: int = 4, seed: int = 0) -> Tensor:
    """``(n * (1 + blocks), 3, S, S)`` tiles: image, then cluster maps."""
    D = D if _has_mixers(D) else None
    G.eval()
    if D is not None:
        D.eval()
    g = torch.Generator().manual_seed(seed)
    z = G.sample_latent(n, generator=g)
    y = torch.arange(n, device=z.device) % G.num_classes if G.num_classes else None
    with recording(G, D) as mixers:
        x = G(z, y)
        if D is not None:
            D(x, y)
        maps = [cluster_map(m, n).cpu() for m in mixers]
    size = x.shape[-1]
    img = (x.float().cpu().clamp(-1, 1) + 1) / 2
    img = img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img[:, :3]
    tiles = [img]
    for ids in maps:
        pal = palette(int(ids.max()) + 1)
        col = pal[ids].permute(0, 3, 1, 2)  # (n, 3, h, w)
        tiles.append(F.interpolate(col, size=(size, size), mode="nearest"))
    return torch.stack(tiles, 1).flatten(0, 1)  # row-major: sample by sample


def clusters(*, run: Any, out: Path, n: int = 4, seed: int = 0) -> list[Path]:
    """Cluster maps of every Context Cluster block of G and D, next to the generated images."""
    from torchvision.utils import save_image

    G = run.G_ema if getattr(run, "G_ema", None) is not None else run.G
    if not _has_mixers(G) and not _has_mixers(run.D):
        raise UsageError("the clusters visualizer needs Context Cluster blocks in G or D (cocgan / coc)")
    if not _has_mixers(G):
        raise UsageError("the clusters visualizer draws generated samples, so G must be cocgan")
    was_g, was_d = G.training, run.D.training
    try:
        tiles = cluster_figure(G, run.D, n=n, seed=seed)
    finally:
        G.train(was_g)
        run.D.train(was_d)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(tiles, str(out), nrow=tiles.shape[0] // n, padding=2, pad_value=1.0)
    return [out]
