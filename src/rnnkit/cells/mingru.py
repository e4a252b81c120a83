"""The minimal GRU (Feng et al. 2024, "Were RNNs All We Needed?")."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.minimal import MinimalCell


class MinGRUCell(MinimalCell):
    r"""minGRU cell, one time step: a GRU whose gate and candidate read x_t alone.

    Equations (σ = logistic sigmoid, ⊙ = elementwise product)::

        z_t = σ(U_z·x_t + b_z)                      update gate
        h̃_t = U_h·x_t + b_h                         candidate ("plain" form)
            = g(U_h·x_t + b_h)                       ("log" form, g > 0: see rnnkit.cells.minimal)
        h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t

    so h_t = a_t ⊙ h_{t−1} + b_t with a_t = 1 − z_t = σ(−(U_z·x_t + b_z)) and
    b_t = z_t ⊙ h̃_t. Unlike torch.nn's GRU, z here weighs the *new* candidate
    (the paper's convention); there is no reset gate, no tanh, and no W: the
    recurrence is linear in h, which is what lets it train by a scan over time.

    The output of the step is h_t; a model's output map ŷ_t = g(V·h_t + c) is a
    separate ``Linear`` (V = its weight, c = its bias).

    Parameters (the gate order z, h̃ follows torch.nn's GRU order r, z, n):
        weight_ih: U = [U_z; U_h], ``(2H, I)``.
        bias_ih: b = [b_z; b_h], ``(2H,)``.

    Shapes:
        x_t ``(B, I)``, state ``HiddenState(h=(B, H))`` → output h_t ``(B, H)``, ``HiddenState(h_t)``.

    Args:
        input_size: I.
        hidden_size: H.
        bias: learn b.
        form: ``"plain"`` or ``"log"`` (the candidate through g).
    """

    num_gates: ClassVar[int] = 2

    def gates(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = pre.chunk(2, dim=-1)  # (..., H) each
        z = torch.sigmoid(k_z)  # update gate
        a = torch.sigmoid(-k_z)  # 1 − z_t, without the rounding of 1 − σ
        return a, z * self.candidate(k_h)  # a_t, b_t = z_t ⊙ h̃_t
