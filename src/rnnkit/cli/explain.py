"""``rnnkit explain``: one tiny network, forward and BPTT by hand, checked against autograd."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rnnkit.cli.arguments import UsageError, seed

FORMATS = ("text", "markdown", "json")
# ExplainConfig field → argparse dest (the flag with - for _).
_OPTIONS = {
    "cell": "cell",
    "input_size": "input_size",
    "hidden_size": "hidden",
    "outputs": "outputs",
    "steps": "steps",
    "loss": "loss",
    "seed": "seed",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="walk through one tiny network: every forward and BPTT number, checked",
        description=(
            "Build one tiny network (rnnkit's own cell and an output layer "
            "ŷ_t = g(V·h_t + c), a loss at every step) in float64 and print every "
            "number in the seeds' notation: x_t, U·x_t, W·h_{t−1}, the pre-activation, the "
            "gates, h_t, ŷ_t and L_t forward; δ_t and each step's term of ∂L/∂U, ∂L/∂W, "
            "∂L/∂b, ∂L/∂V, ∂L/∂c backward, from the hand-derived BPTT equations; then the "
            "sums, checked against autograd (exit 1 if they differ by 1e-10 or more).\n\n"
            "example:\n"
            "  rnnkit explain\n"
            "  rnnkit explain --cell lstm --loss ce --outputs 3 --steps 3 --format markdown"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Values are checked by ExplainConfig, so every bad value is one line with exit status 2.
    parser.add_argument(
        "--cell", default="rnn", help="rnn (tanh), lstm, gru, mingru or minlstm (rnn)"
    )
    parser.add_argument("--input-size", type=int, default=2, help="input size I, 1-64 (2)")
    parser.add_argument("--hidden", type=int, default=3, help="hidden size H, 1-64 (3)")
    parser.add_argument(
        "--outputs", type=int, default=2, help="output size K, classes for ce, 1-64 (2)"
    )
    parser.add_argument("--steps", type=int, default=4, help="sequence length T, 1-256 (4)")
    parser.add_argument(
        "--loss",
        default="mse",
        help="mse (g = identity) or ce (g = softmax, cross-entropy; needs K ≥ 2) (mse)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed for weights and data (0)")
    parser.add_argument(
        "--format",
        default="text",
        help="text (aligned, 4 decimals), markdown (tables) or json (every number) (text)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    from rnnkit.diagnostics.explain import (
        ExplainConfig,
        explain,
        render_markdown,
        render_text,
        to_dict,
    )

    values = {field: getattr(args, option) for field, option in _OPTIONS.items()}
    try:
        config = ExplainConfig(**values)
    except ValueError as error:
        # The config names its fields; the user typed flags.
        field, _, rest = str(error).partition(" ")
        flag = "--" + _OPTIONS.get(field, field).replace("_", "-")
        raise UsageError(f"{flag} {rest}") from None
    explanation = explain(config)
    if args.format == "json":
        print(json.dumps(to_dict(explanation)))
    elif args.format == "markdown":
        print(render_markdown(explanation), end="")
    else:
        print(render_text(explanation), end="")
    return 0 if explanation.agrees else 1
