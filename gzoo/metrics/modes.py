"""Mode-collapse metrics: the 2-D Gaussian mixtures and the 1000-mode stacked datasets.

2-D (``ring``: 8 modes, sigma 0.01; ``grid``: 25 modes, sigma 0.05), following VEEGAN /
PacGAN / self-conditioned GAN:

* a sample is **high quality** if it lies within 3 sigma of its nearest mode;
* **modes recovered**: modes with at least one high-quality sample;
* **reverse KL**: ``KL(p_gen || uniform)`` of the histogram of every sample's nearest mode,
  in nats (0 for a perfectly balanced generator, ``log K`` for total collapse).

Stacked (three images as RGB channels): each channel is classified with the base dataset's
feature classifier; the mode is ``100 * c_r + 10 * c_g + c_b``. **Modes recovered** counts the
distinct modes among the samples; **reverse KL** is ``KL(p_gen || p_real)`` against the mode
histogram of the real stacked training set (empty generated bins add 0; empty real bins are
floored at 1e-10, so the value stays finite). See docs/metrics.md.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from ..errors import UsageError
from .image import class_counts, reverse_kl

MIN_SAMPLES = 2500


def mixture_mode_metrics(samples: Tensor, modes: Tensor, sigma: float | None = None) -> dict[str, Any]:
    """Modes recovered, fraction of high-quality samples and reverse KL of ``(N, d)`` samples
    of a Gaussian mixture with means ``modes`` ``(K, d)`` and standard deviation ``sigma``."""
    if isinstance(modes, str):
        raise UsageError(f"mixture_mode_metrics takes the modes and sigma since gzoo 0.2: pass ds.modes, ds.sigma "
                         f"of the dataset {modes!r}, or use gzoo.evaluation.evaluate_samples(samples, {modes!r})")
    if sigma is None:
        raise UsageError("mixture_mode_metrics needs the mixture's sigma")
    modes = torch.as_tensor(modes, dtype=torch.float64)
    if samples.dim() != 2 or samples.shape[1] != modes.shape[1]:
        raise UsageError(f"mode metrics need samples of shape (N, {modes.shape[1]}), got {tuple(samples.shape)}")
    n = len(samples)
    if n < MIN_SAMPLES:
        warnings.warn(f"mode metrics from {n} samples; use at least {MIN_SAMPLES}", stacklevel=2)
    d = torch.cdist(samples.double(), modes)  # (N, K)
    dist, nearest = d.min(1)
    hq = dist <= 3 * sigma
    k = len(modes)
    recovered = int(torch.unique(nearest[hq]).numel())
    hist = torch.bincount(nearest, minlength=k).double() / n
    return {
        "modes": recovered,
        "num_modes": k,
        "high_quality": float(hq.double().mean()),
        "reverse_kl": reverse_kl(hist, torch.full((k,), 1.0 / k, dtype=torch.float64)),
        "n": n,
    }


def stacked_mode_metrics(samples: Tensor, classifier: Any, real_labels: Tensor) -> dict[str, Any]:
    """Modes recovered (of 1000) and reverse KL against the real stacked mode histogram:
    ``samples`` ``(N, 3, H, W)``, ``classifier`` the base dataset's (``logits`` of one channel),
    ``real_labels`` the modes ``100 r + 10 g + b`` of the real stacked set."""
    if isinstance(classifier, str):
        raise UsageError("stacked_mode_metrics(samples, classifier, real_labels) takes no dataset name since gzoo "
                         "0.2; use gzoo.evaluation.evaluate_samples(samples, 'stacked-...') for names")
    if samples.dim() != 4 or samples.shape[1] != 3:
        raise UsageError(f"stacked mode metrics need samples of shape (N, 3, H, W), got {tuple(samples.shape)}")
    n = len(samples)
    per_channel = classifier.logits(samples.flatten(0, 1).unsqueeze(1)).argmax(1).view(n, 3)
    modes = (per_channel * torch.tensor([100, 10, 1])).sum(1)
    p_gen = class_counts(modes, 1000) / n
    p_real = class_counts(real_labels, 1000) / len(real_labels)
    return {"modes": int((p_gen > 0).sum()), "num_modes": 1000, "reverse_kl": reverse_kl(p_gen, p_real), "n": n}
