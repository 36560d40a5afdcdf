"""The self-conditioning algorithm, as a :class:`gzoo.interfaces.Conditioner`.

1. **Features.** The discriminator's ``features(x)`` of a fixed random subset of the real
   data (``subset`` samples, drawn once with ``seed``), computed by a frozen copy of D taken
   at clustering time.
2. **First clustering** at step 0, on the untrained D: scikit-learn ``KMeans`` with
   k-means++ initialisation (``init="random"``: k random subset points).
3. **Reclustering** every ``recluster_every`` G steps (0: never): k-means initialised from the means of
   the *new* features under the *old* assignment (an empty old cluster starts from a random
   subset point), then the new clusters are matched to the old ones with the Hungarian
   algorithm (``scipy.optimize.linear_sum_assignment``) on the overlap matrix of old and new
   labels, and relabelled, so cluster ``c`` keeps meaning roughly the same thing.
4. **Labels.** A real sample's label is its nearest center in the frozen D's feature space;
   generator labels are drawn in proportion to the cluster sizes (empty clusters: never).
5. **State** (centers, sizes, the last matching permutation, the subset's indices and labels,
   the frozen D's weights, the number of clusterings) is saved in checkpoints -- tensors,
   ints and a state dict only, so ``torch.load(weights_only=True)`` reads it -- and restored
   on resume exactly.

The trainer knows none of this: the conditioner is registered with the plugin manager for
the run and reclusters from its ``gzoo_train_start`` / ``gzoo_after_g_step`` hooks.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from gzoo import hookimpl
from gzoo.errors import UsageError
from gzoo.interfaces import Conditioner


def overlap_matrix(old: np.ndarray, new: np.ndarray, k: int) -> np.ndarray:
    """``O[i, j]`` = number of samples with old label ``i`` and new label ``j``."""
    o = np.zeros((k, k), dtype=np.int64)
    np.add.at(o, (old, new), 1)
    return o


def match_clusters(old: np.ndarray, new: np.ndarray, k: int) -> np.ndarray:
    """The permutation ``rho`` (``rho[new_label] = old_label``) maximising the overlap.

    Hungarian min-cost matching on ``-O``: maximises ``sum_j O[rho[j], j]``, i.e. the
    number of subset samples whose label does not change (Liu et al., Eq. 7).
    """
    rows, cols = linear_sum_assignment(-overlap_matrix(old, new, k))
    rho = np.empty(k, dtype=np.int64)
    rho[cols] = rows
    return rho


class SelfConditioner(Conditioner):
    """Unsupervised class labels: k-means clusters of discriminator features (self-conditioned GAN).

    Args:
        k: number of clusters (>= 2), the number of classes G and D are conditioned on
        recluster_every: recluster every this many G steps (0: cluster only once, at the start)
        subset: number of real samples clustered: a fixed random subset, capped at the dataset (>= k)
        init: first k-means' initialisation: "k-means++" or "random" (k random subset points)
        seed: seed of the subset draw and of k-means
        batch: batch size for computing the subset's D features
        max_iter: maximum number of k-means iterations per clustering
    """

    INITS = ("k-means++", "random")

    def __init__(self, *, dataset: Any, k: int = 100, recluster_every: int = 1000, subset: int = 10000,
                 init: str = "k-means++", seed: int = 0, batch: int = 500, max_iter: int = 100):
        if k < 2:
            raise UsageError(f"selfcond needs k >= 2 clusters, got {k}")
        if recluster_every < 0:
            raise UsageError(f"selfcond's recluster_every must be >= 0 (0: never), got {recluster_every}")
        if subset < 1 or batch < 1 or max_iter < 1:
            raise UsageError("selfcond's subset, batch and max_iter must be positive")
        if init not in self.INITS:
            raise UsageError(f"selfcond's init must be one of {', '.join(self.INITS)}, got {init!r}")
        n = len(dataset)
        if min(n, subset) < k:
            raise UsageError(f"selfcond: k={k} clusters but only {min(n, subset)} samples to cluster "
                             f"(dataset {n}, subset={subset})")
        self.dataset = dataset
        self.num_classes = k
        self.k, self.recluster_every, self.init = k, recluster_every, init
        self.seed, self.batch, self.max_iter = seed, batch, max_iter
        g = torch.Generator().manual_seed(seed)
        self.subset = torch.randperm(n, generator=g)[: min(subset, n)]
        self.centers: Tensor | None = None  # (k, d)
        self.labels: Tensor | None = None  # (subset,) labels of the subset
        self.sizes: Tensor | None = None  # (k,)
        self.perm = torch.arange(k)  # (k,) last matching: new k-means cluster j became label perm[j]
        self.clusterings = 0
        self.D_frozen: Any = None
        self.device = torch.device("cpu")

    # -- the Conditioner interface ---------------------------------------------------------
    def setup(self, trainer: Any) -> None:
        self.D_frozen = _freeze(trainer.D)
        self.device = torch.device(trainer.device)

    def real_labels(self, x: Tensor, y: Tensor | None) -> Tensor:
        if self.centers is None:
            raise RuntimeError("selfcond has not clustered yet (it does so at gzoo_train_start)")
        with torch.no_grad():
            f = self.D_frozen.features(x).float()
            return torch.cdist(f, self.centers.to(f.device)).argmin(1)

    def fake_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        sizes = self.sizes if self.sizes is not None else torch.ones(self.k)
        return torch.multinomial(sizes.double(), n, replacement=True, generator=generator)

    def state_dict(self) -> dict[str, Any]:
        if self.centers is None:
            return {}
        return {"centers": self.centers.cpu(), "labels": self.labels, "sizes": self.sizes, "perm": self.perm,
                "label_weights": self.sizes.double(),  # what fake_labels draws from (used by gzoo sample)
                "subset": self.subset, "clusterings": self.clusterings,
                "D": {k: v.cpu() for k, v in self.D_frozen.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if len(state["sizes"]) != self.k:
            raise UsageError(f"selfcond: the checkpoint has {len(state['sizes'])} clusters, the run asks for k={self.k}")
        self.centers, self.labels, self.sizes = state["centers"].clone(), state["labels"].clone(), state["sizes"].clone()
        self.subset, self.clusterings = state["subset"].clone(), int(state["clusterings"])
        self.perm = state["perm"].clone() if "perm" in state else torch.arange(self.k)
        if self.D_frozen is None:
            raise RuntimeError("call setup() before load_state_dict(): the frozen D copy needs the run's D")
        self.D_frozen.load_state_dict(state["D"])

    # -- lifecycle hooks (the conditioner is registered for the run) --------------------------
    @hookimpl
    def gzoo_train_start(self, trainer: Any) -> None:
        if self.centers is None:  # not restored from a checkpoint
            self.recluster(trainer.D)

    @hookimpl
    def gzoo_after_g_step(self, trainer: Any, step: int) -> None:
        if self.recluster_every and step % self.recluster_every == 0:
            self.recluster(trainer.D)
            trainer.log_metrics({"selfcond_clusters_nonempty": float((self.sizes > 0).sum()),
                                 "selfcond_clusterings": float(self.clusterings)}, step)

    # -- clustering ----------------------------------------------------------------------------
    @torch.no_grad()
    def subset_features(self, D: Any) -> Tensor:
        dev = next(D.parameters()).device
        feats = []
        for i in range(0, len(self.subset), self.batch):
            x, _ = self.dataset.get_batch(self.subset[i : i + self.batch])
            feats.append(D.features(x.to(dev)).float().cpu())
        return torch.cat(feats)

    def recluster(self, D: Any) -> None:
        """Cluster the subset's features under a frozen copy of ``D`` (first or again).

        Under torch.distributed every rank holds the same D weights and the same subset, and
        k-means is seeded, so every rank computes the same partition without communication.
        """
        frozen = _freeze(D)
        feats = self.subset_features(frozen)
        self.fit(feats)
        self.D_frozen = frozen

    def fit(self, feats: Tensor) -> None:
        """k-means on ``feats`` (k-means++ the first time, else warm-started and matched)."""
        from sklearn.cluster import KMeans

        X = feats.double().numpy()
        if self.labels is None:
            km = KMeans(self.k, init=self.init, n_init=1, max_iter=self.max_iter, random_state=self.seed).fit(X)
            labels = km.labels_.astype(np.int64)
            centers = km.cluster_centers_
            rho = np.arange(self.k)
        else:
            old = self.labels.numpy()
            init = np.empty((self.k, X.shape[1]))
            rng = np.random.default_rng(self.seed + self.clusterings)
            for c in range(self.k):
                members = old == c
                init[c] = X[members].mean(0) if members.any() else X[rng.integers(len(X))]
            km = KMeans(self.k, init=init, n_init=1, max_iter=self.max_iter, random_state=self.seed).fit(X)
            new = km.labels_.astype(np.int64)
            rho = match_clusters(old, new, self.k)  # new label j becomes old label rho[j]
            labels = rho[new]
            centers = np.empty_like(km.cluster_centers_)
            centers[rho] = km.cluster_centers_
        self.labels = torch.from_numpy(labels)
        self.perm = torch.from_numpy(np.asarray(rho, dtype=np.int64))
        self.centers = torch.from_numpy(centers).float()
        self.sizes = torch.bincount(self.labels, minlength=self.k).float()
        self.clusterings += 1


def _freeze(D: Any) -> Any:
    frozen = copy.deepcopy(D).eval()
    frozen.requires_grad_(False)
    return frozen
