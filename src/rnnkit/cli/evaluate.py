"""``rnnkit evaluate RUN``: a trained run's metrics on a split of its data, or on a file.

The text output is for reading: numbers rounded (:func:`number`), counts with
thousands separators, tables aligned. ``--json`` is for programs: every value
exactly as the task computed it.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnnkit.tasks.task import Evaluation


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of a trained run on its test split or on your file",
        description=(
            "Evaluate a run folder's best checkpoint (else its last) with the task's "
            "metrics: accuracy and macro-F1, span F1, bits per character and perplexity, "
            "MAE/RMSE/sMAPE/MASE beside the baselines, PER/WER/BLEU, NLL per frame.\n\n"
            "example:\n"
            "  rnnkit evaluate runs/shakespeare --split test --json\n"
            "  rnnkit evaluate runs/classify --data reviews.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", help="the run folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--split", choices=("train", "valid", "test"), default="test",
                       help="which part of the run's data (test)")  # fmt: skip
    where.add_argument("--data", metavar="PATH",
                       help="evaluate on this file instead, in the task's format")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit import tasks
    from rnnkit.tasks.task import run_kind

    kind = run_kind(args.run_dir)
    task = tasks.get(kind)
    result = task.evaluate(task.load(args.run_dir), args.split, args.data)
    if args.json:
        print(json.dumps({"task": kind, "split": result.split, "metrics": result.metrics,
                          "details": result.details}))  # fmt: skip
        return 0
    print(format_evaluation(kind, args.run_dir, result), end="")
    return 0


# ----------------------------------------------------------------------------- the text

# Metric and field names whose whole-number values are counts, shown as 1,234.
COUNTS = ("examples", "tokens", "texts", "spans", "pairs", "support", "horizon", "length",
          "season", "frames", "pieces", "sequences", "count")  # fmt: skip
WIDE = 100  # a table of records wider than this is shown record by record


def format_evaluation(kind: str, run_dir: str, result: Evaluation) -> str:
    """The text ``rnnkit evaluate`` prints: the metrics, then each detail of the task.

    Scalars (the decoding, the majority label, ``below_baseline``) come as one aligned
    block; a confusion matrix as a grid; a table of rows (per-type scores, the
    forecasting baselines) as columns; records (seq2seq mistakes) as aligned rows;
    other nested values as indented name/value lines.
    """
    lines = [f"{kind} run {run_dir}, split {result.split}"]
    lines += _pairs(result.metrics, 2)
    scalars = {name: value for name, value in result.details.items() if _is_scalar(value)}
    if scalars:
        lines += ["", *_pairs(scalars, 2)]
    for name, value in result.details.items():
        if name not in scalars:
            lines += ["", *detail_lines(name, value)]
    return "\n".join(lines) + "\n"


def number(value: Any, name: str = "") -> str:
    """A value as a reader wants it.

    * counts (ints, and whole floats named in COUNTS or of 1,000 or more): ``12,345``;
    * other floats to about 4 significant digits, with fixed decimals per magnitude
      so that a column lines up: ``0.8123``, ``12.35``, ``123.5``, ``1,235``, and
      ``3.142e-05`` below 0.001;
    * ``yes``/``no`` for booleans, ``–`` for None (a metric undefined here), and
      ``nan``/``inf`` as they are.
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    size = abs(value)
    if not math.isfinite(value):
        return str(value)
    if size >= 1000 or (value.is_integer() and _is_count(name)):
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 10:
        return f"{value:.2f}"
    if size >= 1e-3 or size == 0:
        return f"{value:.4f}"
    return f"{value:.3e}"


