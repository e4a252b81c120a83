"""The minimal cells' shared step: a recurrence linear in h (Feng et al. 2024).

A GRU or LSTM whose gates read x_t alone, not h_{t−1}, is left with a recurrence
that is *linear* in the state::

    h_t = a_t ⊙ h_{t−1} + b_t,        (a_t, b_t) = gates(U·x_t + b)

Because a_t and b_t do not depend on h, all of them can be computed for every step
at once (one matrix multiply over B·T rows), and h for every step follows by a
scan over time (:mod:`rnnkit.bptt.scan`) instead of T dependent matrix multiplies.
Generation still steps one token at a time with :meth:`MinimalCell.forward`.

:class:`MinimalCell` holds what :class:`~rnnkit.cells.mingru.MinGRUCell` and
:class:`~rnnkit.cells.minlstm.MinLSTMCell` share: the parameters U (``weight_ih``)
and b (``bias_ih``), no W, the step above, and the two forms of the candidate.

The two forms
=============
``"plain"`` (the default): the candidate is linear, h̃_t = U_h·x_t + b_h, as in the
paper's main equations; h may take any sign.

``"log"``: the candidate is g(U_h·x_t + b_h) with g(v) = v + ½ for v ≥ 0 and σ(v)
below (continuous at 0, always positive), the paper's form for its log-space
scan: with h̃ > 0 and h_0 ≥ 0, every h_t is positive, so log h_t exists and the
paper evaluates h by ``logcumsumexp`` for numerical stability on GPUs. rnnkit's scan
works on h directly (no logarithm, and no cumulative product of the a_t that could
underflow), so both forms run the same kernel and are exact in either precision;
choose ``"log"`` to reproduce the paper's models, ``"plain"`` otherwise.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.projection import linear
from rnnkit.state import HiddenState

Form = Literal["plain", "log"]
FORMS: tuple[str, ...] = ("plain", "log")


def positive(v: Tensor) -> Tensor:
    """The paper's g: v + ½ for v ≥ 0, σ(v) below; continuous, increasing and > 0."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


class MinimalCell(RecurrentCell[HiddenState]):
    """Base of the minimal cells: h_t = a_t ⊙ h_{t−1} + b_t with (a_t, b_t) from x_t alone.

    Subclasses set ``num_gates`` and implement :meth:`gates`, their equations from
    the pre-activations U·x_t + b to (a_t, b_t). Everything else, the step, the
    coefficients of all steps at once and the parameters, is here.

    Parameters:
        weight_ih: U, the gates' blocks stacked, ``(G·H, I)``.
        bias_ih: b, ``(G·H,)``; ``None`` when ``bias=False``.

    Initialisation: U and b uniform in ±1/√I, as ``nn.Linear`` (the gates are a
    linear map of x_t alone; torch.nn's ±1/√H for recurrent cells has no reason
    here).
    """

    state_type = HiddenState
    recurrent_weights: ClassVar[bool] = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        form: Form | str = "plain",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if form not in FORMS:
            raise ValueError(f"form: expected one of {', '.join(FORMS)}, got {form!r}")
        self.form = form
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        """U and b uniform in ±1/√I (``nn.Linear``'s bound for an I → G·H map)."""
        bound = 1.0 / math.sqrt(self.input_size)
        with torch.no_grad():
            for weight in self.parameters():
                weight.uniform_(-bound, bound)

    def candidate(self, v: Tensor) -> Tensor:
        """h̃ from its pre-activation: v itself (``"plain"``) or g(v) (``"log"``)."""
        return v if self.form == "plain" else positive(v)

    def gates(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) ``(..., H)`` each from the pre-activations U·x + b ``(..., G·H)``."""
        raise NotImplementedError

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) for inputs of any leading shape: ``(..., I)`` → ``(..., H)`` each.

        ``x`` of shape ``(T, B, I)`` gives every step's coefficients in one matrix
        multiply, which is how the scan backend uses it.
        """
        return self.gates(linear(x, self.weight_ih, self.bias_ih))

    def forward(self, x_t: Tensor, state: HiddenState) -> tuple[Tensor, HiddenState]:
        self.check_step(x_t, state)
        a, b = self.coefficients(x_t)  # (B, H) each
        h = torch.addcmul(b, a, state.h)  # h_t = a_t ⊙ h_{t−1} + b_t, (B, H)
        return h, HiddenState(h)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.form == "plain" else f"{text}, form={self.form!r}"
