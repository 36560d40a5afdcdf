"""Speed at the same architecture: GFLOP per training step, images/s, GFLOP/s and the share
of the machine's float32 matmul peak, for DCGAN (dcgan + dcgan) and CoC-GAN (cocgan + coc).

Both trainers are built in this one process (digits 1x28x28, batch 64, non-saturating loss,
Adam, default model options) with ``gzoo.trainer.Trainer``; a step is ``Trainer.train_step()``:
one D update and one G update, forward and backward.

* GFLOP/step: ``torch.utils.flop_counter.FlopCounterMode`` around one real step after the
  warm-up. It counts the matrix products (mm, addmm, bmm, einsum's bmm, convolutions and their
  backward), not elementwise work, normalisation, reductions or the optimizer.
* images/s: batch x steps / wall time of a round of ``--steps`` steps; median over ``--rounds``
  rounds. Rounds interleave the models and the peak measurement, so all see the same load.
* before: the default CoC-GAN trained again in the same rounds, computed as before issue 11's speed
  work (:func:`computed_as`): the ratio of the two steps is the speed-up at the same FLOPs and outputs.
* peak: a ``--mm-size`` square float32 ``torch.mm`` (2 n^3 FLOP), ``--mm-reps`` per round,
  median of all; same thread count. GFLOP/s = GFLOP/step x steps/s; "of peak" is its share.

OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless set): on a
shared machine spinning threads make every small op wait for a descheduled partner.

    python benchmarks/bench_coc_speed.py [--threads 2] [--steps 6] [--rounds 9] [--mm-size 2048]  # 1-2 min
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, write_section  # noqa: E402

from gzoo.config import RunConfig  # noqa: E402
from gzoo.trainer import Trainer  # noqa: E402
from gzoo_coc import cluster, points  # noqa: E402
from gzoo_coc.models import TABLE1_OPTIONS  # noqa: E402

DEFAULT = "CoC-GAN (cocgan + coc), spectral norm (`--reg sn`)"
#: the default CoC-GAN row again, computed as before issue 11's speed work (see :func:`computed_as`)
BEFORE = "CoC-GAN, spectral norm, computed as before (chunks on 2 threads, autograd's strided-view backward)"
#: label -> (G, D, settings); settings named here are taken literally (``reg: []``: no regularizer).
#: CoC-GAN's rows name their regularizers: gzoo's default for ``coc`` (spectral norm and a lazy R1
#: penalty every 16 D steps) would put R1's extra backward into some rounds and not others.
MODELS = {"DCGAN (dcgan + dcgan)": ("dcgan", "dcgan", {}),
          DEFAULT: ("cocgan", "coc", {"reg": ["sn"]}),
          "CoC-GAN, no regularizer (`--reg none`)": ("cocgan", "coc", {"reg": []}),
          "CoC-GAN, Table 1's models, no regularizer": ("cocgan", "coc", {**TABLE1_OPTIONS, "reg": []}),
          BEFORE: ("cocgan", "coc", {"reg": ["sn"]})}
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="coc-speed-") as work:
        trainers = {}
        for i, (label, (gen, disc, opts)) in enumerate(MODELS.items()):
            config = RunConfig(gen=gen, disc=disc, loss="nonsaturating", data="digits", batch_size=args.batch_size,
                               device="cpu", progress=False, sample_every=0, out=str(Path(work) / f"{gen}{i}"),
                               **opts)
            trainers[label] = Trainer(config, run_dir=Path(work) / f"{gen}{i}", explicit=set(opts))
        flops = {}
        for label, trainer in trainers.items():
            with computed_as(label):
                time_round(trainer, args.warmup)
                flops[label] = count_flops(trainer)

        n = args.mm_size
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        time_mm(a, b, 2)  # warm-up
        mm_times: list[float] = []
        rounds: dict[str, list[float]] = {k: [] for k in trainers}
        for r in range(args.rounds):
            mm_times += time_mm(a, b, args.mm_reps)
            for label, trainer in trainers.items():
                with computed_as(label):
                    rounds[label].append(time_round(trainer, args.steps))
            print(f"[{time.perf_counter() - t_start:5.0f}s] round {r + 1}/{args.rounds}: "
                  + "; ".join(f"{k[:24]} {v[-1] / args.steps:.3f} s/step" for k, v in rounds.items()), flush=True)

    peak = 2 * n**3 / statistics.median(mm_times) / 1e9
    rows = []
    for label in trainers:
        gflop, split = flops[label]
        step_s = statistics.median(rounds[label]) / args.steps
        rate = gflop / step_s
        rows.append([label, f"{gflop:.3g}", f"{args.batch_size / step_s:.1f}", f"{step_s * 1e3:.0f}", f"{rate:.1f}",
                     f"{rate / peak:.0%}", split])
    rows.append([f"float32 torch.mm {n}x{n} (peak)", f"{2 * n**3 / 1e9:.3g}", "-",
                 f"{statistics.median(mm_times) * 1e3:.0f}", f"{peak:.1f}", "100%", "mm"])
    table = markdown_table(["model", "GFLOP/step", "images/s", "ms/step", "GFLOP/s", "of mm peak",
                            "GFLOP by op"], rows)
    speedup = statistics.median(rounds[BEFORE]) / statistics.median(rounds[DEFAULT])
    summary = (f"The default CoC-GAN step against the same step computed as before the speed work: {speedup:.2f}x "
               f"(target 2x; the same FLOPs: {flops[DEFAULT][0]:.3g} and {flops[BEFORE][0]:.3g} GFLOP).")
    print(table)
    print(summary)
    omp = os.environ.get("OMP_WAIT_POLICY")
    print(f"threads = {torch.get_num_threads()}, OMP_WAIT_POLICY = {omp}, "
          f"total {time.perf_counter() - t_start:.0f}s")
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
            f"steps / time of a round of {args.steps} steps, median of {args.rounds} rounds after {args.warmup} "
            f"warm-up steps; the rounds interleave both models and the peak ({args.mm_reps} float32 `torch.mm` "
            f"{n}x{n} per round, median), all in one process on a CPU with {torch.get_num_threads()} threads "
            f"(`OMP_WAIT_POLICY={omp}`). GFLOP/s = GFLOP/step x steps/s. The last CoC-GAN row is the default row's "
            "model computed as before the speed work of issue 11 (point-wise work in chunks of points on any thread "
            "count; autograd's backward through the overlapping neighbourhoods' strided view), trained in the same "
            f"rounds.\n\n{table}\n\n{summary}\n\nCommand: `{command_line()}`",
        )


if __name__ == "__main__":
    main()
