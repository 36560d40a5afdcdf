"""timm discriminators in the Fashion-MNIST comparison: fid_lenet, images/s and parameters.

Trains DCGAN (the baseline, trained again in the same run so that images/s compare side by
side), ``dcgan + timm:resnet18``, ``cocgan + timm:resnet18`` and ``dcgan + timm:convnext_atto``
at the ``fmnist-grid`` budget (500 steps of batch 64, the minimax loss with Adam, default
options) and writes section ``timm-fmnist`` of docs/benchmarks.md.

    python benchmarks/bench_timm.py --seeds 0,1 --steps 500 --n-eval 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, publish_picture, write_section  # noqa: E402
from harness import RESULTS, Combo, run_one, summarise  # noqa: E402

from gzoo.evaluation import classifier_for  # noqa: E402

#: (label, combo): the baseline first
COMBOS = [
    ("dcgan + dcgan", Combo("dcgan", "dcgan", "minimax")),
    ("dcgan + timm:resnet18", Combo("dcgan", "timm", "minimax", disc_opt={"model": "resnet18"})),
    ("cocgan + timm:resnet18", Combo("cocgan", "timm", "minimax", disc_opt={"model": "resnet18"})),
    ("dcgan + timm:convnext_atto", Combo("dcgan", "timm", "minimax", disc_opt={"model": "convnext_atto"})),
]
METRICS = ["fid_lenet", "kid_lenet", "precision", "recall", "coverage", "class_coverage", "img_per_s"]


def slug(label: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in label).strip("-")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated labels to run (default: all)")
    ap.add_argument("--workdir", default="runs/bench-timm")
    ap.add_argument("--report", action="store_true", help="only rebuild the table from kept results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep = RESULTS / "timm-fmnist"
    keep.mkdir(parents=True, exist_ok=True)
    clf = classifier_for("fashion-mnist", 28, progress=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = [c for c in COMBOS if not args.only or c[0] in args.only.split(",")]
    if not args.report:
        for label, combo in wanted:
            for seed in seeds:
                path = keep / f"{slug(label)}__{args.steps}__b{args.batch_size}__s{seed}.json"
                if path.exists():
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {label} seed {seed}", flush=True)
                row = run_one(combo, "fashion-mnist", seed, args.steps, args.batch_size, args.n_eval,
                              Path(args.workdir) / slug(label))
                row.update(combo=label, threads=args.threads, n_eval=args.n_eval)
                path.write_text(json.dumps(row, indent=1))
                print({k: row[k] for k in ("fid_lenet", "img_per_s", "params_D")}, flush=True)
    rows = [json.loads(p.read_text()) for p in sorted(keep.glob(f"*__{args.steps}__b{args.batch_size}__s*.json"))]
    order = [label for label, _ in COMBOS]
    rows.sort(key=lambda r: (order.index(r["combo"]) if r["combo"] in order else 99, r["seed"]))
    headers, table = summarise(rows, METRICS)
    params = {r["combo"]: (r["params_G"], r["params_D"]) for r in rows}
    headers = [*headers, "params G", "params D"]
    table = [[*t, f"{params[t[0]][0]:,}", f"{params[t[0]][1]:,}"] for t in table]
    md = markdown_table(headers, table)
    print(md)
    pictures = []
    for r in rows:
        if r["seed"] == min(x["seed"] for x in rows if x["combo"] == r["combo"]) and Path(r["grid"]).exists():
            pictures.append(publish_picture(r["grid"], f"timm-fmnist-{slug(r['combo'])}.png", r["combo"]))
    notes = (
        f"Every row trains {args.steps} generator steps of batch {args.batch_size} (the `fmnist-grid` budget: "
        "the minimax loss, Adam, default options, one D step per G step) and is measured on "
        f"{args.n_eval} generated samples in the feature space of gzoo's LeNet "
        f"(test accuracy {clf.accuracy:.3f}). The timm discriminators use their defaults: `norm=group` "
        "(BatchNorm replaced by GroupNorm) and `fit=auto` (resnet18 and convnext_atto at 28 px: `output_stride=8`). "
        "DCGAN is trained again with them, so `img_per_s` (generator steps x batch / training wall time, "
        f"{args.threads} torch thread(s) per run) compares within this table only; the runs were made two at a time "
        "on the 2-core machine (`--only` splits the rows between two invocations). Mean ± std over seeds. Each run is "
        "kept in `benchmarks/results/timm-fmnist/` and trained again only when missing: `python benchmarks/bench_timm.py "
        f"--seeds SEEDS --steps {args.steps} --n-eval {args.n_eval} [--only LABELS]`; the table below by the command "
        "under it."
    )
    title = f"## timm discriminators on Fashion-MNIST (28x28, {args.steps} steps)"
    write_section("timm-fmnist", title + "\n\n" + notes + "\n\n"
                  + md + "\n\n" + " ".join(pictures) + f"\n\nCommand: `{command_line()}`")


if __name__ == "__main__":
    main()
