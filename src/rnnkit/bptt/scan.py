"""The ``"scan"`` backend: the minimal cells trained by a scan over time, BPTT by hand.

A minimal cell (:mod:`rnnkit.cells.minimal`) steps h_t = a_t ⊙ h_{t−1} + b_t with
(a_t, b_t) computed from x_t alone. One direction of one layer therefore runs as:

1. **Every step's projections at once**: P = U·x for all B·T rows, one matrix
   multiply on the batch-first input as it comes (no transpose).
2. **One pass of gates and recurrence** (``scan.cpp``, :func:`minimal_layer`):
   each of the B·H (row, unit) pairs is an independent linear recurrence; threads
   take blocks of units of one row and walk them through the row's own length,
   left to right or (a reversed direction) right to left over the row's valid
   part, vectorised along the units. Outputs past a row's length are zero, and the
   state holds there.
3. **The backward** (derived in ``docs/bptt.md``, "The minimal cells") is one
   reverse pass, δ_t = ∂L/∂h_t + a_{t+1} ⊙ δ_{t+1}, giving ∂L/∂K_t (K = P + b) from
   δ_t, h_{t−1} and the recomputed gates, ∂L/∂h_0 = a_0 ⊙ δ_0 and ∂L/∂b; then
   ∂L/∂x = ∂L/∂K·U and ∂L/∂U = ∂L/∂Kᵀ·x are one matrix multiply each. It saves x,
   P and the outputs Y, no graph: less than the fused GRU keeps (its gates,
   candidate and outputs).

Elsewhere (CUDA, bfloat16, no compiler, ``RNNKIT_COMPILED_LOOPS=0``) the layer runs
in autograd ops: the cell's own :meth:`~rnnkit.cells.MinimalCell.gates` on all
steps, then :class:`LinearScan`, whose forward and backward are
:func:`scan_steps`, the scan as ⌈log₂ T⌉ whole-tensor steps (Hillis and Steele's
doubling, composing the (a, b) maps), which a GPU runs in parallel. Neither path
forms a cumulative product of the a_t to divide by, so neither underflows however
long T is (the paper's log-space scan exists to avoid exactly that; see
:mod:`rnnkit.cells.minimal`).

Higher derivatives: a backward asked to build a graph (``create_graph=True``)
replays the layer in the autograd ops above and differentiates that.

``torch.compile``: the compiled layer is the ``torch.library`` custom op
``rnnkit::minimal_layer`` (:func:`minimal_layer`; its backward,
``rnnkit::minimal_layer_backward``, is one too), with fake kernels and its autograd
registered, and the lengths stay a tensor, read by the op when it runs; the
autograd-ops path traces as it is (the :class:`LinearScan` Function included). So
``torch.compile(model, fullgraph=True)`` runs a scan stack, either path, any layers,
directions and lengths, training or no-grad, without a graph break. Which path a
graph runs is fixed when it is traced (:func:`_compiled_scan`, a constant to
dynamo). Eager calls run the same kernel and formula (:class:`rnnkit.bptt.ops.Op`).

:class:`ScanBatch` is the backend's runner for :class:`~rnnkit.Recurrent`, whose one
loop runs the layers and directions (dropout between layers included).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.bptt import compiled
from rnnkit.bptt.ops import Op, asked, fake_grads, or_empty
from rnnkit.cells import MinGRUCell, MinimalCell, MinLSTMCell
from rnnkit.projection import project, project_back, weight_grad
from rnnkit.state import HiddenState


def scan_supported(cells: Sequence[nn.Module]) -> str:
    """Why the scan backend cannot run this stack, or ``""`` when it can.

    It runs rnnkit's minimal cells (:class:`~rnnkit.cells.MinGRUCell`,
    :class:`~rnnkit.cells.MinLSTMCell`), any form, all of one type, bias and form,
    on one dtype and device.
    """
    kinds = {type(cell) for cell in cells}
    if len(kinds) != 1:
        return f"the stack mixes cell types {sorted(k.__name__ for k in kinds)}"
    kind = next(iter(kinds))
    if not issubclass(kind, MinimalCell) or kind is MinimalCell:
        return f"{kind.__name__} is not a minimal cell (minGRU or minLSTM)"
    minimal = [cell for cell in cells if isinstance(cell, MinimalCell)]
    if len({(cell.bias, cell.form) for cell in minimal}) != 1:
        return "the cells disagree on bias or form"
    params = [p for cell in cells for p in cell.parameters()]
    if len({p.dtype for p in params}) != 1 or len({p.device for p in params}) != 1:
        return "the cells' parameters are spread over several dtypes or devices"
    return ""


def scan_steps(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t ⊙ h_{t−1} + b_t for all t, as ⌈log₂ T⌉ whole-tensor steps.

    ``a``, ``b``: ``(T, ...)``; ``h0``: ``(...)``. Element t holds, after the step of
    offset k, the composition of the maps t−2k+1 … t (Hillis and Steele 1986); h0
    is folded into the first map, so the last step leaves h_t. Out of place, so
    autograd can differentiate it (double backward). The same numbers as the
    sequential loop up to rounding (another order of the same products).
    """
    steps = a.shape[0]
    if steps == 0:
        return b.clone()
    b = torch.cat([(a[0] * h0 + b[0])[None], b[1:]])  # (T, ...)
    offset = 1
    while offset < steps:
        b = torch.cat([b[:offset], torch.addcmul(b[offset:], a[offset:], b[:-offset])])
        if offset * 2 < steps:  # the last step's products would not be read
            a = torch.cat([a[:offset], a[offset:] * a[:-offset]])
        offset *= 2
    return b


