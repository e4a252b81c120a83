"""The tasks: data → trained model → metrics, predictions and samples, one module each.

The contract every task follows is :class:`rnnkit.tasks.task.Task`. A task's module
is imported only when the task is used (:func:`get`), so naming the tasks costs
nothing (``rnnkit --help``): :data:`NAMES` needs no torch.
"""

from __future__ import annotations

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
    """The task called ``name`` (one of :data:`NAMES`), its module imported now."""
    # Plain imports, one per task: typed, and seen by the layer check.
    if name == "classify":
        from rnnkit.tasks.classification import TASK as CLASSIFY

        return CLASSIFY
    if name == "tag":
        from rnnkit.tasks.tagging import TASK as TAG

        return TAG
    if name == "lm":
        from rnnkit.tasks.language_model import TASK as LM

        return LM
    if name == "forecast":
        from rnnkit.tasks.forecasting import TASK as FORECAST

        return FORECAST
    if name == "seq2seq":
        from rnnkit.tasks.seq2seq import TASK as SEQ2SEQ

        return SEQ2SEQ
    if name == "music":
        from rnnkit.tasks.music import TASK as MUSIC

        return MUSIC
    if name == "seqclass":
        from rnnkit.tasks.sequence_classification import TASK as SEQCLASS

        return SEQCLASS
    if name == "caption":
        from rnnkit.tasks.captioning import TASK as CAPTION

        return CAPTION
    raise ValueError(f"task: expected one of {', '.join(NAMES)}, got {name!r}")
