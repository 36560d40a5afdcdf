"""Metrics against independent computations and known answers.

The feature classifier is trained once per module, tiny (digits at 16 px, a few dozen
steps), into a temporary GZOO_CACHE; nothing here depends on wall-clock time.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request

import numpy as np
import pytest
import torch

import gzoo
from gzoo.datasets import TensorGanDataset
from gzoo.errors import UsageError
from gzoo.evaluation import classifier_for
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

RES = 16
TINY = feat.TrainSettings(epochs=3, min_steps=0, batch_size=64)
MICRO = feat.TrainSettings(max_steps=2, batch_size=16)  # for cache bookkeeping only


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GZOO_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield classifier_for("digits", RES, settings=TINY, progress=False)
    finally:
        mp.undo()


# -- FID / KID ---------------------------------------------------------------------------------


def test_fid_of_a_set_with_itself_is_zero():
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_matches_scipy_closed_form():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(800, 6, generator=g), torch.randn(700, 6, generator=g) * 1.3 + 0.4
    an, bn = a.double().numpy(), b.double().numpy()
    expected = frechet_distance(an.mean(0), np.cov(an, rowvar=False), bn.mean(0), np.cov(bn, rowvar=False))
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_is_scipy_sqrtm():
    from scipy import linalg

    g = np.random.default_rng(0)
    a, b = g.normal(size=(300, 4)), g.normal(size=(300, 4)) * 2
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    d = a.mean(0) - b.mean(0)
    by_hand = d @ d + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(a.mean(0), s1, b.mean(0), s2) == pytest.approx(by_hand, rel=1e-9)


def _unbiased_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """MMD^2_u with k(a, b) = (a.b / d + 1)^3 (Bińkowski et al. 2018), written out."""
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


def test_kid_subsets_are_seeded_and_leave_the_global_rng_alone():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(200, 5, generator=g), torch.randn(200, 5, generator=g) + 0.2
    torch.manual_seed(123)
    before = torch.get_rng_state()
    r1 = kid_from_features(a, b, subsets=5, subset_size=50, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert kid_from_features(a, b, subsets=5, subset_size=50, seed=7) == r1
    assert kid_from_features(a, b, subsets=5, subset_size=50, seed=8) != r1
    same = kid_from_features(a, torch.randn(200, 5, generator=g), subsets=5, subset_size=50, seed=7)[0]
    assert abs(same) < 0.5 * r1[0]  # unbiased: about 0 for two draws of one distribution


def test_fid_on_real_images(digits_classifier):
    import torchvision.transforms.functional as TF

    f = digits_classifier.features
    test = gzoo.create("dataset", "digits", resolution=RES, split="test").x  # (359, 1, 16, 16), unseen in training
    a, b = test[: len(test) // 2], test[len(test) // 2 :]
    noise = torch.rand(b.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert fid_from_features(f(a), f(b)) < 0.1 * fid_from_features(f(a), f(noise))
    # degradations of increasing strength, on the two halves of the (larger) training split
    train = gzoo.create("dataset", "digits", resolution=RES, split="train").x  # (1438, 1, 16, 16)
    a, b = train[: len(train) // 2], train[len(train) // 2 :]
    fa = f(a)
    eps = torch.randn(b.shape, generator=torch.Generator().manual_seed(0))
    fids = [fid_from_features(fa, f((b + s * eps).clamp(-1, 1))) for s in (0.0, 0.2, 0.4, 0.8)]
    assert fids == sorted(fids) and fids[-1] > 2 * fids[0]
    blurs = [fid_from_features(fa, f(TF.gaussian_blur(b, 5, s))) for s in (0.3, 0.7, 1.2, 2.0)]
    assert blurs == sorted(blurs) and blurs[-1] > 2 * blurs[0]


# -- the classifier and its cache --------------------------------------------------------------


def test_the_classifier_learns(digits_classifier):
    assert 0.7 < digits_classifier.accuracy <= 1.0
    meta = digits_classifier.meta
    assert meta["dataset"] == "digits" and meta["resolution"] == RES and meta["accuracy_split"] == "test"
    x = gzoo.create("dataset", "digits", resolution=RES, split="test").x[:10]
    assert digits_classifier.features(x).shape == (10, feat.FEATURE_DIM)
    torch.testing.assert_close(digits_classifier.probs(x).sum(1), torch.ones(10))


def _labelled(*, resolution: int = 12, split: str = "train", labels: bool = True) -> TensorGanDataset:
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    y = torch.randint(3, (64,), generator=g)
    x = (torch.rand(64, 1, resolution, resolution, generator=g) + y[:, None, None, None]) / 2 - 1
    return TensorGanDataset(x, y if labels else None, name="blobs" if labels else "unlabelled",
                            num_classes=3 if labels else 0)


def _unlabelled(*, resolution: int = 12, split: str = "train") -> TensorGanDataset:
    return _labelled(resolution=resolution, split=split, labels=False)


@pytest.fixture
def toy_datasets(register_plugin):
    class Plugin:
        @gzoo.hookimpl
        def gzoo_register_components(self, register):
            register("dataset", "blobs", _labelled)
            register("dataset", "unlabelled", _unlabelled)

    register_plugin(Plugin(), "toy-datasets")


def test_classifier_cache_is_reused_and_invalidated(monkeypatch, toy_datasets):
    calls = []
    real_train = feat.train_classifier

    def counting(train, test, settings, **kw):
        calls.append((train.name, train.image_shape[-1]))
        return real_train(train, test, settings, **kw)

    monkeypatch.setattr(feat, "train_classifier", counting)
    first = classifier_for("digits", 8, settings=MICRO, progress=False)
    again = classifier_for("digits", 8, settings=MICRO, progress=False)
    assert calls == [("digits", 8)] and again.accuracy == first.accuracy
    x = torch.zeros(2, 1, 8, 8)
    torch.testing.assert_close(again.features(x), first.features(x))
    classifier_for("stacked-digits", 8, settings=MICRO, progress=False)  # per-channel: the digits one
    assert len(calls) == 1
    classifier_for("digits", 12, settings=MICRO, progress=False)  # another resolution
    classifier_for("blobs", 12, settings=MICRO, progress=False)  # another dataset
    assert calls == [("digits", 8), ("digits", 12), ("blobs", 12)]
    classifier_for("digits", 8, settings=feat.TrainSettings(max_steps=3, batch_size=16), progress=False)
    assert len(calls) == 4  # other settings: another code hash
    metas = sorted(feat.cache_dir().glob("*.json"))
    assert len(metas) == 4 and len(list(feat.cache_dir().glob("*.pt"))) == 4
    meta = json.loads(feat.cache_paths("blobs", 12, 1, MICRO)[1].read_text())
    assert meta["dataset"] == "blobs" and meta["resolution"] == 12 and "test_accuracy" in meta


def test_classifier_weights_load_safely(monkeypatch):
    classifier_for("digits", 8, settings=MICRO, progress=False)
    seen = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("weights_only")) or real_load(*a, **k))
    classifier_for("digits", 8, settings=MICRO, progress=False)
    assert seen == [True]


def _corrupt_bytes(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _mismatched_weights(path):
    torch.save(feat.LeNet(3, 10, 8).state_dict(), path)  # 3-channel weights for a 1-channel net


def _bad_json(path):
    path.write_text('{"num_classes": 10, "test_accuracy"')


def _json_without_keys(path):
    path.write_text(json.dumps({"dataset": "digits"}))


@pytest.mark.parametrize("corrupt,which,why", [
    (_corrupt_bytes, 0, r"\(\w+\)"),
    (_mismatched_weights, 0, r"\(RuntimeError\)"),
    (_bad_json, 1, r"\(JSONDecodeError\)"),
    (_json_without_keys, 1, r"\(num_classes None, expected 10\)"),
])
def test_corrupt_classifier_cache_is_rebuilt_with_one_warning(monkeypatch, corrupt, which, why):
    import warnings

    calls = []
    real_train = feat.train_classifier

    def counting(train, test, settings, **kw):  # (the code hash, hence the cache name, covers this too)
        calls.append(train.name)
        return real_train(train, test, settings, **kw)

    monkeypatch.setattr(feat, "train_classifier", counting)
    first = classifier_for("digits", 8, settings=MICRO, progress=False)
    paths = feat.cache_paths("digits", 8, 1, MICRO)
    assert calls == ["digits"] and all(p.is_file() for p in paths)
    good = [p.read_bytes() for p in paths]
    corrupt(paths[which])
    assert paths[which].read_bytes() != good[which]
    with pytest.warns(UserWarning) as record:
        rebuilt = classifier_for("digits", 8, settings=MICRO, progress=False)
    assert len(record) == 1 and len(calls) == 2
    msg = str(record[0].message)
    assert "\n" not in msg and str(paths[which]) in msg
    assert re.search(rf"is corrupt {why}; rebuilding it$", msg), msg
    # the rebuilt classifier works, and the cache again holds what a fresh training writes
    x = gzoo.create("dataset", "digits", resolution=8, split="test").x[:5]
    torch.testing.assert_close(rebuilt.features(x), first.features(x))
    assert rebuilt.meta["num_classes"] == 10 and json.loads(paths[1].read_text()) == first.meta
    torch.testing.assert_close(torch.load(paths[0], weights_only=True), first.net.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the next use reads the repaired cache silently
        classifier_for("digits", 8, settings=MICRO, progress=False)
    assert len(calls) == 2


def test_classifier_refuses_points_unlabelled_data_and_odd_sizes(toy_datasets):
    with pytest.raises(UsageError, match="points, not images"):
        classifier_for("ring", 28, settings=MICRO, progress=False)
    with pytest.raises(UsageError, match="no labels"):
        classifier_for("unlabelled", 12, settings=MICRO, progress=False)
    with pytest.raises(UsageError, match="8-64 px"):
        classifier_for("digits", 4, settings=MICRO, progress=False)


@pytest.mark.parametrize("channels,res", [(1, 8), (3, 20), (3, 64)])
def test_lenet_adapts_to_channels_and_resolution(channels, res):
    net = feat.LeNet(channels, 10, res)
    assert net.body(torch.zeros(2, channels, res, res)).shape == (2, feat.FEATURE_DIM)
    assert net(torch.zeros(2, channels, res, res)).shape == (2, 10)


# -- precision / recall / density / coverage ---------------------------------------------------


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
    out = prdc(r, f, chunk=7)  # chunking must not change anything
    assert out["precision"] == pytest.approx(p) and out["recall"] == pytest.approx(rc)
    assert out["density"] == pytest.approx(dens) and out["coverage"] == pytest.approx(cov)


# -- classifier-probability metrics ------------------------------------------------------------


def test_inception_score_bounds():
    k = 10
    assert inception_score(torch.eye(k).repeat(5, 1)) == pytest.approx(k)  # confident and balanced
    assert inception_score(torch.full((50, k), 1.0 / k)) == pytest.approx(1.0)
    assert inception_score(torch.eye(k)[torch.zeros(50, dtype=torch.long)]) == pytest.approx(1.0)  # one class


def test_class_histogram_metrics():
    real = torch.arange(10).repeat(10)
    probs = torch.eye(10)[torch.arange(10).repeat(10)]
    assert class_histogram_metrics(probs, real, 10) == {"class_coverage": 1.0, "class_rkl": pytest.approx(0.0)}
    one = class_histogram_metrics(torch.eye(10)[torch.zeros(100, dtype=torch.long)], real, 10)
    assert one["class_coverage"] == 0.1 and one["class_rkl"] == pytest.approx(np.log(10))
    assert reverse_kl(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.25, 0.25, 0.5])) == pytest.approx(np.log(2))


# -- mode metrics ------------------------------------------------------------------------------


def _mixture(name):
    ds = gzoo.create("dataset", name)
    return ds.modes, ds.sigma


@pytest.mark.parametrize("name,k,sigma", [("ring", 8, 0.01), ("grid", 25, 0.05)])
def test_mixture_mode_metrics_known_answers(name, k, sigma):
    modes = _mixture(name)[0].float()
    every = modes.repeat(3000 // k + 1, 1)[:3000]
    r = mixture_mode_metrics(every, *_mixture(name))
    assert set(r) == {"modes", "num_modes", "high_quality", "reverse_kl", "n"}
    assert r["modes"] == k and r["num_modes"] == k and r["high_quality"] == 1.0 and r["n"] == 3000
    assert r["reverse_kl"] == pytest.approx(0.0, abs=1e-3)
    one = mixture_mode_metrics(modes[:1].repeat(3000, 1) + sigma, *_mixture(name))  # 1.4 sigma away: still high quality
    assert one["modes"] == 1 and one["high_quality"] == 1.0 and one["reverse_kl"] == pytest.approx(np.log(k))
    off = mixture_mode_metrics(every + 10 * sigma, *_mixture(name))
    assert off["high_quality"] == 0.0 and off["modes"] == 0
    half = torch.cat([every[:1500], every[1500:] + 10 * sigma])  # half on the modes, half off
    assert mixture_mode_metrics(half, *_mixture(name))["high_quality"] == pytest.approx(0.5)


def test_mixture_mode_metrics_sample_checks():
    with pytest.warns(UserWarning, match="at least 2500"):
        assert mixture_mode_metrics(torch.zeros(10, 2), *_mixture("ring"))["n"] == 10
    with pytest.raises(UsageError, match=r"\(N, 2\)"):
        mixture_mode_metrics(torch.zeros(3000, 3), *_mixture("ring"))


def test_stacked_mode_metrics(digits_classifier):
    base = gzoo.create("dataset", "digits", resolution=RES)
    idx = torch.arange(300)
    stacked = torch.cat([base.x[idx], base.x[idx.roll(1)], base.x[idx.roll(2)]], 1)  # (300, 3, 16, 16)
    r = stacked_mode_metrics(stacked, digits_classifier, torch.arange(1000))
    pred = digits_classifier.logits(base.x[idx]).argmax(1)
    expected_modes = {(int(a), int(b), int(c)) for a, b, c in zip(pred, pred.roll(1), pred.roll(2), strict=True)}
    assert r["modes"] == len(expected_modes) and r["num_modes"] == 1000 and r["n"] == 300
    collapsed = stacked_mode_metrics(stacked[:1].repeat(50, 1, 1, 1), digits_classifier, torch.arange(1000))
    assert collapsed["modes"] == 1 and collapsed["reverse_kl"] == pytest.approx(np.log(1000), rel=1e-6)
    # against the real stacked dataset's mode histogram
    real = gzoo.create("dataset", "stacked-digits", resolution=RES).labels()
    default = stacked_mode_metrics(stacked, digits_classifier, real)
    assert default["modes"] == r["modes"] and np.isfinite(default["reverse_kl"])


# -- Inception (optional, never downloaded) ----------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_missing_inception_weights_is_clear_and_offline(no_network, monkeypatch, tmp_path):
    from gzoo.evaluation import evaluate_samples
    from gzoo.metrics.inception import WEIGHTS_NAME, find_weights, inception_fid_kid

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch-fidelity cache
    monkeypatch.delenv("GZOO_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(UsageError, match="never downloads.*--inception-weights"):
        find_weights(None)
    with pytest.raises(UsageError, match="not found at"):
        inception_fid_kid(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 28, 28), tmp_path / "missing.pth")
    with pytest.raises(UsageError, match="never downloads"):
        evaluate_samples(torch.zeros(4, 1, 28, 28), "digits", metrics=["fid_inception"])
    # a file in torch-fidelity's cache is found; without torch-fidelity installed the message says so
    cached = tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="pip install gzoo\\[inception\\]"):
            find_weights(None)
    else:  # pragma: no cover - only where the extra is installed
        assert find_weights(None) == cached


def test_old_name_based_calls_say_what_to_use_now():
    """gzoo.metrics took dataset names before 0.2: those calls get one line naming the new way."""
    with pytest.raises(UsageError, match=r"gzoo.evaluation.classifier_for\('digits', resolution\)"):
        feat.get_classifier("digits", 28)
    with pytest.raises(UsageError, match="pass ds.modes, ds.sigma"):
        mixture_mode_metrics(torch.zeros(10, 2), "ring")
    with pytest.raises(UsageError, match="takes no dataset name"):
        stacked_mode_metrics(torch.zeros(2, 3, 8, 8), "digits", None)
