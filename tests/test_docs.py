"""Docs stay honest: the README's test command is what CI runs, and every CLI option is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gzoo.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b).strip()
    assert test_cmd in ci.splitlines(), f"{test_cmd!r} is not a line of .ci/run"
    assert blocks[0].strip() == "pip install -e . && gzoo run"


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_cli_option_is_in_docs(name):
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert f"## gzoo {name}" in doc
    for param in cli.commands[name].params:
        for opt in param.opts:
            assert opt in doc, f"docs/cli.md lacks {opt} of gzoo {name}"


@pytest.mark.parametrize("page", ["quickstart", "cli", "writing-plugins", "architecture"])
def test_required_docs_exist(page):
    assert (ROOT / "docs" / f"{page}.md").stat().st_size > 500
