r"""One tiny network, every number: the forward pass and BPTT, derived by hand.

:func:`explain` builds one recurrent cell (the library's own ``RNNCell``,
``LSTMCell`` or ``GRUCell``) with an output layer and a loss at every step, runs
one sequence (batch of 1) through it in float64, and records every intermediate
quantity in the seeds' notation. The backward pass is computed *explicitly*,
with the equations below (no autograd); then the whole gradient is computed
again by autograd on the cell's own forward, and the two are compared.

Notation
========
Steps are t = 1 … T, h_0 = 0 (and c_0 = 0 for the LSTM). Vectors are columns.

==========  ===========================  ======================================
symbol      shape                        parameter
==========  ===========================  ======================================
U           (G·H, I)                     ``weight_ih`` (gate blocks stacked)
W           (G·H, H)                     ``weight_hh``
b           (G·H,)                       ``bias_ih + bias_hh`` (GRU: see below)
V, c        (K, H), (K,)                 the output layer's weight and bias
==========  ===========================  ======================================

G = 1 (RNN), 4 (LSTM: blocks i, f, g, o), 3 (GRU: blocks r, z, n).

The output and the loss, the same for every cell::

    ŷ_t = g(V·h_t + c)        L = Σ_t L_t
    mse:  g = identity,  L_t = ½‖ŷ_t − y_t‖²
    ce:   g = softmax,   L_t = −log ŷ_t[y_t]       (y_t a class, one-hot below)

Both give the same error at the output: e_t = ∂L_t/∂(V·h_t + c) = ŷ_t − y_t, so::

    (∂L/∂V)_t = e_t·h_tᵀ        (∂L/∂c)_t = e_t        G_t = Vᵀ·e_t

G_t is the part of ∂L/∂h_t that comes straight from the loss at step t. The
total δ_t = ∂L/∂h_t adds what comes back from step t + 1; the walk goes from
t = T down to 1 with nothing coming back from step T + 1.

Elman RNN (tanh)
================
Forward::

    a_t = U·x_t + W·h_{t−1} + b        h_t = tanh(a_t)

Backward::

    δ_t  = G_t + Wᵀ·dA_{t+1}             (dA_{T+1} = 0)
    dA_t = ∂L/∂a_t = δ_t ⊙ (1 − h_t²)
    (∂L/∂U)_t = dA_t·x_tᵀ    (∂L/∂W)_t = dA_t·h_{t−1}ᵀ    (∂L/∂b)_t = dA_t

torch.nn keeps two biases that always appear as a sum, so
∂L/∂bias_ih = ∂L/∂bias_hh = ∂L/∂b.

LSTM
====
Forward (a_t = U·x_t + W·h_{t−1} + b = [a^i; a^f; a^g; a^o], σ the logistic)::

    i_t = σ(a^i_t)   f_t = σ(a^f_t)   g_t = tanh(a^g_t)   o_t = σ(a^o_t)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

Backward: δ_t = ∂L/∂h_t as for the RNN, and ε_t = ∂L/∂c_t, which also flows
back along the cell state (ε_{T+1} = 0)::

    δ_t   = G_t + Wᵀ·dA_{t+1}
    ε_t   = δ_t ⊙ o_t ⊙ (1 − tanh² c_t) + ε_{t+1} ⊙ f_{t+1}
    dA^i_t = ε_t ⊙ g_t ⊙ i_t(1 − i_t)           σ'(a) = σ(a)(1 − σ(a))
    dA^f_t = ε_t ⊙ c_{t−1} ⊙ f_t(1 − f_t)
    dA^g_t = ε_t ⊙ i_t ⊙ (1 − g_t²)             tanh'(a) = 1 − tanh²(a)
    dA^o_t = δ_t ⊙ tanh(c_t) ⊙ o_t(1 − o_t)
    dA_t = [dA^i_t; dA^f_t; dA^g_t; dA^o_t]
    (∂L/∂U)_t = dA_t·x_tᵀ    (∂L/∂W)_t = dA_t·h_{t−1}ᵀ    (∂L/∂b)_t = dA_t

and again ∂L/∂bias_ih = ∂L/∂bias_hh = ∂L/∂b.

GRU (torch.nn's variant)
========================
torch.nn applies the reset gate *after* the recurrent matrix multiply, and keeps
the recurrent bias b_hn inside it, so b_hn is not merged into b::

    r_t = σ(a^r_t)    a^r_t = U_r·x_t + W_r·h_{t−1} + b_r      b_r = b_ir + b_hr
    z_t = σ(a^z_t)    a^z_t = U_z·x_t + W_z·h_{t−1} + b_z      b_z = b_iz + b_hz
    n_t = tanh(a^n_t) a^n_t = U_n·x_t + b_n + r_t ⊙ (W_n·h_{t−1} + b_hn)    b_n = b_in
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

so b = [b_r; b_z; b_n] and b_hn = bias_hh[2H:] are shown separately. Backward,
with dA_t = ∂L/∂a_t (the input side) and dS_t = ∂L/∂(W·h_{t−1} + b_hh) (the
recurrent side, which differs only in the n block)::

    δ_t    = G_t + Wᵀ·dS_{t+1} + z_{t+1} ⊙ δ_{t+1}      (nothing from step T + 1)
    dA^n_t = δ_t ⊙ (1 − z_t) ⊙ (1 − n_t²)
    dA^z_t = δ_t ⊙ (h_{t−1} − n_t) ⊙ z_t(1 − z_t)
    dA^r_t = dA^n_t ⊙ (W_n·h_{t−1} + b_hn) ⊙ r_t(1 − r_t)
    dA_t = [dA^r_t; dA^z_t; dA^n_t]       dS_t = [dA^r_t; dA^z_t; r_t ⊙ dA^n_t]
    (∂L/∂U)_t = dA_t·x_tᵀ    (∂L/∂W)_t = dS_t·h_{t−1}ᵀ
    (∂L/∂b)_t = dA_t         (∂L/∂b_hn)_t = r_t ⊙ dA^n_t

so ∂L/∂bias_ih = ∂L/∂b and ∂L/∂bias_hh = [∂L/∂b_r; ∂L/∂b_z; ∂L/∂b_hn].

Every gradient is the sum of its per-step terms, ∂L/∂θ = Σ_t (∂L/∂θ)_t, because
the same U, W, b, V, c are used at every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells import cell_factory

F64 = torch.float64
CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm")
MINIMAL = ("mingru", "minlstm")  # no W: h_t = a_t ⊙ h_{t−1} + b_t, trained by scan
LOSSES = ("mse", "ce")
FORMATS = ("text", "markdown", "json")
MAX_SIZE = 64  # every number is printed: larger networks belong to gradient_flow
MAX_STEPS = 256
TOLERANCE = 1e-10  # hand-derived vs autograd, float64


@dataclass(frozen=True)
class ExplainConfig:
    """The tiny network to walk through (validated on construction: ValueError)."""

    cell: str = "rnn"  # rnn (tanh), lstm, gru, mingru or minlstm: the library's own cells
    input_size: int = 2  # I, the size of x_t
    hidden_size: int = 3  # H, the size of h_t
    outputs: int = 2  # K, the size of ŷ_t (the number of classes for ce)
    steps: int = 4  # T, with a loss at every step
    loss: str = "mse"  # mse (g = identity) or ce (g = softmax, classes drawn at random)
    seed: int = 0  # weights, inputs and targets all come from one generator

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name, top in [
            ("input_size", MAX_SIZE),
            ("hidden_size", MAX_SIZE),
            ("outputs", MAX_SIZE),
            ("steps", MAX_STEPS),
        ]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ValueError(f"{name} must be an integer from 1 to {top}, got {value!r}")
        if self.loss == "ce" and self.outputs < 2:
            raise ValueError(
                f"outputs must be at least 2 for loss ce, got {self.outputs}: a softmax over "
                "one class is always 1 and its loss always 0"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True)
class Explanation:
    """Every number of one forward and backward pass, in the seeds' notation.

    Per-step records are dicts keyed by the names in :data:`LABELS` (vectors
    ``(n,)``, matrices ``(rows, cols)``, scalars 0-d), all float64, in t order
    (``forward[0]`` is t = 1).

    Attributes:
        config: what was built.
        equations: the cell's forward and backward equations, one line each.
        parameter_names: symbol → where it lives in torch.nn's layout.
        parameters: ``U``, ``W``, ``b`` (GRU: also ``b_hn``), ``V``, ``c``.
        inputs: ``(T, I)`` x_1 … x_T.
        targets: ``(T, K)`` y_t (one-hot classes for ce).
        forward: per step: ``x``, ``Ux``, ``Wh``, ``a``, the gates, (``c_t``), ``h``,
            ``out`` (V·h_t + c), ``y_hat``, ``y``, ``L``.
        backward: per step: ``e``, ``G``, ``delta``, (``eps`` LSTM), ``dA``,
            (``dS`` GRU), and the step's terms ``dU``, ``dW``, ``db``, (``db_hn``),
            ``dV``, ``dc``.
        totals: ``dU`` … ``dc`` summed over the steps.
        loss: L = Σ_t L_t.
        hand: the totals under torch.nn's parameter names (``weight_ih`` …,
            ``output.weight``, ``output.bias``).
        autograd: the same gradients from ``torch.autograd.grad`` through the
            cell's own forward.
        differences: parameter name → max |hand − autograd|.
        forward_difference: max |explicit forward − the cell's own forward| over
            every h_t (and c_t) and L_t.
    """

    config: ExplainConfig
    equations: tuple[str, ...]
    parameter_names: dict[str, str]
    parameters: dict[str, Tensor]
    inputs: Tensor
    targets: Tensor
    forward: tuple[dict[str, Tensor], ...]
    backward: tuple[dict[str, Tensor], ...]
    totals: dict[str, Tensor]
    loss: float
    hand: dict[str, Tensor]
    autograd: dict[str, Tensor]
    differences: dict[str, float]
    forward_difference: float

    @property
    def max_difference(self) -> float:
        """The largest |hand-derived − autograd| over every parameter's gradient."""
        return max(self.differences.values())

    @property
    def agrees(self) -> bool:
        """Hand-derived BPTT and the forward both match autograd within :data:`TOLERANCE`."""
        return self.max_difference < TOLERANCE and self.forward_difference < TOLERANCE


