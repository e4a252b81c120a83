"""``rnnkit predict RUN``: answers for new inputs, as text or JSON lines."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rnnkit.cli.arguments import positive_int


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="labels, tags, forecasts or translations for new inputs",
        description=(
            "Run a trained model on new inputs: a label with probabilities per text, a tag "
            "per token, the forecast over the horizon, the target sequence of a source, the "
            "likeliest next tokens of a prompt. Inputs come as arguments or one per line of "
            "--file (seqclass: a .ts or NPZ file; forecast: no input forecasts past the end "
            "of the run's series, --file a series CSV to forecast past).\n\n"
            "example:\n"
            '  rnnkit predict runs/classify "a gorgeous, witty film" "dull and overlong"\n'
            "  rnnkit predict runs/seq2seq --file words.txt --beam 5 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", help="the run folder")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="inputs, one per argument")
    parser.add_argument("--file", help="a file of inputs (one per line for text tasks)")
    parser.add_argument("--beam", type=positive_int, default=1,
                        help="beam width for sequence outputs (1: greedy)")  # fmt: skip
    parser.add_argument("--top", type=positive_int, default=3,
                        help="alternatives shown per answer (3)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit import tasks
    from rnnkit.cli.arguments import UsageError
    from rnnkit.tasks.options import PredictOptions
    from rnnkit.tasks.task import run_kind

    if args.inputs and args.file:
        raise UsageError("give inputs as arguments or --file, not both")
    for number, text in enumerate(args.inputs, start=1):
        if not text.strip():
            raise UsageError(f"INPUT {number} is empty (expected a text, a sentence or a source)")
    kind = run_kind(args.run_dir)
    options = PredictOptions(inputs=tuple(args.inputs), file=args.file, beam=args.beam,
                             top=args.top)  # fmt: skip
    task = tasks.get(kind)
    for prediction in task.predict(task.load(args.run_dir), options):
        print(json.dumps(prediction.record) if args.json else prediction.text)
    return 0
