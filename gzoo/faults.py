"""What keeps a training run from losing work: checks before step 1, the NaN guard, signals,
and saving the last consistent state after an error.

A step goes through three phases, tracked in ``trainer._phase``:

* ``"inputs"`` -- the step's batches are being read; nothing has changed but the data
  sampler's and latents' RNG states, which :meth:`Faults._undo_inputs` restores;
* ``"update"`` -- weights are changing; no state saved now would be consistent;
* ``"idle"`` -- between steps (hooks, sample grids, evaluation, checkpoints).

SIGINT, SIGTERM and SIGHUP ask for a stop after the step (:func:`stop_on_signals`); a second
signal stops at once unless weights are changing or a checkpoint is being written. Any other
exception saves the last finished step (:meth:`Faults._failed`), when its weights are finite.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from .errors import DivergenceError, GzooError, TrainingError, UsageError, one_line
from .rundir import RunLock, check_fresh

#: the signals that stop a run gracefully: Ctrl-C, a scheduler's or ``kill``'s TERM, a closed terminal.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def preflight(trainer: Any) -> None:
    """Check before step 1 what would otherwise fail mid-run: plugin options, visualizer names,
    that periodic evaluation can measure this data, and the run directory (writable, not in
    use, holding no other run: checked again under the lock when training starts)."""
    from .config import plugin_options

    config, pm = trainer.config, trainer.pm
    unknown = sorted(set(config.plugin_opt) - set(pm.info))
    if unknown:
        raise UsageError(f"--plugin-opt names plugin(s) {', '.join(map(repr, unknown))} that are not loaded; "
                         f"loaded plugins: {', '.join(sorted(pm.info))}")
    for name in config.plugin_opt:
        declared = pm.declared_options(name)
        if declared is None:
            takes = sorted(n for n in pm.info if pm.declared_options(n) is not None)
            raise UsageError(f"--plugin-opt: plugin {name!r} takes no options (it declares none with "
                             f"gzoo_plugin_options); plugins that take options: {', '.join(takes) or 'none'}")
        plugin_options(config, name, declared)  # type-checks, refuses unknown keys
    for name in config.viz:
        trainer.registry.get("visualizer", name)
    if config.eval_every:
        from .default_plugins.evaluation import check_evaluable

        check_evaluable(trainer.data, config)
    if not trainer.outputs.writer:  # under torch.distributed only rank 0 touches the directory
        return
    run_dir = trainer.run_dir
    if trainer._resume_state is None and run_dir.exists():
        if not run_dir.is_dir():
            raise UsageError(f"--out {run_dir} is a file, not a directory")
        check_fresh(run_dir)
    RunLock(run_dir).acquire().release()  # creates the directory: after every other check


class Faults:
    """The trainer's fault handling (a mixin of :class:`gzoo.trainer.Trainer`)."""

    def _snapshot_inputs(self: Any) -> None:
        """Remember what reading a step's inputs changes, and enter the "inputs" phase."""
        self._snapshot = {"sampler": self.sampler.state_dict(), "z": self.z_gen.get_state(),
                          "torch": torch.get_rng_state()}
        self._phase = "inputs"

    def _undo_inputs(self: Any) -> None:
        """Return to the start of a step whose inputs were drawn but that changed no weight."""
        if self._phase == "inputs":
            self.sampler.load_state_dict(self._snapshot["sampler"])
            self.z_gen.set_state(self._snapshot["z"])
            torch.set_rng_state(self._snapshot["torch"])
            self._phase = "idle"

    def _guard(self: Any, losses: Mapping[str, float], who: str) -> None:
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        raise DivergenceError(
            f"training diverged at step {self.step} ({who} update): "
            + ", ".join(f"{k}={v}" for k, v in bad.items())
            + f". {self._kept()} Try a lower --lr, --grad-clip, or a regularizer (--reg gp / r1)."
        )

    def _kept(self: Any) -> str:
        if self.saved_step is None or not self.outputs.last.exists():
            return "No checkpoint had been written yet."
        return f"The last good checkpoint is {self.outputs.last} (step {self.saved_step})."

    def _failed(self: Any, exc: Exception) -> Exception:
        """Save what can be saved after ``exc``; the exception to raise, saying what was kept.
        A new run that trained nothing leaves nothing behind (its directory is removed)."""
        self._undo_inputs()
        if self.step == 0 and self._resume_state is None and self._phase != "update":
            self.outputs.discard()
            kept = f"nothing was trained, so {self.run_dir} was removed again."
        elif self._phase == "update":
            kept = f"it struck during an update, so step {self.step} was not saved. {self._kept()}"
        else:
            try:
                kept = f"step {self.step} was saved to {self.save_checkpoint('last')}."
            except GzooError as save_exc:
                kept = f"saving failed too ({save_exc}). {self._kept()}"
        resume = f" Continue with: gzoo run --resume {self.run_dir}" if self.saved_step is not None else ""
        if isinstance(exc, GzooError):
            return type(exc)(f"{exc} (during training: {kept}{resume})")
        return TrainingError(f"training failed at step {self.step}: {type(exc).__name__}: {one_line(exc)}; "
                             f"{kept}{resume}")


@contextmanager
def stop_on_signals(trainer: Any) -> Iterator[None]:
    """While training: the first stop signal asks for a stop after the step; a second one stops
    now (``KeyboardInterrupt``), unless weights are changing or a checkpoint is being written
    (both finish first). The previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if trainer._stop_requested and not trainer._saving and trainer._phase != "update":
            raise KeyboardInterrupt
        trainer.request_stop()

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
