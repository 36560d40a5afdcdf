"""Hardening: faults that must not lose work, signals, locking, schedules, overwrites, and one
clear line for every bad input (issue: the newcomer path, faults and hostile input)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import gzoo
from gzoo import runtime
from gzoo.config import RunConfig
from gzoo.datasets import TensorGanDataset, ring
from gzoo.errors import DivergenceError, TrainingError, UnknownNameError, UsageError
from gzoo.run import load_checkpoint, load_run
from gzoo.rundir import RunLock
from gzoo.trainer import Trainer, resume, train

from .conftest import FAST

RING = dict(gen="mlp", disc="mlp", data="ring", batch_size=16, sample_every=0, progress=False,
            gen_opt={"hidden": 16}, disc_opt={"hidden": 16})
RING_CLI = ["--gen", "mlp", "--disc", "mlp", "--data", "ring", "--gen-opt", "hidden=16", "--disc-opt", "hidden=16"]


def _same(a, b):
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k


def _one_line_error(r, code=2):
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- 1. a plain install (no tensorboard) -------------------------------------------------------


def test_training_without_tensorboard_finishes(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    t = train(RunConfig(**RING, steps=3, log_every=1, out=str(tmp_path / "r")))
    assert t.step == 3 and (tmp_path / "r" / "checkpoints" / "last.pt").exists()
    assert not (tmp_path / "r" / "tb").exists()


# -- 3. faults ----------------------------------------------------------------------------------


class FlakyRing(TensorGanDataset):
    """The ring, but reading batch number ``fail_at`` (0-based) raises, like a corrupt file."""

    def __init__(self, *, fail_at: int = -1):
        base = ring(n=2000)
        super().__init__(base.x, base.y, name="flaky", num_classes=base.num_classes)
        self.fail_at, self.calls = fail_at, 0

    def get_batch(self, idx):
        self.calls += 1
        if self.calls - 1 == self.fail_at:
            raise OSError("image file is truncated")
        return super().get_batch(idx)


def test_data_error_mid_run_saves_the_last_finished_step_and_resume_is_exact(tmp_path, register_component):
    register_component("dataset", "flaky", FlakyRing)
    cfg = dict(RING, data="flaky", n_critic=2, ema=0.5, ckpt_every=100, log_every=1)
    a = train(RunConfig(**cfg, steps=6, out=str(tmp_path / "a")))
    # batches 0..7 are read by steps 1..4 (two per step); batch 9 is the second of step 5
    b = Trainer(RunConfig(**cfg, steps=6, data_opt={"fail_at": 9}, out=str(tmp_path / "b")))
    with pytest.raises(TrainingError, match=r"failed at step 4: OSError: image file is truncated; step 4 was saved"):
        b.fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 4
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 4
    b = resume(tmp_path / "b", {"steps": 6})  # a new dataset object: its count restarts, batch 9 is never read
    for m in ("G", "D", "G_ema"):
        _same(getattr(a, m), getattr(b, m))


class RaiseAfter:
    """A plugin whose hook fails after a given G step (as a bad visualizer or metric would)."""

    def __init__(self, step, exc):
        self.step, self.exc = step, exc

    @gzoo.hookimpl
    def gzoo_after_g_step(self, trainer, step):
        if step == self.step:
            raise self.exc


@pytest.mark.parametrize("exc,kind", [(RuntimeError("boom"), TrainingError), (UsageError("bad viz"), UsageError)])
def test_exception_after_a_step_saves_it(tmp_path, register_plugin, exc, kind):
    register_plugin(RaiseAfter(3, exc), "raiser")
    t = Trainer(RunConfig(**RING, steps=10, out=str(tmp_path / "r")))
    with pytest.raises(kind, match=r"step 3 was saved to .*last.pt.*gzoo run --resume"):
        t.fit()
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 3


def test_what_fails_at_step_1_is_checked_before_the_run_starts(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown visualizer 'clustres'.*Did you mean 'clusters'"):
        Trainer(RunConfig(**RING, viz=["clustres"], out=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    """The issue's recipe: WGAN, RMSprop, lr 1e6, a checkpoint every step."""
    cfg = dict(RING, loss="wgan", reg=["gp"], optimizer="rmsprop", lr=1e6, ckpt_every=1, steps=50)
    with pytest.raises(DivergenceError, match=r"diverged at step (\d+).*last good checkpoint is .*last.pt \(step"):
        train(RunConfig(**cfg, out=str(tmp_path / "r")))
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    for part in ("G", "D"):
        assert all(torch.isfinite(v).all() for v in state[part].values())


