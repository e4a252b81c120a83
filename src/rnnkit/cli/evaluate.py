"""``rnnkit evaluate RUN``: a trained run's metrics on a split of its data, or on a file."""

from __future__ import annotations

import argparse
import json
from typing import Any


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
    from rnnkit.tasks import task_module
    from rnnkit.tasks.task import run_kind

    kind = run_kind(args.run_dir)
    result = task_module(kind).evaluate(args.run_dir, split=args.split, data=args.data)
    if args.json:
        print(json.dumps({"task": kind, "split": result.split, "metrics": result.metrics,
                          "details": result.details}))  # fmt: skip
        return 0
    print(f"{kind} run {args.run_dir}, split {result.split}")
    width = max((len(name) for name in result.metrics), default=0)
    for name, value in result.metrics.items():
        shown = (
            f"{int(value):,}" if float(value).is_integer() and abs(value) >= 10 else f"{value:.4f}"
        )
        print(f"  {name:<{width}}  {shown:>12}")
    for name, value in result.details.items():
        print()
        print_detail(name, value)
    return 0


def print_detail(name: str, value: Any) -> None:
    """A confusion matrix as a grid, a table of rows as columns, anything else as JSON."""
    if isinstance(value, dict) and "labels" in value and "matrix" in value:
        labels = [str(label) for label in value["labels"]]
        width = max([len(label) for label in labels] + [5])
        print(f"{name} (rows: true, columns: predicted)")
        print(" " * (width + 2) + " ".join(f"{label[:width]:>{width}}" for label in labels))
        for label, row in zip(labels, value["matrix"], strict=True):
            print(f"  {label:<{width}}" + " ".join(f"{count:>{width}}" for count in row))
        return
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        columns = list(next(iter(value.values())))
        width = max(len(str(key)) for key in value)
        print(f"{name}")
        print(" " * (width + 2) + " ".join(f"{column:>10}" for column in columns))
        for key, row in value.items():
            cells = " ".join(_cell(row.get(column)) for column in columns)
            print(f"  {key!s:<{width}}{cells}")
        return
    print(f"{name}: {json.dumps(value)}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f" {value:>10.4f}"
    return f" {value!s:>10}"
