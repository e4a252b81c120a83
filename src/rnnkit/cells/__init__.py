"""Recurrent cells: one time step each. See :mod:`rnnkit.cells.base` for the protocol."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from rnnkit.cells.base import Cell, RecurrentCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell, ProjectedLSTMCell
from rnnkit.cells.mingru import MinGRUCell
from rnnkit.cells.minimal import MinimalCell
from rnnkit.cells.minlstm import MinLSTMCell
from rnnkit.cells.rnn import RNNCell

#: Builds one cell from (input_size, hidden_size).
CellFactory = Callable[[int, int], nn.Module]

#: The only place where a cell name becomes a class.
CELL_NAMES: tuple[str, ...] = (
    "rnn", "rnn_relu", "lstm", "gru", "mingru", "mingru_log", "minlstm", "minlstm_log"
)  # fmt: skip

#: The cells torch.nn has too (nn.RNN, nn.LSTM, nn.GRU), weight for weight.
TORCH_CELL_NAMES: tuple[str, ...] = ("rnn", "rnn_relu", "lstm", "gru")

#: The cells whose gates read x_t alone (h_t = a_t ⊙ h_{t−1} + b_t): they train by scan.
MINIMAL_CELL_NAMES: tuple[str, ...] = ("mingru", "mingru_log", "minlstm", "minlstm_log")

#: The cells with a gate that keeps h_{t−1}: what :func:`rnnkit.cells.init.gate_bias_` biases.
GATED_CELL_NAMES: tuple[str, ...] = ("lstm", "gru", *MINIMAL_CELL_NAMES)


def cell_factory(name: str, *, bias: bool = True, proj_size: int = 0) -> CellFactory:
    """The factory for a built-in cell name: ``"rnn"`` (tanh), ``"rnn_relu"``, ``"lstm"``,
    ``"gru"``, and the minimal cells ``"mingru"``, ``"minlstm"`` with their log forms
    ``"mingru_log"``, ``"minlstm_log"`` (:mod:`rnnkit.cells.minimal`).

    ``proj_size`` P > 0 (``"lstm"`` only) gives :class:`ProjectedLSTMCell`, torch.nn's
    ``nn.LSTM(proj_size=P)`` layer."""
    if proj_size:
        if name != "lstm":
            raise ValueError(f"proj_size: only the LSTM has a projection, got cell {name!r}")
        return lambda i, h: ProjectedLSTMCell(i, h, proj_size, bias=bias)
    if name == "rnn":
        return functools.partial(RNNCell, bias=bias, nonlinearity="tanh")
    if name == "rnn_relu":
        return functools.partial(RNNCell, bias=bias, nonlinearity="relu")
    if name == "lstm":
        return functools.partial(LSTMCell, bias=bias)
    if name == "gru":
        return functools.partial(GRUCell, bias=bias)
    if name in MINIMAL_CELL_NAMES:
        kind, _, form = name.partition("_")
        minimal = MinGRUCell if kind == "mingru" else MinLSTMCell
        return functools.partial(minimal, bias=bias, form=form or "plain")
    raise ValueError(f"unknown cell {name!r}: expected one of {', '.join(CELL_NAMES)}")


__all__ = [
    "CELL_NAMES",
    "GATED_CELL_NAMES",
    "MINIMAL_CELL_NAMES",
    "TORCH_CELL_NAMES",
    "Cell",
    "CellFactory",
    "GRUCell",
    "LSTMCell",
    "MinGRUCell",
    "MinLSTMCell",
    "MinimalCell",
    "ProjectedLSTMCell",
    "RNNCell",
    "RecurrentCell",
    "cell_factory",
]