# key → label; {t} is the step, {p} the step before it.
LABELS: dict[str, str] = {
    # forward
    "x": "x_{t}",
    "Ux": "U·x_{t}",
    "Wh": "W·h_{p}",
    "a": "a_{t}",
    "i": "i_{t}",
    "f": "f_{t}",
    "g": "g_{t}",
    "o": "o_{t}",
    "r": "r_{t}",
    "z": "z_{t}",
    "n": "n_{t}",
    "c_t": "c_{t}",
    "k": "k_{t} = U·x_{t} + b",
    "cand": "h̃_{t}",
    "fn": "f'_{t}",
    "in": "i'_{t}",
    "ret": "a_{t} (kept of h_{p})",
    "add": "b_{t} (added)",
    "h": "h_{t}",
    "out": "V·h_{t} + c",
    "y_hat": "ŷ_{t}",
    "y": "y_{t}",
    "L": "L_{t}",
    # backward
    "e": "ŷ_{t} − y_{t}",
    "G": "G_{t} = Vᵀ·e_{t}",
    "delta": "δ_{t} = ∂L/∂h_{t}",
    "eps": "ε_{t} = ∂L/∂c_{t}",
    "dA": "dA_{t} = ∂L/∂a_{t}",
    "dS": "dS_{t}",
    "dK": "dK_{t} = ∂L/∂k_{t}",
    "dU": "(∂L/∂U)_{t}",
    "dW": "(∂L/∂W)_{t}",
    "db": "(∂L/∂b)_{t}",
    "db_hn": "(∂L/∂b_hn)_{t}",
    "dV": "(∂L/∂V)_{t}",
    "dc": "(∂L/∂c)_{t}",
}