def test_sample_of_nan_weights_fails_clearly(cli, tmp_path):
    out = tmp_path / "r"
    assert cli("run", *RING_CLI, *FAST, "--out", out).exit_code == 0
    path = out / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["G"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state["G"].items()}
    torch.save(state, path)
    for suffix in ("png", "npy", "pt"):
        r = cli("sample", "--run", out, "--n", "4", "--out", tmp_path / f"s.{suffix}")
        _one_line_error(r, code=1)
        assert "non-finite" in r.stderr and not (tmp_path / f"s.{suffix}").exists()


# -- signals --------------------------------------------------------------------------------------


class Signal:
    """Sends ``sig`` to this process after G step ``at`` (``times`` times: a second Ctrl-C)."""

    def __init__(self, at, sig, times=1):
        self.at, self.sig, self.times = at, sig, times

    @gzoo.hookimpl
    def gzoo_after_g_step(self, trainer, step):
        if step == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("times", [1, 2])
def test_signals_save_the_step_and_resume_exactly(tmp_path, register_plugin, pm, sig, times):
    cfg = dict(RING, steps=8, cosine=True, ema=0.9)
    a = train(RunConfig(**cfg, out=str(tmp_path / "a")))
    register_plugin(Signal(4, sig, times), "signal")
    b = Trainer(RunConfig(**cfg, out=str(tmp_path / "b")))
    assert b.fit() == "interrupted"
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 4
    assert signal.getsignal(sig) is not None  # the previous handler is back
    pm.unregister("signal")
    b = resume(tmp_path / "b")
    for m in ("G", "D", "G_ema"):
        _same(getattr(a, m), getattr(b, m))


class SignalWhileSaving:
    @gzoo.hookimpl
    def gzoo_checkpoint_save(self, trainer, state):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C ...
        os.kill(os.getpid(), signal.SIGINT)  # ... and again, impatiently, while the file is written


def test_ctrl_c_twice_during_the_save_still_leaves_a_checkpoint(tmp_path, register_plugin):
    register_plugin(SignalWhileSaving(), "impatient")
    t = Trainer(RunConfig(**RING, steps=6, ckpt_every=3, out=str(tmp_path / "r")))
    assert t.fit() == "interrupted"
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 3


def test_sigterm_to_a_real_gzoo_process_exits_130_with_a_checkpoint(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from gzoo.cli import main; main()", "run", *RING_CLI, "--steps", "100000",
         "--batch-size", "8", "--sample-every", "0", "--log-every", "1", "--quiet", "--out", str(out)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    log = out / "metrics.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.stat().st_size) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] >= 1


# -- two runs, one directory ----------------------------------------------------------------------


def test_a_second_writer_is_refused(cli, tmp_path):
    out = tmp_path / "r"
    with RunLock(out):
        r = cli("run", *RING_CLI, *FAST, "--out", out)
        _one_line_error(r)
        assert f"is in use by gzoo process {os.getpid()}" in r.stderr
        assert not (out / "metrics.jsonl").exists()
    assert cli("run", *RING_CLI, *FAST, "--out", out).exit_code == 0  # released on exit


def test_a_stale_lock_file_does_not_block(cli, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / ".gzoo.lock").write_text("999999999\n")  # left by a process that was killed
    assert cli("run", *RING_CLI, *FAST, "--out", out).exit_code == 0


def test_a_directory_with_an_earlier_log_is_not_appended_to(cli, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss_d": 0.5}\n')
    r = cli("run", *RING_CLI, *FAST, "--out", out)
    _one_line_error(r)
    assert "earlier run" in r.stderr and (out / "metrics.jsonl").read_text().count("\n") == 1
    # without --out, the default name moves on to a fresh directory
    t = train(RunConfig(**RING, steps=1))
    t2 = train(RunConfig(**RING, steps=1))
    assert t.run_dir != t2.run_dir


# -- extending a cosine run -----------------------------------------------------------------------


def test_extending_a_cosine_run_stretches_the_schedule(tmp_path):
    train(RunConfig(**RING, steps=10, cosine=True, log_every=1, out=str(tmp_path / "r")))
    resume(tmp_path / "r", {"steps": 20})
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["lr"] for r in rows}
    assert sorted(lr) == list(range(1, 21))
    assert lr[10] == pytest.approx(0.0, abs=1e-12)  # the first run ended at 0
    later = [lr[s] for s in range(11, 21)]
    assert all(x >= y for x, y in zip(later, later[1:], strict=False))  # no climb back within the extension
    assert later[-1] == pytest.approx(0.0, abs=1e-12)
    base = RunConfig().lr
    assert lr[11] == pytest.approx(base * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 11 / 20)).item()))


