"""The run directory: choosing it, locking it against a second writer, and its log.

One process writes a run directory at a time. :class:`RunLock` takes an exclusive lock on
``<run>/.gzoo.lock`` (``flock``, which the kernel releases when the process ends, even after
``kill -9``; the file records the owner's pid for the error message). Where ``flock`` is
missing, the lock file is created exclusively and a stale one, whose pid no longer runs, is
taken over. A second ``gzoo run`` on the same directory stops with exit code 2 before it
writes anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import UsageError

LOCK_NAME = ".gzoo.lock"
#: files that mark a directory as holding (the start of) a run.
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoints", "samples")

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """An exclusive, process-wide lock on a run directory (a context manager)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        writable(self.run_dir)
        try:
            if fcntl is not None:
                self._fd = self._flock()
            else:  # pragma: no cover - not POSIX
                self._fd = self._exclusive_create()
        except OSError as exc:
            raise UsageError(f"cannot write to run directory {self.run_dir}: {exc.strerror or exc}") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def _flock(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._busy()
        return fd

    def _exclusive_create(self) -> int:  # pragma: no cover - not POSIX
        for _ in range(2):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = self._owner()
                if pid is not None and _alive(pid):
                    self._busy()
                self.path.unlink(missing_ok=True)  # stale: its process is gone
        self._busy()
        raise AssertionError("unreachable")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _busy(self) -> None:
        pid = self._owner()
        who = f"gzoo process {pid}" if pid else "another gzoo process"
        raise UsageError(
            f"run directory {self.run_dir} is in use by {who}; wait for it to finish, or use another --out"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        else:  # pragma: no cover - not POSIX
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _alive(pid: int) -> bool:  # pragma: no cover - not POSIX
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def writable(path: Path) -> None:
    """Create ``path`` (a directory) if needed; one clear line when that is impossible."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to run directory {path}: permission denied")


def holds_run(path: Path) -> list[str]:
    """The run files already in ``path`` (empty when it holds no run)."""
    return [name for name in RUN_FILES if (path / name).exists()]


def choose_run_dir(out: str | None, default_name: str) -> Path:
    """``out``, else the first of ``runs/<name>``, ``runs/<name>-1``... that holds no run."""
    if out:
        return Path(out)
    base = Path("runs") / default_name
    path, i = base, 1
    while holds_run(path):
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


def check_fresh(path: Path) -> None:
    """Refuse to start a new run in a directory that holds one (or the remains of one)."""
    if (path / "checkpoints" / "last.pt").exists():
        raise UsageError(f"{path} already holds a run; use --resume {path} to continue it, or another --out")
    found = holds_run(path)
    if found:
        raise UsageError(
            f"{path} holds files of an earlier run without a checkpoint ({', '.join(found)}); "
            "delete them or use another --out"
        )


def trim_log(path: Path, step: int) -> int:
    """Drop rows of ``metrics.jsonl`` logged after ``step`` (a resumed run redoes those
    steps); returns how many were dropped. Lines that are not JSON rows are kept."""
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row_step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            row_step = None
        if isinstance(row_step, int | float) and row_step > step:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(x + "\n" for x in keep))
        os.replace(tmp, path)
    return dropped
