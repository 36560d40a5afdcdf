"""Mode-collapse benchmarks: GAN vs self-conditioned GAN (Liu et al., CVPR 2020), on CPU.

* **2-D ring (8 modes) and grid (25 modes)**: the same MLP G/D, loss, optimizer and budget,
  with and without ``--cond selfcond``; modes recovered, % high-quality samples and reverse
  KL (``gzoo.metrics.modes.mixture_mode_metrics``), next to the published PacGAN numbers.
* **Stacked Fashion-MNIST (1,000 modes)**: DCGAN vs self-conditioned DCGAN, same budget;
  modes recovered and reverse KL against the real mode histogram, each channel classified
  by gzoo's Fashion-MNIST LeNet (``gzoo.metrics.modes.stacked_mode_metrics``).

Every run goes through ``gzoo.trainer.Trainer`` (what ``gzoo run`` does); runs are
independent processes with one thread each, ``--jobs`` at a time, so the numbers do not
depend on ``--jobs``. Results: a section of docs/benchmarks.md, raw rows in
benchmarks/results/modes*.json, sample scatters in docs/benchmarks/.

The runs are gzoo's presets ``gan-ring``/``selfcond-ring``, ``gan-grid``/``selfcond-grid`` and
``dcgan-stacked``/``selfcond-stacked`` (``gzoo list --kind preset``), so one row of a table is
``gzoo run --preset NAME --seed S`` away; the options below override a preset's settings.

    python benchmarks/bench_modes.py                      # everything (~30 min on 2 cores)
    python benchmarks/bench_modes.py --only 2d            # ring + grid (~3 min)
    python benchmarks/bench_modes.py --only stacked --stacked-steps 10000  # a longer run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, command_line, markdown_table, mean_std, publish_picture, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

#: PacGAN (Lin et al. 2018, Table 2), as quoted by the self-conditioned GAN paper (Table 1).
PUBLISHED = {
    "ring": [("GAN (published, PacGAN Table 2)", "6.3", "98.2", "0.45"),
             ("PacGAN4 (published)", "7.8", "95.9", "0.07")],
    "grid": [("GAN (published, PacGAN Table 2)", "17.3", "94.8", "0.70"),
             ("PacGAN4 (published)", "24.8", "93.6", "0.04")],
}
TARGET = {"high_quality": 0.95, "reverse_kl": 0.05}


# -- one run (top level: executed in worker processes) ------------------------------------------


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration and measure its mode metrics; returns one result row."""
    import torch

    torch.set_num_threads(job["threads"])
    from gzoo.config import RunConfig
    from gzoo.evaluation import evaluate_samples
    from gzoo.trainer import Trainer

    out = Path(job["config"]["out"])
    if out.exists():
        shutil.rmtree(out)
    trainer = Trainer(RunConfig(**job["config"]))
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    seed = job["config"]["seed"]
    samples = trainer.generate(job["n_eval"], seed=seed)
    wanted = ["modes", "high_quality", "reverse_kl"] if samples.dim() == 2 else ["modes", "reverse_kl"]
    metrics = evaluate_samples(samples, trainer.data, metrics=wanted, progress=False)
    row = {"model": job["model"], "data": job["config"]["data"], "seed": seed, "steps": trainer.step,
           "train_seconds": seconds, "config": job["config"], **metrics}
    if trainer.cond is not None:
        row["clusters_nonempty"] = int((trainer.cond.sizes > 0).sum())
        row["clusterings"] = trainer.cond.clusterings
    if job.get("picture"):  # seed 0: a picture for the docs
        path = trainer.write_samples()
        if trainer.cond is not None and samples.dim() == 2:
            trainer.registry.create("visualizer", "selfcond-clusters", run=trainer, out=path.with_name("clusters.png"))
            path = path.with_name("clusters.png")
        row["picture"] = str(path)
    return row