# -- overwrites -------------------------------------------------------------------------------------


def test_sample_never_destroys_a_run_and_needs_force_to_overwrite(cli, tmp_path):
    out = tmp_path / "r"
    assert cli("run", *RING_CLI, *FAST, "--out", out).exit_code == 0
    ckpt = out / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    for extra in ([], ["--force"]):
        r = cli("sample", "--run", out, "--out", out / "checkpoints" / "last.pt", *extra)
        _one_line_error(r)
        assert "checkpoints" in r.stderr
    assert ckpt.read_bytes() == before
    target = tmp_path / "s.pt"
    target.write_bytes(b"precious")
    r = cli("sample", "--run", out, "--n", "3", "--out", target)
    _one_line_error(r)
    assert "--force" in r.stderr and target.read_bytes() == b"precious"
    assert cli("sample", "--run", out, "--n", "3", "--out", target, "--force").exit_code == 0
    assert torch.load(target).shape == (3, 2)


def test_npy_samples_are_streamed_and_equal_the_in_memory_ones(cli, tmp_path):
    import numpy as np

    out = tmp_path / "r"
    assert cli("run", *RING_CLI, *FAST, "--out", out).exit_code == 0
    assert cli("sample", "--run", out, "--n", "1234", "--out", tmp_path / "s.npy").exit_code == 0
    assert cli("sample", "--run", out, "--n", "1234", "--out", tmp_path / "s.pt").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), torch.load(tmp_path / "s.pt").numpy())


# -- 4. one clear line for every bad input ---------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["--gen-opt", "ch=-4"], "could not build generator 'dcgan' with ch=-4"),
        (["--gen-opt", "ch=0"], "could not build generator 'dcgan' with ch=0"),
        (["--lr", "nan"], "lr must be a positive finite number"),
        (["--lr", "inf"], "lr must be a positive finite number"),
        (["--device", "mps"], "device 'mps' is not available"),
        (["--device", "meta"], "cannot train on device 'meta'"),
        (["--device", "cuda:7"], "not available"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--loss", "hign"], "Valid losses:"),
    ],
)
def test_bad_run_flags(cli, tmp_path, args, message):
    r = cli("run", *args, "--steps", "1", "--quiet", "--out", tmp_path / "r")
    _one_line_error(r)
    assert message in r.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "text,message",
    [
        ("lr: fast", "setting 'lr' must be a number, got 'fast'"),
        ("gen_opt: 3", "setting 'gen_opt' must be a mapping"),
        ("reg: 7", "setting 'reg' must be a list of strings"),
        ("betas: 0.5", "setting 'betas' must be a list of 2 numbers"),
        ('seed: "x"', "setting 'seed' must be an integer"),
        ("reg_opt: {gp: 3}", "setting 'reg_opt' must be a mapping"),
        ("steps: 1.5", "setting 'steps' must be an integer"),
    ],
)
def test_bad_config_files(cli, tmp_path, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text + "\n")
    r = cli("run", "--config", cfg, "--quiet", "--out", tmp_path / "r")
    _one_line_error(r)
    assert message in r.stderr


def test_config_files_take_exponents_without_a_decimal_point(cli, tmp_path):
    """YAML 1.1 (PyYAML) reads ``1e-4`` as a string; a config file that writes a float that way
    trains with the number, as ``--lr 1e-4`` would."""
    from gzoo.config import RunConfig, load_yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1e-4\nbetas: [0, 9e-1]\n")
    r = cli("run", "--config", cfg, "--steps", "1", "--sample-every", "0", "--quiet", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    saved = RunConfig.from_dict(load_yaml(tmp_path / "r" / "config.yaml"))
    assert saved.lr == pytest.approx(1e-4) and saved.betas == (0.0, 0.9)


def test_out_that_is_a_file_or_unwritable(cli, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    for out, message in ((f, "is a file"), (f / "sub", "cannot create run directory")):
        r = cli("run", *RING_CLI, *FAST, "--out", out)
        _one_line_error(r)
        assert message in r.stderr
    assert f.read_text() == "x"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = cli("run", *RING_CLI, *FAST, "--out", ro / "r")
        _one_line_error(r)
        assert "cannot create run directory" in r.stderr
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda s: s.update(config="hello"), "config"),
        (lambda s: s.pop("step"), "step"),
        (lambda s: s.update(num_classes=1e9), "num_classes"),
        (lambda s: s.update(num_classes=10**9), "num_classes"),
    ],
)
def test_bad_checkpoint_contents(cli, tmp_path, mutate, message):
    out = tmp_path / "r"
    assert cli("run", *RING_CLI, *FAST, "--out", out).exit_code == 0
    path = out / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    mutate(state)
    torch.save(state, path)
    for args in (["sample", "--run", out, "--out", tmp_path / "x.png"], ["eval", "--run", out, "--n", "3000"],
                 ["run", "--resume", out, "--steps", "4", "--quiet"]):
        r = cli(*args)
        _one_line_error(r, code=1)
        assert message in r.stderr


