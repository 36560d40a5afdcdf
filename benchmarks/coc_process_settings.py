"""The CoC-GAN step under different process settings: how OpenMP's idle threads wait (``gzoo.runtime``).

One worker process per setting, each training the default CoC-GAN (``cocgan + coc``, spectral
norm, digits 1x28x28, batch 64, non-saturating loss, Adam) alone on ``--threads`` threads; the
parent alternates rounds between the workers (the others wait on their input), and every round
begins with an untimed step (a model's first step after a pause finds its memory cold). The
settings change no result, only the speed. Per setting: the median step time, its speed against
the first row, and the CPU time per step spent in the kernel (waking sleeping threads is a system call).

A job alone on the machine only; for two jobs sharing the cores see ``bench_threads.py``.

    python benchmarks/coc_process_settings.py [--threads 2] [--steps 3] [--rounds 7]  # about 4 min
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import child_env, command_line, markdown_table, write_section  # noqa: E402
from _workers import Rounds, serve  # noqa: E402

from gzoo import runtime  # noqa: E402  (no torch: this process only starts the workers)

#: label -> environment
SPIN = runtime.OPENMP_DEFAULTS["GOMP_SPINCOUNT"]
SETTINGS = {"passive wait (gzoo before issue 11's speed work)": {"OMP_WAIT_POLICY": "PASSIVE"},
            **{f"spin {n}" + (" (gzoo's default)" if n == SPIN else ""): {"GOMP_SPINCOUNT": n}
               for n in sorted({"1000", SPIN, "10000"}, key=int)}}


def worker(args: argparse.Namespace) -> None:
    """Train the default CoC-GAN in this process (its environment set by the parent): two warm-up steps,
    then per round one untimed step and ``--steps`` timed, reporting the wall and kernel time per step."""
    import resource
    import tempfile
    import time

    import torch

    from gzoo.config import RunConfig
    from gzoo.trainer import Trainer

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        config = RunConfig(gen="cocgan", disc="coc", data="digits", loss="nonsaturating", batch_size=64, reg=["sn"],
                           device="cpu", progress=False, sample_every=0, out=work + "/r")
        trainer = Trainer(config, run_dir=Path(work) / "r", explicit={"reg"})
        for _ in range(2):
            trainer.train_step()

        def round_() -> dict[str, float]:
            trainer.train_step()  # untimed
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            return {"s": (t1 - t0) / args.steps, "sys": (r1.ru_stime - r0.ru_stime) / args.steps}

        serve({}, round_)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # the index of this worker's setting
    args = ap.parse_args()
    if args.worker is not None:
        worker(args)
        return
    argv = [sys.executable, __file__, "--threads", str(args.threads), "--steps", str(args.steps), "--worker"]
    results: dict[str, list[dict]] = {k: [] for k in SETTINGS}
    with Rounds({label: ([*argv, str(i)], child_env(**env_set))
                 for i, (label, env_set) in enumerate(SETTINGS.items())}) as workers:
        workers.ready()
        for r, replies in workers.rounds(args.rounds):
            for label, reply in replies.items():
                results[label].append(reply)
            print(f"round {r + 1}/{args.rounds}: " + "; ".join(f"{k[:20]} {v[-1]['s']:.3f} s" for k, v in results.items()),
                  flush=True)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("s", "sys")} for k, v in results.items()}
    base = med[next(iter(SETTINGS))]["s"]
    rows = [[label, f"{m['s'] * 1e3:.0f}", f"{base / m['s']:.2f}x", f"{m['sys'] * 1e3:.0f}"] for label, m in med.items()]
    table = markdown_table(["process settings", "ms/step", "speed vs first row", "kernel CPU ms/step"], rows)
    print(table)
    if not args.no_write:
        write_section(
            "coc-process-settings",
            "## The CoC-GAN step under different process settings (one job alone)\n\n"
            f"The default CoC-GAN (`cocgan + coc`, spectral norm, digits, batch 64, non-saturating loss, Adam) on "
            f"{args.threads} threads, one worker process per row; the rounds alternate between the workers, each "
            f"round one untimed step, then {args.steps} timed; medians of {args.rounds} rounds. `spin N`: "
            "`GOMP_SPINCOUNT=N` (GNU OpenMP's idle threads spin N times, about N/100 microseconds, then sleep); "
            "`passive wait`: `OMP_WAIT_POLICY=PASSIVE` (they sleep at once). Kernel CPU: the process's system time "
            "per step (waking a sleeping thread is a system call). Two jobs sharing the cores: the `threads` "
            "table.\n\n"
            f"{table}\n\nCommand: `{command_line()}`",
        )


if __name__ == "__main__":
    main()
