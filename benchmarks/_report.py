"""Shared helpers for benchmark scripts: print a table and write it into docs/benchmarks.md.

Each script owns one section of ``docs/benchmarks.md``, delimited by
``<!-- BEGIN name -->`` / ``<!-- END name -->``; rerunning a script replaces only its
own section, so the scripts can run in any order.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
IMAGES = ROOT / "docs" / "benchmarks"  #: pictures linked from docs/benchmarks.md
HEADER = (
    "# Benchmarks\n\n"
    "Every table below is written by a script in `benchmarks/`; the command that produced it\n"
    "is given with it. Ratios are measured side by side in one run (these machines are noisy).\n"
)


def child_env(**settings: str) -> dict[str, str]:
    """This process's environment for a benchmark's child process, without the variables that set how
    its OpenMP threads wait and how many there are (the user's, or gzoo's from ``gzoo.runtime``), plus
    ``settings``: every child starts from the same ground and gets only what its row names."""
    from gzoo import runtime  # no torch

    cleared = (*runtime.OPENMP_USER_VARS, "OMP_NUM_THREADS", "GZOO_THREADS")
    return {**{k: v for k, v in os.environ.items() if k not in cleared}, **settings}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: Sequence[float], digits: int = 3) -> str:
    import statistics

    if not values:
        return "-"
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.{digits}g} ± {s:.{digits}g}"


def command_line() -> str:
    """The command that ran this script, for the report."""
    return "python " + " ".join(shlex.quote(a) for a in [_rel(sys.argv[0]), *sys.argv[1:]])


def _rel(p: str) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return p


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) section ``name`` of docs/benchmarks.md with ``markdown``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- BEGIN {name} -->\n{markdown.strip()}\n<!-- END {name} -->"
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote section {name!r} of {path}")


def publish_picture(src: str | Path, name: str, alt: str = "") -> str:
    """Copy ``src`` to ``docs/benchmarks/<name>`` and return its markdown image link. A PNG whose
    three channels are equal is stored as 8-bit grayscale (a third of the bytes)."""
    from PIL import Image, ImageChops

    IMAGES.mkdir(parents=True, exist_ok=True)
    im = Image.open(src)
    if im.mode == "RGB":
        r, g, b = im.split()
        if ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(r, b).getbbox() is None:
            im = r
    im.save(IMAGES / name, optimize=True)
    return f"![{alt or name}](benchmarks/{name})"
