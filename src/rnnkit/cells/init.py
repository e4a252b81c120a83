"""Initialisation schemes for the built-in cells, beyond torch.nn's default.

torch.nn draws every weight and bias from U(−1/√H, 1/√H). Two widely used
departures, both in place and both keeping torch.nn's parameter layout:

* :func:`gate_bias_` starts a gated cell *remembering*: +1 on the LSTM's forget
  gate (Gers et al. 2000; Jozefowicz et al. 2015; Keras' ``unit_forget_bias``), or
  on the GRU's update gate z, which in torch.nn's convention keeps h_{t−1}. For the
  minimal cells the same shift of the retention a_t: +1 on minLSTM's forget gate,
  −1 on minGRU's z (which, in the paper's convention, weighs the new candidate). With
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
from rnnkit.cells.mingru import MinGRUCell
from rnnkit.cells.minlstm import MinLSTMCell


@torch.no_grad()
def gate_bias_(cell: nn.Module, value: float = 1.0) -> nn.Module:
    """Shift the gate that keeps h_{t−1} by ``value``: the LSTM's and minLSTM's forget
    gate (+value), the GRU's update gate (+value), minGRU's update gate (−value)."""
    sign = 1.0
    if isinstance(cell, LSTMCell | GRUCell):
        block, bias = 1, cell.bias_hh  # gate orders i, f, g, o and r, z, n
    elif isinstance(cell, MinLSTMCell):
        block, bias = 1, cell.bias_ih  # gate order i, f, h̃
    elif isinstance(cell, MinGRUCell):
        block, bias, sign = 0, cell.bias_ih, -1.0  # gate order z, h̃; a_t = 1 − z_t
    else:
        raise ValueError(
            f"cell: gate_bias_ needs an LSTM, GRU, minLSTM or minGRU cell, got "
            f"{type(cell).__name__}"
        )
    if bias is None:
        raise ValueError("cell: gate_bias_ needs a cell with bias=True")
    hidden = cell.hidden_size
    bias[block * hidden : (block + 1) * hidden] += sign * value
    return cell


@torch.no_grad()
def orthogonal_recurrent_(cell: nn.Module) -> nn.Module:
    """Make every gate's (H, H) block of W = ``weight_hh`` an orthogonal matrix."""
    if not isinstance(cell, RecurrentCell) or not cell.recurrent_weights:
        raise ValueError(
            f"cell: orthogonal_recurrent_ needs a built-in cell with a recurrent matrix W, "
            f"got {type(cell).__name__}"
        )
    hidden = cell.hidden_size
    for block in cell.weight_hh.chunk(cell.weight_hh.shape[0] // hidden):  # (H, H) views
        nn.init.orthogonal_(block)
    return cell
