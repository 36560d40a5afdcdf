"""SAGAN (Zhang et al. 2019, "Self-Attention Generative Adversarial Networks") for 28, 32 and
64 pixels: residual G and D with spectral norm in both, conditional batch norm in G and a
projection head in D when class-conditional, and one attention block (``nonlocal``, or GCA's
``gca`` in "SAGAN + GCA") after a resolution stage of each.

Stage layout (``Stage.resolution`` is a stage's output side; ``ch`` defaults to 32)::

    G 28: z -> 7x7x4ch  -> [14: 2ch] -> [28: ch]                       -> BN ReLU conv3x3 tanh
    G 32: z -> 4x4x8ch  -> [8: 4ch]  -> [16: 2ch] -> [32: ch]           -> BN ReLU conv3x3 tanh
    G 64: z -> 4x4x16ch -> [8: 8ch]  -> [16: 4ch] -> [32: 2ch] -> [64: ch] -> BN ReLU conv3x3 tanh
    D 28: x -> [14: ch] -> [7: 2ch]                        -> ReLU, sum over positions = features
    D 32: x -> [16: ch] -> [8: 2ch] -> [4: 4ch]            -> ReLU, sum = features
    D 64: x -> [32: ch] -> [16: 2ch] -> [8: 4ch] -> [4: 8ch] -> ReLU, sum = features

A G stage is BN-ReLU-up2-conv3x3-BN-ReLU-conv3x3 plus an up2-conv1x1 shortcut (BN conditional
on the class when ``num_classes > 0``); a D stage is ReLU-conv3x3-ReLU-conv3x3-avgpool2 plus a
conv1x1-avgpool2 shortcut (the first stage without the leading ReLU, SNGAN's optimized block).

The attention block goes after the stage of resolution ``attn_res`` (default 32, the 32x32
feature map where SAGAN's code and StudioGAN place it); a model without that stage (D at 32
pixels, both at 28) takes the largest stage below it. ``insert=BLOCK@RES`` adds more blocks.

Spectral norm is part of SAGAN's architecture, in G and D. gzoo's convention is that D's spectral
norm is the ``sn`` regularizer (``--reg sn``, which normalises every layer of D, inserted blocks
included), so the D here has no SN of its own and the ``sagan-paper``/``sagan-gca`` presets add
``reg: [sn]``. G has no regularizer doing that, so ``sagan``'s G applies it itself (``sn=true``,
default): every convolution and linear layer, its attention block and any block inserted later
with ``insert=``. Nothing is normalised twice (``apply_spectral_norm`` skips normalised layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.errors import UsageError
from gzoo.interfaces import Discriminator, Generator, Stage, apply_spectral_norm

from .blocks import GCABlock, NonLocalBlock

SAGAN_SIZES = {28: 7, 32: 4, 64: 4}  # image side -> side of G's first / D's last feature map
ATTN = ("nonlocal", "gca", "none")


def _attention(kind: str, channels: int) -> nn.Module:
    return NonLocalBlock(channels=channels) if kind == "nonlocal" else GCABlock(channels=channels)


def _attn_resolution(resolutions: list[int], attn_res: int) -> int | None:
    """``attn_res`` if a stage has it, else the largest stage resolution below it (None: none)."""
    below = [r for r in resolutions if r <= attn_res]
    return max(below) if below else None


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class CondBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias come from the class (``num_classes > 0``; BigGAN's
    ``1 + gain(y)``, ``bias(y)``, starting at 1 and 0) or are plain learned affines."""

    def __init__(self, channels: int, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(channels, affine=not num_classes)
        if num_classes:
            self.gain = nn.Embedding(num_classes, channels)
            self.bias = nn.Embedding(num_classes, channels)
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.bn(x)
        if not self.num_classes:
            return h
        return h * (1 + self.gain(y))[:, :, None, None] + self.bias(y)[:, :, None, None]


class GBlock(nn.Module):
    """Up-sampling residual block of G: ``(B, cin, s, s) -> (B, cout, 2s, 2s)``."""

    def __init__(self, cin: int, cout: int, num_classes: int = 0):
        super().__init__()
        self.bn1 = CondBatchNorm2d(cin, num_classes)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn2 = CondBatchNorm2d(cout, num_classes)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Down-sampling residual block of D: ``(B, cin, s, s) -> (B, cout, s/2, s/2)``."""

    def __init__(self, cin: int, cout: int, first: bool = False):
        super().__init__()
        self.first = first
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        if self.first:  # SNGAN's optimized block: pool, then project
            return h + self.shortcut(F.avg_pool2d(x, 2))
        return h + F.avg_pool2d(self.shortcut(x), 2)


class _SAGANMixin:
    sn: bool = False

    def _place_attention(self, attn: str, attn_res: int) -> None:
        if attn not in ATTN:
            raise UsageError(f"sagan: attn must be one of {', '.join(ATTN)}, got {attn!r}")
        self.attn, self.attn_res = attn, None
        if attn == "none":
            return
        res = _attn_resolution(self.stage_resolutions(), attn_res)  # type: ignore[attr-defined]
        if res is None:
            raise UsageError(f"sagan: no stage at or below attn_res={attn_res}; "
                             f"stage resolutions: {self.stage_resolutions()}")  # type: ignore[attr-defined]
        self.attn_res = res
        for stage in self.stages:  # type: ignore[attr-defined]
            if stage.resolution == res:
                stage.after.append(_attention(attn, stage.channels))

    def insert_block(self, block: nn.Module, resolution: int) -> None:
        """As :meth:`gzoo.interfaces._Staged.insert_block`; with ``sn`` (G) the block's layers are
        spectral-normalised too (SAGAN normalises every layer; D gets it from ``--reg sn``)."""
        if self.sn:
            apply_spectral_norm(block)
        super().insert_block(block, resolution)  # type: ignore[misc]


class SAGANGenerator(_SAGANMixin, Generator):
    """SAGAN generator: residual up-sampling stages, spectral norm, self-attention.

    Args:
        latent_dim: size of the latent code z, drawn from N(0, I)
        ch: channels of the last stage; each earlier stage doubles it (see the layout)
        attn: attention block after the stage of resolution attn_res: "nonlocal" (SAGAN),
            "gca" (SAGAN + GCA: GCA replaces the non-local block) or "none"
        attn_res: resolution of the stage the attention block follows (the largest stage below
            it when G has no such stage)
        sn: spectral norm on every convolution and linear layer of G (SAGAN; blocks inserted later
            too). D's is the regularizer: --reg sn
    """

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        latent_dim: int = 128,
        ch: int = 32,
        attn: str = "nonlocal",
        attn_res: int = 32,
        sn: bool = True,
    ):
        super().__init__(image_shape=image_shape, num_classes=num_classes, latent_dim=latent_dim)
        c, size = self.require_image("sagan generator", sizes=SAGAN_SIZES)
        if ch < 1:
            raise UsageError(f"sagan generator: ch must be >= 1, got {ch}")
        self.sn = bool(sn)
        s0 = SAGAN_SIZES[size]
        n_up = int(math.log2(size // s0))
        self.s0, self.width = s0, ch * 2**n_up
        self.linear = nn.Linear(latent_dim, self.width * s0 * s0)
        stages, res, cin = [], s0, self.width
        for i in range(n_up):
            cout = ch * 2 ** (n_up - 1 - i)
            res *= 2
            stages.append(Stage(GBlock(cin, cout, num_classes), resolution=res, channels=cout))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self._place_attention(attn, attn_res)
        self.bn = nn.BatchNorm2d(cin)
        self.to_img = nn.Conv2d(cin, c, 3, 1, 1)
        _init(self)
        if self.sn:
            apply_spectral_norm(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        y = self.check_labels(y)
        h = self.linear(z).view(-1, self.width, self.s0, self.s0)  # (B, 2^n ch, s0, s0)
        for stage in self.stages:
            h = stage.body(h, y)  # the stage's residual block sees the labels (conditional BN)
            for block in stage.after:
                h = block(h)
        return torch.tanh(self.to_img(F.relu(self.bn(h))))


class SAGANDiscriminator(_SAGANMixin, Discriminator):
    """SAGAN discriminator: residual down-sampling stages, self-attention, projection head.

    The projection head is used when conditional. SAGAN's spectral norm in D is ``--reg sn``
    (the sagan presets include it).

    Args:
        ch: channels of the first stage, doubled at each following stage
        attn: attention block after the stage of resolution attn_res: "nonlocal", "gca" or "none"
        attn_res: resolution of the stage the attention block follows (the largest stage below
            it when D has no such stage: 16 for 32-pixel images)
        cond_head: conditional head (with num_classes > 0): "projection" (SAGAN) or "multihead"
    """

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        ch: int = 32,
        attn: str = "nonlocal",
        attn_res: int = 32,
        cond_head: str = "projection",
    ):
        super().__init__(image_shape=image_shape, num_classes=num_classes, cond_head=cond_head)
        c, size = self.require_image("sagan discriminator", sizes=SAGAN_SIZES)
        if ch < 1:
            raise UsageError(f"sagan discriminator: ch must be >= 1, got {ch}")
        n_down = int(math.log2(size // SAGAN_SIZES[size]))
        stages, res, cin = [], size, c
        for i in range(n_down):
            cout = ch * 2**i
            res //= 2
            stages.append(Stage(DBlock(cin, cout, first=i == 0), resolution=res, channels=cout))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self._place_attention(attn, attn_res)
        self.init_head(cin)
        _init(self)
        if num_classes and cond_head == "projection":
            nn.init.normal_(self.head.embed.weight, std=0.02)

    def features(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return F.relu(x).sum((2, 3))  # (B, 2^(n-1) ch)
