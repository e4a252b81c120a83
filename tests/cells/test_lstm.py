"""The LSTM cell against its equations, written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit import LSTMCell, LSTMState


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_step_follows_the_gate_equations_in_order_i_f_g_o() -> None:
    torch.manual_seed(0)
    cell = LSTMCell(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    h_prev, c_prev = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    H = 4
    pre = x @ cell.weight_ih.T + h_prev @ cell.weight_hh.T + cell.bias_ih + cell.bias_hh  # type: ignore[operator]
    i = torch.sigmoid(pre[:, 0 * H : 1 * H])
    f = torch.sigmoid(pre[:, 1 * H : 2 * H])
    g = torch.tanh(pre[:, 2 * H : 3 * H])
    o = torch.sigmoid(pre[:, 3 * H : 4 * H])
    c = f * c_prev + i * g
    h = o * torch.tanh(c)
    output, state = cell(x, LSTMState(h_prev, c_prev))
    torch.testing.assert_close(state.c, c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state.h, h, rtol=1e-12, atol=1e-12)
    assert output is state.h


def test_golden_values_under_constant_weights() -> None:
    # Every weight 0.1, biases 0, x = (1, 1), h_0 = c_0 = 0: each gate's
    # pre-activation is 0.2, so i = f = o = σ(0.2), g = tanh(0.2).
    cell = LSTMCell(2, 2).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.fill_(0.0)
        cell.weight_ih.fill_(0.1)
        cell.weight_hh.fill_(0.1)
    x = torch.ones(1, 2, dtype=torch.float64)
    _, s1 = cell(x, cell.initial_state(1))
    c1 = sigmoid(0.2) * math.tanh(0.2)
    h1 = sigmoid(0.2) * math.tanh(c1)
    assert s1.c.flatten().tolist() == pytest.approx([c1, c1], abs=1e-15)
    assert s1.h.flatten().tolist() == pytest.approx([h1, h1], abs=1e-15)
    # Second step: pre-activation 0.2 + 0.1·2·h1.
    _, s2 = cell(x, s1)
    pre = 0.2 + 0.2 * h1
    c2 = sigmoid(pre) * c1 + sigmoid(pre) * math.tanh(pre)
    h2 = sigmoid(pre) * math.tanh(c2)
    assert s2.c.flatten().tolist() == pytest.approx([c2, c2], abs=1e-15)
    assert s2.h.flatten().tolist() == pytest.approx([h2, h2], abs=1e-15)


def test_forget_gate_bias_preserves_memory() -> None:
    # A large forget bias and a closed input gate carry c_{t−1} through unchanged.
    cell = LSTMCell(1, 1).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.fill_(0.0)
        cell.bias_ih[0] = -50.0  # type: ignore[index]  # i closed
        cell.bias_ih[1] = 50.0  # type: ignore[index]  # f open
    state = LSTMState(
        torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), 0.7, dtype=torch.float64)
    )
    for _ in range(20):
        _, state = cell(torch.randn(1, 1, dtype=torch.float64), state)
    assert state.c.item() == pytest.approx(0.7, abs=1e-12)
