"""CoC-GAN (cocgan + coc) vs DCGAN (dcgan + dcgan) on Fashion-MNIST 28x28: the same loss,
data, batch and budget of steps; training throughput side by side, parameters, and quality.

Both runs are built in this one process and trained step by step in alternation (one D and
one G update each), so their step times are measured under the same machine load; images/s
is the batch size over the median step time. After the budget, each generator is evaluated
with ``gzoo.evaluation.evaluate_generator`` (LeNet-feature FID/KID, precision/recall/density/
coverage, LeNet Inception Score, class coverage) on ``--n-eval`` samples.

OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless set), as on a
shared machine spinning threads make every small op wait for a descheduled partner.

    python benchmarks/bench_coc_vs_dcgan.py                       # default budget: a few minutes
    python benchmarks/bench_coc_vs_dcgan.py --steps 2000 --n-eval 10000 --workdir runs/coc-vs-dcgan
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, markdown_table, publish_picture, write_section  # noqa: E402

from gzoo.config import RunConfig  # noqa: E402
from gzoo.evaluation import evaluate_generator  # noqa: E402
from gzoo.run import count_parameters  # noqa: E402
from gzoo.trainer import Trainer  # noqa: E402

MODELS = {"CoC-GAN (cocgan + coc)": ("cocgan", "coc"), "DCGAN (dcgan + dcgan)": ("dcgan", "dcgan")}
METRICS = ["fid_lenet", "kid_lenet", "precision", "recall", "coverage", "is_lenet", "class_coverage"]


def parse_loss(text: str) -> tuple[str, list[str], str]:
    """``wgan+clip@rmsprop`` -> ("wgan", ["clip"], "rmsprop"); the optimizer defaults to adam."""
    body, _, opt = text.partition("@")
    loss, *regs = body.split("+")
    return loss, regs, opt or "adam"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="training steps (G updates) per model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--loss", default="nonsaturating", help="LOSS[+REG...][@OPTIMIZER], e.g. wgan+clip@rmsprop")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--n-eval", type=int, default=2500, help="samples per model for the metrics (>= 2500)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="", help="keep the runs (sample grids, checkpoints) here")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loss, regs, optimizer = parse_loss(args.loss)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="coc-vs-dcgan-"))

    trainers = {}
    for label, (gen, disc) in MODELS.items():
        config = RunConfig(gen=gen, disc=disc, loss=loss, reg=regs, optimizer=optimizer, lr=args.lr, data=args.data,
                           steps=args.steps, batch_size=args.batch_size, seed=args.seed, sample_every=0,
                           ckpt_every=0, progress=False, out=str(workdir / gen))
        trainers[label] = Trainer(config, run_dir=workdir / gen)
    times: dict[str, list[float]] = {k: [] for k in trainers}
    t_start = time.perf_counter()
    for step in range(args.steps):
        for label, trainer in trainers.items():  # alternate: both see the same machine load
            t0 = time.perf_counter()
            losses = trainer.train_step()
            times[label].append(time.perf_counter() - t0)
        if step % 10 == 0 or step == args.steps - 1:
            print(f"[{time.perf_counter() - t_start:6.0f}s] step {step + 1}/{args.steps} "
                  + "; ".join(f"{k.split()[0]} {times[k][-1]:.2f}s/step" for k in trainers)
                  + f"; last losses {', '.join(f'{k}={v:.3f}' for k, v in losses.items())}", flush=True)

    rows, results, pictures = [], {}, []
    for label, trainer in trainers.items():
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        (trainer.run_dir / "samples").mkdir(exist_ok=True)
        grid = trainer.write_samples()
        if not args.no_write:  # the sample grid, beside the table
            pictures.append(publish_picture(grid, f"coc-vs-dcgan-{trainer.config.gen}.png", label))
        res = evaluate_generator(trainer.generate, args.data, n=args.n_eval, seed=args.seed, progress=False)
        results[label] = res
        steady = times[label][1:] or times[label]  # the first step pays for allocations
        ips = args.batch_size / statistics.median(steady)
        print(f"{label}: {ips:.1f} img/s, samples {grid}, " + ", ".join(f"{m}={res.get(m)}" for m in METRICS))
        rows.append([label, ", ".join(trainer.config.reg) or "none", f"{ips:.1f}", f"{count_parameters(trainer.G):,}",
                     f"{count_parameters(trainer.D):,}",
                     *[f"{res[m]:.3g}" if isinstance(res.get(m), int | float) else "-" for m in METRICS]])
    base = rows[1][2]
    for row in rows:
        row.insert(3, f"{float(row[2]) / float(base):.3f}")
    headers = ["model", "regularizers", "train img/s", "vs DCGAN", "params G", "params D", *METRICS]
    md = markdown_table(headers, rows)
    print(md)
    acc = next(iter(results.values())).get("classifier_accuracy")
    if not args.no_write:
        write_section(
            "coc-vs-dcgan",
            f"## CoC-GAN vs DCGAN ({args.data} 28x28, {args.loss}, lr {args.lr:g}, {args.steps} steps)\n\n"
            f"Both models trained in one process with the same loss, data, batch ({args.batch_size}), seed and budget "
            f"({args.steps} steps of one D and one G update); their steps alternate, and images/s is the batch over "
            f"the median step time (CPU, {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}, "
            f"`OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}`). Metrics: `gzoo.evaluation.evaluate_generator` "
            f"on {args.n_eval} samples (LeNet features; classifier test accuracy {acc:.3f}). "
            "FID/KID lower is better, the others higher. Each model trains as `gzoo run` would train it: the "
            "regularizers column includes those gzoo adds (a discriminator's `default_reg`, WGAN's clipping).\n\n"
            f"{md}\n\nSample grids after the budget, in table order: {' '.join(pictures)}\n\n"
            f"Command: `{command_line()}`",
        )


if __name__ == "__main__":
    main()
