"""The Elman cell against its equation, written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit import HiddenState, RNNCell


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_step_is_f_of_u_x_plus_w_h_plus_b(nonlinearity: str) -> None:
    torch.manual_seed(0)
    cell = RNNCell(3, 4, nonlinearity=nonlinearity).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    h_prev = torch.randn(2, 4, dtype=torch.float64)
    U, W = cell.weight_ih, cell.weight_hh
    b = cell.bias_ih + cell.bias_hh  # type: ignore[operator]
    f = torch.tanh if nonlinearity == "tanh" else torch.relu
    expected = f(x @ U.T + h_prev @ W.T + b)
    output, state = cell(x, HiddenState(h_prev))
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
    assert state.h is output  # the step's output is h_t itself


def test_golden_values_under_constant_weights() -> None:
    # U = 0.5, W = −0.25, b = 0.1 + 0.1; x = (1, 2), h_{t−1} = (1, 1):
    # every unit gets tanh(0.5·3 − 0.25·2 + 0.2) = tanh(1.2).
    cell = RNNCell(2, 2).double()
    with torch.no_grad():
        cell.weight_ih.fill_(0.5)
        cell.weight_hh.fill_(-0.25)
        cell.bias_ih.fill_(0.1)  # type: ignore[union-attr]
        cell.bias_hh.fill_(0.1)  # type: ignore[union-attr]
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    output, _ = cell(x, HiddenState(torch.ones(1, 2, dtype=torch.float64)))
    assert output.flatten().tolist() == pytest.approx([math.tanh(1.2)] * 2, abs=1e-15)


def test_relu_cell_clips_negative_preactivations() -> None:
    cell = RNNCell(1, 1, nonlinearity="relu", bias=False).double()
    with torch.no_grad():
        cell.weight_ih.fill_(-1.0)
        cell.weight_hh.fill_(0.0)
    output, _ = cell(torch.tensor([[2.0]], dtype=torch.float64), cell.initial_state(1))
    assert output.item() == 0.0
