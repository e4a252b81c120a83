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
from collections.abc import Callable, Hashable, Iterable, Mapping, Sized
from typing import TypeVar

from rnnkit.data.errors import DataError

T = TypeVar("T")  # a row of a data file

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


def check_parts(parts: Mapping[str, Sized], what: str, names: Iterable[str] = SPLITS) -> None:
    """Refuse, in one line, a task's data whose part among ``names`` is empty (``what``:
    the rows in words, e.g. ``sentences``)."""
    for name in names:
        if not parts[name]:
            raise DataError(f"data: the {name} part has no {what}")


def check_data_paths(data: tuple[str, ...]) -> None:
    """A task's ``data``: one file (the task splits it) or three (train, valid, test)."""
    if len(data) not in (0, 1, 3):
        raise ValueError(f"data: expected one file (split by the task) or three (train, valid, "
                         f"test), got {len(data)}")  # fmt: skip


def split_files(data: tuple[str, ...], read: Callable[[str], list[T]], *, seed: int,
                least: int, what: str) -> dict[str, list[T]]:  # fmt: skip
    """A task's ``data`` as ``train``, ``valid`` and ``test``: three files read in turn,
    or one file's rows split 80/10/10 by :func:`split_indices` seeded with ``seed``;
    a file of fewer than ``least`` rows is refused (``what``: the rows in words, e.g.
    ``sentences``)."""
    if len(data) == 3:
        return {name: read(path) for name, path in zip(SPLITS, data, strict=True)}
    rows = read(data[0])
    if len(rows) < least:
        raise DataError(f"{len(rows)} {what}: too few to split into train, valid and test "
                        f"(expected at least {least}, or three files)", path=data[0])  # fmt: skip
    cut = split_indices(len(rows), (0.8, 0.1, 0.1), seed)
    return {name: [rows[i] for i in part] for name, part in zip(SPLITS, cut, strict=True)}


def split_groups(rows: list[T], key: Callable[[T], Hashable], *, seed: int, least: int,
                 what: str, path: str) -> dict[str, list[T]]:  # fmt: skip
    """The rows of the file ``path`` as ``train``, ``valid`` and ``test``, split 80/10/10
    by their distinct ``key`` (:func:`split_indices` over the keys in order of first
    appearance), every row going where its key went: no key is in two parts. Fewer
    than ``least`` keys are refused (``what``: the keys in words)."""
    keys = list(dict.fromkeys(map(key, rows)))
    if len(keys) < least:
        raise DataError(f"{len(keys)} {what} are too few to split 80/10/10 (expected at least "
                        f"{least}, or give three files: train, valid, test)", path=path)  # fmt: skip
    parts = split_indices(len(keys), (0.8, 0.1, 0.1), seed)
    where = {keys[i]: name for name, part in zip(SPLITS, parts, strict=True) for i in part}
    return {name: [row for row in rows if where[key(row)] == name] for name in SPLITS}
