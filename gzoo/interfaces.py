"""The four interfaces every gzoo component implements, plus blocks and conditioners.

Shapes use ``N`` for the batch. Images are ``(N, C, H, W)`` in ``[-1, 1]``; point
data (the 2-D mixtures) is ``(N, 2)``. ``image_shape`` never includes the batch.

* :class:`Generator` -- ``forward(z, y=None) -> (N, *image_shape)``.
* :class:`Discriminator` -- ``features(x) -> (N, d)`` and ``forward(x, y=None) -> (N,)``
  logits (never a sigmoid: the loss decides).
* :class:`Loss` -- D and G terms from real/fake logits.
* :class:`Regularizer` -- a penalty (optionally lazy), hooks around optimizer steps and
  build-time wrapping.
* :class:`Block` -- a shape-preserving feature-map module ``(N, C, H, W) -> (N, C, H, W)``
  that can be inserted into models that declare resolution :attr:`stages`.
* :class:`Conditioner` -- where class labels come from (dataset labels, self-conditioning).
* :class:`MetricFamily` -- how one kind of data is measured (a dataset names its family in
  ``measured_by``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .errors import ShapeError, UsageError

__all__ = [
    "Generator",
    "Discriminator",
    "Loss",
    "Regularizer",
    "Block",
    "Conditioner",
    "MetricFamily",
    "ConditionalHead",
    "Stage",
]


class Stage(nn.Module):
    """A resolution stage of a convolutional model.

    Models built from stages keep them in ``self.stages`` (an ``nn.ModuleList``) so that
    blocks can be inserted after the stage of a given output resolution
    (``--gen-opt insert=gca@8``), whatever the architecture.
    """

    def __init__(self, body: nn.Module, *, resolution: int, channels: int):
        super().__init__()
        self.body = body
        self.resolution = resolution
        self.channels = channels
        self.after = nn.ModuleList()  # inserted blocks, applied in order

    def forward(self, x: Tensor) -> Tensor:
        x = self.body(x)
        for block in self.after:
            x = block(x)
        return x


class _Staged:
    """Mixin: block insertion for models that keep resolution :class:`Stage` s."""

    stages: nn.ModuleList

    def stage_resolutions(self) -> list[int]:
        return [s.resolution for s in getattr(self, "stages", [])]

    def insert_block(self, block: nn.Module, resolution: int) -> None:
        """Append ``block`` after the stage whose output has ``resolution`` pixels a side."""
        for stage in getattr(self, "stages", []):
            if stage.resolution == resolution:
                stage.after.append(block)
                return
        valid = self.stage_resolutions()
        raise UsageError(
            f"{type(self).__name__} has no stage of resolution {resolution}; "
            f"valid resolutions: {valid or 'none (this model declares no stages)'}"
        )

    def stage_channels(self, resolution: int) -> int:
        for stage in getattr(self, "stages", []):
            if stage.resolution == resolution:
                return stage.channels
        raise UsageError(
            f"{type(self).__name__} has no stage of resolution {resolution}; "
            f"valid resolutions: {self.stage_resolutions()}"
        )


class _Model:
    """What generators and discriminators share: the data's shape, the number of classes
    and the checks on them, written once (:meth:`require_image`, :meth:`check_labels`)."""

    image_shape: tuple[int, ...]
    num_classes: int = 0
    _kind: ClassVar[str] = "model"  # "generator" or "discriminator", for messages

    def _init_context(self, image_shape: tuple[int, ...] | None, num_classes: int) -> None:
        if image_shape is not None:
            self.image_shape = tuple(image_shape)
        self.num_classes = int(num_classes)

    def require_image(
        self, who: str | None = None, *, square: bool = True, sizes: Collection[int] | None = None
    ) -> tuple[int, int]:
        """Check that :attr:`image_shape` is ``(C, H, W)`` (square, with a side in ``sizes``
        when given); return ``(C, H)``. Raises :class:`~gzoo.errors.ShapeError` naming ``who``
        (default: the class name), e.g. ``dcgan generator works on images (C, H, W), ...``."""
        who = who or type(self).__name__
        shape = tuple(getattr(self, "image_shape", ()))
        if not is_image_shape(shape):
            hint = "; use 'mlp' for 2-D data" if len(shape) == 1 else ""
            raise ShapeError(f"{who} works on images (C, H, W), but the data has shape {shape}{hint}")
        c, h, w = shape
        if sizes is not None and (h not in sizes or w not in sizes or (square and h != w)):
            what = "square images" if square else "images with sides"
            raise ShapeError(f"{who} supports {what} of {sorted(sizes)} pixels, got {h}x{w}")
        if square and h != w:
            raise ShapeError(f"{who} needs square images, got {h}x{w}")
        return c, h

    def check_labels(self, y: Tensor | None) -> Tensor | None:
        """``y`` as a long tensor (None stays None). A conditional model (``num_classes > 0``)
        raises :class:`~gzoo.errors.UsageError` when ``y`` is None."""
        if y is None:
            if self.num_classes:
                raise UsageError(f"this {self._kind} is conditional: it needs labels y")
            return None
        return y.long()


class Generator(_Model, _Staged, nn.Module):
    """Maps latent codes (and optional labels) to samples.

    Subclasses call ``super().__init__(image_shape=..., num_classes=..., latent_dim=...)``,
    which stores :attr:`image_shape` (a tuple), :attr:`num_classes` (0 = unconditional) and
    :attr:`latent_dim`, and implement :meth:`forward`. Setting the three attributes
    yourself after a plain ``super().__init__()`` works too.

    Helpers: :meth:`require_image` (shape check), :meth:`check_labels` (label check) and,
    for the usual conditional input, :meth:`init_label_embedding` in ``__init__`` and
    :meth:`condition` in :meth:`forward`.
    """

    _kind = "generator"
    latent_dim: int
    #: the label embedding of :meth:`init_label_embedding` (None when unconditional)
    embed: nn.Embedding | None
    #: generator-specific sampling options accepted by :meth:`sample` (name -> default),
    #: e.g. CIPS' ``resolution`` or ``chunk``. ``gzoo sample --opt k=v`` passes them.
    sample_options: ClassVar[dict[str, Any]] = {}
    #: options gzoo gives this generator when the run's loss is a Wasserstein one (``Loss.wasserstein``)
    #: and the run does not set them itself (``--gen-opt`` wins key by key), e.g. an initialisation
    #: measured to suit the critic; announced as a note and saved in the run's config
    #: (:func:`gzoo.config.complete_for_loss`)
    wasserstein_opt: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...] | None = None,
        num_classes: int = 0,
        latent_dim: int | None = None,
    ):
        super().__init__()
        self._init_context(image_shape, num_classes)
        if latent_dim is not None:
            self.latent_dim = int(latent_dim)

    def init_label_embedding(self, embed_dim: int) -> int:
        """Build ``self.embed``, an ``nn.Embedding(num_classes, embed_dim)`` (None when
        unconditional), and return the width it adds to z (``embed_dim`` or 0)."""
        if not self.num_classes:
            self.embed = None
            return 0
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        return embed_dim

    def condition(self, z: Tensor, y: Tensor | None) -> Tensor:
        """The network input: ``z`` ``(N, latent_dim)`` with the L2-normalised label
        embedding concatenated when conditional: ``(N, latent_dim + embed_dim)``."""
        y = self.check_labels(y)
        if not self.num_classes:
            return z
        embed = getattr(self, "embed", None)
        if embed is None:
            raise RuntimeError(
                f"{type(self).__name__} is conditional: call self.init_label_embedding() in __init__"
            )
        return torch.cat([z, embed_labels(embed, y)], 1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def sample_latent(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latent codes from N(0, I), drawn on the CPU (same numbers on every device)."""
        z = torch.randn(n, self.latent_dim, generator=generator)
        return z.to(_device_of(self))

    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """Draw ``n`` samples. Labels are drawn uniformly when the model is conditional
        and ``y`` is None. Extra keyword options must be in :attr:`sample_options`."""
        unknown = set(options) - set(self.sample_options)
        if unknown:
            valid = ", ".join(sorted(self.sample_options)) or "none"
            raise UsageError(
                f"{type(self).__name__} takes no sampling option(s) {sorted(unknown)}; "
                f"valid options: {valid}"
            )
        z = self.sample_latent(n, generator=generator)
        if self.num_classes and y is None:
            y = torch.randint(self.num_classes, (n,), generator=generator).to(z.device)
        return self(z, y)


