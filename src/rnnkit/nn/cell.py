"""``rnnkit.nn.RNNCell``, ``LSTMCell`` and ``GRUCell``: torch.nn's cells, stepping rnnkit's cells.

As for the sequence modules (:mod:`rnnkit.nn.rnn`), each class is a subclass of its
torch.nn counterpart: constructor, parameters (``weight_ih``, ``weight_hh``,
``bias_ih``, ``bias_hh``), ``state_dict`` and initialisation are torch.nn's. Its
``forward(input, hx=None)`` checks what torch.nn checks, with torch.nn's messages,
then runs one step on the module's own parameters: without autograd and for a few
rows (a generator's case, :data:`STEPPED_ROWS`), rnnkit's packed step of
:mod:`rnnkit.stepping`, made from rnnkit's cell (:mod:`rnnkit.cells`); otherwise
ATen's cell kernel, the one torch.nn's cells call, which measured faster there.
Both compute the equations of rnnkit's cells; the tests hold them to torch.nn.
``input`` is ``(B, I)`` or unbatched ``(I,)``; ``hx`` is ``h`` (or ``(h, c)`` for
the LSTM), ``None`` for zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.cells import GRUCell as StepGRU
from rnnkit.cells import LSTMCell as StepLSTM
from rnnkit.cells import RecurrentCell
from rnnkit.cells import RNNCell as StepRNN
from rnnkit.state import HiddenState, LSTMState
from rnnkit.stepping import Stepper

_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

# ATen's cell kernels, looked up once: each ``torch._VF.name`` goes through the
# module's __getattr__, about 2 µs a lookup here, a tenth of a whole step at B = 1.
_RNN_KERNELS = {"tanh": torch._VF.rnn_tanh_cell, "relu": torch._VF.rnn_relu_cell}
_LSTM_KERNEL = torch._VF.lstm_cell
_GRU_KERNEL = torch._VF.gru_cell

#: Up to this many rows, a step without autograd runs rnnkit's packed stepper; above
#: it, and whenever autograd records, ATen's cell kernel (torch.nn's own). Measured
#: on the 2-core CPU (I = 64, H = 256, µs per step, rnnkit / torch.nn): at B = 1
#: LSTM 52 / 66, GRU 39 / 54, RNN 33 / 33; at B = 16 the stepper's matrix-vector
#: passes lose (LSTM 273 / 174), and with autograd rnnkit's cell written out in
#: Python ops loses to the kernel's one call (GRU 115 / 74 at B = 1).
STEPPED_ROWS = 4


class _StepsOnRnnkit(nn.RNNCellBase):
    """What the three cells add to torch.nn's: the checks and one step of rnnkit's cell."""

    # Whether a few rows without autograd take the packed stepper (see STEPPED_ROWS).
    stepped = True

    def _step_cell(self) -> RecurrentCell[Any]:
        """rnnkit's cell of this kind, on the meta device, holding this module's tensors now."""
        cell: RecurrentCell[Any] | None = self.__dict__.get("_rnnkit_cell")
        key = (self.input_size, self.hidden_size, self.bias, getattr(self, "nonlinearity", ""))
        if cell is None or self.__dict__.get("_rnnkit_key") != key:
            cell = self._kind()  # built again only when an attribute it depends on changed
            self.__dict__["_rnnkit_cell"] = cell
            self.__dict__["_rnnkit_key"] = key
        parameters = cell._parameters
        for name in _NAMES:
            parameters[name] = getattr(self, name)
        return cell

    def _kind(self) -> RecurrentCell[Any]:
        raise NotImplementedError

    def _aten_step(self, x: Tensor, state: Any) -> Any:
        raise NotImplementedError

    def _stepper(self, cell: RecurrentCell[Any], parameters: Sequence[Tensor]) -> Stepper:
        """The packed one-layer stepper of ``cell``, packed again when a parameter changed."""
        stepper: Stepper | None = self.__dict__.get("_rnnkit_stepper")
        identity = tuple(map(id, parameters))
        if (
            stepper is None
            or self.__dict__.get("_rnnkit_packed") != identity
            or not stepper.is_current()
        ):
            stepper = Stepper.from_cells([cell])
            self.__dict__["_rnnkit_stepper"] = stepper
            self.__dict__["_rnnkit_packed"] = identity
        return stepper

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # type: ignore[no-untyped-call]
        state.pop("_rnnkit_cell", None)
        state.pop("_rnnkit_key", None)
        state.pop("_rnnkit_stepper", None)
        state.pop("_rnnkit_packed", None)
        return state

    def _check_sizes(self, x: Tensor, states: Sequence[Tensor]) -> None:
        """ATen's checks for its cells, raised as torch.nn raises them (RuntimeError)."""
        if x.shape[1] != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {x.shape[1]} expected {self.input_size}"
            )
        for index, value in enumerate(states):
            if value.shape[0] != x.shape[0]:
                raise RuntimeError(
                    f"Input batch size {x.shape[0]} doesn't match hidden{index} batch size "
                    f"{value.shape[0]}"
                )
            if value.shape[1] != self.hidden_size:
                raise RuntimeError(
                    f"hidden{index} has inconsistent hidden_size: got {value.shape[1]}, "
                    f"expected {self.hidden_size}"
                )

    def _direct(self, input: Tensor, hx: Any, fields: int) -> bool:
        """Whether this call is the common case that goes straight to ATen's kernel: a
        batch (2-D input and state) that the stepper does not take. ATen then checks
        the sizes itself, with the messages torch.nn's cells give."""
        if input.dim() != 2:
            return False
        if hx is not None and any(h.dim() != 2 for h in (hx if fields == 2 else (hx,))):
            return False
        return not (self.stepped and not torch.is_grad_enabled() and input.shape[0] <= STEPPED_ROWS)

    def _step(self, input: Tensor, hx: Any, fields: int) -> Any:
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        states: list[Tensor] | None = None
        if hx is not None:
            states = list(hx) if fields == 2 else [hx]
            for index, value in enumerate(states):
                if value.dim() not in (1, 2):
                    what = f"hx[{index}]" if fields == 2 else "hidden"
                    raise ValueError(
                        f"{name}: Expected {what} to be 1D or 2D, got {value.dim()}D instead"
                    )
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if states is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            states = [zeros] * fields
        elif not batched:
            states = [value.unsqueeze(0) for value in states]
        state = LSTMState(*states) if fields == 2 else HiddenState(states[0])
        if self.stepped and not torch.is_grad_enabled() and 0 < x.shape[0] <= STEPPED_ROWS:
            parameters = [p for p in (getattr(self, name) for name in _NAMES) if p is not None]
            if self.hidden_size > 0:  # torch.nn allows 0; ATen's kernel gives (B, 0)
                self._check_sizes(x, states)  # what ATen's kernel would check
                # Generation's case: the packed step of rnnkit.stepping (one matrix-vector
                # pass and one pass over the gates), the same numbers up to rounding.
                stepper = self._stepper(self._step_cell(), parameters)
                _, stacked = stepper.step(x, type(state)(*(f.unsqueeze(0) for f in state)))
                new = type(state)(*(field.squeeze(0) for field in stacked))
            else:
                new = self._aten_step(x, state)
        else:
            new = self._aten_step(x, state)  # ATen checks the sizes, with torch.nn's messages
        if not batched:
            new = type(new)(*(field.squeeze(0) for field in new))
        return new


