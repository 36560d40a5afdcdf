"""Any of timm's image architectures as a gzoo discriminator (``--disc timm``).

``timm.create_model(model, pretrained=False, in_chans=C, num_classes=0)`` gives a backbone
whose forward returns pooled features ``(N, d)``; a :class:`~gzoo.interfaces.ConditionalHead`
(projection when conditional) turns them into the logit, and ``features(x)`` returns them, so
self-conditioning clusters them like any other discriminator's features.

How small inputs are fitted, the BatchNorm swap and local pretrained weights:
:mod:`gzoo.backbones` (and docs/timm.md).
"""

from __future__ import annotations

from torch import Tensor

from gzoo.backbones import TimmBackbone
from gzoo.interfaces import Discriminator


class TimmDiscriminator(Discriminator):
    """A timm architecture as the discriminator: pooled features -> linear (projection) head.

    Small inputs are fitted by the model's own means (img_size and patch_size for patch models,
    output_stride) or else resized up bilinearly to 2x the model's reduction;
    ``D.backbone.fitted`` says which. BatchNorm is replaced by GroupNorm unless norm=batch.

    Args:
        model: timm architecture name (``timm.list_models()``), e.g. resnet18, efficientnet_b0,
            convnext_atto, mobilenetv3_small_050, vit_tiny_patch16_224
        norm: what replaces BatchNorm: "group" (GroupNorm, gcd(C, 32) groups; batch-independent),
            "layer" (one group), "batch" (keep timm's BatchNorm) or "none"
        fit: how small inputs are fitted: "auto" (img_size/patch_size for patch models,
            output_stride, else a bilinear resize up; see docs/timm.md), "none", or "resize:S"
        pretrained: load timm's pretrained weights from the local cache or checkpoint (never
            downloaded)
        checkpoint: path of a local weight file in timm's format (implies pretrained)
        drop_path: stochastic-depth rate passed to models that take drop_path_rate (0: off)
        cond_head: conditional head (with num_classes > 0): "projection" or "multihead"
    """

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...],
        num_classes: int = 0,
        model: str = "resnet18",
        norm: str = "group",
        fit: str = "auto",
        pretrained: bool = False,
        checkpoint: str = "",
        drop_path: float = 0.0,
        cond_head: str = "projection",
    ):
        super().__init__(image_shape=image_shape, num_classes=num_classes, cond_head=cond_head)
        c, side = self.require_image("timm discriminator")
        self.backbone = TimmBackbone(model, channels=c, side=side, fit=fit, norm=norm, pretrained=pretrained,
                                     checkpoint=checkpoint, drop_path=drop_path)
        self.init_head(self.backbone.width)

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # (N, width)
