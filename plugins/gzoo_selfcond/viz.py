"""``gzoo viz --run DIR --clusters``: per-cluster grids of a self-conditioned run.

One row per cluster (the largest first, at most ``clusters`` rows): ``n`` generated samples
conditioned on the cluster, a blank tile, then ``n`` real images of the subset that the
cluster holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gzoo.errors import UsageError
from gzoo.run import generate


def selfcond_clusters(*, run: Any, out: Path, n: int = 8, clusters: int = 10, seed: int = 0) -> list[Path]:
    """Generated and real samples of each self-conditioning cluster, one row per cluster."""
    from torchvision.utils import save_image

    from .clustering import SelfConditioner

    cond = run.cond
    if not isinstance(cond, SelfConditioner) or cond.labels is None:
        raise UsageError("the selfcond-clusters visualizer needs a run trained with --cond selfcond")
    if len(run.image_shape) != 3:
        raise UsageError("selfcond-clusters draws image grids; for 2-D data use `gzoo sample --out points.png`")
    G = run.G_ema if getattr(run, "G_ema", None) is not None else run.G
    order = torch.argsort(cond.sizes, descending=True)[:clusters]
    rows = []
    for c in order.tolist():
        fake = generate(G, n, y=torch.full((n,), c, dtype=torch.long), seed=seed + c)
        members = cond.subset[cond.labels == c][:n]
        real = run.data.get_batch(members)[0] if len(members) else torch.empty(0, *fake.shape[1:])
        pad = torch.ones(n - len(real) + 1, *fake.shape[1:])  # a blank separator (and filler)
        rows.append(torch.cat([fake, pad[:1], real, pad[1:]]))
    tiles = torch.cat(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(tiles.clamp(-1, 1) * 0.5 + 0.5, str(out), nrow=2 * n + 1, padding=2, pad_value=1.0)
    return [out]
