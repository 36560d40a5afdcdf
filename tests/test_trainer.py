"""The training loop: determinism, exact resume, checkpoints, divergence, interrupts."""

from __future__ import annotations

import json
import math
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


class SnapshotAt:
    """A throwaway plugin that copies G, D and G_ema at one step and draws samples there, as
    benchmarks/harness.py's ``EvalAt`` measures a shorter budget inside a longer run."""

    def __init__(self, step):
        self.at, self.weights = step, None

    @gzoo.hookimpl
    def gzoo_after_g_step(self, trainer, step):
        if step == self.at:
            self.weights = {m: {k: v.clone() for k, v in getattr(trainer, m).state_dict().items()}
                            for m in ("G", "D", "G_ema")}
            trainer.generate(50, seed=3)


def test_a_longer_run_passes_through_the_shorter_runs_weights(tmp_path, register_plugin):
    """Nothing but ``cosine`` depends on a run's length, and sampling from a hook does not
    disturb training: step 10 of a 20-step run equals a 10-step run (EMA, labels, n_critic),
    and the 20 steps equal 20 steps without the hook."""
    cfg = dict(RING, ema=0.9, n_critic=2, cond="labels")
    short = train(RunConfig(**cfg, steps=10, out=str(tmp_path / "short")))
    plain = train(RunConfig(**cfg, steps=20, out=str(tmp_path / "plain")))
    snap = SnapshotAt(10)
    register_plugin(snap, "snapshot")
    long = train(RunConfig(**cfg, steps=20, out=str(tmp_path / "long")))
    for m in ("G", "D", "G_ema"):
        for k, v in getattr(short, m).state_dict().items():
            assert torch.equal(snap.weights[m][k], v), f"{m}.{k}"
        _assert_same_weights(getattr(plain, m), getattr(long, m))


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


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, register_component):
    register_component("loss", "nan-after", NaNAfter)
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


class Recorder(Loss):
    """Records what the trainer passes to ``g_loss`` (relativistic or not, by option)."""

    calls: list = []

    def __init__(self, *, relativistic: bool = False):
        self.relativistic = relativistic

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    def g_loss(self, fake, real=None):
        Recorder.calls.append((fake.detach().clone(), None if real is None else real.detach().clone()))
        return -fake.mean()


class CountingG(gzoo.interfaces.Generator):
    """A 2-D generator that counts its forward passes."""

    forwards = 0

    def __init__(self, *, image_shape, num_classes: int = 0):
        super().__init__()
        self.latent_dim, self.image_shape, self.num_classes = 4, tuple(image_shape), num_classes
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, z, y=None):
        CountingG.forwards += 1
        return self.lin(z)


class GPenalty(gzoo.interfaces.Regularizer):
    """A G-side penalty that records the fake batch it is given."""

    target = "g"
    seen: list = []

    def penalty(self, D, real, fake, y_real, y_fake):
        GPenalty.seen.append(fake)
        return fake.pow(2).mean()


class ContractPlugin:
    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        register("loss", "recorder", Recorder)
        register("generator", "counting", CountingG)
        register("regularizer", "g-pen", GPenalty)


@pytest.mark.parametrize("relativistic", [False, True])
def test_g_loss_gets_the_real_logits_when_the_loss_asks(tmp_path, register_plugin, relativistic):
    register_plugin(ContractPlugin(), "contract")
    Recorder.calls = []
    t = train(RunConfig(**RING, loss="recorder", loss_opt={"relativistic": relativistic}, steps=2,
                        out=str(tmp_path / "r")))
    assert len(Recorder.calls) == 2
    fake, real = Recorder.calls[-1]
    if not relativistic:
        assert real is None
        return
    # the real logits of the step's (last) D batch under the D that the G update sees
    assert real.shape == fake.shape == (RING["batch_size"],)
    t.sampler.load_state_dict(t._snapshot["sampler"])  # the batches of the last step
    x, _ = t.next_batch()
    with torch.no_grad():  # no D update came after that G update: the D is the same
        torch.testing.assert_close(t.D(x), real)


def test_ragan_trains_end_to_end(tmp_path):
    t = train(RunConfig(**RING, loss="ragan", steps=3, out=str(tmp_path / "r")))
    assert t.step == 3
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all(map(math.isfinite, (rows[-1]["loss_d"], rows[-1]["loss_g"])))


