"""Freed memory kept in the process, so that a training step does not fault its pages in again.

torch's CPU tensors come from the C library's ``malloc``. glibc serves a request of
at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at first, raised after each free up to
32 MiB on 64-bit Linux) with a fresh ``mmap`` and gives it back to the kernel on
``free``. A training step at long T allocates and frees the same large buffers every
step (gates, outputs, their gradients: 67 MB for the minGRU's gates at B = 16,
T = 4,096, H = 128), so every step pays the kernel to map and zero every page again.
On the project's 2-core machine, filling a fresh 67 MB tensor took 46 ms, and the
same tensor re-used from the heap 2.9 ms; a minGRU training step at T = 4,096 took
136 ms with the C library's defaults and 60 ms with this setting, torch.nn's GRU 1,138
and 991 ms (``benchmarks/scan.py --allocator system|keep``, one run after the other;
the peak memory of a step was the same both ways). Memory allocators tuned for this
(jemalloc, tcmalloc, which PyTorch's CPU performance guide recommends preloading)
keep such blocks too.

:func:`keep_freed_memory` raises the thresholds (``mallopt``: mmap above 1 GiB only,
trim the heap above 2 GiB only), so freed blocks stay in the process and the next
step reuses them. The resident set then stays near its peak instead of falling
between steps; the peak itself did not grow in that measurement. ``rnnkit``'s commands call it once
(:mod:`rnnkit.cli.main`); a script of its own calls it as the first thing it does.
``RNNKIT_MALLOC=system`` leaves the C library's defaults. Elsewhere than glibc
(macOS, musl) it does nothing and says so in :func:`status`.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

ENV = "RNNKIT_MALLOC"
"""``keep`` (the default) or ``system``: the C library's own thresholds."""

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks above this are still mapped and unmapped
TRIM_THRESHOLD = (1 << 31) - 1  # the heap's free top is returned above this

_applied: bool | None = None  # None: not tried yet in this process
_why = "not asked"


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the process (glibc); whether that is now in effect.

    Idempotent; ``RNNKIT_MALLOC=system`` turns it into a no-op that returns False.
    """
    global _applied, _why
    if _applied is not None:
        return _applied
    mode = os.environ.get(ENV, "keep")
    if mode not in ("keep", "system"):
        raise ValueError(f"{ENV}: expected keep or system, got {mode!r}")
    if mode == "system":
        _applied, _why = False, f"the C library's defaults ({ENV}=system)"
        return False
    mallopt = _mallopt()
    if mallopt is None:
        _applied, _why = False, "the C library's defaults (not glibc: no mallopt)"
        return False
    # mallopt returns 1 on success; a threshold glibc refuses leaves its default.
    mapped: int = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trimmed: int = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    done = mapped == 1 and trimmed == 1
    _applied = done
    _why = (
        "freed memory kept (mmap above 1 GiB, trim above 2 GiB)"
        if done
        else "the C library's defaults (mallopt refused the thresholds)"
    )
    return done


def status() -> str:
    """One line: how the process's allocator treats freed large blocks."""
    return _why


def _mallopt() -> Any:
    """glibc's ``mallopt(int, int) -> int``, or None where the C library has none."""
    try:
        # The symbols the process already has: the C library, without a library search.
        function = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int)
    function.restype = ctypes.c_int
    return function