class RNNCell(_StepsOnRnnkit, nn.RNNCell):
    """``torch.nn.RNNCell``: h' = tanh or relu(W_ih·x + b_ih + W_hh·h + b_hh); returns h'.

    Always ATen's kernel: the packed stepper measured no faster for one matrix and a
    tanh (B = 1, H = 256: 35 against 32 µs, ``benchmarks/drop_in.py``).
    """

    stepped = False

    def _kind(self) -> RecurrentCell[Any]:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return StepRNN(
            self.input_size,
            self.hidden_size,
            self.bias,
            nonlinearity=self.nonlinearity,
            device="meta",
        )

    def _aten_step(self, x: Tensor, state: Any) -> HiddenState:
        kernel = _RNN_KERNELS.get(self.nonlinearity)
        if kernel is None:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return HiddenState(
            kernel(x, state.h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        )

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self._direct(input, hx, 1):
            h = input.new_zeros(input.shape[0], self.hidden_size) if hx is None else hx
            return self._aten_step(input, HiddenState(h)).h
        result: HiddenState = self._step(input, hx, 1)
        return result.h


class LSTMCell(_StepsOnRnnkit, nn.LSTMCell):
    """``torch.nn.LSTMCell``, gate order i, f, g, o; returns ``(h', c')``."""

    def _kind(self) -> RecurrentCell[Any]:
        return StepLSTM(self.input_size, self.hidden_size, self.bias, device="meta")

    def _aten_step(self, x: Tensor, state: Any) -> LSTMState:
        h, c = _LSTM_KERNEL(
            x, (state.h, state.c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        )
        return LSTMState(h, c)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        if self._direct(input, hx, 2):
            if hx is None:
                zeros = input.new_zeros(input.shape[0], self.hidden_size)
                hx = (zeros, zeros)
            h, c = _LSTM_KERNEL(
                input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
            )
            return h, c
        result: LSTMState = self._step(input, hx, 2)
        return result.h, result.c  # torch.nn's plain tuple (code rebuilds it by its type)


class GRUCell(_StepsOnRnnkit, nn.GRUCell):
    """``torch.nn.GRUCell``, gate order r, z, n, torch's reset placement; returns h'."""

    def _kind(self) -> RecurrentCell[Any]:
        return StepGRU(self.input_size, self.hidden_size, self.bias, device="meta")

    def _aten_step(self, x: Tensor, state: Any) -> HiddenState:
        return HiddenState(
            _GRU_KERNEL(x, state.h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        )

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self._direct(input, hx, 1):
            h = input.new_zeros(input.shape[0], self.hidden_size) if hx is None else hx
            return _GRU_KERNEL(input, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        result: HiddenState = self._step(input, hx, 1)
        return result.h


__all__ = ["GRUCell", "LSTMCell", "RNNCell"]
