"""GCA paper, Table 1 on Fashion-MNIST: DCGAN, DCGAN + NL, DCGAN + GCA, SAGAN, SAGAN + GCA.

Fashion-MNIST resized to 32x32 (64x64 does not fit a CPU budget), the attention block after the
8x8 feature map of G and of D (as §4 does at 64x64): ``insert=nonlocal@8`` / ``insert=gca@8``
for ``dcgan`` (gzoo's default width ``ch=32``, non-saturating loss, Adam 2e-4 (0.5, 0.999)),
``attn=nonlocal|gca`` with ``attn_res=8`` for ``sagan`` (hinge loss, Adam (0, 0.999), lr G 1e-4
/ D 4e-4, spectral norm in D by ``--reg sn``: the ``sagan-paper`` settings; ``--sagan-ch`` sets its width). Each model and seed
trains ``--steps`` steps of batch ``--batch-size`` with one torch thread, one run at a time, and
is measured with ``gzoo.evaluation.evaluate_generator`` (LeNet-feature metrics) on ``--n-eval``
samples. Every run's result is saved as it finishes under ``benchmarks/results/gca/per-run/``, so
``--report`` rebuilds the table (section ``gca`` of docs/benchmarks.md), the sample grids and
the attention heatmaps from what finished, without training.

    python benchmarks/bench_gca.py --pilot 20                  # seconds per step of each model
    python benchmarks/bench_gca.py --rows dcgan,dcgan+nonlocal,dcgan+gca --steps 3000 --seeds 0,1,2
    python benchmarks/bench_gca.py --rows sagan,sagan+gca --steps 1000 --seeds 0 --sagan-ch 16
    python benchmarks/bench_gca.py --report
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, command_line, markdown_table, mean_std, publish_picture, write_section  # noqa: E402

from gzoo.config import RunConfig  # noqa: E402
from gzoo.evaluation import evaluate_generator  # noqa: E402
from gzoo.run import count_parameters, load_run  # noqa: E402
from gzoo.trainer import Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gca"
DATA = "fashion-mnist"
METRICS = ["fid_lenet", "kid_lenet", "precision", "recall", "density", "coverage", "is_lenet", "class_coverage"]
PAPER = {"dcgan": 33.39, "dcgan+nonlocal": 34.56, "dcgan+gca": 25.75, "sagan": 54.75, "sagan+gca": 37.39}
ROW_NAMES = ["dcgan", "dcgan+nonlocal", "dcgan+gca", "sagan", "sagan+gca"]
HEATMAP_ROWS = ["dcgan+gca", "dcgan+nonlocal", "sagan+gca"]


def row_settings(row: str, sagan_ch: int) -> dict[str, Any]:
    """The run settings of one table row (everything but seed, steps, batch and output)."""
    if row.startswith("dcgan"):
        opts: dict[str, Any] = {}
        if "+" in row:
            opts["insert"] = f"{row.split('+')[1]}@8"
        return {"gen": "dcgan", "disc": "dcgan", "loss": "nonsaturating", "lr": 2e-4, "betas": (0.5, 0.999),
                "gen_opt": dict(opts), "disc_opt": dict(opts)}
    attn = "gca" if row.endswith("+gca") else "nonlocal"
    opts = {"attn": attn, "attn_res": 8, "ch": sagan_ch}
    return {"gen": "sagan", "disc": "sagan", "loss": "hinge", "reg": ["sn"], "lr": 1e-4, "lr_d": 4e-4, "betas": (0.0, 0.999),
            "gen_opt": dict(opts), "disc_opt": dict(opts)}


def label(row: str) -> str:
    return {"dcgan": "DCGAN", "dcgan+nonlocal": "DCGAN + NL", "dcgan+gca": "DCGAN + GCA", "sagan": "SAGAN (NL)",
            "sagan+gca": "SAGAN + GCA"}[row]


def config(row: str, seed: int, steps: int, batch: int, sagan_ch: int, out: Path) -> RunConfig:
    return RunConfig(**row_settings(row, sagan_ch), data=DATA, data_opt={"resolution": 32}, seed=seed, steps=steps,
                     batch_size=batch, out=str(out), sample_every=0, ckpt_every=0, progress=False, log_every=50)


def pilot(rows: list[str], steps: int, batch: int, sagan_ch: int, workdir: Path) -> None:
    """Seconds per step of each row (the whole fit over ``steps``), nothing written to docs."""
    for row in rows:
        shutil.rmtree(workdir / f"pilot-{row}", ignore_errors=True)
        trainer = Trainer(config(row, 0, steps, batch, sagan_ch, workdir / f"pilot-{row}"))
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.fit()
        dt, cpu = (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
        print(f"{row:16s} {dt:.3f} s/step ({cpu:.3f} CPU s/step)  G {count_parameters(trainer.G):,}  D {count_parameters(trainer.D):,}",
              flush=True)
    t0 = time.perf_counter()
    c0 = time.process_time()
    evaluate_generator(trainer.generate, DATA, n=2500, data_opt={"resolution": 32}, progress=False)
    print(f"evaluation of 2500 samples: {time.perf_counter() - t0:.1f} s ({time.process_time() - c0:.1f} CPU s)",
          flush=True)


def memory(threads: int) -> str:
    """Tensors one block saves for backward (per sample) and the time of a forward + backward,
    ``gca`` vs ``nonlocal`` at C = 64; printed as a markdown table (docs/gca.md, "Costs")."""
    from gzoo_gca.blocks import GCABlock, NonLocalBlock

    def saved_mib(block: torch.nn.Module, x: torch.Tensor) -> float:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[t.data_ptr()] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            block(x)
        return sum(seen.values()) / x.shape[0] / 2**20

    headers = ["block", *[f"{s}x{s} (N = {s * s:,})" for s in (8, 16, 32, 64)]]
    rows = []
    for cls in (GCABlock, NonLocalBlock):
        torch.manual_seed(0)
        block = cls(channels=64)
        mem, speed = [], []
        for side in (8, 16, 32, 64):
            mem.append(f"{saved_mib(block, torch.randn(2, 64, side, side, requires_grad=True)):.3g} MiB")
            if side <= 32:
                x = torch.randn(16, 64, side, side, requires_grad=True)
                t0 = time.perf_counter()
                for _ in range(3):
                    block(x).sum().backward()
                speed.append(f"{(time.perf_counter() - t0) / 3 * 1000:.3g} ms")
            else:
                speed.append("not run")
        name = "gca" if cls is GCABlock else "nonlocal"
        rows += [[f"`{name}`: saved for backward, per sample", *mem], [f"`{name}`: fwd + bwd, batch 16", *speed]]
    md = markdown_table(headers, rows) + f"\n\nCommand: `{command_line()}` ({threads} thread)"
    print(md)
    return md


def train_one(row: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.workdir) / f"{row}-s{seed}"
    if out.exists():
        shutil.rmtree(out)  # a rerun replaces the run
    trainer = Trainer(config(row, seed, args.steps, args.batch_size, args.sagan_ch, out))
    t0, c0 = time.perf_counter(), time.process_time()
    status = trainer.fit()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    grid = trainer.write_samples()
    samples = trainer.generate(args.n_eval, seed=seed)
    metrics = evaluate_generator(samples, DATA, n=args.n_eval, seed=seed, data_opt={"resolution": 32}, progress=False)
    result = {"row": row, "seed": seed, "steps": trainer.step, "status": status, "batch_size": args.batch_size,
              "sagan_ch": args.sagan_ch if row.startswith("sagan") else None, "n_eval": args.n_eval,
              "img_per_s": trainer.step * args.batch_size / seconds, "train_seconds": seconds, "train_cpu_seconds": cpu,
              "eval_seconds": metrics.pop("seconds"), "params_G": count_parameters(trainer.G),
              "params_D": count_parameters(trainer.D), "grid": str(grid), "run": str(trainer.run_dir),
              "command": command_line(),
              **{k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}}
    if status != "finished":
        raise SystemExit(f"{row} seed {seed} ended {status!r} at step {trainer.step}: not saved")
    (RESULTS / "per-run").mkdir(parents=True, exist_ok=True)
    (RESULTS / "per-run" / f"{row}-s{seed}.json").write_text(json.dumps(result, indent=1))
    return result


def load_results() -> list[dict[str, Any]]:
    rows = [json.loads(p.read_text()) for p in sorted((RESULTS / "per-run").glob("*.json"))]
    return sorted(rows, key=lambda r: (ROW_NAMES.index(r["row"]), r["seed"]))


def heatmaps(results: list[dict[str, Any]]) -> list[str]:
    """The attention visualizer on the first seed of each row with a block; markdown links."""
    from gzoo_gca.viz import attention

    links = []
    for row in HEATMAP_ROWS:
        rs = [r for r in results if r["row"] == row]
        if not rs or not (Path(rs[0]["run"]) / "checkpoints" / "last.pt").exists():
            continue
        run = load_run(rs[0]["run"])
        tmp = Path(rs[0]["run"]) / "attention.png"
        attention(run=run, out=tmp, n=3, queries=3, seed=0)
        links.append(publish_picture(tmp, f"gca-heatmaps-{row.replace('+', '-')}.png", f"attention of {label(row)}"))
    return links


def report(results: list[dict[str, Any]], notes: str) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=1))
    headers = ["model", "seeds", "steps", *METRICS, "fid_lenet by seed", "img_per_s", "params G", "params D",
               "paper FID (CelebA)"]
    table, grids = [], []
    for row in ROW_NAMES:
        rs = [r for r in results if r["row"] == row]
        if not rs:
            continue
        name = label(row) + (f" (ch={rs[0]['sagan_ch']})" if rs[0].get("sagan_ch") else "")
        table.append([name, ",".join(str(r["seed"]) for r in rs), "/".join(sorted({str(r["steps"]) for r in rs})),
                      *[mean_std([r[m] for r in rs if m in r]) for m in METRICS],
                      " / ".join(f"{r['fid_lenet']:.1f}" for r in rs), mean_std([r["img_per_s"] for r in rs]), f"{rs[0]['params_G']:,}", f"{rs[0]['params_D']:,}",
                      PAPER[row]])
        if Path(rs[0]["grid"]).exists():
            grids.append(publish_picture(rs[0]["grid"], f"gca-samples-{row.replace('+', '-')}.png", name))
    md = markdown_table(headers, table)
    print(md)
    pictures = heatmaps(results)
    commands = sorted({r["command"] for r in results})
    body = (f"## GCA paper, Table 1 on Fashion-MNIST 32x32 (block at the 8x8 feature map)\n\n{notes}\n\n{md}\n\n"
            f"Sample grids (seed {min(r['seed'] for r in results)}, in table order):\n\n{' '.join(grids)}\n\n"
            f"Attention heatmaps (`gzoo viz --what attention`; rows: 3 samples; per block and query: the row "
            f"of A, and for gca also the normalised adjacency; cyan: the query position; G's block first, then "
            f"D's):\n\n{' '.join(pictures)}\n\n"
            "Commands (training runs, then the table):\n\n" + "\n".join(f"- `{c}`" for c in [*commands, command_line()]))
    write_section("gca", body)
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(ROW_NAMES), help=f"comma list of {', '.join(ROW_NAMES)}")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--sagan-ch", type=int, default=16,
                    help="width of sagan's G and D (ch); 16 as in docs/gca.md (the model's default 32 costs ~1.3 CPU s a step)")
    ap.add_argument("--n-eval", type=int, default=2500, help="generated samples per evaluation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", default="runs/gca-bench")
    ap.add_argument("--pilot", type=int, default=0, help="only time this many steps per row")
    ap.add_argument("--memory", action="store_true", help="only print the blocks' memory and time at 8..64")
    ap.add_argument("--report", action="store_true", help="only rebuild the table from saved results")
    ap.add_argument("--notes", default="", help="a file whose text goes above the table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROW_NAMES]
    if unknown:
        ap.error(f"unknown rows {unknown}; valid: {', '.join(ROW_NAMES)}")
    if args.memory:
        memory(args.threads)
        return
    if args.pilot:
        pilot(rows, args.pilot, args.batch_size, args.sagan_ch, Path(args.workdir))
        return
    if not args.report:
        for row in rows:
            for seed in [int(s) for s in args.seeds.split(",")]:
                print(f"[{time.strftime('%H:%M:%S')}] {row} seed {seed}", flush=True)
                r = train_one(row, seed, args)
                print({k: r[k] for k in ("fid_lenet", "coverage", "img_per_s", "train_seconds", "train_cpu_seconds",
                                         "eval_seconds")},
                      flush=True)
        return
    notes = Path(args.notes).read_text() if args.notes else ""
    report(load_results(), notes)


if __name__ == "__main__":
    main()
