"""Benchmark harness: train a grid of (generator, discriminator, loss, regularizer, dataset,
seed) under one budget of steps, evaluate every run with gzoo's offline metrics, and write
a table (mean ± std over seeds, sample grids, the exact command) into docs/benchmarks.md.

    python benchmarks/harness.py --data fashion-mnist --pairs auto \
        --losses minimax,wgan+clip@rmsprop --seeds 0 --steps 50 --n-eval 10000 --section fmnist-grid

``--pairs auto`` takes every registered generator that can make images, each with the
discriminator of the same family (``cocgan`` -> ``coc``). A loss may carry regularizers and
an optimizer: ``wgan+clip@rmsprop`` is WGAN with weight clipping and RMSprop (the WGAN
paper's setting). Raw results go to ``benchmarks/results/<section>.json`` so other scripts
can reuse them.

From Python::

    from harness import Combo, run_grid, report
    rows = run_grid([Combo("dcgan", "dcgan", "minimax")], "fashion-mnist", seeds=[0, 1], steps=200)
    report("my-section", rows, title="...")
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, command_line, markdown_table, mean_std, publish_picture, write_section  # noqa: E402

from gzoo import create, hookimpl  # noqa: E402
from gzoo.config import RunConfig  # noqa: E402
from gzoo.evaluation import classifier_for, evaluate_generator, measured_by, metric_names  # noqa: E402
from gzoo.run import count_parameters  # noqa: E402
from gzoo.trainer import Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Combo:
    """One cell of the grid (everything but the dataset and the seed)."""

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
        item, _, opt = item.strip().partition("@")
        loss, *regs = item.split("+")
        out.append((loss, regs, opt or "adam"))
    return out


def auto_pairs() -> list[tuple[str, str]]:
    """Every registered generator, with the discriminator of its family (same name, or the
    name without a ``gan`` suffix, e.g. ``cocgan`` -> ``coc``; else ``dcgan``)."""
    import gzoo

    discs = {spec.name for spec in gzoo.list_components("discriminator")}
    pairs = []
    names = [spec.name for spec in gzoo.list_components("generator")]
    for g in sorted(names, key=lambda n: (["mlp", "dcgan"] + names).index(n)):  # classic ones first
        d = g if g in discs else g.removesuffix("gan") if g.removesuffix("gan") in discs else "dcgan"
        pairs.append((g, d))
    return pairs


def measure(trainer: Trainer, combo: Combo, n_eval: int) -> dict[str, Any]:
    """The run's sample grid at its current step and ``evaluate_generator``'s metrics on
    ``n_eval`` samples (EMA weights when the run keeps them)."""
    grid = trainer.run_dir / "samples" / f"step_{trainer.step:06d}.png"
    if not grid.exists():
        grid = trainer.write_samples()
    c = trainer.config
    samples, labels = trainer.generate(n_eval, seed=c.seed, return_labels=True)
    metrics = evaluate_generator(samples, c.data, n=n_eval, seed=c.seed, data_opt=c.data_opt, progress=False,
                                 labels=labels if combo.cond == "labels" else None)  # label_agreement
    return {"grid": str(grid), "eval_seconds": metrics.pop("seconds"),
            **{k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}}


class EvalAt:
    """A plugin that measures a run at earlier steps from inside ``fit`` (after the generator
    update of each step in ``steps``), so that one long run also gives the shorter budgets'
    results: nothing in a run's schedule depends on its total length (``cosine`` does, and is
    refused), so its weights at step k are those a k-step run ends with. The measurement runs
    under a forked RNG and its time is not counted as training time."""

    def __init__(self, steps: list[int], combo: Combo, n_eval: int):
        self.steps, self.combo, self.n_eval = sorted(steps), combo, n_eval
        self.results: dict[int, dict[str, Any]] = {}
        self.seconds = 0.0

    @hookimpl
    def gzoo_after_g_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step in self.steps:
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                self.results[step] = measure(trainer, self.combo, self.n_eval)
            self.seconds += time.perf_counter() - t0


def run_one(combo: Combo, data: str, seed: int, steps: int, batch_size: int = 64, n_eval: int = 10000,
            workdir: Path = Path("runs/bench"), explicit: Any = None, eval_at: Sequence[int] = (),
            **extra: Any) -> dict[str, Any]:
    """Train one run and evaluate it; returns metrics, images/s and parameter counts.

    ``explicit``: the settings to take literally (``Trainer``'s; default: gzoo completes the
    config as for ``gzoo run``, e.g. adding the discriminator's default regularizer).
    ``eval_at``: earlier steps to measure as well (:class:`EvalAt`); their results are in the
    returned row's ``"at"``, keyed by step."""
    out = Path(workdir) / f"{combo.gen}-{combo.disc}-{combo.loss}{''.join('-' + r for r in combo.reg)}" \
                          f"{'-' + combo.cond if combo.cond else ''}-s{seed}"
    outside = [k for k in eval_at if not 0 < k < steps]
    if outside:
        raise ValueError(f"eval_at steps must lie between 0 and the run's {steps} steps, got {outside}")
    if eval_at and extra.get("cosine"):
        raise ValueError("eval_at needs a schedule that does not depend on the run's length; cosine does")
    if out.exists():
        shutil.rmtree(out)
    trainer = Trainer(combo.config(data, seed, steps, batch_size, out, **extra), explicit=explicit)
    probe = EvalAt(list(eval_at), combo, n_eval)
    trainer.pm.pm.register(probe)
    t0 = time.perf_counter()
    try:
        trainer.fit()
    finally:
        trainer.pm.pm.unregister(probe)
    seconds = time.perf_counter() - t0 - probe.seconds
    if trainer.step < steps:  # stopped by a signal (fit saves and returns): not a result of this budget
        raise SystemExit(f"{out}: stopped at step {trainer.step} of {steps}; not evaluated, no result written")
    return {"combo": combo.label, "data": data, "seed": seed, "steps": steps, "batch_size": batch_size,
            "img_per_s": steps * batch_size / seconds, "train_seconds": seconds,
            "params_G": count_parameters(trainer.G), "params_D": count_parameters(trainer.D),
            "run": str(trainer.run_dir), **measure(trainer, combo, n_eval),
            **({"at": probe.results} if eval_at else {})}


def run_grid(combos: list[Combo], data: str, seeds: list[int], steps: int, batch_size: int = 64,
             n_eval: int = 10000, workdir: Path = Path("runs/bench"), **extra: Any) -> list[dict[str, Any]]:
    """Every combo x seed on ``data`` for ``steps`` steps; one result dict per run.

    ``extra`` are further :class:`~gzoo.config.RunConfig` fields (``lr=5e-4``, ``ema=0.999``...).
    """
    rows = []
    for combo in combos:
        for seed in seeds:
            print(f"[{time.strftime('%H:%M:%S')}] {combo.label} seed {seed}", flush=True)
            rows.append(run_one(combo, data, seed, steps, batch_size, n_eval, Path(workdir), **extra))
            print({k: rows[-1][k] for k in rows[-1]
                   if k in ("img_per_s", "fid_lenet", "coverage", "modes", "high_quality", "reverse_kl")}, flush=True)
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
    """Copy the first seed's sample grid of each combo under docs/benchmarks/; markdown image links."""
    links = []
    for r in rows:
        if r["seed"] != min(x["seed"] for x in rows if x["combo"] == r["combo"]) or not Path(r["grid"]).exists():
            continue
        name = f"{section}-" + "".join(ch if ch.isalnum() else "-" for ch in r["combo"]).strip("-") + ".png"
        links.append(publish_picture(r["grid"], name, r["combo"]))
    return links


def report(section: str, rows: list[dict[str, Any]], *, title: str, notes: str = "",
           metrics: list[str] | None = None, grids: bool = True) -> str:
    """Save ``rows`` to ``benchmarks/results/<section>.json`` and write section ``section`` of
    docs/benchmarks.md: a mean ± std table, the sample grids, and the command that ran."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{section}.json").write_text(json.dumps(rows, indent=1))
    if metrics is None:
        metrics = [m for m in metric_names(rows[0]["data"]) if m in rows[0]] + ["img_per_s"]
    headers, table = summarise(rows, metrics)
    md = markdown_table(headers, table)
    print(md)
    images = " ".join(copy_grids(rows, section)) if grids else ""
    write_section(section, f"## {title}\n\n{notes}\n\n{md}\n\n{images}\n\nCommand: `{command_line()}`")
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--pairs", default="auto", help="G:D pairs, comma-separated, or 'auto' (every generator)")
    ap.add_argument("--losses", default="minimax,wgan+clip@rmsprop")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--section", default="fmnist-grid")
    ap.add_argument("--workdir", default="runs/bench")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = auto_pairs() if args.pairs == "auto" else [tuple(p.split(":")) for p in args.pairs.split(",")]
    combos = [Combo(g, d, loss, regs, opt) for g, d in pairs for loss, regs, opt in parse_losses(args.losses)]
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()

    clf = None if measured_by(create("dataset", args.data)) == "mixture" else classifier_for(args.data, 28)
    rows = run_grid(combos, args.data, seeds, args.steps, args.batch_size, args.n_eval, Path(args.workdir))
    minutes = (time.perf_counter() - t0) / 60
    acc = f" (its test accuracy: {clf.accuracy:.3f})" if clf is not None else ""
    report(
        args.section, rows,
        title=f"{args.data}: {len(combos)} combinations, {args.steps} steps of batch {args.batch_size}, "
              f"{len(seeds)} seed(s)",
        notes=f"Every combination trains for the same budget of {args.steps} generator steps (batch "
              f"{args.batch_size}, default options, one D step per G step), then is measured on {args.n_eval} "
              f"generated samples against as many real training images, in the feature space of gzoo's own "
              f"LeNet classifier{acc}. These are **not Inception numbers** and are not comparable with papers "
              f"(docs/metrics.md). `img_per_s` is training throughput (generator steps x batch / wall time of the run) "
              f"on a shared CPU with {torch.get_num_threads()} torch thread(s): compare it only within this table. "
              f"Mean ± std over seeds (± 0 with one seed). Whole grid: {minutes:.0f} min. Sample grids, in "
              f"table order:",
    )


if __name__ == "__main__":
    main()
