"""``rnnkit selfcheck``: check every cell and backend against torch.nn, and time them."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from rnnkit.cli.arguments import positive_int


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "selfcheck",
        help="check every cell and backend against torch.nn, then time them",
        description=(
            "Copy torch.nn weights into rnnkit, run a ragged float64 batch through every "
            "cell and backend, report the largest difference in outputs and gradients, "
            "then time a training step of each backend against torch.nn.\n\n"
            "example: rnnkit selfcheck --repeats 9 --hidden 256"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=positive_int, default=16, help="timing batch size B (16)")
    parser.add_argument(
        "--steps", type=positive_int, default=50, help="timing sequence length T (50)"
    )
    parser.add_argument(
        "--input-size", type=positive_int, default=32, help="timing input size I (32)"
    )
    parser.add_argument(
        "--hidden", type=positive_int, default=128, help="timing hidden size H (128)"
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=5, help="interleaved timing rounds (5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and data (0)")
    parser.add_argument("--no-timing", action="store_true", help="check agreement only")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of tables"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from rnnkit import allocator
    from rnnkit.bptt import compiled
    from rnnkit.selfcheck import SelfCheckConfig, check_agreement, measure_speed

    config = SelfCheckConfig(
        batch=args.batch,
        steps=args.steps,
        input_size=args.input_size,
        hidden_size=args.hidden,
        repeats=args.repeats,
        seed=args.seed,
    )
    agreement = check_agreement(config)
    ok = all(max(r.outputs, r.gradients) <= config.tolerance for r in agreement)
    speed = [] if args.no_timing else measure_speed(config)
    if args.json:
        print(
            json.dumps(
                {
                    "config": asdict(config),
                    "agree": ok,
                    "fused_loops": compiled.status(),
                    "allocator": allocator.status(),
                    "agreement": [asdict(r) for r in agreement],
                    "speed": [asdict(r) for r in speed],
                }
            )
        )
        return 0 if ok else 1

    print(f"rnnkit selfcheck: torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fused backend: {compiled.status()}  (fused-py: its Python loops)")
    print(f"allocator: {allocator.status()} ({allocator.ENV})")
    print("\nAgreement with torch.nn, the minimal cells' with the unrolled loop (float64; "
          "2 layers, bidirectional, lengths 7,1,4,6):")  # fmt: skip
    print(f"  {'cell':<11} {'backend':<9} {'max |Δ| outputs':>16} {'max |Δ| grads':>14}  verdict")
    for r in agreement:
        verdict = "ok" if max(r.outputs, r.gradients) <= config.tolerance else "MISMATCH"
        print(f"  {r.cell:<11} {r.backend:<9} {r.outputs:>16.2e} {r.gradients:>14.2e}  {verdict}")
    if speed:
        print(
            f"\nTraining step (forward + backward), float32, B{config.batch} T{config.steps} "
            f"I{config.input_size} H{config.hidden_size}, median of {config.repeats} interleaved:"
        )
        print(f"  {'cell':<6} {'backend':<9} {'median ms':>10} {'vs torch.nn':>12}")
        for s in speed:
            print(
                f"  {s.cell:<6} {s.backend:<9} {s.median_s * 1e3:>10.2f} "
                f"{s.speedup_vs_torch:>11.2f}x"
            )
    print("\nall cells and backends agree with torch.nn" if ok else "\nMISMATCH: see above")
    return 0 if ok else 1
