"""Registry-wide tests for the kinds tests/test_components.py does not cover: every dataset,
conditioner, visualizer and preset, whichever plugin registered it (like timm's test_models).

The component contracts themselves (gzoo.testing.check_component) run over every registered
component in tests/test_testing_kit.py; the tests here check what the rest of gzoo relies on:
the ``split``/``resolution`` options evaluation passes to datasets, bit-exact resume with each
conditioner, visualizers run by the trainer (``--viz``), and presets that build.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import gzoo
from gzoo.config import RunConfig, complete_for_loss
from gzoo.errors import DatasetNotFoundError, UsageError
from gzoo.plugins import PluginManager
from gzoo.registry import KINDS
from gzoo.run import build_components
from gzoo.testing import CHECKED_KINDS, PNG_MAGIC, TINY_DATA, supported_shapes
from gzoo.trainer import Trainer, resume, train

from .conftest import make_image_folder

_REG = PluginManager().registry
DATASETS = [s.name for s in _REG.list("dataset")]
CONDITIONERS = [s.name for s in _REG.list("conditioner")]
VISUALIZERS = [s.name for s in _REG.list("visualizer")]
PRESETS = sorted(_REG.presets)

#: width options shrunk so that presets build fast (name -> tiny value), where a model has them
WIDTHS = {"ch": 8, "hidden": 16}


def test_every_kind_has_a_contract_check():
    assert set(KINDS) == set(CHECKED_KINDS)


# -- datasets -------------------------------------------------------------------------------------


def _dataset(name: str, tmp_path: Path, **options):
    if name == "folder":
        options.setdefault("root", str(make_image_folder(tmp_path / "images")))
    try:
        return gzoo.create("dataset", name, **options)
    except DatasetNotFoundError as exc:
        pytest.skip(f"dataset {name!r}: files absent ({exc})")


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_split_and_resolution_options(name, tmp_path):
    """The options evaluation passes (gzoo/data.py): ``split="test"`` gives other examples of
    the same shape and classes; ``resolution=R`` gives R x R images."""
    spec = _REG.get("dataset", name)
    ds = _dataset(name, tmp_path)
    assert len(ds) > 0
    n = min(4, len(ds))
    x, y = ds.get_batch(torch.arange(n))
    assert x.shape == (n, *ds.image_shape) and y.shape == (n,)
    if "split" in spec.options:
        test = _dataset(name, tmp_path, split="test")
        assert (test.image_shape, test.num_classes) == (ds.image_shape, ds.num_classes)
        m = min(n, len(test))
        assert not torch.equal(test.get_batch(torch.arange(m))[0], x[:m]), "the test split repeats the train split"
        with pytest.raises(UsageError, match="split"):
            gzoo.create("dataset", name, split="validation")
    if "resolution" in spec.options:
        small = _dataset(name, tmp_path / "r16", resolution=16)
        assert small.image_shape == (ds.image_shape[0], 16, 16)
        xs = small.get_batch(torch.arange(2))[0]
        assert xs.shape == (2, ds.image_shape[0], 16, 16) and xs.min() >= -1 and xs.max() <= 1


# -- conditioners -----------------------------------------------------------------------------------


def _state_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_state_equal, a, b))
    return a == b


@pytest.mark.parametrize("name", CONDITIONERS)
def test_conditioner_runs_resume_bit_for_bit(name, ring_config, digits_config, tmp_path):
    """2 steps in one go == 1 step, then --resume to 2: the conditioner's state is checkpointed."""
    for make in (ring_config, digits_config):  # the first tiny run the conditioner fits
        try:
            Trainer(make(cond=name, out=str(tmp_path / "probe")))
        except UsageError:
            continue
        break
    else:
        pytest.fail(f"conditioner {name!r} fits neither the ring nor the digits run")
    a = train(make(steps=2, cond=name, out=str(tmp_path / "a")))
    train(make(steps=1, cond=name, out=str(tmp_path / "b")))
    b = resume(tmp_path / "b", {"steps": 2})
    assert b.step == a.step == 2
    for (k, va), vb in zip(a.G.state_dict().items(), b.G.state_dict().values(), strict=True):
        assert torch.equal(va, vb), f"G.{k} differs after resuming a run with --cond {name}"
    assert _state_equal(a.cond.state_dict(), b.cond.state_dict()), f"conditioner {name!r} state differs after resume"
    labels = [t.cond.fake_labels(16, generator=torch.Generator().manual_seed(0)) for t in (a, b)]
    assert torch.equal(*labels)


