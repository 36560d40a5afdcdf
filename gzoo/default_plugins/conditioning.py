"""Built-in conditioner ``labels``: class labels from the dataset (``--cond labels``).

Real batches keep their dataset labels; generator labels are drawn in proportion to
the class frequencies of the training set. Other conditioners (self-conditioning) are
plugins implementing :class:`gzoo.interfaces.Conditioner`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import hookimpl
from ..errors import UsageError
from ..interfaces import Conditioner


class LabelConditioner(Conditioner):
    """Condition on the dataset's own class labels."""

    def __init__(self, *, dataset: Any):
        labels = dataset.labels() if hasattr(dataset, "labels") else None
        if not getattr(dataset, "num_classes", 0) or labels is None:
            raise UsageError(
                f"--cond labels needs a labelled dataset, and {getattr(dataset, 'name', '?')!r} has no labels; "
                "use an unsupervised conditioner such as --cond selfcond"
            )
        self.num_classes = int(dataset.num_classes)
        counts = torch.bincount(labels, minlength=self.num_classes).double()
        self.probs = counts / counts.sum()

    def real_labels(self, x: Tensor, y: Tensor | None) -> Tensor:
        assert y is not None
        return y.to(x.device)

    def fake_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.multinomial(self.probs, n, replacement=True, generator=generator)

    def state_dict(self) -> dict[str, Any]:
        # what fake_labels draws from: `gzoo sample` uses it without reading the training data
        return {"label_weights": self.probs}


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("conditioner", "labels", LabelConditioner)
