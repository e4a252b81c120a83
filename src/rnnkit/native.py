"""The ``"native"`` backend: torch.nn's own RNN kernels run over rnnkit's parameters.

``torch.nn.RNN``/``LSTM``/``GRU`` call one ATen kernel per stack (``torch._VF.lstm``
and friends; cuDNN on CUDA). Those kernels take the weights as a flat list in
torch.nn's order, so a stack of rnnkit's built-in cells, whose parameters already
have torch.nn's layout, can be handed to them directly: no copy, and gradients land
on rnnkit's own parameters. This module decides when that is exact (only
built-in cells of one kind) and makes the call, one layer at a time, for
:class:`~rnnkit.Recurrent`'s loop (:class:`NativeBatch`), packing ragged batches the
way ``torch.nn`` does (``pack_padded_sequence`` with ``enforce_sorted=False``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells import GRUCell, LSTMCell, ProjectedLSTMCell, RNNCell
from rnnkit.state import LSTMState, map_state

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
    if kind not in (RNNCell, LSTMCell, GRUCell, ProjectedLSTMCell):
        return None, f"{kind.__name__} is not one of rnnkit's built-in cells"
    first = cells[0]
    if any(cell.bias != first.bias for cell in cells):
        return None, "the cells disagree on bias"
    if kind is ProjectedLSTMCell and len({cell.proj_size for cell in cells}) != 1:
        return None, "the LSTM cells disagree on proj_size"
    if kind is RNNCell:
        nonlinearities = {cell.nonlinearity for cell in cells}
        if len(nonlinearities) != 1:
            return None, "the RNN cells mix nonlinearities"
        name = "rnn_tanh" if first.nonlinearity == "tanh" else "rnn_relu"
    else:
        name = "gru" if kind is GRUCell else "lstm"  # the LSTM kernel has the projection
    # The cells' own tensors (_parameters): parameters() walks submodules, per call.
    params = [p for cell in cells for p in cell._parameters.values() if p is not None]
    if len({p.dtype for p in params}) != 1 or len({p.device for p in params}) != 1:
        return None, "the cells' parameters are spread over several dtypes or devices"
    return _KERNELS[name], ""


# torch._VF is private but is exactly what torch.nn.modules.rnn calls; it has kept
# this signature since PyTorch 1.0. Looked up once: a torch._VF look-up costs µs.
_KERNELS: dict[str, Kernel] = {
    name: getattr(torch._VF, name) for name in ("rnn_tanh", "rnn_relu", "lstm", "gru")
}


class NativeBatch:
    """One call's batch in the kernel's layout, prepared once for every layer.

    :class:`~rnnkit.Recurrent` runs the layers loop, with dropout between layers and
    the final states joined; this object is its runner for the native backend. A
    full-length batch is viewed time-major ``(T, B, ·)`` once (the kernel's own
    layout: no transposes per layer); a ragged one is packed once, the way
    ``torch.nn`` does (``pack_padded_sequence`` with ``enforce_sorted=False``), and
    every layer reads and writes packed data ``(N, ·)``. :meth:`layer` calls the
    kernel for one layer, and :meth:`finish` pads and unsorts.

    One call runs both directions of a layer: the kernel runs a bidirectional layer
    natively, and that measured faster than two one-directional calls with the
    reversal done outside (CPU, 1 thread, LSTM, B = 8 … 32, H = 32 … 256: the two
    calls took ×1.06 to ×1.34 the time; a packed batch's reversal is a gather of
    its rows). On CUDA, cuDNN would also run a whole stack in one call; the layers
    are called one by one here so that one loop, :class:`~rnnkit.Recurrent`'s,
    stacks every backend.

    Attributes:
        inputs: ``(T, B, I)``, or the packed data ``(N, I)`` of a ragged batch.
        state: the initial state, every field ``(L·D, B, H)``, rows in the packed order.
    """

    __slots__ = ("_kernel", "_packed", "_steps", "_training", "inputs", "state")

    def __init__(
        self, kernel: Kernel, inputs: Tensor, state: Any, lengths: Tensor | None, training: bool
    ) -> None:
        """``kernel`` from :func:`native_kernel`; ``inputs (B, T, I)``; ``lengths``:
        validated CPU int64 ``(B,)``, or ``None`` when every row is full length.

        ``training`` is the module's mode, passed to the kernel as torch.nn passes it
        (cuDNN keeps what its backward needs only in training mode).
        """
        self._kernel = kernel
        self._training = training
        self._steps = inputs.shape[1]
        if lengths is None:
            self._packed: PackedSequence | None = None
            self.inputs = inputs.transpose(0, 1)  # (T, B, I), a view
            self.state = state
            return
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        assert packed.sorted_indices is not None
        order = packed.sorted_indices
        self._packed = packed
        self.inputs = packed.data  # (N, I)
        self.state = map_state(lambda field: field.index_select(1, order), state)

    def layer(self, index: int, cells: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Any]:
        """Layer ``index``'s D directions in one kernel call (see :class:`~rnnkit.recurrent.Runner`)."""
        weights: list[Tensor] = []
        # torch.nn's flat order: per direction w_ih, w_hh, b_ih, b_hh (and w_hr with a
        # projection); the kernel tells a projection by the count per direction.
        for cell in cells:  # _parameters: named_parameters() walks submodules, per call
            weights.extend(p for p in cell._parameters.values() if p is not None)
        directions = len(cells)
        rows = slice(index * directions, (index + 1) * directions)  # this layer's, (D, B, H)
        state = self.state
        hx = (state.h[rows], state.c[rows]) if isinstance(state, LSTMState) else state.h[rows]
        # Dropout between layers is Recurrent's: 0 here.
        has_biases = cells[0]._parameters.get("bias_ih") is not None
        options = (has_biases, 1, 0.0, self._training, directions == 2)
        with contextlib.ExitStack() as scope:
            # (Not while torch.compile traces: warning filters are a graph break there.)
            if type(cells[0]) is ProjectedLSTMCell and not torch.compiler.is_compiling():
                # torch's note that it falls back to its own loop, on every call; the
                # fallback is exact, and the note is not the caller's concern.
                scope.enter_context(warnings.catch_warnings())
                warnings.filterwarnings("ignore", "LSTM with projections is not supported")
            if self._packed is None:
                result = self._kernel(x, hx, weights, *options, False)  # time-major
            else:
                result = self._kernel(x, self._packed.batch_sizes, hx, weights, *options)
        return result[0], type(state)(*result[1:])

    def locked(self, mask: Tensor) -> Tensor:
        """A per-row mask ``(B, F)``, caller's order → broadcast over this layout: ``(1, B, F)``
        time-major, or one row per packed position ``(N, F)``."""
        packed = self._packed
        if packed is None:
            return mask[None]
        assert packed.sorted_indices is not None
        # Packed row n is step t's k-th running row: sorted row k, caller's row order[k].
        ranks = torch.cat([torch.arange(int(size)) for size in packed.batch_sizes])  # (N,)
        return mask.index_select(0, packed.sorted_indices.index_select(0, ranks.to(mask.device)))

    def finish(self, outputs: Tensor, final: Any) -> tuple[Tensor, Any]:
        """The last layer's outputs and the joined finals → ``(B, T, D·H)``, caller's order."""
        packed = self._packed
        if packed is None:
            return outputs.transpose(0, 1), final  # (B, T, D·H), a view, as torch.nn's
        assert packed.unsorted_indices is not None
        unsort = packed.unsorted_indices
        padded, _ = pad_packed_sequence(
            PackedSequence(outputs, packed.batch_sizes, packed.sorted_indices, unsort),
            batch_first=True,
            total_length=self._steps,
        )
        return padded, map_state(lambda field: field.index_select(1, unsort), final)
