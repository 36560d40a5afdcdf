"""Speed at the same architecture: GFLOP per training step, images/s, GFLOP/s and the share
of the machine's float32 matmul peak, for DCGAN (dcgan + dcgan) and CoC-GAN (cocgan + coc).

Every trainer is built with ``gzoo.trainer.Trainer`` (digits 1x28x28, batch 64, non-saturating
loss, Adam, default model options); a step is ``Trainer.train_step()``: one D update and one G
update, forward and backward. Two worker processes train them, because two of the things measured
are settings of a process, fixed before torch loads:

* ``gzoo``: the ``gzoo`` command's process settings (``gzoo.runtime.configure``: OpenMP's idle
  threads spin briefly before they sleep); DCGAN, the CoC-GAN rows and the matmul peak.
* ``before``: the process settings before issue 11's speed work (``OMP_WAIT_POLICY=PASSIVE``: idle
  threads sleep at once); the default CoC-GAN computed as before the speed work (:func:`computed_as`),
  and computed as shipped. The ratio of the default row to the first is the speed-up at the same
  FLOPs and outputs; the second splits it into the computation's share and the settings'.

The parent process alternates rounds between the workers (the idle one waits on its input), so
all rows see the same load.

* GFLOP/step: ``torch.utils.flop_counter.FlopCounterMode`` around one real step after the
  warm-up. It counts the matrix products (mm, addmm, bmm, einsum's bmm, convolutions and their
  backward), not elementwise work, normalisation, reductions or the optimizer.
* images/s: batch x steps / wall time of a round of ``--steps`` steps, after one untimed step
  (a model's first step after the others' rounds finds its memory cold); median over ``--rounds`` rounds.
* peak: a ``--mm-size`` square float32 ``torch.mm`` (2 n^3 FLOP), ``--mm-reps`` per round,
  median of all; same thread count. GFLOP/s = GFLOP/step x steps/s; "of peak" is its share.

    python benchmarks/bench_coc_speed.py [--threads 2] [--steps 6] [--rounds 9] [--mm-size 2048]  # about 7 min
"""

from __future__ import annotations

import os
import sys


def _worker_kind() -> str | None:
    """``gzoo`` or ``before`` in a worker process (``--worker KIND``); None in the parent or on import."""
    if __name__ == "__main__" and "--worker" in sys.argv[:-1]:
        return sys.argv[sys.argv.index("--worker") + 1]
    return None


from gzoo import runtime  # noqa: E402  (no torch)

WORKER = _worker_kind()
if WORKER == "gzoo":  # before torch loads, as the gzoo command does
    runtime.configure()
else:  # the "before" worker (its environment is set by the parent), the parent, and importers
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import child_env, command_line, markdown_table, write_section  # noqa: E402
from _workers import Rounds, serve  # noqa: E402

from gzoo.config import RunConfig  # noqa: E402
from gzoo.trainer import Trainer  # noqa: E402
from gzoo_coc import cluster, points  # noqa: E402
from gzoo_coc.models import TABLE1_OPTIONS  # noqa: E402

DEFAULT = "CoC-GAN (cocgan + coc), spectral norm (`--reg sn`)"
#: the default CoC-GAN row again, computed as before issue 11's speed work (see :func:`computed_as`),
#: in a process with the settings before it
BEFORE = ("CoC-GAN, spectral norm, as before: computed as before (chunks on 2 threads, autograd's strided-view "
          "backward), process settings as before (passive OpenMP wait)")
#: the default CoC-GAN row again, computed as shipped, in a process with the settings before the speed work
OLD_PROCESS = "CoC-GAN, spectral norm, computed as shipped, process settings as before"
#: label -> (G, D, settings); settings named here are taken literally (``reg: []``: no regularizer).
#: CoC-GAN's rows name their regularizers: gzoo's default for ``coc`` (spectral norm and a lazy R1
#: penalty every 16 D steps) would put R1's extra backward into some rounds and not others.
MODELS = {"DCGAN (dcgan + dcgan)": ("dcgan", "dcgan", {}),
          DEFAULT: ("cocgan", "coc", {"reg": ["sn"]}),
          "CoC-GAN, no regularizer (`--reg none`)": ("cocgan", "coc", {"reg": []}),
          "CoC-GAN, Table 1's models, no regularizer": ("cocgan", "coc", {**TABLE1_OPTIONS, "reg": []}),
          OLD_PROCESS: ("cocgan", "coc", {"reg": ["sn"]}),
          BEFORE: ("cocgan", "coc", {"reg": ["sn"]})}