# -- visualizers ------------------------------------------------------------------------------------


def _candidate_runs(ring_config, digits_config) -> list[tuple[str, RunConfig]]:
    """Tiny runs a visualizer may fit: 2-D points, with each conditioner, then images with
    every registered model (each paired with a DCGAN)."""
    runs = [("ring", {}, ring_config)] + [(f"ring --cond {c}", {"cond": c}, ring_config) for c in CONDITIONERS]
    runs.append(("digits", {}, digits_config))
    small = {"dcgan": {"ch": 8}, "mlp": {"hidden": 16}}
    for g in (s.name for s in _REG.list("generator") if s.name != "dcgan"):
        runs.append((f"digits --gen {g}", {"gen": g, "gen_opt": small.get(g, {})}, digits_config))
    for d in (s.name for s in _REG.list("discriminator") if s.name != "dcgan"):
        runs.append((f"digits --disc {d}", {"disc": d, "disc_opt": small.get(d, {})}, digits_config))
    return runs


@pytest.mark.parametrize("name", VISUALIZERS)
def test_visualizer_draws_through_the_trainer(name, ring_config, digits_config, tmp_path):
    """``--viz NAME`` on the first tiny run it fits writes ``samples/step_N_NAME.png``; on runs it
    does not fit, the run stops with a UsageError (never another error)."""
    refused = []
    for i, (label, overrides, make) in enumerate(_candidate_runs(ring_config, digits_config)):
        try:
            t = train(make(viz=[name], out=str(tmp_path / f"r{i}"), **overrides))
        except UsageError as exc:
            refused.append(f"{label}: {exc}")
            continue
        png = t.run_dir / "samples" / f"step_{t.step:06d}_{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC, f"{name} wrote no PNG for {label}"
        return
    pytest.fail(f"visualizer {name!r} fits none of the tiny runs: " + "; ".join(refused))


# -- presets ----------------------------------------------------------------------------------------


def _shrunk(kind: str, name: str, options: dict) -> dict:
    spec = _REG.get(kind, name)
    return {**options, **{k: v for k, v in WIDTHS.items() if k in spec.options}}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_components_build_at_a_tiny_shape(name):
    """Each preset's settings, with narrow widths and a tiny dataset of a shape its G and D
    support, build through gzoo.run.build_components (which runs a test batch through both)."""
    registry = gzoo.get_registry()
    config = RunConfig().updated(registry.get_preset(name), source=f"preset {name!r}")
    config, _ = complete_for_loss(config, registry)
    registry.get("dataset", config.data)  # the preset's own dataset is registered
    gen_opt = _shrunk("generator", config.gen, config.gen_opt)
    disc_opt = _shrunk("discriminator", config.disc, config.disc_opt)
    d_shapes = supported_shapes("discriminator", config.disc, **disc_opt)
    shapes = [s for s in supported_shapes("generator", config.gen, **gen_opt) if s in d_shapes]
    assert shapes, f"preset {name!r}: {config.gen}/{config.disc} share none of {list(TINY_DATA)}"
    data, data_opt = TINY_DATA[shapes[0]]
    config = dataclasses.replace(config, data=data, data_opt=data_opt, gen_opt=gen_opt, disc_opt=disc_opt)
    ds = registry.create("dataset", data, **data_opt)
    num_classes = 0
    if config.cond:
        num_classes = registry.create("conditioner", config.cond, dataset=ds, **config.cond_opt).num_classes
    comps = build_components(config, ds.image_shape, num_classes, registry)
    y = torch.arange(3) % num_classes if num_classes else None
    with torch.no_grad():
        x = comps.G(comps.G.sample_latent(3), y)
        assert x.shape == (3, *ds.image_shape) and torch.isfinite(x).all()
        assert comps.D(x, y).shape == (3,)
    assert set(comps.regs) == set(config.reg)