GRADIENT_SYMBOLS = {"dU": "U", "dW": "W", "db": "b", "db_hn": "b_hn", "dV": "V", "dc": "c"}


def label(key: str, t: int | None = None) -> str:
    """The notation for ``key`` at step ``t`` (``None``: the generic t, t−1)."""
    if t is None:
        return LABELS[key].format(t="t", p="{t−1}")
    return LABELS[key].format(t=t, p=t - 1)


# -- the three cells, by hand ------------------------------------------------------


class _Carry(NamedTuple):
    """What step t sends back to step t − 1: ∂L/∂h_{t−1} and ∂L/∂c_{t−1} through step t."""

    h: Tensor
    c: Tensor


StepForward = Callable[[dict[str, Tensor], Tensor, Tensor, Tensor], dict[str, Tensor]]
StepBackward = Callable[
    [dict[str, Tensor], dict[str, Tensor], Tensor, Tensor, Tensor, _Carry],
    tuple[dict[str, Tensor], _Carry],
]


def _rnn_forward(
    p: dict[str, Tensor], x: Tensor, h_prev: Tensor, c_prev: Tensor
) -> dict[str, Tensor]:
    Ux, Wh = p["U"] @ x, p["W"] @ h_prev
    a = Ux + Wh + p["b"]
    return {"x": x, "Ux": Ux, "Wh": Wh, "a": a, "h": torch.tanh(a)}


def _rnn_backward(
    p: dict[str, Tensor],
    s: dict[str, Tensor],
    h_prev: Tensor,
    c_prev: Tensor,
    delta: Tensor,
    carry: _Carry,
) -> tuple[dict[str, Tensor], _Carry]:
    dA = delta * (1 - s["h"] ** 2)
    terms = {"dA": dA, "dU": torch.outer(dA, s["x"]), "dW": torch.outer(dA, h_prev), "db": dA}
    return terms, _Carry(p["W"].T @ dA, torch.zeros_like(c_prev))


def _lstm_forward(
    p: dict[str, Tensor], x: Tensor, h_prev: Tensor, c_prev: Tensor
) -> dict[str, Tensor]:
    Ux, Wh = p["U"] @ x, p["W"] @ h_prev
    a = Ux + Wh + p["b"]
    a_i, a_f, a_g, a_o = a.chunk(4)
    i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
    c = f * c_prev + i * g
    h = o * torch.tanh(c)
    return {"x": x, "Ux": Ux, "Wh": Wh, "a": a, "i": i, "f": f, "g": g, "o": o, "c_t": c, "h": h}


def _lstm_backward(
    p: dict[str, Tensor],
    s: dict[str, Tensor],
    h_prev: Tensor,
    c_prev: Tensor,
    delta: Tensor,
    carry: _Carry,
) -> tuple[dict[str, Tensor], _Carry]:
    i, f, g, o, tanh_c = s["i"], s["f"], s["g"], s["o"], torch.tanh(s["c_t"])
    eps = delta * o * (1 - tanh_c**2) + carry.c  # carry.c = ε_{t+1} ⊙ f_{t+1}
    dA = torch.cat(
        [
            eps * g * i * (1 - i),  # dA^i
            eps * c_prev * f * (1 - f),  # dA^f
            eps * i * (1 - g**2),  # dA^g
            delta * tanh_c * o * (1 - o),  # dA^o
        ]
    )
    terms = {
        "eps": eps,
        "dA": dA,
        "dU": torch.outer(dA, s["x"]),
        "dW": torch.outer(dA, h_prev),
        "db": dA,
    }
    return terms, _Carry(p["W"].T @ dA, eps * f)


def _gru_forward(
    p: dict[str, Tensor], x: Tensor, h_prev: Tensor, c_prev: Tensor
) -> dict[str, Tensor]:
    Ux, Wh = p["U"] @ x, p["W"] @ h_prev
    Ux_r, Ux_z, Ux_n = Ux.chunk(3)
    Wh_r, Wh_z, Wh_n = Wh.chunk(3)
    b_r, b_z, b_n = p["b"].chunk(3)
    r = torch.sigmoid(Ux_r + Wh_r + b_r)
    z = torch.sigmoid(Ux_z + Wh_z + b_z)
    a_n = Ux_n + b_n + r * (Wh_n + p["b_hn"])
    n = torch.tanh(a_n)
    h = (1 - z) * n + z * h_prev
    a = torch.cat([Ux_r + Wh_r + b_r, Ux_z + Wh_z + b_z, a_n])
    return {"x": x, "Ux": Ux, "Wh": Wh, "a": a, "r": r, "z": z, "n": n, "h": h}


