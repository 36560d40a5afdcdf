"""Lattice-periodic power of generated images, against the real images of the run's data.

A discriminator whose strided layers read some lattice points more often than others (the
official Context Clusters reducer: 3x3 windows at stride 2) passes a generator gradients with a
periodic pattern, and the generator learns regular dots (docs/coc.md). This measures that: for
each run, ``n`` samples (seed 0) and ``n`` training images, each image's mean removed, and the
share of the mean 2D power spectrum that sits on the frequencies of patterns with period 4 and 2
pixels (the bins at multiples of ``S/4`` a side, the DC bin excluded). Real Fashion-MNIST has
about 0.8% there; a ratio above 1 is lattice-periodic texture that the data does not have.

    python benchmarks/coc_lattice_power.py RUN_DIR [RUN_DIR ...] [--n 1000]

It prints a markdown table; it reads run directories and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table  # noqa: E402

from gzoo.run import load_run  # noqa: E402


def lattice_power(x: torch.Tensor) -> float:
    """Share of the mean power spectrum of ``x`` (``(N, C, S, S)``, channels averaged) at the
    bins ``(a, b)``, ``a, b`` multiples of ``S // 4``, other than ``(0, 0)``."""
    x = x.float().mean(1)
    x = x - x.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2).mean(0)
    side = x.shape[-1]
    if side % 4:
        raise SystemExit(f"images are {side} pixels a side, not a multiple of 4")
    mask = torch.zeros_like(power, dtype=torch.bool)
    mask[::side // 4, ::side // 4] = True
    mask[0, 0] = False
    return (power[mask].sum() / power.sum()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, real = [], {}
    for run_dir in args.runs:
        run = load_run(run_dir)
        key = (run.config.data, tuple(sorted(run.config.data_opt.items())))
        if key not in real:
            data = run.data
            real[key] = lattice_power(torch.stack([data[i][0] for i in range(min(args.n, len(data)))]))
        fake = lattice_power(run.generate(args.n, seed=0))
        rows.append([run_dir, f"{run.config.gen} + {run.config.disc}", run.step, f"{fake:.4f}", f"{real[key]:.4f}",
                     f"{fake / real[key]:.2f}"])
    print(markdown_table(["run", "models", "step", "generated", "real", "ratio"], rows))


if __name__ == "__main__":
    main()
