"""Initialisation schemes."""

from __future__ import annotations

import pytest
import torch

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.cells.init import gate_bias_, orthogonal_recurrent_


def test_gate_bias_moves_only_the_forget_or_update_gate() -> None:
    for cell in (LSTMCell(2, 3), GRUCell(2, 3)):
        before = cell.bias_hh.detach().clone()
        gate_bias_(cell, 1.0)
        delta = cell.bias_hh.detach() - before
        expected = torch.zeros_like(delta)
        expected[3:6] = 1.0  # block 1: f for the LSTM (i, f, g, o), z for the GRU (r, z, n)
        torch.testing.assert_close(delta, expected)
    with pytest.raises(ValueError, match="gate_bias_ needs an LSTMCell or a GRUCell, got RNNCell"):
        gate_bias_(RNNCell(2, 3))
    with pytest.raises(ValueError, match="needs a cell with bias=True"):
        gate_bias_(LSTMCell(2, 3, bias=False))


def test_orthogonal_recurrent_makes_each_gate_block_orthogonal() -> None:
    cell = orthogonal_recurrent_(LSTMCell(2, 5).double())
    for block in cell.weight_hh.detach().split(5):
        torch.testing.assert_close(block @ block.t(), torch.eye(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="needs a built-in cell"):
        orthogonal_recurrent_(torch.nn.Linear(2, 2))