def _gru_backward(
    p: dict[str, Tensor],
    s: dict[str, Tensor],
    h_prev: Tensor,
    c_prev: Tensor,
    delta: Tensor,
    carry: _Carry,
) -> tuple[dict[str, Tensor], _Carry]:
    r, z, n = s["r"], s["z"], s["n"]
    Wh_n = s["Wh"].chunk(3)[2]
    dA_n = delta * (1 - z) * (1 - n**2)
    dA_z = delta * (h_prev - n) * z * (1 - z)
    dA_r = dA_n * (Wh_n + p["b_hn"]) * r * (1 - r)
    dA = torch.cat([dA_r, dA_z, dA_n])
    dS = torch.cat([dA_r, dA_z, r * dA_n])
    terms = {
        "dA": dA,
        "dS": dS,
        "dU": torch.outer(dA, s["x"]),
        "dW": torch.outer(dS, h_prev),
        "db": dA,
        "db_hn": r * dA_n,
    }
    return terms, _Carry(p["W"].T @ dS + z * delta, torch.zeros_like(c_prev))


def _mingru_forward(
    p: dict[str, Tensor], x: Tensor, h_prev: Tensor, c_prev: Tensor
) -> dict[str, Tensor]:
    Ux = p["U"] @ x
    k = Ux + p["b"]
    k_z, k_h = k.chunk(2)
    z, cand = torch.sigmoid(k_z), k_h
    a, b = 1 - z, z * cand
    h = a * h_prev + b
    return {"x": x, "Ux": Ux, "k": k, "z": z, "cand": cand, "ret": a, "add": b, "h": h}


def _mingru_backward(
    p: dict[str, Tensor],
    s: dict[str, Tensor],
    h_prev: Tensor,
    c_prev: Tensor,
    delta: Tensor,
    carry: _Carry,
) -> tuple[dict[str, Tensor], _Carry]:
    z, cand = s["z"], s["cand"]
    dK = torch.cat([delta * (cand - h_prev) * z * (1 - z), delta * z])  # [dK^z; dK^h]
    terms = {"dK": dK, "dU": torch.outer(dK, s["x"]), "db": dK}
    return terms, _Carry(s["ret"] * delta, torch.zeros_like(c_prev))


def _minlstm_forward(
    p: dict[str, Tensor], x: Tensor, h_prev: Tensor, c_prev: Tensor
) -> dict[str, Tensor]:
    Ux = p["U"] @ x
    k = Ux + p["b"]
    k_i, k_f, k_h = k.chunk(3)
    i, f, cand = torch.sigmoid(k_i), torch.sigmoid(k_f), k_h
    f_n, i_n = f / (f + i), i / (f + i)
    h = f_n * h_prev + i_n * cand
    return {"x": x, "Ux": Ux, "k": k, "i": i, "f": f, "fn": f_n, "in": i_n, "cand": cand,
            "ret": f_n, "add": i_n * cand, "h": h}  # fmt: skip


def _minlstm_backward(
    p: dict[str, Tensor],
    s: dict[str, Tensor],
    h_prev: Tensor,
    c_prev: Tensor,
    delta: Tensor,
    carry: _Carry,
) -> tuple[dict[str, Tensor], _Carry]:
    i, f, f_n, i_n = s["i"], s["f"], s["fn"], s["in"]
    d = delta * (h_prev - s["cand"]) * f_n * i_n  # ∂L/∂f'_t ⊙ f'_t i'_t
    dK = torch.cat([-d * (1 - i), d * (1 - f), delta * i_n])  # [dK^i; dK^f; dK^h]
    terms = {"dK": dK, "dU": torch.outer(dK, s["x"]), "db": dK}
    return terms, _Carry(f_n * delta, torch.zeros_like(c_prev))


class _Walk(NamedTuple):
    forward: StepForward
    backward: StepBackward
    equations: tuple[str, ...]
    names: dict[str, str]


_OUTPUT_NAMES = {
    "V": "output.weight (K×H), the output layer",
    "c": "output.bias (K)",
}

