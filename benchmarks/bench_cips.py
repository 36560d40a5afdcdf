"""CIPS benchmarks: memory and time of full vs chunked synthesis, and quality/speed of
``cips + resnet`` against ``dcgan + dcgan`` on Fashion-MNIST 32x32 (same steps, seed, batch).

Parts (each writes raw results under ``benchmarks/results/cips/``; ``--report`` rebuilds the
docs sections ``cips-memory`` and ``cips-quality`` of docs/benchmarks.md from them)::

    python benchmarks/bench_cips.py --part quality  --steps 3000 --threads 1
    python benchmarks/bench_cips.py --part panorama --steps 600 --threads 1
    python benchmarks/bench_cips.py --part memory --threads 1
    python benchmarks/bench_cips.py --report

Memory: every case runs in a fresh subprocess (one thread) that builds the generator, draws
one image and reports its peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``:
the whole process, Python and torch included) and the synthesis time; the same process's RSS
before synthesis is the baseline. Full synthesis is run only while the prediction from the
measured growth (bytes per pixel) stays under ``--max-gib``; beyond, the table gives the
prediction. OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, command_line, markdown_table, publish_picture, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "cips"
DATA, DATA_OPT = "fashion-mnist", {"resolution": 32}
BATCH = 32
SEED = 0
#: the CPU-sized CIPS of the benchmark: the cips-small preset's models and training settings
CIPS_GEN = {"latent_dim": 64, "width": 64, "depth": 5, "n_mlp": 4}
CIPS_DISC = {"ch": 16, "max_ch": 128}
MEMORY_SIDES = (512, 1024, 2048, 4096)
CHUNK = 65536  # pixels per chunk


def cips_settings() -> dict:
    from gzoo_cips.plugin import SMALL

    return {k: SMALL[k] for k in ("lr", "lr_d", "betas", "ema", "reg_opt")}


# -- quality and speed -------------------------------------------------------------------------------------


def part_quality(args: argparse.Namespace) -> None:
    from harness import Combo, run_one

    from gzoo.imaging import save_samples
    from gzoo.run import load_run

    work = Path(args.workdir)
    rows = []
    combos = [
        ("DCGAN (dcgan + dcgan)", Combo("dcgan", "dcgan", "nonsaturating"), {"lr": 2e-4, "betas": (0.5, 0.999)}),
        ("CIPS (cips + resnet)", Combo("cips", "resnet", "nonsaturating", reg=["r1"], gen_opt=CIPS_GEN,
                                       disc_opt=CIPS_DISC), cips_settings()),
    ]
    for label, combo, extra in combos:
        print(f"[{time.strftime('%H:%M:%S')}] {label}: {args.steps} steps", flush=True)
        row = run_one(combo, DATA, SEED, args.steps, BATCH, args.n_eval, work, data_opt=DATA_OPT, **extra)
        row["label"] = label
        row["settings"] = {k: list(v) if isinstance(v, tuple) else v for k, v in extra.items()}
        rows.append(row)
        print({k: row[k] for k in ("img_per_s", "fid_lenet", "train_seconds")}, flush=True)
        if combo.gen == "cips":
            G = load_run(row["run"]).generator(True)
            g = torch.Generator().manual_seed(SEED)
            big = G.sample(16, generator=g, resolution=4 * 32, chunk=CHUNK)  # 4x the training resolution
            save_samples(big, work / "cips-4x.png")
            g = torch.Generator().manual_seed(SEED)
            save_samples(G.sample(16, generator=g), work / "cips-1x.png")  # the same latents at 32x32
            row["grid_4x"], row["grid_1x"] = str(work / "cips-4x.png"), str(work / "cips-1x.png")
    _save("quality", {"command": command_line(), "steps": args.steps, "rows": rows})


def part_panorama(args: argparse.Namespace) -> None:
    from harness import Combo, run_one

    from gzoo.imaging import save_samples
    from gzoo.run import load_run

    work = Path(args.workdir)
    K = 4
    combo = Combo("cips", "resnet", "nonsaturating", reg=["r1"], gen_opt={**CIPS_GEN, "panorama": K},
                  disc_opt=CIPS_DISC)
    print(f"[{time.strftime('%H:%M:%S')}] cylindrical CIPS (panorama={K}): {args.steps} steps", flush=True)
    # its own folder: run_one names runs by components and seed, and would replace the quality run
    row = run_one(combo, DATA, SEED, args.steps, BATCH, args.n_eval, work / "panorama", data_opt=DATA_OPT,
                  **cips_settings())
    G = load_run(row["run"]).generator(True)
    width = K * 32
    g = torch.Generator().manual_seed(SEED)
    # one turn and a half: columns width..1.5 width repeat columns 0..0.5 width (the seam in the middle)
    pano = G.sample(6, generator=g, panorama=width, crop=f"0,0,32,{width + width // 2}")
    seam = float((pano[..., width:] - pano[..., : width // 2]).abs().max())
    save_samples(pano, work / "cips-panorama.png")
    row.update(label=f"CIPS cylindrical (panorama={K})", grid_panorama=str(work / "cips-panorama.png"),
               seam_max_abs=seam, panorama_width=width)
    _save("panorama", {"command": command_line(), "steps": args.steps, "rows": [row]})


# -- memory --------------------------------------------------------------------------------------------------


def memory_case(side: int, chunk: int) -> dict:
    """Run in a subprocess: one image at ``side``^2, full (chunk 0) or chunked."""
    import gzoo

    torch.set_num_threads(1)
    torch.manual_seed(0)
    G = gzoo.create("generator", "cips", image_shape=(3, 32, 32), **CIPS_GEN).eval()
    z = torch.randn(1, G.latent_dim)
    G.synthesize(z, resolution=8, chunk=chunk or None)  # warm up the kernels
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    x = G.synthesize(z, resolution=side, chunk=chunk or None)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"side": side, "chunk": chunk, "seconds": seconds, "base_bytes": base, "peak_bytes": peak,
            "output_bytes": x.numel() * 4, "finite": bool(torch.isfinite(x).all())}


def part_memory(args: argparse.Namespace) -> None:
    rows, per_pixel = [], None
    for side in MEMORY_SIDES:
        for chunk in (0, CHUNK):
            if chunk == 0 and per_pixel is not None and per_pixel * side * side > args.max_gib * 2**30:
                rows.append({"side": side, "chunk": 0, "predicted_bytes": per_pixel * side * side})
                continue
            out = subprocess.run([sys.executable, __file__, "--memory-case", str(side), str(chunk)],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(row, flush=True)
            if chunk == 0:
                per_pixel = (row["peak_bytes"] - row["base_bytes"]) / side**2
    _save("memory", {"command": command_line(), "chunk": CHUNK, "gen_opt": CIPS_GEN, "rows": rows})


# -- report --------------------------------------------------------------------------------------------------


def _save(name: str, obj: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(obj, indent=1))
    print(f"wrote {RESULTS / name}.json")


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f}"


def report() -> None:
    mem = _load("memory")
    if mem:
        table = []
        for r in mem["rows"]:
            mode = "full" if r["chunk"] == 0 else f"chunks of {r['chunk']}"
            if "predicted_bytes" in r:
                base = min(x["base_bytes"] for x in mem["rows"] if "base_bytes" in x)
                table.append([f"{r['side']}²", mode, f"~{_gib(base + r['predicted_bytes'])} (predicted, not run)",
                              f"~{_gib(r['predicted_bytes'])} (predicted)", "-"])
            else:
                table.append([f"{r['side']}²", mode, _gib(r["peak_bytes"]), _gib(r["peak_bytes"] - r["base_bytes"]),
                              f"{r['seconds']:.1f}"])
        md = (f"CIPS synthesis of one image on the CPU (one thread), full vs in chunks of {mem['chunk']} pixels. "
              f"Generator options {mem['gen_opt']} (the benchmark's CPU-sized model; memory grows with width), "
              "untrained weights (memory and time do not depend on them). Peak RSS is the process's "
              "`ru_maxrss` (Python and torch included), one fresh subprocess per case; growth is peak minus "
              "the same process's RSS before the synthesis. The output image itself (3 x side² float32: "
              "12 MiB at 1024², 192 MiB at 4096²) is part of every row. Full synthesis is run only while the "
              "growth predicted from the previous size (bytes per pixel) stays under 6 GiB; the 4096² prediction "
              "would leave this 23 GB machine without memory.\n\n"
              f"Command: `{mem['command']}`\n\n"
              + markdown_table(["image", "synthesis", "peak RSS (GiB)", "growth (GiB)", "seconds"], table))
        write_section("cips-memory", md)
    q, p = _load("quality"), _load("panorama")
    if q:
        metrics = ["fid_lenet", "kid_lenet", "precision", "recall", "density", "coverage", "is_lenet"]
        metrics = [m for m in metrics if m in q["rows"][0]]
        table = [[r["label"], *[f"{r[m]:.3f}" for m in metrics], f"{r['img_per_s']:.0f}",
                  f"{r['params_G'] / 1e3:.0f}k / {r['params_D'] / 1e3:.0f}k"] for r in q["rows"]]
        cips = next(r for r in q["rows"] if "CIPS" in r["label"])
        st = cips["settings"]
        md = (f"`cips + resnet` vs `dcgan + dcgan` on Fashion-MNIST 32x32: {q['steps']} steps, batch {BATCH}, "
              f"seed {SEED} (one seed), non-saturating loss for both. DCGAN: its defaults (ch 32), Adam 2e-4 "
              f"(0.5, 0.999), no EMA. CIPS: the cips-small recipe, Adam {st['lr']} (D {st['lr_d']:.5f}) betas "
              f"{tuple(st['betas'])}, lazy R1 {st['reg_opt']['r1']}, EMA {st['ema']:.5f}; gen_opt={CIPS_GEN}, "
              f"resnet disc_opt={CIPS_DISC}. Each model is trained with its own recipe, so the table compares "
              "recipes (G, D, regulariser, optimiser and EMA together), not generators alone. Metrics on "
              f"{cips.get('n', 'the')} samples (CIPS: the EMA generator) against the test split, LeNet features. "
              "images/s: training throughput at one thread on a shared 2-core machine (both runs under similar "
              "load, one after the other).\n\n"
              f"Command: `{q['command']}`\n\n"
              + markdown_table(["model", *metrics, "images/s", "params G / D"], table))
        md += "\n\nCIPS samples at the training resolution (32x32) and the same latents at 4x (128x128, in chunks):\n\n"
        md += publish_picture(cips["grid_1x"], "cips-1x.png", "CIPS 32x32") + "\n"
        md += publish_picture(cips["grid_4x"], "cips-4x.png", "CIPS 128x128") + "\n"
        for r in q["rows"]:
            if "DCGAN" in r["label"]:
                md += "\nDCGAN samples:\n\n" + publish_picture(r["grid"], "cips-dcgan-baseline.png", "DCGAN") + "\n"
        if p:
            r = p["rows"][0]
            md += (f"\n{r['label']}, trained {p['steps']} steps with the same settings (`{p['command']}`): "
                   f"one turn of {r['panorama_width']} columns and half a turn more, so the seam sits at column "
                   f"{r['panorama_width']}; largest difference between the repeated columns and the first ones: "
                   f"{r['seam_max_abs']:.2g}. FID of its 32x32 views: {r['fid_lenet']:.3f}: at this budget the "
                   "cylindrical model has not learnt garments (blobs and pixel noise; docs/cips.md says why "
                   "Fashion-MNIST suits a cylinder badly). The picture shows the seam closing, not quality.\n\n"
                   + publish_picture(r["grid_panorama"], "cips-panorama.png", "CIPS panorama") + "\n")
        write_section("cips-quality", md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["quality", "panorama", "memory"])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n-eval", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-gib", type=float, default=6.0, help="largest predicted full synthesis actually run")
    ap.add_argument("--workdir", default="runs/bench-cips")
    ap.add_argument("--report", action="store_true", help="rebuild the docs sections from saved results")
    ap.add_argument("--memory-case", nargs=2, type=int, metavar=("SIDE", "CHUNK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_case:
        print(json.dumps(memory_case(*args.memory_case)))
        return
    if args.part:
        {"quality": part_quality, "panorama": part_panorama, "memory": part_memory}[args.part](args)
    if args.report or args.part:
        report()


if __name__ == "__main__":
    main()
