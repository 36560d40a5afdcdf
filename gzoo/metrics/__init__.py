"""Offline quality metrics.

Everything here runs without downloads. Image metrics live in the feature space of a
small LeNet-style classifier that gzoo trains on the real data itself and caches
(:mod:`gzoo.metrics.features`); their names carry ``_lenet`` so nobody mistakes them for
Inception-based numbers. Mode-collapse metrics for the 2-D mixtures and stacked datasets
are in :mod:`gzoo.metrics.modes`. See docs/metrics.md.
"""

from .features import get_classifier
from .image import (
    class_histogram_metrics,
    fid_from_features,
    frechet_distance,
    inception_score,
    kid_from_features,
    prdc,
)
from .modes import mixture_mode_metrics, stacked_mode_metrics

__all__ = [
    "class_histogram_metrics",
    "fid_from_features",
    "frechet_distance",
    "get_classifier",
    "inception_score",
    "kid_from_features",
    "prdc",
    "mixture_mode_metrics",
    "stacked_mode_metrics",
]