def test_one_g_forward_per_update_and_g_penalties_reuse_the_fake_batch(tmp_path, register_plugin):
    register_plugin(ContractPlugin(), "contract")
    CountingG.forwards, GPenalty.seen = 0, []
    t = Trainer(RunConfig(**{**RING, "gen_opt": {}, "gen": "counting"}, reg=["g-pen"], n_critic=2, steps=3,
                          out=str(tmp_path / "r")))
    CountingG.forwards = 0  # building ran shape checks
    for _ in range(3):
        t.train_step()
    assert CountingG.forwards == 3 * (2 + 1)  # n_critic fakes + one for the G update, no second G pass
    assert len(GPenalty.seen) == 3 and all(f.requires_grad for f in GPenalty.seen)


def test_hooks_read_losses_as_floats(tmp_path, register_plugin):
    seen = []

    class Reader:
        @gzoo.hookimpl
        def gzoo_after_g_step(self, losses):
            seen.append(dict(losses))

    register_plugin(Reader(), "reader")
    train(RunConfig(**RING, steps=2, out=str(tmp_path / "r")))
    assert len(seen) == 2 and set(seen[0]) == {"loss_d", "loss_g"}
    assert all(isinstance(v, float) for v in seen[0].values())


def test_generate_returns_the_labels_it_used(tmp_path):
    t = train(RunConfig(**RING, cond="labels", steps=1, out=str(tmp_path / "r")))
    x, y = t.generate(300, seed=5, return_labels=True)
    assert x.shape == (300, 2) and y.shape == (300,) and y.dtype == torch.long
    torch.testing.assert_close(t.generate(300, seed=5), x)  # the same samples without labels
    assert 0 <= int(y.min()) and int(y.max()) < t.num_classes and len(y.unique()) > 1
    x2, y2 = t.generate(10, seed=5, y=torch.full((10,), 3), return_labels=True)
    assert (y2 == 3).all()
    u = train(RunConfig(**RING, steps=1, out=str(tmp_path / "u")))
    assert u.generate(4, return_labels=True)[1] is None


class EveryN:
    """A hook plugin with options: it declares them (``gzoo_plugin_options``) and reads them."""

    seen: list = []

    @gzoo.hookimpl
    def gzoo_plugin_options(self):
        return {"n": 3, "label": "tick"}

    @gzoo.hookimpl
    def gzoo_train_start(self, trainer):
        EveryN.seen.append(trainer.plugin_options("every-n"))


class Silent:
    """A hook plugin that takes no options."""

    @gzoo.hookimpl
    def gzoo_train_start(self, trainer):
        pass


RING_ARGS = ["--gen", "mlp", "--disc", "mlp", "--data", "ring", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8",
             "--steps", "1", "--batch-size", "8", "--sample-every", "0", "--quiet"]


def test_plugin_options_reach_the_plugin_and_are_saved(cli, tmp_path, register_plugin):
    import yaml

    register_plugin(EveryN(), "every-n")
    register_plugin(Silent(), "silent")
    EveryN.seen = []
    r = cli("run", *RING_ARGS, "--plugin-opt", "every-n.n=2", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    assert EveryN.seen == [{"n": 2, "label": "tick"}]
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["plugin_opt"] == {"every-n": {"n": 2}}
    # every mistake is refused before anything is written
    for opt, message in (("every-n.m=2", "has no option 'm'; valid: n=3, label='tick'"),
                         ("every-n.n=many", "must be int"),
                         ("nope.n=2", "'nope' that are not loaded"),
                         ("silent.x=1", "plugin 'silent' takes no options"),
                         ("every-n=2", "expects PLUGIN.KEY=VALUE")):
        out = tmp_path / opt.replace("=", "_")
        r = cli("run", *RING_ARGS, "--plugin-opt", opt, "--out", out)
        assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.output, r.output
        assert not out.exists()


class FailsAtStart:
    @gzoo.hookimpl
    def gzoo_train_start(self, trainer):
        raise UsageError("this plugin refuses to start")


def test_a_run_that_fails_before_its_first_step_leaves_nothing_behind(cli, tmp_path, register_plugin, pm):
    register_plugin(FailsAtStart(), "fails")
    out = tmp_path / "r"
    r = cli("run", *RING_ARGS, "--out", out)
    assert r.exit_code == 2 and "refuses to start" in r.stderr and "nothing was trained" in r.stderr
    assert not out.exists()
    pm.unregister("fails")
    assert cli("run", *RING_ARGS, "--out", out).exit_code == 0  # the same --out works right away
