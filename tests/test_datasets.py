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


def _write_cifar(root, protocol, n=4, seed=0):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        batches[name] = batch
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f, protocol=protocol)
    return d, batches


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_cifar10_loader_reads_generated_batches(tmp_path, protocol):
    _, batches = _write_cifar(tmp_path, protocol)
    ds = gzoo.create("dataset", "cifar10", root=str(tmp_path))
    assert len(ds) == 20 and ds.image_shape == (3, 32, 32)
    assert ds.x.min() >= -1 and ds.x.max() <= 1
    first = batches["data_batch_1"]
    expected = torch.from_numpy(first["data"][1].reshape(3, 32, 32)).float() / 255 * 2 - 1
    torch.testing.assert_close(ds.x[1], expected)
    assert ds.y[:4].tolist() == [int(v) for v in first["labels"]]
    test = gzoo.create("dataset", "cifar10", root=str(tmp_path), split="test", resolution=16)
    assert len(test) == 4 and test.image_shape == (3, 16, 16)
    assert test.y.tolist() == [int(v) for v in batches["test_batch"]["labels"]]


def _py2_cifar_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle (protocol 2) and numpy 1.x wrote CIFAR-10's files: byte
    strings as py2 ``str`` (SHORT_BINSTRING/BINSTRING) and ``numpy.core.multiarray._reconstruct``."""
    return b"".join([
        b"\x80\x02}q\x01(U\x04data",
        b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87R",
        b"(K\x01K" + bytes([len(data)]) + b"M" + struct.pack("<H", 3072) + b"\x86",
        b"cnumpy\ndtype\nq\x04U\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
        b"\x89T" + struct.pack("<I", data.nbytes) + data.tobytes() + b"tb",
        b"U\x06labels](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e",
        b"U\x0bbatch_labelU\x15training batch 1 of 5u.",
    ])


def test_cifar10_loader_reads_python2_pickles(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, 6)]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(_py2_cifar_batch(data, labels))
    assert pickle.loads((d / "test_batch").read_bytes(), encoding="latin1")["labels"] == labels  # a valid pickle
    ds = gzoo.create("dataset", "cifar10", root=str(tmp_path), split="test")
    assert ds.y.tolist() == labels
    torch.testing.assert_close(ds.x[5], torch.from_numpy(data[5].reshape(3, 32, 32)).float() / 255 * 2 - 1)


@pytest.mark.parametrize("batch,why", [
    ([1, 2, 3], "holds a list"),
    ({"data": [[0] * 3072], "labels": [0]}, "'data' is a list, not an array"),
    ({"labels": [0]}, "no 'data' array"),
    ({"data": np.zeros((2, 3072), dtype=object), "labels": [0, 1]}, "'data' has dtype object"),
    ({"data": np.zeros((2, 3072), dtype=np.float32), "labels": [0, 1]}, "'data' has dtype float32"),
    ({"data": np.zeros((2, 100), dtype=np.uint8), "labels": [0, 1]}, r"'data' has shape \(2, 100\)"),
    ({"data": np.full((2, 3072), 256, dtype=np.int64), "labels": [0, 1]}, "'data' holds values outside 0-255"),
    ({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0]}, "'labels' is not a list of 2 integers"),
    ({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": ["a", "b"]}, "'labels' is not a list of 2 integers"),
    ({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0, 10]}, "'labels' holds values outside 0-9"),
])
def test_cifar10_batch_of_the_wrong_structure_is_one_clear_error(tmp_path, batch, why):
    d, _ = _write_cifar(tmp_path, 2)
    with open(d / "data_batch_3", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(UsageError, match=rf"data_batch_3 is not a CIFAR-10 python batch \({why}"):
        gzoo.create("dataset", "cifar10", root=str(tmp_path))


def test_cifar10_garbage_and_truncated_files_are_clear_errors(tmp_path):
    d, _ = _write_cifar(tmp_path, 2)
    (d / "data_batch_2").write_bytes((d / "data_batch_2").read_bytes()[:-500])
    with pytest.raises(UsageError, match="data_batch_2 is not a CIFAR-10 python batch .unreadable pickle"):
        gzoo.create("dataset", "cifar10", root=str(tmp_path))
    (d / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(UsageError, match="test_batch is not a CIFAR-10 python batch"):
        gzoo.create("dataset", "cifar10", root=str(tmp_path), split="test")


@pytest.fixture
def no_downloads(monkeypatch):
    """Records every attempt to download (torchvision) instead of making it."""
    import torchvision.datasets
    import torchvision.datasets.utils

    calls = []

    def record(name):
        def fake(*args, **kwargs):
            calls.append(name)
            raise RuntimeError("offline")
        return fake

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", record("cifar10"))
    monkeypatch.setattr(torchvision.datasets, "MNIST", record("mnist"))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", record("fashion-mnist"))
    return calls


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion-mnist", "stacked-mnist"])
def test_datasets_download_only_when_asked_explicitly(tmp_path, no_downloads, name):
    with pytest.raises(DatasetNotFoundError, match="download=true"):
        gzoo.create("dataset", name, root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="download=true"):
        gzoo.create("dataset", name, root=str(tmp_path), download=False)
    assert no_downloads == []
    with pytest.raises(UsageError, match="download must be true or false"):
        gzoo.datasets.cifar10(root=str(tmp_path), download="false")  # a truthy string is not a yes
    assert no_downloads == []
    with pytest.raises(DatasetNotFoundError, match="could not download"):
        gzoo.create("dataset", name, root=str(tmp_path), download="true")  # the CLI's spelling
    assert no_downloads == [name.removeprefix("stacked-")]


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


def test_folder_with_unreadable_images_fails_before_training(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    gzoo.create("dataset", "folder", root=str(tmp_path), resolution=8)  # all readable
    (tmp_path / "b" / "garbage.png").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UsageError) as info:
        gzoo.create("dataset", "folder", root=str(tmp_path), resolution=8)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"1 of 7 images under {tmp_path} cannot be read")
    assert "b/garbage.png: cannot identify image file" in msg and msg.endswith("remove or fix them")
    png = (tmp_path / "a" / "1.png").read_bytes()
    (tmp_path / "a" / "1.png").write_bytes(png[:20] + b"\0" * 8 + png[28:])  # header chunk CRC broken
    (tmp_path / "a" / "2.png").write_bytes(b"")
    with pytest.raises(UsageError, match=r"^3 of 7 images .*\(a/1.png: .+, a/2.png: cannot identify image file, "
                                         r"and 1 more\); remove or fix them$"):
        gzoo.create("dataset", "folder", root=str(tmp_path), resolution=8)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package():
    ds = gzoo.create("dataset", "fashion-mnist", split="test")
    assert len(ds) == 10000 and ds.image_shape == (1, 28, 28) and ds.num_classes == 10
