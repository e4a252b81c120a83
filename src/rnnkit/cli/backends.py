"""``rnnkit backends``: the measured backend choices cached on this machine; ``--clear``."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import astuple
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backends",
        help="show (or clear) the backend choices `auto` measured on this machine",
        description=(
            "Recurrent(backend='auto') times the exact backends (fused, native) at the\n"
            "first forward of each new shape key and keeps the fastest, preferring the\n"
            "static rule's choice unless the other is over 5% faster. The choices are\n"
            "cached per machine, torch version and version of the backends' code under\n"
            "$RNNKIT_CACHE_DIR/backends (default ~/.cache/rnnkit/backends). RNNKIT_TUNE=0\n"
            "turns the measuring off; "
            "a model's backend key (--backend) pins one.\n\n"
            "example:\n"
            "  rnnkit backends\n"
            "  rnnkit backends --json\n"
            "  rnnkit backends --clear"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--clear",
        action="store_true",
        help="delete the cached tables (every machine, torch and code version in the folder)",
    )
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit import tuning

    tuner = tuning.Tuner()
    path = tuner.path
    if args.clear:
        removed = tuner.clear()
        print(f"removed {len(removed)} table{'s' * (len(removed) != 1)} from {path.parent}")
        return 0
    entries = tuner.table()
    rows = []
    for entry in entries.values():
        key = tuning.key_of(entry)
        if key is not None:
            rows.append((key, entry))
    rows.sort(key=lambda row: astuple(row[0]))  # grouped by stack, then mode, then size
    switch = os.environ.get("RNNKIT_TUNE")
    state = "on" if tuning.is_enabled() else "off"
    why = f"RNNKIT_TUNE={switch}" if switch is not None else "RNNKIT_TUNE unset"
    if args.json:
        print(json.dumps({**tuning.identity(), "path": str(path), "tuning": state == "on",
                          "entries": [entry for _, entry in rows]}))  # fmt: skip
        return 0
    if not path.exists():
        note = " (none yet)"
    elif not entries:
        note = " (unreadable, or not this machine's, torch's and code's: ignored and re-measured)"
    else:
        note = ""
    print(f"table: {path}{note}")
    print(
        f"machine: {tuning.machine()}; torch {tuning.identity()['torch']}; "
        f"backend code {tuning.code()}"
    )
    print(f"tuning: {state} ({why})")
    if not rows:
        print("no measured choices yet: the first forward of each new shape measures one")
        return 0
    header = ("cell", "L", "D", "I", "H", "dtype", "device", "threads", "mode", "B", "T",
              "lengths", "loops", "backend", "static", "ms fused", "ms native")  # fmt: skip
    table = [header]
    for key, entry in rows:
        seconds = entry["seconds"]
        table.append((
            key.cell, str(key.layers), str(key.directions), str(key.input_size),
            str(key.hidden_size), key.dtype, key.device, str(key.threads),
            "train" if key.training else "no-grad", f"≤{key.batch}", f"≤{key.steps}",
            "ragged" if key.ragged else "full", key.loops, entry["backend"], entry["static"],
            *(f"{seconds[name] * 1e3:.3g}" if name in seconds else "-"
              for name in ("fused", "native")),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(line.rstrip())
    return 0
