"""Two gzoo runs on one machine: how much of its solo speed does each keep?

Runs the same training job alone, then two copies at once, and reports the training-loop time
of each (the ``time`` of its last metrics.jsonl row: imports and start-up excluded). Rows:

* ``busy-wait``: OpenMP's default wait policy, as gzoo ran before its entry point chose one
  (torch is imported before gzoo's ``main``, so the setting cannot reach OpenMP);
* ``passive wait``: ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once), gzoo's setting from
  issue 9 until issue 11's speed work;
* ``gzoo default``: the ``gzoo`` command as shipped (``gzoo.runtime.configure``: GNU OpenMP's idle
  threads spin about 30 microseconds, then sleep);
* ``--threads 1``: the default plus one thread per job.

Target (issue 9): each job of the pair keeps at least 35% of its solo speed on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import child_env, command_line, markdown_table, write_section  # noqa: E402

from gzoo import runtime  # noqa: E402  (no torch: this process only starts the jobs)

JOBS = {
    "mlp-ring": ["--gen", "mlp", "--disc", "mlp", "--data", "ring", "--steps", "1000"],
    "dcgan-digits": ["--gen", "dcgan", "--disc", "dcgan", "--data", "digits", "--steps", "60"],
    "cocgan-digits": ["--gen", "cocgan", "--disc", "coc", "--data", "digits", "--steps", "8"],
}
SPIN = runtime.OPENMP_DEFAULTS["GOMP_SPINCOUNT"]
PASSIVE_BEFORE = "import os; os.environ['OMP_WAIT_POLICY'] = 'PASSIVE'; from gzoo.cli import main; main()"
MODES = {
    "busy-wait (OpenMP default; gzoo before issue 9)": ("import torch; from gzoo.cli import main; main()", []),
    "passive wait (gzoo from issue 9 to issue 11's speed work)": (PASSIVE_BEFORE, []),
    "gzoo default (short spin, then sleep)": ("from gzoo.cli import main; main()", []),
    "gzoo default + --threads 1": ("from gzoo.cli import main; main()", ["--threads", "1"]),
}


def launch(code: str, args: list[str], out: Path) -> subprocess.Popen:
    env = child_env()
    steps = args[args.index("--steps") + 1]
    cmd = [sys.executable, "-c", code, "run", *args, "--quiet", "--sample-every", "0", "--log-every", steps,
           "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def loop_seconds(out: Path) -> float:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return float(rows[-1]["time"])


def measure(code: str, args: list[str], copies: int, work: Path) -> list[float]:
    outs = [work / f"run-{time.monotonic_ns()}-{i}" for i in range(copies)]
    procs = [launch(code, args, o) for o in outs]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"benchmark job failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
    return [loop_seconds(o) for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated: " + ", ".join(JOBS))
    ap.add_argument("--repeats", type=int, default=3, help="solo runs per mode (the median is reported)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for job in a.jobs.split(","):
            for mode, (code, extra) in MODES.items():
                args = JOBS[job] + extra
                solo = statistics.median(measure(code, args, 1, Path(tmp))[0] for _ in range(a.repeats))
                pair = measure(code, args, 2, Path(tmp))
                kept = [solo / p for p in pair]
                rows.append([job, mode, f"{solo:.1f}", " / ".join(f"{p:.1f}" for p in pair),
                             " / ".join(f"{k:.0%}" for k in kept), "yes" if min(kept) >= 0.35 else "**no**"])
                print(rows[-1], flush=True)
    headers = ["job", "mode", "alone: loop s", "two at once: loop s (each)", "speed kept (each)", ">= 35%"]
    table = markdown_table(headers, rows)
    print(table)
    if a.no_write:
        return
    md = (
        "## Two runs on one machine (thread oversubscription)\n\n"
        f"The same `gzoo run` job alone, then two copies started together, on this {os.cpu_count()}-core machine; "
        "seconds of the training loop (start-up excluded; alone: the median of "
        f"{a.repeats} runs). 'Speed kept' is the solo time over the time of each job of the pair; the target is at "
        "least 35% each. `busy-wait` imports torch before gzoo's entry point sets how OpenMP waits, which is how "
        "every `gzoo run` behaved before issue 9; `passive wait` is gzoo's setting from then until issue 11's speed "
        "work (`OMP_WAIT_POLICY=PASSIVE`: idle threads sleep at once); `gzoo default` is `gzoo.runtime.configure()`: "
        f"GNU OpenMP's idle threads spin `GOMP_SPINCOUNT={SPIN}` times (about {int(SPIN) // 100} microseconds), then "
        "sleep. Compare the 'alone' column across modes for what a wait policy costs a job "
        "that has the machine to itself.\n\n"
        f"{table}\n\nCommand: `{command_line()}`"
    )
    write_section("threads", md)


if __name__ == "__main__":
    main()
