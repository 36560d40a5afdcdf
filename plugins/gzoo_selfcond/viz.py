"""``gzoo viz --run DIR --clusters``: what each self-conditioning cluster holds.

* **Images** -- one row per cluster (the largest first, at most ``clusters`` rows): ``n``
  generated samples conditioned on the cluster, a blank tile, then up to ``n`` real images
  of the clustered subset that the cluster holds (blank tiles when it holds fewer).
* **2-D points** -- two square panels side by side, each point coloured by its cluster:
  left the real subset under the current partition, right ``points`` generated samples
  (labels drawn like in training, in proportion to the cluster sizes), drawn on the same
  axes. Rasterised with torch; no plotting library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gzoo.errors import UsageError
from gzoo.imaging import draw_points, palette
from gzoo.run import generate


def scatter_by_label(points: Tensor, labels: Tensor, colours: Tensor, *, lim: float, size: int = 320,
                     dot: int = 2) -> Tensor:
    """Rasterise ``(N, 2)`` points into a ``(3, size, size)`` white image, point ``i`` drawn as a
    ``dot x dot`` square of colour ``colours[labels[i]]``; the square ``[-lim, lim]^2`` fills it."""
    return draw_points(torch.ones(3, size, size), points, colours[labels.long()].T, lim=lim, dot=dot)


def _generator(run: Any) -> Any:
    return run.G_ema if getattr(run, "G_ema", None) is not None else run.G


def _image_rows(run: Any, cond: Any, n: int, clusters: int, seed: int) -> tuple[Tensor, int]:
    G = _generator(run)
    order = torch.argsort(cond.sizes, descending=True)[:clusters]
    rows = []
    for c in order.tolist():
        fake = generate(G, n, y=torch.full((n,), c, dtype=torch.long), seed=seed + c)  # (n, C, H, W)
        members = cond.subset[cond.labels == c][:n]
        real = cond.dataset.get_batch(members)[0] if len(members) else torch.empty(0, *fake.shape[1:])
        pad = torch.ones(n - len(real) + 1, *fake.shape[1:])  # a blank separator (and filler)
        rows.append(torch.cat([fake, pad[:1], real.float(), pad[1:]]))  # (2n + 1, C, H, W)
    return torch.cat(rows), 2 * n + 1


def _scatter_panels(run: Any, cond: Any, points: int, seed: int) -> Tensor:
    real, _ = cond.dataset.get_batch(cond.subset)  # (S, 2)
    g = torch.Generator().manual_seed(seed)
    y = cond.fake_labels(points, generator=g)
    fake = generate(_generator(run), points, y=y, seed=seed)  # (points, 2)
    lim = max(float(real.abs().max()), 1e-3) * 1.15
    colours = palette(cond.k)
    left = scatter_by_label(real, cond.labels, colours, lim=lim)
    right = scatter_by_label(fake, y, colours, lim=lim)
    return torch.stack([left, right])  # (2, 3, size, size)


def selfcond_clusters(*, run: Any, out: Path, n: int = 8, clusters: int = 10, points: int = 2500,
                      seed: int = 0) -> list[Path]:
    """Generated and real samples of each self-conditioning cluster: image rows, or 2-D scatters.

    Args:
        n: images: generated samples per row, then up to as many real ones (>= 1)
        clusters: images: rows, one per cluster, the largest clusters first (>= 1)
        points: 2-D data: generated points in the right panel (>= 1)
        seed: seed of the generated samples (a cluster's image row: seed + its index)
    """
    from torchvision.utils import save_image

    from .clustering import SelfConditioner

    cond = run.cond
    if not isinstance(cond, SelfConditioner) or cond.labels is None:
        raise UsageError("the selfcond-clusters visualizer needs a run trained with --cond selfcond")
    if n < 1 or clusters < 1 or points < 1:
        raise UsageError("selfcond-clusters needs n, clusters and points >= 1")
    shape = tuple(run.image_shape)
    if len(shape) == 3:
        tiles, nrow = _image_rows(run, cond, n, clusters, seed)
        tiles = tiles.clamp(-1, 1) * 0.5 + 0.5
    elif shape == (2,):
        tiles, nrow = _scatter_panels(run, cond, points, seed), 2
    else:
        raise UsageError(f"selfcond-clusters draws images (C, H, W) or 2-D points, not data of shape {shape}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(tiles, str(out), nrow=nrow, padding=2, pad_value=1.0 if len(shape) == 3 else 0.5)
    return [out]
