"""Multi-process training on torch.distributed, launched by the standard ``torchrun``.

``torchrun --nproc_per_node N -m gzoo run ...`` (or ``gzoo run --nproc N``, which starts
torchrun for you) runs N copies of the trainer. Each reads its rank from the environment
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
:func:`setup` joins the process group, with ``nccl`` on CUDA and ``gloo`` on the CPU.

What a rank does (docs/distributed.md):

* **Data.** Every rank draws the same global batch of indices and latents from the seeded
  samplers and keeps its own slice of ``batch_size / world`` rows (:meth:`Dist.shard`): no
  sample is used twice, the union over ranks is the single-process batch, and the samplers'
  state (what a checkpoint holds) does not depend on the number of processes, so a run
  resumes on any number that divides the batch.
* **Gradients.** G and D train through ``DistributedDataParallel``, which averages gradients
  over ranks during backward; each rank's loss is the mean over its slice, so the averaged
  gradient is the gradient of the global batch's mean loss.
* **Outputs.** Only rank 0 writes (:class:`gzoo.outputs.RunOutputs`); logged losses are
  averaged over ranks first (:meth:`Dist.mean`).
* **Failures.** A rank that raises exits non-zero; torchrun then stops the others. Without
  torchrun, collectives time out after ``GZOO_DIST_TIMEOUT`` seconds (default 300).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import Tensor

from .errors import UsageError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world`` (``local_rank`` on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints progress (rank 0)."""
        return self.rank == 0

    def shard(self, t: Tensor) -> Tensor:
        """This rank's rows of a global batch ``t`` (``len(t)`` divisible by :attr:`world`)."""
        if not self.active:
            return t
        n = t.shape[0] // self.world
        return t[self.rank * n : (self.rank + 1) * n]

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """``values`` averaged over ranks (one all-reduce; every rank must call it)."""
        if not self.active or not values:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        t = _on_backend_device(t)
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.cpu().tolist(), strict=True)}

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (one all-reduce; every rank must call it)."""
        if not self.active:
            return flag
        t = _on_backend_device(torch.tensor([1.0 if flag else 0.0]))
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable values only: paths, strings, numbers)."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def from_env() -> Dist:
    """The rank, world size and local rank torchrun set (a single process when unset)."""
    try:
        rank, world, local = (int(os.environ.get(k, d)) for k, d in zip(ENV, ("0", "1", "0"), strict=True))
    except ValueError:
        raise UsageError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers, got "
                         f"{', '.join(repr(os.environ.get(k)) for k in ENV)}") from None
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is not within WORLD_SIZE={world}")
    return Dist(rank, world, local)


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (if any) and return this rank and its device.

    On CUDA each rank takes GPU ``LOCAL_RANK`` and the backend is ``nccl``; on the CPU ``gloo``.
    Joining twice (a second trainer in one process) reuses the group.
    """
    dist = from_env()
    if not dist.active:
        return dist, device
    if not torch.distributed.is_available():
        raise UsageError("this PyTorch build has no torch.distributed; train with one process")
    if device.type == "cuda":
        if torch.cuda.device_count() <= dist.local_rank:
            raise UsageError(f"rank {dist.rank} wants GPU {dist.local_rank}, but this machine has "
                             f"{torch.cuda.device_count()}; start at most that many processes per node")
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds()))
    elif torch.distributed.get_world_size() != dist.world:
        raise UsageError("torch.distributed is initialised with another world size than WORLD_SIZE")
    return dist, device


def timeout_seconds() -> float:
    """How long a collective may wait for a rank (``GZOO_DIST_TIMEOUT``, default 300 s)."""
    raw = os.environ.get("GZOO_DIST_TIMEOUT", "300")
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"GZOO_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise UsageError(f"GZOO_DIST_TIMEOUT must be positive, got {raw!r}")
    return value


def _on_backend_device(t: Tensor) -> Tensor:
    """nccl reduces CUDA tensors only; gloo CPU ones."""
    if torch.distributed.get_backend() == "nccl":
        return t.cuda()
    return t


def launch_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs ``gzoo ARGV`` in ``nproc`` processes on this machine
    (``--standalone``: a free local rendezvous port)."""
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "gzoo", *argv]


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (what the launched workers get)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out
