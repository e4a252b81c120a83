"""``rnnkit generate RUN``: sample text from a trained language model."""

from __future__ import annotations

import argparse
from typing import Any

from rnnkit.cli.arguments import positive_int


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="sample text from a trained language-model run",
        description=(
            "Continue a prompt with samples from a trained run (seeded, reproducible).\n\n"
            "example:\n"
            '  rnnkit generate runs/shakespeare --start "ROMEO:" --length 300 --temperature 0.8'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", help="the run folder")
    parser.add_argument("--start", default="\n", help="the prompt (a newline)")
    parser.add_argument("--length", type=positive_int, default=200, help="tokens to generate (200)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (1.0)")
    parser.add_argument("--top-k", type=positive_int, help="sample among the k likeliest tokens")
    parser.add_argument(
        "--top-p", type=float, help="nucleus sampling: the smallest set with mass p"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    parser.add_argument("--num-samples", type=positive_int, default=1, help="how many samples (1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit.tasks import language_model as task

    samples = task.generate(
        args.run_dir, args.start, length=args.length, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, seed=args.seed, num_samples=args.num_samples,
    )  # fmt: skip
    for index, text in enumerate(samples):
        if len(samples) > 1:
            print(f"--- sample {index + 1} ---")
        print(text)
    return 0
