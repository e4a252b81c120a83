"""Initialisation schemes for the built-in cells, beyond torch.nn's default.

torch.nn draws every weight and bias from U(−1/√H, 1/√H). Two widely used
departures, both in place and both keeping torch.nn's parameter layout:

* :func:`gate_bias_` starts a gated cell *remembering*: +1 on the LSTM's forget
  gate (Gers et al. 2000; Jozefowicz et al. 2015; Keras' ``unit_forget_bias``), or
  on the GRU's update gate z, which in torch.nn's convention keeps h_{t−1}. With
  σ(0) = 0.5 the gradient along the memory path halves every step; with σ(1) ≈ 0.73
  it decays far more slowly (``docs/gradient-flow.md`` measures it).
* :func:`orthogonal_recurrent_` makes each gate's block of W orthogonal (Saxe et
  al. 2014; Keras' default ``recurrent_initializer``): all singular values 1.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.cells.base import RecurrentCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell


@torch.no_grad()
def gate_bias_(cell: nn.Module, value: float = 1.0) -> nn.Module:
    """Add ``value`` to the bias of the LSTM's forget gate or the GRU's update gate."""
    if isinstance(cell, LSTMCell):
        block = 1  # gate order i, f, g, o
    elif isinstance(cell, GRUCell):
        block = 1  # gate order r, z, n
    else:
        raise ValueError(
            f"cell: gate_bias_ needs an LSTMCell or a GRUCell, got {type(cell).__name__}"
        )
    if cell.bias_hh is None:
        raise ValueError("cell: gate_bias_ needs a cell with bias=True")
    hidden = cell.hidden_size
    cell.bias_hh[block * hidden : (block + 1) * hidden] += value
    return cell


@torch.no_grad()
def orthogonal_recurrent_(cell: nn.Module) -> nn.Module:
    """Make every gate's (H, H) block of W = ``weight_hh`` an orthogonal matrix."""
    if not isinstance(cell, RecurrentCell):
        raise ValueError(
            f"cell: orthogonal_recurrent_ needs a built-in cell, got {type(cell).__name__}"
        )
    hidden = cell.hidden_size
    for block in cell.weight_hh.chunk(cell.weight_hh.shape[0] // hidden):  # (H, H) views
        nn.init.orthogonal_(block)
    return cell
