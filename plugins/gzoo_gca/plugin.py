"""Hook implementations of the ``gca`` plugin."""

from __future__ import annotations

from typing import Any

from gzoo import hookimpl

from .blocks import GCABlock, NonLocalBlock
from .models import SAGANDiscriminator, SAGANGenerator
from .viz import attention

GCA = "Peng et al. 2021, Leveraging GANs via Non-local Features (GCA), ICANN"
SAGAN = "Zhang et al. 2019, Self-Attention Generative Adversarial Networks, ICML, arXiv:1805.08318"

#: DCGAN's own settings (the dcgan-paper preset of gzoo_classic); §4: "all models adopt the same
#: hyperparameters", 64x64 images, the block after the 8x8 feature map of G and of D.
DCGAN_64 = {
    "gen": "dcgan",
    "disc": "dcgan",
    "loss": "nonsaturating",
    "optimizer": "adam",
    "lr": 2e-4,
    "betas": [0.5, 0.999],
    "batch_size": 128,
    "data_opt": {"resolution": 64},
}
#: SAGAN's optimisation: hinge loss, Adam (0, 0.999), two time-scale lr (G 1e-4, D 4e-4); spectral
#: norm in D is gzoo's sn regularizer (sagan's G normalises itself).
SAGAN_PAPER = {
    "gen": "sagan",
    "disc": "sagan",
    "loss": "hinge",
    "reg": ["sn"],
    "optimizer": "adam",
    "lr": 1e-4,
    "lr_d": 4e-4,
    "betas": [0.0, 0.999],
    "batch_size": 256,
}


def dcgan_with(block: str) -> dict[str, Any]:
    return {
        **DCGAN_64,
        "gen_opt": {"ch": 64, "insert": f"{block}@8"},
        "disc_opt": {"ch": 64, "norm": "batch", "insert": f"{block}@8"},
    }


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("block", "gca", GCABlock, paper=GCA)
    register("block", "nonlocal", NonLocalBlock, paper=SAGAN, aliases=("self-attention",))
    register("generator", "sagan", SAGANGenerator, paper=SAGAN)
    register("discriminator", "sagan", SAGANDiscriminator, paper=SAGAN)
    register("visualizer", "attention", attention, paper=GCA + ", Fig. 5")


@hookimpl
def gzoo_register_presets(register: Any) -> None:
    register("sagan-paper", dict(SAGAN_PAPER))
    # Table 1 of the GCA paper: DCGAN + GCA, DCGAN + NL, SAGAN + GCA (GCA replaces SAGAN's
    # non-local block), all at 64x64 with the block after the 8x8 feature map.
    register("dcgan-gca", dcgan_with("gca"))
    register("dcgan-nonlocal", dcgan_with("nonlocal"))
    attn = {"attn": "gca", "attn_res": 8}
    register("sagan-gca", {**SAGAN_PAPER, "gen_opt": dict(attn), "disc_opt": dict(attn), "data_opt": {"resolution": 64}})
