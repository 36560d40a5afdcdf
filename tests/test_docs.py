"""Docs stay honest: the README's test command is what CI runs, and every CLI option is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gzoo.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_both_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert blocks[0].strip() == "pip install -e . && gzoo run"
    test_cmd = next(b for b in blocks if "pytest" in b).strip()
    lines = ci.splitlines()
    for cmd in (blocks[0].strip(), test_cmd):
        assert cmd in lines, f"{cmd!r} is not a line of .ci/run"
    # the user's command runs first, in its own venv, without the test extras
    first, second = lines.index(blocks[0].strip()), lines.index(test_cmd)
    venvs = [i for i, line in enumerate(lines) if line.startswith("fresh_venv ")]
    assert len(venvs) == 2 and venvs[0] < first < venvs[1] < second


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
