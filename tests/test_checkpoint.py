"""Checkpoint I/O: corruption and unsafe pickles are refused, a full disk keeps the previous
checkpoint, stale temp files are cleaned, malformed structures are named, NaN weights found."""

from __future__ import annotations

import errno
import itertools
import os
import struct
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

import gzoo.checkpoint as ckpt
import gzoo.run
from gzoo.checkpoint import (
    CHECKPOINT_FORMAT,
    TEMP_PATTERN,
    TEMP_RE,
    clean_stale_temps,
    find_checkpoint,
    load_checkpoint,
    nonfinite,
    save_checkpoint,
    validate_state,
)
from gzoo.config import RunConfig
from gzoo.errors import CheckpointError, UsageError
from gzoo.trainer import train


def _trained(out: Path) -> Path:
    train(RunConfig(gen="mlp", disc="mlp", data="ring", steps=1, batch_size=8, sample_every=0,
                    progress=False, out=str(out)))
    return out / "checkpoints" / "last.pt"


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A real one-step checkpoint of a small ring run."""
    return _trained(tmp_path / "run")


def _error(path: Path) -> str:
    """Load ``path``, expecting a one-line CheckpointError free of PyTorch's advice."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert "weights_only" not in msg and "torch.load" not in msg and "\x1b" not in msg
    return msg


def _payload_offset(path: Path, name: str) -> int:
    """Where record ``name``'s bytes start in the archive (after its local header)."""
    info = zipfile.ZipFile(path).getinfo(name)
    head = path.read_bytes()[info.header_offset: info.header_offset + 30]
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _flip_byte_in_largest_storage(path: Path) -> str:
    infos = [i for i in zipfile.ZipFile(path).infolist() if "/data/" in i.filename]
    record = max(infos, key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    data[_payload_offset(path, record.filename) + record.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return record.filename


def _rewrite(path: Path, mutate) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    mutate(state)
    torch.save(state, path)


# -- corruption ----------------------------------------------------------------------------------


def test_torch_archives_carry_crcs_that_testzip_verifies(tmp_path):
    """The premise of the check: torch writes real CRC-32s, torch.load ignores them,
    ZipFile.testzip() does not."""
    path = tmp_path / "t.pt"
    torch.save({"w": torch.arange(256, dtype=torch.float32)}, path)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert all(i.CRC != 0 for i in infos if i.file_size) and zf.testzip() is None
    name = _flip_byte_in_largest_storage(path)
    assert zipfile.ZipFile(path).testzip() == name
    w = torch.load(path, weights_only=True)["w"]  # loads silently, with a wrong value
    assert not torch.equal(w, torch.arange(256, dtype=torch.float32))


def test_flipped_tensor_byte_is_detected(checkpoint):
    name = _flip_byte_in_largest_storage(checkpoint)
    msg = _error(checkpoint)
    assert msg == f"checkpoint {checkpoint} is corrupt (CRC mismatch in {name!r}); it cannot be used"


@pytest.mark.parametrize("content", [None, b"", b"not a checkpoint"], ids=["truncated", "empty", "text"])
def test_truncated_or_non_zip_file_is_one_clear_line(checkpoint, content):
    checkpoint.write_bytes(checkpoint.read_bytes()[:200] if content is None else content)
    assert "is corrupt (truncated or not a zip archive)" in _error(checkpoint)


def test_unsafe_pickle_is_refused_in_our_words(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "evil": Evil()}, path)
    msg = _error(path)
    assert "corrupt or unsafe" in msg and "objects other than tensors and plain data" in msg
    assert "refused as unsafe (UnpicklingError)" in msg and "open" in msg
    assert not marker.exists()


@pytest.mark.skipif(not hasattr(torch.serialization, "get_crc32_options"), reason="torch < 2.4")
def test_checkpoints_always_carry_crcs(tmp_path):
    state = {"format": CHECKPOINT_FORMAT, "w": torch.ones(8)}
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, tmp_path / "foreign.pt")
        save_checkpoint(state, tmp_path / "ours.pt")
        assert torch.serialization.get_crc32_options() is False  # the user's setting is restored
    finally:
        torch.serialization.set_crc32_options(True)
    assert "carries no CRC-32 checksums" in _error(tmp_path / "foreign.pt")
    with zipfile.ZipFile(tmp_path / "ours.pt") as zf:
        assert all(i.CRC != 0 for i in zf.infolist() if i.file_size) and zf.testzip() is None


def test_reexported_from_run():
    assert gzoo.run.load_checkpoint is load_checkpoint
    assert gzoo.run.save_checkpoint is save_checkpoint
    assert gzoo.run.find_checkpoint is find_checkpoint


# -- writing -------------------------------------------------------------------------------------


