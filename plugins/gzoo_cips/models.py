"""CIPS generator (Anokhin et al., CVPR 2021) and a StyleGAN2-style residual discriminator.

The generator computes every pixel independently from its coordinates and the latent:
``rgb(x, y) = G'(e(x, y); M(z))``. Nothing in it is a convolution or attention; pixels meet
only in shared weights. See docs/cips.md for our reading of the paper and official code.

Coordinates. The training canvas is ``[-1, 1]^2``; pixel ``(i, j)`` of an ``H x W`` image sits
at ``x = linspace(-1, 1, W)[j]``, ``y = linspace(-1, 1, H)[i]`` (corners on the canvas edge).
Any other resolution samples the same canvas more or less densely; ``region`` picks another
window of it (also outside ``[-1, 1]``: extrapolation).

Cylindrical models (``panorama=K``) read the horizontal axis as an angle: the training image
spans ``1/K`` of a turn, at a random whole-column offset per sample during training, so every
column of the ``K * W``-column periodic embedding grid is trained. Fourier features see
``(r cos phi, r sin phi, y)`` with radius ``r = K / pi`` (one training image then spans the same
Fourier phase range as a planar image does), and embeddings are read with bilinear
interpolation that wraps around in ``phi``. Every function of ``phi`` is periodic, so a
panorama closes without a seam.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.errors import UsageError
from gzoo.interfaces import Discriminator, Generator, Stage

from .layers import SQRT2, EqualLinear, ModFC, PixelNorm, ToRGB, latent_seeds, lrelu, pixel_noise

VARIANTS = ("skip", "res")
OUT_ACTS = ("tanh", "clamp")


# -- sampling options -----------------------------------------------------------------------------------


def _ints(value: Any, n: int, what: str, fmt: str) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").replace("X", ",").split(",") if p.strip()]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = [value]
    if n == 2 and len(parts) == 1:
        parts = parts * 2
    try:
        out = tuple(int(p) for p in parts)
        if any(float(p) != int(p) for p in parts):
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be {fmt}, got {value!r}") from None
    if len(out) != n:
        raise UsageError(f"{what} must be {fmt}, got {value!r}")
    return out


def parse_resolution(value: Any) -> tuple[int, int] | None:
    """``64`` (square), ``"48x96"`` or ``"48,96"`` or ``(48, 96)`` (height x width) -> (h, w)."""
    if value is None:
        return None
    h, w = _ints(value, 2, "resolution", "SIDE or HEIGHTxWIDTH (e.g. 64 or 48x96)")
    if h < 1 or w < 1:
        raise UsageError(f"resolution must be positive, got {value!r}")
    return h, w


def parse_crop(value: Any) -> tuple[int, int, int, int] | None:
    """``"TOP,LEFT,HEIGHT,WIDTH"`` in output pixels."""
    if value is None:
        return None
    top, left, h, w = _ints(value, 4, "crop", "TOP,LEFT,HEIGHT,WIDTH in pixels (e.g. 0,16,32,32)")
    if top < 0 or left < 0 or h < 1 or w < 1:
        raise UsageError(f"crop needs TOP, LEFT >= 0 and HEIGHT, WIDTH >= 1, got {value!r}")
    return top, left, h, w


def parse_region(value: Any) -> tuple[float, float, float, float] | None:
    """``"X0,Y0,X1,Y1"`` in canvas coordinates (``-1,-1,1,1`` is the training image)."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, Sequence) else [value]
    fmt = "X0,Y0,X1,Y1 in canvas coordinates (-1,-1,1,1 is the training image)"
    try:
        out = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise UsageError(f"region must be {fmt}, got {value!r}") from None
    if len(out) != 4 or not all(math.isfinite(v) for v in out):
        raise UsageError(f"region must be {fmt}, got {value!r}")
    if out[0] == out[2] or out[1] == out[3]:
        raise UsageError(f"region must have X0 != X1 and Y0 != Y1, got {value!r}")
    return out  # type: ignore[return-value]


