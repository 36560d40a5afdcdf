"""Hook implementations of the ``cips`` plugin: the ``cips`` generator, the ``resnet``
discriminator and the ``cips-paper`` / ``cips-small`` presets."""

from __future__ import annotations

from typing import Any

from gzoo import hookimpl

from .models import CIPSGenerator, ResNetDiscriminator

CIPS = "Anokhin et al. 2021, Image Generators with Conditionally-Independent Pixel Synthesis, CVPR, arXiv:2011.13775"
STYLEGAN2 = "Karras et al. 2020, Analyzing and Improving the Image Quality of StyleGAN, CVPR, arXiv:1912.04958"


def ema_decay(half_life_images: float, batch_size: int) -> float:
    """The per-step EMA decay whose weight halves every ``half_life_images`` images."""
    return 0.5 ** (batch_size / half_life_images)


def lazy_lr(lr: float, every: int) -> float:
    """StyleGAN2's learning rate for a network regularised every ``every`` steps."""
    return lr * every / (every + 1)


#: the paper's 256-pixel settings (the official code's defaults): CIPSskip, 512 channels,
#: 15 ModFC layers, 8 mapping layers, batch 32; NS loss, lazy R1 gamma 10 every 16, Adam.
PAPER_BATCH = 32
R1_EVERY = 16
PAPER = {
    "gen": "cips",
    "disc": "resnet",
    "loss": "nonsaturating",
    "reg": ["r1"],
    "reg_opt": {"r1": {"weight": 10.0, "every": R1_EVERY}},
    "gen_opt": {"latent_dim": 512, "width": 512, "depth": 15, "style_dim": 512, "n_mlp": 8},
    "disc_opt": {"ch": 64, "max_ch": 512},
    "optimizer": "adam",
    "lr": 0.002,
    # D is regularised lazily: StyleGAN2 scales its lr by every / (every + 1) (the betas would
    # also be raised to that power; gzoo has one pair of betas for both nets, so they are not)
    "lr_d": lazy_lr(0.002, R1_EVERY),
    "betas": [0.0, 0.99],
    "batch_size": PAPER_BATCH,
    "ema": ema_decay(10_000, PAPER_BATCH),
}

#: a CPU-sized CIPS for 28 to 64 pixels (what bench_cips.py trains)
SMALL_BATCH = 32
SMALL = {
    **PAPER,
    "gen_opt": {"latent_dim": 64, "width": 64, "depth": 5, "n_mlp": 4},
    "disc_opt": {"ch": 32, "max_ch": 128},
    "reg_opt": {"r1": {"weight": 1.0, "every": R1_EVERY}},
    "batch_size": SMALL_BATCH,
    "ema": ema_decay(10_000, SMALL_BATCH),
}


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("generator", "cips", CIPSGenerator, paper=CIPS)
    register("discriminator", "resnet", ResNetDiscriminator, paper=STYLEGAN2 + " (residual D, as CIPS uses)")


@hookimpl
def gzoo_register_presets(register: Any) -> None:
    register("cips-paper", PAPER)
    register("cips-small", SMALL)