#: which worker process trains each row (the other rows: ``gzoo``)
BEFORE_ROWS = (OLD_PROCESS, BEFORE)
#: the variables that set how a worker's OpenMP threads wait, reported with its rows
PROCESS_VARS = (*runtime.OPENMP_USER_VARS, "OMP_NUM_THREADS")
OPS = {"convolution": "conv", "convolution_backward": "conv bwd", "addmm": "addmm", "mm": "mm", "bmm": "bmm"}


@contextlib.contextmanager
def computed(chunk_max_threads: int, strided_view: bool):
    """The same model, weights and outputs, computed another way: the point-wise work in chunks of
    points on up to ``chunk_max_threads`` threads (``cluster.CHUNK_MAX_THREADS``), and (``strided_view``)
    the overlapping neighbourhoods differentiated by autograd through their strided view
    (``points.strided_view_neighbourhoods``) instead of their hand-written adjoint."""
    saved = cluster.CHUNK_MAX_THREADS, points.neighbourhoods
    cluster.CHUNK_MAX_THREADS = chunk_max_threads
    if strided_view:
        points.neighbourhoods = points.strided_view_neighbourhoods
    try:
        yield
    finally:
        cluster.CHUNK_MAX_THREADS, points.neighbourhoods = saved


def computed_as(label: str) -> contextlib.AbstractContextManager:
    """How a row's step is computed: as before the speed work (chunks on every thread count, the
    strided-view backward) for ``BEFORE``, as shipped for the others."""
    return computed(1 << 30, True) if label == BEFORE else contextlib.nullcontext()


def count_flops(trainer: Trainer) -> tuple[float, str]:
    """GFLOP of one real train_step, and the split by operator."""
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step()
    per_op = sorted(counter.get_flop_counts()["Global"].items(), key=lambda kv: -kv[1])
    split = ", ".join(f"{OPS.get(op.__name__.split('.')[0], op.__name__.split('.')[0])} {n / 1e9:.3g}"
                      for op, n in per_op)
    return counter.get_total_flops() / 1e9, split