def _positive_int(value: Any, what: str, fmt: str) -> int | None:
    if value is None or value is False or value == 0:
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
        raise UsageError(f"{what} must be {fmt}, got {value!r}")
    v = int(value)
    if v < 1:
        raise UsageError(f"{what} must be {fmt}, got {value!r}")
    return v


# -- the generator --------------------------------------------------------------------------------------


class CIPSGenerator(Generator):
    """CIPS: every pixel from its coordinates and z by modulated fully-connected layers.

    Pure PyTorch, no convolution or attention; modulation acts on the activations. Per pixel: Fourier features ``sin(B [x, y] + b)`` (``B`` SIREN-initialised, learnable)
    concatenated with a learned coordinate embedding, then ``depth`` ModFC layers modulated by
    the mapping network's style ``w``; ``variant=skip`` (the paper's default) sums a modulated
    to-RGB of every second layer, ``variant=res`` (CIPSres) pairs layers into residual blocks
    ``(h + f(h)) / sqrt(2)`` with one to-RGB at the end.

    Sampling options (:meth:`sample`, ``gzoo sample --opt k=v``): ``resolution``, ``chunk``,
    ``crop``, ``region``, ``panorama`` (see :meth:`synthesize` and docs/cips.md).

    Args:
        latent_dim: size of the latent code z, drawn from N(0, I)
        width: channels of every ModFC layer, of the Fourier features and of the coordinate
            embeddings (the paper: 512)
        depth: number of ModFC layers, odd and >= 3: one input layer, then (depth - 1) / 2 pairs,
            each ending in a to-RGB skip (skip) or forming a residual block (res) (the paper: 15)
        style_dim: width of the style w and of the mapping network (0: same as width)
        n_mlp: number of equalised-lr linear layers of the mapping network (the paper: 8)
        lr_mlp: learning-rate multiplier of the mapping network (the paper: 0.01)
        embeddings: learned coordinate embeddings (True, CIPS) or Fourier features only
            (False: the CIPS-NE variant)
        variant: "skip" (to-RGB after every two layers, summed) or "res" (residual blocks, one
            final to-RGB: CIPSres)
        noise: per-pixel noise injection in every ModFC layer (strength initialised to 0); the
            noise is a hash of (latent, pixel, layer), so an image is a function of z alone
        embed_dim: width of the L2-normalised class embedding appended to z before the mapping
            network (conditional only)
        out_act: "tanh" (images in [-1, 1] during training too) or "clamp" (the official raw RGB
            sum, clamped to [-1, 1]; gradients vanish outside the range)
        crop: patch training (paper Fig. 4): 0 (off) or P, and in training mode G synthesises
            a random P x P window of the training grid per sample (pair with the resnet
            discriminator's crop=P); in eval mode it synthesises the full image
        panorama: 0 (a planar model) or K: a cylindrical model whose training image spans 1/K
            of a turn (at a random column offset per sample in training); only such a model
            takes the panorama sampling option
    """

    sample_options: ClassVar[dict[str, Any]] = {
        "resolution": None, "chunk": None, "crop": None, "region": None, "panorama": None,
    }

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        latent_dim: int = 128,
        width: int = 128,
        depth: int = 7,
        style_dim: int = 0,
        n_mlp: int = 8,
        lr_mlp: float = 0.01,
        embeddings: bool = True,
        variant: str = "skip",
        noise: bool = True,
        embed_dim: int = 32,
        out_act: str = "tanh",
        crop: int = 0,
        panorama: int = 0,
    ):
        super().__init__(image_shape=image_shape, num_classes=num_classes, latent_dim=latent_dim)
        c, _ = self.require_image("cips generator", square=False)
        _, H, W = self.image_shape
        if width < 1 or latent_dim < 1 or n_mlp < 1:
            raise UsageError(f"cips needs width, latent_dim and n_mlp >= 1, got {width}, {latent_dim}, {n_mlp}")
        if depth < 3 or depth % 2 == 0:
            raise UsageError(f"cips depth must be odd and >= 3 (an input layer, then pairs), got {depth}")
        if variant not in VARIANTS:
            raise UsageError(f"cips variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if out_act not in OUT_ACTS:
            raise UsageError(f"cips out_act must be one of {', '.join(OUT_ACTS)}, got {out_act!r}")
        if crop < 0 or crop > min(H, W):
            raise UsageError(f"cips crop must be 0 (off) or a patch side in [1, {min(H, W)}], got {crop}")
        if panorama < 0:
            raise UsageError(f"cips panorama must be 0 (planar) or K >= 1 (turn / image width), got {panorama}")
        style_dim = style_dim or width
        self.channels, self.H, self.W = c, H, W
        self.width, self.depth, self.style_dim = width, depth, style_dim
        self.variant, self.out_act, self.use_noise = variant, out_act, noise
        self.crop, self.panorama = int(crop), int(panorama)

        d_in = latent_dim + self.init_label_embedding(embed_dim)
        self.mapping = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(d_in if i == 0 else style_dim, style_dim, lr_mul=lr_mlp, activate=True) for i in range(n_mlp)],
        )
        coord_dim = 3 if panorama else 2
        self.fourier = nn.Linear(coord_dim, width)
        bound = math.sqrt(9.0 / coord_dim)
        nn.init.uniform_(self.fourier.weight, -bound, bound)
        self.emb_cols = W * panorama if panorama else W
        self.embedding = nn.Parameter(torch.randn(width, H, self.emb_cols)) if embeddings else None
        in_dim = 2 * width if embeddings else width
        self.layers = nn.ModuleList(
            ModFC(in_dim if i == 0 else width, width, style_dim, noise=noise) for i in range(depth)
        )
        n_rgb = (depth - 1) // 2 if variant == "skip" else 1
        self.to_rgbs = nn.ModuleList(ToRGB(width, c, style_dim) for _ in range(n_rgb))

    # -- the per-pixel network --------------------------------------------------------------------------
    def style(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The style ``w = M(z [++ label embedding])``, ``(N, style_dim)``."""
        return self.mapping(self.condition(z, y))

    def encode(self, pos: Tensor, grid_idx: Tensor | None) -> Tensor:
        """Positional encoding ``(n, P, width or 2 width)`` of coordinates ``pos`` ``(n, P, 2)``
        (``(x, y)`` on the canvas, or ``(turns, y)`` for a cylindrical model); ``grid_idx``
        ``(n, P)`` indexes the embedding grid directly where the pixels lie on it."""
        if self.panorama:
            phi = 2 * math.pi * pos[..., 0]
            r = self.panorama / math.pi
            feats = torch.stack([r * torch.cos(phi), r * torch.sin(phi), pos[..., 1]], -1)
        else:
            feats = pos
        out = torch.sin(self.fourier(feats))
        if self.embedding is None:
            return out
        E = self.embedding
        if grid_idx is not None:
            emb = E.flatten(1).t()[grid_idx]  # (n, P, width)
        elif self.panorama:
            emb = self._periodic_lookup(pos)
        else:
            n, P, _ = pos.shape
            grid = pos.reshape(1, n * P, 1, 2).to(E.dtype)
            emb = F.grid_sample(E[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
            emb = emb.reshape(-1, n * P).t().reshape(n, P, -1)
        return torch.cat([out, emb.expand(out.shape[0], -1, -1)], -1)

    def _periodic_lookup(self, pos: Tensor) -> Tensor:
        """Bilinear embedding lookup that wraps around in turns and clamps in y."""
        E = self.embedding.flatten(1).t()  # (H * cols, width)
        cols, H = self.emb_cols, self.H
        u = torch.remainder(pos[..., 0], 1.0) * cols
        v = ((pos[..., 1] + 1) / 2 * (H - 1)).clamp(0, H - 1)
        u0, v0 = u.floor(), v.floor()
        fu, fv = (u - u0)[..., None], (v - v0)[..., None]
        u0, v0 = u0.long() % cols, v0.long().clamp(0, H - 1)
        u1, v1 = (u0 + 1) % cols, (v0 + 1).clamp(max=H - 1)
        return ((E[v0 * cols + u0] * (1 - fu) + E[v0 * cols + u1] * fu) * (1 - fv)
                + (E[v1 * cols + u0] * (1 - fu) + E[v1 * cols + u1] * fu) * fv)

    def pixels(self, w: Tensor, seeds: Tensor, pos: Tensor, grid_idx: Tensor | None, pix_idx: Tensor,
               styles: list[tuple[Tensor, Tensor | None]] | None = None) -> Tensor:
        """RGB ``(N, P, C)`` of the pixels at ``pos`` for styles ``w`` ``(N, style_dim)``.
        ``pix_idx`` ``(n, P)`` are the pixels' indices in the output image (they key the noise)."""
        if styles is None:
            styles = self.layer_styles(w)
        h = self.encode(pos, grid_idx)
        if h.shape[0] != w.shape[0]:
            h = h.expand(w.shape[0], -1, -1)
        rgb = None
        skip_i = 0
        block_in = h  # the input of the current residual block (variant res)
        for i, (layer, (s, d)) in enumerate(zip(self.layers, styles, strict=True)):
            noise = pixel_noise(seeds, pix_idx, i) if self.use_noise else None
            if i % 2 == 1:
                block_in = h
            out = layer(h, s, noise, d)
            if self.variant == "res" and i > 0 and i % 2 == 0:
                out = (out + block_in) / SQRT2
            h = out
            if self.variant == "skip" and i > 0 and i % 2 == 0:
                r = self.to_rgbs[skip_i](h, w)
                rgb = r if rgb is None else rgb + r
                skip_i += 1
        if self.variant == "res":
            rgb = self.to_rgbs[0](h, w)
        return torch.tanh(rgb) if self.out_act == "tanh" else rgb.clamp(-1, 1)

    def layer_styles(self, w: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """Each layer's modulation ``s = A(w)`` and demodulation scales (computed once per batch)."""
        out = []
        for layer in self.layers:
            s = layer.affine(w)
            out.append((s, layer.demod(s) if layer.demodulate else None))
        return out

    # -- coordinate sets ------------------------------------------------------------------------------
    def _canvas_x(self, x: Tensor) -> Tensor:
        """Planar canvas x -> the model's horizontal coordinate (turns for a cylindrical model)."""
        if not self.panorama:
            return x
        return (x + 1) / 2 * (self.W - 1) / self.emb_cols

    def training_grid(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(pos (1, H*W, 2), grid_idx (1, H*W), pix_idx (1, H*W))`` of the training image."""
        dev = self.fourier.weight.device
        ii, jj = torch.meshgrid(torch.arange(self.H, device=dev), torch.arange(self.W, device=dev), indexing="ij")
        ii, jj = ii.reshape(1, -1), jj.reshape(1, -1)
        return self._grid_points(ii, jj), ii * self.emb_cols + jj, ii * self.W + jj

    def _grid_points(self, ii: Tensor, jj: Tensor, col_offset: Tensor | None = None) -> Tensor:
        y = torch.linspace(-1, 1, self.H, device=ii.device)[ii]
        if self.panorama:
            cols = jj if col_offset is None else (jj + col_offset) % self.emb_cols
            x = cols.float() / self.emb_cols
        else:
            x = torch.linspace(-1, 1, self.W, device=ii.device)[jj]
        return torch.stack([x, y], -1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The image at the training grid ``(N, C, H, W)``; in training mode with ``crop=P``, a
        random ``P x P`` window per sample ``(N, C, P, P)``; a cylindrical model in training mode
        starts each image at a random column of its turn."""
        w = self.style(z, y)
        seeds = latent_seeds(z)
        N = z.shape[0]
        if not self.training or (not self.crop and not self.panorama):
            pos, grid_idx, pix_idx = self.training_grid()
            return self.pixels(w, seeds, pos, grid_idx, pix_idx).transpose(1, 2).reshape(N, -1, self.H, self.W)
        dev = z.device
        ph, pw = (self.crop, self.crop) if self.crop else (self.H, self.W)
        top = torch.randint(self.H - ph + 1, (N, 1, 1), device=dev)
        left = torch.randint(self.W - pw + 1, (N, 1, 1), device=dev)
        ii = (top + torch.arange(ph, device=dev).view(1, ph, 1)).expand(N, ph, pw).reshape(N, -1)
        jj = (left + torch.arange(pw, device=dev).view(1, 1, pw)).expand(N, ph, pw).reshape(N, -1)
        offset = torch.randint(self.emb_cols, (N, 1), device=dev) if self.panorama else None
        pos = self._grid_points(ii, jj, offset)
        cols = jj if offset is None else (jj + offset) % self.emb_cols
        grid_idx = ii * self.emb_cols + cols
        pix_idx = ii * self.W + jj
        return self.pixels(w, seeds, pos, grid_idx, pix_idx).transpose(1, 2).reshape(N, -1, ph, pw)

    # -- sampling on any coordinate set ---------------------------------------------------------------
    def coordinates(self, *, resolution: Any = None, crop: Any = None, region: Any = None,
                    panorama: Any = None, start: int = 0,
                    stop: int | None = None) -> tuple[Tensor, Tensor | None, Tensor, tuple[int, int]]:
        """The coordinate set of the sampling options: ``(pos (1, P, 2), grid_idx or None,
        pix_idx (1, P), (h, w))``, for the output pixels ``start:stop`` in row-major order (default:
        all), so chunks never build the whole image's coordinates. See :meth:`synthesize`."""
        res = parse_resolution(resolution)
        box = parse_crop(crop)
        reg = parse_region(region)
        pano = _positive_int(panorama, "panorama", "the panorama's width in pixels (a positive integer)")
        if pano is not None and not self.panorama:
            raise UsageError("panorama needs a cylindrical cips (built with --gen-opt panorama=K); "
                             "this one is planar: use resolution/region instead")
        if pano is not None and reg is not None:
            raise UsageError("panorama and region cannot be combined (a panorama is the whole turn)")
        dev = self.fourier.weight.device
        h, w = res if res is not None else (self.H, self.W)
        if pano is not None:
            w = pano
        top, left, ch, cw = box if box is not None else (0, 0, h, w)
        if box is not None and (top + ch > h or (left + cw > w and pano is None)):
            raise UsageError(f"crop {top},{left},{ch},{cw} reaches outside the {h}x{w} image "
                             "(only a panorama's crop may wrap around horizontally)")
        k = torch.arange(start, ch * cw if stop is None else min(stop, ch * cw), device=dev)[None]
        ii, jj = top + k // cw, left + k % cw
        if pano is not None:
            jj = jj % w
        pix_idx = ii * w + jj
        x0, y0, x1, y1 = reg if reg is not None else (-1.0, -1.0, 1.0, 1.0)
        ys = torch.linspace(y0, y1, h, device=dev) if h > 1 else \
            torch.tensor([(y0 + y1) / 2], device=dev)
        if pano is not None:
            x = jj.double().div(w).float()
        else:
            xs = torch.linspace(x0, x1, w, device=dev) if w > 1 else \
                torch.tensor([(x0 + x1) / 2], device=dev)
            x = self._canvas_x(xs[jj])
        pos = torch.stack([x, ys[ii]], -1)
        on_grid = pano is None and reg is None and (h, w) == (self.H, self.W) and not self.panorama
        grid_idx = ii * self.emb_cols + jj if on_grid else None
        return pos, grid_idx, pix_idx, (ch, cw)

    @torch.no_grad()
    def synthesize(self, z: Tensor, y: Tensor | None = None, *, resolution: Any = None, chunk: Any = None,
                   crop: Any = None, region: Any = None, panorama: Any = None) -> Tensor:
        """Images ``(N, C, h, w)`` of latents ``z`` on any coordinate set (no gradients).

        * ``resolution``: ``R`` or ``HxW`` (or ``(H, W)``): the canvas sampled on an ``H x W``
          grid (default: the training size). At the training size it is the training image.
        * ``region``: ``X0,Y0,X1,Y1``: the window of the canvas to sample (default
          ``-1,-1,1,1``; beyond it the model extrapolates), at ``resolution`` pixels.
        * ``crop``: ``TOP,LEFT,HEIGHT,WIDTH``: only these pixels of the image the other
          options describe (exactly that crop of the full image).
        * ``panorama``: ``WIDTH``: a whole turn of a cylindrical model, ``WIDTH`` pixels wide
          and ``resolution``'s height (default the training height); its crop wraps around.
        * ``chunk``: synthesise at most this many pixels per sample at a time (peak memory
          bounded by the chunk, plus the output); the result equals full synthesis.
        """
        n_chunk = _positive_int(chunk, "chunk", "a number of pixels per chunk (a positive integer)")
        opts = {"resolution": resolution, "crop": crop, "region": region, "panorama": panorama}
        h, w = self.coordinates(**opts, stop=0)[3]  # checks the options, builds nothing
        wstyle = self.style(z, y)
        seeds = latent_seeds(z)
        styles = self.layer_styles(wstyle)
        P = h * w
        if n_chunk is None or n_chunk >= P:
            pos, grid_idx, pix_idx, _ = self.coordinates(**opts)
            rgb = self.pixels(wstyle, seeds, pos, grid_idx, pix_idx, styles)
            return rgb.transpose(1, 2).reshape(z.shape[0], -1, h, w)
        out = torch.empty(z.shape[0], self.channels, P, device=z.device, dtype=wstyle.dtype)
        for a in range(0, P, n_chunk):  # each chunk's coordinates are built for it alone
            pos, grid_idx, pix_idx, _ = self.coordinates(**opts, start=a, stop=a + n_chunk)
            out[:, :, a : a + n_chunk] = self.pixels(wstyle, seeds, pos, grid_idx, pix_idx, styles).transpose(1, 2)
        return out.reshape(z.shape[0], -1, h, w)

    def sample(self, n: int, y: Tensor | None = None, *, generator: torch.Generator | None = None,
               **options: Any) -> Tensor:
        """Draw ``n`` samples; ``options`` are :attr:`sample_options` (see :meth:`synthesize`)."""
        if not options:
            return super().sample(n, y, generator=generator)
        unknown = set(options) - set(self.sample_options)
        if unknown:
            near = [m for u in sorted(unknown) for m in difflib.get_close_matches(u, self.sample_options, 1)]
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UsageError(f"cips takes no sampling option(s) {sorted(unknown)}{hint}; "
                             f"valid options: {', '.join(sorted(self.sample_options))}")
        z = self.sample_latent(n, generator=generator)
        if self.num_classes and y is None:
            y = torch.randint(self.num_classes, (n,), generator=generator).to(z.device)
        return self.synthesize(z, y, **options)


# -- the discriminator ----------------------------------------------------------------------------------


class EqualConv2d(nn.Module):
    """Equalised-lr convolution (weights N(0, 1), scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, cin: int, cout: int, k: int, *, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = 1.0 / math.sqrt(cin * k * k)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class Blur(nn.Module):
    """Depthwise [1, 3, 3, 1] x [1, 3, 3, 1] / 64 low-pass filter with padding ``pad``."""

    def __init__(self, channels: int, pad: tuple[int, int]):
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = torch.outer(k, k)
        self.register_buffer("kernel", (k / k.sum()).expand(channels, 1, 4, 4).contiguous(), persistent=False)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        p0, p1 = self.pad
        return F.conv2d(F.pad(x, (p0, p1, p0, p1)), self.kernel, groups=x.shape[1])


class ResBlock(nn.Module):
    """StyleGAN2's residual D block: 3x3 conv, blurred 3x3 stride-2 conv, and a blurred 1x1
    stride-2 skip; ``(main + skip) / sqrt(2)``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = EqualConv2d(cin, cin, 3, padding=1)
        self.blur = Blur(cin, (2, 2))
        self.conv2 = EqualConv2d(cin, cout, 3, stride=2)
        self.skip_blur = Blur(cin, (1, 1))
        self.skip = EqualConv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = lrelu(self.conv1(x))
        h = lrelu(self.conv2(self.blur(h)))
        return (h + self.skip(self.skip_blur(x))) / SQRT2


def minibatch_stddev(x: Tensor, group: int = 4) -> Tensor:
    """Append one channel: the mean over features of the standard deviation within groups of
    ``group`` samples (the largest divisor of N not above ``group``)."""
    N, C, H, W = x.shape
    g = max(d for d in range(1, min(group, N) + 1) if N % d == 0)
    y = x.reshape(g, N // g, C, H, W)
    std = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean((1, 2, 3))  # (N // g,)
    std = std.repeat(g).view(N, 1, 1, 1).expand(N, 1, H, W)
    return torch.cat([x, std], 1)


class ResNetDiscriminator(Discriminator):
    """StyleGAN2's residual discriminator (blurred downsampling, minibatch stddev), pure PyTorch.

    From-RGB, residual blocks that halve the resolution with blurred strided convolutions,
    minibatch standard deviation (group 4), a 3x3 convolution, and a fully-connected layer to the
    features; projection (or multihead) conditional head. Equalised learning rate throughout.

    Resolution stages (blocks insert with ``insert=BLOCK@RES``): the from-RGB stage at the
    input size, then one stage per residual block at its output size; blocks halve the sides
    while both are even and above 7 (28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 64 -> ... -> 4).
    Any image size works (square or not; sides of at least 4).

    Args:
        ch: channels at the input resolution, doubled at every halving up to max_ch
        max_ch: channel cap
        mbstd_group: minibatch-stddev group size (0 turns it off)
        crop: patch training (paper Fig. 4): 0 (off) or P, and D scores P x P patches: larger
            inputs are cut to a random P x P window per sample in training mode (the centre
            window in eval mode); pair with the cips generator's crop=P
        cond_head: conditional head (with num_classes > 0): "projection" (<embed(y), features>
            added to the logit) or "multihead" (one logit per class, the label picks it)
    """

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        ch: int = 32,
        max_ch: int = 256,
        mbstd_group: int = 4,
        crop: int = 0,
        cond_head: str = "projection",
    ):
        super().__init__(image_shape=image_shape, num_classes=num_classes, cond_head=cond_head)
        c, _ = self.require_image("resnet discriminator", square=False)
        _, H, W = self.image_shape
        if ch < 1 or max_ch < 1 or mbstd_group < 0:
            raise UsageError(f"resnet needs ch, max_ch >= 1 and mbstd_group >= 0, got {ch}, {max_ch}, {mbstd_group}")
        if crop < 0 or crop > min(H, W):
            raise UsageError(f"resnet crop must be 0 (off) or a patch side in [4, {min(H, W)}], got {crop}")
        self.crop = int(crop)
        if crop:
            H = W = crop
        if min(H, W) < 4:
            raise UsageError(f"resnet discriminator needs sides of at least 4 pixels, got {H}x{W}")
        self.mbstd_group = mbstd_group
        cur = min(ch, max_ch)
        stages = [Stage(nn.Sequential(EqualConv2d(c, cur, 1), _LReLU()), resolution=H, channels=cur)]
        h, w = H, W
        while h % 2 == 0 and w % 2 == 0 and min(h, w) > 7:
            nxt = min(cur * 2, max_ch)
            h, w = h // 2, w // 2
            stages.append(Stage(ResBlock(cur, nxt), resolution=h, channels=nxt))
            cur = nxt
        self.stages = nn.ModuleList(stages)
        self.final_conv = EqualConv2d(cur + (1 if mbstd_group else 0), cur, 3, padding=1)
        self.final_fc = EqualLinear(cur * h * w, cur, activate=True)
        self.init_head(cur)

    def _cut(self, x: Tensor) -> Tensor:
        P = self.crop
        N, _, H, W = x.shape
        if not P or (H == P and W == P):
            return x
        if not self.training:
            t, l_ = (H - P) // 2, (W - P) // 2
            return x[:, :, t : t + P, l_ : l_ + P]
        top = torch.randint(H - P + 1, (N,)).tolist()
        left = torch.randint(W - P + 1, (N,)).tolist()
        return torch.stack([x[i, :, t : t + P, l_ : l_ + P] for i, (t, l_) in enumerate(zip(top, left, strict=True))])

    def features(self, x: Tensor) -> Tensor:
        x = self._cut(x)
        for stage in self.stages:
            x = stage(x)
        if self.mbstd_group:
            x = minibatch_stddev(x, self.mbstd_group)
        x = lrelu(self.final_conv(x))
        return self.final_fc(x.flatten(1))


class _LReLU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return lrelu(x)
