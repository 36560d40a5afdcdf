"""Distribution metrics on feature vectors (any feature space; gzoo uses LeNet features).

* FID and KID come from torchmetrics, fed with precomputed features through an identity
  "feature extractor", so the statistics are torchmetrics' (float64 FID, unbiased
  polynomial-kernel KID).
* Improved precision/recall (Kynkäänniemi et al. 2019, k=3) and density/coverage
  (Naeem et al. 2020, k=5) are computed here with k-NN balls.
* The Inception-Score analogue and the class-histogram metrics use classifier
  probabilities.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


class _Identity(nn.Module):
    """Lets torchmetrics consume features we computed ourselves."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x: Tensor) -> Tensor:
        return x


def fid_from_features(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (torchmetrics, float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=_Identity(real.shape[1]), normalize=True, reset_real_features=True)
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    return max(0.0, float(fid.compute()))


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The closed form ``|mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2)`` with scipy, in float64."""
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid_from_features(real: Tensor, fake: Tensor, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Unbiased KID (cubic polynomial kernel ``(x.y/d + 1)^3``), mean and std over subsets (torchmetrics).

    Each of the ``subsets`` draws ``subset_size`` rows of each set without replacement, with
    torch's global RNG seeded with ``seed`` (and restored afterwards). When both sets have
    exactly ``subset_size`` rows every subset is the whole sets, so one is computed (std 0).
    """
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    subset_size = min(subset_size, len(real), len(fake))
    if len(real) == len(fake) == subset_size:
        subsets = 1  # every subset would be the full sets: same value each time
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=_Identity(real.shape[1]), subsets=subsets, subset_size=subset_size,
                                      normalize=True)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    mean, std = seeded_compute(kid, seed)
    return float(mean), (0.0 if subsets == 1 else float(std))


def seeded_compute(metric: Any, seed: int) -> Any:
    """``metric.compute()`` with torch's global RNG seeded (KID draws its subsets from it),
    then restored, so results are reproducible and the caller's random stream is untouched."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return metric.compute()
    finally:
        torch.set_rng_state(state)


def inception_score(probs: Tensor, eps: float = 1e-12) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` from classifier probabilities ``(N, K)``."""
    p = probs.double().clamp_min(eps)
    py = p.mean(0, keepdim=True)
    return float(torch.exp((p * (p.log() - py.log())).sum(1).mean()))


def _kth_radius(x: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row."""
    out = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i : i + chunk], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself at distance 0
    return torch.cat(out)


def prdc(real: Tensor, fake: Tensor, *, k_pr: int = 3, k_dc: int = 5, chunk: int = 2048) -> dict[str, float]:
    """Improved precision & recall (k=3) and density & coverage (k=5)."""
    real, fake = real.double(), fake.double()
    if min(len(real), len(fake)) <= max(k_pr, k_dc):
        raise ValueError(f"precision/recall need more than {max(k_pr, k_dc)} samples per set")
    r_pr, f_pr, r_dc = _kth_radius(real, k_pr, chunk), _kth_radius(fake, k_pr, chunk), _kth_radius(real, k_dc, chunk)
    precision_hits, density_count = [], []
    real_nn_dist = torch.full((len(real),), math.inf, dtype=torch.float64)
    for i in range(0, len(fake), chunk):
        d = torch.cdist(fake[i : i + chunk], real)  # (m, N)
        precision_hits.append((d <= r_pr[None]).any(1))
        density_count.append((d <= r_dc[None]).sum(1))
        real_nn_dist = torch.minimum(real_nn_dist, d.min(0).values)
    recall_hits = []
    for i in range(0, len(real), chunk):
        d = torch.cdist(real[i : i + chunk], fake)  # (n, M)
        recall_hits.append((d <= f_pr[None]).any(1))
    return {
        "precision": float(torch.cat(precision_hits).double().mean()),
        "recall": float(torch.cat(recall_hits).double().mean()),
        "density": float(torch.cat(density_count).double().sum() / (k_dc * len(fake))),
        "coverage": float((real_nn_dist <= r_dc).double().mean()),
    }


def class_counts(labels: Tensor, num_classes: int) -> Tensor:
    """How many of ``labels`` fall in each class ``0..num_classes-1`` (float64)."""
    return torch.bincount(labels.long(), minlength=num_classes).double()


def class_histogram_metrics(fake_probs: Tensor, real_labels: Tensor, num_classes: int, *, min_fraction: float = 0.1) -> dict[str, float]:
    """Class coverage and reverse KL of the predicted-class histogram against the real one.

    ``class_coverage``: fraction of classes whose share among generated samples is at least
    ``min_fraction`` of their real share. ``class_rkl``: ``KL(p_gen || p_real)`` in nats.
    """
    p_gen = class_counts(fake_probs.argmax(1), num_classes) / len(fake_probs)
    p_real = class_counts(real_labels, num_classes) / len(real_labels)
    covered = (p_gen >= min_fraction * p_real) & (p_real > 0)
    return {
        "class_coverage": float(covered.double().sum() / (p_real > 0).double().sum()),
        "class_rkl": reverse_kl(p_gen, p_real),
    }


def reverse_kl(p_gen: Tensor, p_ref: Tensor, eps: float = 1e-10) -> float:
    """``KL(p_gen || p_ref) = sum p_gen log(p_gen / p_ref)``; empty generated bins add 0."""
    p_gen, p_ref = p_gen.double(), p_ref.double().clamp_min(eps)
    mask = p_gen > 0
    return float((p_gen[mask] * (p_gen[mask].log() - p_ref[mask].log())).sum())
