"""Argument types shared by the subcommands (argparse reports their errors with status 2)."""

from __future__ import annotations

import argparse


class UsageError(ValueError):
    """Bad input from the user (a flag, a config value): one line, exit status 2."""


def positive_int(text: str) -> int:
    """An ``int`` ≥ 1 from the command line."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
