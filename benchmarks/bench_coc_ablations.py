"""CoC-GAN ablations: one change at a time against a base configuration, at an equal budget.

Every variant trains ``cocgan + coc`` on Fashion-MNIST for the same number of steps, batch and
seeds, with each loss asked for, then is measured with ``gzoo.evaluation.evaluate_generator``
(LeNet-feature FID and the rest) on ``--n-eval`` samples. Each run is its own process with one
torch thread, ``--jobs`` of them at a time; a finished run's result is kept in
``benchmarks/results/coc-ablations/`` and not trained again, so the table can grow over several
sessions and ``--report`` rebuilds it from what is there. The table (mean ± std over seeds) goes
into docs/coc.md, section ``coc-ablations-<steps>``, with the command.

    python benchmarks/bench_coc_ablations.py --list
    python benchmarks/bench_coc_ablations.py --variants table1,increaser-overlap --losses nonsaturating \\
        --seeds 0,1 --steps 1000 --jobs 2
    python benchmarks/bench_coc_ablations.py --report        # the table from the results kept so far

Losses: ``nonsaturating`` (Adam) and ``wgan`` (weight clipping and RMSprop, CoC-GAN §4.2; the
clip regularizer's own defaults), both at ``--lr``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, command_line, markdown_table, mean_std, publish_picture, write_section  # noqa: E402

from gzoo_coc.models import TABLE1_OPTIONS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "coc-ablations"
COC_MD = ROOT / "docs" / "coc.md"
METRICS = ["fid_lenet", "class_coverage", "coverage", "recall", "precision", "label_agreement"]

#: name -> (what changes, RunConfig fields). "table1" is our literal reading of Table 1 (the
#: ``cocgan-paper-table1`` preset's models); the single-change variants change one thing from
#: it; "default..." are gzoo's default models (spelled out, so the runs do not move with them).
#: Every row trains with exactly the regularizers it lists (none unless it names one), while
#: ``gzoo run`` adds ``coc``'s default regularizers, spectral norm and R1 of weight 1 (and, on
#: conditional runs, the mismatch term at weight 0.5): that is ``default-sn-r1`` (``default-sn-r1-labels-stage1-mismatch-0.5``
#: when conditional). DEFAULTS keeps D's label at the head only (``label_stage=0``, the default
#: before the ``-stage`` rows), so the earlier conditional rows stay what they measured.
TABLE1 = {"gen_opt": {**TABLE1_OPTIONS["gen_opt"], "layer_scale": 1e-5},
          "disc_opt": {**TABLE1_OPTIONS["disc_opt"], "layer_scale": 1e-5}}
SMALL_RATES = "7:64:1:1:2,2:32:2:1:2,2:16:3:2:2"
OFFICIAL_REDUCER = "cell,overlap,overlap,overlap"
DEFAULTS = {"gen_opt": {"increaser": "overlap", "init": "official", "stages": SMALL_RATES},
            "disc_opt": {"reducer": OFFICIAL_REDUCER, "init": "official", "label_stage": 0}}
#: the moving average's decay: its horizon (about 1 / (1 - decay) = 200 steps) fits both budgets, and the
#: random initial weights keep 0.995^1000 < 1% of the average at 1,000 steps (0.999 would keep 37%)
EMA = 0.995
#: bases of the rows built on gzoo's default regularizers: spectral norm and R1 of weight 1; the same
#: conditional; with D's label on its first stage's points; and with the mismatch term (weight 1) too
SN_R1 = {**DEFAULTS, "reg": ["sn", "r1"], "reg_opt": {"r1": {"weight": 1.0}}}
SN_R1_LABELS = {**SN_R1, "cond": "labels"}
STAGE1 = {**SN_R1_LABELS, "disc_opt": {**DEFAULTS["disc_opt"], "label_stage": 1}}
STAGE1_MISMATCH = {**STAGE1, "reg": [*SN_R1["reg"], "mismatch"]}
#: the mismatch term at half weight (the conditional default since the `-0.5` row)
STAGE1_MISMATCH_05 = {**STAGE1_MISMATCH, "reg_opt": {**SN_R1["reg_opt"], "mismatch": {"weight": 0.5}}}
#: G's blocks starting as full residual branches: layer scale 1 and PyTorch's MLP init (the `-g-ls1-torch` rows;
#: spelled out rather than read from ``cocgan``'s ``wasserstein_opt``, so the rows stay what they measured)
G_LS1_TORCH = {**DEFAULTS["gen_opt"], "layer_scale": 1.0, "init": "torch"}
#: the same with layer scale 0.1: G's blocks start as tenth-size branches (the `-g-ls0.1-torch` rows)
G_LS01_TORCH = {**G_LS1_TORCH, "layer_scale": 0.1}
#: the defaults with the clip bound 0.05 (`coc`'s `clip_bound` until 0.1; the `default-clip-0.05...` rows), and with G's blocks as full branches too
CLIP_05 = {**DEFAULTS, "reg_opt": {"clip": {"clip": 0.05}}}
CLIP_05_G_LS1 = {**CLIP_05, "gen_opt": G_LS1_TORCH}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dcgan": ("DCGAN (`dcgan + dcgan`, default options), the baseline of the targets", {"gen": "dcgan", "disc": "dcgan"}),
    "table1": ("Table 1 as we read it (cell increaser and reducer, PyTorch init, layer scale 1e-5)", {}),
    "increaser-overlap": ("G increaser reads the 3x3 parents (`increaser=overlap`)",
                          {"gen_opt": {"increaser": "overlap"}}),
    "reducer-overlap": (f"D reducer: official layout (`reducer={OFFICIAL_REDUCER}`)",
                        {"disc_opt": {"reducer": OFFICIAL_REDUCER}}),
    "init-official": ("MLP init: truncated normal 0.02 (`init=official`, G and D)",
                      {"gen_opt": {"init": "official"}, "disc_opt": {"init": "official"}}),
    "layer-scale-1": ("layer scale init 1 instead of 1e-5 (G and D)",
                      {"gen_opt": {"layer_scale": 1.0}, "disc_opt": {"layer_scale": 1.0}}),
    "small-rates": (f"G: smaller rates over more stages (1 -> 7x7 -> 14x14 -> 28x28: `stages={SMALL_RATES}`)",
                    {"gen_opt": {"stages": SMALL_RATES}}),
    "lr-d-4e-4": ("D learning rate 4e-4 (G 2e-4)", {"lr_d": 4e-4}),
    "d-small": ("D capacity halved (`head_dim=16`, `mlp_r=4`)", {"disc_opt": {"head_dim": 16, "mlp_r": 4}}),
    "overlap-official": ("increaser-overlap + reducer-overlap + init-official",
                         {"gen_opt": {"increaser": "overlap", "init": "official"},
                          "disc_opt": {"reducer": OFFICIAL_REDUCER, "init": "official", "label_stage": 0}}),
    "default": ("the default models (small-rates + increaser-overlap + reducer-overlap + init-official) without a "
                "regularizer (`--reg none`; the `default-...` rows change this one)", DEFAULTS),
    "default-clip-all": ("wgan only: the defaults with every D parameter clipped, gains and layer scales too "
                         "(`--reg-opt params=all`, the WGAN paper's code; the default clips coc's weight matrices only)",
                         {**DEFAULTS, "reg_opt": {"clip": {"params": "all"}}}),
    "default-clip-0.05": ("wgan only: the defaults with the clip bound at 0.05 instead of the WGAN paper's 0.01 "
                          "(`--reg-opt clip.clip=0.05`; `coc`'s weight matrices, as `default`; `coc`'s `clip_bound` until 0.1): "
                          "gzoo's default WGAN version until `default-clip-0.05-g-ls1-torch`",
                          CLIP_05),
    "default-clip-0.05-r1": ("wgan only: `default-clip-0.05` with R1 of weight 1 beside the clipping "
                             "(`--reg clip --reg r1 --reg-opt r1.weight=1`)",
                             {**CLIP_05, "reg": ["r1"], "reg_opt": {**CLIP_05["reg_opt"], **SN_R1["reg_opt"]}}),
    "default-clip-0.05-g-ls1-torch": ("wgan only: gzoo's default WGAN version until `default-clip-0.1-g-ls1-torch`: `default-clip-0.05` with G's blocks starting as "
                                      "full residual branches, layer scale 1 and PyTorch's MLP init in G (`--gen-opt "
                                      "layer_scale=1 --gen-opt init=torch`, `cocgan`'s `wasserstein_opt`; D unchanged)",
                                      CLIP_05_G_LS1),
    "default-clip-0.1-g-ls1-torch": ("wgan only: gzoo's default WGAN version: `default-clip-0.05-g-ls1-torch` with the clip bound "
                                     "at 0.1 (`--reg-opt clip.clip=0.1`; `coc`'s `clip_bound`)",
                                     {**CLIP_05_G_LS1, "reg_opt": {"clip": {"clip": 0.1}}}),
    "default-clip-0.1-g-ls1-torch-copy": ("wgan only: `default-clip-0.1-g-ls1-torch` with G's later increasers copying "
                                          "each parent to its new points, then one linear layer over the 3x3 "
                                          "neighbourhood of copies (`--gen-opt increaser=copy`: resize, then convolve)",
                                          {**CLIP_05_G_LS1, "reg_opt": {"clip": {"clip": 0.1}},
                                           "gen_opt": {**G_LS1_TORCH, "increaser": "copy"}}),
    "default-clip-0.05-g-ls1-torch-ema": ("wgan only: `default-clip-0.05-g-ls1-torch` with an exponential moving average of "
                                          "G's weights, decay 0.995 (`--ema 0.995`; samples and metrics from the average)",
                                          {**CLIP_05_G_LS1, "ema": EMA}),
    "default-clip-0.05-g-ls0.1-torch": ("wgan only: `default-clip-0.05-g-ls1-torch` with layer scale 0.1 in G instead of 1 "
                                        "(`--gen-opt layer_scale=0.1 --gen-opt init=torch`)",
                                        {**CLIP_05, "gen_opt": G_LS01_TORCH}),
    "default-clip-0.05-r1-g-ls1-torch": ("wgan only: `default-clip-0.05-g-ls1-torch` with R1 of weight 1 beside the clipping "
                                         "(`--reg clip --reg r1 --reg-opt r1.weight=1`, as `default-clip-0.05-r1`)",
                                         {**CLIP_05_G_LS1, "reg": ["r1"],
                                          "reg_opt": {**CLIP_05["reg_opt"], **SN_R1["reg_opt"]}}),
    "default-leaky": ("the defaults with LeakyReLU (slope 0.2) in D's block MLPs instead of GELU "
                      "(`--disc-opt act=leaky_relu`)",
                      {**DEFAULTS, "disc_opt": {**DEFAULTS["disc_opt"], "act": "leaky_relu"}}),
    "default-labels": ("the defaults, conditional on the dataset's labels (`--cond labels`, GAN-INT-CLS)",
                       {**DEFAULTS, "cond": "labels"}),
    "dcgan-labels": ("DCGAN conditional on the labels (`--cond labels`)",
                     {"gen": "dcgan", "disc": "dcgan", "cond": "labels"}),
    "cocgan-vs-dcgan-d": ("diagnostic: gzoo's default CoC-GAN generator against DCGAN's discriminator",
                          {"gen": "cocgan", "disc": "dcgan", "gen_opt": dict(DEFAULTS["gen_opt"])}),
    "dcgan-vs-coc-d": ("diagnostic: DCGAN's generator against gzoo's default CoC discriminator",
                       {"gen": "dcgan", "disc": "coc", "disc_opt": dict(DEFAULTS["disc_opt"])}),
    "cocgan-vs-dcgan-d-labels": ("diagnostic: `cocgan-vs-dcgan-d` conditional on the labels (`--cond labels`)",
                                 {"gen": "cocgan", "disc": "dcgan", "gen_opt": dict(DEFAULTS["gen_opt"]),
                                  "cond": "labels"}),
    "dcgan-vs-coc-d-labels": ("diagnostic: `dcgan-vs-coc-d` conditional on the labels, spectral norm on the CoC D "
                              "as its default (`--cond labels --reg sn`)",
                              {"gen": "dcgan", "disc": "coc", "disc_opt": dict(DEFAULTS["disc_opt"]), "reg": ["sn"],
                               "cond": "labels"}),
    "default-lr-d-5e-5": ("the defaults with D's learning rate at a quarter of G's (5e-5)", {**DEFAULTS, "lr_d": 5e-5}),
    "default-r1": ("the defaults with a lazy R1 penalty on D (weight 1, every 16 steps)",
                   {**DEFAULTS, "reg": ["r1"], "reg_opt": {"r1": {"weight": 1.0}}}),
    "default-d-small": ("the defaults with D's blocks halved (`head_dim=16`, `mlp_r=4`)",
                        {**DEFAULTS, "disc_opt": {**DEFAULTS["disc_opt"], "head_dim": 16, "mlp_r": 4}}),
    "default-sn": ("the default models with spectral norm on every linear map of D (`--reg sn`; gzoo's default "
                   "until R1 joined it, `default-sn-r1`)",
                   {**DEFAULTS, "reg": ["sn"]}),
    "default-sn-labels": ("`default-sn` conditional on the labels (`--cond labels`)",
                          {**DEFAULTS, "reg": ["sn"], "cond": "labels"}),
    "default-sn-lr-d-4e-4": ("`default-sn` with D's learning rate at twice G's (4e-4)",
                             {**DEFAULTS, "reg": ["sn"], "lr_d": 4e-4}),
    "default-sn-ema": ("`default-sn` with an exponential moving average of G's weights, decay 0.995 (`--ema 0.995`; "
                       "samples and metrics from the average)", {**DEFAULTS, "reg": ["sn"], "ema": EMA}),
    "default-sn-r1": ("gzoo's defaults: `default-sn` with a lazy R1 penalty on D as well (weight 1, every 16 steps; "
                      "`coc`'s default regularizers)", SN_R1),
    "default-sn-r1-copy": ("`default-sn-r1` with G's later increasers copying each parent to its new points, then one "
                           "linear layer over the 3x3 neighbourhood of copies (`--gen-opt increaser=copy`)",
                           {**SN_R1, "gen_opt": {**DEFAULTS["gen_opt"], "increaser": "copy"}}),
    "default-sn-r1-g-ls1-torch": ("`default-sn-r1` with G's blocks starting as full residual branches: layer scale 1 and "
                                  "PyTorch's MLP init in G (`--gen-opt layer_scale=1 --gen-opt init=torch`; D unchanged)",
                                  {**SN_R1, "gen_opt": G_LS1_TORCH}),
    "default-sn-r1-labels": ("`default-sn-r1` conditional on the labels (`--cond labels`), D's label at its head only",
                             SN_R1_LABELS),
    "default-sn-r1-labels-multihead": ("`default-sn-r1-labels` with D's multi-head conditional head: one logit per "
                                       "class, the label picks it (`--disc-opt cond_head=multihead`)",
                                       {**SN_R1_LABELS, "disc_opt": {**DEFAULTS["disc_opt"], "cond_head": "multihead"}}),
    "default-sn-r1-labels-stage1": ("`default-sn-r1-labels` with the label added to every point of D's first stage, "
                                    "after its reducer (`--disc-opt label_stage=1`)", STAGE1),
    "default-sn-r1-labels-stage3": ("`default-sn-r1-labels` with the label added to every point of D's third stage, "
                                    "after its reducer (`--disc-opt label_stage=3`)",
                                    {**SN_R1_LABELS, "disc_opt": {**DEFAULTS["disc_opt"], "label_stage": 3}}),
    "default-sn-r1-labels-mismatch": ("`default-sn-r1-labels` with GAN-CLS's matching-aware D: real images with a "
                                      "wrong label scored as fake (`--reg mismatch`, weight 1)",
                                      {**SN_R1_LABELS, "reg": [*SN_R1["reg"], "mismatch"]}),
    "default-sn-r1-labels-stage1-mismatch": ("gzoo's conditional defaults until the `-0.5` row: `default-sn-r1-labels-stage1` with "
                                             "GAN-CLS's matching-aware D, real images with a wrong label scored as "
                                             "fake (`--reg mismatch`, weight 1)", STAGE1_MISMATCH),
    "default-sn-r1-labels-stage1-mismatch-0.5": ("gzoo's conditional defaults: `default-sn-r1-labels-stage1-mismatch` with "
                                                 "the mismatch term at half weight (`--reg-opt mismatch.weight=0.5`)",
                                                 STAGE1_MISMATCH_05),
    "default-sn-r1-labels-stage1-mismatch-0.5-g-ls1-torch": (
        "`default-sn-r1-labels-stage1-mismatch-0.5` with layer scale 1 and PyTorch's MLP init in G's blocks "
        "(`--gen-opt layer_scale=1 --gen-opt init=torch`)",
        {**STAGE1_MISMATCH_05, "gen_opt": G_LS1_TORCH}),
    "dcgan-ema": ("DCGAN with the same moving average of G (`--ema 0.995`), the baseline of the `-ema` rows",
                  {"gen": "dcgan", "disc": "dcgan", "ema": EMA}),
    "dcgan-cosine": ("DCGAN with the learning rate decayed to 0 on a cosine over the run (`--cosine`), the baseline "
                     "of the `-cosine` rows", {"gen": "dcgan", "disc": "dcgan", "cosine": True}),
    "default-clip-0.05-g-ls1-torch-cosine": ("wgan only: `default-clip-0.05-g-ls1-torch` with the paper's cosine decay "
                                             "of the learning rate over the run (`--cosine`, §4.2)",
                                             {**CLIP_05_G_LS1, "cosine": True}),
    "default-even": ("the defaults with D's reducers between stages reading evenly (`reducer=cell,even,even,even`)",
                     {**DEFAULTS, "disc_opt": {**DEFAULTS["disc_opt"], "reducer": "cell,even,even,even"}}),
}
LOSSES = {"nonsaturating": ("nonsaturating", [], "adam"), "wgan": ("wgan", ["clip"], "rmsprop")}
#: options each loss's regularizers train with unless the variant sets them: the WGAN paper's clip bound,
#: pinned because ``coc`` now asks for 0.05 (``Discriminator.clip_bound``; ``default-clip-0.05``), so the
#: rows measured before stay what they measured
LOSS_REG_OPT = {"nonsaturating": {}, "wgan": {"clip": {"clip": 0.01}}}


def settings(variant: str) -> dict[str, Any]:
    """RunConfig fields of a variant: Table 1's models with the variant's changes."""
    change = VARIANTS[variant][1]
    if "gen" in change:  # another model: its own defaults
        return {"gen_opt": {}, "disc_opt": {}, **change}
    out = {"gen": "cocgan", "disc": "coc", "gen_opt": dict(TABLE1["gen_opt"]), "disc_opt": dict(TABLE1["disc_opt"])}
    for key, value in change.items():
        if isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


#: rows that pair a CoC model with a DCGAN one; they were trained beside two other benchmarks
DIAGNOSTIC = ("cocgan-vs-dcgan-d", "dcgan-vs-coc-d")


def result_path(variant: str, loss: str, seed: int, steps: int, batch: int) -> Path:
    return RESULTS / f"{variant}__{loss}__b{batch}__{steps}__s{seed}.json"


def budget_suffix(steps: int) -> str:
    """The budget in run-directory and picture names, so that a longer run never replaces a
    shorter one's; the 1,000-step runs and pictures keep their original names."""
    return "" if steps == 1000 else f"-{steps}"