_WALKS: dict[str, _Walk] = {
    "rnn": _Walk(
        _rnn_forward,
        _rnn_backward,
        (
            "a_t = U·x_t + W·h_{t−1} + b        h_t = tanh(a_t)",
            "δ_t = G_t + Wᵀ·dA_{t+1}    dA_t = δ_t ⊙ (1 − h_t²)",
            "(∂L/∂U)_t = dA_t·x_tᵀ    (∂L/∂W)_t = dA_t·h_{t−1}ᵀ    (∂L/∂b)_t = dA_t",
        ),
        {
            "U": "weight_ih (H×I)",
            "W": "weight_hh (H×H)",
            "b": "bias_ih + bias_hh (H); ∂L/∂bias_ih = ∂L/∂bias_hh = ∂L/∂b",
        },
    ),
    "lstm": _Walk(
        _lstm_forward,
        _lstm_backward,
        (
            "a_t = U·x_t + W·h_{t−1} + b = [a^i; a^f; a^g; a^o]",
            "i_t = σ(a^i_t)  f_t = σ(a^f_t)  g_t = tanh(a^g_t)  o_t = σ(a^o_t)",
            "c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t        h_t = o_t ⊙ tanh(c_t)",
            "δ_t = G_t + Wᵀ·dA_{t+1}    ε_t = δ_t ⊙ o_t ⊙ (1 − tanh² c_t) + ε_{t+1} ⊙ f_{t+1}",
            "dA^i = ε_t ⊙ g_t ⊙ i_t(1 − i_t)    dA^f = ε_t ⊙ c_{t−1} ⊙ f_t(1 − f_t)",
            "dA^g = ε_t ⊙ i_t ⊙ (1 − g_t²)      dA^o = δ_t ⊙ tanh(c_t) ⊙ o_t(1 − o_t)",
            "(∂L/∂U)_t = dA_t·x_tᵀ    (∂L/∂W)_t = dA_t·h_{t−1}ᵀ    (∂L/∂b)_t = dA_t",
        ),
        {
            "U": "weight_ih (4H×I, rows i, f, g, o)",
            "W": "weight_hh (4H×H, rows i, f, g, o)",
            "b": "bias_ih + bias_hh (4H); ∂L/∂bias_ih = ∂L/∂bias_hh = ∂L/∂b",
        },
    ),
    "gru": _Walk(
        _gru_forward,
        _gru_backward,
        (
            "r_t = σ(a^r_t)  a^r_t = U_r·x_t + W_r·h_{t−1} + b_r",
            "z_t = σ(a^z_t)  a^z_t = U_z·x_t + W_z·h_{t−1} + b_z",
            "n_t = tanh(a^n_t)  a^n_t = U_n·x_t + b_n + r_t ⊙ (W_n·h_{t−1} + b_hn)",
            "h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}",
            "δ_t = G_t + Wᵀ·dS_{t+1} + z_{t+1} ⊙ δ_{t+1}",
            "dA^n = δ_t ⊙ (1 − z_t) ⊙ (1 − n_t²)    dA^z = δ_t ⊙ (h_{t−1} − n_t) ⊙ z_t(1 − z_t)",
            "dA^r = dA^n ⊙ (W_n·h_{t−1} + b_hn) ⊙ r_t(1 − r_t)",
            "dA_t = [dA^r; dA^z; dA^n]    dS_t = [dA^r; dA^z; r_t ⊙ dA^n]",
            "(∂L/∂U)_t = dA_t·x_tᵀ  (∂L/∂W)_t = dS_t·h_{t−1}ᵀ  (∂L/∂b)_t = dA_t  "
            "(∂L/∂b_hn)_t = r_t ⊙ dA^n",
        ),
        {
            "U": "weight_ih (3H×I, rows r, z, n)",
            "W": "weight_hh (3H×H, rows r, z, n)",
            "b": "[b_ir + b_hr; b_iz + b_hz; b_in] from bias_ih, bias_hh (3H); ∂L/∂bias_ih = ∂L/∂b",
            "b_hn": "bias_hh[2H:] (H), inside r_t ⊙ (W_n·h + b_hn); "
            "∂L/∂bias_hh = [∂L/∂b_r; ∂L/∂b_z; ∂L/∂b_hn]",
        },
    ),
}

_SCAN = (
    "the scan: a_t, b_t of every step at once, then h_t = a_t ⊙ h_{t−1} + b_t for all t "
    "(backend 'scan'); checked against the steps above"
)
_WALKS["mingru"] = _Walk(
    _mingru_forward,
    _mingru_backward,
    (
        "k_t = U·x_t + b = [k^z; k^h]    z_t = σ(k^z_t)    h̃_t = k^h_t    (no W: x_t alone)",
        "a_t = 1 − z_t    b_t = z_t ⊙ h̃_t    h_t = a_t ⊙ h_{t−1} + b_t",
        _SCAN,
        "δ_t = G_t + a_{t+1} ⊙ δ_{t+1}",
        "dK^z = δ_t ⊙ (h̃_t − h_{t−1}) ⊙ z_t(1 − z_t)    dK^h = δ_t ⊙ z_t",
        "(∂L/∂U)_t = dK_t·x_tᵀ    (∂L/∂b)_t = dK_t",
    ),
    {"U": "weight_ih (2H×I, rows z, h̃)", "b": "bias_ih (2H)"},
)
_WALKS["minlstm"] = _Walk(
    _minlstm_forward,
    _minlstm_backward,
    (
        "k_t = U·x_t + b = [k^i; k^f; k^h]    i_t = σ(k^i_t)  f_t = σ(k^f_t)  h̃_t = k^h_t",
        "f'_t = f_t / (f_t + i_t)    i'_t = i_t / (f_t + i_t)",
        "a_t = f'_t    b_t = i'_t ⊙ h̃_t    h_t = a_t ⊙ h_{t−1} + b_t",
        _SCAN,
        "δ_t = G_t + a_{t+1} ⊙ δ_{t+1}    d_t = δ_t ⊙ (h_{t−1} − h̃_t) ⊙ f'_t i'_t",
        "dK^i = −d_t ⊙ (1 − i_t)    dK^f = d_t ⊙ (1 − f_t)    dK^h = δ_t ⊙ i'_t",
        "(∂L/∂U)_t = dK_t·x_tᵀ    (∂L/∂b)_t = dK_t",
    ),
    {"U": "weight_ih (3H×I, rows i, f, h̃)", "b": "bias_ih (3H)"},
)

