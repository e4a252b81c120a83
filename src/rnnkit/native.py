"""The ``"native"`` backend: torch.nn's own RNN kernels run over rnnkit's parameters.

``torch.nn.RNN``/``LSTM``/``GRU`` call one ATen kernel per stack (``torch._VF.lstm``
and friends; cuDNN on CUDA). Those kernels take the weights as a flat list in
torch.nn's order, so a stack of rnnkit's built-in cells, whose parameters already
have torch.nn's layout, can be handed to them directly: no copy, and gradients land
on rnnkit's own parameters. This module decides when that is exact (only
built-in cells of one kind) and makes the call, packing ragged batches the way
``torch.nn`` does (``pack_padded_sequence`` with ``enforce_sorted=False``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells import GRUCell, LSTMCell, RNNCell

Kernel = Callable[..., Any]


def native_kernel(cells: Sequence[nn.Module]) -> tuple[Kernel | None, str]:
    """The ATen kernel that computes exactly this stack of cells, or ``None`` and why not.

    Args:
        cells: the stack's cells in torch.nn's order (layer-major, direction-minor).
    """
    kinds = {type(cell) for cell in cells}
    if len(kinds) != 1:
        return None, f"the stack mixes cell types {sorted(k.__name__ for k in kinds)}"
    kind = kinds.pop()
    # Exact types only: a subclass may override forward and compute something else.
    if kind not in (RNNCell, LSTMCell, GRUCell):
        return None, f"{kind.__name__} is not one of rnnkit's built-in cells"
    first = cells[0]
    if any(cell.bias != first.bias for cell in cells):
        return None, "the cells disagree on bias"
    if kind is RNNCell:
        nonlinearities = {cell.nonlinearity for cell in cells}
        if len(nonlinearities) != 1:
            return None, "the RNN cells mix nonlinearities"
        name = "rnn_tanh" if first.nonlinearity == "tanh" else "rnn_relu"
    else:
        name = "lstm" if kind is LSTMCell else "gru"
    dtypes = {p.dtype for cell in cells for p in cell.parameters()}
    devices = {p.device for cell in cells for p in cell.parameters()}
    if len(dtypes) != 1 or len(devices) != 1:
        return None, "the cells' parameters are spread over several dtypes or devices"
    # torch._VF is private but is exactly what torch.nn.modules.rnn calls; it has kept
    # this signature since PyTorch 1.0.
    kernel: Kernel = getattr(torch._VF, name)
    return kernel, ""


def run_native(
    kernel: Kernel,
    cells: Sequence[nn.Module],
    inputs: Tensor,
    state: tuple[Tensor, ...],
    lengths: Tensor | None,
    *,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run the stack with torch.nn's kernel.

    Args:
        kernel: from :func:`native_kernel`.
        inputs: ``(B, T, I)``.
        state: stacked initial state, every field ``(L·D, B, H)``.
        lengths: validated CPU int64 ``(B,)``, or ``None`` when every row is full length.

    Returns:
        ``(outputs (B, T, D·H), final_state)`` with ``final_state`` of ``state``'s type.
    """
    weights: list[Tensor] = []
    for cell in cells:  # torch.nn's flat order: per (layer, direction) w_ih, w_hh, b_ih, b_hh
        weights.extend(p for _, p in cell.named_parameters())
    has_bias = len(weights) == 4 * len(cells)
    steps = inputs.shape[1]
    # LSTM's kernel takes (h, c) as a tuple, the others take h alone.
    options = (has_bias, num_layers, float(dropout), training, bidirectional)

    if lengths is None:
        hx: Any = tuple(state) if len(state) > 1 else state[0]
        result = kernel(inputs, hx, weights, *options, True)  # batch_first=True
        return result[0], type(state)(*result[1:])

    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    assert packed.sorted_indices is not None and packed.unsorted_indices is not None
    sorted_state = [field.index_select(1, packed.sorted_indices) for field in state]
    hx = tuple(sorted_state) if len(sorted_state) > 1 else sorted_state[0]
    result = kernel(packed.data, packed.batch_sizes, hx, weights, *options)
    packed_out = PackedSequence(
        result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
    )
    outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=steps)
    final = [field.index_select(1, packed.unsorted_indices) for field in result[1:]]
    return outputs, type(state)(*final)