class Discriminator(_Model, _Staged, nn.Module):
    """Scores samples. ``forward`` returns raw logits of shape ``(N,)``.

    Subclasses call ``super().__init__(image_shape=..., num_classes=..., cond_head=...)``,
    which stores :attr:`image_shape`, :attr:`num_classes` and :attr:`cond_head`, implement
    :meth:`features` and call :meth:`init_head` with the feature width: the default
    :meth:`forward` is ``head(features(x), y)``.
    """

    _kind = "discriminator"
    #: the conditional head's mode (:attr:`ConditionalHead.MODES`), used by :meth:`init_head`
    cond_head: str = "projection"
    #: which parameters WGAN weight clipping (``--reg clip`` with ``params=auto``) clamps:
    #: ``"all"`` (the WGAN paper) or ``"weights"`` (only tensors of 2+ dimensions, for models
    #: whose gains or layer scales must stay free to let residual branches act)
    clip_params: str = "all"
    #: WGAN weight clipping's bound c when the run does not set one (``--reg clip`` with
    #: ``clip=None``): the WGAN paper's 0.01 unless the model says otherwise
    clip_bound: float = 0.01
    #: regularizers gzoo adds when a run names none and its loss brings none of its own (a
    #: Wasserstein loss gets weight clipping instead): the model's recommended constraint,
    #: e.g. ``("sn",)``; announced as a note and saved in the run's config
    #: (:func:`gzoo.config.complete_for_models`); ``--reg none`` trains without any. One that
    #: needs labels (:attr:`Regularizer.needs_labels`) is added to conditional runs only
    default_reg: tuple[str, ...] = ()
    #: options for the regularizers in :attr:`default_reg` when gzoo adds them, by name, e.g.
    #: ``{"r1": {"weight": 1.0}}``; ``--reg-opt`` given for them on the same run wins key by key
    default_reg_opt: ClassVar[dict[str, dict[str, Any]]] = {}
    feature_dim: int
    head: nn.Module

    def __init__(
        self,
        *,
        image_shape: tuple[int, ...] | None = None,
        num_classes: int = 0,
        cond_head: str = "projection",
    ):
        super().__init__()
        self._init_context(image_shape, num_classes)
        self.cond_head = cond_head

    def init_head(self, feature_dim: int) -> ConditionalHead:
        """Build ``self.head``: a :class:`ConditionalHead` on ``feature_dim`` features for
        :attr:`num_classes` classes in mode :attr:`cond_head`; also sets :attr:`feature_dim`."""
        self.feature_dim = feature_dim
        self.head = ConditionalHead(feature_dim, self.num_classes, self.cond_head)
        return self.head

    def features(self, x: Tensor) -> Tensor:  # pragma: no cover
        """Penultimate features ``(N, d)``, used by self-conditioning and diagnostics. A
        discriminator that reads the label before its head may take it as ``features(x, y=None)``
        and override :meth:`forward` (``coc`` with ``label_stage``); ``features(x)`` must work."""
        raise NotImplementedError

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.features(x), y)


