"""Everything a training run writes, behind one seam: the run directory and its lock,
``config.yaml``, ``metrics.jsonl`` (+ TensorBoard events), sample grids and checkpoints.

The trainer computes; :class:`RunOutputs` writes. Under torch.distributed only rank 0 should
write: that check belongs here (``RunOutputs.writer``) and nowhere else.

Layout of a run directory::

    config.yaml            the resolved settings (settings gzoo chose for you as comments)
    metrics.jsonl          one JSON row per logged step
    tb/                    TensorBoard events (when tensorboard is installed)
    samples/step_NNNNNN.png
    checkpoints/last.pt    (and best.pt with --eval-every)
    .gzoo.lock             held while a run trains
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from .checkpoint import clean_stale_temps, save_checkpoint
from .config import RunConfig, save_yaml
from .imaging import save_samples
from .rundir import LOCK_NAME, RunLock, check_fresh, trim_log


class RunOutputs:
    """The files of one run directory. Use as a context manager around training: it holds
    the directory's lock from :meth:`open` to :meth:`close`."""

    def __init__(self, run_dir: Path, *, writer: bool = True):
        self.run_dir = Path(run_dir)
        #: whether this process writes (False on every rank but 0 under torch.distributed)
        self.writer = writer
        self._lock = RunLock(self.run_dir)
        self._tb: Any = None

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    # -- life cycle ----------------------------------------------------------------------------
    def open(self, config: RunConfig, *, resume_step: int | None, notes: list[str] | tuple[str, ...] = ()) -> None:
        """Lock the directory; a new run writes ``config.yaml``, a resumed one trims the log
        back to its checkpoint's step. Stale checkpoint temp files are removed."""
        if not self.writer:
            return
        self._lock.acquire()
        try:
            if resume_step is None:
                check_fresh(self.run_dir)
                save_yaml(config, self.run_dir / "config.yaml", notes)
            else:
                trim_log(self.run_dir / "metrics.jsonl", resume_step)
            for sub in ("checkpoints", "samples"):
                (self.run_dir / sub).mkdir(exist_ok=True)
            clean_stale_temps(self.checkpoints)
        except BaseException:
            self._lock.release()
            raise

    def discard(self) -> None:
        """Remove what :meth:`open` wrote for a new run (a run that failed before its first step),
        and the directory itself when nothing else is in it."""
        if not self.writer:
            return
        for name in ("config.yaml", "metrics.jsonl"):
            (self.run_dir / name).unlink(missing_ok=True)
        for sub in ("checkpoints", "samples", "tb"):
            path = self.run_dir / sub
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()

    def close(self) -> None:
        if self._tb:
            self._tb.close()
        self._tb = None
        self._lock.release()
        if self.writer and self.run_dir.is_dir() and [p.name for p in self.run_dir.iterdir()] == [LOCK_NAME]:
            (self.run_dir / LOCK_NAME).unlink(missing_ok=True)  # a discarded run: leave no trace
            self.run_dir.rmdir()

    # -- what a run writes -----------------------------------------------------------------------
    def log(self, metrics: dict[str, float], step: int) -> None:
        """Append a row to ``metrics.jsonl`` (and TensorBoard when installed)."""
        if not self.writer:
            return
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        tb = self._tensorboard()
        if tb is not None:
            for k, v in metrics.items():
                tb.add_scalar(k, float(v), step)

    def _tensorboard(self) -> Any:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                self._tb = False
                return None
            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        return self._tb or None

    def sample_path(self, step: int) -> Path:
        return self.run_dir / "samples" / f"step_{step:06d}.png"

    def samples(self, samples: Tensor, step: int, real: Tensor | None = None) -> Path:
        """Write a sample grid (images) or scatter plot (2-D points, over ``real``)."""
        path = self.sample_path(step)
        if self.writer:
            save_samples(samples, path, real)
        return path

    def checkpoint(self, state: dict[str, Any], tag: str = "last") -> Path:
        """Write ``checkpoints/<tag>.pt`` atomically (see :mod:`gzoo.checkpoint`)."""
        path = self.checkpoints / f"{tag}.pt"
        if self.writer:
            save_checkpoint(state, path)
        return path

