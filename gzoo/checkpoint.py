"""Checkpoint I/O: atomic, verified writes and safe, validated reads.

On disk a checkpoint is what ``torch.save`` writes: a zip archive (records stored
uncompressed) holding ``data.pkl``, a pickle of a plain dict, and one record per tensor
storage. Every record carries a CRC-32 (``save_checkpoint`` turns torch's CRC option on
if it was off). The dict is marked ``format == CHECKPOINT_FORMAT`` and carries
``format_version``; the trainer's checkpoints also hold ``step``, ``d_steps``, ``config``,
``image_shape``, ``num_classes``, the ``G``/``D``/``G_ema`` state dicts, optimizer,
scheduler, sampler and RNG states, and per-plugin state under ``plugins``.

Guarantees:

- **Atomic writes.** :func:`save_checkpoint` writes ``.<name>.<8 hex>.tmp`` in the target's
  folder, fsyncs it and ``os.replace``\\ s it over the target: a crash or a full disk never
  leaves a truncated checkpoint, and the previous one stays intact until the new one is
  complete. A write error is a :class:`~gzoo.errors.CheckpointError`; the temp file is
  removed. Temp files left by a killed process are removed by :func:`clean_stale_temps`.
- **Corruption is detected.** :func:`load_checkpoint` checks every record's CRC-32 before
  unpickling anything (``torch.load`` itself does not), so a flipped bit is an error, not
  silently wrong weights.
- **No code execution.** The pickle is read with ``torch.load(weights_only=True)``: a file
  holding anything but tensors and plain data (numbers, strings, lists, dicts) is refused.
- **Validated structure.** :func:`validate_state` checks the fields that rebuilding a run
  relies on (``config``, ``step``, ``d_steps``, ``image_shape``, ``num_classes``, ``G``,
  ``D``), so a malformed or malicious checkpoint fails with one line, not deep inside a
  model constructor.

Every failure is a :class:`~gzoo.errors.CheckpointError` with a one-line message naming the
file. :func:`nonfinite` lists the NaN/inf tensors of a state dict or module, so that callers
never write (or sample from) non-finite weights.
"""

from __future__ import annotations

import errno
import math
import os
import pickle
import re
import secrets
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor

from .errors import CheckpointError, UsageError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "TEMP_PATTERN",
    "clean_stale_temps",
    "find_checkpoint",
    "load_checkpoint",
    "nonfinite",
    "save_checkpoint",
    "validate_state",
]

CHECKPOINT_FORMAT = "gzoo-checkpoint"
CHECKPOINT_VERSION = 1

#: name of the temp file :func:`save_checkpoint` writes before renaming it to ``name``
TEMP_PATTERN = ".{name}.{token}.tmp"
#: what :func:`clean_stale_temps` removes: names made from :data:`TEMP_PATTERN`
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<token>[0-9a-f]{8})\.tmp$")

#: structural limits of :func:`validate_state` (a checkpoint is untrusted input)
MAX_IMAGE_DIM = 16384
MAX_IMAGE_NUMEL = 2**28
MAX_NUM_CLASSES = 100_000


# -- writing -------------------------------------------------------------------------------------


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, ``os.replace``).

    Raises :class:`CheckpointError` on any OS error (full disk, quota, permissions,
    read-only file system); the temp file is then removed and a previous checkpoint at
    ``path`` is left untouched.
    """
    path = Path(path)
    existed = path.exists()
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, f = _create_temp(path)
        _write(state, f)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        kept = "the previous checkpoint is intact" if existed else "no previous checkpoint existed"
        raise CheckpointError(f"could not write checkpoint {path}: {_reason(exc)}; {kept}") from None
    finally:
        if tmp is not None:
            _remove_quietly(tmp)
    _fsync_dir(path.parent)


def clean_stale_temps(folder: Path, *, older_than: float = 0.0) -> list[Path]:
    """Remove the temp files a killed :func:`save_checkpoint` left in ``folder``.

    Only names made from :data:`TEMP_PATTERN` are touched; ``older_than`` (seconds) spares
    temp files modified more recently, e.g. by another process writing into the same folder.
    Returns the removed paths, sorted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for p in sorted(folder.iterdir()):
        if not TEMP_RE.match(p.name) or not p.is_file():
            continue
        try:
            if now - p.stat().st_mtime < older_than:
                continue
            p.unlink()
        except FileNotFoundError:  # removed meanwhile by someone else
            continue
        removed.append(p)
    return removed


