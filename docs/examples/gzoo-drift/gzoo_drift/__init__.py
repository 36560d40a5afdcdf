"""gzoo-drift: the epsilon-drift penalty of Progressive GAN (Karras et al. 2018, §A.1).

Keeps a Wasserstein critic's outputs from drifting far from zero:
``penalty = E[D(x_real)^2]``, added to the D loss with weight ``weight`` (0.001 in
the paper). Use it with ``gzoo run --loss wgan --reg gp --reg drift``.
"""

from __future__ import annotations

import gzoo
from gzoo.interfaces import Regularizer


class Drift(Regularizer):
    """Epsilon-drift penalty E[D(x)^2] on real data (Progressive GAN)."""

    def __init__(self, *, weight: float = 0.001, every: int = 1):
        super().__init__(weight=weight, every=every)

    def penalty(self, D, real, fake, y_real, y_fake):
        return D(real, y_real).pow(2).mean()


@gzoo.hookimpl
def gzoo_register_components(register):
    register("regularizer", "drift", Drift, paper="Karras et al. 2018, arXiv:1710.10196")
