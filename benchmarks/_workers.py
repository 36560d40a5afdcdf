"""Worker processes driven in alternating rounds, for benchmarks that compare settings of a process.

Some settings (how OpenMP's idle threads wait, for one) are fixed before torch loads, so a benchmark
that compares them needs one process per setting. To let every setting see the same load, the
parent runs them in rounds: it asks one worker at a time for a round (the others wait on their
input, idle), and reverses the order every other round.

The protocol, one JSON object per line: a worker prints one line when it is ready (what it wants to
report once, e.g. FLOP counts), then answers every ``round`` line on its input with one line, and
stops at the end of its input.

    # worker
    serve(ready={"flops": ...}, round_=lambda: {"s": time_steps()})

    # parent
    with Rounds({"a": ([sys.executable, __file__, "--worker", "a"], env_a), ...}) as workers:
        ready = workers.ready()
        for r, replies in workers.rounds(9):
            ...
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any


def serve(ready: Mapping[str, Any], round_: Callable[[], Mapping[str, Any]]) -> None:
    """The worker's side: report ``ready``, then one ``round_()`` per ``round`` line on stdin."""
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        print(json.dumps(round_()), flush=True)


class Rounds:
    """The parent's side: start one worker per label (``label -> (argv, environment)``), in order."""

    def __init__(self, commands: Mapping[str, tuple[Sequence[str], Mapping[str, str]]]):
        self.procs = {label: subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, text=True)
                      for label, (argv, env) in commands.items()}

    def __enter__(self) -> Rounds:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.stdin and not proc.stdin.closed:
                proc.stdin.close()
        for proc in self.procs.values():
            proc.wait()

    def _ask(self, label: str, line: str | None = None) -> dict[str, Any]:
        proc = self.procs[label]
        if line is not None:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        reply = proc.stdout.readline()
        if not reply:
            raise SystemExit(f"benchmark worker {label!r} stopped (exit code {proc.wait()})")
        return json.loads(reply)

    def ready(self) -> dict[str, dict[str, Any]]:
        """Every worker's ready line, read in order (each builds its models, then waits)."""
        return {label: self._ask(label) for label in self.procs}

    def rounds(self, n: int) -> Iterator[tuple[int, dict[str, dict[str, Any]]]]:
        """``n`` rounds, one worker at a time, in the workers' order on even rounds and reversed on
        odd ones; yields the round's index and each worker's reply."""
        labels = list(self.procs)
        for r in range(n):
            order = labels if r % 2 == 0 else labels[::-1]
            replies = {label: self._ask(label, "round") for label in order}
            yield r, {label: replies[label] for label in labels}
