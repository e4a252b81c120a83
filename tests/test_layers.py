"""Layers import downward only: cells ← unrolling/BPTT ← recurrent ← models ← training ← data ← cli."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnkit"

# Lower numbers are lower layers; a module may import its own layer or below.
LAYERS = {
    "version": 0, "configuration": 0, "timing": 0, "allocator": 0, "stamps": 0, "projection": 0, "state": 0,
    "cells": 0,
    "unrolling": 1, "native": 1, "bptt": 1,
    "recurrent": 2, "tuning": 2, "stepping": 2, "diagnostics": 2, "selfcheck": 2,
    "losses": 3, "decoding": 3, "models": 3, "metrics": 3, "nn": 3, "export": 3,
    "training": 4,
    "data": 5, "tasks": 5, "report": 5,
    "cli": 6, "__main__": 6, "__init__": 6,
}  # fmt: skip


def layer_of(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def imported(tree: ast.AST) -> list[str]:
    """Every rnnkit module a file imports, relative to the package: ``import rnnkit.x``,
    ``from rnnkit.x import y``, ``from rnnkit import x`` (the module ``x`` when it is
    one, else the package's ``__init__``), and ``importlib.import_module("rnnkit.x")``
    with a constant name, anywhere in the file (inside functions too)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "rnnkit":
            for alias in node.names:
                submodule = (SRC / alias.name).is_dir() or (SRC / f"{alias.name}.py").is_file()
                found.append(alias.name if submodule else "__init__")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnkit."):
            found.append(node.module.removeprefix("rnnkit."))
        elif isinstance(node, ast.Import):
            found += [a.name.removeprefix("rnnkit.") for a in node.names
                      if a.name.startswith("rnnkit.")]  # fmt: skip
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith("rnnkit.")
        ):
            found.append(str(node.args[0].value).removeprefix("rnnkit."))
    return found


def test_every_import_points_down() -> None:
    offences = []
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        own = layer_of(name)
        for target in imported(ast.parse(path.read_text())):
            if layer_of(target) > own:
                offences.append(f"{name} imports rnnkit.{target}")
    assert offences == []


def test_the_check_sees_every_form_of_import() -> None:
    # A test of the test: each form below points up from a cell, and each is seen.
    source = """
import rnnkit.cli.main
from rnnkit.cli import main
from rnnkit import tasks
from rnnkit import Recurrent
def late():
    from rnnkit.training.trainer import Trainer
    importlib.import_module("rnnkit.report.html")
"""
    assert imported(ast.parse(source)) == [
        "cli.main", "cli", "tasks", "__init__", "training.trainer", "report.html"]  # fmt: skip
    assert all(layer_of(target) > layer_of("cells") for target in imported(ast.parse(source)))


def test_every_top_level_module_has_a_layer() -> None:
    names = {
        p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()
    }
    names.discard("__pycache__")
    assert names <= set(LAYERS), sorted(names - set(LAYERS))
