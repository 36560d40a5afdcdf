"""The dataset contract: what a ``dataset`` factory must return, and the classes that help.

A plugin registers a dataset like any other component::

    register("dataset", "moons", moons)

where ``moons(*, n=10000, split="train")`` returns an object that satisfies
:class:`DatasetLike`:

``len(ds)``
    The number of examples.
``ds.get_batch(idx) -> (x, y)``
    ``idx`` is a 1-D long tensor of indices (the trainer draws them itself, so data order
    is seeded and resumable). ``x`` is a float tensor of shape ``(B, *image_shape)``:
    images ``(B, C, H, W)`` in ``[-1, 1]``, or raw coordinates ``(B, 2)`` for 2-D point
    data. ``y`` is a long tensor of shape ``(B,)``: class labels, ``-1`` when the dataset
    has none.
``ds.image_shape``
    A tuple of positive ints without the batch, e.g. ``(1, 28, 28)`` or ``(2,)``.
``ds.num_classes``
    An int: the number of classes, ``0`` when unlabelled.
``ds.labels()`` (optional)
    All labels as a ``(len,)`` long tensor, or None; used for class frequencies (label
    conditioning, mode metrics). Without it, gzoo assumes no labels.
``ds.measured_by`` (optional)
    The name of the registered metric family (kind ``metric``) that measures this data;
    labelled images default to ``"images"``, anything else without it to None (``gzoo eval``
    then says that nothing measures it). See :mod:`gzoo.default_plugins.evaluation`.

The factory's own options should include, where they make sense:

``split="train"``
    ``"train"`` or ``"test"``. Evaluation (``gzoo eval``, FID against the test split,
    classifier accuracy) asks for ``split="test"``; a dataset without it is evaluated on
    what it returns.
``resolution``
    For image datasets: the side in pixels of the (square) images. Evaluation metrics
    that need a fixed size pass ``resolution=...``.

Most plugins need no class of their own: build the tensors and return
``TensorGanDataset(x, y, name="moons", num_classes=2)`` (``y=None`` when unlabelled).
Subclass :class:`GanDataset` to read lazily: implement ``__len__`` and ``__getitem__``
(one ``(x, label)`` pair) and set ``image_shape``/``num_classes`` in ``__init__``; its
``get_batch`` stacks items (override it when a batch can be read faster).

gzoo checks what a dataset factory returns when it is built (:func:`check_dataset`, called
by :meth:`gzoo.registry.Registry.create`), before a run directory exists: a missing
attribute, a wrong ``image_shape``, or a ``get_batch`` that returns tensors of another
shape is reported in one line.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import GzooError, UsageError, one_line

__all__ = ["DatasetLike", "GanDataset", "TensorGanDataset", "check_dataset"]


@runtime_checkable
class DatasetLike(Protocol):
    """What a ``dataset`` factory returns (see the module documentation).

    ``labels() -> LongTensor | None`` is optional and therefore not part of the protocol's
    ``isinstance`` check.
    """

    image_shape: tuple[int, ...]
    num_classes: int

    def __len__(self) -> int: ...

    def get_batch(self, idx: Tensor) -> tuple[Tensor, Tensor]: ...


class GanDataset(Dataset):
    """Base class: ``image_shape``, ``num_classes`` (0 = unlabelled), ``get_batch``."""

    name: str = "?"
    image_shape: tuple[int, ...]
    num_classes: int = 0

    def get_batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        items = [self[int(i)] for i in idx]
        return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])

    def labels(self) -> Tensor | None:
        """All labels (``(len,)`` long tensor) or None; used for class frequencies."""
        return None


class TensorGanDataset(GanDataset):
    """A dataset held in memory as tensors."""

    def __init__(self, x: Tensor, y: Tensor | None, *, name: str, num_classes: int = 0,
                 measured_by: str | None = None):
        if measured_by is not None:  # else the default: labelled images -> "images", else nothing
            self.measured_by = measured_by
        self.x = x.contiguous()
        self.y = y.long() if y is not None else None
        self.name = name
        self.image_shape = tuple(x.shape[1:])
        self.num_classes = num_classes if y is not None else 0

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], (int(self.y[i]) if self.y is not None else -1)

    def get_batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        y = self.y[idx] if self.y is not None else torch.full((len(idx),), -1, dtype=torch.long)
        return self.x[idx], y

    def labels(self) -> Tensor | None:
        return self.y


#: what :func:`check_dataset` requires, in the order it reports what is missing.
REQUIRED = ("image_shape", "num_classes", "get_batch", "__len__")

FIX = ("return a gzoo.data.TensorGanDataset(x, y, name=..., num_classes=...) "
       "or implement gzoo.data.DatasetLike")


def check_dataset(obj: Any, name: str, plugin: str) -> None:
    """Check that ``obj``, built by dataset ``name`` of ``plugin``, keeps :class:`DatasetLike`.

    Raises one-line :class:`UsageError` s. Cheap: reads one batch of at most two examples
    (with the global random state left as it was).
    """
    owner = f"dataset {name!r} (plugin {plugin!r})"
    missing = [a for a in REQUIRED if not hasattr(type(obj) if a == "__len__" else obj, a)]
    if missing:
        raise UsageError(f"{owner} returned a {type(obj).__name__}, which lacks "
                         f"{', '.join(missing)}; {FIX}")
    shape = obj.image_shape
    if not (isinstance(shape, tuple) and shape
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise UsageError(f"{owner}: image_shape must be a tuple of positive ints such as "
                         f"(1, 28, 28) or (2,), got {shape!r}")
    k = obj.num_classes
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise UsageError(f"{owner}: num_classes must be an int >= 0 (0 = unlabelled), got {k!r}")
    n = min(2, len(obj))
    if n == 0:
        return  # an empty dataset is reported by whoever needs examples
    idx = torch.arange(n)
    try:
        with torch.random.fork_rng(devices=[]):  # a random augmentation must not shift the seed
            out = obj.get_batch(idx)
    except GzooError:
        raise
    except Exception as exc:
        raise UsageError(f"{owner}: get_batch(torch.arange({n})) failed: "
                         f"{type(exc).__name__}: {one_line(exc)}") from exc
    if not (isinstance(out, tuple | list) and len(out) == 2
            and all(isinstance(t, Tensor) for t in out)):
        raise UsageError(f"{owner}: get_batch must return a pair of tensors (x, y), got "
                         f"{_what(out)}")
    x, y = out
    if tuple(x.shape) != (n, *shape) or not x.is_floating_point():
        raise UsageError(f"{owner}: get_batch returned x of shape {tuple(x.shape)} and dtype "
                         f"{x.dtype} for {n} indices; expected a float tensor of shape "
                         f"{(n, *shape)} (batch, *image_shape)")
    if tuple(y.shape) != (n,) or y.is_floating_point() or y.dtype == torch.bool:
        raise UsageError(f"{owner}: get_batch returned y of shape {tuple(y.shape)} and dtype "
                         f"{y.dtype} for {n} indices; expected a long tensor of shape ({n},) "
                         "(-1 when unlabelled)")


def _what(obj: Any) -> str:
    if isinstance(obj, tuple | list):
        return f"a {type(obj).__name__} of {', '.join(type(o).__name__ for o in obj) or 'nothing'}"
    return f"a {type(obj).__name__}"