def run_dir(workdir: Path, variant: str, loss: str, steps: int) -> Path:
    """Where a run is trained."""
    return workdir / f"{variant}-{loss}{budget_suffix(steps)}"


def run_one(variant: str, loss: str, seed: int, steps: int, batch: int, n_eval: int, lr: float,
            workdir: Path, eval_at: list[int]) -> dict[str, Any]:
    import torch
    from harness import Combo
    from harness import run_one as train_and_measure

    torch.set_num_threads(1)
    name, regs, optimizer = LOSSES[loss]
    s = settings(variant)
    given = s.pop("reg_opt", {})
    s["reg_opt"] = {r: {**LOSS_REG_OPT[loss].get(r, {}), **given.get(r, {})} for r in {*LOSS_REG_OPT[loss], *given}}
    combo = Combo(s.pop("gen"), s.pop("disc"), name, [*regs, *s.pop("reg", [])], optimizer, gen_opt=s.pop("gen_opt"),
                  disc_opt=s.pop("disc_opt"), cond=s.pop("cond", None))
    row = train_and_measure(combo, "fashion-mnist", seed, steps, batch, n_eval, run_dir(workdir, variant, loss, steps), lr=lr,
                            explicit={"reg"}, eval_at=eval_at, **s)  # the regularizers exactly as listed
    row.update(variant=variant, loss=loss, lr=lr)
    return row


