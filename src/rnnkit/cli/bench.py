"""``rnnkit bench``: run the benchmarks of a source checkout (``benchmarks/``).

The benchmark scripts are not part of the installed package: they live beside it
in the repository, with the results they write into BENCHMARKS.md. This command
finds them from an editable install (``make setup``) and runs one as a subprocess,
passing the remaining arguments through.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from rnnkit.cli.arguments import UsageError

# name → (script, what it measures)
BENCHMARKS = {
    "speed": ("speed.py", "training-step time and peak memory of every backend vs torch.nn"),
    "profile": ("profile_step.py", "where a fused training step spends its time"),
    "stream": ("stream_memory.py", "memory of carried-state streams and TBPTT"),
    "gradflow": ("gradient_flow.py", "gradient norms through time per cell (plots)"),
    "quality": ("quality.py", "the quality targets on real data, one command per row"),
    "dropin": ("drop_in.py", "rnnkit.nn's modules and cells against torch.nn's"),
    "compile": ("compile.py", "a torch.compile'd training step against eager"),
    "scan": ("scan.py", "the minimal cells' scan at long T against sequential RNNs"),
    "generation": ("generation.py", "one generation step against torch.nn's module and cells"),
}


def register(subparsers: Any) -> None:
    listing = "\n".join(f"  {name:<9} {what}" for name, (_, what) in BENCHMARKS.items())
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark of a source checkout (speed, quality, ...)",
        description=(
            "Run one of the repository's benchmarks; arguments after the name go to the "
            "script (its own --help lists them). Without a name, list them.\n\n"
            f"{listing}\n\n"
            "example:\n"
            "  rnnkit bench speed --memory --write BENCHMARKS.md\n"
            "  rnnkit bench quality --only adding,airpassengers"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", choices=tuple(BENCHMARKS), metavar="NAME",
                        help=f"the benchmark ({', '.join(BENCHMARKS)})")  # fmt: skip
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="...",
                        help="arguments for the benchmark script")  # fmt: skip
    parser.set_defaults(run=run)


def benchmarks_dir() -> Path:
    """``benchmarks/`` of the checkout this rnnkit is installed from (editable)."""
    folder = Path(__file__).resolve().parents[3] / "benchmarks"
    if not (folder / "speed.py").is_file():
        raise UsageError(
            f"no benchmarks/ beside this rnnkit ({folder}): the benchmarks run from a source "
            "checkout installed with `make setup` (pip install -e .)"
        )
    return folder


def run(args: argparse.Namespace) -> int:
    if args.name is None:
        for name, (file, what) in BENCHMARKS.items():
            print(f"{name:<9} {what}  (benchmarks/{file})")
        return 0
    folder = benchmarks_dir()
    script = folder / BENCHMARKS[args.name][0]
    # Run from the checkout, so relative paths (BENCHMARKS.md, configs) resolve there.
    result = subprocess.run([sys.executable, str(script), *args.args], cwd=folder.parent)
    return int(result.returncode)
