"""Datasets: shapes, ranges, labels, the 2-D mixtures' geometry, and the file loaders
tested on files generated here (no network)."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

import gzoo
from gzoo.datasets import DEBIAN_FASHION_MNIST, grid_modes, ring_modes
from gzoo.errors import DatasetNotFoundError, UsageError

ALWAYS = ["digits", "ring", "grid", "stacked-digits"]



@pytest.mark.parametrize("name", ALWAYS)
def test_dataset_contract(name):
    ds = gzoo.create("dataset", name)
    x, y = ds.get_batch(torch.arange(5))
    assert x.shape == (5, *ds.image_shape)
    assert y.shape == (5,) and y.dtype == torch.long
    assert ((y >= 0) & (y < ds.num_classes)).all()
    x0, y0 = ds[0]
    torch.testing.assert_close(x0, x[0])
    assert y0 == int(y[0])
    if len(ds.image_shape) == 3:
        assert x.min() >= -1 and x.max() <= 1


def test_digits_resolution_and_splits():
    tr = gzoo.create("dataset", "digits", resolution=32)
    te = gzoo.create("dataset", "digits", split="test")
    assert tr.image_shape == (1, 32, 32) and te.image_shape == (1, 28, 28)
    assert len(tr) + len(te) == 1797
    with pytest.raises(UsageError, match="valid splits"):
        gzoo.create("dataset", "digits", split="val")


@pytest.mark.parametrize("name,modes,sigma", [("ring", ring_modes(), 0.01), ("grid", grid_modes(), 0.05)])
def test_mixtures(name, modes, sigma):
    ds = gzoo.create("dataset", name, n=20000)
    assert ds.num_classes == len(modes) == (8 if name == "ring" else 25)
    resid = ds.x.double() - modes[ds.y]
    assert abs(resid.std().item() - sigma) < 0.1 * sigma
    counts = torch.bincount(ds.y, minlength=len(modes)).double()
    assert counts.min() > 0.8 * counts.mean()
    if name == "ring":
        torch.testing.assert_close(modes.norm(dim=1), torch.ones(8, dtype=torch.float64))
    else:
        assert set(modes.flatten().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_stacked_labels_compose_channel_labels():
    base = gzoo.create("dataset", "digits")
    st = gzoo.create("dataset", "stacked-digits", n=50, seed=3)
    x, y = st.get_batch(torch.arange(50))
    assert st.num_classes == 1000 and x.shape == (50, 3, 28, 28)
    for i in range(5):
        t = st.triples[i]
        for c in range(3):
            torch.testing.assert_close(x[i, c], base.x[t[c], 0])
        assert int(y[i]) == 100 * int(base.y[t[0]]) + 10 * int(base.y[t[1]]) + int(base.y[t[2]])


def _write_idx(path, arr, gz):
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loader_reads_generated_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=12, dtype=np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    sfx = ".gz" if gz else ""
    _write_idx(raw / f"train-images-idx3-ubyte{sfx}", imgs, gz)
    _write_idx(raw / f"train-labels-idx1-ubyte{sfx}", labels, gz)
    ds = gzoo.create("dataset", "mnist", root=str(tmp_path))
    assert len(ds) == 12 and ds.image_shape == (1, 28, 28)
    torch.testing.assert_close(ds.x[3, 0], torch.from_numpy(imgs[3]).float() / 255 * 2 - 1)
    assert ds.y.tolist() == labels.tolist()
    st = gzoo.create("dataset", "stacked-mnist", root=str(tmp_path), n=7)
    assert len(st) == 7 and st.image_shape == (3, 28, 28)


def test_truncated_idx_is_a_clear_error(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)), False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4), False)
    data = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(UsageError, match="truncated"):
        gzoo.create("dataset", "fashion-mnist", root=str(tmp_path))


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="download=true"):
        gzoo.create("dataset", "mnist", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="download=true"):
        gzoo.create("dataset", "cifar10", root=str(tmp_path))


def test_explicit_root_is_the_only_place_searched(tmp_path):
    # even where Debian's Fashion-MNIST is installed, a wrong --data-root is an error, not a fallback
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        gzoo.create("dataset", "fashion-mnist", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        gzoo.create("dataset", "fashion-mnist", root=str(tmp_path / "nowhere"))


def test_cifar10_loader_reads_generated_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 4))}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    ds = gzoo.create("dataset", "cifar10", root=str(tmp_path))
    assert len(ds) == 20 and ds.image_shape == (3, 32, 32)
    assert ds.x.min() >= -1 and ds.x.max() <= 1


def test_folder_dataset(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 40, 3), 50 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = gzoo.create("dataset", "folder", root=str(tmp_path), resolution=16)
    assert len(ds) == 6 and ds.image_shape == (3, 16, 16) and ds.num_classes == 2
    x, y = ds.get_batch(torch.tensor([0, 5]))
    assert x.shape == (2, 3, 16, 16) and y.tolist() == [0, 1]
    with pytest.raises(DatasetNotFoundError):
        gzoo.create("dataset", "folder", root=str(tmp_path / "nope"))


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package():
    ds = gzoo.create("dataset", "fashion-mnist", split="test")
    assert len(ds) == 10000 and ds.image_shape == (1, 28, 28) and ds.num_classes == 10