def eval_at(args: argparse.Namespace) -> list[int]:
    """``--eval-at``'s steps; each must lie strictly inside ``--steps`` (ValueError otherwise)."""
    try:
        steps = [int(x) for x in args.eval_at.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--eval-at takes a comma list of steps, got {args.eval_at!r}") from None
    bad = [k for k in steps if not 0 < k < args.steps]
    if bad:
        raise ValueError(f"--eval-at steps must lie between 0 and --steps ({args.steps}), got {bad[0]}")
    return steps


def jobs_of(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """The (variant, loss, seed) runs ``--variants``, ``--losses`` and ``--seeds`` ask for (ValueError
    naming the first bad one and the valid choices)."""
    from gzoo.errors import suggest

    variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}.{suggest(unknown[0], VARIANTS)} Valid: {', '.join(VARIANTS)}")
    bad = [x for x in args.losses.split(",") if x not in LOSSES]  # the losses this benchmark has settings for
    if bad:
        raise ValueError(f"unknown loss {bad[0]!r}.{suggest(bad[0], LOSSES)} Valid: {', '.join(LOSSES)}")
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        raise ValueError(f"--seeds takes a comma list of integers, got {args.seeds!r}") from None
    return [(v, loss, s) for loss in args.losses.split(",") for v in variants for s in seeds]


def launch(jobs: list[tuple[str, str, int]], args: argparse.Namespace) -> None:
    """Run the missing jobs, ``args.jobs`` processes at a time."""
    pending = [j for j in jobs if not result_path(*j, args.steps, args.batch_size).exists()]
    print(f"{len(jobs)} runs, {len(jobs) - len(pending)} already done, {len(pending)} to train", flush=True)
    running: list[tuple[subprocess.Popen, tuple[str, str, int]]] = []
    while pending or running:
        while pending and len(running) < args.jobs:
            job = pending.pop(0)
            cmd = [sys.executable, __file__, "--one", f"{job[0]}:{job[1]}:{job[2]}", "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--n-eval", str(args.n_eval), "--lr", str(args.lr),
                   "--workdir", args.workdir, "--eval-at", args.eval_at]
            print(f"[{time.strftime('%H:%M:%S')}] start {job}", flush=True)
            running.append((subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}), job))
        time.sleep(5)
        for proc, job in list(running):
            if proc.poll() is not None:
                running.remove((proc, job))
                print(f"[{time.strftime('%H:%M:%S')}] {'done' if proc.returncode == 0 else 'FAILED'} {job}", flush=True)


