"""Classic regularizers: weight clipping, WGAN-GP, lazy R1 and spectral norm.

* ``clip`` -- after every D step, clamp every D parameter (or, ``params=weights``, every
  weight matrix; by default what the discriminator asks for) to ``[-clip, clip]``
  (Arjovsky et al. 2017).
* ``gp`` -- ``weight * E[(||grad D(x_hat)|| - center)^2]`` on random interpolates of real
  and fake (Gulrajani et al. 2017).
* ``r1`` -- ``weight / 2 * E[||grad D(x)||^2]`` on real data, lazily every ``every``
  steps and scaled by ``every`` (Mescheder et al. 2018; StyleGAN2).
* ``sn`` -- spectral norm on every D layer, applied once at build time (Miyato 2018).
* ``mismatch`` -- conditional runs only: real images shown with a wrong label are scored as
  fake, ``weight * E[f(D(x, y'))]`` with ``y' != y`` (GAN-CLS's matching-aware
  discriminator, Reed et al. 2016).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gzoo.config import wgan_clip
from gzoo.errors import UsageError
from gzoo.interfaces import Discriminator, Regularizer, apply_spectral_norm


def _grad_norm_sq(out: Tensor, inp: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(out.sum(), inp, create_graph=True)
    return grad.flatten(1).pow(2).sum(1)


CLIP_PARAMS = ("auto", "all", "weights")


class WeightClip(Regularizer):
    """WGAN weight clipping of the discriminator's parameters.

    With ``params="all"`` (the WGAN paper's code) every parameter is clamped, also
    normalisation gains, biases and layer scales. A residual block whose branch is scaled by a
    layer scale (Context Clusters, ConvNeXt) can then never let its branch exceed ``c`` times
    the residual stream, and a normalisation gain of 1 becomes ``c``: such a critic stays
    close to the linear function its stem computes. ``params="weights"`` clamps only
    parameters with two or more dimensions (the weight matrices and kernels of linear and
    convolutional layers) and leaves vectors (gains, biases, layer scales, scalars) free: every
    linear map stays bounded, the gains that scale them do not, so the constraint is looser.
    ``params="auto"`` (the default) takes what the discriminator asks for
    (:attr:`gzoo.interfaces.Discriminator.clip_params`): ``"all"`` unless the model says
    otherwise (``coc`` asks for ``"weights"``). The bound works the same way: ``clip=None`` (the
    default) takes the discriminator's :attr:`~gzoo.interfaces.Discriminator.clip_bound`, the
    WGAN paper's 0.01 unless the model says otherwise (``coc`` asks for 0.1).

    Args:
        clip: bound c > 0: after every D step each clamped parameter is clamped to [-c, c];
            None: the discriminator's ``clip_bound`` (0.01 for most)
        params: which parameters: "auto" (the discriminator's clip_params, "all" for most),
            "all" (every one, the WGAN paper) or "weights" (those with 2 or more dimensions)
    """

    has_penalty = False
    lipschitz = True

    def __init__(self, *, clip: float | None = None, params: str = "auto"):
        super().__init__()
        if clip is not None and not clip > 0:
            raise UsageError(f"clip must be positive, got {clip}")
        if params not in CLIP_PARAMS:
            raise UsageError(f"clip option params: unknown value {params!r}; valid: {', '.join(CLIP_PARAMS)}")
        self.clip, self.params = clip, params

    @torch.no_grad()
    def after_d_step(self, D: Discriminator) -> None:
        opts = wgan_clip(D, {"clip": self.clip, "params": self.params})  # None / "auto": what D asks for
        for p in D.parameters():
            if opts["params"] == "all" or p.dim() >= 2:
                p.clamp_(-opts["clip"], opts["clip"])


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


MISMATCH_FORMS = ("logistic", "hinge", "wasserstein")


class Mismatch(Regularizer):
    """GAN-CLS's matching-aware discriminator: real images with a wrong label count as fake.

    Reed et al. 2016: real images paired with a wrong label are a third kind of fake, so D must
    check the label against the image, not only the image's realness.

    The penalty is the loss's fake term on ``D(x_real, y')``, ``y'`` drawn uniformly from the
    labels other than each image's own: ``softplus(D)`` for the logistic losses (minimax,
    non-saturating; GAN-CLS's ``log(1 - D(x, wrong))``), ``relu(1 + D)`` for hinge, ``D`` for a
    Wasserstein critic. GAN-CLS weighs the two fake terms half each against the real term; here
    the fake term keeps weight 1 and this one has ``weight`` (default 1). Needs a conditional
    run (``--cond labels`` or ``selfcond``): building it with an unconditional discriminator is
    refused.

    Args:
        weight: the penalty's multiplier in the D loss (0 turns it off)
        every: compute the penalty every this many D steps, scaled by it (1: every step)
        form: the fake term applied to the mismatched logits: "logistic" (softplus, for
            minimax and non-saturating), "hinge" or "wasserstein" (the logit itself)
    """

    needs_labels = True

    def __init__(self, *, weight: float = 1.0, every: int = 1, form: str = "logistic"):
        super().__init__(weight=weight, every=every)
        if form not in MISMATCH_FORMS:
            raise UsageError(f"mismatch option form: unknown value {form!r}; valid: {', '.join(MISMATCH_FORMS)}")
        self.form = form

    def wrap_discriminator(self, D: Discriminator) -> Discriminator:
        if D.num_classes < 2:
            raise UsageError("regularizer 'mismatch' needs a conditional run with at least 2 classes "
                             "(--cond labels or --cond selfcond); this discriminator has "
                             f"{D.num_classes or 'no'} class{'es' if D.num_classes != 1 else ''}")
        return D

    def penalty(self, D, real, fake, y_real, y_fake) -> Tensor:
        k = D.num_classes
        shift = torch.randint(1, k, y_real.shape, device=y_real.device)
        logits = D(real.detach(), (y_real.long() + shift) % k)  # every label replaced by another one
        if self.form == "logistic":
            return F.softplus(logits).mean()
        if self.form == "hinge":
            return F.relu(1 + logits).mean()
        return logits.mean()
