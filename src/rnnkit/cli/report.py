"""``rnnkit report RUN``: one self-contained HTML page of what a run did."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write RUN/report.html: curves, gradients, hidden states, the task's pictures",
        description=(
            "Write RUN/report.html, a page that loads nothing from the network: the "
            "configuration, loss and metric curves, the gradient-norm history with "
            "clipped and skipped steps, gradient flow through time, a hidden-state "
            "heatmap, attention (seq2seq), and the task's own section (confusion matrix "
            "and confident mistakes, tagged spans, forecast against actual, generated "
            "samples, a piano roll). Needs the report extra: pip install 'rnnkit[report]'."
            "\n\nexample:\n"
            "  rnnkit report runs/shakespeare"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", help="the run folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit.report import MissingExtraError, write_report

    try:
        path = write_report(args.run_dir)
    except MissingExtraError as error:
        print(f"rnnkit report: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