def test_huge_sample_requests_say_what_they_need(cli, tmp_path):
    out = tmp_path / "r"
    assert cli("run", "--gen-opt", "ch=8", "--disc-opt", "ch=8", *FAST, "--out", out).exit_code == 0
    for suffix, message in (("pt", "of memory"), ("npy", "on disk"), ("png", "at most 10000")):
        r = cli("sample", "--run", out, "--n", "100000000000" if suffix == "npy" else "100000000",
                "--out", tmp_path / f"s.{suffix}")
        _one_line_error(r)
        assert message in r.stderr
        assert suffix == "png" or "GiB" in r.stderr  # says how much it would take
        assert not (tmp_path / f"s.{suffix}").exists()


class MarkupLoss(gzoo.interfaces.Loss):
    """Takes [int] steps and [bold]no[/bold] markup."""

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    def g_loss(self, fake, real=None):
        return -fake.mean()


def test_list_shows_plugin_text_verbatim(cli, register_component):
    register_component("loss", "markup", MarkupLoss)
    r = cli("list", "--kind", "loss")
    assert r.exit_code == 0, r.output
    assert "[int]" in r.stdout and "[bold]no[/bold]" in r.stdout


# -- 5. threads -----------------------------------------------------------------------------------


def test_threads_flag_and_bounded_openmp_wait_default(cli, tmp_path, monkeypatch):
    for key in runtime.OPENMP_USER_VARS:
        monkeypatch.delenv(key, raising=False)
    before = torch.get_num_threads()
    try:
        assert cli("run", *RING_CLI, *FAST, "--threads", "1", "--out", tmp_path / "r").exit_code == 0
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and int(os.environ["GOMP_SPINCOUNT"]) > 0
    finally:
        torch.set_num_threads(before)
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"}):  # a user's own choice is kept, whole
        for key in runtime.OPENMP_USER_VARS:
            monkeypatch.delenv(key, raising=False)
        for key, value in user.items():
            monkeypatch.setenv(key, value)
        assert cli("list", "--kind", "loss").exit_code == 0
        assert {k: os.environ.get(k) for k in runtime.OPENMP_USER_VARS} == {k: user.get(k) for k in runtime.OPENMP_USER_VARS}
    r = cli("run", *RING_CLI, *FAST, "--threads", "0", "--out", tmp_path / "r2")
    assert r.exit_code == 2 and "--threads" in r.stderr


# -- 6. WGAN gets a Lipschitz constraint ------------------------------------------------------------


