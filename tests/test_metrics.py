"""Metrics against independent computations and known answers."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

import gzoo
from gzoo.errors import UsageError
from gzoo.metrics import features as feat
from gzoo.metrics import (
    fid_from_features,
    frechet_distance,
    inception_score,
    kid_from_features,
    mixture_mode_metrics,
    prdc,
    stacked_mode_metrics,
)
from gzoo.metrics.image import class_histogram_metrics, reverse_kl

TINY = feat.TrainSettings(epochs=1, batch_size=64)


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
    import os

    old = os.environ.get("GZOO_CACHE")
    os.environ["GZOO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield feat.get_classifier("digits", 28, settings=TINY, progress=False)
    finally:
        if old is None:
            os.environ.pop("GZOO_CACHE")
        else:
            os.environ["GZOO_CACHE"] = old


def test_fid_of_a_set_with_itself_is_zero():
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_matches_scipy_closed_form():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(800, 6, generator=g), torch.randn(700, 6, generator=g) * 1.3 + 0.4
    an, bn = a.double().numpy(), b.double().numpy()
    expected = frechet_distance(an.mean(0), np.cov(an, rowvar=False), bn.mean(0), np.cov(bn, rowvar=False))
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)


def _unbiased_mmd(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


def test_kid_matches_unbiased_mmd_written_out():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(300, 5, generator=g), torch.randn(300, 5, generator=g) + 0.3
    mean, std = kid_from_features(a, b, subsets=1, subset_size=300)  # one subset = the whole sets
    assert mean == pytest.approx(_unbiased_mmd(a.double().numpy(), b.double().numpy()), rel=1e-6)
    assert std == 0.0


def test_fid_on_real_images(digits_classifier):
    real = gzoo.create("dataset", "digits", split="train")
    x = real.x
    half = len(x) // 2
    f = digits_classifier.features
    same = fid_from_features(f(x[:half]), f(x[half:]))
    noise = fid_from_features(f(x[:half]), f(torch.rand_like(x[half:]) * 2 - 1))
    assert same < 0.1 * noise
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(x[half:].shape, generator=g)
    fids = [fid_from_features(f(x[:half]), f((x[half:] + s * eps).clamp(-1, 1))) for s in (0.0, 0.1, 0.3, 0.6)]
    assert fids == sorted(fids) and fids[-1] > fids[0]
    import torchvision.transforms.functional as TF

    blurs = [fid_from_features(f(x[:half]), f(TF.gaussian_blur(x[half:], 9, s))) for s in (0.3, 1.0, 2.0, 4.0)]
    assert blurs == sorted(blurs)


def test_classifier_cache_is_reused_and_invalidated(monkeypatch):
    first = feat.get_classifier("digits", 28, settings=TINY, progress=False)
    calls = []
    real_train = feat.train_classifier

    def counting(*a, **k):
        calls.append(1)
        return real_train(*a, **k)

    monkeypatch.setattr(feat, "train_classifier", counting)
    again = feat.get_classifier("digits", 28, settings=TINY, progress=False)
    assert calls == [] and again.accuracy == first.accuracy
    assert 0.5 < again.accuracy <= 1.0
    feat.get_classifier("digits", 32, settings=TINY, progress=False)  # another resolution
    assert calls == [1]
    feat.get_classifier("stacked-digits", 28, settings=TINY, progress=False)  # another dataset
    assert calls == [1, 1]
    torch.testing.assert_close(again.features(torch.zeros(2, 1, 28, 28)), first.features(torch.zeros(2, 1, 28, 28)))
    metas = sorted(feat.cache_dir().glob("*.json"))
    assert len(metas) == 3 and "test_accuracy" in json.loads(metas[0].read_text())


def test_classifier_needs_labels_and_images():
    with pytest.raises(UsageError, match="points, not images"):
        feat.get_classifier("ring", 28, settings=TINY, progress=False)


def test_prdc_on_constructed_sets():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(1000, 4, generator=g), torch.randn(1000, 4, generator=g)
    same = prdc(a, b)
    assert same["coverage"] > 0.9 and same["precision"] > 0.6 and same["recall"] > 0.6
    assert 0.7 < same["density"] < 1.3
    far = prdc(a, b + 100)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    narrow = prdc(a, b * 0.1)  # all fakes inside the real manifold, but they cover little of it
    assert narrow["precision"] > 0.95 and narrow["recall"] < 0.2


def test_prdc_matches_a_direct_computation():
    g = torch.Generator().manual_seed(4)
    r, f = torch.randn(60, 3, generator=g).double(), torch.randn(50, 3, generator=g).double() + 0.5
    drr, dff, dfr = torch.cdist(r, r), torch.cdist(f, f), torch.cdist(f, r)
    rad = lambda d, k: d.sort(1).values[:, k]  # noqa: E731  (column 0 is the point itself)
    p = np.mean([any(dfr[j, i] <= rad(drr, 3)[i] for i in range(60)) for j in range(50)])
    rc = np.mean([any(dfr[j, i] <= rad(dff, 3)[j] for j in range(50)) for i in range(60)])
    dens = sum(float(dfr[j, i] <= rad(drr, 5)[i]) for j in range(50) for i in range(60)) / (5 * 50)
    cov = np.mean([float(dfr[:, i].min() <= rad(drr, 5)[i]) for i in range(60)])
    out = prdc(r, f)
    assert out["precision"] == pytest.approx(p) and out["recall"] == pytest.approx(rc)
    assert out["density"] == pytest.approx(dens) and out["coverage"] == pytest.approx(cov)


def test_inception_score_bounds():
    k = 10
    assert inception_score(torch.eye(k).repeat(5, 1)) == pytest.approx(k)  # confident and balanced
    assert inception_score(torch.full((50, k), 1.0 / k)) == pytest.approx(1.0)


def test_class_histogram_metrics():
    real = torch.arange(10).repeat(10)
    probs = torch.eye(10)[torch.arange(10).repeat(10)]
    assert class_histogram_metrics(probs, real, 10) == {"class_coverage": 1.0, "class_rkl": pytest.approx(0.0)}
    one = class_histogram_metrics(torch.eye(10)[torch.zeros(100, dtype=torch.long)], real, 10)
    assert one["class_coverage"] == 0.1 and one["class_rkl"] == pytest.approx(np.log(10))
    assert reverse_kl(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.25, 0.25, 0.5])) == pytest.approx(np.log(2))


@pytest.mark.parametrize("name,k,sigma", [("ring", 8, 0.01), ("grid", 25, 0.05)])
def test_mixture_mode_metrics_known_answers(name, k, sigma):
    from gzoo.datasets import MIXTURES

    modes = MIXTURES[name][0]().float()
    every = modes.repeat(3000 // k + 1, 1)[:3000]
    r = mixture_mode_metrics(every, name)
    assert r["modes"] == k and r["high_quality"] == 1.0 and r["n"] == 3000
    assert r["reverse_kl"] == pytest.approx(0.0, abs=1e-3)
    one = mixture_mode_metrics(modes[:1].repeat(3000, 1) + sigma, name)
    assert one["modes"] == 1 and one["high_quality"] == 1.0 and one["reverse_kl"] == pytest.approx(np.log(k))
    off = mixture_mode_metrics(every + 10 * sigma, name)
    assert off["high_quality"] == 0.0 and off["modes"] == 0


def test_stacked_mode_metrics(digits_classifier):
    base = gzoo.create("dataset", "digits")
    idx = torch.arange(300)
    stacked = torch.cat([base.x[idx], base.x[idx.roll(1)], base.x[idx.roll(2)]], 1)
    r = stacked_mode_metrics(stacked, "digits", digits_classifier, real_labels=torch.arange(1000))
    pred = digits_classifier.logits(base.x[idx]).argmax(1)
    expected_modes = {(int(a), int(b), int(c)) for a, b, c in zip(pred, pred.roll(1), pred.roll(2), strict=True)}
    assert r["modes"] == len(expected_modes)
    collapsed = stacked_mode_metrics(stacked[:1].repeat(50, 1, 1, 1), "digits", digits_classifier, real_labels=torch.arange(1000))
    assert collapsed["modes"] == 1 and collapsed["reverse_kl"] == pytest.approx(np.log(1000), rel=1e-6)


def test_missing_inception_weights_is_clear_and_offline(monkeypatch, tmp_path):
    from gzoo.metrics.inception import check_weights, inception_fid_kid

    def no_network(*a, **k):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(UsageError, match="never downloads"):
        check_weights(None)
    with pytest.raises(UsageError, match="not found at"):
        inception_fid_kid(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 28, 28), tmp_path / "missing.pth")
