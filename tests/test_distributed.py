"""Multi-process training (torchrun, gloo on loopback, bounded timeouts): equivalence with one
process, rank-0 outputs, resume across process counts, self-conditioning state, failures, and
the speed options (AMP, channels-last)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gzoo.distributed import Dist, from_env, launch_command, strip_nproc
from gzoo.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_dist_worker.py")
TINY = ["--gen", "mlp", "--disc", "mlp", "--data", "ring", "--gen-opt", "hidden=16", "--disc-opt", "hidden=16",
        "--batch-size", "16", "--sample-every", "0", "--log-every", "2", "--quiet"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", GZOO_DIST_TIMEOUT="60", MASTER_ADDR="127.0.0.1")
    return env


def torchrun(nproc: int, *args: str, module: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N -m gzoo ARGS`` (or a script), on loopback."""
    target = ["-m", "gzoo", *args] if module else list(args)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *target]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT)


def gzoo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gzoo", *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(), cwd=ROOT)


def weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    return {"G": state["G"], "D": state["D"], "step": state["step"]}


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = weights(a), weights(b)
    assert wa["step"] == wb["step"]
    for m in ("G", "D"):
        for k in wa[m]:
            assert torch.allclose(wa[m][k], wb[m][k], atol=atol), f"{m}.{k} differs by {(wa[m][k] - wb[m][k]).abs().max()}"


# -- without processes ------------------------------------------------------------------------------


def test_shard_takes_this_ranks_rows_and_covers_the_batch():
    t = torch.arange(12).view(6, 2)
    parts = [Dist(rank=r, world=3).shard(t) for r in range(3)]
    assert [p.shape[0] for p in parts] == [2, 2, 2]
    assert torch.equal(torch.cat(parts), t)
    assert Dist().shard(t) is t


def test_env_and_launcher_helpers(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert from_env() == Dist(1, 2, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(UsageError, match="not within WORLD_SIZE=2"):
        from_env()
    assert strip_nproc(["run", "--nproc", "2", "--steps", "3", "--nproc=4"]) == ["run", "--steps", "3"]
    cmd = launch_command(2, ["run", "--steps", "3"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gzoo", "run",
                       "--steps", "3"]


def test_speed_option_errors_are_one_line(cli, tmp_path):
    r = cli("run", *TINY, "--steps", "1", "--amp", "fp16", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "--amp fp16 needs a CUDA device" in r.output
    r = cli("run", *TINY, "--steps", "1", "--amp", "fp8", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "fp8" in r.output
    assert not (tmp_path / "r").exists()


DCGAN_SMALL = ["--gen-opt", "ch=8", "--disc-opt", "ch=8"]
COC_SMALL = ["--gen", "cocgan", "--disc", "coc", "--gen-opt", "head_dim=4", "--gen-opt", "mlp_r=2",
             "--disc-opt", "head_dim=4", "--disc-opt", "mlp_r=2"]


@pytest.mark.parametrize("model,flags", [(DCGAN_SMALL, ["--amp", "bf16"]), (DCGAN_SMALL, ["--channels-last"]),
                                         (COC_SMALL, ["--amp", "bf16"])],
                         ids=["dcgan-bf16", "dcgan-channels-last", "cocgan-bf16"])
def test_speed_options_train(cli, tmp_path, model, flags):
    out = tmp_path / "r"
    r = cli("run", "--data", "digits", *model, "--steps", "2", "--batch-size", "8",
            "--sample-every", "0", "--quiet", "--out", out, *flags)
    assert r.exit_code == 0, r.output
    w = weights(out)
    assert all(torch.isfinite(v).all() and v.dtype in (torch.float32, torch.int64) for v in w["G"].values())


# -- with torchrun ----------------------------------------------------------------------------------


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    """Same weights after a few steps: 2 processes x 8 rows vs 1 process x 16 rows, with a lazy R1
    penalty (double backward under DDP) in the D updates."""
    args = [*TINY, "--steps", "4", "--reg", "r1", "--reg-opt", "every=2"]
    one = gzoo("run", *args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = torchrun(2, "run", *args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    assert_same_weights(tmp_path / "one", tmp_path / "two")


def test_two_process_run_writes_once_and_resumes_on_one_process(tmp_path):
    run = tmp_path / "two"
    r = gzoo("run", "--nproc", "2", *TINY, "--steps", "4", "--out", str(run))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("Done: 4 steps") == 1  # rank 0 speaks
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]  # one row per logged step, not one per rank
    assert len(list((run / "samples").glob("*.png"))) == 1
    r = gzoo("run", "--resume", str(run), "--steps", "6")  # a different number of processes
    assert r.returncode == 0, r.stderr
    straight = gzoo("run", *TINY, "--steps", "6", "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    assert_same_weights(run, tmp_path / "straight")


def test_selfcond_cluster_state_is_identical_on_every_rank(tmp_path):
    """Self-conditioned WGAN-GP on 2 ranks: both hold the same clusters (and the same frozen D)."""
    r = torchrun(2, str(WORKER), "selfcond", str(tmp_path), module=False)
    assert r.returncode == 0, r.stderr
    s0, s1 = (torch.load(tmp_path / f"cond-rank{i}.pt", weights_only=False) for i in (0, 1))
    assert s0 and s0["clusterings"] >= 2  # clustered at the start, then reclustered
    assert_equal_state(s0, s1)


def assert_equal_state(a, b, where="state"):
    """Exact equality of nested dicts/lists/tensors/numbers."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_a_rank_that_raises_ends_the_job_with_an_error(tmp_path):
    r = torchrun(2, str(WORKER), "fail", str(tmp_path), module=False, timeout=150)
    assert r.returncode != 0
    assert "rank 1 failed on purpose at step 2" in r.stdout + r.stderr


def test_global_batch_must_divide_among_processes(tmp_path):
    r = torchrun(2, "run", *TINY, "--steps", "1", "--batch-size", "15", "--out", str(tmp_path / "r"))
    assert r.returncode != 0
    assert "--batch-size 15 is the global batch: it must be divisible by the 2 processes" in r.stderr
