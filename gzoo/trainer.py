"""One readable training loop for every generator/discriminator/loss/regularizer.

Reading order: :class:`Trainer` builds the run (data, conditioner, models, optimizers),
:meth:`Trainer.fit` loops over G steps, :meth:`Trainer.train_step` does ``n_critic``
D updates and one G update through the one update routine :meth:`Trainer._update`, and
:meth:`Trainer.state_dict` is what a checkpoint holds. Every file a run writes goes
through :class:`gzoo.outputs.RunOutputs`.

Determinism: all randomness comes from ``config.seed`` -- the global torch RNG (model
init, penalties), a data generator (batch indices) and a latent generator (z and fake
labels). Every RNG state is checkpointed, so ``--resume`` continues bit for bit on CPU:
10 + 10 steps give the same weights as 20.

Losses are read back from the device (``.item()``) only when they are logged; each update
checks its total once for NaN/inf, which is the one synchronisation per update.

Plugins change training only through the hooks of :mod:`gzoo.hookspecs`; the run's
conditioner is registered with the plugin manager for the run.

Under ``torchrun`` (:mod:`gzoo.distributed`) every rank builds the same trainer, draws the
same global batches and keeps its slice; G and D train through DistributedDataParallel
(``G_train``/``D_train``; ``G``/``D`` stay the plain modules that checkpoints, sampling and
plugins use) and only rank 0 writes.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    find_checkpoint,
    load_checkpoint,
    nonfinite,
)
from .config import RunConfig, complete_for_loss, complete_for_models, pin_clip, plugin_options
from .errors import DivergenceError, UsageError
from .faults import Faults, preflight, stop_on_signals
from .outputs import RunOutputs
from .plugins import PluginManager, get_plugin_manager
from .run import build_components, generate, resolve_device, untrusted_config
from .rundir import choose_run_dir

#: settings that may change when resuming; everything else must match the checkpoint.
RESUMABLE = {
    "steps", "epochs", "device", "log_every", "sample_every", "ckpt_every",
    "eval_every", "eval_n", "eval_metric", "viz", "progress", "n_samples", "out",
    "amp", "compile", "channels_last", "sync_bn",
}


class IndexSampler:
    """Endless shuffled batches of dataset indices; its state is checkpointed."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0
        self.epoch = 0

    def next(self, batch: int) -> Tensor:
        parts, need = [], batch
        while need:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos, self.epoch = 0, self.epoch + 1
            take = min(need, self.n - self.pos)
            parts.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            need -= take
        return torch.cat(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.generator.get_state(), "perm": self.perm, "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.generator.set_state(s["rng"])
        self.perm, self.pos, self.epoch = s["perm"], int(s["pos"]), int(s["epoch"])


class Losses(Mapping):
    """A step's losses as 0-d tensors, read as floats on access (a device sync only then)."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}

    def __getitem__(self, key: str) -> float:
        return float(self.tensors[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


class Trainer(Faults):
    """Builds a run from a :class:`RunConfig` and trains it."""

    def __init__(self, config: RunConfig, *, run_dir: Path | None = None, resume_state: dict | None = None,
                 pm: PluginManager | None = None, explicit: Any = None):
        self.pm = pm or get_plugin_manager()
        self.registry = self.pm.registry
        #: settings gzoo chose for the user (e.g. clipping for WGAN), announced and saved as comments
        self.notes: list[str] = []
        if resume_state is None:  # a resumed run keeps the settings it was started with
            config, self.notes = complete_for_loss(config, self.registry, explicit)
            config, notes = complete_for_models(config, self.registry, explicit)
            self.notes += notes
            config = pin_clip(config, self.registry)
        self.config = c = config
        #: this process's rank in a torchrun job (rank 0 of 1 otherwise); see gzoo.distributed
        self.dist, self.device = distributed.setup(resolve_device(c.device))
        if c.batch_size % self.dist.world:
            raise UsageError(f"--batch-size {c.batch_size} is the global batch: it must be divisible by the "
                             f"{self.dist.world} processes")
        check_speed_options(c, self.device)
        torch.manual_seed(c.seed)

        # data and conditioning
        self.data = self.registry.create("dataset", c.data, **c.data_opt)
        if len(self.data) == 0:
            raise UsageError(f"dataset {c.data!r} is empty")
        if c.cond_opt and not c.cond:
            raise UsageError("--cond-opt given without --cond")
        self.cond = self.registry.create("conditioner", c.cond, dataset=self.data, **c.cond_opt) if c.cond else None
        self.num_classes = self.cond.num_classes if self.cond else 0
        self.image_shape = tuple(self.data.image_shape)

        # models, loss, regularizers, optimizers, schedules
        comps = build_components(c, self.image_shape, self.num_classes, self.registry)
        self.G, self.D, self.loss, self.regs = comps.G.to(self.device), comps.D.to(self.device), comps.loss, comps.regs
        if self.dist.active and c.sync_bn and self.device.type == "cuda":  # SyncBatchNorm is CUDA-only
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        if c.channels_last and len(self.image_shape) == 3:
            self.G, self.D = self.G.to(memory_format=torch.channels_last), self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if c.ema else None
        #: what the updates call: DDP wrappers under torch.distributed, compiled with --compile
        self.G_train, self.D_train = self._training_module(self.G), self._training_module(self.D)
        self.amp = _Amp(c.amp, self.device)
        self.total_steps = self._total_steps()
        self.opt_G = self._optimizer(self.G.parameters(), c.lr)
        self.opt_D = self._optimizer(self.D.parameters(), c.lr_d or c.lr)
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, self.lr_factor)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, self.lr_factor)

        # randomness: data order, latents, sample-grid latents
        self.sampler = IndexSampler(len(self.data), c.seed + 1)
        self.z_gen = torch.Generator().manual_seed(c.seed + 2)
        self.grid_seed = c.seed + 3

        self.step = 0  # G updates done
        self.d_steps = 0  # D updates done
        self.plugin_state: dict[str, Any] = {}
        # every rank uses rank 0's choice (runs/<name>-1 when runs/<name> holds a run)
        self.run_dir = Path(run_dir) if run_dir else self.dist.broadcast(choose_run_dir(c.out, c.default_name()))
        self.outputs = RunOutputs(self.run_dir, writer=self.dist.main)
        self._resume_state = resume_state
        self.saved_step: int | None = resume_state["step"] if resume_state else None
        self._stop_requested = self._saving = False
        #: where the current step is: "idle" (between steps: state consistent), "inputs" (drawing
        #: data: undone from ``_snapshot`` on failure) or "update" (weights changing)
        self._phase, self._snapshot = "idle", {}
        preflight(self)

    def _training_module(self, model: nn.Module) -> nn.Module:
        if self.dist.active and any(p.requires_grad for p in model.parameters()):
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.config.compile else model

    def _total_steps(self) -> int:
        c = self.config
        if c.epochs is not None:
            return max(1, math.ceil(c.epochs * len(self.data) / (c.batch_size * c.n_critic)))
        return c.steps

    def _optimizer(self, params: Any, lr: float) -> torch.optim.Optimizer:
        if self.config.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, betas=tuple(self.config.betas))
        return torch.optim.RMSprop(params, lr=lr)

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier at ``step``: 1, or the cosine ``(1 + cos(pi t / T)) / 2``.

        ``T`` is the run's current total, read at every step: extending a finished cosine
        run (``--resume --steps`` larger) stretches the schedule over the new total, so the
        rate continues from the stretched curve's value at the resume step and decays to 0
        at the new end, instead of climbing back up as a periodic cosine would.
        """
        if not self.config.cosine:
            return 1.0
        total = max(1, self.total_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> str:
        """Train until ``total_steps``; returns "finished" or "interrupted", or raises.

        Holds the run directory's lock throughout. SIGINT, SIGTERM and SIGHUP finish the
        current step, save ``last.pt`` and return "interrupted"; a second signal stops at
        once where the state is consistent (between steps, or before a step changed any
        weight) and saves that. Any other exception saves the last finished step as
        ``last.pt`` when its weights are finite, then re-raises with a line saying so.
        """
        resume_step = None if self._resume_state is None else int(self._resume_state["step"])
        self.outputs.open(self.config, resume_step=resume_step, notes=self.notes)
        if self.cond is not None:
            self.pm.pm.register(self.cond, name="run-conditioner")
        status = "finished"
        with stop_on_signals(self):  # also while an emergency checkpoint is written
            try:
                if self.cond is not None:
                    self.cond.setup(self)
                if self._resume_state is not None:
                    self.load_state_dict(self._resume_state)
                self.pm.hook.gzoo_train_start(trainer=self)
                status = self._loop()
            except KeyboardInterrupt:  # a second signal: stop now, at a consistent point
                if self._phase == "update":
                    raise
                self._undo_inputs()
                self.save_checkpoint("last")
                status = "interrupted"
            except DivergenceError:
                status = "diverged"
                raise
            except Exception as exc:
                status = "failed"
                raise self._failed(exc) from exc
            finally:
                self.pm.hook.gzoo_train_end(trainer=self, status=status)
                if self.cond is not None and self.pm.pm.is_registered(self.cond):
                    self.pm.pm.unregister(self.cond)
                self.outputs.close()
        return status

    def _loop(self) -> str:
        c = self.config
        start_step, t0 = self.step, time.perf_counter()
        window_t, window_steps = t0, 0
        with _progress(c.progress and self.dist.main and self.step < self.total_steps) as progress:
            task = progress.add_task("training", total=self.total_steps, completed=self.step, status="")
            while self.step < self.total_steps:
                losses = self.train_step()
                window_steps += 1
                if c.log_every and (self.step % c.log_every == 0 or self.step == self.total_steps):
                    now = time.perf_counter()
                    ips = window_steps * c.batch_size / max(now - window_t, 1e-9)  # the global batch
                    losses = self.dist.mean(losses)  # every rank logs at the same steps
                    row = {**losses, "lr": self.opt_G.param_groups[0]["lr"], "img_per_s": ips, "time": now - t0}
                    self.log_metrics(row)
                    status = " ".join(f"{k}={v:.3f}" for k, v in losses.items()) + f" | {ips:.0f} img/s"
                    progress.update(task, status=status)
                    window_t, window_steps = now, 0
                progress.update(task, completed=self.step)
                if c.sample_every and self.step % c.sample_every == 0:
                    self.write_samples()
                if c.ckpt_every and self.step % c.ckpt_every == 0:
                    self.save_checkpoint("last")
                if self.dist.any(self._stop_requested):  # a signal on any rank stops every rank here
                    self.save_checkpoint("last")
                    return "interrupted"
        if self.step > start_step or not self.outputs.last.exists():
            self.write_samples()
            self.save_checkpoint("last")
        return "finished"

    def train_step(self) -> Losses:
        """``n_critic`` discriminator updates, then one generator update.

        The step's data is read first, while nothing has changed yet: a batch that cannot be
        read (a corrupt image) leaves the run at the previous step, which is then saved.
        """
        c, G, D, hook = self.config, self.G, self.D, self.pm.hook
        self._snapshot_inputs()
        batches = [self.next_batch() for _ in range(c.n_critic)]
        losses = Losses()
        for x, y in batches:
            hook.gzoo_before_d_step(trainer=self, step=self.step)
            y_real = self.cond.real_labels(x, y) if self.cond else None
            z, y_fake = self.latents(c.batch_size)
            with torch.no_grad(), self.amp():
                fake = G(z, y_fake)
            with self.amp():
                loss_d = self.loss.d_loss(self.D_train(x, y_real), self.D_train(fake, y_fake))
            fake = fake.float()
            # penalties on the plain D, in float32: their gradients reach D's parameters in the same
            # backward, so DDP averages them with the loss's
            penalties = self._penalties("d", self.d_steps, D, x, fake, y_real, y_fake)
            self._update("D", D, self.opt_D, loss_d, penalties, losses)
            self.d_steps += 1
            hook.gzoo_after_d_step(trainer=self, step=self.step, losses=losses)

        D.requires_grad_(False)
        try:
            z, y_fake = self.latents(c.batch_size)
            with self.amp():  # G through DDP (its gradients are averaged), D plain: it is not updated here
                fake = self.G_train(z, y_fake)
                real_logits = D(x, y_real) if self.loss.relativistic else None  # on the last D batch
                loss_g = self.loss.g_loss(D(fake, y_fake), real_logits)
            penalties = self._penalties("g", self.step, D, None, fake, None, y_fake)  # the same fake batch
            self._update("G", G, self.opt_G, loss_g, penalties, losses)
        finally:
            D.requires_grad_(True)
        if self.G_ema is not None:
            update_ema(self.G_ema, G, c.ema)
        self.sched_G.step()
        self.sched_D.step()
        self.step += 1
        self._phase = "idle"
        hook.gzoo_after_g_step(trainer=self, step=self.step, losses=losses)
        return losses

    def _penalties(self, target: str, step: int, *args: Any) -> dict[str, tuple[float, Tensor]]:
        """The due penalties of ``target`` ("d" or "g"): name -> (scale, value), the scale being
        ``weight * every`` (a lazy penalty counts for the steps it skipped)."""
        return {name: (reg.weight * reg.every, reg.penalty(*args))
                for name, reg in self.regs.items() if reg.target == target and reg.due(step)}

    def _update(self, who: str, model: nn.Module, opt: torch.optim.Optimizer, loss: Tensor,
                penalties: dict[str, tuple[float, Tensor]], losses: Losses) -> None:
        """The one update of D or G: the loss plus its scaled penalties, the NaN guard,
        backward, gradient clipping, the optimizer step, the regularizers' after-step hooks."""
        total = loss.float() + sum(scale * p for scale, p in penalties.values())
        losses.tensors[f"loss_{who.lower()}"] = loss.detach().float()
        losses.tensors.update({f"reg_{name}": p.detach() for name, (_, p) in penalties.items()})
        if not bool(torch.isfinite(total.detach())):  # the update's one device sync
            self._guard(losses, who)
        opt.zero_grad(set_to_none=True)
        scaler = self.amp.scalers.get(who)  # fp16 only
        (scaler.scale(total) if scaler else total).backward()
        if self.config.grad_clip:
            if scaler:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
        self._phase = "update"
        if scaler:
            scaler.step(opt)  # skipped when the scaled gradients overflowed
            scaler.update()
        else:
            opt.step()
        for reg in self.regs.values():
            reg.after_d_step(model) if who == "D" else reg.after_g_step(model)

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """This rank's slice of the next global batch (the whole batch on one process)."""
        x, y = self.data.get_batch(self.dist.shard(self.sampler.next(self.config.batch_size)))
        x = x.to(self.device, non_blocking=True)
        if self.config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def latents(self, n: int) -> tuple[Tensor, Tensor | None]:
        """Latents (and fake labels) for a global batch of ``n``: this rank's slice of them. Every
        rank draws all ``n``, so the latent stream does not depend on the number of processes."""
        z = self.dist.shard(self.G.sample_latent(n, generator=self.z_gen))
        y = self.dist.shard(self.cond.fake_labels(n, generator=self.z_gen)).to(self.device) if self.cond else None
        return z, y

    def plugin_options(self, plugin: str, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The options ``--plugin-opt PLUGIN.KEY=VALUE`` gave ``plugin``, over its declared
        defaults (``gzoo_plugin_options``, or ``defaults``); checked before training starts."""
        if defaults is None:
            defaults = self.pm.declared_options(plugin) or {}
        return plugin_options(self.config, plugin, defaults)

    def request_stop(self) -> None:
        """Stop after the current step and save a checkpoint (what Ctrl-C does)."""
        self._stop_requested = True

    # -- outputs (written through self.outputs) -----------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Append ``metrics`` to ``metrics.jsonl`` (and TensorBoard) at ``step`` (default: now)."""
        self.outputs.log(dict(metrics), self.step if step is None else step)

    def generate(self, n: int, *, ema: bool = True, seed: int = 0, return_labels: bool = False,
                 **options: Any) -> Tensor | tuple[Tensor, Tensor | None]:
        """``n`` samples on the CPU (EMA weights when the run keeps them), reproducible from
        ``seed``; with ``return_labels=True``, ``(samples, labels)`` (labels None when
        unconditional): the labels given as ``y=``, else those drawn from the conditioner."""
        G = self.G_ema if (ema and self.G_ema is not None) else self.G
        return generate(G, n, cond=self.cond, seed=seed, return_labels=return_labels, **options)

    def write_samples(self) -> Path:
        if not self.dist.main:  # only rank 0 draws grids, runs visualizers and the sample hook
            return self.outputs.sample_path(self.step)
        n = self.config.n_samples if len(self.image_shape) == 3 else 2500
        y = torch.arange(n) % self.num_classes if self.num_classes and len(self.image_shape) == 3 else None
        samples = self.generate(n, seed=self.grid_seed, y=y)
        real = self.data.get_batch(torch.arange(min(len(self.data), 2500)))[0] if len(self.image_shape) == 1 else None
        path = self.outputs.samples(samples, self.step, real)
        for name in self.config.viz:
            self.registry.create("visualizer", name, run=self, out=path.with_name(f"{path.stem}_{name}.png"))
        self.pm.hook.gzoo_on_sample(trainer=self, step=self.step, path=path)
        return path

    def all_gather(self, t: Tensor) -> Tensor:
        """Concatenate ``t`` from every rank (identity on a single process)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [torch.empty_like(t) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(parts, t)
            return torch.cat(parts)
        return t

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
            "step": self.step, "d_steps": self.d_steps, "config": self.config.to_dict(),
            "image_shape": list(self.image_shape), "num_classes": self.num_classes, "versions": self.pm.versions(),
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "sched_G": self.sched_G.state_dict(), "sched_D": self.sched_D.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "z": self.z_gen.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "cond": self.cond.state_dict() if self.cond is not None else {},
            "plugins": {},
        }
        if self.amp.scalers:  # fp16: the gradient scalers' scales
            state["amp_scalers"] = {k: sc.state_dict() for k, sc in self.amp.scalers.items()}
        self.pm.hook.gzoo_checkpoint_save(trainer=self, state=state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.z_gen.set_state(state["rng"]["z"])
        if state["rng"].get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step, self.d_steps = int(state["step"]), int(state["d_steps"])
        for sched in (self.sched_G, self.sched_D):  # the schedule is a function of the step
            sched.last_epoch = self.step
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
                group["lr"] = base * self.lr_factor(self.step)
        if self.cond is not None:
            self.cond.load_state_dict(state.get("cond") or {})
        for k, sc in self.amp.scalers.items():
            if k in (state.get("amp_scalers") or {}):
                sc.load_state_dict(state["amp_scalers"][k])
        self.pm.hook.gzoo_checkpoint_load(trainer=self, state=state)

    def save_checkpoint(self, tag: str = "last") -> Path:
        """Write ``checkpoints/<tag>.pt`` atomically; never a checkpoint of non-finite weights."""
        bad = [f"{name}.{k}" for name, m in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)) if m is not None
               for k in nonfinite(m.state_dict())]
        if bad:
            raise DivergenceError(
                f"training diverged at step {self.step}: non-finite weights ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}), so {tag}.pt was not overwritten. {self._kept()} "
                "Try a lower --lr, --grad-clip, or a regularizer (--reg gp / r1)."
            )
        self._saving = True
        try:
            path = self.outputs.checkpoint(self.state_dict(), tag)
        finally:
            self._saving = False
        if tag == "last":
            self.saved_step = self.step
        return path


class _Amp:
    """``--amp``: ``amp()`` is the autocast context of the forward passes (a no-op when off);
    ``scalers`` holds fp16's gradient scalers for "D" and "G" (empty otherwise)."""

    def __init__(self, mode: str, device: torch.device):
        self.enabled = mode != "off"
        self.device_type = device.type
        self.dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        self.scalers: dict[str, Any] = {}
        if mode == "fp16":
            self.scalers = {who: torch.amp.GradScaler(device.type) for who in ("D", "G")}

    def __call__(self) -> Any:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def check_speed_options(c: RunConfig, device: torch.device) -> None:
    """One line for speed options this device cannot use."""
    if c.amp == "fp16" and device.type != "cuda":
        raise UsageError("--amp fp16 needs a CUDA device (a gradient scaler on half precision); "
                         "on the CPU use --amp bf16")


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1.0 - decay)
        for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
            be.copy_(bm)


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"), disable=not enabled, transient=False,
    )


def train(config: RunConfig, *, pm: PluginManager | None = None) -> Trainer:
    """Build and train a run; returns the trainer (``trainer.run_dir`` holds the outputs)."""
    trainer = Trainer(config, pm=pm)
    trainer.fit()
    return trainer


def resume(run_dir: str | Path, overrides: dict[str, Any] | None = None, *, pm: PluginManager | None = None) -> Trainer:
    """Continue the run in ``run_dir`` from its last checkpoint."""
    run_dir = Path(run_dir)
    state = load_checkpoint(find_checkpoint(run_dir, "last"))
    config = untrusted_config(state["config"], source=str(run_dir))
    overrides = dict(overrides or {})
    changed = {k for k, v in overrides.items() if k not in RESUMABLE and config.to_dict().get(k) != v}
    if changed:
        raise UsageError(
            f"cannot change {', '.join(sorted(changed))} when resuming {run_dir}; "
            f"settings that may change: {', '.join(sorted(RESUMABLE))}"
        )
    config = config.updated({k: v for k, v in overrides.items() if k != "out"})
    trainer = Trainer(config, run_dir=run_dir, resume_state=state, pm=pm)
    trainer.fit()
    return trainer
