"""How close to linear the ``coc`` discriminator's MLPs are under WGAN weight clipping.

Each Context Cluster block's MLP is ``fc2(GELU(fc1(GroupNorm(points))))``. Clipping fc1's matrix to
[-c, c] bounds the size of GELU's input, and near 0 GELU is almost a straight line
(``GELU(a) ~ a/2 + a^2/sqrt(2 pi)``). For a fresh ``coc`` discriminator (gzoo's defaults, seed 0)
with its weight matrices clipped as ``--reg clip`` would after a D step, on real Fashion-MNIST
images, this prints per stage: the RMS of GELU's input, and the relative error of the best straight
line fitted to GELU over those inputs (0: GELU acts as a linear map there).

    python benchmarks/coc_clip_preact.py [--bounds none,0.05,0.01] [--n 64]

It trains nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table  # noqa: E402

import gzoo  # noqa: E402


def linear_fit_error(a: torch.Tensor) -> float:
    """||GELU(a) - (s a + t)|| / ||GELU(a) - mean||, with s, t the least-squares fit."""
    a = a.flatten().double()
    g = F.gelu(a)
    design = torch.stack([a, torch.ones_like(a)], 1)
    fit = design @ torch.linalg.lstsq(design, g.unsqueeze(1)).solution.squeeze(1)
    return float((g - fit).norm() / (g - g.mean()).norm())


def measure(bound: float | None, x: torch.Tensor) -> list[tuple[float, float]]:
    """(RMS of GELU's input, linear-fit error) for each stage of a fresh ``coc`` D, clipped to ``bound``."""
    torch.manual_seed(0)
    D = gzoo.create("discriminator", "coc", image_shape=tuple(x.shape[1:]))
    if bound is not None:
        gzoo.create("regularizer", "clip", clip=bound).after_d_step(D)
    inputs: dict[int, list[torch.Tensor]] = defaultdict(list)
    hooks = [blk.mlp[1].register_forward_hook(lambda m, i, o, s=s: inputs[s].append(i[0].detach()))
             for s, blocks in enumerate(D.stage_blocks) for blk in blocks]
    with torch.no_grad():
        D(x)
    for h in hooks:
        h.remove()
    out = []
    for s in sorted(inputs):
        a = torch.cat([t.flatten() for t in inputs[s]])
        out.append((float(a.pow(2).mean().sqrt()), linear_fit_error(a)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bounds", default="none,0.05,0.01", help="clip bounds to compare; none: unclipped")
    ap.add_argument("--n", type=int, default=64, help="real images")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = gzoo.create("dataset", "fashion-mnist")
    x = torch.stack([ds[i][0] for i in range(args.n)])
    bounds = [None if b.strip() == "none" else float(b) for b in args.bounds.split(",")]
    results = {b: measure(b, x) for b in bounds}
    stages = len(next(iter(results.values())))
    header = ["clip bound"] + [f"stage {s + 1}: input RMS / linear-fit error" for s in range(stages)]
    rows = [["none" if b is None else b] + [f"{r:.3f} / {e:.3f}" for r, e in results[b]] for b in bounds]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
