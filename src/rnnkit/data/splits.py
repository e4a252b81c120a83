"""Seeded random splits: which examples go to train, valid and test (or a hold-out).

One algorithm makes every such split of rnnkit, of a bundled dataset
(:mod:`rnnkit.data.sources`) and of a user's single file (the tasks): a
Fisher–Yates shuffle driven by ``random.Random(seed).random()``, whose sequence
Python promises to keep across versions (torch's and NumPy's generators promise no
such thing), so a seed gives the same split on every machine and every version.
It imports no torch: listing and parsing the bundled datasets stays quick.
"""

from __future__ import annotations

import math
import random

SPLITS = ("train", "valid", "test")


def split_indices(n: int, fractions: tuple[float, ...], seed: int) -> tuple[list[int], ...]:
    """A seeded random split of ``range(n)`` into parts of the given fractions.

    Part ``i ≥ 1`` gets ``floor(n · fractions[i])`` examples and part 0 (train) the
    rest. The examples are shuffled (Fisher–Yates, ``j = ⌊u · (i + 1)⌋`` with ``u``
    from ``random.Random(seed).random()``) and the shuffled order is cut into the
    parts in order. Each part is sorted, so it keeps the file's order.

    Args:
        n: how many examples.
        fractions: non-negative, adding up to 1.
        seed: the shuffle's seed.

    Returns:
        One list of indices per fraction; every index in exactly one.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected an int ≥ 0, got {n!r}")
    if not fractions:
        raise ValueError("fractions: expected at least one")
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, int | float) or not math.isfinite(f) or f < 0:
            raise ValueError(f"fractions: expected non-negative numbers, got {fractions!r}")
    if not math.isclose(math.fsum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions: expected them to add up to 1, got {math.fsum(fractions)}")
    order = list(range(n))
    generator = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = int(generator.random() * (i + 1))
        order[i], order[j] = order[j], order[i]
    rest = [math.floor(n * f) for f in fractions[1:]]
    sizes = [max(0, n - sum(rest)), *rest]  # fractions adding to 1 leave part 0 ≥ 0
    parts: list[list[int]] = []
    start = 0
    for size in sizes:
        parts.append(sorted(order[start : start + size]))
        start += size
    return tuple(parts)
