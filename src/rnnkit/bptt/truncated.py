"""Truncated BPTT: TBPTT(k1, k2) of Williams & Peng, and state carried across batches.

Full BPTT over a sequence of T steps keeps the whole graph (memory ∝ T) and updates
the weights once. Williams & Peng (1990, "An efficient gradient-based algorithm for
on-line training of recurrent network trajectories") instead advance k1 steps at a
time and, after each advance, backpropagate through the last k2 ≥ k1 steps only::

    for each boundary t = k1, 2·k1, …, T (the last advance may be shorter):
        forward from the state at t − k2 (detached: nothing flows back past it)
        loss over the outputs of the steps t − k1 … t − 1 (each counted once)
        backward through the steps t − k2 … t − 1, then (typically) update

A shorter last advance of a < k1 steps keeps the same k2 − k1 steps of extra
history, so its window is a + k2 − k1 steps long; with k1 = k2 the last chunk is
simply the a steps left, as in chunked BPTT.

k1 = k2 = k is the common case: consecutive chunks of k steps, the state carried
from one chunk into the next with its history detached. With k2 > k1 the windows
overlap, so the forward over the overlap is recomputed (k2/k1 forwards per step),
which is what keeps memory bounded by k2 rather than by T.

:func:`truncated_bptt` runs this schedule over one batch of sequences;
:class:`StatefulStream` carries the state from one batch to the next in order
(language-model training over a long text cut into consecutive batches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from rnnkit.state import detach_state


class SequenceModel(Protocol):
    """What TBPTT drives: ``model(inputs (B, T, ...), state) -> (outputs (B, T, ...), state)``.

    ``Recurrent`` is one; so is any model that threads a recurrent state through
    (``state=None`` meaning "start from the initial state").
    """

    def __call__(self, inputs: Tensor, state: Any = None) -> tuple[Tensor, Any]: ...


@dataclass(frozen=True)
class TBPTTConfig:
    """A truncation schedule.

    Attributes:
        k1: steps advanced between two backward passes; each step's output enters
            the loss of exactly one window.
        k2: steps backpropagated through, ``k2 ≥ k1`` (Williams & Peng's h ≥ h');
            ``None`` means ``k2 = k1``, plain chunked BPTT.
    """

    k1: int
    k2: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k1, bool) or not isinstance(self.k1, int) or self.k1 < 1:
            raise ValueError(f"k1: expected a positive int, got {self.k1!r}")
        if self.k2 is not None and (
            isinstance(self.k2, bool) or not isinstance(self.k2, int) or self.k2 < self.k1
        ):
            raise ValueError(
                f"k2: expected an int ≥ k1 = {self.k1} (backpropagate through at least "
                f"the steps just advanced), got {self.k2!r}"
            )

    @property
    def depth(self) -> int:
        """k2, the number of steps a backward pass goes through."""
        return self.k1 if self.k2 is None else self.k2


@dataclass(frozen=True)
class Window:
    """One backward pass of the schedule, in step indices of the batch.

    The forward runs over ``start … stop − 1`` from a detached state; the loss
    reads the outputs of ``loss_start … stop − 1``; ``carry`` is the step whose
    incoming state the next window starts from.
    """

    start: int
    loss_start: int
    stop: int
    carry: int


def windows(steps: int, config: TBPTTConfig) -> list[Window]:
    """The windows of TBPTT(k1, k2) over ``steps`` steps, in order."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    stops = [*range(config.k1, steps, config.k1), steps]
    loss_starts = [0, *stops[:-1]]
    history = config.depth - config.k1  # steps backpropagated through before the loss steps
    starts = [max(0, first - history) for first in loss_starts]
    carries = [*starts[1:], steps]
    return [Window(*parts) for parts in zip(starts, loss_starts, stops, carries, strict=True)]


@dataclass(frozen=True)
class TBPTTResult:
    """What :func:`truncated_bptt` did.

    Attributes:
        state: the state after the last step, detached: the next batch of a
            stream starts from it.
        losses: each window's loss value, in order.
        windows: the windows that ran.
    """

    state: Any
    losses: tuple[float, ...]
    windows: tuple[Window, ...]


LossFn = Callable[[Tensor, Window], Tensor]


