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


#: the settings behind docs/benchmarks.md's mode-collapse tables (benchmarks/bench_modes.py runs
#: these presets): each baseline and its self-conditioned twin differ only in ``cond``.
_MLP = {"hidden": 128, "depth": 3}
_TWO_D = {"gen": "mlp", "disc": "mlp", "loss": "nonsaturating", "gen_opt": _MLP, "disc_opt": _MLP,
          "steps": 5000, "batch_size": 128, "lr": 1e-3, "cosine": True}
_STACKED = {"gen": "dcgan", "disc": "dcgan", "loss": "nonsaturating", "data": "stacked-fashion-mnist",
            "gen_opt": {"ch": 32}, "disc_opt": {"ch": 32}, "steps": 3000, "batch_size": 64, "lr": 2e-4}
PRESETS = {
    "gan-ring": {**_TWO_D, "data": "ring"},
    "selfcond-ring": {**_TWO_D, "data": "ring", "cond": "selfcond",
                      "cond_opt": {"k": 50, "recluster_every": 500, "subset": 5000}},
    "gan-grid": {**_TWO_D, "data": "grid"},
    "selfcond-grid": {**_TWO_D, "data": "grid", "cond": "selfcond",
                      "cond_opt": {"k": 50, "recluster_every": 500, "subset": 5000}},
    "dcgan-stacked": dict(_STACKED),
    "selfcond-stacked": {**_STACKED, "cond": "selfcond",
                         "cond_opt": {"k": 100, "recluster_every": 200, "subset": 3000}},
}


@hookimpl
def gzoo_register_presets(register: Any) -> None:
    for name, settings in PRESETS.items():
        register(name, settings)
