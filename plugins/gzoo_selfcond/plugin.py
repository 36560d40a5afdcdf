"""Hook implementations of the ``selfcond`` plugin."""

from __future__ import annotations

from typing import Any

from gzoo import hookimpl

from .clustering import SelfConditioner
from .viz import selfcond_clusters

PAPER = "Liu et al. 2020, Diverse Image Generation via Self-Conditioned GANs, CVPR, arXiv:2006.10728"


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("conditioner", "selfcond", SelfConditioner, paper=PAPER)
    register("visualizer", "selfcond-clusters", selfcond_clusters, paper=PAPER)