def truncated_bptt(
    model: SequenceModel,
    inputs: Tensor,
    loss_fn: LossFn,
    config: TBPTTConfig,
    state: Any = None,
    after_backward: Callable[[Window, Tensor], None] | None = None,
) -> TBPTTResult:
    """Run TBPTT(k1, k2) over one batch, calling ``backward`` once per window.

    Gradients accumulate into the parameters' ``.grad`` as usual; pass
    ``after_backward`` to act after each window (an optimizer step and
    ``zero_grad``, as Williams & Peng update after every advance), or leave it out
    and step once at the end.

    Args:
        model: ``model(inputs, state) -> (outputs, state)`` over batch-first inputs.
        inputs: ``(B, T, ...)``, every row a full-length stream (no padding: a
            window cuts every row at the same steps).
        loss_fn: ``loss_fn(outputs, window)`` → scalar, where ``outputs`` are the
            model's outputs for the window's loss steps, ``(B, stop − loss_start, ...)``.
            Targets are sliced by the caller with ``window.loss_start:window.stop``.
        config: k1 and k2.
        state: the state before step 0 (``None``: the model's initial state). It is
            detached: no gradient flows into an earlier batch.
        after_backward: ``after_backward(window, loss)``, called after each backward.

    Returns:
        the detached final state, the per-window losses and the windows.
    """
    if inputs.dim() < 2:
        raise ValueError(f"inputs: expected (B, T, ...), got shape {tuple(inputs.shape)}")
    plan = windows(inputs.shape[1], config)
    state = None if state is None else detach_state(state)
    losses = []
    for window in plan:
        outputs, carried = _forward_window(model, inputs, state, window)
        loss = loss_fn(outputs[:, window.loss_start - window.start :], window)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn: expected a scalar, got shape {tuple(loss.shape)}")
        loss.backward()  # type: ignore[no-untyped-call]
        losses.append(float(loss.detach()))
        if after_backward is not None:
            after_backward(window, loss.detach())
        state = carried
    return TBPTTResult(state, tuple(losses), tuple(plan))


def _forward_window(
    model: SequenceModel, inputs: Tensor, state: Any, window: Window
) -> tuple[Tensor, Any]:
    """Outputs over the window, and the detached state at ``window.carry``.

    The forward is split at ``carry`` (gradients still flow across the split, it
    is one graph) so the next window's starting state comes out of this pass
    without a second forward.
    """
    if window.carry == window.stop:
        outputs, final = model(inputs[:, window.start : window.stop], state)
        return outputs, detach_state(final)
    if window.carry == window.start:  # k2 ≥ 2·k1 near the beginning: the same start again
        outputs, _ = model(inputs[:, window.start : window.stop], state)
        return outputs, state
    first, middle = model(inputs[:, window.start : window.carry], state)
    rest, _ = model(inputs[:, window.carry : window.stop], middle)
    return torch.cat([first, rest], dim=1), detach_state(middle)


class StatefulStream:
    """Carries a model's state across consecutive batches of one long stream.

    For language-model training over a text cut into ``B`` parallel streams and
    consecutive batches of ``k`` steps (char-rnn, the PTB recipe): batch ``n + 1``
    continues exactly where batch ``n`` stopped, so its initial state is batch
    ``n``'s final state, detached (truncation at the batch boundary). ::

        stream = StatefulStream()
        for epoch in range(epochs):
            stream.reset()                       # a new pass over the text
            for inputs, targets in batches:      # in order
                outputs, _ = stream(model, inputs)
                loss = ...; loss.backward(); optimizer.step()

    ``reset()`` starts from the model's initial state again: at epoch start, and
    whenever the streams are not continuous (a new document, shuffled data).
    """

    def __init__(self) -> None:
        self._state: Any = None
        self.batches = 0  # batches run since the last reset

    @property
    def state(self) -> Any:
        """The detached state the next batch starts from (``None`` right after a reset)."""
        return self._state

    def reset(self) -> None:
        """Forget the carried state: the next batch starts from the initial state."""
        self._state = None
        self.batches = 0

    def carry(self, state: Any) -> None:
        """Remember ``state`` (detached) for the next batch."""
        self._state = detach_state(state)
        self.batches += 1

    def __call__(self, model: SequenceModel, inputs: Tensor) -> tuple[Tensor, Any]:
        """Run ``model`` on the next batch from the carried state, and carry its final state."""
        self._check_batch(inputs)
        outputs, final = model(inputs, self._state)
        self.carry(final)
        return outputs, final

    def truncated(
        self,
        model: SequenceModel,
        inputs: Tensor,
        loss_fn: LossFn,
        config: TBPTTConfig,
        after_backward: Callable[[Window, Tensor], None] | None = None,
    ) -> TBPTTResult:
        """:func:`truncated_bptt` over the next batch, from and into the carried state."""
        self._check_batch(inputs)
        result = truncated_bptt(model, inputs, loss_fn, config, self._state, after_backward)
        self._state = result.state
        self.batches += 1
        return result

    def _check_batch(self, inputs: Tensor) -> None:
        if self._state is None or inputs.dim() < 1:
            return
        carried = next(iter(self._state)).shape[-2]  # fields are (…, B, H)
        if inputs.shape[0] != carried:
            raise ValueError(
                f"inputs: a batch of {inputs.shape[0]} rows, but the carried state has "
                f"{carried}; consecutive batches of a stream keep B fixed (call reset() "
                "to start over)"
            )
