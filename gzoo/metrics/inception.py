"""Optional Inception-V3 FID/KID, for users who have the standard weights.

gzoo never downloads them. It uses, in this order: the path given with
``--inception-weights PATH`` (or ``$GZOO_INCEPTION_WEIGHTS``), else torch-fidelity's own
cached copy ``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth`` if a
previous torch-fidelity run left one there. It also needs torch-fidelity installed
(``pip install gzoo[inception]``), which torchmetrics uses for the network. Without the
weights this module raises a clear :class:`~gzoo.errors.UsageError` at once, without
touching the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ..errors import UsageError
from .image import seeded_compute

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_NAME}"
HOW_TO = (
    f"gzoo never downloads Inception weights. On a machine with internet access download {WEIGHTS_URL} "
    f"(torch-fidelity's FID Inception weights), copy it here, `pip install gzoo[inception]`, and pass "
    "--inception-weights PATH (or set GZOO_INCEPTION_WEIGHTS)."
)


def cached_weights() -> Path | None:
    """torch-fidelity's cached copy of the weights, if there is one (no network)."""
    p = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME  # honours $TORCH_HOME
    return p if p.is_file() else None


def find_weights(path: str | Path | None = None) -> Path:
    """The weights file, or a :class:`UsageError` saying how to get it.

    ``path`` wins; then ``$GZOO_INCEPTION_WEIGHTS``; then torch-fidelity's cache.
    """
    path = path or os.environ.get("GZOO_INCEPTION_WEIGHTS") or cached_weights()
    if not path:
        raise UsageError(f"no Inception weights given and none in torch-fidelity's cache. {HOW_TO}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"Inception weights not found at {p}. {HOW_TO}")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise UsageError("Inception FID/KID needs torch-fidelity: pip install gzoo[inception]") from None
    return p



def _to_uint8_rgb(x: Tensor) -> Tensor:
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (N, C, H, W) uint8
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def inception_fid_kid(
    real: Tensor, fake: Tensor, weights: str | Path | None = None, *, subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """FID and KID in Inception-V3 pool features (torchmetrics with local weights)."""
    path = str(find_weights(weights))
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=path)
    kid = KernelInceptionDistance(feature=2048, feature_extractor_weights_path=path,
                                  subset_size=min(subset_size, len(real), len(fake)))
    for m in (fid, kid):
        for i in range(0, len(real), 200):
            m.update(_to_uint8_rgb(real[i : i + 200]), real=True)
        for i in range(0, len(fake), 200):
            m.update(_to_uint8_rgb(fake[i : i + 200]), real=False)
    kid_mean, kid_std = seeded_compute(kid, seed)
    return {"fid_inception": float(fid.compute()), "kid_inception": float(kid_mean), "kid_inception_std": float(kid_std)}