def detail_lines(name: str, value: Any, indent: int = 0) -> list[str]:
    """One detail of an evaluation as lines of text (indented by ``indent``)."""
    pad = " " * indent
    if _is_scalar(value):
        return _pairs({name: value}, indent)
    if not value:  # an empty list or table: nothing of this kind (no mistakes)
        return [f"{pad}{name}  none"]
    if isinstance(value, Mapping) and "labels" in value and "matrix" in value:
        return [f"{pad}{name} (rows: true, columns: predicted)",
                *_confusion(value["labels"], value["matrix"], indent + 2)]  # fmt: skip
    if isinstance(value, Mapping):
        if all(isinstance(row, Mapping) and all(map(_is_scalar, row.values()))
               for row in value.values()):  # fmt: skip
            return [f"{pad}{name}", *_records(list(value.values()), indent + 2,
                                              keys=[str(key) for key in value])]  # fmt: skip
        return [f"{pad}{name}", *_mapping(value, indent + 2)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        if all(isinstance(item, Mapping) for item in items):
            return [f"{pad}{name} ({len(items):,})", *_records(items, indent + 2)]
        if all(_is_scalar(item) for item in items):
            return _wrapped(f"{pad}{name}  ", [number(item, name) for item in items])
        if all(_is_scalar_list(item) and len(item) == len(items[0]) for item in items):
            # a matrix without labels
            rows = [[number(cell, name) for cell in item] for item in items]
            return [f"{pad}{name}", *_aligned(None, rows, indent + 2, [True] * len(rows[0]))]
        lines = [f"{pad}{name}"]
        for i, item in enumerate(items, start=1):
            lines += detail_lines(str(i), item, indent + 2)
        return lines
    return [f"{pad}{name}  {value}"]


def _mapping(value: Mapping[str, Any], indent: int) -> list[str]:
    """A nested table: its scalars as pairs, lists of one length side by side as
    columns (a backtest's times, actual and forecast), the rest one by one."""
    scalars = {key: item for key, item in value.items() if _is_scalar(item)}
    lists = {key: item for key, item in value.items() if _is_scalar_list(item) and item}
    lengths = Counter(len(item) for item in lists.values()).most_common(1)
    length = lengths[0][0] if lengths and lengths[0][1] > 1 else None
    columns = {key: item for key, item in lists.items() if len(item) == length}
    lines = _pairs(scalars, indent)
    if columns:
        names = list(columns)
        rows = [
            [number(columns[key][i], key) for key in names] for i in range(len(columns[names[0]]))
        ]
        numeric = [all(_is_number(cell) for cell in columns[key]) for key in names]
        lines += _aligned(names, rows, indent, numeric)
    for key, item in value.items():
        if key not in scalars and key not in columns:
            lines += detail_lines(str(key), item, indent)
    return lines


def _records(
    items: list[Mapping[str, Any]], indent: int, keys: list[str] | None = None
) -> list[str]:
    """Records as aligned rows under a header (``keys`` name each row), or one block
    per record where the rows would be wider than WIDE."""
    fields: list[str] = []
    for item in items:
        fields += [str(field) for field in item if str(field) not in fields]
    cells = [[_cell(item.get(field), field) for field in fields] for item in items]
    numeric = [all(_is_number(item.get(field)) for item in items) for field in fields]
    header: list[str] = fields
    if keys is not None:
        header, numeric = ["", *fields], [False, *numeric]
        cells = [[key, *row] for key, row in zip(keys, cells, strict=True)]
    lines = _aligned(header, cells, indent, numeric)
    if max(len(line) for line in lines) <= WIDE:
        return lines
    pad, blocks = " " * indent, []
    width = max(len(field) for field in fields)
    for i, row in enumerate(cells, start=1):
        label, values = (row[0], row[1:]) if keys is not None else (f"{i}.", row)
        blocks.append(f"{pad}{label}")
        blocks += [f"{pad}  {field:<{width}}  {text}"
                   for field, text in zip(fields, values, strict=True)]  # fmt: skip
    return blocks


def _confusion(labels: Sequence[Any], matrix: Sequence[Sequence[Any]], indent: int) -> list[str]:
    names = [str(label) for label in labels]
    rows = [[name, *(number(count, "count") for count in row)]
            for name, row in zip(names, matrix, strict=True)]  # fmt: skip
    return _aligned(["", *names], rows, indent, [False] + [True] * len(names))


def _aligned(
    header: list[str] | None, rows: list[list[str]], indent: int, numeric: list[bool]
) -> list[str]:
    """Columns two spaces apart: numbers right-aligned, text left-aligned."""
    table = ([header] if header is not None else []) + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(numeric))]
    pad = " " * indent

    def line(row: list[str]) -> str:
        cells = [cell.rjust(w) if right else cell.ljust(w)
                 for cell, w, right in zip(row, widths, numeric, strict=True)]  # fmt: skip
        return (pad + "  ".join(cells)).rstrip()

    return [line(row) for row in table]


def _pairs(values: Mapping[str, Any], indent: int) -> list[str]:
    """``name  value`` lines: names left-aligned, numbers right-aligned, text left-aligned."""
    if not values:
        return []
    shown = {str(name): number(value, str(name)) for name, value in values.items()}
    names = max(len(name) for name in shown)
    numeric = [shown[str(name)] for name, value in values.items() if _is_number(value)]
    width = max((len(text) for text in numeric), default=0)
    pad = " " * indent
    return [
        f"{pad}{name:<{names}}  " + (text.rjust(width) if _is_number(value) else text)
        for (name, text), value in zip(shown.items(), values.values(), strict=True)
    ]


def _wrapped(head: str, texts: list[str], width: int = 88) -> list[str]:
    """``head`` then the texts comma-separated, wrapped under the first."""
    lines, line = [], head
    for i, text in enumerate(texts):
        piece = text + ("," if i < len(texts) - 1 else "")
        if line.strip() and len(line) + len(piece) > width and line != head:
            lines.append(line.rstrip())
            line = " " * len(head)
        line += piece + " "
    return [*lines, line.rstrip()]


def _cell(value: Any, name: str) -> str:
    if _is_scalar_list(value):  # a seq2seq mistake's references
        return " | ".join(number(item, name) for item in value)
    return number(value, name)


def _is_count(name: str) -> bool:
    return name.rsplit("_", 1)[-1] in COUNTS


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | numbers.Real)


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(_is_scalar(item) for item in value)
