"""The ``gzoo`` command line: list, plugins, run, sample, eval, viz.

Heavy imports (torch, plugins) happen inside the commands, so ``gzoo --help`` is fast.
Errors reach the user as one line without a traceback: exit code 2 for usage errors
(bad names, options, shapes, missing data), 1 for other failures (divergence, corrupt
checkpoints), 130 after Ctrl-C (a checkpoint is saved first).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _console(stderr: bool = False, quiet: bool = False) -> Any:
    """A rich console; ``quiet`` prints nothing (the other ranks of a torchrun job)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, quiet=quiet)


def _parse_kv(values: tuple[str, ...], flag: str) -> dict[str, Any]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        key = key.strip()
        if key == "insert" and key in out:  # --gen-opt insert=A@8 --gen-opt insert=B@16: both blocks
            prev = out[key]
            out[key] = [*(prev if isinstance(prev, list) else [prev]), value]
        else:
            out[key] = value
    return out


def _parse_reg_opts(values: tuple[str, ...], regs: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in _parse_kv(values, "--reg-opt").items():
        name, dot, opt = key.rpartition(".")
        if not dot:
            if len(regs) != 1:
                raise click.UsageError(
                    f"--reg-opt {key}=... is ambiguous with {len(regs)} regularizers {regs}; write NAME.{key}=VALUE"
                )
            name, opt = regs[0], key
        out.setdefault(name, {})[opt] = value
    return out


def _parse_plugin_opts(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in _parse_kv(values, "--plugin-opt").items():
        plugin, dot, opt = key.partition(".")
        if not dot or not plugin or not opt:
            raise click.UsageError(f"--plugin-opt expects PLUGIN.KEY=VALUE, got {key}={value}")
        out.setdefault(plugin, {})[opt] = _yaml_scalar(value)
    return out


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="gzoo")
def cli() -> None:
    """gzoo: a plugin-based zoo of GAN generators, discriminators, losses and regularizers.

    \b
    Try:  gzoo run                      (a small DCGAN on scikit-learn's digits, CPU)
          gzoo list                     (every registered component)
          gzoo run --gen cocgan --disc coc --loss wgan
    """


# -- list / plugins ---------------------------------------------------------------------------------


@cli.command("list")
@click.argument("name", required=False)
@click.option("--kind", "-k", help="Only this kind (generator, discriminator, loss, regularizer, block, dataset, conditioner, visualizer, metric, preset); with NAME, the one of that kind.")
@click.option("--filter", "pattern", help="Only names matching this glob, e.g. '*coc*'.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(name: str | None, kind: str | None, pattern: str | None, as_json: bool) -> None:
    """List registered components and presets; `gzoo list NAME` shows one in detail.

    \b
    gzoo list                      every component and preset
    gzoo list dcgan                the generator and the discriminator 'dcgan', with options
    gzoo list dcgan --kind discriminator --json
    """
    from .plugins import get_plugin_manager

    reg = get_plugin_manager().registry
    if name is not None:
        if pattern is not None:
            raise click.UsageError("give a NAME or --filter, not both")
        _show_one(reg, name, kind, as_json)
        return
    want_presets = kind in (None, "preset")
    specs = [] if kind == "preset" else reg.list(kind, pattern)
    presets = {n: p for n, p in sorted(reg.presets.items()) if want_presets and (pattern is None or _match(n, pattern))}
    if as_json:
        data = {"components": [s.describe() for s in specs]}
        if want_presets:
            data["presets"] = [{"name": n, "plugin": reg.preset_plugins[n], "settings": p} for n, p in presets.items()]
        click.echo(json.dumps(data, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title="gzoo components", show_lines=False)
    for col in ("kind", "name", "plugin", "summary", "options"):
        table.add_column(col, overflow="fold")
    for s in specs:
        opts = ", ".join(f"{o.name}={o.default!r}" for o in s.options.values())
        name = s.name + (f" ({', '.join(s.aliases)})" if s.aliases else "")
        table.add_row(*_plain(s.kind, name, s.plugin, s.summary, opts))
    for n, p in presets.items():
        table.add_row(*_plain("preset", n, reg.preset_plugins[n], ", ".join(f"{k}={v}" for k, v in p.items()), ""))
    _console().print(table)


#: how options of each kind are set on the command line (``gzoo list NAME`` says it).
OPTION_FLAGS = {
    "generator": "gzoo run --gen-opt KEY=VALUE",
    "discriminator": "gzoo run --disc-opt KEY=VALUE",
    "loss": "gzoo run --loss-opt KEY=VALUE",
    "regularizer": "gzoo run --reg-opt {name}.KEY=VALUE",
    "dataset": "gzoo run --data-opt KEY=VALUE",
    "conditioner": "gzoo run --cond-opt KEY=VALUE",
    "visualizer": "gzoo viz --opt KEY=VALUE",
}


def _show_one(reg: Any, name: str, kind: str | None, as_json: bool) -> None:
    """``gzoo list NAME``: every component (or preset) called NAME, or the one of ``kind``."""
    from .config import WGAN_CLIP, default_reg_text, labelled_regs, wgan_clip, wgan_clip_text
    from .errors import UnknownNameError, suggest

    if kind == "preset":
        reg.get_preset(name)  # unknown: one line with did-you-mean
        specs, presets = [], [name]
    elif kind is not None:
        specs, presets = [reg.get(kind, name)], []
    else:
        specs, presets = reg.find(name), [name] if name in reg.presets else []
        if not specs and not presets:
            raise UnknownNameError(f"no component or preset is called {name!r}.{suggest(name, reg.names())} "
                                   "See `gzoo list` for every name.")
    if as_json:
        items = [s.describe() for s in specs]
        items += [{"name": p, "kind": "preset", "plugin": reg.preset_plugins[p], "settings": reg.presets[p]}
                  for p in presets]
        click.echo(json.dumps(items[0] if len(items) == 1 else items, indent=2, default=str))
        return
    from rich.table import Table

    console = _console()

    def facts(rows: list[tuple[str, str]]) -> None:
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column(overflow="fold")
        for key, value in rows:
            head.add_row(*_plain(key, value or "-"))
        console.print(head)

    for spec in specs:
        rows = [("kind", spec.kind), ("name", spec.name), ("plugin", spec.plugin), ("paper", spec.paper),
                ("summary", spec.summary), ("aliases", ", ".join(spec.aliases))]
        if spec.kind in ("generator", "discriminator"):
            rows.append(("conditional", "yes (takes num_classes)" if spec.conditional else "no"))
        if spec.default_reg:
            labelled = labelled_regs(reg, spec.default_reg)
            rows.append(("default reg", f"{default_reg_text(spec.default_reg, spec.default_reg_opt, labelled)} (when a run "
                                        "names none and its loss is not a Wasserstein one; --reg none: no regularizer)"))
        if spec.wasserstein_opt:
            rows.append(("wasserstein opt", " ".join(f"{k}={v}" for k, v in spec.wasserstein_opt.items())
                         + " (under a Wasserstein loss, unless the run sets them with --gen-opt)"))
        clip = wgan_clip(spec.factory)
        if spec.kind == "discriminator" and clip != WGAN_CLIP:  # what --reg clip does to this model
            rows.append(("wgan clip", f"{wgan_clip_text(clip)} (--reg clip, or a Wasserstein loss's added "
                                      "clipping, without clip.clip or clip.params)"))
        facts(rows)
        if not spec.options:
            console.print("no options\n")
            continue
        how = OPTION_FLAGS.get(spec.kind, "").format(name=spec.name)
        table = Table(title="options" + (f" (set with {how})" if how else ""), title_justify="left")
        for col in ("option", "type", "default", "help"):
            table.add_column(col, overflow="fold")
        for o in spec.options.values():
            table.add_row(*_plain(o.name, o.type_name, repr(o.default), o.help or "-"))
        console.print(table)
        console.print()
    for p in presets:
        facts([("kind", "preset"), ("name", p), ("plugin", reg.preset_plugins[p]),
               ("settings", ", ".join(f"{k}={v}" for k, v in reg.presets[p].items())),
               ("use", f"gzoo run --preset {p}")])
        console.print()


def _plain(*cells: str) -> list[str]:
    """Cells shown as written: plugin text such as ``[int]`` is not rich markup."""
    from rich.markup import escape

    return [escape(str(c)) for c in cells]


def _match(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(name, pattern)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List loaded plugins (built-in and third-party), their hooks and what was skipped."""
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    rows = [vars(i) for i in pm.info.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"gzoo {__version__} plugins" + ("" if pm.autoload else " (third-party autoload disabled)"))
    for col in ("name", "module", "distribution", "version", "built-in", "components", "hooks", "conflicts",
                "status"):
        table.add_column(col, overflow="fold")
    for i in pm.info.values():
        status = i.error or ("; ".join(f"skipped {p}" for p in i.problems) if i.problems else "ok")
        table.add_row(*_plain(i.name, i.module, i.dist, i.version, "yes" if i.builtin else "no",
                              str(len(i.components)), ", ".join(h.removeprefix("gzoo_") for h in i.hooks) or "-", ", ".join(i.conflicts) or "-",
                              status))
    _console().print(table)


# -- shared options ---------------------------------------------------------------------------------


def threads_option(f: Any) -> Any:
    return click.option(
        "--threads", type=click.IntRange(min=1), envvar="GZOO_THREADS",
        help="CPU threads for torch (default: torch's choice, one per core). Lower it when "
             "several jobs share the machine.",
    )(f)


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def force_option(f: Any) -> Any:
    return click.option("--force", is_flag=True, help="Overwrite --out if it exists.")(f)


def _check_out(path: Path, force: bool) -> None:
    """Refuse to destroy a run's checkpoints, and any existing file without --force."""
    resolved = path.resolve()
    if resolved.parent.name == "checkpoints" and any(
        (resolved.parent.parent / f).exists() for f in ("config.yaml", "metrics.jsonl")
    ):
        raise click.UsageError(f"--out {path} is inside a run's checkpoints/ folder; write elsewhere")
    if path.exists() and not force:
        raise click.UsageError(f"--out {path} exists; pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise click.UsageError(f"--out {path} is a directory")


# -- run --------------------------------------------------------------------------------------------

RUN_FLAGS = {
    # flag name -> RunConfig key
    "gen": "gen", "disc": "disc", "loss": "loss", "reg": "reg", "data": "data", "steps": "steps",
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "lr_d": "lr_d", "n_critic": "n_critic",
    "optimizer": "optimizer", "cosine": "cosine", "grad_clip": "grad_clip", "ema": "ema", "seed": "seed",
    "out": "out", "device": "device", "cond": "cond", "log_every": "log_every",
    "sample_every": "sample_every", "ckpt_every": "ckpt_every", "eval_every": "eval_every",
    "eval_metric": "eval_metric", "eval_n": "eval_n", "viz": "viz",
    "amp": "amp", "compile": "compile", "channels_last": "channels_last", "sync_bn": "sync_bn",
}


@cli.command(context_settings={"show_default": True})
@click.option("--gen", "-g", help="Generator name.  [default: dcgan]")
@click.option("--disc", "-d", help="Discriminator name.  [default: dcgan]")
@click.option("--loss", "-l", help="Loss name.  [default: nonsaturating]")
@click.option("--reg", "-r", multiple=True,
              help="Regularizer name (repeatable): clip, gp, r1, sn, mismatch ...; none: no regularizer, not even the "
                   "discriminator's default (coc: sn, r1).")
@click.option("--data", help="Dataset name.  [default: digits]")
@click.option("--steps", type=int, help="Generator updates.  [default: 600]")
@click.option("--epochs", type=float, help="Passes over the data (instead of --steps).")
@click.option("--batch-size", "-b", type=int, help="Batch size.  [default: 64]")
@click.option("--lr", type=float, help="Learning rate.  [default: 2e-4]")
@click.option("--lr-d", type=float, help="Discriminator learning rate (default: --lr).")
@click.option("--n-critic", type=int, help="D updates per G update.  [default: 1]")
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop"]), help="Optimizer.  [default: adam]")
@click.option("--cosine/--no-cosine", default=None, help="Cosine learning-rate decay.")
@click.option("--grad-clip", type=float, help="Clip gradient norms (0 = off).")
@click.option("--ema", type=float, help="EMA decay of G weights (0 = off).")
@click.option("--seed", type=int, help="Random seed.  [default: 0]")
@click.option("--out", "-o", help="Run directory.  [default: runs/<gen>-<disc>-<loss>-<data>-s<seed>]")
@click.option("--device", envvar="GZOO_DEVICE", help="auto, cpu, cuda, cuda:N.  [default: auto]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of settings.")
@click.option("--preset", "-p", help="A named preset (gzoo list --kind preset); flags override it.")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run in this directory.")
@click.option("--gen-opt", multiple=True, metavar="K=V", help="Generator option (repeatable).")
@click.option("--disc-opt", multiple=True, metavar="K=V", help="Discriminator option (repeatable).")
@click.option("--loss-opt", multiple=True, metavar="K=V", help="Loss option (repeatable).")
@click.option("--reg-opt", multiple=True, metavar="[REG.]K=V", help="Regularizer option (repeatable).")
@click.option("--data-opt", multiple=True, metavar="K=V", help="Dataset option, e.g. resolution=32.")
@click.option("--data-root", help="Where the dataset's files are (= --data-opt root=...).")
@click.option("--cond", help="Conditioning: 'labels' (dataset labels) or 'selfcond' (k-means on D features).")
@click.option("--cond-opt", multiple=True, metavar="K=V", help="Conditioner option, e.g. k=100.")
@click.option("--plugin-opt", multiple=True, metavar="PLUGIN.K=V",
              help="Option of a plugin that acts through hooks (repeatable); saved in config.yaml.")
@click.option("--log-every", type=int, help="Steps between metrics.jsonl rows.")
@click.option("--sample-every", type=int, help="Steps between sample grids.")
@click.option("--ckpt-every", type=int, help="Steps between checkpoints.")
@click.option("--eval-every", type=int, help="Steps between evaluations (keeps best.pt).")
@click.option("--eval-metric", help="Metric that picks the best checkpoint (default: the data's first, e.g. fid_lenet).")
@click.option("--eval-n", type=int, help="Samples per periodic evaluation.")
@click.option("--viz", multiple=True, help="Visualizer to run with every sample grid (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--nproc", type=click.IntRange(min=1),
              help="Train in N processes on this machine (starts torchrun; --batch-size is the global batch).")
@click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), help="Mixed precision (fp16: CUDA only).  [default: off]")
@click.option("--compile/--no-compile", default=None, help="Train through torch.compile'd G and D.  [default: off]")
@click.option("--channels-last/--no-channels-last", default=None, help="Channels-last memory format.  [default: off]")
@click.option("--sync-bn/--no-sync-bn", default=None,
              help="Under torchrun on CUDA: BatchNorm over all ranks (SyncBatchNorm).  [default: on]")
@threads_option
@click.pass_context
def run(ctx: click.Context, **kw: Any) -> None:
    """Train a GAN. Every flag is optional: plain `gzoo run` trains a small DCGAN on digits.

    Several processes: `gzoo run --nproc N ...`, or `torchrun --nproc_per_node N -m gzoo run ...`
    (also across machines; docs/distributed.md)."""
    from click.core import ParameterSource

    if kw["nproc"] and kw["nproc"] > 1:  # re-run this command under torchrun, in N processes
        import subprocess

        from .distributed import from_env, launch_command, strip_nproc

        if from_env().active:
            raise click.UsageError("--nproc starts torchrun itself; drop it when launching with torchrun")
        cmd = launch_command(kw["nproc"], strip_nproc(_ARGV))
        sys.exit(subprocess.call(cmd))

    from .config import RunConfig, load_yaml
    from .plugins import get_plugin_manager

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    flags: dict[str, Any] = {}
    for name, key in RUN_FLAGS.items():
        if given(name):
            value = kw[name]
            flags[key] = list(value) if isinstance(value, tuple) else value
    if "none" in flags.get("reg", ()):  # no regularizer, not even the discriminator's default one
        if len(flags["reg"]) > 1:
            raise click.UsageError(f"--reg none means no regularizer; it cannot be combined with "
                                   f"{', '.join(r for r in flags['reg'] if r != 'none')}")
        flags["reg"] = []
    for name in ("gen_opt", "disc_opt", "loss_opt", "data_opt", "cond_opt"):
        if kw[name]:
            flags[name] = _parse_kv(kw[name], "--" + name.replace("_", "-"))
    if kw["data_root"]:
        flags.setdefault("data_opt", {})["root"] = kw["data_root"]
    if kw["quiet"]:
        flags["progress"] = False

    _set_threads(kw["threads"])
    pm = get_plugin_manager()
    if kw["resume"]:
        if kw["preset"] or kw["config_file"]:
            raise click.UsageError("--resume continues a run with its own settings; drop --preset/--config")
        if kw["reg_opt"] or kw["plugin_opt"]:
            raise click.UsageError("--reg-opt and --plugin-opt cannot change when resuming")
        from .trainer import resume

        _report(resume(kw["resume"], flags, pm=pm))
        return

    config, explicit = RunConfig(), set(flags)
    if kw["preset"]:
        settings = pm.registry.get_preset(kw["preset"])
        config, explicit = config.updated(settings, source=f"preset {kw['preset']!r}"), explicit | set(settings)
    if kw["config_file"]:
        settings = load_yaml(kw["config_file"])
        config, explicit = config.updated(settings, source=kw["config_file"]), explicit | set(settings)
    if kw["reg_opt"]:
        flags["reg_opt"] = _parse_reg_opts(kw["reg_opt"], flags.get("reg", config.reg))
    if kw["plugin_opt"]:
        flags["plugin_opt"] = _parse_plugin_opts(kw["plugin_opt"])
    config = config.updated(flags, source="command line")

    from rich.markup import escape

    from .trainer import Trainer

    trainer = Trainer(config, pm=pm, explicit={k.replace("-", "_") for k in explicit})
    config = trainer.config
    err = _console(stderr=True, quiet=not trainer.dist.main)  # under torchrun, rank 0 speaks
    for note in trainer.notes:  # settings gzoo chose for the user come first
        err.print(f"[yellow]Note:[/] {escape(note)}")
    err.print(f"[bold]gzoo run[/] {config.gen} + {config.disc}, loss {config.loss}"
              + (f", reg {'+'.join(config.reg)}" if config.reg else "")
              + (f", {config.optimizer} lr {config.lr:g}")
              + f", data {config.data} {tuple(trainer.image_shape)}, {trainer.total_steps} steps on {trainer.device}"
              + f" -> {escape(str(trainer.run_dir))}")
    status = trainer.fit()
    _report(trainer, interrupted=status == "interrupted")


def _report(trainer: Any, *, interrupted: bool = False) -> None:
    err = _console(stderr=True, quiet=not trainer.dist.main)
    last = trainer.run_dir / "checkpoints" / "last.pt"
    if interrupted or trainer._stop_requested:
        err.print(f"Interrupted at step {trainer.step}; checkpoint saved to {last}. "
                  f"Continue with: gzoo run --resume {trainer.run_dir}")
        sys.exit(130)
    samples = sorted((trainer.run_dir / "samples").glob("*.png"))
    err.print(f"Done: {trainer.step} steps. Run directory {trainer.run_dir}: "
              f"checkpoint {last.name}, {len(samples)} sample grid(s) (latest {samples[-1].name if samples else '-'}), metrics.jsonl")


# -- sample / eval / viz ------------------------------------------------------------------------------


#: the largest sample grid ``gzoo sample --out X.png`` draws (larger: write .npy).
MAX_GRID = 10000


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="Run directory.")
@click.option("--n", "n", default=64, show_default=True, type=click.IntRange(min=1), help="Number of samples.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Output: .png grid, .npy (streamed to disk) or .pt raw samples.")
@click.option("--which", default="last", show_default=True, help="Checkpoint: last, best, or a path.")
@click.option("--ema/--no-ema", default=True, show_default=True, help="Use EMA weights when the run has them.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--label", type=int, help="Class label for every sample (conditional runs).")
@click.option("--opt", multiple=True, metavar="K=V", help="Generator-specific sampling option (e.g. resolution=128).")
@click.option("--device", default="cpu", show_default=True, envvar="GZOO_DEVICE")
@force_option
@threads_option
def sample(run_dir: str, n: int, out: str, which: str, ema: bool, seed: int, label: int | None, opt: tuple[str, ...],
           device: str, force: bool, threads: int | None) -> None:
    """Draw samples from a trained run (reads only its checkpoint, never its training data)."""
    path = Path(out)
    if path.suffix not in (".png", ".npy", ".pt"):
        raise click.UsageError(f"--out must end in .png, .npy or .pt, got {path.name!r}")
    _check_out(path, force)
    if path.suffix == ".png" and n > MAX_GRID:
        raise click.UsageError(f"a .png grid holds at most {MAX_GRID} samples, got --n {n}; write .npy for more")
    _set_threads(threads)
    import torch

    from .imaging import save_samples
    from .run import load_run

    run = load_run(run_dir, which, device)
    y = None
    if label is not None:
        if not run.num_classes:
            raise click.UsageError("--label needs a conditional run; this run is unconditional")
        if not 0 <= label < run.num_classes:
            raise click.UsageError(f"--label must be in [0, {run.num_classes - 1}], got {label}")
        y = torch.full((n,), label, dtype=torch.long)
    G = run.generator(ema)
    options = {k: _yaml_scalar(v) if k in G.sample_options else v for k, v in _parse_kv(opt, "--opt").items()}
    batches = run.generate_batches(n, ema=ema, seed=seed, y=y, **options)
    first = next(batches)[0]  # (b, *shape): the shape of what G draws with these options
    _check_size(path, n, first)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        _stream_npy(path, n, first, batches, run)
    else:
        samples = torch.cat([first, *(x for x, _ in batches)])
        _check_finite(samples, run)
        if path.suffix == ".png":
            save_samples(samples, path)
        else:
            torch.save(samples, path)
    _console(stderr=True).print(f"Wrote {n} samples of shape {tuple(first.shape[1:])} from step {run.step} to {path}")


def _yaml_scalar(value: str) -> Any:
    import yaml

    return yaml.safe_load(value)


def _check_size(path: Path, n: int, first: Any) -> None:
    """Refuse, saying how much it would take, what does not fit in memory or on disk."""
    import math
    import shutil

    need = n * math.prod(first.shape[1:]) * 4  # float32
    if path.suffix == ".npy":
        free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
        if need > free:
            raise click.UsageError(f"--n {n} samples need {_gib(need)} on disk and {path.parent} has {_gib(free)} free")
        return
    avail = _available_memory()
    if avail and need * 2 > avail:  # the samples, plus the grid or the serialised copy
        raise click.UsageError(
            f"--n {n} samples need about {_gib(2 * need)} of memory for {path.suffix}, and {_gib(avail)} are "
            "available; write .npy (streamed to disk) or ask for fewer"
        )


def _stream_npy(path: Path, n: int, first: Any, batches: Any, run: Any) -> None:
    """Write batches straight into a memory-mapped .npy (the whole set never sits in memory)."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *first.shape[1:]))
    try:
        pos = 0
        for b in _chain(first, batches):
            _check_finite(b, run)
            arr[pos : pos + len(b)] = b.numpy()
            pos += len(b)
        arr.flush()
        del arr
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from (x for x, _ in rest)


def _check_finite(samples: Any, run: Any) -> None:
    if not bool(samples.isfinite().all()):
        from .errors import CheckpointError

        raise CheckpointError(f"the generator of {run.checkpoint_path} draws non-finite values (NaN/inf); "
                              "its weights are unusable. Try --which best or an earlier checkpoint")


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


@cli.command("eval")
@click.option("--run", "run_dir", required=True, type=click.Path(), help="Run directory.")
@click.option("--n", "n", default=10000, show_default=True, type=click.IntRange(min=1), help="Generated samples.")
@click.option("--which", default="last", show_default=True, help="Checkpoint: last, best, or a path.")
@click.option("--ema/--no-ema", default=True, show_default=True, help="Use EMA weights when the run has them.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--inception-weights", type=click.Path(dir_okay=False), envvar="GZOO_INCEPTION_WEIGHTS",
              help="Also compute Inception FID/KID with these local weights (never downloaded).")
@click.option("--feature-model", default="lenet", show_default=True, metavar="lenet|timm:NAME",
              help="Domain classifier of the image metrics: gzoo's LeNet or any timm architecture "
                   "(e.g. timm:resnet18), trained on the real data once and cached.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@threads_option
def eval_cmd(run_dir: str, n: int, which: str, ema: bool, seed: int, inception_weights: str | None,
             feature_model: str, as_json: bool, threads: int | None) -> None:
    """Evaluate a run with offline metrics (LeNet-feature FID/KID, precision/recall, modes...)."""
    from .default_plugins.evaluation import evaluate_run, format_table

    _set_threads(threads)
    results = evaluate_run(run_dir, n=n, which=which, ema=ema, seed=seed, inception_weights=inception_weights,
                           progress=not as_json, feature_model=feature_model)
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
    else:
        _console().print(format_table(results))


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="Run directory.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output PNG.")
@click.option("--what", help="Visualizer name (gzoo list --kind visualizer); default: the first that fits the run.")
@click.option("--clusters", is_flag=True, help="Per-cluster sample grids of a self-conditioned run (= --what selfcond-clusters).")
@click.option("--which", default="last", show_default=True, help="Checkpoint: last, best, or a path.")
@click.option("--opt", multiple=True, metavar="K=V", help="Visualizer option.")
@force_option
def viz(run_dir: str, out: str, what: str | None, clusters: bool, which: str, opt: tuple[str, ...],
        force: bool) -> None:
    """Render a picture of a run: cluster maps of Context Cluster blocks, per-cluster grids..."""
    from .errors import UsageError
    from .plugins import get_plugin_manager
    from .run import load_run

    _check_out(Path(out), force)
    reg = get_plugin_manager().registry
    if clusters:
        if what and what != "selfcond-clusters":
            raise click.UsageError("--clusters and --what name different visualizers")
        what = "selfcond-clusters"
    run = load_run(run_dir, which)
    options = _parse_kv(opt, "--opt")
    names = [what] if what else [s.name for s in reg.list("visualizer")]
    if not names:
        raise UsageError("no visualizer is registered")
    reasons = []
    for name in names:
        try:
            paths = reg.create("visualizer", name, run=run, out=Path(out), **options)
        except UsageError as exc:
            if what:
                raise
            reasons.append(f"{name}: {exc}")
            continue
        for p in paths or [out]:
            _console(stderr=True).print(f"Wrote {p} ({name})")
        return
    raise UsageError("no visualizer fits this run: " + "; ".join(reasons))


# -- entry point -------------------------------------------------------------------------------------


def _format_warning(message: Any, category: Any, filename: str, lineno: int, line: Any = None) -> str:
    return f"Warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors, exit code 2 for usage errors.

    ``GZOO_DEBUG=1`` prints the traceback behind an error as well.
    """
    import warnings

    from . import runtime
    from .errors import GzooError

    runtime.configure()  # before torch loads: how OpenMP's idle threads wait

    warnings.formatwarning = _format_warning
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)  # what --nproc hands to torchrun
    try:
        cli.main(args=argv, prog_name="gzoo", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except GzooError as exc:
        if _debug():
            import traceback

            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    finally:
        _leave_process_group()


_ARGV: list[str] = []


def _leave_process_group() -> None:
    """Leave torch.distributed's process group, if this process joined one (torchrun workers)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _debug() -> bool:
    return os.environ.get("GZOO_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


if __name__ == "__main__":  # pragma: no cover
    main()
