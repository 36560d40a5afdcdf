"""Classic regularizers: weight clipping, WGAN-GP, lazy R1 and spectral norm.

* ``clip`` -- after every D step, clamp every D parameter to ``[-clip, clip]``
  (Arjovsky et al. 2017).
* ``gp`` -- ``weight * E[(||grad D(x_hat)|| - center)^2]`` on random interpolates of real
  and fake (Gulrajani et al. 2017).
* ``r1`` -- ``weight / 2 * E[||grad D(x)||^2]`` on real data, lazily every ``every``
  steps and scaled by ``every`` (Mescheder et al. 2018; StyleGAN2).
* ``sn`` -- spectral norm on every D layer, applied once at build time (Miyato 2018).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gzoo.errors import UsageError
from gzoo.interfaces import Discriminator, Regularizer, apply_spectral_norm


def _grad_norm_sq(out: Tensor, inp: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(out.sum(), inp, create_graph=True)
    return grad.flatten(1).pow(2).sum(1)


class WeightClip(Regularizer):
    """WGAN weight clipping of every discriminator parameter.

    Args:
        clip: bound c > 0: after every D step each D parameter is clamped to [-c, c]
    """

    has_penalty = False
    lipschitz = True

    def __init__(self, *, clip: float = 0.01):
        super().__init__()
        if clip <= 0:
            raise UsageError(f"clip must be positive, got {clip}")
        self.clip = clip

    @torch.no_grad()
    def after_d_step(self, D: Discriminator) -> None:
        for p in D.parameters():
            p.clamp_(-self.clip, self.clip)


class GradientPenalty(Regularizer):
    """WGAN-GP: penalise the critic's gradient norm on real/fake interpolates.

    Args:
        weight: lambda, the penalty's multiplier in the D loss (0 turns it off)
        every: compute the penalty every this many D steps, scaled by it (1: every step)
        center: target gradient norm: 1 for WGAN-GP, 0 for a zero-centred penalty
    """

    lipschitz = True

    def __init__(self, *, weight: float = 10.0, every: int = 1, center: float = 1.0):
        super().__init__(weight=weight, every=every)
        self.center = center

    def penalty(self, D, real, fake, y_real, y_fake) -> Tensor:
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        eps = torch.rand(shape, device=real.device)
        x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
        norm = (_grad_norm_sq(D(x, y_real), x) + 1e-12).sqrt()
        return ((norm - self.center) ** 2).mean()


class R1(Regularizer):
    """Lazy R1: gamma/2 * ||grad D(real)||^2 every `every` steps.

    Args:
        weight: gamma, the penalty's multiplier in the D loss (0 turns it off)
        every: compute the penalty every this many D steps, scaled by it (1: not lazy)
    """

    def __init__(self, *, weight: float = 10.0, every: int = 16):
        super().__init__(weight=weight, every=every)

    def penalty(self, D, real, fake, y_real, y_fake) -> Tensor:
        x = real.detach().requires_grad_(True)
        return 0.5 * _grad_norm_sq(D(x, y_real), x).mean()


class SpectralNorm(Regularizer):
    """Spectral normalisation of every discriminator layer (build time)."""

    has_penalty = False
    lipschitz = True

    def __init__(self) -> None:
        super().__init__()

    def wrap_discriminator(self, D: Discriminator) -> Discriminator:
        return apply_spectral_norm(D)