_LOSS_EQUATIONS = {
    "mse": "ŷ_t = V·h_t + c (g = identity)    L_t = ½‖ŷ_t − y_t‖²    L = Σ_t L_t",
    "ce": "ŷ_t = softmax(V·h_t + c)    L_t = −y_tᵀ·log ŷ_t (y_t one-hot)    L = Σ_t L_t",
}
_OUTPUT_EQUATION = "e_t = ŷ_t − y_t    G_t = Vᵀ·e_t    (∂L/∂V)_t = e_t·h_tᵀ    (∂L/∂c)_t = e_t"


# -- the walk ------------------------------------------------------------------------


def explain(config: ExplainConfig) -> Explanation:
    """Build the network of ``config``, run it forward and backward by hand, and check it.

    Deterministic for a config: weights (torch.nn's uniform ±1/√H for the cell and
    the output layer), inputs x_t ~ N(0, 1) and targets (y_t ~ N(0, 1) for mse,
    uniform classes for ce) all come from one generator seeded with ``config.seed``;
    the global random state is left untouched.
    """
    I, H, K, T = config.input_size, config.hidden_size, config.outputs, config.steps
    walk = _WALKS[config.cell]
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        cell: Any = cell_factory(config.cell)(I, H).to(F64)
    bound = 1.0 / math.sqrt(H)
    with torch.no_grad():
        for weight in cell.parameters():
            weight.uniform_(-bound, bound, generator=generator)
    V = torch.empty(K, H, dtype=F64).uniform_(-bound, bound, generator=generator)
    c = torch.empty(K, dtype=F64).uniform_(-bound, bound, generator=generator)
    inputs = torch.randn(T, I, generator=generator, dtype=F64)
    if config.loss == "mse":
        classes = None
        targets = torch.randn(T, K, generator=generator, dtype=F64)
    else:
        classes = torch.randint(0, K, (T,), generator=generator)
        targets = F.one_hot(classes, K).to(F64)

    params = _parameters(cell, config.cell, V, c)
    forward = _forward(walk, params, inputs, targets, config.loss)
    backward = _backward(walk, params, forward, H)
    totals = {
        key: torch.stack([step[key] for step in backward]).sum(0)
        for key in backward[0]
        if key in GRADIENT_SYMBOLS
    }
    hand = _torch_layout(totals, config.cell, H)
    autograd, own_forward = _autograd(cell, V, c, inputs, targets, classes)
    differences = {name: _max_abs(hand[name] - autograd[name]) for name in autograd}
    forward_difference = max(
        _max_abs(step[key] - mine[key]) for step, mine in zip(forward, own_forward, strict=True)
        for key in mine
    )  # fmt: skip
    if config.cell in MINIMAL:  # the scan over all steps at once gives the same h_t
        from rnnkit.bptt.scan import scan_steps

        a, b = (torch.stack([step[key] for step in forward]) for key in ("ret", "add"))
        scanned = scan_steps(a, b, torch.zeros(H, dtype=F64))  # (T, H)
        forward_difference = max(
            forward_difference, _max_abs(scanned - torch.stack([s["h"] for s in forward]))
        )
    return Explanation(
        config=config,
        equations=(*walk.equations, _LOSS_EQUATIONS[config.loss], _OUTPUT_EQUATION),
        parameter_names={**walk.names, **_OUTPUT_NAMES},
        parameters=params,
        inputs=inputs,
        targets=targets,
        forward=tuple(forward),
        backward=tuple(backward),
        totals=totals,
        loss=float(sum(float(step["L"]) for step in forward)),
        hand=hand,
        autograd=autograd,
        differences=differences,
        forward_difference=forward_difference,
    )


def _parameters(cell: Any, name: str, V: Tensor, c: Tensor) -> dict[str, Tensor]:
    """U, W, b (and the GRU's b_hn), V, c from the cell's torch.nn-layout parameters;
    the minimal cells have U and b alone."""
    if name in MINIMAL:
        return {"U": cell.weight_ih.detach().clone(), "b": cell.bias_ih.detach().clone(),
                "V": V, "c": c}  # fmt: skip
    U, W = cell.weight_ih.detach().clone(), cell.weight_hh.detach().clone()
    b_ih, b_hh = cell.bias_ih.detach().clone(), cell.bias_hh.detach().clone()
    if name != "gru":
        return {"U": U, "W": W, "b": b_ih + b_hh, "V": V, "c": c}
    H = cell.hidden_size
    b = torch.cat([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]])  # b_r, b_z, b_n = b_in
    return {"U": U, "W": W, "b": b, "b_hn": b_hh[2 * H :], "V": V, "c": c}


def _forward(
    walk: _Walk, p: dict[str, Tensor], inputs: Tensor, targets: Tensor, loss: str
) -> list[dict[str, Tensor]]:
    H = p["V"].shape[1]
    h_prev = torch.zeros(H, dtype=F64)
    c_prev = torch.zeros(H, dtype=F64)
    steps = []
    for x, y in zip(inputs, targets, strict=True):
        step = walk.forward(p, x, h_prev, c_prev)
        out = p["V"] @ step["h"] + p["c"]
        if loss == "mse":
            y_hat = out
            L = 0.5 * ((y_hat - y) ** 2).sum()
        else:
            y_hat = torch.softmax(out, dim=0)
            L = torch.logsumexp(out, dim=0) - (out * y).sum()  # −log softmax(out)[y]
        steps.append({**step, "out": out, "y_hat": y_hat, "y": y, "L": L})
        h_prev = step["h"]
        c_prev = step.get("c_t", c_prev)
    return steps