class _RecordingWriter:
    """A file wrapper that keeps the first OSError of a write.

    torch's C++ writer turns a failed ``write`` into a RuntimeError without the errno; the
    recorded OSError lets :func:`save_checkpoint` say *why* (e.g. "No space left on device").
    """

    def __init__(self, f: IO[bytes]):
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _create_temp(path: Path) -> tuple[Path, IO[bytes]]:
    """Create a new, empty temp file next to ``path``; return it, open for writing."""
    for _ in range(100):
        tmp = path.with_name(TEMP_PATTERN.format(name=path.name, token=secrets.token_hex(4)))
        try:
            return tmp, open(tmp, "xb")  # closed by _write
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a unique temp file", str(path.parent))


def _write(state: dict[str, Any], f: IO[bytes]) -> None:
    """Serialize ``state`` into ``f``, fsync and close it."""
    with f:
        sink = _RecordingWriter(f)
        try:
            with _crc32_enabled():
                torch.save(state, sink)
        except OSError:
            raise
        except Exception:
            if sink.error is not None:
                raise sink.error from None
            raise
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def _crc32_enabled() -> Iterator[None]:
    """Make ``torch.save`` write CRC-32s even if a user turned them off (torch >= 2.4)."""
    get = getattr(torch.serialization, "get_crc32_options", None)
    if get is None or get():
        yield
        return
    torch.serialization.set_crc32_options(True)
    try:
        yield
    finally:
        torch.serialization.set_crc32_options(False)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _reason(exc: OSError) -> str:
    """One line saying why an OS call failed, e.g. ``No space left on device``."""
    if exc.errno:
        return os.strerror(exc.errno)
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# -- reading -------------------------------------------------------------------------------------


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint: verify its CRC-32s, unpickle it safely, check format and structure.

    Raises :class:`CheckpointError` when the file is missing, unreadable, truncated,
    corrupt, unsafe, not a gzoo checkpoint, written by a newer gzoo, or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:  # one open file: verified bytes are the bytes loaded
            _verify_archive(f, path)
            f.seek(0)
            state = _unpickle(f, path)
    except OSError as exc:
        raise CheckpointError(f"could not read checkpoint {path}: {_reason(exc)}") from None
    _check_format(state, path)
    validate_state(state, path)
    return state


def _verify_archive(f: IO[bytes], path: Path) -> None:
    """Check that ``f`` is a complete zip archive whose records all match their CRC-32."""
    try:
        with zipfile.ZipFile(f) as zf:
            if _lacks_crcs(zf.infolist()):
                raise CheckpointError(
                    f"checkpoint {path} carries no CRC-32 checksums (saved with torch's CRCs "
                    f"turned off), so it cannot be verified; it cannot be used"
                )
            bad = zf.testzip()
            if bad is not None:
                raise _corrupt(path, f"{_damage(zf, bad)} in {bad!r}")
    except zipfile.BadZipFile:
        raise _corrupt(path, "truncated or not a zip archive") from None
    except (CheckpointError, OSError):
        raise
    except Exception as exc:  # malformed archives raise EOFError, ValueError, ...
        raise _corrupt(path, f"damaged zip archive, {type(exc).__name__}") from None


def _lacks_crcs(infos: list[zipfile.ZipInfo]) -> bool:
    """True for archives written with ``torch.serialization.set_crc32_options(False)``."""
    sized = [i for i in infos if i.file_size]
    return bool(sized) and all(i.CRC == 0 for i in sized)


def _damage(zf: zipfile.ZipFile, name: str) -> str:
    """What is wrong with a record ``testzip`` reported: a CRC mismatch or a broken header."""
    try:
        with zf.open(name) as r:
            while r.read(1 << 20):
                pass
    except zipfile.BadZipFile as exc:
        return "CRC mismatch" if "CRC" in str(exc) else "damaged record header"
    return "CRC mismatch"


def _corrupt(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is corrupt ({why}); it cannot be used")


def _unpickle(f: IO[bytes], path: Path) -> Any:
    """``torch.load(weights_only=True)``, with torch's errors replaced by one line of ours."""
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as exc:
        unsafe = _refused_global(str(exc))
        if unsafe is not None:
            raise CheckpointError(
                f"checkpoint {path} is corrupt or unsafe: it holds objects other than tensors and "
                f"plain data ({unsafe}) and is refused as unsafe (UnpicklingError)"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unsafe: its data cannot be read by the safe "
            f"loader (UnpicklingError)"
        ) from None
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unsafe: its contents cannot be read "
            f"({type(exc).__name__})"
        ) from None


def _refused_global(message: str) -> str | None:
    """The global torch's safe unpickler refused (sanitized), or None if it refused none."""
    m = re.search(r"GLOBAL (\S+) was not an allowed global|whose module (\S+) is blocked", message)
    if m is None:
        return None
    name = re.sub(r"[^\w.]", "", m.group(1) or m.group(2))[:80]
    return name or "a refused global"


def _check_format(state: Any, path: Path) -> None:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a gzoo checkpoint")
    version = state.get("format_version", 0)
    if not _is_int(version) or version < 0:
        raise _invalid(path, "format_version", "must be a non-negative integer", version)
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer gzoo (format {version}); upgrade gzoo"
        )


