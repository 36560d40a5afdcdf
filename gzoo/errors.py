"""Errors that reach the user as one clear line, without a traceback.

The CLI turns :class:`UsageError` into exit code 2 (bad names, options, shapes,
missing datasets) and every other :class:`GzooError` into exit code 1 (a run that
diverged, a corrupt checkpoint).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GzooError(Exception):
    """Base class of every error gzoo reports to users."""

    exit_code = 1


class UsageError(GzooError):
    """The user asked for something that cannot work (exit code 2)."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """An unknown component, option or preset name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ShapeError(UsageError):
    """Components or data whose shapes cannot work together."""


class DatasetNotFoundError(UsageError):
    """A dataset whose files are absent; the message says how to get them."""


class CheckpointError(GzooError):
    """A checkpoint that is missing, corrupt or not gzoo's."""


class TrainingError(GzooError):
    """Training stopped on an unexpected error; what was saved is in the message."""


class DivergenceError(GzooError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return a ``did you mean ...?`` hint for ``name`` (or an empty string)."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, shortened: for one-line error reports."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."
