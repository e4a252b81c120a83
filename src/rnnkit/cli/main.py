"""``rnnkit``: the command line. Thin on purpose: each subcommand fills in a config
and calls the library. torch is imported only inside the subcommands' ``run``, so
``rnnkit --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from rnnkit import allocator
from rnnkit.cli import (
    backends,
    bench,
    datasets,
    evaluate,
    explain,
    export,
    generate,
    gradflow,
    predict,
    report,
    selfcheck,
    train,
)
from rnnkit.cli.arguments import UsageError
from rnnkit.version import __version__

# Each subcommand module has ``register(subparsers)`` and ``run(args) -> int``.
SUBCOMMANDS = (
    train,
    evaluate,
    predict,
    generate,
    report,
    export,
    gradflow,
    explain,
    datasets,
    bench,
    backends,
    selfcheck,
)


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: ``rnnkit train lm: error: argument --lr: …``.

    argparse prints the whole usage block before a bad flag's message; the usage is
    one ``--help`` away, and a bad flag, like any bad input, is one line and status 2.
    Subcommand parsers are made of the same class (argparse uses the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rnnkit",
        description="Recurrent neural networks made explicit, correct and fast.",
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def _check_environment() -> None:
    """Refuse a bad RNNKIT_PROJECTION before any work, in one line (a ValueError).

    The check imports torch (the module that reads the variable does), so it runs only
    where the variable is set.
    """
    if os.environ.get("RNNKIT_PROJECTION") is not None:
        from rnnkit.projection import mode

        mode()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 a failed check, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on a bad flag, as argparse does
    _show_library_messages()
    try:
        # Before any tensor exists: a step's large buffers are reused, not re-mapped.
        allocator.keep_freed_memory()
        _check_environment()
        status: int = args.run(args)
        # A closed pipe shows in this flush, here, rather than in the one at exit.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``rnnkit datasets list | head``): not an error. Python
        # flushes stdout again at exit; pointed at devnull, that flush cannot fail.
        _quiet_stdout()
        return 0
    except (UsageError, ValueError) as error:
        # Library errors are ValueErrors that already name the field and the expectation.
        print(error_line(args.command, error), file=sys.stderr)
        return 2
    except Exception as error:
        # Errors of modules that import torch, recognised without importing them here.
        kind = _known_error(error)
        if kind is None:
            raise
        print(error_line(args.command, error), file=sys.stderr)
        return kind
    except KeyboardInterrupt:
        print(f"rnnkit {args.command}: interrupted", file=sys.stderr)
        _flush_without_waiting()
        return 130
    return status


def error_line(command: str, error: BaseException | str) -> str:
    """``rnnkit COMMAND: error: MESSAGE``, with ``error:`` once.

    The line names the command itself, so a message that begins with it, or with
    ``error:`` (written for a caller of the library, who has no such prefix), loses
    that beginning: never ``rnnkit predict: error: predict: …``.
    """
    message = str(error).strip()
    own = [f"rnnkit {command}:", "rnnkit:", "error:"]
    if command not in ("train", "valid", "test"):  # "train: …" may name the data's split
        own.append(f"{command}:")
    while stripped := next((p for p in own if message.startswith(p)), None):
        message = message[len(stripped) :].lstrip()
    return f"rnnkit {command}: error: {message}"


class _Stderr(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (a test's capture, a redirect)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Above a training bar, not into it (imported here: --help stays quick).
            from rnnkit.training.progress import write_above

            write_above(self.format(record), sys.stderr)
        except Exception:
            self.handleError(record)


def _show_library_messages() -> None:
    """Show the library's ``rnnkit`` log lines (the measured backend choices, at INFO)
    on stderr, once per process; not where the program gave that logger handlers of
    its own (a level it set stands)."""
    library = logging.getLogger("rnnkit")
    if not library.handlers:
        library.addHandler(_Stderr())
        if library.level == logging.NOTSET:
            library.setLevel(logging.INFO)


def _flush_without_waiting() -> None:
    """After Ctrl-C: hand the reader what stdout still holds if its pipe has room, then
    drop the rest. Exit flushes stdout again, and a reader that has stopped reading
    (a full pipe) would otherwise hold the interrupted process forever."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    if os.isatty(fileno):
        return  # a terminal takes its line at once; its mode is the shell's, not ours
    try:
        os.set_blocking(fileno, False)
        sys.stdout.flush()
    except OSError:  # BlockingIOError (a full pipe), BrokenPipeError: nothing to wait for
        pass
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(fileno, True)
    _quiet_stdout()


def _quiet_stdout() -> None:
    """Point stdout's file descriptor at devnull (where it has one; a test's capture may not)."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def _known_error(error: Exception) -> int | None:
    """2 for a checkpoint that cannot be read (bad input), 1 for training that cannot go on."""
    checkpoint = sys.modules.get("rnnkit.training.checkpoint")
    if checkpoint is not None and isinstance(error, checkpoint.CheckpointError):
        return 2
    trainer = sys.modules.get("rnnkit.training.trainer")
    if trainer is not None and isinstance(error, trainer.TrainingError):
        return 1
    import errno

    # Writing the run folder failed for want of room or permission: the message (errno,
    # path) is one line, and the last checkpoint is intact.
    full_or_read_only = (errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EACCES)
    if isinstance(error, OSError) and error.errno in full_or_read_only:
        return 2
    return None


if __name__ == "__main__":
    sys.exit(main())