def test_headline_wgan_command_adds_clipping_and_rmsprop(cli, tmp_path):
    out = tmp_path / "r"
    r = cli("run", "--gen", "cocgan", "--disc", "coc", "--loss", "wgan", "--steps", "2", "--batch-size", "4",
            "--sample-every", "0", "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("Note:") and "reg=clip (c=0.1, weight matrices only)" in first
    assert "optimizer=rmsprop" in first
    text = (out / "config.yaml").read_text()
    assert text.startswith("# loss 'wgan' needs a Lipschitz constraint")
    saved = yaml.safe_load(text)
    assert saved["reg"] == ["clip"] and saved["optimizer"] == "rmsprop"
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    # coc asks for its weight matrices only to be clipped (Discriminator.clip_params), at 0.1
    # (clip_bound): gains stay free
    matrices = {k: v for k, v in state["D"].items() if v.is_floating_point() and v.dim() >= 2}
    assert matrices and all(v.abs().max() <= 0.1 + 1e-7 for v in matrices.values())
    assert any(v.abs().max() > 0.1 for v in state["D"].values() if v.is_floating_point() and v.dim() < 2)
    # the init's 0.02 std stays under 0.1 in two steps, so show the clamp acting in a run with a bound it reaches
    tight = tmp_path / "tight"
    r = cli("run", "--gen", "cocgan", "--disc", "coc", "--loss", "wgan", "--steps", "2", "--batch-size", "4",
            "--sample-every", "0", "--quiet", "--reg-opt", "clip.clip=0.02", "--out", tight)
    assert r.exit_code == 0, r.output
    clamped = [v for v in load_checkpoint(tight / "checkpoints" / "last.pt")["D"].values()
               if v.is_floating_point() and v.dim() >= 2]
    assert all(v.abs().max() <= 0.02 + 1e-7 for v in clamped)
    assert any(v.abs().max() > 0.02 - 1e-7 for v in clamped)  # the init's 0.02 std reaches the bound


@pytest.mark.parametrize(
    "extra,reg,optimizer",
    [
        (["--reg", "gp"], ["gp"], "adam"),  # a constraint chosen: nothing added
        (["--optimizer", "adam"], ["clip"], "adam"),  # the optimizer chosen is kept
        (["--reg", "r1"], ["r1", "clip"], "rmsprop"),  # r1 bounds nothing on fakes: clipping is added
    ],
)
def test_wgan_completion_respects_what_the_user_chose(tmp_path, extra, reg, optimizer, cli):
    r = cli("run", *RING_CLI, *FAST, "--loss", "wgan", *extra, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["reg"] == reg and saved["optimizer"] == optimizer


def test_resumed_wgan_run_keeps_its_settings(tmp_path):
    t = train(RunConfig(**RING, loss="wgan", steps=2, out=str(tmp_path / "r")))
    assert t.config.reg == ["clip"] and t.notes
    r = resume(tmp_path / "r", {"steps": 3})
    assert r.config.reg == ["clip"] and not r.notes


# -- 7. A discriminator's default regularizer ---------------------------------------------------------

COC_CLI = ["--gen", "cocgan", "--disc", "coc", "--steps", "2", "--batch-size", "4", "--sample-every", "0", "--quiet"]


@pytest.mark.parametrize(
    "extra,reg",
    [
        ([], ["sn", "r1"]),  # nothing chosen: coc's default_reg
        (["--reg", "r1"], ["r1"]),  # a regularizer chosen: only it, with R1's own weight
        (["--reg", "none"], []),  # none at all
        (["--loss", "hinge"], ["sn", "r1"]),  # any loss without its own constraint
        (["--cond", "labels"], ["sn", "r1", "mismatch"]),  # conditional: GAN-CLS's mismatch term too
    ],
)
def test_discriminator_default_regularizer(tmp_path, cli, extra, reg):
    out = tmp_path / "r"
    r = cli("run", *COC_CLI, *extra, "--out", out)
    assert r.exit_code == 0, r.output
    text = (out / "config.yaml").read_text()
    saved = yaml.safe_load(text)
    assert saved["reg"] == reg
    added, cond = reg[:2] == ["sn", "r1"], len(reg) == 3
    assert text.startswith(f"# discriminator 'coc' trains with sn, r1 (weight=1.0)"
                           f"{', mismatch (weight=0.5)' * cond} unless") == added
    assert (f"reg={','.join(reg)} --reg-opt r1.weight=1.0{' --reg-opt mismatch.weight=0.5' * cond}"
            in " ".join(r.stderr.split())) == added
    assert saved["reg_opt"] == ({"r1": {"weight": 1.0}, **({"mismatch": {"weight": 0.5}} if cond else {})}
                                if added else {})
    # the saved D is spectral-normalised exactly when sn is on
    state = load_checkpoint(out / "checkpoints" / "last.pt")["D"]
    assert any(k.endswith("parametrizations.weight.original") for k in state) == ("sn" in reg)


def test_reg_none_cannot_be_combined(tmp_path, cli):
    r = cli("run", *COC_CLI, "--reg", "none", "--reg", "sn", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "--reg none" in r.stderr and "sn" in r.stderr
    assert not (tmp_path / "r").exists()


def test_mismatch_on_an_unconditional_run_is_refused_before_anything_is_written(tmp_path, cli):
    r = cli("run", "--gen", "mlp", "--disc", "mlp", "--data", "ring", "--reg", "mismatch", "--steps", "1",
            "--out", tmp_path / "r")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "'mismatch' needs a conditional run" in r.stderr and "--cond labels" in r.stderr
    assert not (tmp_path / "r").exists()


def test_default_reg_only_where_the_discriminator_asks(tmp_path):
    t = train(RunConfig(**RING, steps=1, out=str(tmp_path / "mlp")))  # mlp asks for none
    assert t.config.reg == [] and not t.notes
    t = Trainer(RunConfig(gen="cocgan", disc="coc", steps=1, batch_size=4, sample_every=0, progress=False,
                          out=str(tmp_path / "coc")))  # the Python API completes as the CLI does
    assert t.config.reg == ["sn", "r1"] and t.config.reg_opt == {"r1": {"weight": 1.0}} and len(t.notes) == 1
    t = Trainer(RunConfig(gen="cocgan", disc="coc", steps=1, batch_size=4, sample_every=0, progress=False,
                          out=str(tmp_path / "lit")), explicit={"reg"})  # reg taken literally
    assert t.config.reg == [] and not t.notes
    t.fit()
    r = resume(tmp_path / "lit", {"steps": 2})  # a resumed run keeps what it was started with
    assert r.config.reg == [] and not r.notes


@pytest.mark.parametrize("loss,extra,gen_opt", [
    ("wgan", [], {"layer_scale": 1.0, "init": "torch"}),  # cocgan's wasserstein_opt
    ("wgan", ["--gen-opt", "layer_scale=0.5"], {"layer_scale": 0.5, "init": "torch"}),  # the run's own win key by key
    ("wgan", ["--reg", "gp"], {"layer_scale": 1.0, "init": "torch"}),  # under any Lipschitz constraint
    ("nonsaturating", [], {}),  # not a Wasserstein loss: the class defaults
])
def test_a_generator_takes_its_wasserstein_options_under_a_wasserstein_loss(cli, tmp_path, loss, extra, gen_opt):
    out = tmp_path / "r"
    small = ["--gen-opt", "head_dim=4", "--gen-opt", "mlp_r=2", "--disc-opt", "head_dim=4", "--disc-opt", "mlp_r=2"]
    r = cli("run", "--gen", "cocgan", "--disc", "coc", "--loss", loss, "--steps", "1", "--batch-size", "4",
            "--sample-every", "0", "--quiet", *small, *extra, "--out", out)
    assert r.exit_code == 0, r.output
    saved = yaml.safe_load((out / "config.yaml").read_text())["gen_opt"]
    assert {k: saved[k] for k in ("layer_scale", "init") if k in saved} == {  # --gen-opt text is kept as given
        k: str(v) if any(f"{k}=" in e for e in extra) else v for k, v in gen_opt.items()}
    added = {k: v for k, v in gen_opt.items() if not any(f"{k}=" in e for e in extra)}
    note = " ".join(r.stderr.split())
    assert (("generator 'cocgan' trains under a Wasserstein loss with "
             + " ".join(f"--gen-opt {k}={v}" for k, v in added.items())) in note) == bool(added)
    ls = load_checkpoint(out / "checkpoints" / "last.pt")["G"]["stage_blocks.0.0.ls1"]
    assert ls.sub(gen_opt.get("layer_scale", 1e-5)).abs().max() < 1e-2  # one step moves it by about lr
    if loss == "wgan" and not extra:
        listed = " ".join(cli("list", "cocgan").stdout.split())
        assert "wasserstein opt layer_scale=1.0 init=torch (under a Wasserstein loss" in listed
        assert json.loads(cli("list", "cocgan", "--json").stdout)["wasserstein_opt"] == gen_opt
        assert "wasserstein opt" not in cli("list", "dcgan", "--kind", "generator").stdout


class _R1Plugin:
    """A discriminator that asks for spectral norm and R1 at weight 1 (R1's own default is 10)."""

    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        from gzoo_classic.models import MLPDiscriminator

        class MLPWithR1(MLPDiscriminator):
            default_reg = ("sn", "r1")
            default_reg_opt = {"r1": {"weight": 1.0}}

        register("discriminator", "mlp-r1", MLPWithR1, paper="none")


@pytest.mark.parametrize("extra,reg,r1", [
    ([], ["sn", "r1"], {"weight": 1.0, "every": 16}),  # the discriminator's options
    (["--reg-opt", "r1.every=4"], ["sn", "r1"], {"weight": 1.0, "every": 4}),  # the run's own win key by key
    (["--reg-opt", "r1.weight=3"], ["sn", "r1"], {"weight": 3.0, "every": 16}),
    (["--reg", "r1"], ["r1"], {"weight": 10.0, "every": 16}),  # a regularizer named: R1's own defaults
])
def test_default_reg_carries_its_options(tmp_path, cli, register_plugin, extra, reg, r1):
    register_plugin(_R1Plugin(), "r1-plugin")
    out = tmp_path / "r"
    r = cli("run", *RING_CLI[:2], "--disc", "mlp-r1", *RING_CLI[6:], "--steps", "2", "--sample-every", "0",
            "--quiet", *extra, "--out", out)
    assert r.exit_code == 0, r.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["reg"] == reg
    t = Trainer(RunConfig(**{**saved, "out": str(tmp_path / "again")}), explicit=set(saved))
    assert t.regs["r1"].weight == r1["weight"] and t.regs["r1"].every == r1["every"]
    added = not extra or extra[0] == "--reg-opt"
    assert ("gzoo added reg=sn,r1" in " ".join(r.stderr.split())) == added
    assert ("--reg-opt r1.weight=1.0" in " ".join(r.stderr.split())) == (extra == [] or "every" in extra[1])
    listed = " ".join(cli("list", "mlp-r1").stdout.split())
    assert "sn, r1 (weight=1.0) (when a run names none" in listed
    assert json.loads(cli("list", "mlp-r1", "--json").stdout)["default_reg_opt"] == {"r1": {"weight": 1.0}}


class _MismatchPlugin:
    """A discriminator that asks for spectral norm and the label-reading mismatch term."""

    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        from gzoo_classic.models import MLPDiscriminator

        class MLPWithMismatch(MLPDiscriminator):
            default_reg = ("sn", "mismatch")

        register("discriminator", "mlp-mm", MLPWithMismatch, paper="none")


@pytest.mark.parametrize("cond,reg", [([], ["sn"]), (["--cond", "labels"], ["sn", "mismatch"])])
def test_a_default_reg_that_needs_labels_joins_conditional_runs_only(tmp_path, cli, register_plugin, cond, reg):
    register_plugin(_MismatchPlugin(), "mm-plugin")
    out = tmp_path / "r"
    r = cli("run", "--gen", "mlp", "--disc", "mlp-mm", "--data", "digits", "--gen-opt", "hidden=16",
            "--disc-opt", "hidden=16", "--steps", "2", "--sample-every", "0", "--quiet", *cond, "--out", out)
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((out / "config.yaml").read_text())["reg"] == reg
    assert f"gzoo added reg={','.join(reg)}." in " ".join(r.stderr.split())
    listed = " ".join(cli("list", "mlp-mm").stdout.split())
    assert "sn, mismatch (conditional runs) (when a run names none" in listed


def test_every_default_reg_is_a_registered_regularizer(cli):
    from gzoo.plugins import get_plugin_manager

    registry = get_plugin_manager().registry
    asked = {spec.name: spec.default_reg for spec in registry.list("discriminator") if spec.default_reg}
    assert asked.get("coc") == ("sn", "r1", "mismatch")
    for name in {r for regs in asked.values() for r in regs}:
        registry.get("regularizer", name)  # raises UnknownNameError if a model asks for a missing one
    shown = cli("list", "coc", "--kind", "discriminator").stdout
    assert "default reg" in shown and "sn, r1 (weight=1.0), mismatch (weight=0.5, conditional runs) (when a run names none" in " ".join(shown.split())
    assert "wgan clip c=0.1, weight matrices only" in " ".join(shown.split())  # coc's clip_bound, clip_params
    assert "wgan clip" not in cli("list", "dcgan", "--kind", "discriminator").stdout  # the WGAN paper's clipping


def test_wgan_clip_resolves_what_the_run_leaves_to_the_discriminator():
    from gzoo.config import WGAN_CLIP, wgan_clip
    from gzoo.plugins import get_plugin_manager

    coc = get_plugin_manager().registry.get("discriminator", "coc").factory
    assert wgan_clip(object()) == WGAN_CLIP == {"clip": 0.01, "params": "all"}  # no attributes: the WGAN paper
    assert wgan_clip(coc) == {"clip": 0.1, "params": "weights"}
    assert wgan_clip(coc, {"clip": None, "params": "auto"}) == wgan_clip(coc)  # the option defaults defer
    assert wgan_clip(coc, {"clip": 0.01, "params": "all"}) == WGAN_CLIP  # the run's own options win


def test_loaded_run_needs_no_training_data_to_sample(tmp_path, monkeypatch):
    t = train(RunConfig(**RING, cond="labels", steps=2, out=str(tmp_path / "r")))
    run = load_run(t.run_dir)

    def no_data(*a, **k):
        raise AssertionError("sampling read the training data")

    monkeypatch.setattr(type(run), "dataset", no_data)
    x = run.generate(50)
    assert x.shape == (50, 2)


@pytest.mark.parametrize("argv, expect", [
    (["--variants", "defualt"], "unknown variant 'defualt'. Did you mean 'default'"),
    (["--losses", "wgn"], "unknown loss 'wgn'. Did you mean 'wgan'"),
    (["--steps", "3000", "--eval-at", "5000"], "--eval-at steps must lie between 0 and --steps (3000), got 5000"),
])
def test_ablation_benchmark_refuses_bad_input_before_training(tmp_path, argv, expect):
    """benchmarks/bench_coc_ablations.py: a bad name or step list gets argparse's one line and exit 2,
    before any run starts (nothing is written under --workdir)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "bench_coc_ablations.py"), *argv,
                        "--workdir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("bench_coc_ablations.py: error: ") and expect in last, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()


def test_benchmark_worker_rounds_alternate_and_a_dead_worker_is_named(tmp_path):
    """benchmarks/_workers.py: each worker's ready line comes back once, every round asks every
    worker in turn, in order on even rounds and reversed on odd ones (seen from a log the workers append
    to), each with the environment it was given; a worker that dies is named, not waited on for ever."""
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    sys.path.insert(0, bench)
    try:
        from _workers import Rounds
    finally:
        sys.path.remove(bench)
    log = tmp_path / "log"
    script = tmp_path / "w.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {bench!r})\n"
        "from _workers import serve\n"
        "seen = []\n"
        "def round_():\n"
        f"    open({str(log)!r}, 'a').write(sys.argv[1] + '\\n')\n"
        "    seen.append(1)\n"
        "    if sys.argv[1] == 'c' and len(seen) == 2:\n"
        "        sys.exit(3)\n"
        "    return {'who': sys.argv[1], 'n': len(seen), 'env': os.environ.get('W_ENV')}\n"
        "serve({'ready': sys.argv[1]}, round_)\n")
    commands = {w: ([sys.executable, str(script), w], {**os.environ, "W_ENV": w.upper()}) for w in "ab"}
    with Rounds(commands) as workers:
        assert workers.ready() == {"a": {"ready": "a"}, "b": {"ready": "b"}}
        replies = list(workers.rounds(3))
    assert [r for r, _ in replies] == [0, 1, 2]
    assert [rep for _, rep in replies][2] == {"a": {"who": "a", "n": 3, "env": "A"}, "b": {"who": "b", "n": 3, "env": "B"}}
    assert log.read_text().split() == ["a", "b", "b", "a", "a", "b"]
    commands["c"] = ([sys.executable, str(script), "c"], dict(os.environ))
    with pytest.raises(SystemExit, match=r"worker 'c' stopped \(exit code 3\)"):
        with Rounds(commands) as workers:
            workers.ready()
            list(workers.rounds(2))


def test_clip_bound_is_pinned_in_the_run_and_kept_on_resume(tmp_path, monkeypatch):
    """The bound ``clip`` takes from the discriminator (``clip_bound``, a default of gzoo's code) is
    written into the run's settings: a run resumed after that default moved keeps its own bound."""
    from gzoo.plugins import get_plugin_manager

    coc = get_plugin_manager().registry.get("discriminator", "coc").factory
    t = train(RunConfig(gen="cocgan", disc="coc", loss="wgan", data="digits", steps=1, batch_size=4,
                        sample_every=0, progress=False, out=str(tmp_path / "r")))
    pinned = {"clip": coc.clip_bound, "params": "weights"}
    assert t.config.reg_opt["clip"] == pinned
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["reg_opt"]["clip"] == pinned
    monkeypatch.setattr(coc, "clip_bound", coc.clip_bound / 4)  # a later gzoo with another default
    r = resume(tmp_path / "r", {"steps": 2})
    assert r.config.reg_opt["clip"] == pinned
    bound = pinned["clip"]
    weights = [p for p in r.D.parameters() if p.dim() >= 2]
    assert all(p.abs().max() <= bound + 1e-7 for p in weights)
    assert any(p.abs().max() > bound / 4 + 1e-6 for p in weights)  # not clamped to the moved default
    # a bound the run named itself is kept as given, the parameters filled in
    t = train(RunConfig(gen="cocgan", disc="coc", loss="wgan", data="digits", steps=1, batch_size=4, sample_every=0,
                        progress=False, reg_opt={"clip": {"clip": 0.02}}, out=str(tmp_path / "s")))
    assert t.config.reg_opt["clip"] == {"clip": 0.02, "params": "weights"}
    # a run without clipping gets no clip options
    t = train(RunConfig(**RING, steps=1, out=str(tmp_path / "u")))
    assert "clip" not in t.config.reg_opt
