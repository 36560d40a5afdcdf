"""Hook implementations of the ``coc`` plugin."""

from __future__ import annotations

from typing import Any

from gzoo import hookimpl

from .cluster import ContextClusterBlock
from .models import TABLE1_OPTIONS, CoCDiscriminator, CoCGenerator
from .viz import clusters

COCGAN = "CoC-GAN: Generate More and More Sets of Points for Image Synthesis (Context Clusters in both G and D)"
COC = "Ma et al. 2023, Image as Set of Points (Context Clusters), ICLR, arXiv:2303.01494"


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("generator", "cocgan", CoCGenerator, paper=COCGAN)
    register("discriminator", "coc", CoCDiscriminator, paper=COCGAN)
    register("block", "context-cluster", ContextClusterBlock, paper=COC, aliases=("coc",))
    register("visualizer", "clusters", clusters, paper=COCGAN + ", §4.5")


@hookimpl
def gzoo_register_presets(register: Any) -> None:
    paper = {"gen": "cocgan", "disc": "coc", "data": "mnist", "batch_size": 256, "lr": 2e-4, "cosine": True, "epochs": 50}
    # §4.2: Adam, lr 2e-4, batch 256, cosine decay, 50 epochs, the minimax loss, no regularizer (the
    # paper names none; gzoo's default run adds coc's spectral norm).
    register("cocgan-paper", {**paper, "loss": "minimax", "optimizer": "adam", "reg": []})
    # §4.2: the WGAN version: RMSprop with the same lr and batch, weight clipping, no sigmoid in D.
    register("cocgan-paper-wgan", {**paper, "loss": "wgan", "optimizer": "rmsprop", "reg": ["clip"]})
    # Table 1 as we read it (docs/coc.md); gzoo's defaults differ where the ablations showed it.
    register("cocgan-paper-table1", {**paper, "loss": "minimax", "optimizer": "adam", "reg": [], **TABLE1_OPTIONS})