def _backward_steps(g: Tensor, a: Tensor, h: Tensor, h0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The backward recursion by :func:`scan_steps`, right to left: (∂L/∂a, ∂L/∂b, ∂L/∂h0)."""
    a_next = torch.cat([a[1:], torch.zeros_like(a[:1])])  # a_{t+1}; δ_T = 0 makes a_T moot
    delta = scan_steps(a_next.flip(0), g.flip(0), torch.zeros_like(h0)).flip(0)  # δ_t
    h_prev = torch.cat([h0[None], h[:-1]])  # h_{t−1}
    return delta * h_prev, delta, a[0] * delta[0]


class LinearScan(torch.autograd.Function):
    """h = scan(a, b, h0) with h_t = a_t ⊙ h_{t−1} + b_t: ``(T, N)``, ``(T, N)``, ``(N,)`` → ``(T, N)``.

    The scan alone, by :func:`scan_steps` both ways: the Python path of the backend
    (no compiled library, CUDA, bfloat16), with autograd differentiating the
    coefficients around it. Its backward is the reverse recursion, so it saves only
    a and h.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        h = scan_steps(a, b, h0)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, h, h0 = ctx.saved_tensors
        return _backward_steps(grad_h, a, h, h0)  # autograd ops: differentiable again


_KINDS = {"MinGRUCell": 0, "MinLSTMCell": 1}  # scan.cpp's Kind
_CELLS: dict[int, type[MinimalCell]] = {0: MinGRUCell, 1: MinLSTMCell}


def _row_lengths(lengths: Tensor | None) -> list[int]:
    """Each row's length as scan.cpp reads it (empty: every row runs all T steps)."""
    return [] if lengths is None else [int(n) for n in lengths.tolist()]


def _minimal_kernel(
    x: Tensor,
    h0: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    lengths: Tensor | None,
    kind: int,
    log_form: bool,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """One minimal-cell layer, one direction, compiled (``scan.cpp``): the op
    ``rnnkit::minimal_layer``.

    ``x`` ``(B, T, I)`` batch-first, ``h0`` ``(B, H)``, ``lengths`` each row's length
    (an int64 CPU tensor, ``None``: all T), ``kind`` scan.cpp's (0 minGRU, 1 minLSTM),
    ``reverse``: right to left over each row's valid part → (Y ``(B, T, H)``, final
    ``(B, H)``, P ``(B, T, G·H)``), P = U·x being what the backward reads (not
    differentiable). See the module docstring for the passes.
    """
    ops = compiled.loops_for(x)
    assert ops is not None, "rnnkit::minimal_layer runs where the compiled loops do"
    batch, steps = x.shape[0], x.shape[1]
    P = project(x.reshape(batch * steps, -1), weight).view(batch, steps, -1)
    Y, final = ops.minimal_forward(
        P, bias, h0.contiguous(), _row_lengths(lengths), kind, log_form, reverse
    )
    return Y, final, P


minimal_layer = torch.library.custom_op("rnnkit::minimal_layer", _minimal_kernel, mutates_args=())


@minimal_layer.register_fake
def _(
    x: Tensor,
    h0: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    lengths: Tensor | None,
    kind: int,
    log_form: bool,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    batch, steps, H = x.shape[0], x.shape[1], h0.shape[1]
    return (
        x.new_empty(batch, steps, H),
        x.new_empty(batch, H),
        x.new_empty(batch, steps, weight.shape[0]),
    )


def _minimal_backward_kernel(
    grad_Y: Tensor | None,
    grad_final: Tensor | None,
    x: Tensor,
    h0: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    P: Tensor,
    Y: Tensor,
    lengths: Tensor | None,
    kind: int,
    log_form: bool,
    reverse: bool,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """∂L/∂ of :func:`minimal_layer`'s (x, h0, weight, bias) from ∂L/∂(Y, final).

    ``needs`` says which of the four are wanted; the others come back empty.
    """
    ops = compiled.loops_for(x)
    assert ops is not None, "rnnkit::minimal_layer_backward runs where the compiled loops do"
    g = torch.zeros_like(Y) if grad_Y is None else grad_Y.contiguous()
    final = None if grad_final is None else grad_final.contiguous()
    dK, dh0, db = ops.minimal_backward(
        g, final, P, bias, Y, h0.contiguous(), _row_lengths(lengths), kind, log_form, reverse
    )
    dK2 = dK.view(-1, dK.shape[-1])  # (B·T, G·H)
    dx = project_back(dK2, weight).view(x.shape) if needs[0] else None
    dW = weight_grad(dK2, x.reshape(-1, x.shape[-1])) if needs[2] else None
    return tuple(or_empty(Y, (dx, dh0, dW, db), needs))  # type: ignore[return-value]


minimal_layer_backward = torch.library.custom_op(
    "rnnkit::minimal_layer_backward", _minimal_backward_kernel, mutates_args=()
)


@minimal_layer_backward.register_fake
def _(
    grad_Y: Tensor | None,
    grad_final: Tensor | None,
    x: Tensor,
    h0: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    P: Tensor,
    Y: Tensor,
    lengths: Tensor | None,
    kind: int,
    log_form: bool,
    reverse: bool,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    shapes = (x.shape, h0.shape, weight.shape, (weight.shape[0],))
    return tuple(fake_grads(Y, shapes, needs))  # type: ignore[return-value]


def _setup_minimal(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, h0, weight, bias, lengths, kind, log_form, reverse = inputs
    Y, _, P = output
    ctx.save_for_backward(x, h0, weight, bias, P, Y, lengths)
    ctx.kind, ctx.log_form, ctx.reverse = kind, log_form, reverse
    ctx.mark_non_differentiable(P)
    ctx.set_materialize_grads(False)


def _backward_minimal(
    ctx: Any,
    grad_Y: Tensor | None,
    grad_final: Tensor | None,
    *_: Any,
    backward: Any = minimal_layer_backward,
) -> tuple[Any, ...]:
    """The autograd formula of :func:`minimal_layer`: ``backward`` is the op, or its kernel."""
    x, h0, weight, bias, P, Y, lengths = ctx.saved_tensors
    needs = tuple(ctx.needs_input_grad[:4])
    if torch.is_grad_enabled():  # create_graph=True: differentiate a replay in autograd ops
        grads = _replay(ctx, (x, h0, weight, bias), lengths, grad_Y, grad_final)
    else:
        grads = asked(
            backward(
                grad_Y, grad_final, x, h0, weight, bias, P, Y, lengths,
                ctx.kind, ctx.log_form, ctx.reverse, needs,
            ),
            needs,
        )  # fmt: skip
    return (*grads, None, None, None, None)


minimal_layer.register_autograd(_backward_minimal, setup_context=_setup_minimal)
_MINIMAL = Op(
    minimal_layer,
    _minimal_kernel,
    _setup_minimal,
    partial(_backward_minimal, backward=_minimal_backward_kernel),
)


def _python_layer(
    cell: MinimalCell, x: Tensor, h0: Tensor, weight: Tensor, bias: Tensor | None,
    lengths: Tensor | None, reverse: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The layer in autograd ops: the cell's own gates, then :class:`LinearScan`.

    Batch-first in and out, as :func:`minimal_layer`; time-major inside (the scan
    runs over the first dimension). A reversed direction reads each row's valid
    part backwards through an index, and writes its outputs back the same way.
    ``lengths`` (int64 ``(B,)``, ``None`` when all are T) mask the steps past each
    row's end; all-T lengths mask nothing, as under ``torch.compile``, where the
    stack keeps them without looking at them.
    """
    batch, steps = x.shape[0], x.shape[1]
    index = valid = None
    if reverse or lengths is not None:
        full = torch.full((batch,), steps) if lengths is None else lengths
        full = full.to(x.device)
        t = torch.arange(steps, device=x.device)[None, :]  # (1, T)
        valid = t < full[:, None]  # (B, T)
        if reverse:  # step t reads step len − 1 − t; padding maps to itself
            index = torch.where(valid, full[:, None] - 1 - t, t)  # (B, T)
            x = x.gather(1, index[..., None].expand(-1, -1, x.shape[2]))
    pre = torch.nn.functional.linear(x.transpose(0, 1), weight, bias)  # (T, B, G·H)
    a, b = cell.gates(pre)  # (T, B, H) each
    if valid is not None and lengths is not None:  # a = 1, b = 0 past a row's end
        past = ~valid.t()[..., None]  # (T, B, 1)
        a, b = a.masked_fill(past, 1.0), b.masked_fill(past, 0.0)
    flat = LinearScan.apply(  # type: ignore[no-untyped-call]
        a.reshape(steps, -1).contiguous(), b.reshape(steps, -1).contiguous(), h0.reshape(-1)
    )
    Y = flat.view(a.shape).transpose(0, 1)  # (B, T, H)
    final = Y[:, -1].clone()  # not a view: it would keep all of Y alive
    if valid is not None and lengths is not None:  # the state holds; outputs are zero
        Y = Y.masked_fill(~valid[..., None], 0.0)
    if index is not None:
        Y = Y.gather(1, index[..., None].expand(-1, -1, Y.shape[2]))
    return Y, final


def _replay(
    ctx: Any,
    inputs: tuple[Tensor | None, ...],
    lengths: Tensor | None,
    grad_Y: Tensor | None,
    grad_final: Tensor | None,
) -> tuple[Tensor | None, ...]:
    """The backward of :func:`minimal_layer` as a graph, for ``create_graph=True``: the
    layer replayed in autograd ops (:func:`_python_layer`) from the saved inputs, which
    keep their own graph, and differentiated with ``create_graph=True``. The gates
    come from a stand-in cell of the layer's kind and form (they read no parameter)."""
    x, h0, weight, bias = inputs
    assert x is not None and h0 is not None and weight is not None
    cell = _CELLS[ctx.kind](1, 1, form="log" if ctx.log_form else "plain")
    Y, final = _python_layer(cell, x, h0, weight, bias, lengths, ctx.reverse)
    pairs = [(o, g) for o, g in ((Y, grad_Y), (final, grad_final)) if g is not None]
    needs = ctx.needs_input_grad[:4]
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need and t is not None]
    found = iter(
        torch.autograd.grad(
            [o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True,
            allow_unused=True,
        )
    )  # fmt: skip
    return tuple(
        next(found) if need and t is not None else None
        for t, need in zip(inputs, needs, strict=True)
    )


def _compiled_scan(device_type: str, dtype: torch.dtype) -> bool:
    """Whether :func:`minimal_layer` runs here: the compiled loops, built with scan.cpp.

    A constant to ``torch.compile`` (dynamo cannot trace the lazy build): the path a
    graph was compiled for stays its path.
    """
    if device_type != "cpu":
        return False
    ops = compiled.loops_for(torch.empty(0, dtype=dtype))
    return ops is not None and hasattr(ops, "minimal_forward")


# What torch.compiler.assume_constant_result does, without its import: that decorator
# imports torch._dynamo, a second or more of start-up for every command (`rnnkit
# generate` and `predict` never compile). tests/bptt/test_compile.py holds the mark
# to its meaning (a fullgraph compile of the scan backend), tests/test_init.py the
# import to staying light.
_compiled_scan._dynamo_marked_constant = True  # type: ignore[attr-defined]


class ScanBatch:
    """The scan backend's :class:`~rnnkit.recurrent.DirectionRunner`: batch-first, as it comes.

    Nothing is sorted or transposed: each direction of each layer is one
    :func:`minimal_layer` call (or :func:`_python_layer` off the compiled path) on
    ``(B, T, ·)``, with each row's length, and outputs come back ``(B, T, H)`` in the
    caller's row order.
    """

    __slots__ = ("inputs", "lengths", "state")

    def __init__(self, inputs: Tensor, state: Any, lengths: Tensor | None) -> None:
        """``inputs (B, T, I)``; ``lengths``: validated CPU int64 ``(B,)``, ``None`` when full."""
        self.inputs = inputs
        self.state = state
        self.lengths = lengths

    def direction(
        self, cell: nn.Module, x: Tensor, state: HiddenState, reverse: bool
    ) -> tuple[Tensor, HiddenState]:
        """One direction of one layer: x ``(B, T, ·)`` → (outputs ``(B, T, H)``, final ``(B, H)``).

        Under autocast the layer runs in its parameters' dtype with autocast off,
        as the fused backend's layers do.
        """
        assert isinstance(cell, MinimalCell)
        weight, bias = cell.weight_ih, cell.bias_ih
        if torch.is_autocast_enabled(x.device.type):
            dtype = weight.dtype
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self.direction(cell, x.to(dtype), HiddenState(state.h.to(dtype)), reverse)
        kind = _KINDS.get(type(cell).__name__)
        if kind is not None and _compiled_scan(x.device.type, x.dtype):
            log_form = cell.form == "log"
            Y, final, _ = _MINIMAL(x, state.h, weight, bias, self.lengths, kind, log_form, reverse)
        else:
            Y, final = _python_layer(cell, x, state.h, weight, bias, self.lengths, reverse)
        return Y, HiddenState(final)

    def locked(self, mask: Tensor) -> Tensor:
        """A per-row mask ``(B, F)`` → ``(B, 1, F)`` over this batch-first layout."""
        return mask[:, None]

    def finish(self, outputs: Tensor, final: Any) -> tuple[Tensor, Any]:
        return outputs, final
