"""rnnkit: recurrent neural networks made explicit, correct and fast, on PyTorch.

The public API is re-exported here; each name lives in the module named after it.
Re-exports resolve on first use (PEP 562), so ``import rnnkit`` and the CLI's
``--help`` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rnnkit.version import __version__

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "CELL_NAMES": "rnnkit.cells",
    "Cell": "rnnkit.cells",
    "GRUCell": "rnnkit.cells",
    "LSTMCell": "rnnkit.cells",
    "MinGRUCell": "rnnkit.cells",
    "MinLSTMCell": "rnnkit.cells",
    "RNNCell": "rnnkit.cells",
    "RecurrentCell": "rnnkit.cells",
    "cell_factory": "rnnkit.cells",
    "StatefulStream": "rnnkit.bptt.truncated",
    "TBPTTConfig": "rnnkit.bptt.truncated",
    "truncated_bptt": "rnnkit.bptt.truncated",
    "GradientFlow": "rnnkit.diagnostics.gradflow",
    "LossSum": "rnnkit.losses",
    "Trainer": "rnnkit.training.trainer",
    "TrainerConfig": "rnnkit.training.trainer",
    "Examples": "rnnkit.training.sampler",
    "gradient_flow": "rnnkit.diagnostics.gradflow",
    "BACKENDS": "rnnkit.recurrent",
    "Recurrent": "rnnkit.recurrent",
    "RecurrentConfig": "rnnkit.recurrent",
    "HiddenState": "rnnkit.state",
    "LSTMState": "rnnkit.state",
    "detach_state": "rnnkit.state",
    "map_state": "rnnkit.state",
    "stack_states": "rnnkit.state",
    "unstack_state": "rnnkit.state",
    "where_state": "rnnkit.state",
    "unroll": "rnnkit.unrolling",
    "Stepper": "rnnkit.stepping",
}

__all__ = [
    "BACKENDS",
    "CELL_NAMES",
    "Cell",
    "Examples",
    "GRUCell",
    "GradientFlow",
    "HiddenState",
    "LSTMCell",
    "LSTMState",
    "LossSum",
    "MinGRUCell",
    "MinLSTMCell",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "RecurrentConfig",
    "StatefulStream",
    "Stepper",
    "TBPTTConfig",
    "Trainer",
    "TrainerConfig",
    "__version__",
    "cell_factory",
    "detach_state",
    "gradient_flow",
    "map_state",
    "stack_states",
    "truncated_bptt",
    "unroll",
    "unstack_state",
    "where_state",
]

if TYPE_CHECKING:
    from rnnkit.bptt.truncated import StatefulStream, TBPTTConfig, truncated_bptt
    from rnnkit.cells import (
        CELL_NAMES,
        Cell,
        GRUCell,
        LSTMCell,
        MinGRUCell,
        MinLSTMCell,
        RecurrentCell,
        RNNCell,
        cell_factory,
    )
    from rnnkit.diagnostics.gradflow import GradientFlow, gradient_flow
    from rnnkit.losses import LossSum
    from rnnkit.recurrent import BACKENDS, Recurrent, RecurrentConfig
    from rnnkit.state import (
        HiddenState,
        LSTMState,
        detach_state,
        map_state,
        stack_states,
        unstack_state,
        where_state,
    )
    from rnnkit.stepping import Stepper
    from rnnkit.training.sampler import Examples
    from rnnkit.training.trainer import Trainer, TrainerConfig
    from rnnkit.unrolling import unroll


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
