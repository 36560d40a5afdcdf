"""The CoC-GAN step's two speed changes one at a time, on 2 threads and on 1.

One default CoC-GAN trainer (``cocgan + coc``, spectral norm, digits 1x28x28, batch 64,
non-saturating loss, Adam) per configuration, all in this one process; rounds interleave the
configurations, so all see the same load. The configurations compute the same model and outputs:

* ``default``: the blocks' point-wise work in chunks of points on up to ``cluster.CHUNK_MAX_THREADS``
  (1) thread, whole on more, and the overlapping neighbourhoods' hand-written adjoint;
* ``chunks on every thread count`` / ``on no thread count``: the default otherwise;
* ``autograd's strided-view backward``: the neighbourhoods differentiated through the overlapping
  strided view (``points.strided_view_neighbourhoods``), the default otherwise;
* ``before``: chunks on every thread count and the strided-view backward, as the step was computed
  before the speed work (``bench_coc_speed.py``'s row).

On 2 threads ``chunks on no thread count`` computes what ``default`` computes, and on 1 thread
``chunks on every thread count`` does: those pairs show the noise.

ms/step: median over ``--rounds`` rounds of ``--steps`` steps, after ``--warmup`` steps. OpenMP
threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless set), as with ``gzoo run``.

    python benchmarks/coc_step_ablation.py [--threads 2,1] [--steps 3] [--rounds 5]  # about 5 min
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, write_section  # noqa: E402
from bench_coc_speed import computed, time_round  # noqa: E402

from gzoo.config import RunConfig  # noqa: E402
from gzoo.trainer import Trainer  # noqa: E402
from gzoo_coc import cluster  # noqa: E402

#: label -> (``cluster.CHUNK_MAX_THREADS``, autograd's strided-view backward)
CONFIGS = {"default": (cluster.CHUNK_MAX_THREADS, False), "chunks on every thread count": (1 << 30, False),
           "chunks on no thread count": (0, False), "autograd's strided-view backward": (cluster.CHUNK_MAX_THREADS, True),
           "before (chunks on every thread count, strided-view backward)": (1 << 30, True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="2,1", help="comma list of thread counts, each measured in turn")
    ap.add_argument("--steps", type=int, default=3, help="training steps per configuration per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="coc-step-") as work:
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            trainers = {}
            for i, label in enumerate(CONFIGS):
                out = Path(work) / f"t{threads}-{i}"
                config = RunConfig(gen="cocgan", disc="coc", loss="nonsaturating", data="digits", batch_size=64,
                                   device="cpu", progress=False, sample_every=0, out=str(out), reg=["sn"])
                trainers[label] = Trainer(config, run_dir=out, explicit={"reg"})
                with computed(*CONFIGS[label]):
                    time_round(trainers[label], args.warmup)
            times: dict[str, list[float]] = {k: [] for k in trainers}
            for r in range(args.rounds):
                for label, trainer in trainers.items():
                    with computed(*CONFIGS[label]):
                        times[label].append(time_round(trainer, args.steps) / args.steps)
                print(f"threads {threads}, round {r + 1}/{args.rounds}: "
                      + "; ".join(f"{k} {v[-1] * 1e3:.0f} ms" for k, v in times.items()), flush=True)
            base = statistics.median(times["default"])
            for label in trainers:
                ms = statistics.median(times[label])
                rows.append([threads, label, f"{ms * 1e3:.0f}", f"{ms / base:.2f}"])
    table = markdown_table(["threads", "computed as", "ms/step", "time / default's"], rows)
    print(table)
    if not args.no_write:
        write_section(
            "coc-step-ablation",
            "## CoC-GAN step: the two speed changes one at a time\n\n"
            "The default CoC-GAN (`cocgan + coc`, spectral norm, digits 1x28x28, batch 64, non-saturating loss, Adam), "
            f"one trainer per row, the same model and outputs computed {len(CONFIGS)} ways, rounds interleaved in one process "
            f"(median of {args.rounds} rounds of {args.steps} steps; `OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY')}`). Chunks: the blocks' point-wise work in chunks of points "
            "(`cluster.rowwise`), which the default keeps on one thread only; strided-view backward: autograd's "
            "generic backward of the overlapping neighbourhoods, where the default has a hand-written adjoint. On 2 "
            "threads 'chunks on no thread count' computes what 'default' computes, on 1 thread 'chunks on every thread "
            "count' does: those pairs show the noise.\n\n"
            f"{table}\n\nCommand: `{command_line()}`",
        )


if __name__ == "__main__":
    main()
