"""Layers import downward only: cells ← unrolling/BPTT ← recurrent ← models ← training ← data ← cli."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnkit"

# Lower numbers are lower layers; a module may import its own layer or below.
LAYERS = {
    "configuration": 0, "timing": 0, "state": 0, "cells": 0,
    "unrolling": 1, "native": 1, "bptt": 1,
    "recurrent": 2, "tuning": 2, "stepping": 2, "diagnostics": 2, "selfcheck": 2,
    "losses": 3, "decoding": 3, "models": 3, "metrics": 3,
    "training": 4,
    "data": 5, "tasks": 5, "report": 5,
    "cli": 6, "__main__": 6, "__init__": 6,
}  # fmt: skip


def layer_of(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_every_import_points_down() -> None:
    offences = []
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        own = layer_of(name)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("rnnkit.")
            ):
                targets = [node.module.removeprefix("rnnkit.")]
            elif isinstance(node, ast.Import):
                targets = [
                    a.name.removeprefix("rnnkit.")
                    for a in node.names
                    if a.name.startswith("rnnkit.")
                ]
            for target in targets:
                if layer_of(target) > own:
                    offences.append(f"{name} imports rnnkit.{target}")
    assert offences == []


def test_every_top_level_module_has_a_layer() -> None:
    names = {
        p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()
    }
    names.discard("__pycache__")
    assert names <= set(LAYERS), sorted(names - set(LAYERS))
