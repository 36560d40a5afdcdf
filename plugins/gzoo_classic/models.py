"""The original GAN's MLPs (Goodfellow et al. 2014) and DCGAN (Radford et al. 2016).

``mlp`` works on any data shape (2-D points or images); ``dcgan`` on square images of
28, 32 or 64 pixels. Both are class-conditional when built with ``num_classes > 0``:
G concatenates an L2-normalised label embedding to z (``Generator.condition``), and D
ends in a :class:`~gzoo.interfaces.ConditionalHead` (``cond_head=projection|multihead``).
Spectral norm is the ``sn`` regularizer (``--reg sn``), not a model option.

DCGAN stage layout (``Stage.resolution`` is the stage's output size; blocks can be
inserted after any stage with ``insert=BLOCK@RES``)::

    G 28: z -> 7x7x2ch  -> [14: ch] -> [28: ch] -> 3x3 conv -> tanh
    G 32: z -> 4x4x4ch  -> [8: 2ch] -> [16: ch] -> [32: ch] -> 3x3 conv -> tanh
    G 64: z -> 4x4x8ch  -> [8: 4ch] -> [16: 2ch] -> [32: ch] -> [64: ch] -> 3x3 conv -> tanh

(The widths halve from stage to stage and the last two stages both have ``ch``: the last
transposed convolution reaches the full size at width ``ch`` and a 3x3 convolution maps it to
the image, where the DCGAN paper's last transposed convolution outputs the image directly.)
    D 28: x -> [14: ch] -> [7: 2ch] -> flatten = features
    D 32: x -> [16: ch] -> [8: 2ch] -> [4: 4ch] -> flatten = features
    D 64: x -> [32: ch] -> [16: 2ch] -> [8: 4ch] -> [4: 8ch] -> flatten = features

``ch`` defaults to 32 so the embedded default trains in about a minute on a CPU; the
``dcgan-paper`` preset restores the paper's 64. The DCGAN discriminator uses no batch norm by default (``norm=none``), so it works with
gradient penalties and per-sample feature clustering; ``norm=batch`` restores the paper.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from gzoo.errors import UsageError
from gzoo.interfaces import Discriminator, Generator, Stage, is_image_shape

DCGAN_SIZES = {28: 7, 32: 4, 64: 4}  # image side -> side of the first (G) / last (D) feature map


class MLPGenerator(Generator):
    """The original GAN's fully-connected generator (2-D points or images).

    Args:
        latent_dim: size of the latent code z, drawn from N(0, I)
        hidden: width of every hidden layer (>= 1)
        depth: number of hidden Linear + ReLU layers (>= 1)
        embed_dim: width of the L2-normalised class embedding appended to z (conditional only)
        out_act: output activation: "auto" (tanh for images, none for points), "tanh" or "none"
    """

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
        super().__init__(image_shape=image_shape, num_classes=num_classes, latent_dim=latent_dim)
        if depth < 1 or hidden < 1:
            raise UsageError("mlp generator needs depth >= 1 and hidden >= 1")
        if out_act not in ("auto", "tanh", "none"):
            raise UsageError(f"out_act must be auto, tanh or none, got {out_act!r}")
        d_in = latent_dim + self.init_label_embedding(embed_dim)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(d_in, hidden), nn.ReLU()]
            d_in = hidden
        layers.append(nn.Linear(d_in, math.prod(self.image_shape)))
        if out_act == "tanh" or (out_act == "auto" and is_image_shape(self.image_shape)):
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(self.condition(z, y)).view(-1, *self.image_shape)


class MLPDiscriminator(Discriminator):
    """The original GAN's fully-connected discriminator (2-D points or images).

    Args:
        hidden: width of every hidden layer, and of the features (>= 1)
        depth: number of hidden Linear + LeakyReLU(0.2) layers (>= 1)
        cond_head: conditional head (with num_classes > 0): "projection" (<embed(y), features>
            added to the logit) or "multihead" (one logit per class, the label picks it)
    """

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        hidden: int = 256,
        depth: int = 3,
        cond_head: str = "projection",
    ):
        super().__init__(image_shape=image_shape, num_classes=num_classes, cond_head=cond_head)
        if depth < 1 or hidden < 1:
            raise UsageError("mlp discriminator needs depth >= 1 and hidden >= 1")
        layers: list[nn.Module] = [nn.Flatten()]
        d_in = math.prod(self.image_shape)
        for _ in range(depth):
            layers += [nn.Linear(d_in, hidden), nn.LeakyReLU(0.2)]
            d_in = hidden
        self.body = nn.Sequential(*layers)
        self.init_head(hidden)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


class DCGANGenerator(Generator):
    """DCGAN generator (transposed convolutions, batch norm) for 28, 32 and 64 pixels.

    Args:
        latent_dim: size of the latent code z, drawn from N(0, I)
        ch: channels of the last two stages; each earlier stage (and z's projection) doubles it
        embed_dim: width of the L2-normalised class embedding appended to z (conditional only)
    """

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        latent_dim: int = 100,
        ch: int = 32,
        embed_dim: int = 32,
    ):
        super().__init__(image_shape=image_shape, num_classes=num_classes, latent_dim=latent_dim)
        c, size = self.require_image("dcgan generator", sizes=DCGAN_SIZES)
        s0 = DCGAN_SIZES[size]
        n_up = int(math.log2(size // s0))
        width = ch * 2 ** (n_up - 1)
        d_in = latent_dim + self.init_label_embedding(embed_dim)
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
        h = self.project(self.condition(z, y)).view(-1, self.width, self.s0, self.s0)  # (N, width, s0, s0)
        for stage in self.stages:
            h = stage(h)
        return self.to_img(h)


class DCGANDiscriminator(Discriminator):
    """DCGAN discriminator (strided convolutions, LeakyReLU) for 28, 32 and 64 pixels.

    Args:
        ch: channels of the first stage, doubled at each following stage (ch, 2ch, 4ch, 8ch)
        norm: "none" or "batch" (batch norm in every stage but the first, as in the paper)
        cond_head: conditional head (with num_classes > 0): "projection" (<embed(y), features>
            added to the logit) or "multihead" (one logit per class, the label picks it)
    """

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        ch: int = 32,
        norm: str = "none",
        cond_head: str = "projection",
    ):
        super().__init__(image_shape=image_shape, num_classes=num_classes, cond_head=cond_head)
        c, size = self.require_image("dcgan discriminator", sizes=DCGAN_SIZES)
        if norm not in ("none", "batch"):
            raise UsageError(f"norm must be none or batch, got {norm!r}")
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
        self.init_head(cin * res * res)

    def features(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x.flatten(1)  # (N, ch_last * res * res)
