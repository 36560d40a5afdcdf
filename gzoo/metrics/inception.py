"""Optional Inception-V3 FID/KID, for users who have the standard weights.

gzoo never downloads them. Pass ``--inception-weights PATH`` (the torch-fidelity file
``pt_inception-2015-12-05-6726825d.pth``) and install the extra: ``pip install gzoo[inception]``.
Without them, this module raises a clear error at once instead of trying the network.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..errors import UsageError

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
HOW_TO = (
    f"gzoo never downloads Inception weights. Get {WEIGHTS_NAME} (the torch-fidelity FID weights) on a machine "
    "with internet access, copy it here, install `pip install gzoo[inception]`, and pass --inception-weights PATH."
)


def check_weights(path: str | Path | None) -> Path:
    """The weights file, or a clear error saying how to get it."""
    if not path:
        raise UsageError(f"no Inception weights given. {HOW_TO}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"Inception weights not found at {p}. {HOW_TO}")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise UsageError("Inception FID needs torch-fidelity: pip install gzoo[inception]") from None
    return p


def _to_uint8_rgb(x: Tensor) -> Tensor:
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def inception_fid_kid(real: Tensor, fake: Tensor, weights: str | Path, *, subset_size: int = 1000) -> dict[str, float]:
    """FID and KID in Inception-V3 pool features (torchmetrics with local weights)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    path = str(check_weights(weights))
    fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=path)
    kid = KernelInceptionDistance(feature=2048, feature_extractor_weights_path=path,
                                  subset_size=min(subset_size, len(real), len(fake)))
    for m in (fid, kid):
        for i in range(0, len(real), 200):
            m.update(_to_uint8_rgb(real[i : i + 200]), real=True)
        for i in range(0, len(fake), 200):
            m.update(_to_uint8_rgb(fake[i : i + 200]), real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid_inception": float(fid.compute()), "kid_inception": float(kid_mean), "kid_inception_std": float(kid_std)}
