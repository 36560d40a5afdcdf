"""A torchrun worker for tests/test_distributed.py (not collected by pytest).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_dist_worker.py MODE OUT

MODE ``selfcond``: trains a self-conditioned WGAN-GP run that reclusters, then every rank saves its
conditioner's state to ``OUT/cond-rank<R>.pt``. MODE ``fail``: rank 1 raises at step 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import gzoo
from gzoo.config import RunConfig
from gzoo.plugins import get_plugin_manager
from gzoo.trainer import Trainer


class FailOnRankOne:
    @gzoo.hookimpl
    def gzoo_after_g_step(self, trainer, step):
        if trainer.dist.rank == 1 and step == 2:
            raise RuntimeError("rank 1 failed on purpose at step 2")


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    common = dict(gen="mlp", disc="mlp", data="ring", gen_opt={"hidden": 16}, disc_opt={"hidden": 16},
                  batch_size=16, sample_every=0, ckpt_every=0, progress=False, out=str(out / "run"))
    pm = get_plugin_manager()
    if mode == "selfcond":
        # with WGAN-GP: the penalty's double backward runs under DDP too
        config = RunConfig(**common, cond="selfcond", steps=5, loss="wgan", reg=["gp"],
                           cond_opt={"k": 4, "subset": 200, "recluster_every": 2})
        trainer = Trainer(config, pm=pm)
        trainer.fit()
        torch.save(trainer.cond.state_dict(), out / f"cond-rank{trainer.dist.rank}.pt")
    elif mode == "fail":
        pm.register(FailOnRankOne(), name="fail-on-rank-one")
        Trainer(RunConfig(**common, steps=50), pm=pm).fit()
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
