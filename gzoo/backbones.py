"""timm architectures as feature backbones on small images, for gzoo's ``timm`` discriminator
and for evaluation's ``--feature-model timm:NAME``.

:class:`TimmBackbone` wraps ``timm.create_model(name, in_chans=C, num_classes=0)``: its forward
takes ``(N, C, H, W)`` images and returns timm's pooled features ``(N, width)``.

**Small images.** Most timm models are designed for 224-pixel inputs and reduce them 32-fold;
on 28-32 px images some collapse to nothing (ConvNeXt at 28 px: 7 -> 3 -> 1 -> 0). With
``fit="auto"`` (the default) the model's own means are used first, in this order:

1. models with a patch embedding (ViT, DeiT, ...): ``img_size`` = the input side and, when not
   pretrained, ``patch_size`` = the largest of 16, 14, 8, 7, 4, 2, 1 that divides the side
   and leaves at least 7 patches a side (28 px -> patch 4, 7x7 tokens);
2. models whose final feature map would be smaller than 2x2 (side // reduction < 2) and
   that take ``output_stride``: the largest of 16 and 8 that leaves at least 2x2 (dilated
   convolutions instead of the last strides; same weights);
3. otherwise, or when the model still cannot take the input, the input is resized up with
   bilinear interpolation (``align_corners=False``, no antialiasing: it only upsamples) to
   ``2 x reduction`` pixels a side, the smallest that leaves a 2x2 final map.

``fit="none"`` passes the input as it is; ``fit="resize:S"`` always resizes to ``S`` pixels.
What was done is in :attr:`TimmBackbone.fitted`; a model that cannot take the input even then
fails with one line naming the model and the size.

**Batch norm** normalises real and fake batches separately in a discriminator, a known GAN
hazard (and per-sample features then depend on the batch). ``norm="group"`` (default)
replaces every BatchNorm (timm's ``BatchNormAct2d`` keeps its activation) by a GroupNorm of
``gcd(C, 32)`` groups, which is batch-independent; ``"layer"`` uses one group (LayerNorm over
C, H, W); ``"batch"`` keeps timm's BatchNorm; ``"none"`` removes it. The swap is done on the
built module rather than through timm's ``norm_layer`` argument because that argument means a
plain norm in some families (ResNet) and a norm+activation in others (EfficientNet,
MobileNet); swapping modules treats every family alike. Models without BatchNorm (ViT,
ConvNeXt: LayerNorm) are unchanged.

**Pretrained weights** are never downloaded. ``pretrained=True`` loads timm's weights only if
they are already in the local Hugging Face or torch hub cache, or from ``checkpoint=PATH`` (a
local ``.pth``/``.safetensors`` file in timm's format, loaded through timm's own
``pretrained_cfg_overlay=dict(file=PATH)``, which also adapts the first convolution to ``C``
channels); otherwise one line says where to put the file.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ShapeError, UsageError

NORMS = ("group", "layer", "batch", "none")
_PATCHES = (16, 14, 8, 7, 4, 2, 1)
MIN_PATCHES = 7  #: at least this many patches a side for patch-embedding models
MIN_MAP = 2  #: the final feature map's side must be at least this


def _timm() -> Any:
    import timm  # imported on use: timm is slow to import and `gzoo --help` should not wait for it

    return timm


def check_model_name(name: str) -> None:
    """One line with timm's close matches for an unknown architecture name."""
    timm = _timm()
    if timm.is_model(name):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.6)
    if not close:  # a part of the name, e.g. 'resnet' for 'resnet18d'
        close = timm.list_models(f"*{name}*")[:4]
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see timm.list_models()"
    raise UsageError(f"timm has no model {name!r}{hint}")


def patch_size_for(side: int) -> int:
    """The largest patch in 16, 14, 8, 7, 4, 2, 1 that divides ``side`` and leaves at least
    :data:`MIN_PATCHES` patches a side (1 when none does)."""
    for p in _PATCHES:
        if side % p == 0 and side // p >= MIN_PATCHES:
            return p
    return 1


def replace_batch_norm(module: nn.Module, norm: str) -> int:
    """Replace every BatchNorm2d in ``module`` (in place) by ``norm`` ("group", "layer" or
    "none"); timm's norm+activation layers keep their dropout and activation. Returns the count."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            if norm == "none":
                new: nn.Module = nn.Identity()
            else:
                new = nn.GroupNorm(math.gcd(c, 32) if norm == "group" else 1, c, eps=child.eps)
            extra = [getattr(child, a) for a in ("drop", "act") if isinstance(getattr(child, a, None), nn.Module)]
            if extra:  # timm's BatchNormAct2d: norm, then dropout, then the activation
                new = nn.Sequential(new, *extra)
            setattr(module, name, new)
            count += 1
        else:
            count += replace_batch_norm(child, norm)
    return count


def local_weights(timm: Any, name: str) -> str | None:
    """Path of timm's pretrained weights for ``name`` if they are already on disk (the Hugging
    Face hub cache or torch hub's checkpoint folder); never touches the network."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo, _, revision = hub_id.partition("@")
            for fname in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(repo, fname, revision=revision or None)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    url = getattr(cfg, "url", None)
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if path.is_file():
            return str(path)
    return None


