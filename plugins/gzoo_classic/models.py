"""The original GAN's MLPs (Goodfellow et al. 2014) and DCGAN (Radford et al. 2016).

``mlp`` works on any data shape (2-D points or images); ``dcgan`` on square images of
28, 32 or 64 pixels. Both are class-conditional when built with ``num_classes > 0``:
G concatenates an L2-normalised label embedding to z, and D ends in a
:class:`~gzoo.interfaces.ConditionalHead` (``cond_head=projection|multihead``).

DCGAN stage layout (``Stage.resolution`` is the stage's output size; blocks can be
inserted after any stage with ``insert=BLOCK@RES``)::

    G 28: z -> 7x7x2ch  -> [14: 2ch] -> [28: ch] -> 3x3 conv -> tanh
    G 32: z -> 4x4x4ch  -> [8: 4ch] -> [16: 2ch] -> [32: ch] -> 3x3 conv -> tanh
    G 64: z -> 4x4x8ch  -> [8: 8ch] -> [16: 4ch] -> [32: 2ch] -> [64: ch] -> ...
    D 28: x -> [14: ch] -> [7: 2ch] -> flatten = features
    D 32: x -> [16: ch] -> [8: 2ch] -> [4: 4ch] -> flatten = features
    D 64: x -> [32: ch] -> [16: 2ch] -> [8: 4ch] -> [4: 8ch] -> flatten = features

``ch`` defaults to 32 so the embedded default trains in about a minute on a CPU; the
``dcgan-paper`` preset restores the paper's 64. The DCGAN discriminator uses no batch norm by default (``norm=none``), so it works with
gradient penalties and per-sample feature clustering; ``norm=batch`` restores the paper.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gzoo.errors import ShapeError, UsageError
from gzoo.interfaces import (
    ConditionalHead,
    Discriminator,
    Generator,
    Stage,
    apply_spectral_norm,
    embed_labels,
    is_image_shape,
)

DCGAN_SIZES = {28: 7, 32: 4, 64: 4}


def _conditional_input(latent_dim: int, num_classes: int, embed_dim: int) -> tuple[nn.Embedding | None, int]:
    if num_classes:
        return nn.Embedding(num_classes, embed_dim), latent_dim + embed_dim
    return None, latent_dim


def _gen_input(z: Tensor, y: Tensor | None, embed: nn.Embedding | None) -> Tensor:
    if embed is None:
        return z
    if y is None:
        raise UsageError("this generator is conditional: it needs labels y")
    return torch.cat([z, embed_labels(embed, y)], 1)


class MLPGenerator(Generator):
    """The original GAN's fully-connected generator (2-D points or images)."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        latent_dim: int = 64,
        hidden: int = 256,
        depth: int = 3,
        embed_dim: int = 32,
        out_act: str = "auto",
    ):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise UsageError("mlp generator needs depth >= 1 and hidden >= 1")
        if out_act not in ("auto", "tanh", "none"):
            raise UsageError(f"out_act must be auto, tanh or none, got {out_act!r}")
        self.latent_dim, self.image_shape, self.num_classes = latent_dim, tuple(image_shape), num_classes
        self.embed, d_in = _conditional_input(latent_dim, num_classes, embed_dim)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(d_in, hidden), nn.ReLU()]
            d_in = hidden
        layers.append(nn.Linear(d_in, math.prod(self.image_shape)))
        tanh = out_act == "tanh" or (out_act == "auto" and is_image_shape(self.image_shape))
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(_gen_input(z, y, self.embed)).view(-1, *self.image_shape)


class MLPDiscriminator(Discriminator):
    """The original GAN's fully-connected discriminator (2-D points or images)."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        hidden: int = 256,
        depth: int = 3,
        cond_head: str = "projection",
        sn: bool = False,
    ):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise UsageError("mlp discriminator needs depth >= 1 and hidden >= 1")
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        layers: list[nn.Module] = [nn.Flatten()]
        d_in = math.prod(self.image_shape)
        for _ in range(depth):
            layers += [nn.Linear(d_in, hidden), nn.LeakyReLU(0.2)]
            d_in = hidden
        self.body = nn.Sequential(*layers)
        self.head = ConditionalHead(hidden, num_classes, cond_head)
        if sn:
            apply_spectral_norm(self)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


def _dcgan_shape(image_shape: tuple[int, ...], who: str) -> tuple[int, int]:
    if not is_image_shape(tuple(image_shape)):
        raise ShapeError(f"{who} works on images (C, H, W), but the data has shape {tuple(image_shape)}; use 'mlp' for 2-D data")
    c, h, w = image_shape
    if h != w or h not in DCGAN_SIZES:
        raise ShapeError(f"{who} supports square images of {sorted(DCGAN_SIZES)} pixels, got {h}x{w}")
    return c, h


class DCGANGenerator(Generator):
    """DCGAN generator (transposed convolutions, batch norm) for 28, 32 and 64 pixels."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        latent_dim: int = 100,
        ch: int = 32,
        embed_dim: int = 32,
    ):
        super().__init__()
        c, size = _dcgan_shape(image_shape, "dcgan generator")
        self.latent_dim, self.image_shape, self.num_classes = latent_dim, tuple(image_shape), num_classes
        s0 = DCGAN_SIZES[size]
        n_up = int(math.log2(size // s0))
        width = ch * 2 ** (n_up - 1)
        self.embed, d_in = _conditional_input(latent_dim, num_classes, embed_dim)
        self.s0, self.width = s0, width
        self.project = nn.Sequential(nn.Linear(d_in, width * s0 * s0), nn.BatchNorm1d(width * s0 * s0), nn.ReLU())
        stages, res, cin = [], s0, width
        for i in range(n_up):
            cout = ch * 2 ** (n_up - 2 - i) if i < n_up - 1 else ch
            res *= 2
            body = nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
            stages.append(Stage(body, resolution=res, channels=cout))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.to_img = nn.Sequential(nn.Conv2d(cin, c, 3, 1, 1), nn.Tanh())

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.project(_gen_input(z, y, self.embed)).view(-1, self.width, self.s0, self.s0)
        for stage in self.stages:
            h = stage(h)
        return self.to_img(h)


class DCGANDiscriminator(Discriminator):
    """DCGAN discriminator (strided convolutions, LeakyReLU) for 28, 32 and 64 pixels."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        ch: int = 32,
        norm: str = "none",
        cond_head: str = "projection",
        sn: bool = False,
    ):
        super().__init__()
        c, size = _dcgan_shape(image_shape, "dcgan discriminator")
        if norm not in ("none", "batch"):
            raise UsageError(f"norm must be none or batch, got {norm!r}")
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        n_down = int(math.log2(size // DCGAN_SIZES[size]))
        stages, res, cin = [], size, c
        for i in range(n_down):
            cout = ch * 2**i
            res //= 2
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1)]
            if norm == "batch" and i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2))
            stages.append(Stage(nn.Sequential(*layers), resolution=res, channels=cout))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.feature_dim = cin * res * res
        self.head = ConditionalHead(self.feature_dim, num_classes, cond_head)
        if sn:
            apply_spectral_norm(self)

    def features(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x.flatten(1)
