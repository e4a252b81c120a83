"""Named recurrent state types and the few functions that act on any of them.

A state is a ``NamedTuple`` whose fields are tensors of the same leading shape:
``(B, H)`` for one cell, ``(L·D, B, H)`` when a :class:`~rnnkit.Recurrent` stack
returns its final state (``L`` layers, ``D`` directions, torch.nn's order). Code
reads ``state.h`` and ``state.c``, never ``state[0]``; the helpers below keep the
state's type, so a cell's ``LSTMState`` stays an ``LSTMState`` through masking,
detaching and stacking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import torch
from torch import Tensor


class HiddenState(NamedTuple):
    """The state of an Elman RNN or a GRU: the hidden vector alone.

    Attributes:
        h: hidden state h_t, ``(B, H)`` for a cell, ``(L·D, B, H)`` for a stack.
    """

    h: Tensor


class LSTMState(NamedTuple):
    """The state of an LSTM: hidden vector and memory cell.

    Attributes:
        h: hidden state h_t (the cell's output), ``(B, H)`` or ``(L·D, B, H)``.
        c: memory cell c_t, same shape as ``h``.
    """

    h: Tensor
    c: Tensor


# Any NamedTuple of tensors is a state; user-defined cells bring their own types.
State = TypeVar("State", bound=tuple[Tensor, ...])


def map_state(fn: Callable[[Tensor], Tensor], state: State) -> State:
    """Apply ``fn`` to every field of ``state`` and return a state of the same type."""
    return _rebuild(state, [fn(field) for field in state])


def detach_state(state: State) -> State:
    """Cut the autograd graph behind ``state``: truncated BPTT's carry between chunks."""
    return map_state(Tensor.detach, state)


def where_state(rows: Tensor, new: State, old: State) -> State:
    """Per-row choice between two states: ``new`` where ``rows`` is true, else ``old``.

    Args:
        rows: boolean ``(B,)``, broadcast over every other dimension of each field.
    """
    return _rebuild(
        new,
        [
            torch.where(rows.view(-1, *([1] * (n.dim() - 1))), n, o)
            for n, o in zip(new, old, strict=True)
        ],
    )


def stack_states(states: Sequence[State]) -> State:
    """Stack per-(layer, direction) states ``(B, H)`` into one ``(L·D, B, H)`` state."""
    if not states:
        raise ValueError("stack_states: expected at least one state, got an empty sequence")
    first = states[0]
    return _rebuild(first, [torch.stack(fields) for fields in zip(*states, strict=True)])


def unstack_state(state: State) -> list[State]:
    """Split an ``(L·D, B, H)`` state into its ``L·D`` per-cell ``(B, H)`` states."""
    count = state[0].shape[0]
    return [_rebuild(state, [field[i] for field in state]) for i in range(count)]


def _rebuild(like: State, fields: list[Tensor]) -> State:
    # NamedTuples take their fields positionally; a plain tuple takes one iterable.
    kind: Any = type(like)
    if kind is tuple:
        return cast(State, tuple(fields))
    return cast(State, kind(*fields))


def describe_state(state: object) -> str:
    """A short human description of a state, for error messages."""
    if isinstance(state, tuple):
        name = type(state).__name__
        fields = getattr(state, "_fields", None)
        parts = []
        for i, value in enumerate(state):
            label = fields[i] if fields else str(i)
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            parts.append(f"{label}={shape}")
        return f"{name}({', '.join(parts)})"
    if isinstance(state, Tensor):
        return f"Tensor{tuple(state.shape)}"
    return type(state).__name__


def check_state_like(state: object, reference: tuple[Tensor, ...], what: str = "state") -> None:
    """Raise ValueError unless ``state`` has the type, field shapes and dtypes of ``reference``."""
    expected = describe_state(reference)
    if type(state) is not type(reference):
        raise ValueError(f"{what}: expected {expected}, got {describe_state(state)}")
    assert isinstance(state, tuple)  # narrowed by the type check above
    for field, ref in zip(state, reference, strict=True):
        if not isinstance(field, Tensor) or field.shape != ref.shape:
            raise ValueError(f"{what}: expected {expected}, got {describe_state(state)}")
        if field.dtype != ref.dtype:
            raise ValueError(
                f"{what}: expected dtype {ref.dtype} like the inputs, got {field.dtype}"
            )
        if field.device != ref.device:
            raise ValueError(
                f"{what}: expected device {ref.device} like the inputs, got {field.device}"
            )
