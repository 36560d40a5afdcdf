"""Training throughput: processes, speed options and every registered G/D pair.

Three tables, written into docs/benchmarks.md (sections ``scale-processes``, ``scale-options``,
``scale-pairs``):

* **processes**: images/s of ``dcgan + dcgan``, ``cocgan + coc`` and ``cips + resnet`` trained by
  one process with one thread, one process with two threads, and two processes of one thread
  each (``gzoo run --nproc 2``, DDP over gloo), and the scaling efficiency
  ``two processes / (2 x one process, one thread)``;
* **options**: ``--amp bf16``, ``--channels-last`` and ``--compile`` against the plain step, side
  by side in one run, on the device this runs on;
* **pairs**: every registered generator with every registered discriminator that can take its
  images, at the default data (digits, 28x28; 32x32 where a model needs it): train images/s and
  parameters, measured in one process.

Images/s comes from the trainer's own log (the global batch x logged steps / wall time of the
window) and skips the first window (warm-up). Every run is a fresh ``gzoo run`` subprocess.

    python benchmarks/bench_scale.py --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, write_section  # noqa: E402

MODELS = [("dcgan", "dcgan", []), ("cocgan", "coc", []), ("cips", "resnet", [])]


def gzoo_run(args: list[str], *, threads: int, nproc: int = 1, timeout: float = 1800) -> dict:
    """Run ``gzoo run ARGS`` and return the last logged row of its metrics.jsonl (and the run's
    parameter counts)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "gzoo", "run", *args, "--out", str(out), "--quiet", "--threads", str(threads),
               "--sample-every", "0", "--ckpt-every", "0"]
        if nproc > 1:
            cmd += ["--nproc", str(nproc)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if r.returncode != 0:
            return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        params = _params(out / "checkpoints" / "last.pt")
        return {**rows[-1], **params}


def _params(ckpt: Path) -> dict:
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    count = {m: sum(v.numel() for k, v in state[m].items() if v.is_floating_point() and "running_" not in k)
             for m in ("G", "D")}
    return {"params_G": count["G"], "params_D": count["D"]}


def bench_processes(args: argparse.Namespace) -> None:
    rows = []
    for gen, disc, extra in MODELS:
        base = ["--gen", gen, "--disc", disc, "--data", "digits", "--steps", str(args.steps), "--log-every",
                str(args.steps // 2), "--batch-size", str(args.batch_size), *extra]
        one = gzoo_run(base, threads=1)
        one2 = gzoo_run(base, threads=2)
        two = gzoo_run(base, threads=1, nproc=2)
        ips = [r.get("img_per_s") for r in (one, one2, two)]
        eff = ips[2] / (2 * ips[0]) if all(ips) else None
        rows.append([f"{gen} + {disc}", *(f"{v:.1f}" if v else r.get("error", "?") for v, r in zip(ips, (one, one2, two),
                                                                                                   strict=True)),
                     f"{eff:.2f}" if eff else "-"])
        print(rows[-1], flush=True)
    md = markdown_table(["model", "1 process, 1 thread", "1 process, 2 threads", "2 processes x 1 thread",
                         "scaling efficiency"], rows)
    write_section("scale-processes", (
        f"## Processes: DDP over gloo on this CPU ({os.cpu_count()} cores)\n\n"
        f"Train images/s (global batch {args.batch_size}, digits 28x28, the second half of {args.steps} steps). "
        "Scaling efficiency = two processes / (2 x one process with one thread). Two processes on a 2-core "
        "machine is the honest worst case: the processes share the cores that one process with two threads "
        "would use, and every update adds a gradient all-reduce over loopback.\n\n"
        f"{md}\n\nCommand: `{command_line()}`"))


def bench_options(args: argparse.Namespace) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = [("plain", []), ("--amp bf16", ["--amp", "bf16"]), ("--channels-last", ["--channels-last"]),
                ("--compile", ["--compile"])]
    rows = []
    for gen, disc, extra in MODELS[:2]:
        base = ["--gen", gen, "--disc", disc, "--data", "digits", "--steps", str(args.steps), "--log-every",
                str(args.steps // 2), "--batch-size", str(args.batch_size), "--device", device, *extra]
        plain = None
        for label, flags in variants:
            r = gzoo_run(base + flags, threads=args.threads)
            ips = r.get("img_per_s")
            plain = plain if plain is not None else ips
            rows.append([f"{gen} + {disc}", label, f"{ips:.1f}" if ips else r.get("error", "?"),
                         f"{ips / plain:.2f}" if ips and plain else "-"])
            print(rows[-1], flush=True)
    md = markdown_table(["model", "option", "train img/s", "vs plain"], rows)
    write_section("scale-options", (
        f"## Speed options on {device.upper()} ({args.threads} threads)\n\n"
        f"Train images/s, batch {args.batch_size}, digits 28x28, the second half of {args.steps} steps (so "
        "`--compile`'s compilation is outside the measured window). CUDA rows: "
        + ("measured above." if device == "cuda" else "**not measured** (no GPU was available to this run).")
        + f"\n\n{md}\n\nCommand: `{command_line()}`"))


def bench_pairs(args: argparse.Namespace) -> None:
    import gzoo

    gens = [s.name for s in gzoo.list_components("generator")]
    discs = [s.name for s in gzoo.list_components("discriminator")]
    rows = []
    for g in gens:
        for d in discs:
            measured = None
            for res in (28, 32):
                r = gzoo_run(["--gen", g, "--disc", d, "--data", "digits", "--data-opt", f"resolution={res}",
                              "--steps", str(args.pair_steps), "--log-every", str(max(1, args.pair_steps // 2)),
                              "--batch-size", str(args.batch_size)], threads=args.threads)
                if "img_per_s" in r:
                    measured = (res, r)
                    break
            if measured is None:
                rows.append([g, d, "-", "-", "-", "-"])
            else:
                res, r = measured
                rows.append([g, d, f"{res}x{res}", f"{r['img_per_s']:.1f}", f"{r['params_G']:,}", f"{r['params_D']:,}"])
            print(rows[-1], flush=True)
    md = markdown_table(["generator", "discriminator", "size", "train img/s", "params G", "params D"], rows)
    write_section("scale-pairs", (
        "## Every registered G/D pair at its default options\n\n"
        f"One process, {args.threads} thread(s), batch {args.batch_size}, digits at 28x28 (32x32 where a model takes "
        f"no 28: the first that builds), images/s over the second half of {args.pair_steps} steps. `-`: the pair "
        "cannot train on images of these sizes (e.g. a model for 32/64 px only against one for 28). Measured in "
        f"one run, one pair after the other ({time.strftime('%Y-%m-%d')}).\n\n{md}\n\nCommand: `{command_line()}`"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="steps per process/option run (the second half is measured)")
    ap.add_argument("--pair-steps", type=int, default=10, help="steps per G/D pair")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="threads of the options and pairs tables")
    ap.add_argument("--only", default="processes,options,pairs")
    args = ap.parse_args()
    for part in args.only.split(","):
        {"processes": bench_processes, "options": bench_options, "pairs": bench_pairs}[part](args)


if __name__ == "__main__":
    main()
