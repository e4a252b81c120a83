"""``rnnkit gradflow``: how the gradient flows back through time, as plots and numbers."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from rnnkit.cli.arguments import UsageError, positive_int, seed

CELLS = ("rnn", "rnn_relu", "lstm", "gru", "mingru", "minlstm", "mingru_log", "minlstm_log")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gradflow",
        help="plot the gradient flow through time of a run or of fresh cells",
        description=(
            "Measure ‖∂L/∂h_t‖ over the steps t, and each step's share of ‖∂L/∂W‖, by "
            "explicit BPTT (rnnkit.diagnostics.gradient_flow). With RUN: the trained "
            "run's first recurrent layer on a batch of its own data, under the probe loss "
            "½‖h_T‖² on the last step. Without RUN: fresh cells on the adding problem, a "
            "linear head on the last step and the MSE, the gated cells starting with the "
            "usual +1 bias on the LSTM's forget gate and the GRU's update gate (--gate-bias "
            "0: torch.nn's initialisation). Writes one PNG per length T, "
            "summary.txt and summary.json into --out, and prints the summary: per cell "
            "and T, the ratio of the first step's gradient norm to the last step's.\n\n"
            "example:\n"
            "  rnnkit gradflow --cells rnn,lstm,gru --T 50,100,200 --hidden 64 --out gradflow\n"
            "  rnnkit gradflow runs/shakespeare"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run_dir", metavar="RUN", nargs="?", help="a trained run folder (leave out for fresh cells)"
    )
    parser.add_argument(
        "--cells",
        help=f"fresh cells, comma-separated ({', '.join(CELLS)}; rnn,lstm,gru)",
    )
    parser.add_argument(
        "--T",
        dest="lengths",
        help="fresh cells: sequence lengths, comma-separated (50,100,200)",
    )
    parser.add_argument("--hidden", type=positive_int, help="fresh cells: hidden size H (64)")
    parser.add_argument(
        "--batch",
        type=positive_int,
        help="fresh cells: adding-problem sequences per batch (16)",
    )
    parser.add_argument(
        "--gate-bias",
        type=float,
        help="fresh cells: added to the LSTM's forget-gate and the GRU's update-gate bias "
        "(1, the usual start; 0: torch.nn's initialisation)",
    )
    parser.add_argument(
        "--seed", type=seed, help="fresh cells: seed of the weights and the data (0)"
    )
    parser.add_argument(
        "--out", help="the folder for the plots and summary (RUN/gradflow, or gradflow)"
    )
    parser.set_defaults(run=run)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CELLS]
    if not names or unknown:
        raise UsageError(f"--cells: expected names among {', '.join(CELLS)}, got {text!r}")
    return names


# Fresh cells: explicit BPTT keeps the whole graph and H Jacobian rows per sequence,
# O(T·B·H²) work, so the sizes are capped where a run would take hours.
MAX_HIDDEN, MAX_BATCH, MAX_STEPS, MAX_LENGTHS = 1024, 1024, 10_000, 16


def _lengths(text: str) -> list[int]:
    try:
        lengths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 2 or max(lengths) > MAX_STEPS or len(lengths) > MAX_LENGTHS:
        raise UsageError(
            f"--T: expected up to {MAX_LENGTHS} comma-separated lengths in [2, {MAX_STEPS}], "
            f"got {text!r}"
        )
    return lengths


def _check_fresh(args: argparse.Namespace) -> None:
    """The fresh-cell sizes and numbers, before anything is built."""
    for flag, value, cap in (("--hidden", args.hidden, MAX_HIDDEN),
                             ("--batch", args.batch, MAX_BATCH)):  # fmt: skip
        if value > cap:
            raise UsageError(f"{flag}: expected at most {cap}, got {value}")
    if args.gate_bias is not None and not math.isfinite(args.gate_bias):
        raise UsageError(f"--gate-bias: expected a finite number, got {args.gate_bias}")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file (expected a folder for the plots)")


# The fresh-cell flags and their defaults (None in the parser: typed or not is told apart).
# The gate bias starts the gated cells remembering, as they are used in practice (Keras'
# unit_forget_bias, Jozefowicz et al. 2015): torch.nn's zero-mean biases put every gate
# near σ(0) = 0.5 and the gradient then vanishes as fast as the tanh RNN's.
FRESH = {"cells": "rnn,lstm,gru", "lengths": "50,100,200", "hidden": 64, "batch": 16,
         "gate_bias": 1.0, "seed": 0}  # fmt: skip
GATES = {"lstm": "forget gate", "gru": "update gate", "minlstm": "forget gate",
         "mingru": "update gate (−bias: a_t = 1 − z_t)", "minlstm_log": "forget gate",
         "mingru_log": "update gate (−bias: a_t = 1 − z_t)"}  # the gate each bias opens  # fmt: skip


def bias_line(cells: list[str], bias: float) -> str | None:
    """What the gated cells among ``cells`` started with, and how to see the other case."""
    gated = [f"the {name}'s {GATES[name]}" for name in cells if name in GATES]
    if not gated:
        return None
    where = " and ".join(gated)
    if bias == 0:
        return (f"gate bias: 0 (torch.nn's initialisation) on {where}; the default, "
                f"--gate-bias 1, starts them at +1 as they are used in practice")  # fmt: skip
    plain = [name for name in cells if name not in GATES]
    others = f"; {', '.join(plain)}: no gate" if plain else ""
    return f"gate bias: {_signed(bias)} on {where}{others}. --gate-bias 0 shows the unbiased cells"


def _signed(bias: float) -> str:
    return f"{bias:+g}" if bias else "0"


def run(args: argparse.Namespace) -> int:
    from rnnkit.report.gradflow import adding_flows, run_flow, write_flows

    if args.run_dir is not None:
        typed = [key for key in FRESH if getattr(args, key) is not None]
        if typed:
            flag = "--T" if typed[0] == "lengths" else "--" + typed[0].replace("_", "-")
            raise UsageError(f"{flag}: only for fresh cells; leave out RUN to use it")
        out = Path(args.out or Path(args.run_dir) / "gradflow")
        _check_out(out)
        flows = run_flow(args.run_dir)
        title = f"trained run {Path(args.run_dir).resolve().name}"
        note = None
    else:
        for key, default in FRESH.items():
            if getattr(args, key) is None:
                setattr(args, key, default)
        cells, lengths = _names(args.cells), _lengths(args.lengths)
        _check_fresh(args)
        out = Path(args.out or "gradflow")
        _check_out(out)
        flows = adding_flows(
            cells,
            lengths,
            hidden=args.hidden,
            batch=args.batch,
            seed=args.seed,
            gate_bias=args.gate_bias,
        )
        title = f"adding problem, untrained, H = {args.hidden}"
        if any(name in GATES for name in cells):
            title += f", gate bias {_signed(args.gate_bias)}"
        note = bias_line(cells, args.gate_bias)
    try:
        images, text = write_flows(flows, out, title)
    except ImportError as error:
        print(f"rnnkit gradflow: error: {error}", file=sys.stderr)
        return 1
    print(text, end="")
    if note is not None:
        print(note)
    for path in images:
        print(f"wrote {path}")
    print(f"wrote {out / 'summary.txt'} and {out / 'summary.json'}")
    return 0