#: the training settings a row's DCGAN baseline must share with it (the target compares at the same
#: steps, batch and loss; these too, so that a ratio never credits CoC-GAN with a schedule or an average)
BASELINE_KEYS = ("cond", "ema", "cosine")


def baseline(variant: str) -> str:
    """The DCGAN row a variant's ``fid / DCGAN's`` divides by: conditional rows against conditional
    DCGAN, averaged G against averaged G, the cosine schedule against the cosine schedule."""
    s = settings(variant)
    base = "dcgan-labels" if s.get("cond") == "labels" else "dcgan-ema" if s.get("ema") else "dcgan"
    return f"{base}-cosine" if s.get("cosine") else base


def ratio(fid: list[float], seeds: list[int], ref: dict[int, float]) -> tuple[str, bool]:
    """A row's ``fid / DCGAN's``: its mean FID over the baseline's mean FID on the same seeds, so a
    seed that is hard for both models does not move the ratio; over all the baseline's seeds, marked
    with a dagger (and True), when the baseline lacks one of the row's seeds; "-" without a baseline."""
    if not ref:
        return "-", False
    same = all(s in ref for s in seeds)
    theirs = [ref[s] for s in seeds] if same else list(ref.values())
    return f"{(sum(fid) / len(fid)) / (sum(theirs) / len(theirs)):.2f}{'' if same else '†'}", not same


