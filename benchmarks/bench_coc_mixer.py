"""Speed of the Context Cluster token mixer: sparse hard assignment vs the dense broadcast form.

Shape (the issue's): 28x28 points, dim 32, 4 heads x 32, 2x2 regions, 2x2 centers per region,
batch 64, forward + backward, 2 CPU threads. Every implementation of
``gzoo_coc.cluster.ContextCluster`` (projections, clustering, aggregation, dispatch, head
fusion) runs in this one process, interleaved round by round, with identical weights and
inputs; the reference is ``impl="broadcast"``, the direct dense form of the original code
(``B' x M x n x d`` broadcasts for aggregation and dispatch).

Equality: in float64 every implementation must match the reference to 1e-5 (outputs, and
gradients of the input and all parameters). In float32 the outputs must match to 1e-5 as
well, unless a point's two best centers tie to float32 rounding and the implementations
pick different ones; such flips are counted and printed.

OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless set): on a
shared machine spinning threads make every small op wait for a descheduled partner.

    python benchmarks/bench_coc_mixer.py [--rounds 7] [--batch 64] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, write_section  # noqa: E402

from gzoo_coc.cluster import ContextCluster, recording  # noqa: E402

IMPLS = ("broadcast", "scatter", "bmm", "fused")
NAMES = {
    "broadcast": "broadcast: dense B' x M x n x d (reference)",
    "scatter": "scatter_add / gather on per-point values",
    "bmm": "assignment matrix + bmm on per-point values",
    "fused": "assignment matrix, v and head fusion on cluster sums (default)",
}
SIDE = 28


def mixer(batch: int, dtype: torch.dtype) -> tuple[ContextCluster, torch.Tensor]:
    torch.manual_seed(0)
    m = ContextCluster(32, heads=4, head_dim=32, regions=2, centers=2).to(dtype)
    with torch.no_grad():  # away from the init values, so that alpha and beta matter
        m.alpha.fill_(1.5)
        m.beta.fill_(-0.5)
    return m, torch.randn(batch, SIDE * SIDE, 32, dtype=dtype, requires_grad=True)


def run(m: ContextCluster, p: torch.Tensor, impl: str) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    m.impl = impl
    with recording(m):
        out = m(p, SIDE, SIDE)
        assignment = m.last_assignment
    grads = torch.autograd.grad(out.square().mean(), [p, *m.parameters()])
    return out.detach(), list(grads), assignment


def check(batch: int) -> dict[str, str]:
    """Max differences to the reference, per implementation (asserts the 1e-5 contract)."""
    notes = {}
    m64, p64 = mixer(batch, torch.float64)
    m32, p32 = mixer(batch, torch.float32)
    ref64, ref32 = run(m64, p64, "broadcast"), run(m32, p32, "broadcast")
    for impl in IMPLS:
        out, grads, a = run(m64, p64, impl)
        d_out = float((out - ref64[0]).abs().max())
        d_grad = max(float((g - r).abs().max()) for g, r in zip(grads, ref64[1], strict=True))
        assert torch.equal(a, ref64[2]) and d_out <= 1e-5 and d_grad <= 1e-5, (impl, d_out, d_grad)
        out, _, a = run(m32, p32, impl)
        flips = int((a != ref32[2]).sum())
        d32 = float((out - ref32[0]).abs().max())
        assert flips or d32 <= 1e-5, (impl, d32)
        notes[impl] = f"{d_out:.0e} / {d_grad:.0e} / {d32:.0e}" + (f" ({flips} tie flips)" if flips else "")
    return notes


def step(m: ContextCluster, p: torch.Tensor) -> float:
    t = time.perf_counter()
    m(p, SIDE, SIDE).square().mean().backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    notes = check(min(args.batch, 16))

    m, p = mixer(args.batch, torch.float32)
    times: dict[str, list[float]] = {i: [] for i in IMPLS}
    for impl in IMPLS:  # warm-up
        m.impl = impl
        step(m, p)
    for _ in range(args.rounds):
        for impl in IMPLS:
            m.impl = impl
            times[impl].append(step(m, p))
    ips = {k: args.batch / statistics.median(v) for k, v in times.items()}
    rows = [[NAMES[i], f"{ips[i]:.0f}", f"{ips[i] / ips['broadcast']:.2f}x", notes[i]] for i in IMPLS]
    table = markdown_table(["Context Cluster token mixer", "images/s (fwd+bwd)", "vs broadcast",
                            "max diff: f64 out / f64 grads / f32 out"], rows)
    print(table)
    omp = os.environ.get("OMP_WAIT_POLICY")
    print(f"threads = {torch.get_num_threads()}, OMP_WAIT_POLICY = {omp}")
    if not args.no_write:
        write_section(
            "coc-mixer",
            "## Context Cluster token mixer: sparse vs broadcast\n\n"
            f"28x28 points, dim 32, 4 heads x 32, 2x2 regions, 2x2 centers per region, batch {args.batch}, "
            f"forward + backward (projections, clustering, aggregation, dispatch, head fusion), CPU with "
            f"{torch.get_num_threads()} threads (`OMP_WAIT_POLICY={omp}`), median of {args.rounds} interleaved "
            "rounds in one process. The differences to the reference are checked on a batch of "
            f"{min(args.batch, 16)} (float64 outputs and all gradients, float32 outputs; contract 1e-5).\n\n"
            f"{table}\n\nCommand: `{command_line()}`",
        )


if __name__ == "__main__":
    main()
