"""Mode-collapse benchmarks: GAN vs self-conditioned GAN (Liu et al., CVPR 2020).

* 2-D ring (8 modes) and grid (25 modes): the same MLP G/D, loss and budget, with and
  without ``--cond selfcond``; modes recovered, % high-quality samples and reverse KL on
  2,500 samples (gzoo.metrics.modes).
* Stacked Fashion-MNIST (1,000 modes): DCGAN vs self-conditioned DCGAN; modes recovered
  and reverse KL against the real mode histogram, each channel classified by gzoo's
  Fashion-MNIST classifier, on 10,000 samples.

    python benchmarks/bench_modes.py [--seeds 0,1,2] [--steps-2d 3000] [--steps-stacked 400]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, mean_std, write_section  # noqa: E402
from harness import RESULTS, Combo, run_grid  # noqa: E402

PUBLISHED = {  # PacGAN (Lin et al. 2018), Table 2, as quoted in the self-conditioned GAN paper
    "ring": [("GAN (published)", "6.3", "98.2%", "0.45"), ("PacGAN4 (published)", "7.8", "95.9%", "0.07")],
    "grid": [("GAN (published)", "17.3", "94.8%", "0.70"), ("PacGAN4 (published)", "24.8", "93.6%", "0.04")],
}
MLP = {"hidden": 256, "depth": 3}


def two_d(data: str, seeds: list[int], steps: int, workdir: Path) -> tuple[str, list[dict]]:
    k = 50
    combos = [
        Combo("mlp", "mlp", "nonsaturating", gen_opt=MLP, disc_opt=MLP),
        Combo("mlp", "mlp", "nonsaturating", gen_opt=MLP, disc_opt=MLP, cond="selfcond",
              cond_opt={"k": k, "recluster_every": max(1, steps // 6), "subset": 10000}),
    ]
    rows = run_grid(combos, data, seeds, steps, 256, 2500, workdir / data, lr=5e-4)
    table = []
    for combo, name in zip(combos, ("GAN (gzoo)", f"self-conditioned GAN, k={k} (gzoo)"), strict=True):
        rs = [r for r in rows if r["combo"] == combo.label]
        table.append([name, mean_std([r["modes"] for r in rs]), mean_std([100 * r["high_quality"] for r in rs]),
                      mean_std([r["reverse_kl"] for r in rs])])
    table += [list(p) for p in PUBLISHED[data]]
    n_modes = rows[0]["num_modes"]
    md = (f"### 2-D {data} ({n_modes} modes)\n\n"
          f"MLP G/D (hidden 256, depth 3), non-saturating loss, Adam lr 5e-4, batch 256, {steps} steps, "
          f"seeds {','.join(map(str, seeds))}; metrics on 2,500 samples. Target: {n_modes}/{n_modes} modes, "
          f"≥ 95% high quality, reverse KL ≤ 0.05.\n\n"
          + markdown_table(["model", f"modes (of {n_modes})", "% high quality", "reverse KL"], table))
    return md, rows


def stacked(seeds: list[int], steps: int, workdir: Path) -> tuple[str, list[dict]]:
    dc = {"ch": 32}
    combos = [
        Combo("dcgan", "dcgan", "nonsaturating", gen_opt=dc, disc_opt=dc),
        Combo("dcgan", "dcgan", "nonsaturating", gen_opt=dc, disc_opt=dc, cond="selfcond",
              cond_opt={"k": 100, "recluster_every": max(1, steps // 4), "subset": 5000}),
    ]
    rows = run_grid(combos, "stacked-fashion-mnist", seeds, steps, 64, 10000, workdir / "stacked")
    table = []
    for combo, name in zip(combos, ("DCGAN", "self-conditioned DCGAN, k=100"), strict=True):
        rs = [r for r in rows if r["combo"] == combo.label]
        table.append([name, mean_std([r["modes"] for r in rs]), mean_std([r["reverse_kl"] for r in rs]),
                      mean_std([r["fid_lenet"] for r in rs])])
    md = (f"### Stacked Fashion-MNIST (1,000 modes)\n\nDCGAN (width 32), non-saturating loss, Adam 2e-4, batch 64, "
          f"{steps} steps, seeds {','.join(map(str, seeds))}; metrics on 10,000 samples; each channel classified by "
          f"gzoo's Fashion-MNIST LeNet; reverse KL against the real stacked mode histogram.\n\n"
          + markdown_table(["model", "modes (of 1000)", "reverse KL", "fid_lenet"], table))
    return md, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps-2d", type=int, default=3000)
    ap.add_argument("--steps-stacked", type=int, default=400)
    ap.add_argument("--only", choices=["2d", "stacked"], help="run one part")
    ap.add_argument("--workdir", default="runs/bench-modes")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    parts, all_rows = [], []
    if args.only in (None, "2d"):
        for data in ("ring", "grid"):
            md, rows = two_d(data, seeds, args.steps_2d, Path(args.workdir))
            parts.append(md)
            all_rows += rows
    if args.only in (None, "stacked"):
        md, rows = stacked(seeds, args.steps_stacked, Path(args.workdir))
        parts.append(md)
        all_rows += rows
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"modes{'-' + args.only if args.only else ''}.json").write_text(json.dumps(all_rows, indent=1))
    text = "\n\n".join(parts)
    print(text)
    write_section(f"modes{'-' + args.only if args.only else ''}",
                  "## Mode collapse: GAN vs self-conditioned GAN\n\n" + text + f"\n\nCommand: `{command_line()}`")


if __name__ == "__main__":
    main()