def report(args: argparse.Namespace) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"*__b{args.batch_size}__{args.steps}__*.json"))]
    if not rows:
        sys.exit(f"no results for {args.steps} steps at batch {args.batch_size} in {RESULTS}")
    order = list(VARIANTS)
    rows.sort(key=lambda r: (list(LOSSES).index(r["loss"]), order.index(r["variant"]), r["seed"]))

    base = {(b, loss): {r["seed"]: r["fid_lenet"] for r in rows if r["variant"] == b and r["loss"] == loss}
            for b in {baseline(v) for v in VARIANTS} for loss in LOSSES}
    unmatched = False
    table, pictures = [], []
    for loss in LOSSES:
        for variant in order:
            rs = [r for r in rows if r["variant"] == variant and r["loss"] == loss]
            if not rs:
                continue
            fid = [r["fid_lenet"] for r in rs]
            rel, unmatched_row = ratio(fid, [r["seed"] for r in rs], base[baseline(variant), loss])
            unmatched |= unmatched_row
            table.append([variant, loss, ",".join(str(r["seed"]) for r in rs),
                          *[mean_std([r[m] for r in rs if m in r]) for m in METRICS], rel,
                          f"{sum(r['img_per_s'] for r in rs) / len(rs):.0f}"])
            first = rs[0]
            name = f"coc-ablation-{variant}-{loss}{budget_suffix(args.steps)}.png"
            alt = f"{variant}, {loss}, seed {first['seed']}, {args.steps} steps"
            if Path(first["grid"]).exists():
                pictures.append(publish_picture(first["grid"], name, alt))
            elif (ROOT / "docs" / "benchmarks" / name).exists():  # published by an earlier run of the script
                pictures.append(f"![{alt}](benchmarks/{name})")
    headers = ["variant", "loss", "seeds", *METRICS, "fid / DCGAN's", "img/s"]
    legend = "\n".join(f"- `{k}`: {v[0]}" for k, v in VARIANTS.items() if any(r["variant"] == k for r in rows))
    md = markdown_table(headers, table)
    print(md)
    write_section(f"coc-ablations-{args.steps}", (
        f"### Ablations ({args.steps} steps, batch {args.batch_size}, Fashion-MNIST 28x28)\n\n"
        f"`cocgan + coc`, {args.steps} steps of one D and one G update at batch {args.batch_size}, lr {args.lr:g}; "
        "`nonsaturating` with Adam (0.5, 0.999), `wgan` with weight clipping (0.01 unless the row names another "
        "bound; `coc`'s weight matrices, see `default-clip-all`) and RMSprop. Metrics: "
        "`evaluate_generator` on "
        f"{rows[0].get('n_eval', args.n_eval)} samples (LeNet features; FID lower is better, the others higher), "
        "mean ± std over the seeds listed; `fid / DCGAN's` is the mean FID over the mean FID, on the same seeds, of `dcgan` (of `dcgan-labels` for "
        "conditional rows, of `dcgan-ema` for `-ema` rows, of `dcgan-cosine` for `-cosine` rows) with the same loss (the target is at most 1.25). img/s: training throughput of one run on one CPU thread, two runs sharing the 2-core machine "
        "(compare within this table only"
        + ("; the two diagnostic rows ran beside two other benchmarks, so their img/s are lower than their models' speed"
           if any(r["variant"] in DIAGNOSTIC for r in rows) else "") + ").\n\n"
        f"{legend}\n\n{md}\n\n{within(rows)}"
        + ("†: DCGAN lacks one of the row's seeds, so its mean over all its seeds.\n\n" if unmatched else "")
        + f"Sample grids (first seed), in table order: {' '.join(pictures)}\n\n"
        f"Runs (each kept in `benchmarks/results/coc-ablations/`, trained again only when missing): "
        + "; ".join(f"`{c}`" for c in reproduce(rows, args)) + f"\n\nTable: `{command_line()}`"), path=COC_MD)


