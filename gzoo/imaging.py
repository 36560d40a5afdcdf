"""Pictures of samples: image grids and 2-D scatter plots, with torchvision only."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor


def save_grid(images: Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save ``(N, C, H, W)`` images in [-1, 1] as one PNG grid."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
    save_image(images.float().clamp(-1, 1) * 0.5 + 0.5, str(path), nrow=nrow, padding=2, pad_value=1.0)
    return path


def scatter_image(points: Tensor, real: Tensor | None = None, size: int = 256, lim: float | None = None) -> Tensor:
    """Rasterise 2-D points into a ``(3, size, size)`` image in [0, 1]: real grey, fake red."""
    pts = [p.float() for p in (real, points) if p is not None]
    if lim is None:
        lim = max(float(torch.cat(pts).abs().max()) * 1.1, 1e-3)
    img = torch.ones(3, size, size)
    for p, colour in ((real, (0.6, 0.6, 0.6)), (points, (0.85, 0.1, 0.1))):
        if p is None:
            continue
        ij = ((p.float().clamp(-lim, lim) / lim + 1) / 2 * (size - 1)).round().long()
        col, row = ij[:, 0], (size - 1) - ij[:, 1]
        for c in range(3):
            img[c, row, col] = colour[c]
    return img


def save_scatter(points: Tensor, path: Path, real: Tensor | None = None) -> Path:
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(scatter_image(points, real), str(path))
    return path


def save_samples(samples: Tensor, path: Path, real: Tensor | None = None) -> Path:
    """A grid for images, a scatter plot for 2-D points."""
    if samples.dim() == 4:
        return save_grid(samples, path)
    if samples.dim() == 2 and samples.shape[1] == 2:
        return save_scatter(samples, path, real)
    raise ValueError(f"cannot draw samples of shape {tuple(samples.shape)}")
