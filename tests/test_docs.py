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


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", (ROOT / "docs" / page).read_text(), re.S)


def test_writing_plugins_snippets_work(register_plugin, tmp_path):
    """The plugin guide's code runs as written: its components pass gzoo's contract checks,
    train together, and its metric family scores its dataset."""
    import gzoo
    from gzoo.config import RunConfig
    from gzoo.default_plugins.evaluation import evaluate_samples
    from gzoo.testing import check_component
    from gzoo.trainer import train

    ns: dict = {}
    for block in _python_blocks("writing-plugins.md"):
        if "pytest_plugins" in block:  # the conftest line of the test-kit examples
            block = block.replace('pytest_plugins = ["gzoo.testing"]', "")
        exec(compile(block, "writing-plugins.md", "exec"), ns)  # noqa: S102

    def moons_family(*, n: int = 10000, noise: float = 0.05, split: str = "train"):
        ds = ns["moons"](n=n, noise=noise, split=split)
        ds.measured_by = "mean-gap"  # as the guide says, for the family it registers
        return ds

    class Guide:
        @gzoo.hookimpl
        def gzoo_register_components(self, register):
            register("generator", "resmlp", ns["ResMLPGenerator"])
            register("discriminator", "resmlp", ns["ResMLPDiscriminator"])
            register("loss", "rahinge", ns["RelativisticHinge"])
            register("regularizer", "zgp", ns["ZeroCenteredGP"])
            register("dataset", "moons", moons_family)
            register("metric", "mean-gap", ns["MeanGap"])

    register_plugin(Guide(), "guide")
    register_plugin(ns["plugin"], "gradlog")
    for kind, name in (("generator", "resmlp"), ("discriminator", "resmlp"), ("loss", "rahinge"),
                       ("regularizer", "zgp"), ("dataset", "moons"), ("metric", "mean-gap")):
        check_component(kind, name, **({"dataset": "moons"} if kind == "metric" else {}))
    t = train(RunConfig(gen="resmlp", disc="resmlp", loss="rahinge", reg=["zgp"], data="moons", steps=4,
                        batch_size=16, sample_every=0, progress=False, log_every=1,
                        plugin_opt={"gradlog": {"every": 2}}, out=str(tmp_path / "r")))
    rows = (t.run_dir / "metrics.jsonl").read_text()
    assert "grad_g" in rows  # the logging hook ran with its option
    assert "mean_gap" in evaluate_samples(t.generate(500), t.data)