def within(rows: list[dict[str, Any]]) -> str:
    """A sentence naming the rows measured at an earlier step of longer runs (``--eval-at``)."""
    longer: dict[int, list[str]] = {}
    for r in rows:
        if r.get("measured_within") and r["variant"] not in longer.setdefault(r["measured_within"], []):
            longer[r["measured_within"]].append(r["variant"])
    return "".join(
        f"Measured at step {rows[0]['steps']} of {total}-step runs (`--steps {total} --eval-at {rows[0]['steps']}`; a run "
        f"passes through the weights a {rows[0]['steps']}-step run ends with, and the img/s are the longer runs'): "
        + ", ".join(f"`{v}`" for v in vs) + ".\n\n" for total, vs in longer.items())


def reproduce(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """The commands that train ``rows``: one per (loss, seeds) group of variants."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        seeds = ",".join(str(x["seed"]) for x in rows if x["variant"] == r["variant"] and x["loss"] == r["loss"])
        key = (r["loss"], seeds)
        if r["variant"] not in groups.setdefault(key, []):
            groups[key].append(r["variant"])
    return [f"python benchmarks/bench_coc_ablations.py --variants {','.join(v)} --losses {loss} --seeds {seeds} "
            f"--steps {args.steps} --batch-size {args.batch_size} --lr {args.lr:g} --n-eval {rows[0].get('n_eval', 10000)}"
            for (loss, seeds), v in groups.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="all", help="comma list of variant names, or 'all' (see --list)")
    ap.add_argument("--losses", default="nonsaturating,wgan")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--n-eval", type=int, default=10000)
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    ap.add_argument("--workdir", default="runs/coc-ablations")
    ap.add_argument("--eval-at", default="", metavar="STEPS",
                    help="comma list of earlier steps to measure within each run as well (e.g. 1000 with --steps 3000): "
                         "each is kept as that budget's result unless one is kept already")
    ap.add_argument("--list", action="store_true", help="print the variants and exit")
    ap.add_argument("--report", action="store_true", help="only rebuild the table from kept results")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # VARIANT:LOSS:SEED, run in a child process
    args = ap.parse_args()
    if args.list:
        for k, (what, _) in VARIANTS.items():
            print(f"{k:20s} {what}")
        return
    if args.one:
        variant, loss, seed = args.one.split(":")
        row = run_one(variant, loss, int(seed), args.steps, args.batch_size, args.n_eval, args.lr, Path(args.workdir),
                      eval_at(args))
        row["n_eval"] = args.n_eval
        RESULTS.mkdir(parents=True, exist_ok=True)
        for step, metrics in row.pop("at", {}).items():  # the same weights as a run of `step` steps ends with
            early = {**row, **metrics, "steps": step, "measured_within": args.steps}
            path = result_path(variant, loss, int(seed), step, args.batch_size)
            if path.exists():
                kept = json.loads(path.read_text())
                same = "the same" if kept["fid_lenet"] == early["fid_lenet"] else "different"
                print(f"step {step}: fid_lenet {early['fid_lenet']!r}; kept result (not replaced): "
                      f"{kept['fid_lenet']!r} ({same})", flush=True)
            else:
                path.write_text(json.dumps(early, indent=1))
        result_path(variant, loss, int(seed), args.steps, args.batch_size).write_text(json.dumps(row, indent=1))
        print({k: row[k] for k in ("variant", "loss", "seed", "fid_lenet", "class_coverage", "img_per_s")}, flush=True)
        return
    try:  # bad input stops here, before anything trains: one line, exit status 2
        eval_at(args)
        jobs = [] if args.report else jobs_of(args)
    except ValueError as e:
        ap.error(str(e))
    if jobs:
        launch(jobs, args)
    report(args)


if __name__ == "__main__":
    main()
