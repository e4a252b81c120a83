"""The tasks: data → trained model → metrics, predictions and samples, one module each.

The contract every task module follows is in :mod:`rnnkit.tasks.task`. Modules are
imported only when a task is used, so naming them costs nothing (``rnnkit --help``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Task name (``rnnkit train NAME``) → module under rnnkit.tasks.
MODULES = {
    "classify": "classification",
    "tag": "tagging",
    "lm": "language_model",
    "forecast": "forecasting",
    "seq2seq": "seq2seq",
    "music": "music",
    "seqclass": "sequence_classification",
    "caption": "captioning",
}


def task_module(name: str) -> ModuleType:
    """The module of the task ``name`` (one of :data:`MODULES`)."""
    if name not in MODULES:
        raise ValueError(f"task: expected one of {', '.join(MODULES)}, got {name!r}")
    return importlib.import_module(f"rnnkit.tasks.{MODULES[name]}")
