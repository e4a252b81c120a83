"""``rnnkit generate RUN``: samples from a generative run (lm, caption, music)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rnnkit.cli.arguments import positive_int, seed


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="sample text or music from a trained generative run",
        description=(
            "Sample from a trained language-model, caption or music run (seeded, "
            "reproducible). Caption runs take --condition (a label, or a vector as "
            "comma-separated numbers); music runs write --out (.mid, or .png for a piano "
            "roll). Each sample is printed as it is generated, one after another, so any "
            "--length streams with flat memory (Ctrl-C or a closed pipe stops it cleanly). "
            "--out creates its folder when missing, and the file appears only once "
            "complete.\n\n"
            "example:\n"
            '  rnnkit generate runs/shakespeare --start "ROMEO:" --length 300 --temperature 0.8\n'
            "  rnnkit generate runs/caption --condition positive --num-samples 3\n"
            "  rnnkit generate runs/music --length 64 --out chorale.mid"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", help="the run folder")
    parser.add_argument(
        "--start",
        default="",
        help="the prompt (lm: default a newline; caption: first words; music: a roll file)",
    )
    parser.add_argument("--length", type=positive_int, default=200,
                        help="tokens (music: frames) to generate (200; at most 1e12)")  # fmt: skip
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="softmax temperature > 0 (1.0; below 1e-30: greedy)")  # fmt: skip
    parser.add_argument("--top-k", type=positive_int, help="sample among the k likeliest tokens")
    parser.add_argument(
        "--top-p", type=float, help="nucleus sampling: the smallest set with mass p"
    )
    parser.add_argument("--beam", type=positive_int, default=1,
                        help="beam search of this width instead of sampling (1: sample)")  # fmt: skip
    parser.add_argument("--seed", type=seed, default=0, help="sampling seed (0)")
    parser.add_argument("--num-samples", type=positive_int, default=1,
                        help="how many samples (1; at most 100,000)")  # fmt: skip
    parser.add_argument("--condition", help="caption runs: a label or comma-separated vector")
    parser.add_argument("--out", help="music runs: the .mid or .png file to write (its folder "
                        "is created when missing)")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit import tasks
    from rnnkit.cli.arguments import UsageError
    from rnnkit.tasks.options import GenerateOptions
    from rnnkit.tasks.task import run_kind

    # Checked before the run is read: an impossible request costs nothing.
    options = GenerateOptions(
        start=args.start, length=args.length, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, beam=args.beam, seed=args.seed, num_samples=args.num_samples,
        condition=args.condition, out=args.out,
    )  # fmt: skip
    kind = run_kind(args.run_dir)
    task = tasks.get(kind)
    if not task.generative:
        raise UsageError(f"a {kind} run does not generate; try `rnnkit predict {args.run_dir}`")
    out = sys.stdout
    for index, pieces in enumerate(task.stream(task.load(args.run_dir), options)):
        if options.num_samples > 1:
            out.write(f"--- sample {index + 1} ---\n")
        for piece in pieces:
            # Written as it comes: a long sample shows at once, and a reader that
            # stops (``| head``) stops the generation.
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
    return 0
