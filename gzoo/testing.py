"""Contract tests for gzoo components: the checks gzoo runs on its built-ins, for your plugin.

::

    from gzoo.testing import check_component, check_training

    def test_my_generator():
        check_component("generator", "resmlp")          # builds, forward, backward, one step...

    def test_my_generator_trains(tmp_path):
        check_training("resmlp", "mlp", tmp_path=tmp_path)  # 2 steps through the real trainer

:func:`check_component` builds a registered component at small shapes and checks what
gzoo relies on (shapes, finiteness, gradients reaching every parameter, one optimizer step,
determinism in eval mode, value ranges), per kind. A broken contract raises
:class:`AssertionError` naming the component, the shape it was built for and what failed.

Context arguments pick what is checked instead of the defaults: ``image_shape=(3, 32, 32)``
and ``num_classes=K`` (generators, discriminators), ``channels=C`` (blocks),
``dataset="NAME"`` (conditioners: the dataset of the tiny runs), ``run={...settings...}``
or a list of them (visualizers: the tiny runs to draw). Every other keyword is an option of
the component.

As a pytest plugin (``pytest_plugins = ["gzoo.testing"]`` in your ``conftest.py``) it
provides two fixtures: ``gzoo_pm``, a fresh plugin manager for one test, and
``gzoo_plugin``, which registers a throwaway plugin object for one test.

This module is never imported by ``import gzoo``; it imports pytest only if it is installed
(the fixtures need it, the checks do not).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from .config import RunConfig
from .errors import DatasetNotFoundError, GzooError, ShapeError, UsageError, one_line
from .interfaces import Block, Conditioner, Discriminator, Generator, Loss, Regularizer
from .plugins import PluginManager, get_plugin_manager, reset_plugin_manager

__all__ = [
    "CHECKED_KINDS",
    "PNG_MAGIC",
    "TINY_DATA",
    "TINY_RUN",
    "check_component",
    "check_training",
    "supported_shapes",
    "tiny_config",
]

#: the data shapes models are tried at, in order, each with a small registered dataset of
#: that shape (``(name, options)``): the first image shape a model supports is checked,
#: and 2-D points when it supports them.
TINY_DATA: dict[tuple[int, ...], tuple[str, dict[str, Any]]] = {
    (2,): ("ring", {"n": 512}),
    (1, 28, 28): ("digits", {}),
    (3, 32, 32): ("stacked-digits", {"resolution": 32, "n": 256}),
    (1, 32, 32): ("digits", {"resolution": 32}),
    (3, 64, 64): ("stacked-digits", {"resolution": 64, "n": 256}),
}

#: the settings of every tiny run the checks train: a few small steps on the CPU, quietly.
TINY_RUN: dict[str, Any] = {
    "steps": 2, "batch_size": 8, "log_every": 1, "sample_every": 0, "ckpt_every": 0,
    "n_samples": 4, "progress": False, "device": "cpu", "seed": 0,
}

#: the feature-map shapes ``(C, H, W)`` blocks are tried at.
BLOCK_SHAPES = ((16, 8, 8), (32, 4, 4), (8, 16, 16))

#: the batch size of the checks.
N = 4

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- helpers ------------------------------------------------------------------------------------


def _registry() -> Any:
    return get_plugin_manager().registry


def _fail(who: str, what: str) -> NoReturn:
    raise AssertionError(f"{who}: {what}")


def _shape(shape: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _names(names: list[str], limit: int = 4) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@contextmanager
def _seeded(seed: int = 0) -> Iterator[None]:
    """Run with a fixed seed, leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_tensor(who: str, what: str, t: Any, shape: tuple[int, ...] | None = None) -> Tensor:
    if not isinstance(t, Tensor):
        _fail(who, f"{what} returned a {type(t).__name__}, not a tensor")
    if shape is not None and tuple(t.shape) != shape:
        _fail(who, f"{what} returned shape {_fmt(t.shape)}, expected {_fmt(shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        _fail(who, f"{what} returned non-finite values (NaN or inf)")
    return t


def _check_grads(who: str, module: nn.Module, what: str) -> None:
    """Every trainable parameter of ``module`` got a finite gradient from ``what``."""
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    if missing:
        _fail(who, f"{what} reaches no gradient to parameter(s) {_names(missing)}: "
                   "remove unused parameters, or freeze them with requires_grad_(False)")
    bad = [n for n, p in params if not bool(torch.isfinite(p.grad).all())]
    if bad:
        _fail(who, f"{what} gives non-finite gradients to {_names(bad)}")


def _changed(a: Tensor, b: Tensor) -> bool:
    return not torch.equal(a, b)


def _build(kind: str, name: str, who: str, **kwargs: Any) -> Any:
    """Build through the registry; a refusal is a failure of the check."""
    try:
        return _registry().create(kind, name, **kwargs)
    except DatasetNotFoundError:
        raise
    except GzooError as exc:
        _fail(who, f"could not be built: {one_line(exc)}")


def _try_shapes(kind: str, name: str, shapes: Sequence[tuple[int, ...]], options: dict[str, Any],
                *, enough: bool = False) -> tuple[dict[tuple[int, ...], Any], dict[tuple[int, ...], str]]:
    """``({shape: model}, {shape: why not})``: a ShapeError/UsageError means "not supported".
    With ``enough``, stop at the first image shape that builds (all :func:`_pick_shapes` needs)."""
    built: dict[tuple[int, ...], Any] = {}
    refused: dict[tuple[int, ...], str] = {}
    for shape in shapes:
        if enough and any(len(s) == 3 for s in built):
            break
        try:
            with _seeded():
                built[shape] = _registry().create(kind, name, image_shape=shape, **options)
        except (ShapeError, UsageError) as exc:
            refused[shape] = one_line(exc, 160)
    return built, refused


def supported_shapes(kind: str, name: str, /, **options: Any) -> list[tuple[int, ...]]:
    """The shapes of :data:`TINY_DATA` that generator or discriminator ``name`` builds for
    with ``options`` (a :class:`~gzoo.errors.ShapeError` or ``UsageError`` means no)."""
    if kind not in ("generator", "discriminator"):
        raise ValueError(f"supported_shapes takes a generator or discriminator, not a {kind}")
    return list(_try_shapes(kind, name, list(TINY_DATA), options)[0])


def _pick_shapes(shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The first image shape, and 2-D points: what the model checks run at."""
    images = [s for s in shapes if len(s) == 3]
    other = [s for s in shapes if len(s) != 3]
    return images[:1] + other[:1]


def _labels(n: int, k: int) -> Tensor | None:
    return torch.arange(n) % k if k else None


# -- generators and discriminators ----------------------------------------------------------------


def _check_models(kind: str, name: str, options: dict[str, Any]) -> None:
    spec = _registry().get(kind, name)
    shape = options.pop("image_shape", None)
    k = options.pop("num_classes", None)
    shapes = [_shape(shape)] if shape is not None else list(TINY_DATA)
    built, refused = _try_shapes(kind, name, shapes, options, enough=True)
    if not built:
        why = "; ".join(f"{_fmt(s)}: {r}" for s, r in refused.items())
        _fail(f"{kind} {name!r}", f"builds for none of the shapes {', '.join(map(_fmt, shapes))} ({why})")
    check = _check_generator if kind == "generator" else _check_discriminator
    picked = _pick_shapes(list(built))
    for s in picked:
        check(f"{kind} {name!r} built for image_shape={_fmt(s)}", built[s], s, 0)
    if k is None:
        k = 3 if spec.conditional else 0
    if k:
        s = picked[0]
        who = f"{kind} {name!r} built for image_shape={_fmt(s)}, num_classes={k}"
        with _seeded():
            model = _build(kind, name, who, image_shape=s, num_classes=k, **options)
        check(who, model, s, k)


def _train_eval_step(who: str, model: nn.Module, forward: Callable[[], Tensor], objective: Callable[[Tensor], Tensor],
                     what: str) -> None:
    """Backward of ``objective(forward())`` reaches every parameter; one Adam step changes the
    output; eval mode is deterministic."""
    model.train()
    model.zero_grad(set_to_none=True)
    out = forward()
    loss = objective(out)
    loss.backward()
    _check_grads(who, model, f"backward of a loss on {what}")
    model.eval()
    with torch.no_grad():
        before = forward()
        again = forward()
    if _changed(before, again):
        _fail(who, f"{what} is not deterministic in eval mode (two calls on the same input differ)")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    opt.step()
    with torch.no_grad():
        after = forward()
    _check_tensor(who, f"{what} after one Adam step", after)
    if not _changed(before, after):
        _fail(who, f"one Adam step on its parameters does not change {what}")
    model.train()


def _check_generator(who: str, G: Any, shape: tuple[int, ...], k: int) -> None:
    if not isinstance(G, Generator):
        _fail(who, f"built a {type(G).__name__}, not a gzoo.interfaces.Generator")
    latent = getattr(G, "latent_dim", None)
    if not isinstance(latent, int) or latent <= 0:
        _fail(who, f"latent_dim must be an int > 0, got {latent!r}")
    if tuple(getattr(G, "image_shape", ())) != shape:
        _fail(who, f"image_shape is {getattr(G, 'image_shape', None)!r}, expected {_fmt(shape)}")
    if int(getattr(G, "num_classes", -1)) != k:
        _fail(who, f"num_classes is {getattr(G, 'num_classes', None)!r}, expected {k}")
    with _seeded():
        z, y = torch.randn(N, latent), _labels(N, k)
        G.train()
        x = _check_tensor(who, f"forward(z{', y' if k else ''}) for {N} latent codes", G(z, y), (N, *shape))
        x = x.detach()
        if len(shape) == 3 and (float(x.min()) < -1 or float(x.max()) > 1):
            _fail(who, f"images must lie in [-1, 1], but forward returned values in "
                       f"[{float(x.min()):.3g}, {float(x.max()):.3g}] (end with tanh)")
        w = torch.randn(N, *shape)
        _train_eval_step(who, G, lambda: G(z, y), lambda out: (out * w).sum() / N, "the samples")
        G.eval()
        with torch.no_grad():
            a = G.sample(2, generator=torch.Generator().manual_seed(1))
            b = G.sample(2, generator=torch.Generator().manual_seed(1))
        _check_tensor(who, "sample(2)", a, (2, *shape))
        if _changed(a, b):
            _fail(who, "sample(2, generator=...) is not reproducible from the generator's seed in eval mode")
        if k:
            with torch.no_grad():
                other = G(z, (y + 1) % k)
                same = G(z, y)
            if not _changed(same, other):
                _fail(who, "labels y do not change the samples (a conditional generator must use them)")
        G.train()


def _check_discriminator(who: str, D: Any, shape: tuple[int, ...], k: int) -> None:
    if not isinstance(D, Discriminator):
        _fail(who, f"built a {type(D).__name__}, not a gzoo.interfaces.Discriminator")
    if int(getattr(D, "num_classes", -1)) != k:
        _fail(who, f"num_classes is {getattr(D, 'num_classes', None)!r}, expected {k}")
    with _seeded():
        x, y = torch.rand(N, *shape) * 2 - 1, _labels(N, k)
        D.train()
        xg = x.clone().requires_grad_(True)
        out = _check_tensor(who, f"forward(x{', y' if k else ''}) for {N} samples", D(xg, y), (N,))
        out.sum().backward()
        if xg.grad is None or not bool(torch.isfinite(xg.grad).all()):
            _fail(who, "the logits' gradient with respect to the input x is "
                       f"{'missing' if xg.grad is None else 'non-finite'} (gradient penalties need it)")
        feats = _check_tensor(who, "features(x)", D.features(x))
        if feats.dim() != 2 or feats.shape[0] != N:
            _fail(who, f"features(x) returned shape {_fmt(feats.shape)} for {N} samples, expected ({N}, d)")
        w = torch.randn(N)
        _train_eval_step(who, D, lambda: D(x, y), lambda out: (out * w).sum() / N, "the logits")
        if k:
            D.eval()
            with torch.no_grad():
                other, same = D(x, (y + 1) % k), D(x, y)
            if not _changed(same, other):
                _fail(who, "labels y do not change the logits (a conditional discriminator must use them)")
            D.train()


# -- losses -------------------------------------------------------------------------------------


def _check_loss(name: str, options: dict[str, Any]) -> None:
    who = f"loss {name!r}"
    loss = _build("loss", name, who, **options)
    if not isinstance(loss, Loss):
        _fail(who, f"built a {type(loss).__name__}, not a gzoo.interfaces.Loss")
    rel = bool(getattr(loss, "relativistic", False))

    def g(fake: Tensor, real: Tensor) -> Tensor:  # what the trainer passes
        return loss.g_loss(fake, real if rel else None)

    with _seeded():
        for scale in (1.0, 30.0):
            r = (torch.randn(8) * scale).requires_grad_(True)
            f = (torch.randn(8) * scale).requires_grad_(True)
            at = f"logits of scale {scale:g}"
            d = _check_tensor(who, f"d_loss(real, fake) on {at}", loss.d_loss(r, f), ())
            d.backward()
            for t, what in ((r, "real"), (f, "fake")):
                if t.grad is None or not bool(torch.isfinite(t.grad).all()):
                    _fail(who, f"d_loss has a {'missing' if t.grad is None else 'non-finite'} gradient "
                               f"with respect to the {what} logits on {at}")
            f.grad = None
            call = f"g_loss(fake{', real' if rel else ''})"
            try:
                gl = g(f, r.detach())
            except Exception as exc:
                hint = "" if rel else "; a g_loss that needs the real logits must set relativistic = True"
                raise AssertionError(f"{who}: {call} raised {type(exc).__name__}: {one_line(exc)}{hint}") from exc
            gl = _check_tensor(who, f"{call} on {at}", gl, ())
            gl.backward()
            if f.grad is None or not bool(torch.isfinite(f.grad).all()):
                _fail(who, f"g_loss has a {'missing' if f.grad is None else 'non-finite'} gradient "
                           f"with respect to the fake logits on {at}")
    with torch.no_grad():
        hi, lo = torch.full((8,), 2.0), torch.full((8,), -2.0)
        if not float(loss.d_loss(hi, lo)) < float(loss.d_loss(lo, hi)):
            _fail(who, "d_loss must be lower when real logits are high and fake logits low "
                       f"(d_loss(2, -2) = {float(loss.d_loss(hi, lo)):.4g}, "
                       f"d_loss(-2, 2) = {float(loss.d_loss(lo, hi)):.4g})")
        if not float(g(hi, lo)) < float(g(lo, hi)):
            _fail(who, "g_loss must be lower when fake logits are high "
                       f"(g_loss(fake=2) = {float(g(hi, lo)):.4g}, g_loss(fake=-2) = {float(g(lo, hi)):.4g})")


# -- regularizers -------------------------------------------------------------------------------


class _TinyD(Discriminator):
    """A 2-D discriminator for the regularizer checks when no ``mlp`` is registered."""

    def __init__(self, *, image_shape: tuple[int, ...] = (2,), num_classes: int = 0):
        super().__init__(image_shape=image_shape, num_classes=num_classes)
        self.body = nn.Sequential(nn.Linear(math.prod(image_shape), 16), nn.LeakyReLU(0.2))
        self.init_head(16)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x.flatten(1))


class _TinyG(Generator):
    """A 2-D generator for the regularizer checks when no ``mlp`` is registered."""

    def __init__(self, *, image_shape: tuple[int, ...] = (2,), num_classes: int = 0):
        super().__init__(image_shape=image_shape, num_classes=num_classes, latent_dim=4)
        self.net = nn.Sequential(nn.Linear(4 + self.init_label_embedding(4), 16), nn.ReLU(),
                                 nn.Linear(16, math.prod(image_shape)))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(self.condition(z, y)).view(-1, *self.image_shape)


def _model(kind: str, shape: tuple[int, ...], k: int) -> Any:
    """A small registered model (``dcgan`` for images, ``mlp``), else the kit's own."""
    reg = _registry()
    names = {s.name for s in reg.list(kind)}
    small = [("dcgan", {"ch": 8})] if len(shape) == 3 else []
    for name, opts in [*small, ("mlp", {"hidden": 32})]:
        if name in names:
            try:
                return reg.create(kind, name, image_shape=shape, num_classes=k, **opts)
            except UsageError:
                continue
    return (_TinyG if kind == "generator" else _TinyD)(image_shape=shape, num_classes=k)


def _check_regularizer(name: str, options: dict[str, Any]) -> None:
    base = f"regularizer {name!r}"
    refused = {}
    for shape, k in (((2,), 0), ((2,), 3), ((1, 28, 28), 0)):
        who = f"{base} with a discriminator for image_shape={_fmt(shape)}" + (f", num_classes={k}" if k else "")
        with _seeded():
            reg = _build("regularizer", name, base, **options)
            if not isinstance(reg, Regularizer):
                _fail(base, f"built a {type(reg).__name__}, not a gzoo.interfaces.Regularizer")
            if reg.target not in ("d", "g"):
                _fail(base, f"target must be 'd' or 'g', got {reg.target!r}")
            try:
                _check_one_regularizer(who, reg, shape, k)
            except UsageError as exc:  # it says it does not fit this data (e.g. images only)
                refused[who] = one_line(exc, 160)
    if len(refused) == 3:
        _fail(base, "fits none of the discriminators it was tried with: " + "; ".join(refused.values()))


def _check_one_regularizer(who: str, reg: Regularizer, shape: tuple[int, ...], k: int) -> None:
    D = reg.wrap_discriminator(_model("discriminator", shape, k))
    G = reg.wrap_generator(_model("generator", shape, k))
    if not isinstance(D, Discriminator):
        _fail(who, f"wrap_discriminator returned a {type(D).__name__}, not a Discriminator")
    if not isinstance(G, Generator):
        _fail(who, f"wrap_generator returned a {type(G).__name__}, not a Generator")
    y_real, y_fake = _labels(N, k), _labels(N, k)
    real = torch.rand(N, *shape) * 2 - 1
    _check_tensor(who, "the wrapped discriminator", D(real, y_real), (N,))
    fake = G(torch.randn(N, G.latent_dim), y_fake)
    _check_tensor(who, "the wrapped generator", fake, (N, *shape))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    total = D(fake.detach(), y_fake).mean() - D(real, y_real).mean()
    if reg.has_penalty:
        if reg.target == "d":
            p = reg.penalty(D, real, fake.detach(), y_real, y_fake)
            model, against = D, "D's parameters"
        else:  # the trainer passes no real batch to a G penalty
            p = reg.penalty(D, None, fake, None, y_fake)
            model, against = G, "G's parameters"
        _check_tensor(who, "penalty(D, real, fake, y_real, y_fake)", p, ())
        if not p.requires_grad:
            _fail(who, f"the penalty is not differentiable with respect to {against} (it carries no gradient)")
        opt_d.zero_grad(), opt_g.zero_grad()
        p.backward(retain_graph=True)
        grads = [q.grad for q in model.parameters() if q.requires_grad]
        if not any(g is not None for g in grads):
            _fail(who, f"the penalty's gradient reaches none of {against}")
        if not all(g is None or bool(torch.isfinite(g).all()) for g in grads):
            _fail(who, f"the penalty gives non-finite gradients to {against}")
        if reg.target == "d":
            total = total + p
    opt_d.zero_grad()
    total.backward()
    opt_d.step()
    reg.after_d_step(D)
    _check_tensor(who, "the discriminator after a step and after_d_step", D(real, y_real), (N,))
    opt_g.zero_grad()
    (-D(G(torch.randn(N, G.latent_dim), y_fake), y_fake).mean()).backward()
    opt_g.step()
    reg.after_g_step(G)
    _check_tensor(who, "the generator after a step and after_g_step",
                  G(torch.randn(N, G.latent_dim), y_fake), (N, *shape))


# -- blocks -------------------------------------------------------------------------------------


def _check_block(name: str, options: dict[str, Any]) -> None:
    channels = options.pop("channels", None)
    shapes = [s for s in BLOCK_SHAPES if channels is None or s[0] == channels]
    if channels is not None and not shapes:
        shapes = [(int(channels), 8, 8)]
    refused, worked = {}, 0
    for c, h, w in shapes:
        who = f"block {name!r} with channels={c} on ({N}, {c}, {h}, {w}) feature maps"
        try:
            with _seeded():
                block = _registry().create("block", name, channels=c, **options)
        except UsageError as exc:
            refused[(c, h, w)] = one_line(exc, 160)
            continue
        if not isinstance(block, Block):
            _fail(who, f"built a {type(block).__name__}, not a gzoo.interfaces.Block")
        with _seeded():
            x = torch.randn(N, c, h, w, requires_grad=True)
            try:
                out = block(x)
            except UsageError as exc:  # e.g. a lattice the block cannot divide
                refused[(c, h, w)] = one_line(exc, 160)
                continue
            _check_tensor(who, "forward", out, (N, c, h, w))
            (out * torch.randn_like(out)).sum().backward()
            _check_grads(who, block, "backward of a loss on its output")
            if x.grad is None or not bool(torch.isfinite(x.grad).all()):
                _fail(who, "the gradient with respect to its input is missing or non-finite")
        worked += 1
    if not worked:
        why = "; ".join(f"{_fmt(s)}: {r}" for s, r in refused.items())
        _fail(f"block {name!r}", f"works on none of the feature-map shapes ({why})")


# -- datasets -------------------------------------------------------------------------------------


def _check_dataset(name: str, options: dict[str, Any]) -> None:
    who = f"dataset {name!r}" + (f" with {options}" if options else "")
    ds = _build("dataset", name, who, **options)  # DatasetNotFoundError propagates: skip on it
    try:
        n = len(ds)
    except Exception as exc:
        _fail(who, f"len() failed: {type(exc).__name__}: {one_line(exc)}")
    if n <= 0:
        _fail(who, "is empty (len() is 0)")
    shape = tuple(getattr(ds, "image_shape", ()))
    k = getattr(ds, "num_classes", None)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        _fail(who, f"num_classes must be an int >= 0, got {k!r}")
    idx = torch.cat([torch.arange(min(n, 6)), torch.tensor([n - 1])])
    batch = ds.get_batch(idx)
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        _fail(who, f"get_batch must return (x, y), got a {type(batch).__name__}")
    x, y = batch
    b = len(idx)
    _check_tensor(who, f"get_batch of {b} indices: x", x, (b, *shape))
    if not x.is_floating_point():
        _fail(who, f"get_batch returned x of dtype {x.dtype}, expected a float tensor")
    _check_tensor(who, f"get_batch of {b} indices: y", y, (b,))
    if y.dtype != torch.long:
        _fail(who, f"get_batch returned y of dtype {y.dtype}, expected torch.long (int64)")
    if len(shape) == 3 and (float(x.min()) < -1 or float(x.max()) > 1):
        _fail(who, f"images must lie in [-1, 1], but get_batch returned values in "
                   f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    if bool(((y < -1) | (y >= k)).any()):
        _fail(who, f"labels must lie in [-1, num_classes={k}) (-1: unlabelled), got values in "
                   f"[{int(y.min())}, {int(y.max())}]")
    labels = ds.labels() if callable(getattr(ds, "labels", None)) else None
    if labels is not None:
        if not isinstance(labels, Tensor) or tuple(labels.shape) != (n,) or labels.dtype != torch.long:
            what = _fmt(labels.shape) + f" {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
            _fail(who, f"labels() must return a ({n},) long tensor or None, got {what}")
        if not torch.equal(labels[idx], y):
            _fail(who, "labels() disagrees with the labels get_batch returns")


# -- conditioners -------------------------------------------------------------------------------


def tiny_config(gen: str = "mlp", disc: str = "mlp", loss: str = "nonsaturating", *, data: str | None = None,
                out: str | Path | None = None, **settings: Any) -> RunConfig:
    """A :class:`RunConfig` for a tiny run (:data:`TINY_RUN`): ``mlp`` models are made narrow;
    ``data`` defaults to the first dataset of :data:`TINY_DATA` whose shape G and D support.
    ``settings`` override anything (``data_opt``, ``reg``, ``cond``, ``gen_opt``...)."""
    gen_opt = settings.pop("gen_opt", {"hidden": 32} if gen == "mlp" else {})
    disc_opt = settings.pop("disc_opt", {"hidden": 32} if disc == "mlp" else {})
    if data is None:
        g_shapes = supported_shapes("generator", gen, **gen_opt)
        d_shapes = supported_shapes("discriminator", disc, **disc_opt)
        both = [s for s in g_shapes if s in d_shapes]
        if not both:
            raise UsageError(f"generator {gen!r} and discriminator {disc!r} share none of the shapes "
                             f"{', '.join(map(_fmt, TINY_DATA))}; pass data=")
        data, data_opt = TINY_DATA[both[0]]
        settings.setdefault("data_opt", data_opt)
    d = {**TINY_RUN, "gen": gen, "disc": disc, "loss": loss, "data": data, "gen_opt": gen_opt, "disc_opt": disc_opt,
         **settings}
    if out is not None:
        d["out"] = str(out)
    return RunConfig.from_dict(d, source="tiny run")


def _tiny_trainer(config: RunConfig) -> Any:
    from .trainer import Trainer

    return Trainer(config)


def _check_conditioner(name: str, options: dict[str, Any]) -> None:
    base = f"conditioner {name!r}"
    dataset = options.pop("dataset", None)
    candidates = [(dataset, {})] if dataset is not None else [TINY_DATA[(2,)], TINY_DATA[(1, 28, 28)]]
    refused = {}
    with tempfile.TemporaryDirectory(prefix="gzoo-check-") as tmp:
        for i, (data, data_opt) in enumerate(candidates):
            who = f"{base} on dataset {data!r}"
            config = tiny_config(data=data, data_opt=data_opt, cond=name, cond_opt=options, out=Path(tmp) / f"r{i}")
            try:
                with _seeded():
                    trainer = _tiny_trainer(config)
            except UsageError as exc:  # it does not fit this data (e.g. it needs labels)
                refused[data] = one_line(exc, 160)
                continue
            _check_trained_conditioner(who, trainer)
            return
    why = "; ".join(f"{d}: {r}" for d, r in refused.items())
    _fail(base, f"fits none of the tiny datasets ({why})")


def _check_trained_conditioner(who: str, trainer: Any) -> None:
    cond = trainer.cond
    if not isinstance(cond, Conditioner):
        _fail(who, f"built a {type(cond).__name__}, not a gzoo.interfaces.Conditioner")
    k = cond.num_classes
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        _fail(who, f"num_classes must be an int >= 1, got {k!r}")

    def in_range(what: str, t: Any, n: int) -> None:
        if not isinstance(t, Tensor) or tuple(t.shape) != (n,) or t.is_floating_point() or t.dtype == torch.bool:
            got = f"shape {_fmt(t.shape)} and dtype {t.dtype}" if isinstance(t, Tensor) else f"a {type(t).__name__}"
            _fail(who, f"{what} returned {got}, expected an integer tensor of shape ({n},)")
        if bool(((t < 0) | (t >= k)).any()):
            _fail(who, f"{what} returned labels in [{int(t.min())}, {int(t.max())}], outside [0, num_classes={k})")

    with torch.no_grad():  # before training too: out-of-range labels would crash the run
        in_range("fake_labels(32, generator)", cond.fake_labels(32, generator=torch.Generator().manual_seed(0)), 32)
    try:
        with _seeded():
            status = trainer.fit()
    except GzooError as exc:
        _fail(who, f"a 2-step run with it failed: {one_line(exc)}")
    if status != "finished":
        _fail(who, f"a 2-step run with it ended {status!r}")
    x, y = trainer.data.get_batch(torch.arange(min(16, len(trainer.data))))

    with torch.no_grad():
        in_range("real_labels(x, y)", cond.real_labels(x, y), len(x))
        a = cond.fake_labels(32, generator=torch.Generator().manual_seed(0))
        in_range("fake_labels(32, generator)", a, 32)
        b = cond.fake_labels(32, generator=torch.Generator().manual_seed(0))
        if not torch.equal(a, b):
            _fail(who, "fake_labels is not reproducible from the generator's seed (resume needs it)")
        state = cond.state_dict()
        if not isinstance(state, dict):
            _fail(who, f"state_dict() returned a {type(state).__name__}, not a dict")
        cond.load_state_dict(state)
        c = cond.fake_labels(32, generator=torch.Generator().manual_seed(0))
        if not torch.equal(a, c):
            _fail(who, "fake_labels changed after load_state_dict(state_dict())")


# -- visualizers ----------------------------------------------------------------------------------


def _default_viz_runs() -> list[dict[str, Any]]:
    """Tiny runs a visualizer is tried on: 2-D points, with each registered conditioner, images."""
    reg = _registry()
    runs: list[dict[str, Any]] = [{}]
    runs += [{"cond": s.name} for s in reg.list("conditioner")]
    has = {s.name for s in reg.list("generator")} & {s.name for s in reg.list("discriminator")}
    if "dcgan" in has:
        runs.append({"gen": "dcgan", "disc": "dcgan", "gen_opt": {"ch": 8}, "disc_opt": {"ch": 8}})
    else:
        runs.append({"data": "digits"})
    return runs


def _check_visualizer(name: str, options: dict[str, Any]) -> None:
    base = f"visualizer {name!r}"
    _registry().get("visualizer", name)
    from .run import load_run

    runs = options.pop("run", None)
    options.pop("out", None)
    given = runs is not None
    if runs is None:
        runs = _default_viz_runs()
    elif isinstance(runs, dict):
        runs = [runs]
    refused, drawn = [], 0
    with tempfile.TemporaryDirectory(prefix="gzoo-check-") as tmp:
        for i, settings in enumerate(runs):
            settings = dict(settings)
            settings.pop("out", None)
            args = {k: settings.pop(k) for k in ("gen", "disc", "loss") if k in settings}
            label = ", ".join(f"{k}={v!r}" for k, v in {**args, **settings}.items()) or "the default tiny run"
            try:
                config = tiny_config(**args, out=Path(tmp) / f"r{i}", **settings)
                label = f"{config.gen}/{config.disc} on {config.data}"
                label += f" with --cond {config.cond}" if config.cond else ""
                with _seeded():
                    trainer = _tiny_trainer(config)
                    trainer.fit()
            except GzooError as exc:
                if given:  # the run you asked for must train
                    raise AssertionError(f"{base}: the tiny run {label} itself failed: {one_line(exc)}") from exc
                refused.append(f"{label}: the run itself failed ({one_line(exc, 160)})")
                continue

            for kind, run in (("a training run", trainer), ("a loaded run", load_run(trainer.run_dir))):
                who = f"{base} on {kind} ({label})"
                out = Path(tmp) / f"viz{i}-{'loaded' if run is not trainer else 'live'}.png"
                try:
                    with _seeded():
                        paths = _registry().create("visualizer", name, run=run, out=out, **options)
                except Exception as exc:
                    # the registry reports a factory's crash as a UsageError "from" the crash
                    crash = exc.__cause__ if isinstance(exc, UsageError) else exc
                    if isinstance(crash, Exception) and not isinstance(crash, GzooError):
                        raise AssertionError(f"{who}: raised {type(crash).__name__}: {one_line(crash)}; a visualizer "
                                             "that does not fit a run must raise gzoo.errors.UsageError") from exc
                    refused.append(f"{label}: {one_line(exc, 160)}")
                    continue
                if not isinstance(paths, list | tuple) or not paths:
                    _fail(who, f"must return a non-empty list of the files it wrote, got {paths!r}")
                for p in paths:
                    p = Path(p)
                    if not p.is_file():
                        _fail(who, f"returned {p}, which does not exist")
                    if p.suffix.lower() == ".png" and p.read_bytes()[:8] != PNG_MAGIC:
                        _fail(who, f"wrote {p}, which is not a PNG file")
                if not out.is_file() or out.read_bytes()[:8] != PNG_MAGIC:
                    _fail(who, f"did not write a PNG to out={out}")
                drawn += 1
    if not drawn:
        _fail(base, "drew nothing for any tiny run (pass run={...settings...} for a run it fits): "
                    + "; ".join(dict.fromkeys(refused)))


# -- metric families ------------------------------------------------------------------------------

#: datasets tried, in order, to find one a metric family measures (cheap ones first).
METRIC_DATA = (("ring", {"n": 3000}), ("digits", {"resolution": 16}), ("stacked-digits", {"resolution": 16}))


def _check_metric(name: str, options: dict[str, Any]) -> None:
    """A family measures the real data itself: every name it reports is a finite number, and
    ``min_samples`` is ``(an int >= 1, a reason)`` (evaluation enforces it)."""
    from .default_plugins.evaluation import evaluate_samples, measured_by

    who = f"metric {name!r}"
    dataset = options.pop("dataset", None)
    candidates = [(dataset, options.pop("data_opt", {}))] if dataset else list(METRIC_DATA)
    data = None
    for ds_name, ds_opts in candidates:
        candidate = _registry().create("dataset", ds_name, **ds_opts)
        if measured_by(candidate) == name:
            data = candidate
            break
    if data is None:
        tried = ", ".join(n for n, _ in candidates)
        _fail(who, f"measures none of the datasets tried ({tried}); pass dataset=NAME of one it measures")
    family = _registry().create("metric", name, **options)
    if not family.names:
        _fail(who, "names is empty: it reports no metric")
    got = family.min_samples(list(family.names), data)
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], int) and got[0] >= 1
            and isinstance(got[1], str)):
        _fail(who, f"min_samples must return (an int >= 1, a reason), got {got!r}")
    need = got[0]
    n = max(need, min(len(data), 2500))  # the mode metrics warn below 2500
    with _seeded():
        real = data.get_batch(torch.randperm(len(data))[:n])[0]
    res = evaluate_samples(real, data, progress=False)
    for m in family.names:
        value = res.get(m)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            _fail(who, f"measure() reported {m}={value!r} for real samples of {data.name!r}, expected a finite number")


