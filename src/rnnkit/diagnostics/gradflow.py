"""Gradient flow through time: the vanishing-gradient problem, measured step by step.

BPTT sends the error at the loss back through the unrolled steps::

    δ_t = ∂L/∂h_t = ∂L_t/∂h_t + (∂h_{t+1}/∂h_t)ᵀ · δ_{t+1}
    ∂L/∂W = Σ_t (∂L/∂W)|_t            one term per step, W shared by every step

so the part of the gradient that reaches step t from a loss at step T passes
through the product ∂h_T/∂h_{T−1} ⋯ ∂h_{t+1}/∂h_t. When that product shrinks
geometrically (a tanh RNN with a contractive W) early steps receive almost no
gradient and cannot learn long-range dependencies: the vanishing gradient.
LSTM and GRU add paths (c_t = f ⊙ c_{t−1} + …, h_t = z ⊙ h_{t−1} + …) whose
Jacobian is a gate, not a squashed matrix product.

:func:`gradient_flow` measures all three quantities for any cell that follows
the cell protocol, by running BPTT *explicitly*: every step is its own small
autograd graph (its incoming state and a private copy of the parameters are
leaves), and the backward pass walks the steps from T down to 1 carrying δ_t,
exactly the recursion above. Each step's parameter copy therefore receives
exactly that step's term of ∂L/∂W; the terms sum to the autograd gradient (a test
checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from rnnkit.state import describe_state, map_state
from rnnkit.unrolling import check_inputs


@dataclass(frozen=True)
class GradientFlow:
    """Per-step gradient statistics of one loss on one batch (float64 on the CPU).

    Step t is the cell's t-th application (0 … T−1); h_t is the hidden state it
    produces.

    Attributes:
        state_grad_norms: ``(T,)`` ‖∂L/∂h_t‖ (Frobenius norm over the batch): the
            total derivative, through the loss at step t (when the cell's output
            is h_t) and through all later steps.
        param_step_norms: parameter name → ``(T,)`` ‖(∂L/∂θ)|_t‖, the norm of step
            t's term of the sum ∂L/∂θ = Σ_t (∂L/∂θ)|_t.
        param_grads: parameter name → the summed gradient ∂L/∂θ.
        jacobian_norms: ``(T,)`` ‖∂h_{T−1}/∂h_t‖₂, the spectral norm of the Jacobian
            of the last hidden state with respect to h_t (other state fields, such
            as the LSTM's c_t, held fixed), averaged over the batch; 1 at t = T−1.
            ``None`` when not computed.
        loss: the loss value.
    """

    state_grad_norms: Tensor
    param_step_norms: dict[str, Tensor]
    param_grads: dict[str, Tensor]
    jacobian_norms: Tensor | None
    loss: float

    @property
    def steps(self) -> int:
        return int(self.state_grad_norms.shape[0])

    def share(self, name: str) -> Tensor:
        """``(T,)`` each step's share of Σ_t ‖(∂L/∂θ)|_t‖ for parameter ``name`` (sums to 1)."""
        norms = self.param_step_norms[name]
        total = norms.sum()
        return norms / total if total > 0 else torch.zeros_like(norms)

    def decay(self) -> float:
        """‖∂L/∂h_0‖ / ‖∂L/∂h_{T−1}‖: how much of the last step's gradient reaches step 0."""
        last = float(self.state_grad_norms[-1])
        return float(self.state_grad_norms[0]) / last if last > 0 else float("nan")


LossFn = Callable[[Tensor], Tensor]


def gradient_flow(
    cell: nn.Module,
    inputs: Tensor,
    loss_fn: LossFn,
    state: Any = None,
    *,
    jacobians: bool = True,
) -> GradientFlow:
    """Run BPTT step by step over one batch and record how the gradient flows.

    Args:
        cell: any module following the cell protocol (:mod:`rnnkit.cells.base`).
        inputs: ``(B, T, I)``.
        loss_fn: maps the stacked step outputs ``(B, T, O)`` to a scalar loss; put
            the output map (V, c) and the targets inside it. A loss on the last
            step only reads ``outputs[:, -1]``; a loss on every step reads them all.
        state: initial state (``None``: the cell's ``initial_state``), a NamedTuple
            whose field ``h`` is the hidden state that the norms and Jacobians follow.
        jacobians: also compute ‖∂h_{T−1}/∂h_t‖₂ (H extra vector-Jacobian products
            per step, batched).

    Returns:
        a :class:`GradientFlow`.
    """
    batch, steps = check_inputs(cell, inputs)
    protocol: Any = cell
    if state is None:
        state = protocol.initial_state(batch, device=inputs.device, dtype=inputs.dtype)
    if not hasattr(state, "h") or not hasattr(state, "_replace"):
        raise ValueError(
            "state: gradient_flow follows the hidden state, expected a NamedTuple with a "
            f"field h (HiddenState, LSTMState), got {describe_state(state)}"
        )
    params = dict(cell.named_parameters())

    # Forward: one small graph per step, with the step's own leaves.
    incoming: list[Any] = []
    copies: list[dict[str, Tensor]] = []
    produced: list[tuple[Tensor, Any]] = []
    current = map_state(Tensor.detach, state)
    for t in range(steps):
        leaf = map_state(lambda field: field.detach().requires_grad_(), current)
        own = {name: p.detach().requires_grad_() for name, p in params.items()}
        output, new_state = functional_call(cell, own, (inputs[:, t], leaf))
        incoming.append(leaf)
        copies.append(own)
        produced.append((output, new_state))
        current = new_state

    outputs = torch.stack([output.detach() for output, _ in produced], dim=1).requires_grad_()
    loss = loss_fn(outputs)
    if loss.dim() != 0:
        raise ValueError(f"loss_fn: expected a scalar, got shape {tuple(loss.shape)}")
    (output_grads,) = torch.autograd.grad(loss, outputs)  # ∂L_t/∂output_t, (B, T, O)

    # Backward: the BPTT recursion, one step at a time from the last.
    last = produced[-1][1]
    future = map_state(torch.zeros_like, last)  # ∂L/∂s_t through the steps after t
    state_norms = torch.zeros(steps, dtype=torch.float64)
    step_norms = {name: torch.zeros(steps, dtype=torch.float64) for name in params}
    sums = {name: torch.zeros_like(p, dtype=torch.float64) for name, p in params.items()}
    jacobian_rows = _identity_rows(last) if jacobians else None
    jacobian_norms = torch.zeros(steps, dtype=torch.float64) if jacobians else None
    for t in range(steps - 1, -1, -1):
        output, new_state = produced[t]
        # δ_t: through the later steps, plus the loss's own term when the output is h_t.
        delta_h = future.h + (output_grads[:, t] if output is new_state.h else 0.0)
        state_norms[t] = float(delta_h.double().norm())
        if jacobian_rows is not None and jacobian_norms is not None:
            jacobian_norms[t] = _mean_spectral_norm(jacobian_rows.h)
        leaf = incoming[t]
        params_t = list(copies[t].values())
        grads = torch.autograd.grad(
            [output, *new_state],
            [*leaf, *params_t],
            [output_grads[:, t], *future],
            retain_graph=jacobian_rows is not None,
            allow_unused=True,
        )
        leaf_grads = grads[: len(leaf)]  # one per field of the state, in its order
        future = _like(
            leaf, [_or_zeros(g, f.shape, f) for g, f in zip(leaf_grads, leaf, strict=True)]
        )
        for name, g in zip(copies[t], grads[len(leaf) :], strict=True):
            if g is not None:
                step_norms[name][t] = float(g.double().norm())
                sums[name] += g.double()
        if jacobian_rows is not None and t > 0:
            jacobian_rows = _pull_back(new_state, leaf, jacobian_rows)
    return GradientFlow(
        state_grad_norms=state_norms,
        param_step_norms=step_norms,
        param_grads=sums,
        jacobian_norms=jacobian_norms,
        loss=float(loss.detach()),
    )


def _identity_rows(state: Any) -> Any:
    """∂h/∂s for the last state s: rows e_k of h, zero rows for the other fields.

    A state of the cell's type whose field ``f`` is ``(H, *f.shape)``: H batched
    vector-Jacobian products, one per component of h.
    """
    h = state.h  # (B, H)
    hidden = h.shape[-1]
    eye = torch.eye(hidden, dtype=h.dtype, device=h.device)  # (H, H)
    rows = map_state(lambda field: field.new_zeros(hidden, *field.shape), state)
    return rows._replace(h=eye[:, None, :].expand(hidden, *h.shape).contiguous())  # (H, B, H)


def _pull_back(new_state: Any, leaf: Any, rows: Any) -> Any:
    """rows · ∂s_t/∂s_{t−1}: the Jacobian rows moved one step back (batched VJPs)."""
    grads = torch.autograd.grad(
        list(new_state), list(leaf), list(rows), is_grads_batched=True, allow_unused=True
    )
    count = rows.h.shape[0]
    return _like(
        leaf, [_or_zeros(g, (count, *f.shape), f) for g, f in zip(grads, leaf, strict=True)]
    )


def _like(state: Any, fields: list[Tensor]) -> Any:
    """A state of ``state``'s NamedTuple type holding ``fields``, in its field order."""
    return type(state)(*fields)


def _or_zeros(grad: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``grad``, or zeros of ``shape`` where autograd found no path (``allow_unused``)."""
    return like.new_zeros(shape) if grad is None else grad


def _mean_spectral_norm(rows: Tensor) -> float:
    """Mean over the batch of ‖J_b‖₂ for J stored as rows ``(H_out, B, H_in)``."""
    per_sample = rows.permute(1, 0, 2).double()  # (B, H_out, H_in)
    return float(torch.linalg.matrix_norm(per_sample, ord=2).mean())