def time_round(trainer: Trainer, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return time.perf_counter() - t


def time_mm(a: torch.Tensor, b: torch.Tensor, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        out.append(time.perf_counter() - t)
    return out


def worker(args: argparse.Namespace) -> None:
    """Train this worker's rows: report the FLOP counts, then one round per ``round`` line on stdin
    (each row ``--steps`` steps, and in the ``gzoo`` worker ``--mm-reps`` matmuls), as JSON lines."""
    torch.set_num_threads(args.threads)
    labels = [k for k in MODELS if (k in BEFORE_ROWS) == (args.worker == "before")]
    with tempfile.TemporaryDirectory(prefix="coc-speed-") as work:
        trainers, flops = {}, {}
        for i, label in enumerate(labels):
            gen, disc, opts = MODELS[label]
            config = RunConfig(gen=gen, disc=disc, loss="nonsaturating", data="digits", batch_size=args.batch_size,
                               device="cpu", progress=False, sample_every=0, out=str(Path(work) / f"{gen}{i}"),
                               **opts)
            trainers[label] = Trainer(config, run_dir=Path(work) / f"{gen}{i}", explicit=set(opts))
            with computed_as(label):
                time_round(trainers[label], args.warmup)
                flops[label] = count_flops(trainers[label])
        n = args.mm_size
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        time_mm(a, b, 2)  # warm-up

        def round_() -> dict:
            times = {}
            for label, trainer in trainers.items():
                with computed_as(label):
                    time_round(trainer, 1)  # untimed: the first step after a pause pays for cold caches and pages
                    times[label] = time_round(trainer, args.steps)
            return {"times": times, "mm": time_mm(a, b, args.mm_reps) if args.worker == "gzoo" else []}

        serve({"flops": flops, "threads": torch.get_num_threads(),
               "env": {k: os.environ.get(k) for k in PROCESS_VARS}}, round_)


def worker_command(kind: str, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    env = child_env(OMP_WAIT_POLICY="PASSIVE") if kind == "before" else child_env()  # before: gzoo's setting then
    argv = [sys.executable, __file__, "--worker", kind, "--threads", str(args.threads), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--mm-size", str(args.mm_size),
            "--mm-reps", str(args.mm_reps)]
    return argv, env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="training steps per model per round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per model before the FLOP count")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mm-size", type=int, default=2048, help="side of the square float32 matmul for the peak")
    ap.add_argument("--mm-reps", type=int, default=3, help="matmuls per round")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--worker", choices=("gzoo", "before"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    t_start = time.perf_counter()
    rounds: dict[str, list[float]] = {k: [] for k in MODELS}
    mm_times: list[float] = []
    with Rounds({kind: worker_command(kind, args) for kind in ("gzoo", "before")}) as workers:
        ready = workers.ready()
        flops = {**ready["gzoo"]["flops"], **ready["before"]["flops"]}
        for r, replies in workers.rounds(args.rounds):
            for reply in replies.values():
                for label, t in reply["times"].items():
                    rounds[label].append(t)
                mm_times += reply["mm"]
            print(f"[{time.perf_counter() - t_start:5.0f}s] round {r + 1}/{args.rounds}: "
                  + "; ".join(f"{k[:24]} {v[-1] / args.steps:.3f} s/step" for k, v in rounds.items()), flush=True)

    n = args.mm_size
    peak = 2 * n**3 / statistics.median(mm_times) / 1e9
    rows = []
    for label in MODELS:
        gflop, split = flops[label]
        step_s = statistics.median(rounds[label]) / args.steps
        rate = gflop / step_s
        rows.append([label, f"{gflop:.3g}", f"{args.batch_size / step_s:.1f}", f"{step_s * 1e3:.0f}", f"{rate:.1f}",
                     f"{rate / peak:.0%}", split])
    rows.append([f"float32 torch.mm {n}x{n} (peak)", f"{2 * n**3 / 1e9:.3g}", "-",
                 f"{statistics.median(mm_times) * 1e3:.0f}", f"{peak:.1f}", "100%", "mm"])
    table = markdown_table(["model", "GFLOP/step", "images/s", "ms/step", "GFLOP/s", "of mm peak",
                            "GFLOP by op"], rows)
    step = {k: statistics.median(v) for k, v in rounds.items()}
    summary = (f"The default CoC-GAN step against the same step as before the speed work: "
               f"**{step[BEFORE] / step[DEFAULT]:.2f}x** (target 2x; the same FLOPs: {flops[DEFAULT][0]:.3g} and "
               f"{flops[BEFORE][0]:.3g} GFLOP): {step[BEFORE] / step[OLD_PROCESS]:.2f}x from the computation "
               f"(both with the process settings before), {step[OLD_PROCESS] / step[DEFAULT]:.2f}x from gzoo's process "
               f"settings (both computed as shipped).")
    print(table)
    print(summary)
    env = {kind: ", ".join(f"{k}={v}" for k, v in r["env"].items() if v is not None) or "none"
           for kind, r in ready.items()}
    print(f"threads = {ready['gzoo']['threads']}, environment: {env}, total {time.perf_counter() - t_start:.0f}s")
    if not args.no_write:
        write_section(
            "coc-speed",
            "## Speed at the same architecture: GFLOP/step, GFLOP/s, share of the matmul peak\n\n"
            f"digits 1x28x28, batch {args.batch_size}, non-saturating loss, Adam, default model options, regularizers "
            "as labelled (gzoo's default for CoC-GAN is spectral norm and a lazy R1 penalty every 16 D steps; R1's "
            "extra backward is not timed here); a step is "
            "`Trainer.train_step()` (one D update and one G update, forward and backward). GFLOP/step: "
            "`torch.utils.flop_counter.FlopCounterMode` around one real step (matrix products and convolutions, "
            "forward and backward; elementwise work, norms and the optimizer are not counted). images/s: batch x "
            f"steps / time of a round of {args.steps} steps (each after one untimed step: a model's first step after "
            f"the other rows' rounds finds its memory cold), median of {args.rounds} rounds after {args.warmup} "
            f"warm-up steps, on a CPU with {ready['gzoo']['threads']} threads. Two worker processes train the rows: "
            "one with the `gzoo` command's process settings (`gzoo.runtime.configure()`: OpenMP's idle threads spin "
            f"briefly, then sleep: {env['gzoo']}) for DCGAN, the first CoC-GAN rows and the peak "
            f"({args.mm_reps} float32 `torch.mm` {n}x{n} per round, median); one with the settings before issue 11's "
            f"speed work ({env['before']}: idle threads sleep at once) for the last two rows. The rounds alternate "
            "between the processes. GFLOP/s = GFLOP/step x steps/s. The last row is the default row's model computed "
            "as before the speed work of issue 11 (point-wise work in chunks of points on any thread count; "
            "autograd's backward through the overlapping neighbourhoods' strided view) in the process with the "
            "settings before it; the row above it is the same model computed as shipped in that process."
            f"\n\n{table}\n\n{summary}\n\nCommand: `{command_line()}`",
        )


if __name__ == "__main__":
    main()
