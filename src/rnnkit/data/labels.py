"""Class labels: their order, their ids, and their file in a run's checkpoint.

The label set of a classifier comes from its training part alone, sorted
(numerically when every label is an integer), so the same data always gives the
same ids; a label that only another part holds is refused, naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnnkit.data.errors import DataError

LABELS_FILE = "labels.json"


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Labels:
    """The labels in id order, and the training part's commonest (the majority baseline)."""

    names: tuple[str, ...]
    majority: str | None = None

    @staticmethod
    def of(labels: Iterable[str]) -> Labels:
        """The distinct labels, sorted: numerically when every label is an integer."""
        distinct = set(labels)
        if all(_is_int(label) for label in distinct):
            return Labels(tuple(sorted(distinct, key=int)))
        return Labels(tuple(sorted(distinct)))

    def __len__(self) -> int:
        return len(self.names)

    def check(self, parts: Mapping[str, Sequence[str]], where: str) -> None:
        """Every label of every part is one of these (those of the training part)."""
        known = set(self.names)
        for name, part in parts.items():
            unknown = sorted(set(part) - known)
            if unknown:
                shown = ", ".join(repr(label) for label in unknown[:5])
                expected = ", ".join(repr(x) for x in self.names[:10])
                raise DataError(f"{where}: the {name} part has label(s) {shown} that the training "
                                f"part lacks (expected only {expected})")  # fmt: skip

    def ids(self, labels: Sequence[str]) -> list[int]:
        index = {label: i for i, label in enumerate(self.names)}
        return [index[label] for label in labels]

    def to_json(self) -> bytes:
        record = {"labels": list(self.names), "majority": self.majority}
        return json.dumps(record, ensure_ascii=False).encode()

    @staticmethod
    def from_json(data: bytes, *, path: Path | str) -> Labels:
        """The labels back from :meth:`to_json` (``path``: the file, for errors)."""
        try:
            record = json.loads(data.decode("utf-8"))
            labels, majority = record["labels"], record.get("majority")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise DataError('expected {"labels": [...]}', path=path) from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError("expected a list of label strings", path=path)
        if majority is not None and majority not in labels:
            raise DataError(f"majority {majority!r} is not a label", path=path)
        return Labels(tuple(labels), majority)