def _backward(
    walk: _Walk, p: dict[str, Tensor], forward: list[dict[str, Tensor]], H: int
) -> list[dict[str, Tensor]]:
    """The BPTT walk from t = T down to 1; returned in t order."""
    zeros = torch.zeros(H, dtype=F64)
    carry = _Carry(zeros, zeros)
    steps: list[dict[str, Tensor]] = []
    for t in range(len(forward) - 1, -1, -1):
        s = forward[t]
        h_prev = forward[t - 1]["h"] if t > 0 else zeros
        c_prev = forward[t - 1].get("c_t", zeros) if t > 0 else zeros
        e = s["y_hat"] - s["y"]  # ∂L_t/∂(V·h_t + c), for both losses
        G = p["V"].T @ e
        delta = G + carry.h
        terms, carry = walk.backward(p, s, h_prev, c_prev, delta, carry)
        record = {"e": e, "G": G, "delta": delta, **terms}
        record["dV"] = torch.outer(e, s["h"])
        record["dc"] = e
        steps.append(record)
    return steps[::-1]


def _torch_layout(totals: dict[str, Tensor], name: str, H: int) -> dict[str, Tensor]:
    """The hand-derived totals under torch.nn's parameter names."""
    db = totals["db"]
    outputs = {"output.weight": totals["dV"], "output.bias": totals["dc"]}
    if name in MINIMAL:
        return {"weight_ih": totals["dU"], "bias_ih": db, **outputs}
    bias_hh = torch.cat([db[: 2 * H], totals["db_hn"]]) if name == "gru" else db
    return {
        "weight_ih": totals["dU"],
        "weight_hh": totals["dW"],
        "bias_ih": db,
        "bias_hh": bias_hh,
        "output.weight": totals["dV"],
        "output.bias": totals["dc"],
    }


def _autograd(
    cell: Any, V: Tensor, c: Tensor, inputs: Tensor, targets: Tensor, classes: Tensor | None
) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
    """∂L/∂θ by autograd through the cell's own forward, and that forward's h_t, c_t, L_t."""
    weight = V.clone().requires_grad_()
    bias = c.clone().requires_grad_()
    state = cell.initial_state(1)
    total = torch.zeros((), dtype=F64)
    seen: list[dict[str, Tensor]] = []
    for t in range(inputs.shape[0]):
        h, state = cell(inputs[t : t + 1], state)  # (1, H)
        out = F.linear(h, weight, bias)  # (1, K)
        if classes is None:
            L = 0.5 * ((out - targets[t : t + 1]) ** 2).sum()
        else:
            L = F.cross_entropy(out, classes[t : t + 1], reduction="sum")
        total = total + L
        mine = {"h": h[0].detach(), "L": L.detach()}
        if hasattr(state, "c"):
            mine["c_t"] = state.c[0].detach()
        seen.append(mine)
    names = [*(n for n, _ in cell.named_parameters()), "output.weight", "output.bias"]
    grads = torch.autograd.grad(total, [*cell.parameters(), weight, bias])
    return dict(zip(names, grads, strict=True)), seen


def _max_abs(difference: Tensor) -> float:
    value = float(difference.abs().max())
    return value if math.isfinite(value) else math.inf


# -- output ---------------------------------------------------------------------------


def _describe(config: ExplainConfig) -> str:
    cell = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU", "mingru": "minGRU",
            "minlstm": "minLSTM"}[config.cell]  # fmt: skip
    loss = {"mse": "MSE loss", "ce": "softmax cross-entropy loss"}[config.loss]
    return (
        f"{cell} cell (I = {config.input_size}, H = {config.hidden_size}, "
        f"K = {config.outputs}), T = {config.steps} steps, {loss}, seed {config.seed}, float64"
    )


def to_dict(explanation: Explanation) -> dict[str, Any]:
    """Every number of the explanation as plain lists and floats (JSON-ready, full precision)."""
    ex = explanation
    return {
        "config": asdict(ex.config),
        "dtype": "float64",
        "description": _describe(ex.config),
        "equations": list(ex.equations),
        "parameter_names": dict(ex.parameter_names),
        "labels": {key: label(key) for key in LABELS},
        "parameters": {k: v.tolist() for k, v in ex.parameters.items()},
        "inputs": ex.inputs.tolist(),
        "targets": ex.targets.tolist(),
        "forward": [
            {"t": t, **{k: v.tolist() for k, v in step.items()}}
            for t, step in enumerate(ex.forward, start=1)
        ],
        "backward": [
            {"t": t, **{k: v.tolist() for k, v in step.items()}}
            for t, step in enumerate(ex.backward, start=1)
        ],
        "totals": {k: v.tolist() for k, v in ex.totals.items()},
        "loss": ex.loss,
        "check": {
            "hand": {k: v.tolist() for k, v in ex.hand.items()},
            "autograd": {k: v.tolist() for k, v in ex.autograd.items()},
            "max_abs_difference": dict(ex.differences),
            "largest_difference": ex.max_difference,
            "forward_difference": ex.forward_difference,
            "tolerance": TOLERANCE,
            "agrees": ex.agrees,
        },
    }


