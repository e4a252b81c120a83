"""The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.projection import linear
from rnnkit.state import LSTMState, describe_state


class LSTMCell(RecurrentCell[LSTMState]):
    r"""LSTM cell, one time step, gate order i, f, g, o as in torch.nn.

    Equations (σ = logistic sigmoid, ⊙ = elementwise product)::

        i_t = σ(U_i·x_t + W_i·h_{t−1} + b_i)        input gate
        f_t = σ(U_f·x_t + W_f·h_{t−1} + b_f)        forget gate
        g_t = tanh(U_g·x_t + W_g·h_{t−1} + b_g)     candidate cell
        o_t = σ(U_o·x_t + W_o·h_{t−1} + b_o)        output gate
        c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)

    The output of the step is h_t; a model's output map ŷ_t = g(V·h_t + c) is a
    separate ``Linear`` (V = its weight, c = its bias).

    U stacks U_i, U_f, U_g, U_o row-wise, and likewise W and b: one matrix multiply
    per source yields all four pre-activations, which are then split by name.

    Parameters (identical to ``torch.nn.LSTMCell``):
        weight_ih: U = [U_i; U_f; U_g; U_o], ``(4H, I)``.
        weight_hh: W = [W_i; W_f; W_g; W_o], ``(4H, H)``.
        bias_ih, bias_hh: ``(4H,)`` each; b = bias_ih + bias_hh.

    Shapes:
        x_t ``(B, I)``, state ``LSTMState(h=(B, H), c=(B, H))`` → output h_t ``(B, H)``,
        ``LSTMState(h_t, c_t)``.
    """

    num_gates: ClassVar[int] = 4
    state_type = LSTMState

    def forward(self, x_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        self.check_step(x_t, state)
        o, c = lstm_gates(self, x_t, state)  # (B, H) each
        h = o * torch.tanh(c)  # (B, H)
        return h, LSTMState(h, c)


def lstm_gates(
    cell: RecurrentCell[LSTMState], x_t: Tensor, state: LSTMState
) -> tuple[Tensor, Tensor]:
    """The LSTM's gates and new cell of one step: (o_t, c_t), ``(B, H)`` each.

    i, f, g, o from U·x_t + W·h_{t−1} + b, and c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t; what
    the step emits from them (h_t = o_t ⊙ tanh(c_t), or its projection) is the cell's.
    """
    gates = linear(x_t, cell.weight_ih, cell.bias_ih) + linear(  # (B, 4H)
        state.h, cell.weight_hh, cell.bias_hh
    )
    i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each
    c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
    return torch.sigmoid(o), c


class ProjectedLSTMCell(RecurrentCell[LSTMState]):
    r"""LSTM cell with a projection of its output (LSTMP, Sak et al. 2014), as ``nn.LSTM(proj_size=P)``.

    The LSTM's equations with h replaced by its projection r (P < H units)::

        i_t, f_t, g_t, o_t = the LSTM's gates of (U·x_t + W·r_{t−1} + b)
        c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
        r_t = W_r·(o_t ⊙ tanh(c_t))                 the output and the carried "h"

    Only r (P units) is fed back and emitted; c keeps H units, so W shrinks from
    ``(4H, H)`` to ``(4H, P)``. Gate order i, f, g, o as in torch.nn.

    Parameters (identical to one layer of ``torch.nn.LSTM(proj_size=P)``):
        weight_ih: U, ``(4H, I)``.
        weight_hh: W, ``(4H, P)``.
        bias_ih, bias_hh: ``(4H,)`` each; b = bias_ih + bias_hh.
        weight_hr: W_r, ``(P, H)``.

    Shapes:
        x_t ``(B, I)``, state ``LSTMState(h=(B, P), c=(B, H))`` → output r_t ``(B, P)``,
        ``LSTMState(r_t, c_t)``.

    It is its own class, not an :class:`LSTMCell` with an option: the fused
    backend and the generation stepper implement the plain LSTM by exact type,
    and must not take this cell for one. ``Recurrent(..., proj_size=P)`` runs it
    on the ``"native"`` (torch.nn's kernel, which has the projection) and
    ``"unrolled"`` backends.
    """

    num_gates: ClassVar[int] = 4
    state_type = LSTMState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        proj_size: int,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if (
            isinstance(proj_size, bool)
            or not isinstance(proj_size, int)
            or not 0 < proj_size < hidden_size
        ):
            raise ValueError(
                f"proj_size must be an int in 1..{hidden_size - 1} (below hidden_size), "
                f"got {proj_size!r}"
            )
        self.proj_size = proj_size
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        # After the base's parameters: torch.nn's flat order ends with weight_hr.
        self.weight_hh = torch.nn.Parameter(
            torch.empty(4 * hidden_size, proj_size, device=device, dtype=dtype)
        )
        self.weight_hr = torch.nn.Parameter(
            torch.empty(proj_size, hidden_size, device=device, dtype=dtype)
        )
        self.reset_parameters()

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LSTMState:
        """Zeros: h ``(B, P)``, c ``(B, H)``."""
        zeros = super().initial_state(batch_size, device=device, dtype=dtype)
        return LSTMState(zeros.h[:, : self.proj_size].clone(), zeros.c)

    def check_step(self, x_t: Tensor, state: object) -> None:
        name = type(self).__name__
        if not isinstance(x_t, Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.input_size:
            got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"{name}: expected x_t of shape (B, {self.input_size}), got {got}")
        rows = x_t.shape[0]
        if (
            type(state) is not LSTMState
            or not all(isinstance(field, Tensor) for field in state)
            or state.h.shape != (rows, self.proj_size)
            or state.c.shape != (rows, self.hidden_size)
        ):
            raise ValueError(
                f"{name}: expected LSTMState(h=({rows}, {self.proj_size}), "
                f"c=({rows}, {self.hidden_size})), got {describe_state(state)}"
            )

    def forward(self, x_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        self.check_step(x_t, state)
        o, c = lstm_gates(self, x_t, state)  # (B, H) each
        r = linear(o * torch.tanh(c), self.weight_hr)  # (B, P)
        return r, LSTMState(r, c)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", proj_size={self.proj_size}"