class TimmBackbone(nn.Module):
    """A timm model fitted to ``channels x side x side`` images: ``(N, C, H, W) -> (N, width)``.

    ``fit``, ``norm``, ``pretrained`` and ``checkpoint`` as in the module docstring;
    ``drop_path`` is passed as timm's ``drop_path_rate`` (models that take it). Attributes:
    ``width`` (the pooled features' width, measured), ``input_side`` (the side the input is
    resized to, or the data's) and ``fitted`` (what was done, in words).
    """

    def __init__(self, name: str, *, channels: int, side: int, fit: str = "auto", norm: str = "group",
                 pretrained: bool = False, checkpoint: str = "", drop_path: float = 0.0):
        super().__init__()
        if norm not in NORMS:
            raise UsageError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        resize = _parse_fit(fit)
        check_model_name(name)
        timm = _timm()
        kwargs: dict[str, Any] = {"in_chans": channels, "num_classes": 0}
        if drop_path:
            kwargs["drop_path_rate"] = float(drop_path)
        pretrained = bool(pretrained or checkpoint)
        if pretrained:
            path = checkpoint or local_weights(timm, name)
            if not path:
                raise UsageError(
                    f"pretrained weights of timm model {name!r} are not in the local cache and gzoo "
                    "never downloads; pass --disc-opt checkpoint=PATH with a local weight file")
            if not os.path.isfile(path):
                raise UsageError(f"checkpoint {path!r} is not a file")
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        self.name, self.fitted, self.input_side = name, "as built", side
        self.net = self._create(timm, kwargs, channels, side, resize, pretrained)
        if norm != "batch":
            replace_batch_norm(self.net, norm)
        # the pooled width, measured: num_features is the last stage's width, and some families
        # (MobileNetV3) add a head convolution after pooling (head_hidden_size)
        self.width = _width(self.net, channels, self.input_side)

    def _create(self, timm: Any, kwargs: dict[str, Any], c: int, side: int, resize: int | None,
                pretrained: bool) -> nn.Module:
        def build(**extra: Any) -> nn.Module:
            return timm.create_model(self.name, **kwargs, **extra)

        m = build()
        if resize is not None:  # fit=none (0: as it is) or fit=resize:S
            if resize:
                self.input_side, self.fitted = resize, f"bilinear resize to {resize}"
            if not _width(m, c, self.input_side):
                raise ShapeError(f"timm model {self.name!r} cannot take {c}x{self.input_side}x{self.input_side} "
                                 f"images (data {side}x{side}, fit={self.fitted}); try fit=auto or fit=resize:S")
            return m
        if hasattr(m, "patch_embed"):  # ViT-like: the model's own img_size (and patch size)
            extra: dict[str, Any] = {"img_size": side}
            if not pretrained:
                extra["patch_size"] = patch_size_for(side)
            try:
                m = build(**extra)
                self.fitted = ", ".join(f"{k}={v}" for k, v in extra.items())
            except (TypeError, ValueError, AssertionError, RuntimeError):
                pass
        elif side // _reduction(m) < MIN_MAP:
            for stride in (16, 8):
                if side // stride >= MIN_MAP:
                    try:
                        m = build(output_stride=stride)
                        self.fitted = f"output_stride={stride}"
                    except (TypeError, ValueError, AssertionError):
                        pass  # the family takes no output_stride: resized below
                    break
        target = max(side, MIN_MAP * _reduction(m))
        if (side // _reduction(m) >= MIN_MAP or hasattr(m, "patch_embed")) and _width(m, c, side):
            return m
        if target != side and _width(m, c, target):
            self.input_side, self.fitted = target, f"bilinear resize to {target}"
            return m
        raise ShapeError(f"timm model {self.name!r} cannot take {c}x{side}x{side} images "
                         f"(also not resized to {target}); try fit=resize:64")

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.input_side or x.shape[-2] != self.input_side:
            x = F.interpolate(x, size=(self.input_side, self.input_side), mode="bilinear", align_corners=False)
        return self.net(x)  # (N, width): timm's pooled features


def _width(m: nn.Module, c: int, side: int) -> int:
    """The width of ``m``'s pooled features at ``side`` (0 when the forward fails or is not finite)."""
    was = m.training
    m.eval()
    try:
        with torch.no_grad():
            out = m(torch.zeros(2, c, side, side))
        ok = out.ndim == 2 and out.shape[0] == 2 and bool(torch.isfinite(out).all())
        return int(out.shape[1]) if ok else 0
    except (RuntimeError, ValueError, AssertionError, IndexError):
        return 0
    finally:
        m.train(was)


def _reduction(m: nn.Module) -> int:
    info = getattr(m, "feature_info", None)
    try:
        return int(info[-1]["reduction"]) if info else 32
    except (KeyError, TypeError, IndexError):
        return 32


def _parse_fit(fit: str) -> int | None:
    """``auto`` -> None (decide), ``none`` -> 0 (as it is), ``resize:S`` -> S."""
    fit = str(fit).strip()
    if fit == "auto":
        return None
    if fit == "none":
        return 0
    kind, _, size = fit.partition(":")
    if kind == "resize" and size.isdigit() and int(size) > 0:
        return int(size)
    raise UsageError(f"fit must be auto, none or resize:SIZE (e.g. resize:64), got {fit!r}")
