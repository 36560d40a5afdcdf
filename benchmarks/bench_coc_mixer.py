"""Speed of the Context Cluster token mixer: sparse hard assignment vs the dense broadcast form.

Shape (issue #3): 28x28 points, dim 32, 4 heads x 32, 2x2 regions, 2x2 centers per region,
batch 64, forward + backward, on this machine's CPU threads. Both implementations run in
this one process, interleaved round by round, with identical weights and inputs; outputs
and input gradients must agree to 1e-5.

    python benchmarks/bench_coc_mixer.py [--rounds 7] [--batch 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, write_section  # noqa: E402

from gzoo_coc.cluster import ContextCluster  # noqa: E402


def step(m: ContextCluster, p: torch.Tensor) -> float:
    t = time.perf_counter()
    out = m(p, 28, 28)
    out.square().mean().backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    torch.manual_seed(0)
    m = ContextCluster(32, heads=4, head_dim=32, regions=2, centers=2)
    p = torch.randn(args.batch, 28 * 28, 32, requires_grad=True)

    impls = ("bmm", "scatter", "broadcast")
    outs, grads = {}, {}
    for impl in impls:
        m.impl = impl
        out = m(p, 28, 28)
        (grads[impl],) = torch.autograd.grad(out.square().mean(), p)
        outs[impl] = out.detach()
    max_diff = max(float((outs[i] - outs["broadcast"]).abs().max()) for i in impls)
    grad_diff = max(float((grads[i] - grads["broadcast"]).abs().max()) for i in impls)
    assert max_diff <= 1e-5 and grad_diff <= 1e-5, (max_diff, grad_diff)

    times: dict[str, list[float]] = {i: [] for i in impls}
    for impl in times:  # warm-up
        m.impl = impl
        step(m, p)
    for _ in range(args.rounds):
        for impl in times:
            m.impl = impl
            times[impl].append(step(m, p))
            p.grad = None
    ips = {k: args.batch / statistics.median(v) for k, v in times.items()}
    names = {"broadcast": "broadcast (dense B' x M x n x d)", "scatter": "scatter_add / gather",
             "bmm": "assignment matrix + bmm (default)"}
    rows = [[names[i], f"{ips[i]:.0f}", f"{ips[i] / ips['broadcast']:.2f}"] for i in ("broadcast", "scatter", "bmm")]
    table = markdown_table(["Context Cluster token mixer", "images/s (fwd+bwd)", "speed-up"], rows)
    print(table)
    print(f"max |output diff| = {max_diff:.2e}, max |grad diff| = {grad_diff:.2e}, threads = {torch.get_num_threads()}")
    if not args.no_write:
        write_section(
            "coc-mixer",
            "## Context Cluster token mixer: sparse vs broadcast\n\n"
            f"28x28 points, dim 32, 4 heads x 32, 2x2 regions, 2x2 centers, batch {args.batch}, forward + backward, "
            f"CPU ({torch.get_num_threads()} threads), median of {args.rounds} interleaved rounds in one process. "
            f"Outputs agree to {max_diff:.1e}, input gradients to {grad_diff:.1e}.\n\n"
            f"{table}\n\nCommand: `{command_line()}`",
        )


if __name__ == "__main__":
    main()
