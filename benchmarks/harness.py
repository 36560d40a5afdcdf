"""Benchmark harness: train a grid of (generator, discriminator, loss, regularizer, dataset,
seed) under one budget of steps, evaluate every run with gzoo's offline metrics, and write
a table (mean ± std over seeds, sample grids, the exact command) into docs/benchmarks.md.

    python benchmarks/harness.py --data fashion-mnist --pairs mlp:mlp,dcgan:dcgan,cocgan:coc \
        --losses minimax,wgan --seeds 0 --steps 100 --n-eval 10000 --section fmnist-grid

A loss may carry regularizers and an optimizer: ``wgan+clip@rmsprop`` is WGAN with weight
clipping and RMSprop (the WGAN paper's setting). Raw results go to
``benchmarks/results/<section>.json`` so other scripts can reuse them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, command_line, markdown_table, mean_std, write_section  # noqa: E402

from gzoo.config import RunConfig  # noqa: E402
from gzoo.evaluation import evaluate_samples, metric_names  # noqa: E402
from gzoo.run import count_parameters  # noqa: E402
from gzoo.trainer import Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "benchmarks"


@dataclass
class Combo:
    gen: str
    disc: str
    loss: str
    reg: list[str] = field(default_factory=list)
    optimizer: str = "adam"
    gen_opt: dict[str, Any] = field(default_factory=dict)
    disc_opt: dict[str, Any] = field(default_factory=dict)
    cond: str | None = None
    cond_opt: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        reg = "+" + "+".join(self.reg) if self.reg else ""
        cond = f" [{self.cond}]" if self.cond else ""
        return f"{self.gen}/{self.disc} {self.loss}{reg} ({self.optimizer}){cond}"

    def config(self, data: str, seed: int, steps: int, batch_size: int, out: Path, **extra: Any) -> RunConfig:
        return RunConfig(gen=self.gen, disc=self.disc, loss=self.loss, reg=list(self.reg), optimizer=self.optimizer,
                         gen_opt=dict(self.gen_opt), disc_opt=dict(self.disc_opt), cond=self.cond,
                         cond_opt=dict(self.cond_opt), data=data, seed=seed, steps=steps, batch_size=batch_size,
                         out=str(out), sample_every=0, ckpt_every=0, progress=False, **extra)


def parse_losses(text: str) -> list[tuple[str, list[str], str]]:
    """``wgan+clip@rmsprop,minimax`` -> [(loss, regs, optimizer), ...]."""
    out = []
    for item in text.split(","):
        item, _, opt = item.partition("@")
        loss, *regs = item.split("+")
        out.append((loss, regs, opt or "adam"))
    return out


def run_one(combo: Combo, data: str, seed: int, steps: int, batch_size: int, n_eval: int, workdir: Path,
            **extra: Any) -> dict[str, Any]:
    """Train one run and evaluate it; returns metrics, images/s and parameter counts."""
    out = workdir / f"{combo.gen}-{combo.disc}-{combo.loss}{'-' + combo.cond if combo.cond else ''}-s{seed}"
    if out.exists():
        shutil.rmtree(out)
    trainer = Trainer(combo.config(data, seed, steps, batch_size, out, **extra))
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    samples = trainer.generate(n_eval, seed=seed)
    metrics = evaluate_samples(samples, data, data_opt=trainer.config.data_opt, seed=seed, progress=False)
    grid = trainer.write_samples()
    return {"combo": combo.label, "seed": seed, "steps": steps, "batch_size": batch_size,
            "img_per_s": steps * batch_size / seconds, "train_seconds": seconds,
            "params_G": count_parameters(trainer.G), "params_D": count_parameters(trainer.D),
            "grid": str(grid), **{k: v for k, v in metrics.items() if isinstance(v, int | float)}}


def run_grid(combos: list[Combo], data: str, seeds: list[int], steps: int, batch_size: int, n_eval: int,
             workdir: Path, **extra: Any) -> list[dict[str, Any]]:
    rows = []
    for combo in combos:
        for seed in seeds:
            print(f"[{time.strftime('%H:%M:%S')}] {combo.label} seed {seed}", flush=True)
            rows.append(run_one(combo, data, seed, steps, batch_size, n_eval, workdir, **extra))
            print({k: rows[-1][k] for k in rows[-1] if k in ("img_per_s", "fid_lenet", "modes", "high_quality", "reverse_kl")}, flush=True)
    return rows


def summarise(rows: list[dict[str, Any]], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """Mean ± std over seeds, one row per combo, in first-seen order."""
    combos = list(dict.fromkeys(r["combo"] for r in rows))
    headers = ["combination", "seeds", *metrics]
    table = []
    for c in combos:
        rs = [r for r in rows if r["combo"] == c]
        table.append([c, str(len(rs)), *[mean_std([r[m] for r in rs if m in r]) for m in metrics]])
    return headers, table


def copy_grids(rows: list[dict[str, Any]], section: str) -> list[str]:
    """Copy the seed-0 sample grid of each combo under docs/benchmarks/; markdown image links."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    links = []
    for r in rows:
        if r["seed"] != min(x["seed"] for x in rows if x["combo"] == r["combo"]):
            continue
        name = f"{section}-" + "".join(ch if ch.isalnum() else "-" for ch in r["combo"]).strip("-") + ".png"
        shutil.copy(r["grid"], IMAGES / name)
        links.append(f"![{r['combo']}](benchmarks/{name})")
    return links


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--pairs", default="mlp:mlp,dcgan:dcgan,cocgan:coc", help="G:D pairs")
    ap.add_argument("--losses", default="minimax,wgan+clip@rmsprop")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=10000)
    ap.add_argument("--section", default="fmnist-grid")
    ap.add_argument("--workdir", default="runs/bench")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    combos = [Combo(g, d, loss, regs, opt) for g, d in (p.split(":") for p in args.pairs.split(","))
              for loss, regs, opt in parse_losses(args.losses)]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = run_grid(combos, args.data, seeds, args.steps, args.batch_size, args.n_eval, Path(args.workdir))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.section}.json").write_text(json.dumps(rows, indent=1))
    shown = [m for m in metric_names(args.data) if m in rows[0]] + ["img_per_s"]
    headers, table = summarise(rows, shown)
    md = markdown_table(headers, table)
    print(md)
    write_section(
        args.section,
        f"## {args.data}: {len(combos)} combinations, {args.steps} steps of batch {args.batch_size}, "
        f"{len(seeds)} seed(s)\n\n"
        f"Metrics on {args.n_eval} generated samples against as many real training images, in gzoo's own LeNet "
        f"feature space (see docs/metrics.md: not comparable with Inception FID). img_per_s is training throughput "
        f"(batch x steps / wall time) in this one process, CPU, {torch.get_num_threads()} threads. "
        f"Mean ± std over seeds.\n\n{md}\n\n" + " ".join(copy_grids(rows, args.section)) +
        f"\n\nCommand: `{command_line()}`",
    )


if __name__ == "__main__":
    main()
