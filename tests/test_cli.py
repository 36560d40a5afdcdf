"""The command line, end to end, through the console-script entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gzoo.cli import cli as cli_group

from .conftest import FAST

SUBCOMMANDS = sorted(cli_group.commands)
RING = ["--gen", "mlp", "--disc", "mlp", "--data", "ring", "--gen-opt", "hidden=32", "--disc-opt", "hidden=32"]


def test_subcommands_exist():
    assert {"list", "plugins", "run", "sample", "eval", "viz"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help(cli, sub):
    r = cli(*([sub] if sub else []), "--help")
    assert r.exit_code == 0, r.output
    assert "Usage: gzoo" in r.stdout


def test_version(cli):
    import gzoo

    r = cli("--version")
    assert r.exit_code == 0 and gzoo.__version__ in r.stdout


def test_list_json_matches_registry(cli, pm):
    r = cli("list", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    listed = {(c["kind"], c["name"]) for c in data["components"]}
    assert listed == {(s.kind, s.name) for s in pm.registry.list()}
    assert {p["name"] for p in data["presets"]} == set(pm.registry.presets)
    r = cli("list", "--kind", "loss", "--json")
    assert {c["kind"] for c in json.loads(r.stdout)["components"]} == {"loss"}
    r = cli("list", "--kind", "losss")
    assert r.exit_code == 2 and "Did you mean 'loss'" in r.stderr
    assert "mlp" in cli("list").stdout


def test_plugins_json(cli):
    r = cli("plugins", "--json")
    assert r.exit_code == 0
    names = {p["name"] for p in json.loads(r.stdout)}
    assert {"classic", "coc", "selfcond", "datasets"} <= names


def test_run_end_to_end_then_sample(cli, tmp_path):
    out = tmp_path / "r"
    r = cli("run", "--gen", "dcgan", "--disc", "dcgan", "--data", "digits", "--gen-opt", "ch=8",
            "--disc-opt", "ch=8", "--steps", "4", "--batch-size", "8", "--sample-every", "2", "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    assert (out / "checkpoints" / "last.pt").exists()
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["step_000002.png", "step_000004.png"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 1
    assert "Done: 4 steps" in r.stderr
    r = cli("sample", "--run", out, "--n", "6", "--out", tmp_path / "s.npy")
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "s.npy").shape == (6, 1, 28, 28)
    r = cli("sample", "--run", out, "--n", "6", "--out", tmp_path / "s.png")
    assert r.exit_code == 0 and (tmp_path / "s.png").stat().st_size > 0


def test_run_2d_and_sample_points(cli, tmp_path):
    out = tmp_path / "r"
    assert cli("run", *RING, *FAST, "--out", out).exit_code == 0
    r = cli("sample", "--run", out, "--n", "5", "--out", tmp_path / "p.pt")
    assert r.exit_code == 0, r.output
    assert torch.load(tmp_path / "p.pt").shape == (5, 2)
    assert cli("sample", "--run", out, "--n", "50", "--out", tmp_path / "p.png").exit_code == 0


def test_resume_via_cli_equals_one_run(cli, tmp_path):
    base = [*RING, "--batch-size", "8", "--sample-every", "0", "--quiet"]
    assert cli("run", *base, "--steps", "6", "--out", tmp_path / "a").exit_code == 0
    assert cli("run", *base, "--steps", "3", "--out", tmp_path / "b").exit_code == 0
    r = cli("run", "--resume", tmp_path / "b", "--steps", "6", "--quiet")
    assert r.exit_code == 0, r.output
    from gzoo.run import load_run

    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    assert b.step == 6
    for k, v in a.G.state_dict().items():
        assert torch.equal(v, b.G.state_dict()[k])


def test_preset_config_file_and_flags_precedence(cli, tmp_path, pm):
    name = "wgan-gp"  # loss wgan, reg gp, n_critic 5, lr 1e-4
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gen: mlp\ndisc: mlp\ndata: ring\nbatch_size: 8\nlr: 0.001\ngen_opt: {hidden: 16}\ndisc_opt: {hidden: 16}\n")
    r = cli("run", "--preset", name, "--config", cfg, "--lr", "0.003", "--steps", "1", "--quiet",
            "--sample-every", "0", "--out", tmp_path / "r", "--n-critic", "2")
    assert r.exit_code == 0, r.output
    import yaml

    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["gen"] == "mlp" and saved["batch_size"] == 8  # from the config file
    assert saved["loss"] == "wgan" and saved["reg"] == ["gp"]  # from the preset
    assert saved["lr"] == 0.003 and saved["n_critic"] == 2  # flags override both


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--gen", "dcgn"], "Did you mean 'dcgan'"),
        (["run", "--loss", "wgna"], "Did you mean 'wgan'"),
        (["run", "--data", "rnig"], "Did you mean 'ring'"),
        (["run", "--gen-opt", "chh=3"], "Valid options: latent_dim=100, ch=32"),
        (["run", "--gen-opt", "ch=wide"], "must be int"),
        (["run", "--gen-opt", "ch"], "expects KEY=VALUE"),
        (["run", "--gen", "dcgan", "--data", "ring"], "works on images"),
        (["run", "--gen", "mlp", "--disc", "dcgan", "--data", "ring"], "dcgan discriminator works on images"),
        (["run", "--data", "digits", "--data-opt", "resolution=20"], "supports square images of [28, 32, 64]"),
        (["run", "--data", "mnist", "--data-root", "/nonexistent"], "download=true"),
        (["run", "--preset", "nope"], "unknown preset"),
        (["run", "--optimizer", "sgd"], "'sgd' is not one of"),
        (["run", "--cond", "label"], "Did you mean 'labels'"),
        (["run", "--bogus"], "No such option"),
        (["run", "--config", "/nonexistent.yaml"], "does not exist"),
        (["run", "--reg", "gp", "--reg", "r1", "--reg-opt", "weight=1"], "ambiguous"),
        (["run", "--reg-opt", "gp.weight=1"], "not in --reg"),
        (["run", "--batch-size", "0"], "positive integer"),
        (["sample", "--run", "/nonexistent", "--out", "x.png"], "does not exist"),
        (["sample", "--run", ".", "--out", "x.gif"], ".png, .npy or .pt"),
        (["eval", "--run", "/nonexistent"], "does not exist"),
    ],
)
def test_usage_errors_are_one_line_exit_2(cli, args, message):
    r = cli(*args, "--quiet") if args[0] == "run" else cli(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_corrupt_checkpoint_exit_1_without_traceback(cli, tmp_path):
    out = tmp_path / "r"
    assert cli("run", *RING, *FAST, "--out", out).exit_code == 0
    (out / "checkpoints" / "last.pt").write_bytes(b"garbage")
    for args in (["sample", "--run", out, "--out", tmp_path / "x.png"], ["run", "--resume", out, "--steps", "5"]):
        r = cli(*args)
        assert r.exit_code == 1 and "corrupt" in r.stderr and "Traceback" not in r.output


def test_failed_run_leaves_no_run_directory(cli, tmp_path):
    r = cli("run", "--gen", "dcgan", "--data", "ring", "--out", tmp_path / "r")
    assert r.exit_code == 2 and not (tmp_path / "r").exists()


def test_list_kind_help_names_every_kind(cli):
    from gzoo.registry import KINDS

    text = " ".join(cli("list", "--help").stdout.split())
    for kind in (*KINDS, "preset"):
        assert kind in text, f"gzoo list --help does not name kind {kind!r}"