# -- structure -----------------------------------------------------------------------------------


def validate_state(state: dict[str, Any], path: Path | str) -> None:
    """Check the fields a run is rebuilt from; raise :class:`CheckpointError` naming the field.

    ``config`` must be a dict; ``step`` and ``d_steps`` non-negative ints; ``image_shape`` 1 to
    3 positive ints, each at most :data:`MAX_IMAGE_DIM`, with at most :data:`MAX_IMAGE_NUMEL`
    elements; ``num_classes`` an int in ``[0, MAX_NUM_CLASSES]``; ``G`` and ``D`` (and
    ``G_ema`` unless None) dicts of tensors.
    """
    path = Path(path)
    if not isinstance(state.get("config"), dict):
        raise _invalid(path, "config", "must be a dict", state.get("config", _MISSING))
    for key in ("step", "d_steps"):
        value = state.get(key, _MISSING)
        if not _is_int(value) or value < 0:
            raise _invalid(path, key, "must be a non-negative integer", value)
    _check_image_shape(state.get("image_shape", _MISSING), path)
    classes = state.get("num_classes", _MISSING)
    if not _is_int(classes) or not 0 <= classes <= MAX_NUM_CLASSES:
        rule = f"must be an integer in [0, {MAX_NUM_CLASSES}]"
        raise _invalid(path, "num_classes", rule, classes)
    for key in ("G", "D"):
        _check_tensor_dict(state.get(key, _MISSING), key, path)
    if state.get("G_ema") is not None:
        _check_tensor_dict(state["G_ema"], "G_ema", path)


class _Missing:
    def __repr__(self) -> str:
        return "missing"


_MISSING = _Missing()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_image_shape(shape: Any, path: Path) -> None:
    rule = f"must be 1 to 3 positive integers, each at most {MAX_IMAGE_DIM}"
    if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 3:
        raise _invalid(path, "image_shape", rule, shape)
    if not all(_is_int(d) and 0 < d <= MAX_IMAGE_DIM for d in shape):
        raise _invalid(path, "image_shape", rule, shape)
    if math.prod(shape) > MAX_IMAGE_NUMEL:
        raise _invalid(path, "image_shape", f"must have at most {MAX_IMAGE_NUMEL} elements", shape)


def _check_tensor_dict(value: Any, key: str, path: Path) -> None:
    if not isinstance(value, dict):
        raise _invalid(path, key, "must be a dict of tensors", value)
    for name, t in value.items():
        if not isinstance(name, str) or not isinstance(t, Tensor):
            shown = f"entry {_short(name)}: {type(t).__name__}"
            raise _invalid(path, key, "must be a dict of tensors", shown=shown)


def _invalid(
    path: Path, field: str, rule: str, value: Any = None, *, shown: str | None = None
) -> CheckpointError:
    shown = _short(value) if shown is None else shown
    return CheckpointError(f"checkpoint {path} is invalid: field {field!r} {rule} (got {shown})")


def _short(value: Any) -> str:
    """A one-line, bounded description of an untrusted value."""
    if isinstance(value, (Mapping, list, tuple)) and len(value) > 8:
        return f"{type(value).__name__} of {len(value)} items"
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- weights -------------------------------------------------------------------------------------


def nonfinite(tensors: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]]) -> list[str]:
    """Names of the floating-point (or complex) tensors holding NaN or inf, in order.

    Takes a state dict or ``(name, tensor)`` pairs, e.g.
    ``itertools.chain(module.named_parameters(), module.named_buffers())``. Other values
    (integer tensors, non-tensors, meta tensors) are skipped.
    """
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    return [name for name, t in items if _checkable(t) and not bool(torch.isfinite(t).all())]


def _checkable(t: Any) -> bool:
    return isinstance(t, Tensor) and not t.is_meta and (t.is_floating_point() or t.is_complex())


# -- locating ------------------------------------------------------------------------------------


def find_checkpoint(run_dir: Path, which: str = "last") -> Path:
    """``run_dir/checkpoints/<which>.pt`` for ``last``/``best``, else ``which`` as a path."""
    run_dir = Path(run_dir)
    if which in ("last", "best"):
        if not run_dir.is_dir():
            raise UsageError(f"run directory {run_dir} does not exist")
        path = run_dir / "checkpoints" / f"{which}.pt"
        if not path.is_file():
            folder = run_dir / "checkpoints"
            have = sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []
            raise CheckpointError(
                f"no {which!r} checkpoint in {run_dir}; available: "
                f"{', '.join(have) or 'none (is this a gzoo run directory?)'}"
            )
        return path
    path = Path(which)
    if not path.is_absolute() and not path.exists():
        path = run_dir / which
    return path
