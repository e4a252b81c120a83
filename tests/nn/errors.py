"""What a call raised, to hold rnnkit.nn's errors to torch.nn's, type and message."""

from __future__ import annotations

from collections.abc import Callable


def error_of(call: Callable[[], object]) -> BaseException:
    """The exception ``call()`` raises; fails the test when it raises none."""
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError("expected an error, none was raised")
