"""Recurrent cells: one time step each. See :mod:`rnnkit.cells.base` for the protocol."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from rnnkit.cells.base import Cell, RecurrentCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.rnn import RNNCell

#: Builds one cell from (input_size, hidden_size).
CellFactory = Callable[[int, int], nn.Module]

#: The only place where a cell name becomes a class.
CELL_NAMES: tuple[str, ...] = ("rnn", "rnn_relu", "lstm", "gru")


def cell_factory(name: str, *, bias: bool = True) -> CellFactory:
    """The factory for a built-in cell name: ``"rnn"`` (tanh), ``"rnn_relu"``, ``"lstm"``, ``"gru"``."""
    if name == "rnn":
        return functools.partial(RNNCell, bias=bias, nonlinearity="tanh")
    if name == "rnn_relu":
        return functools.partial(RNNCell, bias=bias, nonlinearity="relu")
    if name == "lstm":
        return functools.partial(LSTMCell, bias=bias)
    if name == "gru":
        return functools.partial(GRUCell, bias=bias)
    raise ValueError(f"unknown cell {name!r}: expected one of {', '.join(CELL_NAMES)}")


__all__ = [
    "CELL_NAMES",
    "Cell",
    "CellFactory",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "RecurrentCell",
    "cell_factory",
]
