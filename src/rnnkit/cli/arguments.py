"""Argument types shared by the subcommands (argparse reports their errors with status 2)."""

from __future__ import annotations

import argparse
import math


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


def seed(text: str) -> int:
    """A seed from the command line: an int in [0, 2^63), what torch.manual_seed takes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an int in [0, 2**63), got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite ``float`` (NaN and ±inf refused: they only turn weights into NaN)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite ``float`` > 0."""
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def fraction(text: str) -> float:
    """A float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive ints, ``2000,10000`` → ``(2000, 10000)``."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values
