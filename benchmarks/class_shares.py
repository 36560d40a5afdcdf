"""Which classes a run's generator draws: the share of each class among ``n`` samples, as gzoo's
feature classifier (the one behind ``class_coverage``) labels them, beside the real share.

``class_coverage`` counts the classes whose generated share is at least a tenth of their real
one; this shows which classes those are, e.g. a run that stopped drawing footwear.

    python benchmarks/class_shares.py RUN_DIR [RUN_DIR ...] [--n 2000] [--seed 0]

It prints a markdown table (one row per run, one column per class, shares in %); it reads run
directories and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table  # noqa: E402

from gzoo.default_plugins.evaluation import classifier_for  # noqa: E402
from gzoo.metrics.image import class_counts  # noqa: E402
from gzoo.run import load_run  # noqa: E402


def shares(labels: torch.Tensor, num_classes: int) -> list[float]:
    """Percentages of each class (from gzoo's ``class_counts``, the histogram behind ``class_coverage``)."""
    counts = class_counts(labels, num_classes)
    return (100 * counts / counts.sum()).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, num_classes = [], None
    for run_dir in args.runs:
        run = load_run(run_dir)
        data = run.data
        real = data.labels()  # the dataset contract's labels and class count
        if not data.num_classes or real is None:
            raise SystemExit(f"{run_dir}: its dataset {run.config.data!r} has no labels")
        if num_classes is None:
            num_classes = data.num_classes
            rows.append(["real (training split)", "-", *[f"{s:.1f}" for s in shares(real, num_classes)]])
        elif data.num_classes != num_classes:
            raise SystemExit(f"{run_dir}: its classes differ from the first run's; give runs of one dataset")
        clf = classifier_for(run.config.data, data.image_shape[-1], data_opt=run.config.data_opt, progress=False)
        pred = clf.probs(run.generate(args.n, seed=args.seed)).argmax(1)
        rows.append([run_dir, run.step, *[f"{s:.1f}" for s in shares(pred, num_classes)]])
    print(markdown_table(["run", "step", *map(str, range(num_classes))], rows))


if __name__ == "__main__":
    main()