class ConditionalHead(nn.Module):
    """The last layer of a discriminator: features ``(N, d)`` -> logits ``(N,)``.

    ``num_classes == 0``: one linear unit. Otherwise ``mode`` picks
    ``"projection"`` (Miyato & Koyama 2018: ``w.h + <embed(y), h>``) or
    ``"multihead"`` (one output per class, the label selects it -- the mask output of
    self-conditioned GANs).
    """

    MODES = ("projection", "multihead")

    def __init__(self, dim: int, num_classes: int = 0, mode: str = "projection"):
        super().__init__()
        if mode not in self.MODES:
            raise UsageError(f"unknown conditional head {mode!r}; valid: {', '.join(self.MODES)}")
        self.num_classes = num_classes
        self.mode = mode
        out = num_classes if (num_classes and mode == "multihead") else 1
        self.linear = nn.Linear(dim, out)
        if num_classes and mode == "projection":
            self.embed = nn.Embedding(num_classes, dim)
            nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        out = self.linear(h)  # (N, 1) or (N, K)
        if not self.num_classes:
            return out[:, 0]
        if y is None:
            raise UsageError("this discriminator is conditional: it needs labels y")
        if self.mode == "multihead":
            return out.gather(1, y.long().view(-1, 1))[:, 0]
        return out[:, 0] + (self.embed(y.long()) * h).sum(1)


