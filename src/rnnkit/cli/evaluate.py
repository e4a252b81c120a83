"""``rnnkit evaluate RUN``: the trained model's metrics on a split of its data."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of a trained run on its test (or validation) split",
        description=(
            "Evaluate a run folder's best checkpoint.\n\n"
            "example:\n"
            "  rnnkit evaluate runs/shakespeare --split test --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", help="the run folder")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test",
                        help="which part of the data (test)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit.tasks import language_model as task

    metrics = task.evaluate(args.run_dir, args.split)
    if args.json:
        print(json.dumps({"split": args.split, **metrics}))
        return 0
    for name, value in metrics.items():
        print(f"{name:>20}  {value:,.4f}" if name != "tokens" else f"{name:>20}  {int(value):,}")
    return 0
