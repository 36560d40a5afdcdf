"""The training loop: determinism, exact resume, checkpoints, divergence, interrupts."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import gzoo
from gzoo.config import RunConfig
from gzoo.errors import CheckpointError, DivergenceError, UsageError
from gzoo.interfaces import Loss
from gzoo.run import load_checkpoint, load_run
from gzoo.trainer import Trainer, resume, train

RING = dict(gen="mlp", disc="mlp", data="ring", batch_size=32, sample_every=0, progress=False,
            gen_opt={"hidden": 32}, disc_opt={"hidden": 32})


def _assert_same_weights(a, b):
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2
        assert torch.equal(v, v2), k


def test_same_seed_same_weights(tmp_path):
    a = train(RunConfig(**RING, steps=5, out=str(tmp_path / "a")))
    b = train(RunConfig(**RING, steps=5, out=str(tmp_path / "b")))
    c = train(RunConfig(**RING, steps=5, seed=1, out=str(tmp_path / "c")))
    _assert_same_weights(a.G, b.G)
    assert not torch.equal(a.G.net[0].weight, c.G.net[0].weight)


def test_resume_10_plus_10_equals_20(tmp_path):
    a = train(RunConfig(**RING, steps=20, out=str(tmp_path / "a")))
    train(RunConfig(**RING, steps=10, out=str(tmp_path / "b")))
    b = resume(tmp_path / "b", {"steps": 20})
    assert b.step == 20
    _assert_same_weights(a.G, b.G)
    _assert_same_weights(a.D, b.D)


class StopAt:
    """A throwaway plugin that simulates Ctrl-C at a given step."""

    def __init__(self, step):
        self.at = step

    @gzoo.hookimpl
    def gzoo_after_g_step(self, trainer, step):
        if step == self.at:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends


def test_ctrl_c_saves_and_resume_is_exact_with_every_feature(tmp_path, register_plugin, pm):
    """Cosine decay, EMA, n_critic, GP, labels: an interrupted 20-step run resumed equals 20 steps."""
    cfg = dict(RING, steps=20, cosine=True, ema=0.9, n_critic=2, reg=["gp"], cond="labels",
               optimizer="rmsprop", grad_clip=5.0)
    a = train(RunConfig(**cfg, out=str(tmp_path / "a")))
    register_plugin(StopAt(10), "stopper")
    b = Trainer(RunConfig(**cfg, out=str(tmp_path / "b")))
    assert b.fit() == "interrupted"
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 10
    pm.unregister("stopper")
    b = resume(tmp_path / "b")
    for m in ("G", "D", "G_ema"):
        _assert_same_weights(getattr(a, m), getattr(b, m))
    assert a.opt_G.param_groups[0]["lr"] == b.opt_G.param_groups[0]["lr"]


def test_checkpoint_contents_and_atomic_write(tmp_path):
    t = train(RunConfig(**RING, steps=3, ema=0.5, out=str(tmp_path / "r")))
    ck = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["last.pt"]  # no temp files left behind
    state = load_checkpoint(ck / "last.pt")
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "sched_G", "sched_D", "step", "rng", "config", "versions"):
        assert key in state
    assert state["versions"]["classic"] and state["config"]["gen"] == "mlp"
    assert (tmp_path / "r" / "config.yaml").exists()
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 3 and {"loss_d", "loss_g", "img_per_s", "lr"} <= set(lines[-1])
    run = load_run(tmp_path / "r")
    _assert_same_weights(run.G, t.G)
    assert run.generate(10).shape == (10, 2)


def test_untrusted_checkpoint_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": "gzoo-checkpoint", "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="corrupt or unsafe"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    train(RunConfig(**RING, steps=2, out=str(tmp_path / "r")))
    path = tmp_path / "r" / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        resume(tmp_path / "r", {"steps": 4})
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "x.pt")


class NaNAfter(Loss):
    """A loss that turns NaN after a number of calls, to exercise the divergence guard."""

    calls = 0

    def __init__(self, *, after: int = 6):
        self.after = after

    def d_loss(self, real, fake):
        NaNAfter.calls += 1
        out = fake.mean() - real.mean()
        return out * float("nan") if NaNAfter.calls > self.after else out

    def g_loss(self, fake, real=None):
        return -fake.mean()


class NaNPlugin:
    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        register("loss", "nan-after", NaNAfter)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, register_plugin):
    register_plugin(NaNPlugin(), "nan")
    NaNAfter.calls = 0
    t = Trainer(RunConfig(**RING, loss="nan-after", loss_opt={"after": 4}, steps=10, ckpt_every=2, out=str(tmp_path / "r")))
    with pytest.raises(DivergenceError, match=r"diverged at step 4.*last good checkpoint"):
        t.fit()
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state["step"] == 4
    for v in state["G"].values():
        assert torch.isfinite(v).all()


def test_epochs_set_the_number_of_steps():
    t = Trainer(RunConfig(**{**RING, "batch_size": 50}, data_opt={"n": 1000}, epochs=2))
    assert t.total_steps == 40  # 2 * 1000 / 50


def test_resume_refuses_changed_components(tmp_path):
    train(RunConfig(**RING, steps=2, out=str(tmp_path / "r")))
    with pytest.raises(UsageError, match="cannot change loss"):
        resume(tmp_path / "r", {"loss": "wgan"})


def test_existing_run_dir_is_never_overwritten(tmp_path):
    train(RunConfig(**RING, steps=1, out=str(tmp_path / "r")))
    with pytest.raises(UsageError, match="already holds a run"):
        Trainer(RunConfig(**RING, steps=1, out=str(tmp_path / "r")))


def test_conditioning_requires_labels_and_conditional_components(uncond_generator):
    with pytest.raises(UsageError, match="cannot be class-conditioned"):
        Trainer(RunConfig(**{**RING, "gen": uncond_generator, "gen_opt": {}}, cond="labels"))
    with pytest.raises(UsageError, match="no labels"):
        from gzoo.datasets import TensorGanDataset

        gzoo.create("conditioner", "labels", dataset=TensorGanDataset(torch.zeros(4, 2), None, name="x"))


def test_labels_conditioner_draws_class_frequencies():
    ds = gzoo.create("dataset", "digits")
    cond = gzoo.create("conditioner", "labels", dataset=ds)
    y = cond.fake_labels(20000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(y, minlength=10).double() / len(y)
    torch.testing.assert_close(freq, cond.probs, atol=0.01, rtol=0)


def test_tensorboard_events_are_written_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    train(RunConfig(**RING, steps=2, log_every=1, out=str(tmp_path / "r")))
    assert list((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("size,g_stages,d_stages", [(28, [14, 28], [14, 7]), (32, [8, 16, 32], [16, 8, 4]), (64, [8, 16, 32, 64], [32, 16, 8, 4])])
def test_dcgan_sizes_and_stages(size, g_stages, d_stages):
    G = gzoo.create("generator", "dcgan", image_shape=(3, size, size), ch=8)
    D = gzoo.create("discriminator", "dcgan", image_shape=(3, size, size), ch=8)
    assert G.stage_resolutions() == g_stages and D.stage_resolutions() == d_stages
    x = G(torch.randn(2, G.latent_dim))
    assert x.shape == (2, 3, size, size) and D(x).shape == (2,)


def test_sample_grid_is_written_for_images_and_points(tmp_path):
    t = train(RunConfig(**{**RING, "sample_every": 1}, steps=2, out=str(tmp_path / "r")))
    from PIL import Image

    im = Image.open(t.run_dir / "samples" / "step_000002.png")
    assert im.size == (256, 256)  # the scatter plot of 2-D samples