class Loss:
    """An adversarial objective from raw logits ``(N,)``. Both methods return scalars to minimise.

    ``g_loss(fake, real)`` receives the generator batch's logits and, when the loss sets
    :attr:`relativistic`, the logits of the step's real batch under the current D (computed
    for the G update; None otherwise), so relativistic losses (RaGAN, R3GAN) can be written.
    """

    #: True when the loss is a Wasserstein critic objective (D outputs are unbounded): without
    #: a Lipschitz regularizer, gzoo adds weight clipping (:func:`gzoo.config.complete_for_loss`).
    wasserstein: ClassVar[bool] = False
    #: True when :meth:`g_loss` needs the real logits (one more D forward per G update).
    relativistic: ClassVar[bool] = False

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class Regularizer:
    """A penalty and/or hooks that shape training.

    * :meth:`penalty` -- added to the D loss (``target == "d"``) or G loss, multiplied by
      :attr:`weight`; with ``every > 1`` it is lazy: computed every ``every`` steps and
      scaled by ``every`` (StyleGAN2's lazy R1).
    * :meth:`after_d_step` / :meth:`after_g_step` -- after the optimizer step (clipping).
    * :meth:`wrap_discriminator` / :meth:`wrap_generator` -- once, at build time
      (spectral norm).
    """

    target: ClassVar[str] = "d"
    has_penalty: ClassVar[bool] = True
    #: True when the regularizer bounds D's Lipschitz constant (clipping, GP, spectral norm):
    #: what a Wasserstein critic needs. A ``wasserstein`` loss without one gets ``clip``.
    lipschitz: ClassVar[bool] = False
    #: True when the regularizer reads labels and so fits conditional runs only (``mismatch``): a
    #: discriminator's :attr:`Discriminator.default_reg` adds it to conditional runs and skips it
    #: on unconditional ones
    needs_labels: ClassVar[bool] = False

    def __init__(self, *, weight: float = 1.0, every: int = 1):
        if every < 1:
            raise UsageError(f"regularizer interval 'every' must be >= 1, got {every}")
        self.weight = float(weight)
        self.every = int(every)

    def due(self, step: int) -> bool:
        return self.has_penalty and self.weight != 0 and step % self.every == 0

    def penalty(
        self, D: Discriminator, real: Tensor, fake: Tensor, y_real: Tensor | None, y_fake: Tensor | None
    ) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def after_d_step(self, D: Discriminator) -> None:
        pass

    def after_g_step(self, G: Generator) -> None:
        pass

    def wrap_discriminator(self, D: Discriminator) -> Discriminator:
        return D

    def wrap_generator(self, G: Generator) -> Generator:
        return G


class Block(nn.Module):
    """A shape-preserving feature-map module ``(N, C, H, W) -> (N, C, H, W)``.

    Blocks are built with ``create("block", name, channels=C, **options)``.
    """

    channels: int


class Conditioner:
    """Where class labels come from during training (``--cond NAME``).

    The trainer asks a conditioner for :meth:`real_labels` of every real batch and
    :meth:`fake_labels` for every generator batch; it knows nothing else about it.
    A conditioner is registered with the plugin manager for the duration of a run, so it
    can implement any training-lifecycle hook (self-conditioning reclusters there).
    """

    num_classes: int = 0

    def setup(self, trainer: Any) -> None:
        """Called once before training (after the models exist), and before resuming."""

    def real_labels(self, x: Tensor, y: Tensor | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def fake_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Checkpointed state (tensors, numbers, strings, lists, dicts). Put the weights that
        :meth:`fake_labels` draws from under ``"label_weights"`` (a ``(num_classes,)`` tensor
        for ``torch.multinomial``): ``gzoo sample`` then draws labels without reading data."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class MetricFamily:
    """How one kind of data is measured (a registered component of kind ``metric``).

    A dataset names its family in its ``measured_by`` attribute (labelled images default to
    gzoo's ``images``). Subclasses set :attr:`names` and :attr:`lower_is_better` and implement
    :meth:`measure`; :meth:`min_samples` says how many samples make the metrics computable.
    """

    #: the metrics this family reports, in table order
    names: ClassVar[list[str]] = []
    #: the subset of :attr:`names` where lower is better
    lower_is_better: ClassVar[set[str]] = set()
    #: extra metrics that can be asked for by name (e.g. Inception FID); never computed by default
    optional: ClassVar[list[str]] = []

    def min_samples(self, metrics: list[str], data: Any) -> tuple[int, str]:
        """The fewest samples from which ``metrics`` are computable, and why."""
        return 1, ""

    def measure(self, samples: Tensor, data: Any, metrics: list[str], *, seed: int,
                make_dataset: Callable[..., Any] | None, progress: bool, **options: Any) -> dict[str, Any]:
        """``metrics`` (a subset of :attr:`names` and :attr:`optional`) of ``samples`` against
        the real dataset object ``data``, as a dict of numbers. ``make_dataset(split=...,
        resolution=...)`` builds other splits/sizes of the same dataset when available."""
        raise NotImplementedError


def embed_labels(embedding: nn.Embedding, y: Tensor) -> Tensor:
    """L2-normalised label embedding ``(N, dim)`` (the self-conditioned GAN's G input)."""
    return nn.functional.normalize(embedding(y.long()), dim=1)


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def is_image_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral-normalise every Linear/Conv/Embedding weight of ``module`` (in place)."""
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(module.modules()):
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d) and not _has_sn(m):
            spectral_norm(m)
    return module


def _has_sn(m: nn.Module) -> bool:
    return hasattr(m, "parametrizations") and "weight" in m.parametrizations
