"""When the native backend applies, and that it refuses everything else."""

from __future__ import annotations

from rnnkit import GRUCell, LSTMCell, RNNCell
from rnnkit.native import native_kernel


class SubclassedLSTM(LSTMCell):
    pass


def test_built_in_cells_of_one_kind_get_a_kernel() -> None:
    for cells in ([RNNCell(2, 3)], [LSTMCell(2, 3), LSTMCell(3, 3)], [GRUCell(2, 3)] * 2):
        kernel, why = native_kernel(cells)
        assert kernel is not None and why == ""


def test_anything_else_is_refused_with_a_reason() -> None:
    cases = [
        ([LSTMCell(2, 3), GRUCell(3, 3)], "mixes cell types"),
        ([SubclassedLSTM(2, 3)], "SubclassedLSTM is not one of rnnkit's built-in cells"),
        ([LSTMCell(2, 3), LSTMCell(3, 3, bias=False)], "disagree on bias"),
        ([RNNCell(2, 3), RNNCell(3, 3, nonlinearity="relu")], "mix nonlinearities"),
        ([GRUCell(2, 3), GRUCell(3, 3).double()], "several dtypes or devices"),
    ]
    for cells, reason in cases:
        kernel, why = native_kernel(cells)
        assert kernel is None
        assert reason in why