def _number(value: float) -> str:
    rounded = round(value, 4)
    return f"{rounded + 0.0:9.4f}"  # + 0.0 turns −0.0 into 0.0


def _text_value(value: Tensor) -> list[str]:
    """A vector as one bracketed row, a matrix as one row per line, a scalar alone."""
    if value.dim() == 0:
        return [_number(float(value)).strip()]
    rows = value.tolist() if value.dim() == 2 else [value.tolist()]
    return ["[" + "".join(_number(v) for v in row) + " ]" for row in rows]


def _text_block(items: list[tuple[str, Tensor]], indent: str) -> list[str]:
    width = max(len(name) for name, _ in items)
    lines = []
    for name, value in items:
        for k, row in enumerate(_text_value(value)):
            lines.append(f"{indent}{name if k == 0 else '':<{width}}  {row}")
    return lines


def render_text(explanation: Explanation) -> str:
    """A terminal walk-through: aligned vectors rounded to 4 decimals."""
    ex = explanation
    lines = [f"rnnkit explain: {_describe(ex.config)}", "", "The network (t = 1 … T, h_0 = 0):"]
    lines += [f"  {line}" for line in ex.equations]
    lines += ["", "Parameters (the seeds' symbols and torch.nn's names):"]
    lines += [f"  {symbol:<4} = {where}" for symbol, where in ex.parameter_names.items()]
    lines += _text_block(list(ex.parameters.items()), "  ")
    lines += ["", "Forward pass"]
    for t, step in enumerate(ex.forward, start=1):
        lines.append(f"  t = {t}")
        lines += _text_block([(label(k, t), v) for k, v in step.items()], "    ")
    lines += ["", f"L = Σ_t L_t = {ex.loss:.6f}", "", "Backward pass (BPTT by hand, t = T … 1)"]
    for t in range(len(ex.backward), 0, -1):
        lines.append(f"  t = {t}")
        lines += _text_block([(label(k, t), v) for k, v in ex.backward[t - 1].items()], "    ")
    lines += ["", "Sums over t (∂L/∂θ = Σ_t (∂L/∂θ)_t)"]
    lines += _text_block([(f"∂L/∂{GRADIENT_SYMBOLS[k]}", v) for k, v in ex.totals.items()], "  ")
    lines += ["", *_check_lines(ex)]
    return "\n".join(lines) + "\n"


def _check_lines(ex: Explanation) -> list[str]:
    lines = ["Check against autograd (torch.autograd.grad through the cell's own forward):"]
    width = max(len(name) for name in ex.differences)
    lines += [f"  {name:<{width}}  max |Δ| = {d:.2e}" for name, d in ex.differences.items()]
    verdict = "agrees" if ex.agrees else "MISMATCH"
    lines.append(
        f"largest difference: {ex.max_difference:.2e} (forward: {ex.forward_difference:.2e}); "
        f"tolerance {TOLERANCE:.0e}: {verdict}"
    )
    return lines


def _markdown_value(value: Tensor) -> str:
    if value.dim() == 0:
        return f"`{_number(float(value)).strip()}`"
    rows = value.tolist() if value.dim() == 2 else [value.tolist()]
    text = "; ".join(", ".join(_number(v).strip() for v in row) for row in rows)
    return f"`[{text}]`"


def _markdown_table(items: list[tuple[str, Tensor]]) -> list[str]:
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| {name} | {_markdown_value(value)} |" for name, value in items]
    return lines


def render_markdown(explanation: Explanation) -> str:
    """The walk-through as markdown: headers and tables, rounded to 4 decimals.

    Matrices are written row by row, rows separated by ``;``.
    """
    ex = explanation
    lines = ["# rnnkit explain", "", _describe(ex.config) + ".", "", "## The network", ""]
    lines += ["```", *ex.equations, "```", "", "## Parameters", ""]
    lines += ["| symbol | torch.nn | value |", "|---|---|---|"]
    lines += [
        f"| {s} | {ex.parameter_names[s]} | {_markdown_value(v)} |"
        for s, v in ex.parameters.items()
    ]
    lines += ["", "## Forward pass", ""]
    for t, step in enumerate(ex.forward, start=1):
        lines += [f"### t = {t}", "", *_markdown_table([(label(k, t), v) for k, v in step.items()])]
        lines.append("")
    lines += [f"L = Σ_t L_t = `{ex.loss:.6f}`", "", "## Backward pass (t = T … 1)", ""]
    for t in range(len(ex.backward), 0, -1):
        items = [(label(k, t), v) for k, v in ex.backward[t - 1].items()]
        lines += [f"### t = {t}", "", *_markdown_table(items), ""]
    lines += ["## Sums over t", ""]
    lines += _markdown_table([(f"∂L/∂{GRADIENT_SYMBOLS[k]}", v) for k, v in ex.totals.items()])
    lines += [
        "",
        "## Check against autograd",
        "",
        "| parameter | max abs difference |",
        "|---|---|",
    ]
    lines += [f"| {name} | {d:.2e} |" for name, d in ex.differences.items()]
    verdict = "agrees" if ex.agrees else "MISMATCH"
    lines += [
        "",
        f"Largest difference: **{ex.max_difference:.2e}** (forward: {ex.forward_difference:.2e}); "
        f"tolerance {TOLERANCE:.0e}: **{verdict}**.",
    ]
    return "\n".join(lines) + "\n"