def run_all(jobs: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    rows = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for row in pool.map(run_one, jobs):
            keep = ("modes", "high_quality", "reverse_kl", "train_seconds", "clusters_nonempty")
            print(f"[{time.strftime('%H:%M:%S')}] {row['data']} {row['model']} seed {row['seed']}: "
                  + ", ".join(f"{k}={row[k]:.4g}" for k in keep if k in row), flush=True)
            rows.append(row)
    return rows


# -- experiment definitions ------------------------------------------------------------------------


RUN_QUIETLY = {"sample_every": 0, "ckpt_every": 0, "log_every": 0, "progress": False}


def preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The settings of preset ``name``, with the options the user gave on top (None: not given)."""
    from gzoo import get_registry

    settings = get_registry().get_preset(name)
    for key, value in overrides.items():
        if value is None:
            continue
        if key.endswith("_opt"):
            settings[key] = {**settings.get(key, {}), **value}
        else:
            settings[key] = value
    return settings


def _jobs(name: str, presets: dict[str, dict[str, Any]], n_eval: int, args: argparse.Namespace,
          workdir: Path) -> list[dict[str, Any]]:
    """Every seed of each model's preset (the baseline and its self-conditioned twin)."""
    jobs = []
    for model, settings in presets.items():
        for seed in args.seeds:
            cfg = dict(settings, **RUN_QUIETLY, seed=seed, out=str(workdir / f"{name}-{model}-s{seed}"))
            if cfg.get("cond") == "selfcond":
                cfg["cond_opt"] = {**cfg["cond_opt"], "seed": seed}
            jobs.append({"model": model, "config": cfg, "n_eval": n_eval, "threads": args.threads,
                         "picture": seed == args.seeds[0]})
    return jobs


def two_d_jobs(data: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    mlp = None if args.hidden_2d is None else {"hidden": args.hidden_2d}
    common = dict(gen_opt=mlp, disc_opt=mlp, steps=args.steps_2d, batch_size=args.batch_2d, lr=args.lr_2d)
    cond = {k: v for k, v in (("k", args.k_2d), ("recluster_every", args.recluster_2d),
                              ("subset", args.subset_2d)) if v is not None}
    presets = {"GAN": preset(f"gan-{data}", **common), "selfcond": preset(f"selfcond-{data}", **common, cond_opt=cond)}
    return _jobs(data, presets, args.n_2d, args, workdir)


def stacked_jobs(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    dc = None if args.stacked_ch is None else {"ch": args.stacked_ch}
    common = dict(gen_opt=dc, disc_opt=dc, steps=args.stacked_steps, batch_size=args.stacked_batch)
    cond = {k: v for k, v in (("k", args.stacked_k), ("recluster_every", args.stacked_recluster),
                              ("subset", args.stacked_subset)) if v is not None}
    presets = {"DCGAN": preset("dcgan-stacked", **common), "selfcond": preset("selfcond-stacked", **common, cond_opt=cond)}
    return _jobs("stacked", presets, args.n_stacked, args, workdir)


def settings_of(rows: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The config a model's runs used (for the table's description)."""
    return next(r["config"] for r in rows if r["model"] == model)


# -- tables ------------------------------------------------------------------------------------------


def _copy_picture(rows: list[dict[str, Any]], name: str) -> str:
    pic = next((r["picture"] for r in rows if "picture" in r), None)
    return publish_picture(pic, name) if pic is not None else ""


def _reached(ok: bool) -> str:
    return "**reached**" if ok else "**not reached**"


def two_d_section(data: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    k_modes = rows[0]["num_modes"]
    c, sc = settings_of(rows, "GAN"), settings_of(rows, "selfcond")["cond_opt"]
    table, verdicts, pictures = [], [], []
    for model, name in (("GAN", f"GAN (gzoo, --preset gan-{data})"),
                        ("selfcond", f"self-conditioned GAN, k={sc['k']} (gzoo, --preset selfcond-{data})")):
        rs = [r for r in rows if r["model"] == model]
        full = sum(r["modes"] == k_modes for r in rs)
        table.append([name, mean_std([r["modes"] for r in rs]), mean_std([100 * r["high_quality"] for r in rs]),
                      mean_std([r["reverse_kl"] for r in rs], 2), f"{full}/{len(rs)}",
                      f"{sum(r['train_seconds'] for r in rs) / len(rs):.0f}"])
        if model == "selfcond":
            mean = {m: sum(r[m] for r in rs) / len(rs) for m in ("high_quality", "reverse_kl")}
            verdicts = [f"all {k_modes} modes in every seed: {_reached(full == len(rs))}",
                        f"≥ 95% high quality (mean {100 * mean['high_quality']:.1f}%): "
                        f"{_reached(mean['high_quality'] >= TARGET['high_quality'])}",
                        f"reverse KL ≤ 0.05 (mean {mean['reverse_kl']:.3f}): "
                        f"{_reached(mean['reverse_kl'] <= TARGET['reverse_kl'])}"]
        pictures.append(_copy_picture(rs, f"modes-{data}-{model}.png"))
    table += [[*p, "-", "-"] for p in PUBLISHED[data]]
    n_eval = rows[0]["n"]
    return (
        f"### 2-D {data} ({k_modes} modes)\n\n"
        f"MLP G and D (hidden {c['gen_opt']['hidden']}, depth {c['gen_opt']['depth']}; G latent 64), non-saturating "
        f"loss, Adam lr {c['lr']:g} (betas 0.5, 0.999) with cosine decay, batch {c['batch_size']}, {c['steps']} G "
        f"steps, seeds {','.join(map(str, args.seeds))} (mean ± std over seeds); metrics on {n_eval} generated "
        f"samples (high quality = within 3σ of the nearest mode). Self-conditioning: k={sc['k']}, reclustering "
        f"every {sc['recluster_every']} steps, subset {sc['subset']}. Budget: {c['steps']} steps per run, one CPU thread "
        f"per run; `train s` is the mean wall time of one run (shared machine). Published rows: other code, "
        f"architecture and budget (reference only).\n\n"
        + markdown_table(["model", f"modes (of {k_modes})", "% high quality", "reverse KL", "all modes", "train s"],
                         table)
        + "\n\nTarget for the self-conditioned GAN: " + "; ".join(verdicts) + ".\n\n"
        + " ".join(p for p in pictures if p)
        + ("\n\nLeft: GAN samples (red) over real data (grey). Right: self-conditioned GAN, real subset (left "
           "panel) and generated samples (right panel) coloured by cluster." if any(pictures) else "")
    )


def stacked_real_reference(args: argparse.Namespace) -> dict[str, Any]:
    """The metrics of ``n_stacked`` real stacked images: the best a generator can score, given the
    classifier's errors (its mistakes spread the real images over more modes than their labels)."""
    import torch

    from gzoo import create
    from gzoo.evaluation import classifier_for
    from gzoo.metrics.modes import stacked_mode_metrics

    clf = classifier_for("fashion-mnist", 28)
    data = create("dataset", "stacked-fashion-mnist")
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data), generator=g)[: args.n_stacked]
    row = stacked_mode_metrics(data.get_batch(idx)[0], clf, data.labels())
    return {**row, "classifier_accuracy": clf.accuracy}


def stacked_section(rows: list[dict[str, Any]], args: argparse.Namespace, real: dict[str, Any] | None = None) -> str:
    table = []
    c, sc = settings_of(rows, "DCGAN"), settings_of(rows, "selfcond")["cond_opt"]
    if real is not None:
        table.append([f"real stacked images ({real['n']}, reference)", str(real["modes"]),
                      f"{real['reverse_kl']:.3f}", "-"])
    for model, name in (("DCGAN", "DCGAN (--preset dcgan-stacked)"),
                        ("selfcond", f"self-conditioned DCGAN, k={sc['k']} (--preset selfcond-stacked)")):
        rs = [r for r in rows if r["model"] == model]
        table.append([name, mean_std([r["modes"] for r in rs]), mean_std([r["reverse_kl"] for r in rs]),
                      f"{sum(r['train_seconds'] for r in rs) / len(rs):.0f}"])
    n_eval = rows[0]["n"]
    return (
        f"### Stacked Fashion-MNIST (1,000 modes)\n\n"
        f"DCGAN G and D (width {c['gen_opt']['ch']}, no batch norm in D), non-saturating loss, Adam {c['lr']:g} "
        f"(0.5, 0.999), batch {c['batch_size']}, {c['steps']} G steps, seeds {','.join(map(str, args.seeds))} "
        f"(mean ± std); metrics on {n_eval} generated samples, each channel classified by gzoo's Fashion-MNIST "
        f"LeNet" + (f" (test accuracy {real['classifier_accuracy']:.3f}; the first row measures {real['n']} real "
                    f"images the same way: the best a generator can score)" if real else "")
        + f"; reverse KL against the real stacked mode histogram. Self-conditioning: k={sc['k']}, "
        f"reclustering every {sc['recluster_every']} steps, subset {sc['subset']}. Budget: "
        f"{c['steps']} steps per run, one CPU thread per run; a short CPU budget, far from the paper's "
        f"(use `--stacked-steps` for longer runs).\n\n"
        + markdown_table(["model", "modes (of 1000)", "reverse KL", "train s"], table)
        + "\n\n" + " ".join(p for p in (_copy_picture([r for r in rows if r["model"] == m], f"modes-stacked-{m}.png")
                                         for m in ("DCGAN", "selfcond")) if p)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--only", choices=["2d", "stacked"], help="run one part")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--workdir", default="runs/bench-modes")
    g = ap.add_argument_group("2-D ring and grid")
    g.add_argument("--steps-2d", type=int, help="default: the preset's")
    g.add_argument("--batch-2d", type=int, help="default: the preset's")
    g.add_argument("--lr-2d", type=float, help="default: the preset's")
    g.add_argument("--hidden-2d", type=int, help="default: the preset's")
    g.add_argument("--k-2d", type=int, help="default: the preset's")
    g.add_argument("--recluster-2d", type=int, help="default: the preset's")
    g.add_argument("--subset-2d", type=int, help="default: the preset's")
    g.add_argument("--n-2d", type=int, default=2500, help="generated samples per evaluation")
    s = ap.add_argument_group("stacked Fashion-MNIST")
    s.add_argument("--stacked-steps", type=int, help="default: the preset's")
    s.add_argument("--stacked-batch", type=int, help="default: the preset's")
    s.add_argument("--stacked-ch", type=int, help="default: the preset's")
    s.add_argument("--stacked-k", type=int, help="default: the preset's")
    s.add_argument("--stacked-recluster", type=int, help="default: the preset's")
    s.add_argument("--stacked-subset", type=int, help="default: the preset's")
    s.add_argument("--n-stacked", type=int, default=10000, help="generated samples per evaluation")
    args = ap.parse_args()
    workdir = Path(args.workdir)

    jobs: list[dict[str, Any]] = []
    if args.only in (None, "2d"):
        jobs += two_d_jobs("ring", args, workdir) + two_d_jobs("grid", args, workdir)
    if args.only in (None, "stacked"):
        jobs += stacked_jobs(args, workdir)
    real_row = None
    if args.only in (None, "stacked"):
        real_row = stacked_real_reference(args)  # also trains/caches the classifier once, before the workers
    t0 = time.perf_counter()
    rows = run_all(jobs, args.jobs)
    wall = time.perf_counter() - t0

    parts = [two_d_section(d, [r for r in rows if r["data"] == d], args) for d in ("ring", "grid")
             if any(r["data"] == d for r in rows)]
    if any(r["data"] == "stacked-fashion-mnist" for r in rows):
        parts.append(stacked_section([r for r in rows if r["data"] == "stacked-fashion-mnist"], args, real_row))
    suffix = f"-{args.only}" if args.only else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"modes{suffix}.json").write_text(json.dumps(rows, indent=1))
    text = "\n\n".join(parts)
    print(text)
    write_section(
        f"modes{suffix}",
        "## Mode collapse: GAN vs self-conditioned GAN\n\n" + text
        + f"\n\n{len(jobs)} runs, {args.jobs} at a time, {wall / 60:.1f} min wall time in all.\n\n"
        f"Command: `{command_line()}`",
    )


if __name__ == "__main__":
    main()
