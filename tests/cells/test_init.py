"""Initialisation schemes."""

from __future__ import annotations

import pytest
import torch

from rnnkit.cells import GRUCell, LSTMCell, MinGRUCell, MinLSTMCell, RNNCell
from rnnkit.cells.init import gate_bias_, orthogonal_recurrent_


def test_gate_bias_moves_only_the_forget_or_update_gate() -> None:
    for cell in (LSTMCell(2, 3), GRUCell(2, 3)):
        before = cell.bias_hh.detach().clone()
        gate_bias_(cell, 1.0)
        delta = cell.bias_hh.detach() - before
        expected = torch.zeros_like(delta)
        expected[3:6] = 1.0  # block 1: f for the LSTM (i, f, g, o), z for the GRU (r, z, n)
        torch.testing.assert_close(delta, expected)
    with pytest.raises(ValueError, match="needs an LSTM, GRU, minLSTM or minGRU cell, got RNNCell"):
        gate_bias_(RNNCell(2, 3))
    with pytest.raises(ValueError, match="needs a cell with bias=True"):
        gate_bias_(LSTMCell(2, 3, bias=False))


def test_gate_bias_of_the_minimal_cells_raises_their_retention_a_t() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 2, dtype=torch.float64)
    for cell, block, sign in ((MinLSTMCell(2, 3), 1, 1.0), (MinGRUCell(2, 3), 0, -1.0)):
        cell.double()
        before = cell.bias_ih.detach().clone()
        a_before, _ = cell.coefficients(x)
        gate_bias_(cell, 1.0)
        delta = cell.bias_ih.detach() - before
        expected = torch.zeros_like(delta)
        expected[3 * block : 3 * block + 3] = sign  # minLSTM: f (i, f, h̃); minGRU: z (z, h̃)
        torch.testing.assert_close(delta, expected)
        a_after, _ = cell.coefficients(x)
        assert bool((a_after > a_before).all())  # every unit keeps more of h_{t−1}
    with pytest.raises(ValueError, match="needs a cell with bias=True"):
        gate_bias_(MinGRUCell(2, 3, bias=False))


def test_orthogonal_recurrent_makes_each_gate_block_orthogonal() -> None:
    cell = orthogonal_recurrent_(LSTMCell(2, 5).double())
    for block in cell.weight_hh.detach().split(5):
        torch.testing.assert_close(block @ block.t(), torch.eye(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="needs a built-in cell"):
        orthogonal_recurrent_(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="with a recurrent matrix W, got MinGRUCell"):
        orthogonal_recurrent_(MinGRUCell(2, 2))