# -- the entry points ------------------------------------------------------------------------------

_CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "generator": lambda name, opts: _check_models("generator", name, opts),
    "discriminator": lambda name, opts: _check_models("discriminator", name, opts),
    "loss": _check_loss,
    "regularizer": _check_regularizer,
    "block": _check_block,
    "dataset": _check_dataset,
    "conditioner": _check_conditioner,
    "visualizer": _check_visualizer,
    "metric": _check_metric,
}

#: the kinds :func:`check_component` has a contract check for.
CHECKED_KINDS = tuple(_CHECKS)


def check_component(kind: str, name: str, /, **options: Any) -> None:
    """Build registered component ``name`` of ``kind`` at small shapes and check its contract.

    Raises :class:`AssertionError` naming the component, what it was built for, and what
    failed. ``options`` are the component's options, plus context arguments that choose what
    is checked (see the module documentation). Datasets whose files are absent raise
    :class:`~gzoo.errors.DatasetNotFoundError` (skip on it).

    * generator / discriminator: built for the first image shape of :data:`TINY_DATA` it
      supports and for 2-D points when it supports them (at least one must build),
      unconditional and, when it takes ``num_classes``, conditional. G's output is
      ``(N, *image_shape)``, finite, in [-1, 1] for images; D's logits are ``(N,)`` and its
      ``features(x)`` ``(N, d)``, finite, and its input gradient exists. Backward of a loss
      reaches every parameter with a finite gradient; one Adam step changes the output; eval
      mode is deterministic; labels change the output of a conditional model.
    * loss: ``d_loss(real, fake)`` and ``g_loss(fake, real)`` (real logits only when
      ``relativistic``) are finite scalars with finite gradients, also at logits of scale
      30; D prefers real-high/fake-low, G prefers fake-high.
    * regularizer: with 2-D (unconditional and conditional) and image discriminators: the
      wrapped models work, the penalty (if ``has_penalty``) is a finite scalar whose gradient
      reaches the parameters of its target, and D and G work after a step and the hooks.
    * block: shape-preserving on a few ``(C, H, W)``, gradients finite and reaching every
      parameter.
    * dataset: ``len > 0``, ``get_batch`` shapes and dtypes (float x, long y), images in
      [-1, 1], labels in [-1, num_classes), ``labels()`` consistent with ``get_batch``.
    * conditioner: a tiny run trains with it; ``real_labels``/``fake_labels`` are in
      [0, num_classes); ``fake_labels`` is reproducible and survives a state round trip.
    * visualizer: tiny runs are trained (or the ``run=`` settings you give); on each, live
      and loaded from its checkpoint, it writes a PNG or raises ``UsageError``; at least
      one PNG must be drawn.
    """
    check = _CHECKS.get(kind)
    if check is None:
        raise ValueError(f"gzoo.testing has no contract check for kind {kind!r}; "
                         f"checked kinds: {', '.join(CHECKED_KINDS)}")
    _registry().get(kind, name)  # an unknown name: one clear UnknownNameError
    try:
        check(name, dict(options))
    except (AssertionError, DatasetNotFoundError):
        raise
    except Exception as exc:  # a crash is a broken contract too: say whose
        raise AssertionError(f"{kind} {name!r}: raised {type(exc).__name__}: {one_line(exc)}") from exc


