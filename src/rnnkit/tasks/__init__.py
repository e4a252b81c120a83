"""The tasks: data → trained model → metrics, predictions and samples, one module each.

The contract every task follows is :class:`rnnkit.tasks.task.Task`. A task's module
is imported only when the task is used (:func:`get`), so naming the tasks costs
nothing (``rnnkit --help``): :data:`NAMES` needs no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnnkit.tasks.task import Task

# Task name (``rnnkit train NAME``, ``kind`` in a run's config.toml) → its module.
NAMES = {
    "classify": "classification",
    "tag": "tagging",
    "lm": "language_model",
    "forecast": "forecasting",
    "seq2seq": "seq2seq",
    "music": "music",
    "seqclass": "sequence_classification",
    "caption": "captioning",
}


def get(name: str) -> Task[Any, Any, Any, Any, Any, Any]:
    """The task called ``name`` (one of :data:`NAMES`): its module's ``TASK``, the module
    imported now (a module of this package: the layer check has nothing to see)."""
    from rnnkit.tasks.task import Task

    if name not in NAMES:
        raise ValueError(f"task: expected one of {', '.join(NAMES)}, got {name!r}")
    task = getattr(importlib.import_module(f"{__name__}.{NAMES[name]}"), "TASK", None)
    if not isinstance(task, Task) or task.name != name:  # a module that breaks the contract
        raise TypeError(f"rnnkit.tasks.{NAMES[name]}.TASK is not the {name!r} task")
    return task
