"""The cell protocol, written down once, and the parameter layout the built-in cells share.

The protocol
============
A *cell* is one time step of a recurrent network. Any ``torch.nn.Module`` that has

* ``forward(x_t, state) -> (output, new_state)`` where ``x_t`` is ``(B, I)``,
  ``state`` is a ``NamedTuple`` of tensors (each ``(B, ...)``), ``output`` is
  ``(B, O)`` and ``new_state`` has the same type and shapes as ``state``;
* ``initial_state(batch_size, *, device=None, dtype=None) -> state``, the state
  before the first step (zeros for the built-in cells);
* ``input_size`` and ``hidden_size`` attributes (``Recurrent`` sizes its layers
  with them and expects ``output`` to be ``(B, hidden_size)``)

runs under :func:`rnnkit.unroll` and inside :class:`rnnkit.Recurrent`. The loop
knows nothing about which cell it runs: it calls ``initial_state`` when no state
is given, then ``forward`` once per step, masking rows whose sequence has ended.

The built-in cells
==================
:class:`RNNCell`, :class:`LSTMCell` and :class:`GRUCell` keep torch.nn's weight
layout exactly, so weights copy both ways without reshaping. With ``G`` gates
(1 for the Elman RNN, 4 for the LSTM, 3 for the GRU):

==============  ============  =====================================
parameter       shape         the seeds' notation
==============  ============  =====================================
``weight_ih``   ``(G·H, I)``  U, the input-to-hidden map (gates stacked)
``weight_hh``   ``(G·H, H)``  W, the hidden-to-hidden map
``bias_ih``     ``(G·H,)``    b, first half (torch.nn keeps two biases)
``bias_hh``     ``(G·H,)``    b, second half; b = bias_ih + bias_hh
==============  ============  =====================================

The output map ŷ_t = g(V·h_t + c) is not part of a cell: models add it as a
``Linear`` whose ``weight`` is V and ``bias`` is c.

The minimal cells :class:`~rnnkit.cells.mingru.MinGRUCell` and
:class:`~rnnkit.cells.minlstm.MinLSTMCell` (Feng et al. 2024) have no W: their gates
read x_t alone, so they keep only ``weight_ih`` (U) and ``bias_ih`` (b), and
their step is the linear recurrence h_t = a_t ⊙ h_{t−1} + b_t
(:class:`~rnnkit.cells.minimal.MinimalCell`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

from rnnkit.state import describe_state


@runtime_checkable
class Cell(Protocol):
    """What :func:`rnnkit.unroll` needs from a cell (see the module docstring)."""

    input_size: int
    hidden_size: int

    def __call__(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any]: ...

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Any: ...


S = TypeVar("S", bound=tuple[Tensor, ...])


class RecurrentCell(nn.Module, Generic[S]):
    """Base of the built-in cells: torch.nn's parameter layout, zero initial state, input checks.

    Subclasses set ``num_gates`` and ``state_type`` and implement ``forward``.
    This class holds no step logic: each cell's ``forward`` is its own equations.
    """

    num_gates: ClassVar[int]
    state_type: type[S]  # the NamedTuple of (B, H) fields this cell carries
    # False for cells whose gates do not read h_{t−1} (no W, no bias_hh).
    recurrent_weights: ClassVar[bool] = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gates = self.num_gates * hidden_size
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        # torch.nn's order (weight_ih, weight_hh, bias_ih, bias_hh): state_dict and the
        # initialisation's draws follow it.
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size, **factory))  # U
        if self.recurrent_weights:
            self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size, **factory))  # W
        self.bias_ih: nn.Parameter | None
        self.bias_hh: nn.Parameter | None
        names = ("bias_ih", "bias_hh") if self.recurrent_weights else ("bias_ih",)
        for name in names:
            if bias:
                setattr(self, name, nn.Parameter(torch.empty(gates, **factory)))
            else:
                self.register_parameter(name, None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter uniform in ±1/√H."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for weight in self.parameters():
                weight.uniform_(-bound, bound)

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> S:
        """The state before the first step: every field zero, ``(B, H)`` (h_0 = 0, c_0 = 0).

        ``device`` and ``dtype`` default to the parameters'.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"initial_state: batch_size must be a positive int, got {batch_size!r}"
            )
        shape = (batch_size, self.hidden_size)
        device = self.weight_ih.device if device is None else device
        dtype = self.weight_ih.dtype if dtype is None else dtype
        names: tuple[str, ...] = self.state_type._fields  # type: ignore[attr-defined]
        return self.state_type(*(torch.zeros(shape, device=device, dtype=dtype) for _ in names))

    def check_step(self, x_t: Tensor, state: object) -> None:
        """Raise ValueError unless ``x_t`` is ``(B, I)`` and ``state`` is this cell's ``(B, H)`` state."""
        name = type(self).__name__
        if not isinstance(x_t, Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.input_size:
            got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"{name}: expected x_t of shape (B, {self.input_size}), got {got}")
        if type(state) is not self.state_type:
            raise ValueError(
                f"{name}: expected state of type {self.state_type.__name__}, "
                f"got {describe_state(state)}"
            )
        expected = (x_t.shape[0], self.hidden_size)
        for field in state:
            if not isinstance(field, Tensor) or field.shape != expected:
                raise ValueError(
                    f"{name}: expected every state field of shape {expected}, "
                    f"got {describe_state(state)}"
                )
        dtypes = {x_t.dtype, self.weight_ih.dtype, *(field.dtype for field in state)}
        if len(dtypes) != 1:
            raise ValueError(
                f"{name}: expected x_t and state of dtype {self.weight_ih.dtype} like the "
                f"parameters, got x_t {x_t.dtype} and state {[f.dtype for f in state]}"
            )

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        return text if self.bias else text + ", bias=False"


def _check_size(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