def check_training(gen: str, disc: str, loss: str = "nonsaturating", *, data: str | None = None, steps: int = 2,
                   tmp_path: str | Path | None = None, **settings: Any) -> Any:
    """Train ``gen`` against ``disc`` with ``loss`` for ``steps`` steps through the real trainer
    and check the run: it finishes, every logged loss is finite, ``checkpoints/last.pt`` exists
    and rebuilds (:func:`gzoo.run.load_run`) into the same weights, which draw finite samples.

    ``data`` defaults to the first dataset of :data:`TINY_DATA` whose shape both models
    support; ``settings`` are any other run settings (``reg=["drift"]``, ``cond="labels"``,
    ``gen_opt={...}``, ``data_opt={...}``...). The run goes to ``tmp_path/"run"`` (default: a
    temporary directory, removed afterwards). Returns the trainer.
    """
    if tmp_path is None:
        with tempfile.TemporaryDirectory(prefix="gzoo-check-") as tmp:
            return check_training(gen, disc, loss, data=data, steps=steps, tmp_path=tmp, **settings)
    from .run import load_run

    config = tiny_config(gen, disc, loss, data=data, out=Path(tmp_path) / "run", **{"steps": steps, **settings})
    who = f"training {config.gen}/{config.disc} with loss {config.loss!r} on {config.data!r}" + (
        f" with {', '.join(f'{k}={v!r}' for k, v in settings.items())}" if settings else "")
    try:
        with _seeded(config.seed):
            trainer = _tiny_trainer(config)
            status = trainer.fit()
    except GzooError as exc:
        raise AssertionError(f"{who}: {type(exc).__name__}: {one_line(exc)}") from exc
    if status != "finished" or trainer.step != config.steps:
        _fail(who, f"ended {status!r} at step {trainer.step} of {config.steps}")
    log = trainer.run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    for row in rows:
        bad = {k: v for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            _fail(who, f"non-finite values logged at step {row.get('step')}: {bad}")
    logged = sorted(row["step"] for row in rows if {"loss_d", "loss_g"} <= set(row))
    if logged != list(range(1, config.steps + 1)):
        _fail(who, f"{log.name} holds loss_d and loss_g for steps {logged}, expected 1 to {config.steps}")
    ckpt = trainer.run_dir / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        _fail(who, f"wrote no checkpoint {ckpt}")
    try:
        loaded = load_run(trainer.run_dir)
    except GzooError as exc:
        raise AssertionError(f"{who}: its checkpoint does not load: {one_line(exc)}") from exc
    for key, value in trainer.G.state_dict().items():
        if not torch.equal(value.cpu(), loaded.G.state_dict()[key].cpu()):
            _fail(who, f"the checkpoint's generator weight {key!r} differs from the trained one")
    samples = loaded.generate(N)
    _check_tensor(who, "samples of the loaded run", samples, (N, *trainer.image_shape))
    return trainer


# -- the pytest plugin: pytest_plugins = ["gzoo.testing"] ------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the checks work without pytest; the fixtures need it
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def gzoo_pm() -> Iterator[PluginManager]:
        """A fresh gzoo plugin manager (built from the installed plugins) for one test; forgotten
        afterwards, so what a test registers never leaks into the next."""
        reset_plugin_manager()
        yield get_plugin_manager()
        reset_plugin_manager()

    @pytest.fixture
    def gzoo_plugin(gzoo_pm: PluginManager) -> Iterator[Callable[..., str]]:
        """``gzoo_plugin(plugin_object, name=None) -> name``: register a throwaway plugin (an object
        or module with ``@gzoo.hookimpl`` functions) for one test; unregistered at teardown."""
        names: list[str] = []

        def register(plugin: Any, name: str | None = None) -> str:
            n = gzoo_pm.register(plugin, name=name)
            names.append(n)
            return n

        yield register
        for n in reversed(names):
            gzoo_pm.unregister(n)
