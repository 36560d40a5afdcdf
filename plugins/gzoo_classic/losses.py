"""The classic adversarial losses, as small pure functions of raw logits.

=================  ======================================  ==================================
name               D minimises                             G minimises
=================  ======================================  ==================================
``minimax``        -log D(x) - log(1 - D(G(z)))             log(1 - D(G(z)))   (Goodfellow 2014)
``nonsaturating``  same as minimax                          -log D(G(z))
``wgan``           E[D(G(z))] - E[D(x)]                     -E[D(G(z))]        (Arjovsky 2017)
``hinge``          E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]  -E[D(G(z))]        (Lim & Ye 2017)
``lsgan``          0.5 E[(D(x) - 1)^2] + 0.5 E[D(G(z))^2]   0.5 E[(D(G(z)) - 1)^2] (Mao 2017)
``ragan``          see below                                see below   (Jolicoeur-Martineau 2019)
=================  ======================================  ==================================

``D(.)`` is ``sigmoid(logit)`` for minimax/nonsaturating, computed stably with softplus.

``ragan`` is the relativistic average standard GAN (RaSGAN). With ``C`` the raw logits,
``r = C(x) - mean C(G(z))`` and ``f = C(G(z)) - mean C(x)`` (means over the batch):
D minimises ``(-E log sigmoid(r) - E log(1 - sigmoid(f))) / 2`` and G the same with the
roles swapped, ``(-E log sigmoid(f) - E log(1 - sigmoid(r))) / 2``; the halves follow the
author's code. G's loss needs the real logits, so the trainer computes them for it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gzoo.interfaces import Loss


def minimax_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_g(fake: Tensor) -> Tensor:
    return -F.softplus(fake).mean()  # log(1 - sigmoid(f)) = -softplus(f)


def nonsaturating_g(fake: Tensor) -> Tensor:
    return F.softplus(-fake).mean()


def wgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def wgan_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()


def lsgan_g(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1) ** 2).mean()


def ragan_d(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * (F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean())


def ragan_g(fake: Tensor, real: Tensor) -> Tensor:
    return ragan_d(fake, real)  # the same objective with real and fake swapped


class Minimax(Loss):
    """The original minimax log loss (saturating generator term)."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return minimax_d(real, fake)

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return minimax_g(fake)


class NonSaturating(Minimax):
    """Minimax D loss; the generator maximises log D(G(z))."""

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return nonsaturating_g(fake)


class WGAN(Loss):
    """Wasserstein critic loss (pair with clip or gp)."""

    wasserstein = True

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return wgan_d(real, fake)

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return wgan_g(fake)


class Hinge(Loss):
    """Hinge loss (SAGAN, BigGAN)."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return hinge_d(real, fake)

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return wgan_g(fake)


class LSGAN(Loss):
    """Least-squares loss with targets a=0, b=c=1."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return lsgan_d(real, fake)

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return lsgan_g(fake)


class RaGAN(Loss):
    """Relativistic average GAN: does a sample look more real than the average fake?"""

    relativistic = True

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return ragan_d(real, fake)

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        if real is None:
            raise ValueError("ragan's generator loss needs the real logits")
        return ragan_g(fake, real)
