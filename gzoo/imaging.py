"""Pictures of samples: image grids and 2-D scatter plots, with torchvision only."""

from __future__ import annotations

import colorsys
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


def figure_inputs(G: torch.nn.Module, D: torch.nn.Module | None, n: int, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """Latents ``(n, latent_dim)`` and labels for a visualizer's ``n`` samples, reproducible from
    ``seed``: classes ``0, 1, ...`` in turn when G (or else D) is conditional, otherwise None."""
    z = G.sample_latent(n, generator=torch.Generator().manual_seed(seed))  # (n, latent_dim)
    k = getattr(G, "num_classes", 0) or (getattr(D, "num_classes", 0) if D is not None else 0)
    y = torch.arange(n, device=z.device) % k if k else None
    return z, y


def palette(k: int, *, saturation: float = 0.8, values: tuple[float, ...] = (0.65, 0.9)) -> Tensor:
    """``k`` distinct colours ``(k, 3)`` in [0, 1]: golden-ratio hues, brightness cycling
    through ``values`` (two levels tell neighbouring hues apart)."""
    cols = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, saturation, values[i % len(values)]) for i in range(k)]
    return torch.tensor(cols, dtype=torch.float32)


def draw_points(img: Tensor, points: Tensor, rgb: Tensor, *, lim: float, dot: int = 1) -> Tensor:
    """Draw ``(N, 2)`` points into ``img`` ``(3, S, S)`` (in place) as ``dot x dot`` squares;
    the square ``[-lim, lim]^2`` fills the image, y up. ``rgb`` is one colour ``(3,)`` or one
    per point ``(3, N)``."""
    size = img.shape[-1]
    ij = ((points.float().clamp(-lim, lim) / lim + 1) / 2 * (size - dot)).round().long()  # (N, 2)
    col, row = ij[:, 0], (size - dot) - ij[:, 1]
    rgb = rgb.view(3, 1) if rgb.dim() == 1 else rgb
    for di in range(dot):
        for dj in range(dot):
            img[:, row + di, col + dj] = rgb
    return img


def scatter_image(points: Tensor, real: Tensor | None = None, size: int = 256, lim: float | None = None) -> Tensor:
    """Rasterise 2-D points into a ``(3, size, size)`` image in [0, 1]: real grey, fake red."""
    pts = [p.float() for p in (real, points) if p is not None]
    if lim is None:
        lim = max(float(torch.cat(pts).abs().max()) * 1.1, 1e-3)
    img = torch.ones(3, size, size)
    for p, colour in ((real, (0.6, 0.6, 0.6)), (points, (0.85, 0.1, 0.1))):
        if p is not None:
            draw_points(img, p, torch.tensor(colour), lim=lim)
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
