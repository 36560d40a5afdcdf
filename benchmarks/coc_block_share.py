"""How much the Context Cluster blocks of trained CoC-GAN runs contribute.

Every block of ``cocgan`` and ``coc`` is residual: ``p + ls1 * mixer(norm(p))``, then
``p + ls2 * mlp(norm(p))``, with the layer scales ``ls`` starting at 1e-5. Everything else in the
generator is linear (the stem, the Point Increasers, the colour layer) apart from one GroupNorm and
the final tanh. So if the blocks' updates stay small, the generator is close to a linear map of z
followed by a normalisation.

For each run directory this prints, from its last checkpoint (64 latents, seed 0; D reads 64 real
training images):

- ``G stage k``: the mean over the stage's blocks of ||block(p) - p|| / ||p||, how far each block
  moves the points it reads;
- ``G without blocks``: ||G(z) - G'(z)|| / ||G(z)||, G' the same generator with every block
  replaced by the identity (the images G would draw if its blocks did nothing);
- ``D stage k``: the same ratio as G's, for the discriminator's stages.

    python benchmarks/coc_block_share.py RUN_DIR [RUN_DIR ...]

It trains nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table  # noqa: E402

from gzoo.run import load_run  # noqa: E402


def block_ratios(stages: nn.ModuleList, run) -> tuple[list[float], list[list[float]]]:
    """Hooks on every block of ``stages``; ``run()`` does the forward pass. Returns the ratios."""
    ratios: list[list[float]] = [[] for _ in stages]
    hooks = [blk.register_forward_hook(lambda m, i, o, s=s: ratios[s].append(float((o - i[0]).norm() / i[0].norm())))
             for s, blocks in enumerate(stages) for blk in blocks]
    try:
        out = run()
    finally:
        for h in hooks:
            h.remove()
    return out, ratios


class _Identity(nn.Module):
    def forward(self, p, h, w):
        return p


def measure(run_dir: str, n: int = 64) -> dict[str, object]:
    loaded = load_run(run_dir)
    G, D = loaded.G, loaded.D
    gen = torch.Generator().manual_seed(0)
    z = G.sample_latent(n, generator=gen)  # the same numbers as torch.randn(n, latent_dim)
    y = torch.randint(0, loaded.num_classes, (n,), generator=gen) if loaded.num_classes else None
    with torch.no_grad():
        full, g_ratios = block_ratios(G.stage_blocks, lambda: G(z, y))
        saved = [list(blocks) for blocks in G.stage_blocks]
        for blocks in G.stage_blocks:
            for i in range(len(blocks)):
                blocks[i] = _Identity()
        try:
            bare = G(z, y)
        finally:
            for blocks, orig in zip(G.stage_blocks, saved, strict=True):
                for i, blk in enumerate(orig):
                    blocks[i] = blk
        data = loaded.dataset("train")
        idx = torch.randperm(len(data), generator=gen)[:n].tolist()
        items = [data[i] for i in idx]
        x = torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])
        labels = (torch.as_tensor([int(it[1]) for it in items]) if loaded.num_classes else None)
        _, d_ratios = block_ratios(D.stage_blocks, lambda: D(x, labels))
    row: dict[str, object] = {"run": Path(run_dir).name, "step": loaded.step}
    for s, r in enumerate(g_ratios, 1):
        row[f"G stage {s}"] = f"{sum(r) / len(r):.3f}" if r else "-"
    row["G without blocks"] = f"{float((full - bare).norm() / full.norm()):.3f}"
    for s, r in enumerate(d_ratios, 1):
        row[f"D stage {s}"] = f"{sum(r) / len(r):.3f}" if r else "-"
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories (with checkpoints/last.pt)")
    ap.add_argument("--n", type=int, default=64, help="latents and real images per run")
    args = ap.parse_args(argv)
    rows = [measure(r, args.n) for r in args.runs]
    cols = list(dict.fromkeys(k for row in rows for k in row))
    print(markdown_table(cols, [[row.get(c, "-") for c in cols] for row in rows]))


if __name__ == "__main__":
    main()
