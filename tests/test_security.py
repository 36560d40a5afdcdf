"""Data files never execute code.

A run directory downloaded from someone else names its dataset and options in its
checkpoint; ``gzoo eval``/``sample``/``viz``/``run --resume`` then build that dataset. A
crafted ``cifar10`` root full of malicious pickles must be refused with one line, and the
payload (which would create a marker file) must never run.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import gzoo
from gzoo.datasets import CIFAR_FILES, UnsafePickleError, safe_unpickle
from gzoo.errors import UsageError

ALL_CIFAR_FILES = CIFAR_FILES["train"] + CIFAR_FILES["test"]


class OpenMarker:
    """Unpickling this calls ``open(marker, "w")``: the file appears if code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


class ExecMarker:
    """Unpickling this calls ``exec`` on code that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _fake_batch(rng: np.random.Generator, n: int = 8) -> dict:
    return {"batch_label": "fake", "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, n)], "filenames": [f"{i}.png" for i in range(n)]}


def write_fake_cifar(root: Path, seed: int = 0, protocol: int = 2) -> Path:
    """Harmless fake CIFAR-10 batches (3x32x32, labels 0-9) under ``root/cifar-10-batches-py``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in ALL_CIFAR_FILES:
        (folder / name).write_bytes(pickle.dumps(_fake_batch(rng), protocol=protocol))
    return folder


# -- safe_unpickle ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_safe_unpickle_reads_numpy_arrays_of_every_protocol(protocol):
    rng = np.random.default_rng(protocol)
    obj = {"data": rng.integers(0, 256, size=(3, 3072), dtype=np.uint8), "f": np.arange(4.0),
           "labels": list(rng.integers(0, 10, 3)), "name": "x", "raw": b"\x00\xff", "t": (1, 2.5, None)}
    back = safe_unpickle(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
    np.testing.assert_array_equal(back["data"], obj["data"])
    np.testing.assert_array_equal(back["f"], obj["f"])
    assert back["labels"] == obj["labels"] and back["raw"] == b"\x00\xff" and back["t"] == (1, 2.5, None)


@pytest.mark.parametrize("payload", [OpenMarker, ExecMarker])
@pytest.mark.parametrize("nested", [False, True])
def test_safe_unpickle_refuses_code(tmp_path, payload, nested):
    marker = tmp_path / "pwned"
    evil = payload(marker)
    obj = {**_fake_batch(np.random.default_rng(0)), "batch_label": evil} if nested else evil
    for protocol in (2, pickle.DEFAULT_PROTOCOL):
        data = pickle.dumps(obj, protocol=protocol)
        with pytest.raises(UnsafePickleError) as info:
            safe_unpickle(io.BytesIO(data))
        assert re.fullmatch(r"(builtins|__builtin__|io)\.(open|exec)", info.value.refused)
        with pytest.raises(pickle.UnpicklingError):  # it is an UnpicklingError for generic callers
            safe_unpickle(io.BytesIO(data))
    assert not marker.exists()
    # the same bytes really do run code through plain pickle: the test would catch a leak
    pickle.loads(pickle.dumps(obj))
    assert marker.exists()


def test_safe_unpickle_refuses_other_codecs():
    # protocol-2 pickles encode bytes with _codecs.encode(s, "latin1"); no other codec is accepted
    data = b"\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00abq\x01X\x04\x00\x00\x00zlibq\x02\x86q\x03Rq\x04."
    with pytest.raises(UnsafePickleError, match="zlib"):
        safe_unpickle(io.BytesIO(data))


@pytest.mark.parametrize("name", ALL_CIFAR_FILES)
def test_cifar10_with_a_malicious_batch_is_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    folder = write_fake_cifar(tmp_path / "data")
    (folder / name).write_bytes(pickle.dumps(OpenMarker(marker), protocol=2))
    split = "test" if name == "test_batch" else "train"
    with pytest.raises(UsageError, match=rf"refusing to read .*{name}: the pickle names (__builtin__|builtins|io)\.open"):
        gzoo.create("dataset", "cifar10", root=str(tmp_path / "data"), split=split)
    assert not marker.exists()


# -- a crafted run directory, end to end --------------------------------------------------------


def _one_clean_line(r) -> None:
    assert r.exit_code in (1, 2), r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr


@pytest.mark.parametrize("cond", [[], ["--cond", "selfcond", "--cond-opt", "k=2", "--cond-opt", "subset=16"]],
                         ids=["unconditional", "selfcond"])
def test_crafted_run_directory_never_executes_data(cli, tmp_path, cond):
    root = tmp_path / "data"
    folder = write_fake_cifar(root)
    run_dir = tmp_path / "downloaded-run"
    r = cli("run", "--gen", "dcgan", "--disc", "dcgan", "--data", "cifar10", "--data-root", root,
            "--gen-opt", "ch=8", "--disc-opt", "ch=8", "--steps", "1", "--batch-size", "8",
            "--sample-every", "0", "--quiet", "--out", run_dir, *cond)
    assert r.exit_code == 0, r.output
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["config"]["data"] == "cifar10" and state["config"]["data_opt"]["root"] == str(root)

    marker = tmp_path / "pwned"
    for name in ALL_CIFAR_FILES:  # the attacker's "dataset": every batch runs code when unpickled
        (folder / name).write_bytes(pickle.dumps(OpenMarker(marker), protocol=2))
    refused = f"refusing to read {folder / 'data_batch_1'}"

    r = cli("eval", "--run", run_dir, "--n", "50")
    _one_clean_line(r)
    assert refused in r.stderr and not marker.exists()

    # sampling and pictures may not need the data at all (an unconditional image run); where they
    # do (a self-conditioned run's clusters, depending on what its checkpoint holds) it is refused
    for args in (["sample", "--run", run_dir, "--n", "4", "--out", tmp_path / "x.png"],
                 ["viz", "--run", run_dir, "--out", tmp_path / "y.png"]):
        r = cli(*args)
        assert "Traceback" not in r.output and not marker.exists()
        if r.exit_code != 0:
            _one_clean_line(r)
            assert refused in r.stderr or "no visualizer fits this run" in r.stderr, r.stderr
    assert (tmp_path / "x.png").is_file() or cond  # an unconditional run samples without data

    r = cli("run", "--resume", run_dir, "--steps", "2", "--quiet")
    _one_clean_line(r)
    assert refused in r.stderr and not marker.exists()
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 1  # nothing trained
