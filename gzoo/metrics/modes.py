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

from ..datasets import MIXTURES
from ..errors import UsageError
from .image import reverse_kl

MIN_SAMPLES = 2500


def mixture_mode_metrics(samples: Tensor, dataset: str) -> dict[str, Any]:
    """Modes recovered, fraction of high-quality samples and reverse KL for ring/grid."""
    if dataset not in MIXTURES:
        raise UsageError(f"mode metrics know the mixtures {sorted(MIXTURES)}, not {dataset!r}")
    if samples.dim() != 2 or samples.shape[1] != 2:
        raise UsageError(f"2-D mode metrics need samples of shape (N, 2), got {tuple(samples.shape)}")
    n = len(samples)
    if n < MIN_SAMPLES:
        warnings.warn(f"mode metrics from {n} samples; use at least {MIN_SAMPLES}", stacklevel=2)
    modes_fn, sigma = MIXTURES[dataset]
    modes = modes_fn()
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


def stacked_mode_metrics(samples: Tensor, base: str = "fashion-mnist", classifier: Any = None, *, real_labels: Tensor | None = None) -> dict[str, Any]:
    """Modes recovered (of 1000) and reverse KL against the real stacked mode histogram."""
    if samples.dim() != 4 or samples.shape[1] != 3:
        raise UsageError(f"stacked mode metrics need samples of shape (N, 3, H, W), got {tuple(samples.shape)}")
    n, resolution = len(samples), samples.shape[-1]
    if classifier is None:
        from .features import get_classifier

        classifier = get_classifier(base, resolution)
    per_channel = classifier.logits(samples.flatten(0, 1).unsqueeze(1)).argmax(1).view(n, 3)
    modes = (per_channel * torch.tensor([100, 10, 1])).sum(1)
    p_gen = torch.bincount(modes, minlength=1000).double() / n
    if real_labels is None:
        from ..plugins import get_plugin_manager

        real_labels = get_plugin_manager().registry.create("dataset", f"stacked-{base}", resolution=resolution).labels()
    p_real = torch.bincount(real_labels.long(), minlength=1000).double() / len(real_labels)
    return {"modes": int((p_gen > 0).sum()), "num_modes": 1000, "reverse_kl": reverse_kl(p_gen, p_real), "n": n}
