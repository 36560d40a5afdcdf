"""CoC-GAN vs DCGAN on Fashion-MNIST 28x28: training throughput side by side, parameters,
and quality at the same budget.

Throughput: one trainer per model is built in this process and their training steps are
timed alternately, round by round (median), so both see the same machine load. Quality:
the rows of the same combinations in ``benchmarks/results/fmnist-grid.json``, written by
``benchmarks/harness.py`` (same loss, data, batch and number of steps); run it first.

    python benchmarks/bench_coc_vs_dcgan.py [--rounds 5] [--loss wgan+clip@rmsprop]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, write_section  # noqa: E402
from harness import RESULTS, Combo, parse_losses  # noqa: E402

from gzoo.run import count_parameters  # noqa: E402
from gzoo.trainer import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--loss", default="wgan+clip@rmsprop")
    ap.add_argument("--data", default="fashion-mnist")
    args = ap.parse_args()
    (loss, regs, opt), = parse_losses(args.loss)
    combos = [Combo("dcgan", "dcgan", loss, regs, opt), Combo("cocgan", "coc", loss, regs, opt)]
    tmp = Path(tempfile.mkdtemp())
    trainers = {c.label: Trainer(c.config(args.data, 0, 10**6, args.batch_size, tmp / c.gen)) for c in combos}
    for t in trainers.values():
        t.train_step()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for _ in range(args.rounds):
        for k, t in trainers.items():
            t0 = time.perf_counter()
            t.train_step()
            times[k].append(time.perf_counter() - t0)
    ips = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
    grid_file = RESULTS / "fmnist-grid.json"
    quality = {r["combo"]: r for r in json.loads(grid_file.read_text())} if grid_file.exists() else {}
    base = combos[0].label
    rows = []
    for c in combos:
        t = trainers[c.label]
        q = quality.get(c.label, {})
        quality_cols = [f"{q[k]:.3g}" if k in q else "-" for k in ("fid_lenet", "precision", "recall", "coverage")]
        rows.append([c.label, f"{ips[c.label]:.1f}", f"{ips[c.label] / ips[base]:.3f}",
                     f"{count_parameters(t.G):,}", f"{count_parameters(t.D):,}", *quality_cols, q.get("steps", "-")])
    headers = ["model", "train img/s", "vs DCGAN", "params G", "params D", "fid_lenet", "precision", "recall",
               "coverage", "steps (quality)"]
    md = markdown_table(headers, rows)
    print(md)
    write_section(
        "coc-vs-dcgan",
        f"## CoC-GAN vs DCGAN ({args.data} 28x28, {combos[0].loss}{'+' + '+'.join(regs) if regs else ''}, {opt})\n\n"
        f"Training-step throughput (batch {args.batch_size}, one D and one G update) measured alternately in one "
        f"process, median of {args.rounds} rounds, CPU with {torch.get_num_threads()} threads. Quality columns come "
        f"from the `fmnist-grid` runs above (same loss, data, batch and steps; 10,000 samples, LeNet features).\n\n"
        f"{md}\n\nCommand: `{command_line()}`",
    )


if __name__ == "__main__":
    main()