def _disk_full(monkeypatch) -> list[Path]:
    """Make torch.save write a few bytes, then fail as a full disk does; return temp paths."""
    seen: list[Path] = []

    def save(obj, f, *args, **kwargs):
        seen.append(Path(f.name))
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save)
    return seen


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint({"format": CHECKPOINT_FORMAT, "w": torch.ones(3)}, path)
    before = path.read_bytes()
    temps = _disk_full(monkeypatch)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint({"format": CHECKPOINT_FORMAT, "w": torch.zeros(3)}, path)
    assert str(info.value) == (
        f"could not write checkpoint {path}: No space left on device; the previous checkpoint is intact"
    )
    assert path.read_bytes() == before
    assert temps and temps[0].parent == path.parent and TEMP_RE.match(temps[0].name)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no *.tmp left


def test_disk_full_without_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    _disk_full(monkeypatch)
    with pytest.raises(CheckpointError, match=r"No space left on device; no previous checkpoint existed$"):
        save_checkpoint({"w": torch.ones(3)}, path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_real_write_error_inside_torch_writer_is_reported(tmp_path):
    """torch's C++ writer turns a failed write into a RuntimeError without errno; the reason
    (here EFBIG from a file-size limit) must still reach the message."""
    import resource
    import signal

    path = tmp_path / "last.pt"
    save_checkpoint({"w": torch.ones(4)}, path)
    before = path.read_bytes()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    try:
        with pytest.raises(CheckpointError) as info:
            save_checkpoint({"w": torch.zeros(100_000)}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert str(info.value) == (
        f"could not write checkpoint {path}: {os.strerror(errno.EFBIG)}; the previous checkpoint is intact"
    )
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_round_trip_leaves_no_temp_files(tmp_path):
    state = {"format": CHECKPOINT_FORMAT, "w": torch.randn(5, generator=torch.Generator().manual_seed(0))}
    path = tmp_path / "deep" / "x.pt"
    save_checkpoint(state, path)
    save_checkpoint(state, path)  # overwriting works too
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["w"], state["w"])
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"]


# -- stale temp files ----------------------------------------------------------------------------


def test_clean_stale_temps_removes_only_checkpoint_temps(tmp_path):
    stale = [tmp_path / TEMP_PATTERN.format(name=n, token=t)
             for n, t in [("last.pt", "0123abcd"), ("best.pt", "ffffffff")]]
    keep = [tmp_path / n for n in ("last.pt", ".last.pt.tmp", "other.tmp", ".last.pt.XYZ12345.tmp",
                                   "last.pt.0123abcd.tmp")]
    for p in stale + keep:
        p.write_bytes(b"x")
    folder_like_temp = tmp_path / TEMP_PATTERN.format(name="x.pt", token="00000000")
    folder_like_temp.mkdir()
    assert clean_stale_temps(tmp_path) == sorted(stale)
    assert all(p.exists() for p in keep) and folder_like_temp.is_dir()
    assert not any(p.exists() for p in stale)
    assert clean_stale_temps(tmp_path) == []
    assert clean_stale_temps(tmp_path / "missing") == []


def test_clean_stale_temps_can_spare_recent_files(tmp_path):
    old = tmp_path / TEMP_PATTERN.format(name="last.pt", token="aaaaaaaa")
    new = tmp_path / TEMP_PATTERN.format(name="last.pt", token="bbbbbbbb")
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert clean_stale_temps(tmp_path, older_than=600) == [old]
    assert new.exists()


def test_temp_files_of_a_killed_save_are_cleaned(tmp_path, monkeypatch):
    """A process killed mid-write (simulated: the finally clause never runs) leaves a temp
    file that clean_stale_temps recognizes."""
    path = tmp_path / "last.pt"
    monkeypatch.setattr(ckpt, "_remove_quietly", lambda p: None)
    temps = _disk_full(monkeypatch)
    with pytest.raises(CheckpointError):
        save_checkpoint({"w": torch.ones(2)}, path)
    assert temps[0].exists()
    assert clean_stale_temps(tmp_path) == temps
    assert list(tmp_path.iterdir()) == []


# -- structure -----------------------------------------------------------------------------------


def _set(key, value):
    return lambda s: s.__setitem__(key, value)


def _drop(key):
    return lambda s: s.pop(key)


BAD = {
    "config-not-dict": ("config", _set("config", ["gen", "mlp"])),
    "config-missing": ("config", _drop("config")),
    "step-missing": ("step", _drop("step")),
    "step-negative": ("step", _set("step", -1)),
    "step-bool": ("step", _set("step", True)),
    "step-float": ("step", _set("step", 1.0)),
    "step-string": ("step", _set("step", "1")),
    "d_steps-missing": ("d_steps", _drop("d_steps")),
    "d_steps-negative": ("d_steps", _set("d_steps", -5)),
    "image_shape-missing": ("image_shape", _drop("image_shape")),
    "image_shape-empty": ("image_shape", _set("image_shape", [])),
    "image_shape-4d": ("image_shape", _set("image_shape", [1, 2, 2, 2])),
    "image_shape-zero": ("image_shape", _set("image_shape", [3, 0, 8])),
    "image_shape-string": ("image_shape", _set("image_shape", "2")),
    "image_shape-float": ("image_shape", _set("image_shape", [2.0])),
    "image_shape-bool": ("image_shape", _set("image_shape", [True])),
    "image_shape-dim": ("image_shape", _set("image_shape", [16385])),
    "image_shape-numel": ("image_shape", _set("image_shape", [2, 16384, 16384])),
    "num_classes-1e9": ("num_classes", _set("num_classes", 1e9)),
    "num_classes-huge": ("num_classes", _set("num_classes", 100_001)),
    "num_classes-negative": ("num_classes", _set("num_classes", -1)),
    "num_classes-float": ("num_classes", _set("num_classes", 2.0)),
    "num_classes-string": ("num_classes", _set("num_classes", "10")),
    "num_classes-missing": ("num_classes", _drop("num_classes")),
    "G-missing": ("G", _drop("G")),
    "G-list": ("G", _set("G", [torch.ones(2)])),
    "G-non-tensor": ("G", lambda s: s["G"].__setitem__("net.0.weight", [[1.0, 2.0]])),
    "D-none": ("D", _set("D", None)),
    "D-int-key": ("D", lambda s: s["D"].__setitem__(3, torch.ones(1))),
    "G_ema-string": ("G_ema", _set("G_ema", "weights")),
}


@pytest.mark.parametrize("field, mutate", list(BAD.values()), ids=list(BAD))
def test_malformed_checkpoint_names_the_field(checkpoint, field, mutate):
    _rewrite(checkpoint, mutate)
    msg = _error(checkpoint)
    assert msg.startswith(f"checkpoint {checkpoint} is invalid: field {field!r} ")


def test_valid_limits_are_accepted(checkpoint):
    state = load_checkpoint(checkpoint)
    assert state["step"] == 1 and state["image_shape"] == [2] and state["num_classes"] == 0
    for shape, classes in [([16384, 16384], 100_000), ((3, 64, 64), 0), ([1], 10)]:
        validate_state({**state, "image_shape": shape, "num_classes": classes, "G_ema": None}, "x.pt")


def test_format_marker_and_version_are_checked(checkpoint):
    _rewrite(checkpoint, _set("format", "something-else"))
    assert _error(checkpoint).endswith("is not a gzoo checkpoint")
    _rewrite(checkpoint, _set("format", CHECKPOINT_FORMAT))
    _rewrite(checkpoint, _set("format_version", 99))
    assert "written by a newer gzoo (format 99)" in _error(checkpoint)
    _rewrite(checkpoint, _set("format_version", "1"))
    assert "field 'format_version' must be a non-negative integer" in _error(checkpoint)


def test_long_values_are_shortened_in_messages(checkpoint):
    _rewrite(checkpoint, _set("step", "x" * 10_000))
    assert len(_error(checkpoint)) < 300


# -- non-finite weights --------------------------------------------------------------------------


def test_nonfinite_lists_nan_and_inf_tensors_in_order():
    state = {
        "ok": torch.ones(3),
        "nan": torch.tensor([1.0, float("nan")]),
        "ints": torch.tensor([1, 2]),
        "inf_half": torch.tensor([float("-inf")], dtype=torch.float16),
        "empty": torch.empty(0),
        "complex": torch.tensor([complex(float("nan"), 0.0)]),
        "not_a_tensor": 3.0,
    }
    assert nonfinite(state) == ["nan", "inf_half", "complex"]
    assert nonfinite({}) == [] and nonfinite({"ok": torch.zeros(2, 2)}) == []


def test_nonfinite_on_module_parameters_and_buffers():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    assert nonfinite(itertools.chain(m.named_parameters(), m.named_buffers())) == []
    with torch.no_grad():
        m[0].bias[1] = float("inf")
    m[1].running_var[0] = float("nan")
    found = nonfinite(itertools.chain(m.named_parameters(), m.named_buffers()))
    assert found == ["0.bias", "1.running_var"]
    assert nonfinite(m.state_dict()) == ["0.bias", "1.running_var"]


# -- locating ------------------------------------------------------------------------------------


def test_find_checkpoint(checkpoint, tmp_path):
    run = checkpoint.parent.parent
    assert find_checkpoint(run) == checkpoint
    with pytest.raises(CheckpointError, match="no 'best' checkpoint .*available: last"):
        find_checkpoint(run, "best")
    with pytest.raises(UsageError, match="does not exist"):
        find_checkpoint(tmp_path / "nope")
    assert find_checkpoint(run, "checkpoints/last.pt") == checkpoint
    assert find_checkpoint(run, str(checkpoint)) == checkpoint
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
