"""``rnnkit train TASK``: resolve the task's configuration, check the data, train.

The configuration is resolved in layers, later ones winning: the task's defaults
(its ``Run`` dataclass), then ``--config FILE.toml``, then the flags typed. The
result is printed before training and saved as ``RUN/config.toml``, which is itself
a valid ``--config`` file for the same task.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from rnnkit.cli.arguments import UsageError
from rnnkit.cli.tasks import TASKS, TaskCommand, dest_of


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on a bundled dataset or your own files",
        description=(
            "Train a model. The run folder gets config.toml (the resolved configuration), "
            "metrics.csv and checkpoints/; --dry-run prints the configuration and the data "
            "summary, then stops.\n\n"
            "example:\n"
            "  rnnkit train lm --dataset shakespeare --hidden 256 --epochs 1 --out runs/shakespeare\n"
            "  rnnkit train classify --config my.toml --lr 3e-3 --dry-run"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True,
                                  help=f"what to train ({', '.join(TASKS)})")  # fmt: skip
    for command in TASKS.values():
        add_task(tasks, command)
    parser.set_defaults(run=run)


def add_task(tasks: Any, command: TaskCommand) -> None:
    sub = tasks.add_parser(
        command.name,
        help=command.help,
        description=f"{command.description}\n\nexample:\n  {command.example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for option, key in command.flags():
        option.add_to(sub, key)
    run_group = sub.add_argument_group("the run")
    run_group.add_argument("--config", metavar="FILE.toml",
                           help="settings to start from (flags typed here win)")  # fmt: skip
    run_group.add_argument("--out", help=f"the run folder (runs/{command.name})")
    run_group.add_argument("--resume", action="store_true",
                           help="continue OUT from checkpoints/last with its saved "
                                "configuration (training limits may change)")  # fmt: skip
    run_group.add_argument("--no-report", action="store_true",
                           help="do not write OUT/report.html at the end (`rnnkit report OUT`)")  # fmt: skip
    run_group.add_argument("--dry-run", action="store_true",
                           help="print the resolved configuration and the data, then stop")  # fmt: skip


# A configuration is a few dozen keys; a larger file is a mistake (or an attack).
MAX_CONFIG_BYTES = 2**20


def resolve(
    command: TaskCommand, args: argparse.Namespace, run_type: type, base: Any = None
) -> Any:
    """The task's ``Run``: ``base`` (default: the task's defaults; a resumed run's own
    configuration), then ``--config``, then the flags given. Data paths become
    absolute, so the run folder's config.toml still finds them from anywhere."""
    from rnnkit.configuration import ConfigError, merge, replace

    run = run_type() if base is None else base
    if args.config:
        path = Path(args.config)
        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise UsageError(f"{path}: over {MAX_CONFIG_BYTES // 2**20} MiB "
                                 "(expected a configuration file)")  # fmt: skip
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise UsageError(f"--config: cannot read {path}: {error.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"{path}: not valid TOML: {error}") from None
        except RecursionError:
            raise UsageError(f"{path}: not valid TOML: nested too deeply") from None
        try:
            run = merge(run, data)
        except ValueError as error:
            raise UsageError(f"{path}: {error}") from None
    typed: list[tuple[str, str, Any]] = []
    for option, key in command.flags():
        if not hasattr(args, dest_of(option.flag)):
            continue  # not typed: the default or the config file's value stands
        value = getattr(args, dest_of(option.flag))
        typed.append((option.flag, key, tuple(value) if isinstance(value, list) else value))
    try:
        # All at once: flags may only make sense together (--cell rnn --gate-bias 0).
        run = replace(run, {key: value for _, key, value in typed})
    except (ConfigError, ValueError) as error:
        for flag, key, value in typed:  # name the flag that is wrong on its own
            try:
                replace(run, {key: value})
            except (ConfigError, ValueError) as own:
                raise UsageError(f"{flag}: {own}") from None
        raise UsageError(str(error)) from None
    return absolute_data(run)


def absolute_data(run: Any) -> Any:
    """``run`` with ``task.data`` as absolute paths."""
    from rnnkit.configuration import replace

    data = getattr(run.task, "data", ())
    if not data:
        return run
    # abspath, not resolve(): links are the reader's to follow (and a link loop its
    # one-line error), and the saved path is the one the user named.
    absolute = tuple(os.path.abspath(Path(path).expanduser()) for path in data)
    return replace(run, {"task.data": absolute})


# What a resumed run may change: how long and how it trains on, never what it learns from.
RESUMABLE = ("trainer.epochs", "trainer.max_steps", "trainer.max_minutes",
             "trainer.eval_every", "trainer.checkpoint_every", "trainer.progress",
             "trainer.tensorboard", "trainer.early_stopping", "trainer.max_bad_steps",
             "trainer.device")  # fmt: skip


def check_resumable(saved: Any, resumed: Any, out: Path) -> None:
    """Refuse a resume whose data, model or optimisation differs from the saved run."""
    from rnnkit.configuration import flatten

    before = flatten(_plain(saved))
    after = flatten(_plain(resumed))
    for key in sorted(set(before) | set(after)):
        if key.startswith(RESUMABLE) or before.get(key) == after.get(key):
            continue
        raise UsageError(
            f"--resume: {key} is {before.get(key)!r} in {out / 'config.toml'} but "
            f"{after.get(key)!r} now; a resumed run keeps its data, model and optimizer "
            f"(only {', '.join(k.removeprefix('trainer.') for k in RESUMABLE)} may change)"
        )


def _plain(config: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(config)


def run(args: argparse.Namespace) -> int:
    from rnnkit import tasks
    from rnnkit.configuration import to_toml
    from rnnkit.training.runs import read_config

    command = TASKS[args.task]
    task = tasks.get(args.task)
    out = Path(args.out or f"runs/{args.task}")
    check_out(out, resume=args.resume, dry_run=args.dry_run)
    resuming = args.resume
    # A resumed run starts from its own saved configuration, not the task's defaults.
    saved = read_config(out, task.run_type) if resuming else None
    config = resolve(command, args, task.run_type, base=saved)
    prepared = task.prepare(config)
    from rnnkit.training.budget import check_run

    check_run(prepared.run)  # the device and the memory, before anything is allocated
    if saved is not None:
        check_resumable(absolute_data(saved), prepared.run, out)
    saving = "not saved: a dry run" if args.dry_run else f"saved as {out}/config.toml"
    print(f"# rnnkit train {args.task}: resolved configuration ({saving})")
    print(to_toml(prepared.run))
    for line in prepared.summary:
        print(f"# {line}")
    sys.stdout.flush()
    if args.dry_run:
        print("# dry run: nothing trained")
        return 0
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out: cannot create {out}: {error.strerror}") from None
    check_data(prepared.run, out, resume=args.resume)
    result = task.fit(prepared, out, resume=args.resume)
    best = (
        ""
        if result.best is None
        else f", best {_monitor(prepared.run)} {result.best:.4f} at step {result.best_step}"
    )
    print(f"trained {result.steps} steps ({result.stop_reason}){best}; run folder {out}")
    if not args.no_report and os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 writes
        from rnnkit.report import MissingExtraError, write_report

        try:
            print(f"wrote {write_report(out)}")
        except MissingExtraError as error:
            print(f"# no report: {error}")
    return 0


def check_out(out: Path, *, resume: bool, dry_run: bool) -> None:
    """Refuse an ``--out`` that is neither a fresh folder nor, with ``--resume``, a run
    with a checkpoint to continue: training into it would mix two runs' files."""
    from rnnkit.training.checkpoint import has_checkpoint

    last = out / "checkpoints" / "last"
    flag = "--resume" if resume else "--out"
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise UsageError(f"{flag}: {out} is not a folder (expected a run folder)")
    if resume:
        if not has_checkpoint(last):
            what = (
                "does not exist"
                if not out.exists()
                else "is not a run folder (config.toml missing)"
                if not (out / "config.toml").is_file()
                else f"has no checkpoint ({last} missing)"
            )
            raise UsageError(
                f"--resume: {out} {what}; there is no run to continue (train without "
                "--resume to start one)"
            )
        return
    if dry_run or not out.exists():
        return
    if has_checkpoint(last):
        raise UsageError(
            f"--out: {out} already holds a run; add --resume to continue it, or choose "
            "another --out"
        )
    if any(out.iterdir()):
        raise UsageError(
            f"--out: {out} is not empty and holds no run to resume (a failed run's leftovers "
            "or other files); choose another --out or empty it"
        )


FINGERPRINT = "data-fingerprint.json"


def check_data(run: Any, out: Path, *, resume: bool) -> None:
    """Record the data files' fingerprint in a fresh run; on resume, warn in one line
    when a file changed since the run began (its results would then mix two datasets)."""
    import hashlib
    import json

    fingerprint: dict[str, str] = {}
    for name in getattr(run.task, "data", ()):
        digest = hashlib.sha256()
        with contextlib.suppress(OSError), open(name, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        fingerprint[str(name)] = digest.hexdigest()
    path = out / FINGERPRINT
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 keeps the run folder
        return
    if not resume:
        path.write_text(json.dumps(fingerprint, indent=1) + "\n", encoding="utf-8")
        return
    try:
        saved = json.loads(path.read_bytes()[: 2**20])
    except (OSError, ValueError, RecursionError):
        return  # a run from before fingerprints: nothing to compare with
    changed = [name for name, digest in fingerprint.items()
               if isinstance(saved, dict) and saved.get(name) not in (None, digest)]  # fmt: skip
    if changed:
        print(f"rnnkit train: warning: {changed[0]} changed since this run began "
              f"(sha256 differs from {path}); the resumed run trains on the new "
              "content", file=sys.stderr)  # fmt: skip


def _monitor(run: Any) -> str:
    stopping = getattr(run.trainer, "early_stopping", None)
    return "val_loss" if stopping is None else str(stopping.monitor)
