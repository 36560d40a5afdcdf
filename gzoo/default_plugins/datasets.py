"""Built-in datasets, registered like any other component (kind ``dataset``).

Every dataset yields ``(x, y)``: ``x`` a float tensor of shape ``image_shape`` in
``[-1, 1]`` (images) or raw coordinates (2-D points), ``y`` an integer label (``-1``
when the dataset has none). ``dataset.get_batch(indices)`` returns a whole batch; the
trainer samples indices itself, so data order is seeded and resumable.

=====================  =====================================================================
``digits``             scikit-learn's bundled 8x8 digits (1,797 images), resized. Always
                       available: the embedded default.
``fashion-mnist``      Debian's ``dataset-fashion-mnist`` files, a ``root``, or torchvision's
                       download where allowed.
``mnist``, ``cifar10`` torchvision, with ``download=true`` where the internet is reachable.
``folder``             torchvision ``ImageFolder`` for your own images.
``ring``, ``grid``     2-D Gaussian mixtures: 8 modes on the unit circle (sigma 0.01);
                       25 modes at {-4,-2,0,2,4}^2 (sigma 0.05).
``stacked-<name>``     three random images of ``<name>`` as RGB channels: 1,000 modes.
=====================  =====================================================================

Data files never run code: CIFAR-10's pickled batches are read with :func:`safe_unpickle`
(numpy arrays only), and nothing is downloaded unless ``download=True`` is passed.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import hookimpl
from ..data import GanDataset, TensorGanDataset
from ..errors import DatasetNotFoundError, UsageError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")


def data_root(root: str | None = None) -> Path:
    """``root``, else ``$GZOO_DATA``, else ``~/.cache/gzoo/data``."""
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("GZOO_DATA", "~/.cache/gzoo/data")).expanduser()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def to_unit_range(x: Tensor, resolution: int | None) -> Tensor:
    """uint8/float images ``(N, C, h, w)`` in [0, 255] -> float in [-1, 1], resized."""
    x = x.float() / 255.0
    if resolution and x.shape[-1] != resolution:
        down = resolution < x.shape[-1]
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=down)
    return (x * 2 - 1).clamp(-1, 1)


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or resolution < 4:
        raise UsageError(f"resolution must be an integer >= 4, got {resolution!r}")


def _check_download(download: Any) -> bool:
    """Only an explicit ``download=True`` downloads."""
    if not isinstance(download, bool):
        raise UsageError(f"download must be true or false, got {download!r}")
    return download


# -- digits ---------------------------------------------------------------------------------


def digits(*, resolution: int = 28, split: str = "train") -> TensorGanDataset:
    """scikit-learn's bundled 8x8 handwritten digits, resized (1 channel, 10 classes).

    Args:
        resolution: image side in pixels (>= 4), resized bilinearly from 8x8
        split: "train" or "test": a fixed random 80/20 split of the 1,797 images
    """
    from sklearn.datasets import load_digits

    _check_split(split)
    _check_resolution(resolution)
    d = load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) * (255.0 / 16.0)  # (1797, 1, 8, 8)
    y = torch.from_numpy(d.target).long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = len(y) // 5
    idx = perm[n_test:] if split == "train" else perm[:n_test]
    return TensorGanDataset(to_unit_range(x[idx], resolution), y[idx], name="digits", num_classes=10)


# -- MNIST-format files ------------------------------------------------------------------------

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX (MNIST-format) file, gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UsageError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != math.prod(shape):
        raise UsageError(f"{path} is truncated: expected {math.prod(shape)} values, found {arr.size}")
    return arr.reshape(shape)


def _find_idx(dirs: list[Path], split: str) -> tuple[Path, Path] | None:
    img, lab = IDX_FILES[split]
    for d in dirs:
        for suffix in ("", ".gz"):
            pi, pl = d / (img + suffix), d / (lab + suffix)
            if pi.is_file() and pl.is_file():
                return pi, pl
    return None


def _mnist_like(
    cls_name: str, name: str, root: str | None, resolution: int, split: str, download: bool, extra_dirs: list[Path]
) -> TensorGanDataset:
    _check_split(split)
    _check_resolution(resolution)
    base = data_root(root)
    if root and not base.is_dir() and not download:
        raise DatasetNotFoundError(f"--data-root {base} does not exist: point it at the folder holding {name}'s IDX files, "
                                   "or allow a download there with --data-opt download=true where the internet is reachable")
    # an explicit root is the only place searched: a wrong root must not silently load other files
    dirs = [base, base / cls_name / "raw", *([] if root else extra_dirs)]
    found = _find_idx(dirs, split)
    if found is None and _check_download(download):
        import torchvision

        try:
            getattr(torchvision.datasets, cls_name)(str(base), train=split == "train", download=True)
        except Exception as exc:
            raise DatasetNotFoundError(f"could not download {name} into {base}: {exc}") from None
        found = _find_idx(dirs, split)
    if found is None:
        hint = " or install Debian's files: `apt-get install -y dataset-fashion-mnist`" if name == "fashion-mnist" else ""
        raise DatasetNotFoundError(
            f"{name} ({split}) not found in {', '.join(str(d) for d in dirs)}. "
            f"Pass --data-root DIR holding the IDX files{hint}, "
            f"or allow a download with --data-opt download=true where the internet is reachable."
        )
    x = torch.from_numpy(read_idx(found[0]).copy()).unsqueeze(1)
    y = torch.from_numpy(read_idx(found[1]).astype(np.int64))
    return TensorGanDataset(to_unit_range(x, resolution), y, name=name, num_classes=10)


def fashion_mnist(*, root: str = "", resolution: int = 28, split: str = "train", download: bool = False) -> TensorGanDataset:
    """Fashion-MNIST (28x28, 10 classes) from Debian's package, a root, or a download.

    Args:
        root: folder holding the IDX files (or ROOT/FashionMNIST/raw); "": $GZOO_DATA, else
            ~/.cache/gzoo/data, then /usr/share/datasets/fashion-mnist
        resolution: image side in pixels (>= 4), resized bilinearly from 28x28
        split: "train" or "test" (the 60,000 train or 10,000 t10k files)
        download: true lets torchvision download the missing files into root (or its default)
    """
    return _mnist_like("FashionMNIST", "fashion-mnist", root, resolution, split, download, [DEBIAN_FASHION_MNIST])


def mnist(*, root: str = "", resolution: int = 28, split: str = "train", download: bool = False) -> TensorGanDataset:
    """MNIST (28x28, 10 classes) through torchvision's files; download=true fetches it.

    Args:
        root: folder holding the IDX files (or ROOT/MNIST/raw); "": $GZOO_DATA, else
            ~/.cache/gzoo/data
        resolution: image side in pixels (>= 4), resized bilinearly from 28x28
        split: "train" or "test" (the 60,000 train or 10,000 t10k files)
        download: true lets torchvision download the missing files into root (or its default)
    """
    return _mnist_like("MNIST", "mnist", root, resolution, split, download, [])


# -- CIFAR-10 ---------------------------------------------------------------------------------


CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR_PIXELS = 3 * 32 * 32


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global that :func:`safe_unpickle` refuses (``.refused``: ``module.name``)."""

    def __init__(self, refused: str):
        super().__init__(f"refused global {refused}")
        self.refused = refused


