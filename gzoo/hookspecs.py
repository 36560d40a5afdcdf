"""Every hook gzoo calls, in one place, grouped by phase.

A plugin is a module (or object) with functions marked ``@gzoo.hookimpl`` whose names
match these specs. An implementation may take fewer arguments than its spec, so specs
can grow without breaking plugins. Built-in plugins use exactly these hooks.

Registration
    :func:`gzoo_register_components`, :func:`gzoo_register_presets`, :func:`gzoo_plugin_options`

Training lifecycle (called by :class:`gzoo.trainer.Trainer`, in this order)
    :func:`gzoo_train_start`, then per G step: (:func:`gzoo_before_d_step`,
    :func:`gzoo_after_d_step`) x ``n_critic``, :func:`gzoo_after_g_step`; at every sample
    interval :func:`gzoo_on_sample`; :func:`gzoo_checkpoint_save` /
    :func:`gzoo_checkpoint_load` around checkpoints; :func:`gzoo_train_end` last.

Objects registered only for one run (a run's conditioner, periodic evaluation) receive
the same hooks. ``trainer.all_gather(t)`` gathers a tensor across ranks (identity on one
process), so hooks that need global data stay correct under torch.distributed.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("gzoo")

# -- registration ---------------------------------------------------------------------------


@hookspec
def gzoo_register_components(register: Any) -> None:
    """Register components.

    :param register: ``register(kind, name, factory, *, summary="", paper="", aliases=())``.
        ``kind`` is one of ``gzoo.registry.KINDS``. ``factory`` is a class or function whose
        keyword arguments with defaults become the component's options; context arguments
        (``image_shape``, ``num_classes`` for models, ``channels`` for blocks) are supplied
        by gzoo. A name (or alias) that another plugin registered first is skipped with one
        warning naming both plugins; built-in plugins register before third-party ones.
    """


@hookspec
def gzoo_register_presets(register: Any) -> None:
    """Register named run presets (``gzoo run --preset NAME``).

    :param register: ``register(name, settings)``; ``settings`` maps run-config keys
        (``gen``, ``disc``, ``loss``, ``reg``, ``lr``, ``optimizer``, ``gen_opt``...) to
        values. Explicit command-line flags override a preset.
    """


@hookspec
def gzoo_plugin_options() -> dict[str, Any]:
    """The options this plugin takes, as ``{key: default}``.

    Users set them with ``gzoo run --plugin-opt NAME.KEY=VALUE`` (``NAME`` is the plugin's name
    as ``gzoo plugins`` lists it: its entry-point name); gzoo checks them against these defaults
    before the run starts, saves them in ``config.yaml``, and the plugin reads them with
    ``trainer.plugin_options(NAME)``. A plugin without this hook takes no options.
    """


# -- training lifecycle ------------------------------------------------------------------------


@hookspec
def gzoo_train_start(trainer: Any) -> None:
    """Before the first step (also after a resume, once state is restored).

    :param trainer: the :class:`gzoo.trainer.Trainer`; ``trainer.G``, ``trainer.D``,
        ``trainer.data``, ``trainer.config``, ``trainer.step`` and ``trainer.run_dir``.
    """


@hookspec
def gzoo_before_d_step(trainer: Any, step: int) -> None:
    """Before each discriminator update.

    :param trainer: the trainer.
    :param step: the current G step (0-based, the number of G updates done so far).
    """


@hookspec
def gzoo_after_d_step(trainer: Any, step: int, losses: dict[str, float]) -> None:
    """After each discriminator update (optimizer step and regularizer hooks done).

    :param trainer: the trainer.
    :param step: the current G step.
    :param losses: the D losses of this update (``loss_d`` and each penalty).
    """


@hookspec
def gzoo_after_g_step(trainer: Any, step: int, losses: dict[str, float]) -> None:
    """After each generator update, EMA and learning-rate schedule.

    :param trainer: the trainer.
    :param step: the number of G updates done, counting this one.
    :param losses: this step's losses (``loss_d``, ``loss_g`` and penalties).
    """


@hookspec
def gzoo_on_sample(trainer: Any, step: int, path: Any) -> None:
    """After the trainer wrote a sample grid.

    :param trainer: the trainer.
    :param step: the number of G updates done.
    :param path: the PNG written (a :class:`pathlib.Path`); write extra pictures beside it.
    """


@hookspec
def gzoo_checkpoint_save(trainer: Any, state: dict[str, Any]) -> None:
    """Add plugin state to a checkpoint about to be written.

    :param trainer: the trainer.
    :param state: ``state["plugins"]`` is a dict: put your entry under your own key. Use
        tensors, numbers, strings, lists and dicts only (checkpoints load with
        ``weights_only=True``).
    """


@hookspec
def gzoo_checkpoint_load(trainer: Any, state: dict[str, Any]) -> None:
    """Restore plugin state from a checkpoint (``--resume`` and ``gzoo sample``/``eval``).

    :param trainer: the trainer.
    :param state: the checkpoint dict that was saved.
    """


@hookspec
def gzoo_train_end(trainer: Any, status: str) -> None:
    """After training stops.

    :param trainer: the trainer.
    :param status: ``"finished"``, ``"interrupted"``, ``"diverged"`` or ``"failed"`` (an
        exception; the last finished step was saved where possible).
    """
