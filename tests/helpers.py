"""Small utilities the tests share: torch.nn oracles and loss reductions."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.state import HiddenState

TORCH_CELLS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "rnn": (nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTMCell, {}),
    "gru": (nn.GRUCell, {}),
}

TORCH_STACKS: dict[str, tuple[type[nn.RNNBase], dict[str, Any]]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}

TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-10},
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
}


def weighted_sum(tensors: list[Tensor], seed: int = 1234) -> Tensor:
    """A scalar that depends on every element of every tensor with distinct weights.

    Summing with random weights (not a plain sum) makes every output element's
    gradient different, so a swapped or misplaced element cannot cancel out.
    """
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=tensors[0].dtype)
    for tensor in tensors:
        weights = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
        total = total + (tensor * weights).sum()
    return total


def torch_state_fields(state: Tensor | tuple[Tensor, ...]) -> list[Tensor]:
    """torch.nn's h_n or (h_n, c_n) as a list of fields."""
    return list(state) if isinstance(state, tuple) else [state]


class ConcatCell(nn.Module):
    """A cell of one's own (not built in): h_t = tanh(Linear([x_t, h_{t−1}])).

    Only ``unroll`` (the ``"unrolled"`` backend) can run it.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.lin = nn.Linear(input_size + hidden_size, hidden_size)

    def forward(self, x: Tensor, state: HiddenState) -> tuple[Tensor, HiddenState]:
        h = torch.tanh(self.lin(torch.cat([x, state.h], 1)))  # (B, H)
        return h, HiddenState(h)

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> HiddenState:
        return HiddenState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))
