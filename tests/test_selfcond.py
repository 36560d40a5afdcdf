"""Self-conditioning: Hungarian matching, reclustering, state, and end-to-end training."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

import gzoo
from gzoo.config import RunConfig
from gzoo.errors import UsageError
from gzoo.run import load_checkpoint, load_run
from gzoo.trainer import Trainer, resume, train
from gzoo_selfcond.clustering import SelfConditioner, match_clusters, overlap_matrix


def test_hungarian_recovers_a_known_permutation():
    rng = np.random.default_rng(0)
    k = 12
    old = rng.integers(0, k, 2000)
    perm = rng.permutation(k)
    new = perm[old]  # the same partition under other names
    rho = match_clusters(old, new, k)
    assert (rho[new] == old).all()
    assert (rho[perm] == np.arange(k)).all()


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_hungarian_matches_brute_force(k):
    rng = np.random.default_rng(k)
    old, new = rng.integers(0, k, 300), rng.integers(0, k, 300)
    o = overlap_matrix(old, new, k)
    best = max(itertools.permutations(range(k)), key=lambda p: sum(o[p[j], j] for j in range(k)))
    rho = match_clusters(old, new, k)
    assert sum(o[rho[j], j] for j in range(k)) == sum(o[best[j], j] for j in range(k))


def _blobs(k=5, n=400, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 10
    return centers[torch.arange(n) % k] + torch.randn(n, d, generator=g) * 0.1


def _conditioner(k=5, n=400):
    ds = gzoo.create("dataset", "ring", n=n)
    return SelfConditioner(dataset=ds, k=k, subset=n)


def test_reclustering_identical_features_keeps_every_label():
    c = _conditioner()
    feats = _blobs()
    c.fit(feats)
    first = c.labels.clone()
    assert c.clusterings == 1 and torch.bincount(first).tolist() == [80] * 5
    c.fit(feats)
    assert torch.equal(c.labels, first) and c.clusterings == 2
    assert torch.equal(c.perm, torch.arange(5))  # the matching kept every name


def test_reclustering_keeps_whatever_names_the_old_partition_used():
    c = _conditioner()
    feats = _blobs()
    c.fit(feats)
    shuffle = torch.tensor([3, 0, 4, 1, 2])
    old = shuffle[c.labels]  # the same partition under other names
    c.labels = old.clone()
    c.fit(feats)
    assert torch.equal(c.labels, old)
    torch.testing.assert_close(c.centers[old], feats, atol=0.5, rtol=0)  # centers follow the names


def test_reclustering_keeps_names_when_features_move_a_little():
    c = _conditioner()
    feats = _blobs()
    c.fit(feats)
    before = c.labels.clone()
    c.fit(feats + 0.5 * torch.randn_like(feats) * 0.1 + 3.0)  # shifted features, same structure
    assert torch.equal(c.labels, before)


def test_empty_clusters_do_not_crash():
    c = _conditioner(k=8)
    feats = _blobs(k=3)  # three true blobs for eight clusters
    c.fit(feats)
    c.labels[c.labels == 7] = 0  # force an empty old cluster
    c.fit(feats)
    assert c.sizes.sum() == 400 and len(c.sizes) == 8
    y = c.fake_labels(1000, generator=torch.Generator().manual_seed(0))
    assert set(y.tolist()) <= set(torch.nonzero(c.sizes).flatten().tolist())


def test_options_are_checked():
    ds = gzoo.create("dataset", "ring", n=400)
    with pytest.raises(UsageError, match="init must be one of"):
        SelfConditioner(dataset=ds, k=4, init="kmeans")
    with pytest.raises(UsageError, match="recluster_every must be >= 0"):
        SelfConditioner(dataset=ds, k=4, recluster_every=-1)
    with pytest.raises(UsageError, match="only 10 samples to cluster"):
        SelfConditioner(dataset=ds, k=20, subset=10)
    c = SelfConditioner(dataset=ds, k=5, init="random", subset=400)
    c.fit(_blobs())
    assert len(c.sizes) == 5 and c.sizes.sum() == 400


def test_fake_labels_follow_cluster_sizes():
    c = _conditioner(k=4)
    c.labels = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)
    c.sizes = torch.bincount(c.labels, minlength=4).float()
    y = c.fake_labels(20000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(y, minlength=4).double() / len(y)
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1, 0.0], dtype=torch.float64), atol=0.01, rtol=0)


RING = dict(gen="mlp", disc="mlp", data="ring", batch_size=32, progress=False, sample_every=0,
            gen_opt={"hidden": 32}, disc_opt={"hidden": 32}, cond="selfcond",
            cond_opt={"k": 8, "recluster_every": 2, "subset": 500})


def test_self_conditioned_ring_trains_and_reclusters(cli, tmp_path):
    r = cli("run", "--gen", "mlp", "--disc", "mlp", "--loss", "nonsaturating", "--data", "ring", "--cond", "selfcond",
            "--cond-opt", "k=8", "--cond-opt", "recluster_every=2", "--cond-opt", "subset=500", "--steps", "6",
            "--batch-size", "32", "--sample-every", "0", "--quiet", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")  # weights_only=True
    assert state["cond"]["clusterings"] == 4  # step 0, then steps 2, 4 and 6
    assert sorted(state["cond"]["perm"].tolist()) == list(range(8))
    assert state["num_classes"] == 8 and state["cond"]["centers"].shape[0] == 8
    logged = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "selfcond_clusterings" in row] == [2, 4, 6]


def test_resume_restores_the_cluster_state_exactly(tmp_path):
    a = train(RunConfig(**RING, steps=8, out=str(tmp_path / "a")))
    train(RunConfig(**RING, steps=4, out=str(tmp_path / "b")))
    b = resume(tmp_path / "b", {"steps": 8})
    for key in ("centers", "labels", "sizes", "perm", "subset"):
        assert torch.equal(a.cond.state_dict()[key], b.cond.state_dict()[key]), key
    assert a.cond.clusterings == b.cond.clusterings == 5
    for k, v in a.G.state_dict().items():
        assert torch.equal(v, b.G.state_dict()[k])
    run = load_run(tmp_path / "b")  # sample/eval/viz rebuild the conditioner too
    assert torch.equal(run.cond.centers, b.cond.centers)
    x = torch.randn(5, 2)
    assert torch.equal(run.cond.real_labels(x, None), b.cond.real_labels(x, None))


def test_state_dict_round_trip_is_weights_only_safe(tmp_path):
    t = Trainer(RunConfig(**RING, steps=2, out=str(tmp_path / "r")))
    t.fit()
    torch.save(t.cond.state_dict(), tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    c = SelfConditioner(dataset=t.data, k=8, subset=500)
    c.setup(t)
    c.load_state_dict(state)
    for key in ("centers", "labels", "sizes", "perm", "subset"):
        assert torch.equal(getattr(c, key), getattr(t.cond, key)), key
    assert c.clusterings == t.cond.clusterings == 2
    for key, v in t.cond.D_frozen.state_dict().items():
        assert torch.equal(c.D_frozen.state_dict()[key], v), key
    x = torch.randn(64, 2)
    assert torch.equal(c.real_labels(x, None), t.cond.real_labels(x, None))
    with pytest.raises(UsageError, match="has 8 clusters"):
        SelfConditioner(dataset=t.data, k=6, subset=500).load_state_dict(state)


def test_unconditionable_pair_and_bad_options_are_refused(cli, tmp_path, uncond_generator):
    with pytest.raises(UsageError, match="cannot be class-conditioned"):
        Trainer(RunConfig(**{**RING, "gen": uncond_generator, "gen_opt": {}}))
    r = cli("run", "--gen", uncond_generator, "--disc", "mlp", "--data", "ring", "--cond", "selfcond",
            "--steps", "1", "--quiet", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "cannot be class-conditioned" in r.output and "Traceback" not in r.output
    with pytest.raises(UsageError, match="k >= 2"):
        Trainer(RunConfig(**{**RING, "cond_opt": {"k": 1}}))
    with pytest.raises(UsageError, match="has no option 'kk'"):
        Trainer(RunConfig(**{**RING, "cond_opt": {"kk": 3}}))


@pytest.mark.parametrize("head", ["projection", "multihead"])
def test_selfcond_with_dcgan_heads_and_cluster_viz(cli, tmp_path, head):
    out = tmp_path / "r"
    r = cli("run", "--gen", "dcgan", "--disc", "dcgan", "--data", "digits", "--cond", "selfcond", "--cond-opt", "k=5",
            "--cond-opt", "recluster_every=2", "--cond-opt", "subset=200", "--disc-opt", f"cond_head={head}",
            "--gen-opt", "ch=8", "--disc-opt", "ch=8", "--steps", "2", "--batch-size", "8", "--sample-every", "0",
            "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    r = cli("viz", "--run", out, "--clusters", "--out", tmp_path / "c.png", "--opt", "n=3")
    assert r.exit_code == 0, r.output
    from PIL import Image

    assert Image.open(tmp_path / "c.png").size == (2 + 7 * 30, 2 + 5 * 30)  # 5 clusters x (3 + 1 + 3) tiles


def test_cluster_scatter_for_2d_data(cli, tmp_path):
    out = tmp_path / "r"
    r = cli("run", "--gen", "mlp", "--disc", "mlp", "--data", "ring", "--cond", "selfcond", "--cond-opt", "k=8",
            "--cond-opt", "subset=300", "--gen-opt", "hidden=16", "--disc-opt", "hidden=16", "--steps", "1",
            "--batch-size", "16", "--sample-every", "0", "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    r = cli("viz", "--run", out, "--clusters", "--out", tmp_path / "s.png", "--opt", "points=500")
    assert r.exit_code == 0, r.output
    from PIL import Image

    img = Image.open(tmp_path / "s.png").convert("RGB")
    assert img.size == (2 + 2 * 322, 2 + 322)  # real | generated, 320 px panels
    colours = {img.getpixel((x, y)) for x in range(2, 322) for y in range(2, 322)}
    assert len(colours) >= 5  # white, and one colour per non-empty cluster on the real side


def test_scatter_rasterisation_places_points():
    from gzoo_selfcond.viz import palette, scatter_by_label

    pts = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    img = scatter_by_label(pts, torch.tensor([0, 1, 2]), palette(3), lim=1.0, size=11, dot=1)
    assert torch.equal(img[:, 10, 0], palette(3)[0]) and torch.equal(img[:, 0, 10], palette(3)[1])
    assert torch.equal(img[:, 5, 5], palette(3)[2]) and (img == 1).all(0).sum() == 121 - 3
