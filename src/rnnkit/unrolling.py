"""Unrolling a cell through time: the explicit loop whose autograd graph *is* BPTT."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.state import check_state_like, where_state

Lengths = Tensor | Sequence[int]


def unroll(
    cell: nn.Module,
    inputs: Tensor,
    state: Any = None,
    lengths: Lengths | None = None,
    reverse: bool = False,
) -> tuple[Tensor, Any]:
    """Run ``cell`` over every step of a batch of sequences.

    The same cell (the same U, W, b) is applied at every step::

        for t in 0 … T−1 (or T−1 … 0 when reverse):
            output_t, state = cell(inputs[:, t], state)

    so backpropagating through the returned tensors is full BPTT: the gradient
    of every parameter sums one contribution per step.

    Args:
        cell: any module following the cell protocol (:mod:`rnnkit.cells.base`).
        inputs: ``(B, T, I)``, batch first.
        state: the state before the first step, the cell's state type with
            ``(B, ...)`` fields; ``None`` asks the cell for ``initial_state(B)``.
        lengths: ``(B,)`` valid lengths in ``1 … T`` (a tensor or a sequence of
            ints). Row b then only uses steps ``0 … lengths[b]−1``.
        reverse: run right to left. With ``lengths``, each row runs over its
            own valid part only, from step ``lengths[b]−1`` down to 0.

    Returns:
        ``(outputs, final_state)``: ``outputs`` is ``(B, T, O)`` with zeros past
        each row's length; ``final_state`` is each row's state after its last
        valid step (step 0 when ``reverse``), of the same type as ``state``.

    Raises:
        ValueError: inputs not ``(B, T, I)``, lengths of the wrong shape, type or
            range, or a state whose type or shapes do not match the cell's.
    """
    batch, steps = check_inputs(cell, inputs)
    valid = _valid_mask(lengths, batch, steps, inputs.device)  # (B, T) or None
    if valid is not None:
        # Zero the padding once: a cell never sees garbage (NaN, inf) there, so the
        # masked-out branch of the backward pass multiplies finite numbers by zero.
        inputs = inputs.masked_fill(~valid[:, :, None], 0.0)  # (B, T, I)
    protocol: Any = cell  # initial_state comes from the protocol, not from nn.Module
    start = protocol.initial_state(batch, device=inputs.device, dtype=inputs.dtype)
    if state is None:
        state = start
    else:
        check_state_like(state, start)

    outputs: list[Tensor] = [inputs] * steps  # placeholders, each overwritten below
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        output, new_state = cell(inputs[:, t], state)  # (B, O)
        if valid is None:
            state = new_state
        else:
            # Rows whose sequence has ended keep their state and emit zeros; for
            # reverse runs this holds the initial state until each row's last
            # valid step, so right-to-left starts exactly at lengths[b] − 1.
            keep = valid[:, t]  # (B,)
            state = where_state(keep, new_state, state)
            output = output.masked_fill(~_expand(keep, output), 0.0)
        outputs[t] = output
    return torch.stack(outputs, dim=1), state  # (B, T, O)


def length_mask(lengths: Tensor, steps: int) -> Tensor:
    """``(B, steps)`` bool, true where t < lengths[b]: the real steps of a ragged batch."""
    positions = torch.arange(steps, device=lengths.device)  # (T,)
    return positions < lengths.unsqueeze(1)  # (B, T)


def check_lengths(lengths: Lengths, batch: int, steps: int) -> Tensor:
    """Validate ``lengths`` against a ``(B, T, ·)`` batch; return them as a CPU int64 ``(B,)`` tensor."""
    if isinstance(lengths, Tensor):
        if (
            lengths.dtype.is_floating_point
            or lengths.dtype.is_complex
            or lengths.dtype == torch.bool
        ):
            raise ValueError(f"lengths: expected an integer tensor, got dtype {lengths.dtype}")
        result = lengths.detach().to("cpu", torch.int64)
    else:
        raw: Any = lengths  # user input: the annotation is a promise, not a fact
        try:
            values: list[object] = list(raw)
        except TypeError:
            raise ValueError(f"lengths: expected a sequence of ints, got {lengths!r}") from None
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            raise ValueError(f"lengths: expected a sequence of ints, got {lengths!r}")
        result = torch.tensor([int(v) for v in values], dtype=torch.int64)  # type: ignore[call-overload]
    if result.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},), got {tuple(result.shape)}")
    low, high = int(result.min()), int(result.max())
    if low < 1 or high > steps:
        raise ValueError(
            f"lengths: expected every length in 1..{steps}, got values in {low}..{high}"
        )
    return result


def _valid_mask(
    lengths: Lengths | None, batch: int, steps: int, device: torch.device
) -> Tensor | None:
    if lengths is None:
        return None
    checked = check_lengths(lengths, batch, steps)
    if int(checked.min()) == steps:
        return None  # every row is full length: the plain loop is exact and cheaper
    positions = torch.arange(steps)  # (T,)
    return (positions[None, :] < checked[:, None]).to(device)  # (B, T)


def _expand(rows: Tensor, like: Tensor) -> Tensor:
    return rows.view(rows.shape[0], *([1] * (like.dim() - 1)))


def check_inputs(cell: object, inputs: Tensor) -> tuple[int, int]:
    """Validate a ``(B, T, I)`` batch for ``cell`` (or a stack with ``input_size``); return (B, T)."""
    if not isinstance(inputs, Tensor):
        raise ValueError(f"inputs: expected a tensor (B, T, I), got {type(inputs).__name__}")
    input_size = getattr(cell, "input_size", None)
    expected = f"(B, T, {input_size})" if input_size is not None else "(B, T, I)"
    if inputs.dim() != 3:
        raise ValueError(f"inputs: expected {expected}, got {inputs.dim()}-D {tuple(inputs.shape)}")
    if input_size is not None and inputs.shape[2] != input_size:
        raise ValueError(
            f"inputs: expected {expected}, got {tuple(inputs.shape)} "
            f"(feature size {inputs.shape[2]} != input_size {input_size})"
        )
    if not inputs.dtype.is_floating_point:
        raise ValueError(f"inputs: expected a floating-point tensor, got dtype {inputs.dtype}")
    parameter = next(cell.parameters(), None) if isinstance(cell, nn.Module) else None
    if parameter is not None and parameter.dtype != inputs.dtype:
        raise ValueError(
            f"inputs: expected dtype {parameter.dtype} like the parameters, got {inputs.dtype}"
        )
    batch, steps = inputs.shape[0], inputs.shape[1]
    if batch < 1 or steps < 1:
        raise ValueError(
            f"inputs: expected at least one row and one step, got {tuple(inputs.shape)}"
        )
    return batch, steps
