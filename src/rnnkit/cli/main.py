"""``rnnkit``: the command line. Thin on purpose: each subcommand fills in a config
and calls the library. torch is imported only inside the subcommands' ``run``, so
``rnnkit --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rnnkit import __version__
from rnnkit.cli import datasets, evaluate, generate, selfcheck, train

# Each subcommand module has ``register(subparsers)`` and ``run(args) -> int``.
SUBCOMMANDS = (train, evaluate, generate, datasets, selfcheck)


class UsageError(Exception):
    """Bad input from the user: reported on one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit",
        description="Recurrent neural networks made explicit, correct and fast.",
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 a failed check, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on a bad flag, as argparse does
    try:
        status: int = args.run(args)
    except (UsageError, ValueError) as error:
        # Library errors are ValueErrors that already name the field and the expectation.
        print(f"rnnkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``rnnkit datasets list | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