def _numpy_global(module: str, name: str) -> Any:
    """``numpy._core.<module>.<name>`` (numpy 2), else ``numpy.core.<module>.<name>`` (numpy 1)."""
    import importlib

    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise UnsafePickleError(f"numpy.core.{module}.{name}")  # not in this numpy: refuse, never guess


def _latin1_encode(obj: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin-1 only."""
    codec = encoding.lower().replace("-", "").replace("_", "") if isinstance(encoding, str) else ""
    if not isinstance(obj, str) or codec not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1")


#: every global a pickle may name: what numpy arrays (protocols 2-5, numpy 1 and 2) need.
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
    **{(f"{pkg}.multiarray", name): (lambda name=name: _numpy_global("multiarray", name))
       for pkg in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")},
    **{(f"{pkg}.numeric", "_frombuffer"): (lambda: _numpy_global("numeric", "_frombuffer"))
       for pkg in ("numpy.core", "numpy._core")},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, strings, numbers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        resolve = _PICKLE_GLOBALS.get((module, name))
        if resolve is None:
            raise UnsafePickleError(f"{module}.{name}")
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("a persistent id")


def safe_unpickle(fileobj: BinaryIO, *, encoding: str = "latin1") -> Any:
    """Read one pickle from ``fileobj`` without ever running code from it.

    This is the only way gzoo reads pickles (never ``pickle.load``). Only dicts, lists,
    tuples, strings, bytes, numbers and numpy arrays/scalars/dtypes of any protocol can be
    rebuilt: any other global the pickle names (``builtins.open``, ``os.system``, a class
    with ``__reduce__``...) raises :class:`UnsafePickleError` before it is called.
    ``encoding="latin1"`` reads Python 2 pickles (CIFAR-10's) with their byte strings intact.
    """
    return _RestrictedUnpickler(fileobj, encoding=encoding).load()


def _not_a_batch(path: Path, why: str) -> UsageError:
    return UsageError(f"{path} is not a CIFAR-10 python batch ({why}); "
                      "replace it with the original file from cifar-10-python.tar.gz")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels.

    Read with :func:`safe_unpickle` and checked: a dict with ``data`` (N x 3072 integers in
    [0, 255]) and ``labels`` (or ``fine_labels``) of N integers in [0, 9].
    """
    try:
        with open(path, "rb") as f:
            batch = safe_unpickle(f, encoding="latin1")
    except UnsafePickleError as exc:
        raise UsageError(
            f"refusing to read {path}: the pickle names {exc.refused}, which a CIFAR-10 python batch "
            "never does (pickles can run code; gzoo only rebuilds numpy arrays)"
        ) from None
    except OSError as exc:
        raise DatasetNotFoundError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # truncated, garbage, too deeply nested...
        raise _not_a_batch(path, f"unreadable pickle: {type(exc).__name__}") from None
    if not isinstance(batch, dict):
        raise _not_a_batch(path, f"holds a {type(batch).__name__}, not a dict")
    data = batch.get("data")
    if not isinstance(data, np.ndarray):
        what = "no 'data' array" if data is None else f"'data' is a {type(data).__name__}, not an array"
        raise _not_a_batch(path, what)
    if data.dtype.kind not in "iu":
        raise _not_a_batch(path, f"'data' has dtype {data.dtype}, not integers")
    n = data.shape[0] if data.ndim else 0
    if data.ndim not in (2, 4) or data[:1].size != CIFAR_PIXELS:
        raise _not_a_batch(path, f"'data' has shape {data.shape}, not (N, {CIFAR_PIXELS})")
    if data.size and (int(data.min()) < 0 or int(data.max()) > 255):
        raise _not_a_batch(path, "'data' holds values outside 0-255")
    key = "labels" if "labels" in batch else "fine_labels"
    raw = batch.get(key)
    labels = np.asarray(raw) if isinstance(raw, list | tuple | np.ndarray) else None
    if labels is None or labels.dtype.kind not in "iu" or labels.shape != (n,):
        raise _not_a_batch(path, f"'labels' is not a list of {n} integers")
    if n and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise _not_a_batch(path, "'labels' holds values outside 0-9")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10's python batches of ``split`` (the files torchvision downloads), safely."""
    xs, ys = zip(*(read_cifar_batch(folder / name) for name in CIFAR_FILES[split]), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def cifar10(*, root: str = "", resolution: int = 32, split: str = "train", download: bool = False) -> TensorGanDataset:
    """CIFAR-10 (32x32 RGB, 10 classes) from torchvision's files; download=true fetches them.

    Args:
        root: folder holding cifar-10-batches-py; "": $GZOO_DATA, else ~/.cache/gzoo/data
        resolution: image side in pixels (>= 4), resized bilinearly from 32x32
        split: "train" (data_batch_1-5, 50,000 images) or "test" (test_batch, 10,000)
        download: true downloads and extracts torchvision's archive (MD5-checked) when missing
    """
    _check_split(split)
    _check_resolution(resolution)
    base = data_root(root)
    folder = base / "cifar-10-batches-py"
    if not all((folder / n).is_file() for n in CIFAR_FILES[split]) and _check_download(download):
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import download_and_extract_archive

        try:  # the archive's MD5 is checked; torchvision's loader (plain pickle.load) is never used
            download_and_extract_archive(
                CIFAR10.url, str(base), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
            )
        except Exception as exc:
            raise DatasetNotFoundError(f"could not download cifar10 into {base}: {exc}") from None
    if not all((folder / n).is_file() for n in CIFAR_FILES[split]):
        raise DatasetNotFoundError(
            f"cifar10 ({split}) not found: expected torchvision's {folder}/{{{', '.join(CIFAR_FILES[split])}}}. "
            f"Pass --data-root DIR holding cifar-10-batches-py, or allow a download with --data-opt download=true."
        )
    x, y = read_cifar_batches(folder, split)
    return TensorGanDataset(to_unit_range(torch.from_numpy(x), resolution), torch.from_numpy(y), name="cifar10", num_classes=10)


# -- folder -----------------------------------------------------------------------------------


class FolderDataset(GanDataset):
    """Images under ``root/<class>/*.png|jpg``, read lazily by torchvision's ImageFolder."""

    def __init__(self, root: str, resolution: int, channels: int):
        import torchvision
        from torchvision import transforms as T

        if not root:
            raise UsageError("dataset 'folder' needs a root: --data-root DIR (DIR/<class>/<image>)")
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DatasetNotFoundError(f"image folder {path} does not exist")
        if channels not in (1, 3):
            raise UsageError(f"channels must be 1 or 3, got {channels}")
        tf = [T.Grayscale(1)] if channels == 1 else [T.Lambda(lambda im: im.convert("RGB"))]
        tf += [T.Resize(resolution), T.CenterCrop(resolution), T.ToTensor(), T.Normalize([0.5] * channels, [0.5] * channels)]
        try:
            self.ds = torchvision.datasets.ImageFolder(str(path), transform=T.Compose(tf))
        except (FileNotFoundError, RuntimeError) as exc:
            raise DatasetNotFoundError(f"no images found in {path}: {exc}") from None
        check_images(path, [p for p, _ in self.ds.samples])
        self.name = "folder"
        self.image_shape = (channels, resolution, resolution)
        self.num_classes = len(self.ds.classes)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.ds[i]

    def labels(self) -> Tensor:
        return torch.tensor(self.ds.targets, dtype=torch.long)


def _image_error(path: str, exc: Exception) -> str:
    """Why PIL cannot read ``path``, without repeating the path."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "cannot identify image file"
    lines = str(exc).replace(repr(path), "").replace(path, "").strip().splitlines()
    return (lines[0].strip(" :") if lines else "") or type(exc).__name__


def check_images(root: Path, paths: list[str], *, show: int = 2) -> None:
    """Check every image with PIL's ``verify``; one :class:`UsageError` lists unreadable ones.

    ImageFolder decodes lazily, so without this a corrupt file would stop training at some
    later step. ``verify`` reads headers and chunk checksums without decoding pixels.
    """
    from PIL import Image

    bad: list[tuple[str, str]] = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as exc:  # PIL raises many types for broken files
            bad.append((p, _image_error(p, exc)))
    if bad:
        shown = ", ".join(f"{os.path.relpath(p, root)}: {why}" for p, why in bad[:show])
        more = f", and {len(bad) - show} more" if len(bad) > show else ""
        raise UsageError(f"{len(bad)} of {len(paths)} images under {root} cannot be read "
                         f"({shown}{more}); remove or fix them")


def folder(*, root: str = "", resolution: int = 32, channels: int = 3) -> FolderDataset:
    """Your own images: torchvision ImageFolder at root (root/<class>/<image>).

    Args:
        root: the image folder (required): one subfolder per class, ROOT/<class>/<image>
        resolution: image side in pixels (>= 4): shorter side resized to it, then centre-cropped
        channels: 1 (converted to grayscale) or 3 (converted to RGB)
    """
    _check_resolution(resolution)
    return FolderDataset(root, resolution, channels)


# -- 2-D mixtures -----------------------------------------------------------------------------


def ring_modes() -> Tensor:
    """The 8 means of ``ring``: ``(cos 2*pi*i/8, sin 2*pi*i/8)``."""
    a = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return torch.stack([a.cos(), a.sin()], 1)


def grid_modes() -> Tensor:
    """The 25 means of ``grid``: ``{-4, -2, 0, 2, 4}^2``."""
    v = torch.arange(-4, 5, 2, dtype=torch.float64)
    return torch.cartesian_prod(v, v)


MIXTURES = {"ring": (ring_modes, 0.01), "grid": (grid_modes, 0.05)}


class MixtureDataset(TensorGanDataset):
    """Points of a Gaussian mixture with known ``modes`` ``(K, d)`` and ``sigma``: measured by
    the ``mixture`` metrics (modes recovered, high-quality samples, reverse KL)."""

    measured_by = "mixture"

    def __init__(self, x: Tensor, y: Tensor, *, name: str, modes: Tensor, sigma: float):
        super().__init__(x, y, name=name, num_classes=len(modes))
        self.modes, self.sigma = modes, float(sigma)


def mixture(kind: str, n: int, split: str) -> MixtureDataset:
    _check_split(split)
    if n < 1:
        raise UsageError(f"n must be positive, got {n}")
    modes_fn, sigma = MIXTURES[kind]
    modes = modes_fn()
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    y = torch.randint(len(modes), (n,), generator=g)
    x = modes[y] + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return MixtureDataset(x.float(), y, name=kind, modes=modes, sigma=sigma)


def ring(*, n: int = 50000, split: str = "train") -> TensorGanDataset:
    """2-D mixture of 8 Gaussians on the unit circle, sigma 0.01.

    Args:
        n: number of points (>= 1), each from a uniformly drawn mode
        split: "train" or "test": the same mixture, drawn with seed 0 or 1
    """
    return mixture("ring", n, split)


def grid(*, n: int = 50000, split: str = "train") -> TensorGanDataset:
    """2-D mixture of 25 Gaussians at {-4,-2,0,2,4}^2, sigma 0.05.

    Args:
        n: number of points (>= 1), each from a uniformly drawn mode
        split: "train" or "test": the same mixture, drawn with seed 0 or 1
    """
    return mixture("grid", n, split)


# -- stacked ------------------------------------------------------------------------------------


class StackedDataset(GanDataset):
    """Three images of a grayscale dataset as the R, G, B channels (1,000 modes).

    The label is ``100 * y_r + 10 * y_g + y_b``. The triples are drawn once, with ``seed``.
    Measured by the ``stacked`` metrics, with the classifier of ``base`` on each channel.
    """

    measured_by = "stacked"

    def __init__(self, base: TensorGanDataset, n: int, seed: int):
        if base.image_shape[0] != 1 or base.num_classes != 10:
            raise UsageError(f"stacked-{base.name} needs a 1-channel, 10-class dataset")
        if n < 1:
            raise UsageError(f"n must be positive, got {n}")
        self.base = base
        g = torch.Generator().manual_seed(seed)
        self.triples = torch.randint(len(base), (n, 3), generator=g)
        self.y = (base.y[self.triples] * torch.tensor([100, 10, 1])).sum(1)
        self.name = f"stacked-{base.name}"
        self.image_shape = (3, *base.image_shape[1:])
        self.num_classes = 1000

    def __len__(self) -> int:
        return self.triples.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.base.x[self.triples[i]].flatten(0, 1), int(self.y[i])

    def get_batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.x[self.triples[idx]].flatten(1, 2), self.y[idx]

    def labels(self) -> Tensor:
        return self.y


def _stacked(base_factory: Any, name: str) -> Any:
    def factory(*, root: str = "", resolution: int = 28, split: str = "train", n: int = 0, seed: int = 0, download: bool = False) -> StackedDataset:
        kwargs: dict[str, Any] = {"resolution": resolution, "split": split}
        if base_factory is not digits:
            kwargs.update(root=root, download=download)
        elif root or download:
            raise UsageError("stacked-digits takes no root or download option (the digits ship with scikit-learn)")
        base = base_factory(**kwargs)
        return StackedDataset(base, n or len(base), seed if split == "train" else seed + 1)

    factory.__doc__ = f"""Stacked {name}: three random {name} images as RGB channels (1,000 modes).

    Args:
        root: {"not taken: leave it empty" if base_factory is digits else f"folder of {name}'s files"}
        resolution: image side in pixels (>= 4), as for {name}
        split: "train" or "test": the {name} split the images are drawn from
        n: number of stacked images (0: as many as the {name} split has)
        seed: seed of the random image triples (the test split uses seed + 1)
        download: {"not taken: leave it false" if base_factory is digits else f"true fetches missing {name}"}
    """
    return factory


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("dataset", "digits", digits, paper="scikit-learn's copy of the UCI optdigits test set")
    register("dataset", "fashion-mnist", fashion_mnist, paper="Xiao et al. 2017, arXiv:1708.07747", aliases=("fashion_mnist", "fmnist"))
    register("dataset", "mnist", mnist, paper="LeCun et al. 1998")
    register("dataset", "cifar10", cifar10, paper="Krizhevsky 2009")
    register("dataset", "folder", folder)
    register("dataset", "ring", ring, paper="Srivastava et al. 2017 (VEEGAN); Liu et al. 2020")
    register("dataset", "grid", grid, paper="Srivastava et al. 2017 (VEEGAN); Liu et al. 2020")
    for base_name, base in (("digits", digits), ("fashion-mnist", fashion_mnist), ("mnist", mnist)):
        register("dataset", f"stacked-{base_name}", _stacked(base, base_name), paper="Metz et al. 2017 (Unrolled GANs)")
