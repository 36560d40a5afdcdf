"""CIPS building blocks, all per pixel: equalised-lr linear layers, the activation-side
modulated fully-connected layer (ModFC), the modulated to-RGB layer and counter-based
per-pixel noise.

Shapes: ``x`` is ``(N, P, C)`` (N samples, P pixels, C channels), a style ``s`` is
``(N, C_in)``. Nothing here mixes pixels: every operation is a matmul over channels or an
elementwise op, so each output pixel depends only on its own input row.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)
MASK32 = 0xFFFFFFFF
# odd multipliers below 2**31, so products of 32-bit values stay inside int64
_M1, _M2 = 0x7FEB352D, 0x5BD1E995


def lrelu(x: Tensor) -> Tensor:
    """Leaky ReLU 0.2 with gain sqrt(2) (StyleGAN2's fused leaky ReLU, bias added before)."""
    return F.leaky_relu(x, 0.2) * SQRT2


class PixelNorm(nn.Module):
    """``x / sqrt(mean(x^2) + 1e-8)`` over the channels of ``(N, C)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear layer (StyleGAN): weights drawn from N(0, 1/lr_mul^2)
    and scaled by ``lr_mul / sqrt(in)`` at run time; the bias is ``bias_init`` (stored
    divided by ``lr_mul``, so the effective bias starts at ``bias_init``)."""

    def __init__(self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init) / lr_mul))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return lrelu(out) if self.activate else out


class ModFC(nn.Module):
    """StyleGAN2's modulated layer as a per-pixel fully-connected layer, with the
    modulation applied to the activations.

    The per-sample weight of StyleGAN2 is ``W'_n = c * W * s_n`` (``s_n = A(w_n)`` scaling
    the input channels, ``c = 1/sqrt(in)``), demodulated per output channel by
    ``d_no = rsqrt(sum_i W'_noi^2 + 1e-8)``. Since ``x @ W'_n^T = ((x * s_n) @ W^T) * c``,
    this layer computes one shared matmul on modulated activations and applies the
    demodulation as a per-sample, per-output scale: the same numbers as per-sample weights
    without building an ``(N, out, in)`` weight tensor.

    Then per-pixel noise (``noise_strength``, initialised to 0) is added, the bias, and a
    leaky ReLU with gain sqrt(2) when ``activate``.
    """

    def __init__(self, in_dim: int, out_dim: int, style_dim: int, *, demodulate: bool = True,
                 activate: bool = True, noise: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.scale = 1.0 / math.sqrt(in_dim)
        self.affine = EqualLinear(style_dim, in_dim, bias_init=1.0)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.noise_strength = nn.Parameter(torch.zeros(())) if noise else None
        self.demodulate, self.activate = demodulate, activate
        self.in_dim, self.out_dim = in_dim, out_dim

    def demod(self, s: Tensor) -> Tensor:
        """The demodulation scales ``(N, out)`` for styles ``s`` ``(N, in)``."""
        return torch.rsqrt((s * s) @ (self.weight * self.weight).t() * self.scale**2 + 1e-8)

    def forward(self, x: Tensor, s: Tensor, noise: Tensor | None = None, demod: Tensor | None = None) -> Tensor:
        """``x`` ``(N, P, in)``, ``s`` ``(N, in)`` (``self.affine(w)``), ``noise`` ``(N, P)``;
        ``demod`` may be passed precomputed (it depends on ``s`` only)."""
        h = torch.matmul(x * s[:, None, :], self.weight.t() * self.scale)  # (N, P, out)
        if self.demodulate:
            h = h * (self.demod(s) if demod is None else demod)[:, None, :]
        if noise is not None and self.noise_strength is not None:
            h = h + self.noise_strength * noise[..., None]
        h = h + self.bias
        return lrelu(h) if self.activate else h


def mix32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (xorshift-multiply) of int64 values in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = (x * _M1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & MASK32
    return x ^ (x >> 16)


def latent_seeds(z: Tensor) -> Tensor:
    """One 32-bit seed per latent code ``(N, d)`` -> ``(N,)``, a hash of z's float32 bits:
    the same code always gets the same noise, whatever pixels are synthesised."""
    bits = z.detach().float().contiguous().view(torch.int32).long() & MASK32
    pos = mix32(torch.arange(1, z.shape[1] + 1, device=z.device))
    return mix32(mix32(bits ^ pos).sum(1) & MASK32)


def pixel_noise(seeds: Tensor, pixels: Tensor, layer: int) -> Tensor:
    """Standard normal noise ``(N, P)`` that is a pure function of (sample seed, pixel index,
    layer): ``seeds`` ``(N,)``, ``pixels`` ``(N or 1, P)`` integer indices. Counter-based
    (hash + Box-Muller), so any subset of pixels, in any order, gets the same values."""
    base = mix32((pixels * 2654435761 + layer * 40503) & MASK32)  # (N|1, P)
    h1 = mix32(base ^ seeds[:, None])
    h2 = mix32(h1 ^ 0x68E31DA4)
    u1 = ((h1 >> 8).float() + 0.5) / 2.0**24  # 24-bit uniforms: exact in float32 (MPS has no float64)
    u2 = (h2 >> 8).float() / 2.0**24
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


class ToRGB(nn.Module):
    """Modulated (not demodulated) per-pixel projection to the image channels, plus a bias."""

    def __init__(self, in_dim: int, channels: int, style_dim: int):
        super().__init__()
        self.fc = ModFC(in_dim, channels, style_dim, demodulate=False, activate=False, noise=False)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.fc(x, self.fc.affine(w))
