"""Hook implementations of the ``timm`` plugin."""

from __future__ import annotations

from typing import Any

from gzoo import hookimpl

from .models import TimmDiscriminator

TIMM = "Wightman, PyTorch Image Models (timm), github.com/huggingface/pytorch-image-models"


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("discriminator", "timm", TimmDiscriminator, paper=TIMM)
