"""The ``"fused"`` backend: one custom op per cell type, with BPTT written by hand.

Autograd differentiates the explicit loop of :func:`rnnkit.unroll` one small
operation at a time: every step records a dozen nodes, and the backward pass
replays them, including one small matrix multiply per step for each of ∂L/∂U,
∂L/∂W and ∂L/∂x. The ops here instead run the recurrence themselves and
differentiate it with the BPTT recursion derived in ``docs/bptt.md``:

* **Outside the loops**, everything that does not depend on the previous step is
  one large operation: the input projections U·x_t + b of all T steps are one
  matrix multiply before the forward loop; the activation derivatives of all
  steps are computed at once before the backward loop; and after it, ∂L/∂U,
  ∂L/∂W, ∂L/∂b and ∂L/∂x are each one matrix multiply (or sum) over all T·B rows.
* **Inside the loops** only what truly depends on the previous step is left: the
  ``W·h_{t−1}`` product and a few fused elementwise operations, written into
  slices of preallocated buffers (no lists, no stacking). Per step:

  ======  ===================================  ===================================
  cell    forward                              backward
  ======  ===================================  ===================================
  RNN     addmm_, tanh_ (2)                    addmm, mul_ (2)
  LSTM    addmm_, sigmoid_, mul, addcmul_,     addmm_, addcmul, mul_, mul_, mul (5)
          sub_, tanh, mul (7)
  GRU     addmm_, sigmoid_, addcmul_, tanh_,   addcmul_, addmm_, mul_ (3)
          lerp (5)
  ======  ===================================  ===================================

That table is the Python loops. Where a C++ compiler is available, the loops run
compiled instead (``loops.cpp``, built on first use by :mod:`rnnkit.bptt.compiled`):
each step is then one matrix multiply and one pass doing all of the step's
elementwise work, and the backward adds its weight-gradient terms chunk by chunk
(``docs/bptt.md``, "The compiled loops"). Both read and write the same buffers and
are tested against each other.

The per-step matrix multiply is what decided the LSTM's speed against torch.nn.
Through ``at::addmm`` every step handed the recurrent matrix to MKL, which
re-packed all of it (H × 4H) at every call, and on AMD CPUs MKL runs its generic
kernels while torch.nn's LSTM runs oneDNN's AVX-512 ones: on the CI machine kind
the fused LSTM trained at 0.90–0.95× torch.nn at configs (a) and (b). The
compiled loops now prepare the matrix once per loop and run every step on it:
oneDNN's reordered weight with the addend fused in for large float32 steps, MKL's
packed GEMM for the others, ``at::addmm`` for float64 and ragged steps (``loops.cpp``,
``StepProduct``; ``docs/bptt.md`` has the measurements, including the hypotheses
that did not pan out: the gradient chunks, the weight layout, per-thread blocks).

Precision under autocast (``--precision bf16``): :func:`_run_cell` casts the
layer's input and initial state to the parameters' dtype (float32) and runs the
op with autocast off, so everything here (the input projection, the
recurrence, the compiled loops, which run for float32, and the whole backward)
is float32; only the operations outside the recurrent layers run under autocast
(in bfloat16 where autocast casts them, the output layers' matrix multiplies for
instance). The outputs are float32 and the gradient
arriving from a bfloat16 consumer is cast back to float32 by autograd. A bfloat16
recurrence would round the carried state to 8 significant bits at every step; it
is not offered (not measured faster and accurate enough).

The ops take time-major inputs ``(T, B, I)`` whose batch is sorted by
length, longest first, and run left to right. Step t then updates only the first
``batch_sizes[t]`` rows (the rows whose sequences are still running), exactly as a
``PackedSequence`` does. :class:`FusedBatch` is the backend's runner for
:class:`~rnnkit.Recurrent`, whose one loop runs the layers and directions (dropout,
concatenation, final states): once per call, it sorts and transposes the batch
and builds the right-to-left index; per direction, it runs one op; at the
end, it undoes the sorting. All of that is ordinary differentiable tensor
operations around the ops.

Naming follows ``docs/bptt.md``: ``A``/``S`` = pre-activations, filled with U·x_t + b
for all steps before the loop and completed in place; ``Y`` = h_t for all steps
(the output); ``G`` = ∂L/∂h_t arriving from the outputs and, as the backward loop
runs, the total δ_t; ``dA`` = ∂L/∂(pre-activations) per step.

Higher derivatives: the hand-derived loops compute numbers, not a graph. When a
backward is asked to build one (``create_graph=True``, as a gradient penalty
needs), each op's formula instead replays its forward in plain autograd ops
(:func:`_replay`) and differentiates that, so second and higher derivatives are
exact; ordinary training never takes that path and pays nothing for it.

Custom ops and ``torch.compile``: each cell's forward and backward are
``torch.library`` custom ops, ``rnnkit::fused_rnn``, ``rnnkit::fused_lstm`` and
``rnnkit::fused_gru`` (:func:`fused_rnn`, …) and their ``*_backward`` ops, with fake
kernels giving their outputs' exact shapes and dtypes and the forward ops' autograd
registered (``setup_context`` + a formula that calls the backward op). No op
mutates an input: the buffers written in place (A, S, N, Y, the gradients) are
made inside them, and the ones the backward reads come back as extra,
non-differentiable outputs. ``batch_sizes`` is an int64 CPU tensor, never a tuple,
so nothing of a ragged batch's values reaches Python while dynamo traces; each op
reads it when it runs, and sizes that are all B (a batch passed with lengths that
are all T, as ``torch.compile`` leaves it) run the loops of a full batch. Which
loops run, compiled or Python, is also decided inside the op, when it runs.
``torch.compile(model, fullgraph=True)`` of a model holding a fused
:class:`~rnnkit.Recurrent` (RNN, LSTM, GRU; any layers and directions; with or
without lengths; training or no-grad; autocast included) therefore traces without a
graph break, each layer and direction one node of the graph, and computes eager's
numbers. In eager mode the same kernels and formulas run through a plain autograd
Function instead of the dispatcher (:class:`rnnkit.bptt.ops.Op`: the dispatcher's
Python path costs about 50 µs a call). Not compiled: double backward
(``create_graph=True``), which AOTAutograd does not support (eager mode replays, as
above), and ``torch.jit`` (it records the eager Function, as before).

Limits: the ops are device-agnostic, but only the CPU is measured and tested, and
on CUDA ``"auto"`` picks cuDNN instead.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.bptt import compiled
from rnnkit.bptt.ops import Op, asked, fake_grads, or_empty
from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.projection import project, project_back, weight_grad
from rnnkit.state import HiddenState, LSTMState, map_state

BatchSizes = tuple[int, ...] | None


# --------------------------------------------------------------------------- helpers


# Below this many steps the loops multiply by Wᵀ as a transposed view: copying W into
# a contiguous Wᵀ costs about as much as a few steps' products, which only a longer
# loop earns back (a decoder calling a stack at T = 1 paid the copy at every token).
# The compiled loops' own preparation of W follows the same count (loops.cpp,
# kPrepareSteps).
_SHORT_LOOP = 8


def _right_operand(w_hh: Tensor, steps: int) -> Tensor:
    """Wᵀ for the per-step products h_{t−1}·Wᵀ: contiguous for loops long enough to pay."""
    return w_hh.t() if steps < _SHORT_LOOP else w_hh.t().contiguous()


def _combined_bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    return None if b_ih is None or b_hh is None else b_ih + b_hh


def _padding_mask(batch_sizes: tuple[int, ...], batch: int, device: torch.device) -> Tensor:
    """(T, B, 1) bool, true where row b is past its length at step t."""
    sizes = torch.tensor(batch_sizes, device=device)  # (T,)
    rows = torch.arange(batch, device=device)  # (B,)
    return (rows[None, :] >= sizes[:, None])[:, :, None]


def _last_index(batch_sizes: tuple[int, ...], batch: int, device: torch.device) -> Tensor:
    """(B,) the step index of each (sorted) row's last valid step."""
    sizes = torch.tensor(batch_sizes, device=device)  # (T,)
    rows = torch.arange(batch, device=device)  # (B,)
    return (rows[None, :] < sizes[:, None]).sum(0) - 1  # lengths − 1


def _take_last(buffer: Tensor, batch_sizes: BatchSizes) -> Tensor:
    """Each row's value at its last valid step: (T, B, H) → (B, H), a new tensor."""
    if batch_sizes is None:
        return buffer[-1].clone()
    batch = buffer.shape[1]
    last = _last_index(batch_sizes, batch, buffer.device)
    return buffer[last, torch.arange(batch, device=buffer.device)]


def _fold_final_grad(G: Tensor, grad_final: Tensor | None, batch_sizes: BatchSizes) -> None:
    """Add ∂L/∂(final h) into G at each row's last valid step, in place."""
    if grad_final is None:
        return
    if batch_sizes is None:
        G[-1] += grad_final
        return
    batch = G.shape[1]
    last = _last_index(batch_sizes, batch, G.device)
    G.index_put_((last, torch.arange(batch, device=G.device)), grad_final, accumulate=True)


def _one_minus_square(x: Tensor, *, out: Tensor | None = None) -> Tensor:
    """1 − x² in one pass (tanh′ from tanh's output)."""
    one = torch.ones((), dtype=x.dtype, device=x.device).expand_as(x)
    return torch.addcmul(one, x, x, value=-1.0, out=out)


def _output_grad(grad_Y: Tensor | None, like: Tensor, batch_sizes: BatchSizes) -> Tensor:
    """A private, contiguous copy of ∂L/∂Y with padded positions zeroed: G."""
    if grad_Y is None:
        return torch.zeros_like(like)
    G = grad_Y.clone(memory_format=torch.contiguous_format)  # (T, B, H); becomes δ_t
    if batch_sizes is not None:
        # Outputs at padding are constant zeros: whatever gradient arrives there is moot.
        G.masked_fill_(_padding_mask(batch_sizes, G.shape[1], G.device), 0.0)
    return G


def _loop_output_grads(
    grad_Y: Tensor | None, grad_h: Tensor | None, Y: Tensor, batch_sizes: BatchSizes
) -> tuple[Tensor, Tensor | None]:
    """(G, ∂L/∂h_final) as the compiled backward loops read them.

    Full-length batches pass ∂L/∂Y as it is, any strides, never copied (zeros as a
    stride-0 view when absent), with ∂L/∂h_final beside it. Ragged batches pass the
    masked copy of :func:`_output_grad` with ∂L/∂h_final folded in at each row's end.
    """
    if batch_sizes is None:
        G = (
            torch.zeros((), dtype=Y.dtype, device=Y.device).expand_as(Y)
            if grad_Y is None
            else grad_Y
        )
        return G, grad_h
    G = _output_grad(grad_Y, Y, batch_sizes)
    _fold_final_grad(G, grad_h, batch_sizes)
    return G, None


def _weight_grads(
    dA: Tensor, x: Tensor, h0: Tensor, Y: Tensor, w_ih: Tensor, needs: tuple[bool, ...]
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """∂L/∂x, ∂L/∂U, ∂L/∂W, ∂L/∂b from the pre-activation gradients of all steps.

    Each is one matrix multiply (or one sum) over all T·B rows: the per-step
    terms of the sum ∂L/∂W = Σ_t dA_tᵀ·h_{t−1} are never formed one by one.
    h_{t−1} is h0 for t = 0 and Y[t − 1] after, so ∂L/∂W is split in two
    products rather than copying [h0, Y[:-1]] into one tensor.
    ``needs`` = (x, U, W, b) from ``ctx.needs_input_grad``.
    """
    T, B, GH = dA.shape
    flat = dA.view(T * B, GH)  # (T·B, G·H)
    dx = project_back(flat, w_ih).view(T, B, -1) if needs[0] else None  # (T, B, I)
    dU = weight_grad(flat, x.reshape(T * B, -1)) if needs[1] else None  # (G·H, I)
    dW = None
    if needs[2]:
        dW = torch.mm(dA[0].t(), h0)  # (G·H, H)
        if T > 1:
            dW += weight_grad(flat[B:], Y[:-1].reshape((T - 1) * B, -1))
    db = flat.sum(0) if needs[3] else None  # (G·H,)
    return dx, dU, dW, db


def _check_batch_sizes(batch_sizes: BatchSizes, steps: int, batch: int) -> None:
    if batch_sizes is None:
        return
    if len(batch_sizes) != steps or batch_sizes[0] != batch:
        raise ValueError(
            f"batch_sizes: expected {steps} sizes starting at {batch}, got {batch_sizes}"
        )
    if (
        any(b < a for a, b in zip(batch_sizes[1:], batch_sizes, strict=False))
        or min(batch_sizes) < 0
    ):
        # Trailing zeros are fine: steps past the longest row, when T exceeds it.
        raise ValueError(f"batch_sizes: expected non-increasing sizes ≥ 0, got {batch_sizes}")


def _loop_sizes(batch_sizes: Tensor | None, steps: int, batch: int) -> BatchSizes:
    """The ops' ``batch_sizes`` tensor ``(T,)`` as the loops read it, checked.

    ``None`` when every row runs every step (the sizes are non-increasing, so the
    last one tells): a batch passed with lengths that are all T, as it is under
    ``torch.compile``, where the stack cannot look at the values, runs the loops of
    a full batch.
    """
    if batch_sizes is None:
        return None
    sizes = tuple(int(size) for size in batch_sizes.tolist())
    _check_batch_sizes(sizes, steps, batch)
    return None if sizes[-1] == batch else sizes


def _sizes_tensor(batch_sizes: BatchSizes) -> Tensor | None:
    """A tuple of batch sizes as the ops take them: an int64 CPU tensor ``(T,)``."""
    return None if batch_sizes is None else torch.tensor(batch_sizes, dtype=torch.int64)


# --------------------------------------------------------------------------- higher order


def _step(
    cell: str, x_t: Tensor, state: HiddenState | LSTMState, *params: Tensor | None
) -> HiddenState | LSTMState:
    """One step of ``cell`` (``"rnn"``, ``"rnn_relu"``, ``"lstm"``, ``"gru"``) in autograd ops.

    The equations of :mod:`rnnkit.cells`, on the op's own tensors (w_ih, w_hh,
    b_ih, b_hh in torch.nn's layout); returns the new state, of ``state``'s type.
    """
    w_ih, w_hh, b_ih, b_hh = params
    assert w_ih is not None and w_hh is not None
    a = F.linear(x_t, w_ih, b_ih)  # U·x_t + b_ih
    ah = F.linear(state.h, w_hh, b_hh)  # W·h_{t−1} + b_hh
    if isinstance(state, LSTMState):
        i, f, g, o = (a + ah).chunk(4, dim=1)
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
        return LSTMState(torch.sigmoid(o) * torch.tanh(c), c)
    if cell == "gru":
        x_r, x_z, x_n = a.chunk(3, dim=1)
        h_r, h_z, h_n = ah.chunk(3, dim=1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return HiddenState((1 - z) * n + z * state.h)
    return HiddenState(torch.relu(a + ah) if cell == "rnn_relu" else torch.tanh(a + ah))


def _replay(
    cell: str,
    x: Tensor,
    state: HiddenState | LSTMState,
    params: tuple[Tensor | None, ...],
    batch_sizes: BatchSizes,
) -> tuple[Tensor, HiddenState | LSTMState]:
    """An op's forward in plain autograd ops: (Y (T, B, H), final state).

    Same conventions as the ops: time-major, sorted longest first, step t
    updates the first ``batch_sizes[t]`` rows; the others keep their state (so the
    state after the loop is each row's final state) and output zeros.
    """
    T, B = x.shape[:2]
    outputs = []
    for t in range(T):
        b = B if batch_sizes is None else batch_sizes[t]
        running = map_state(operator.itemgetter(slice(0, b)), state)  # the first b rows
        new = _step(cell, x[t, :b], running, *params)
        outputs.append(F.pad(new.h, (0, 0, 0, B - b)))  # (B, H)
        # Rows b … B−1 have ended and keep their state.
        state = type(state)(*(torch.cat((n, old[b:])) for n, old in zip(new, state, strict=True)))
    return torch.stack(outputs), state


def _graph_backward(ctx: Any, cell: str, grads: tuple[Tensor | None, ...]) -> tuple[Any, ...]:
    """The backward of a fused op as a graph, for ``create_graph=True``.

    A gradient penalty differentiates the gradient itself, so the gradient must be
    made of differentiable operations on the op's inputs. The hand-derived
    loops write numbers into buffers; here the forward is replayed with autograd
    ops from the saved inputs (which keep their own graph) and differentiated with
    ``create_graph=True``: exact to every order, at the cost of the unrolled backend,
    and only when a graph is asked for. ``grads`` are ∂L/∂ of (Y, final h[, final c]).
    """
    # The ops save their inputs first (x, the state h[, c], w_ih, w_hh, b_ih, b_hh)
    # and their batch_sizes last.
    lstm = cell == "lstm"
    saved = ctx.saved_tensors
    inputs = saved[: 7 if lstm else 6]
    x, h0, *rest = inputs
    state: HiddenState | LSTMState = LSTMState(h0, rest.pop(0)) if lstm else HiddenState(h0)
    sizes = _loop_sizes(saved[-1], x.shape[0], x.shape[1])
    Y, final = _replay(cell, x, state, tuple(rest), sizes)
    pairs = [(out, g) for out, g in zip((Y, *final), grads, strict=True) if g is not None]
    needs = ctx.needs_input_grad
    wanted = [tensor for tensor, need in zip(inputs, needs, strict=False) if need]
    found = iter(
        torch.autograd.grad(
            [out for out, _ in pairs],
            wanted,
            [g for _, g in pairs],
            create_graph=True,
            allow_unused=True,
        )
    )
    return tuple(next(found) if need else None for need in needs)


# --------------------------------------------------------------------------- Elman RNN


def _rnn_kernel(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    batch_sizes: Tensor | None,
    relu: bool,
) -> tuple[Tensor, Tensor]:
    """Elman RNN over all steps, the op ``rnnkit::fused_rnn``: ``(Y (T, B, H), h_final (B, H))``.

    h_t = f(U·x_t + b_ih + W·h_{t−1} + b_hh), f = tanh or ReLU (``relu``); x
    ``(T, B, I)`` time-major, h0 ``(B, H)``, biases may be ``None``, ``batch_sizes``
    an int64 ``(T,)`` tensor (``None`` when full). Backward (``docs/bptt.md`` §RNN,
    :func:`fused_rnn_backward`): with D_t = f'(a_t) and δ_t = ∂L/∂h_t,
    dA_t = δ_t ⊙ D_t and δ_{t−1} = G_{t−1} + dA_t·W.
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    sizes = _loop_sizes(batch_sizes, T, B)
    # Y starts as U·x_t + b for every step; step t adds W·h_{t−1} in place, then f.
    Y = project(x.reshape(T * B, I), w_ih, _combined_bias(b_ih, b_hh)).view(T, B, H)
    loops = compiled.loops_for(x, h0, w_hh)
    if loops is not None:
        loops.rnn_forward(Y, h0, w_hh.t(), sizes or (), relu)  # the loops prepare W once
    else:
        FusedRNN._forward_loop(Y, h0, _right_operand(w_hh, T), sizes, relu)
    return Y, _take_last(Y, sizes)


fused_rnn = torch.library.custom_op("rnnkit::fused_rnn", _rnn_kernel, mutates_args=())


@fused_rnn.register_fake
def _(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    batch_sizes: Tensor | None,
    relu: bool,
) -> tuple[Tensor, Tensor]:
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    return x.new_empty(T, B, H), x.new_empty(B, H)


def _rnn_backward_kernel(
    grad_Y: Tensor | None,
    grad_h: Tensor | None,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    Y: Tensor,
    batch_sizes: Tensor | None,
    relu: bool,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """∂L/∂ of :func:`fused_rnn`'s (x, h0, w_ih, w_hh, b_ih, b_hh) from ∂L/∂(Y, h_final).

    ``needs`` says which of the six are wanted; the others come back empty.
    """
    T, B = Y.shape[0], Y.shape[1]
    sizes = _loop_sizes(batch_sizes, T, B)
    wanted = (needs[0], needs[2], needs[3], needs[4] or needs[5], needs[1])  # x, U, W, b, h0
    loops = compiled.loops_for(Y)
    if loops is not None:
        G, final = _loop_output_grads(grad_Y, grad_h, Y, sizes)
        dx, dU, dW, db, dh0 = loops.rnn_backward(
            G, final, Y, x, h0, w_ih, w_hh, sizes or (), relu, wanted, compiled.chunk
        )
    else:
        dA, das = FusedRNN._backward_loop(Y, grad_Y, grad_h, w_hh, sizes, relu)
        dx, dU, dW, db = _weight_grads(dA, x, h0, Y, w_ih, wanted)
        dh0 = torch.mm(das[0], w_hh)  # (B, H)
    # The same db for both biases, as separate tensors: .grad must never alias.
    db_hh = db.clone() if needs[4] and needs[5] and db is not None else db
    return tuple(or_empty(Y, (dx, dh0, dU, dW, db, db_hh), needs))  # type: ignore[return-value]


fused_rnn_backward = torch.library.custom_op(
    "rnnkit::fused_rnn_backward", _rnn_backward_kernel, mutates_args=()
)


@fused_rnn_backward.register_fake
def _(
    grad_Y: Tensor | None,
    grad_h: Tensor | None,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    Y: Tensor,
    batch_sizes: Tensor | None,
    relu: bool,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    bias = (w_ih.shape[0],)
    shapes = (x.shape, h0.shape, w_ih.shape, w_hh.shape, bias, bias)
    return tuple(fake_grads(Y, shapes, needs))  # type: ignore[return-value]


def _setup_rnn(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, relu = inputs
    # The inputs first, as they came (biases may be None): _graph_backward replays them.
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, output[0], batch_sizes)
    ctx.cell = "rnn_relu" if relu else "rnn"
    ctx.set_materialize_grads(False)  # an unused output's gradient stays None


def _backward_rnn(
    ctx: Any, grad_Y: Tensor | None, grad_h: Tensor | None, *, backward: Any = fused_rnn_backward
) -> tuple[Any, ...]:
    """The autograd formula of :func:`fused_rnn`: ``backward`` is the op, or its kernel."""
    if torch.is_grad_enabled():  # create_graph=True: the loops build no graph
        return _graph_backward(ctx, ctx.cell, (grad_Y, grad_h))
    x, h0, w_ih, w_hh, _, _, Y, batch_sizes = ctx.saved_tensors
    needs = tuple(ctx.needs_input_grad[:6])
    grads = backward(
        grad_Y, grad_h, x, h0, w_ih, w_hh, Y, batch_sizes, ctx.cell == "rnn_relu", needs
    )
    return (*asked(grads, needs), None, None)


fused_rnn.register_autograd(_backward_rnn, setup_context=_setup_rnn)
_RNN = Op(fused_rnn, _rnn_kernel, _setup_rnn, partial(_backward_rnn, backward=_rnn_backward_kernel))


class FusedRNN:
    """The Elman RNN's time loops in Python, and :meth:`apply`, :func:`fused_rnn` by tuple.

    The Python loops run where the compiled ones do not (:mod:`rnnkit.bptt.compiled`).
    """

    @staticmethod
    def apply(
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        batch_sizes: BatchSizes,
        relu: bool,
    ) -> tuple[Tensor, Tensor]:
        """:func:`fused_rnn` with ``batch_sizes`` a tuple of ints (or ``None``)."""
        Y, h = _RNN(x, h0, w_ih, w_hh, b_ih, b_hh, _sizes_tensor(batch_sizes), relu)
        return Y, h

    @staticmethod
    def _forward_loop(
        Y: Tensor, h0: Tensor, w_t: Tensor, batch_sizes: BatchSizes, relu: bool
    ) -> None:
        """The forward time loop in Python: Y (U·x_t + b for every step) becomes h_t."""
        T, B = Y.shape[0], Y.shape[1]
        activate = torch.relu_ if relu else torch.tanh_
        ys = Y.unbind(0)  # per-step views, made once
        h = h0
        if batch_sizes is None:
            for t in range(T):
                activate(ys[t].addmm_(h, w_t))  # h_t = f(U·x_t + b + W·h_{t−1})
                h = ys[t]
        else:
            for t in range(T):
                b = batch_sizes[t]
                activate(ys[t][:b].addmm_(h[:b], w_t))
                h = ys[t]
            Y.masked_fill_(_padding_mask(batch_sizes, B, Y.device), 0.0)  # outputs past the end

    @staticmethod
    def _backward_loop(
        Y: Tensor,
        grad_Y: Tensor | None,
        grad_h: Tensor | None,
        w_hh: Tensor,
        batch_sizes: BatchSizes,
        relu: bool,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The backward time loop in Python: dA (T, B, H) and its per-step views."""
        T, B = Y.shape[:2]
        # D_t = f'(a_t) for all steps at once; the loop turns it into dA_t in place.
        # ReLU: [h > 0]; tanh: 1 − h².
        dA = (Y > 0).to(Y.dtype) if relu else _one_minus_square(Y)  # (T, B, H)
        das = dA.unbind(0)
        if batch_sizes is None:
            # δ_t is needed only to form dA_t, so one (B, H) buffer holds it; ∂L/∂Y is
            # read in place, never copied.
            gy = torch.zeros_like(Y) if grad_Y is None else grad_Y
            delta = gy[T - 1] if grad_h is None else gy[T - 1] + grad_h  # (B, H)
            das[T - 1].mul_(delta)
            delta = torch.empty_like(delta)
            for t in range(T - 2, -1, -1):
                torch.addmm(gy[t], das[t + 1], w_hh, out=delta)  # δ_t = G_t + dA_{t+1}·W
                das[t].mul_(delta)  # dA_t = δ_t ⊙ f'(a_t)
        else:
            G = _output_grad(grad_Y, Y, batch_sizes)  # (T, B, H), becomes δ_t
            _fold_final_grad(G, grad_h, batch_sizes)
            dA.masked_fill_(_padding_mask(batch_sizes, B, Y.device), 0.0)
            gs = G.unbind(0)
            b = batch_sizes[T - 1]
            das[T - 1][:b].mul_(gs[T - 1][:b])
            for t in range(T - 2, -1, -1):
                b = batch_sizes[t]
                gs[t][:b].addmm_(das[t + 1][:b], w_hh)
                das[t][:b].mul_(gs[t][:b])
        return dA, das


# --------------------------------------------------------------------------- LSTM

# Inside the op the gates are kept in the order (o, i, f, g): the three
# gates whose gradient is proportional to ∂L/∂c_t (i, f, g) are then one
# contiguous block (one multiply per step in the backward loop). torch.nn's order
# is (i, f, g, o).
_LSTM_TO_INTERNAL = (3, 0, 1, 2)  # internal block k holds torch.nn block _LSTM_TO_INTERNAL[k]
_LSTM_TO_TORCH = (1, 2, 3, 0)


def _permute_blocks(
    tensor: Tensor | None, order: tuple[int, ...], scale_last: float = 1.0
) -> Tensor | None:
    """Reorder the 4 row blocks (gates) of a (4H, ...) or (4H,) tensor; scale the last."""
    if tensor is None:
        return None
    blocks = list(tensor.chunk(4, dim=0))
    blocks = [blocks[k] for k in order]
    if scale_last != 1.0:
        blocks[-1] = blocks[-1] * scale_last
    return torch.cat(blocks, dim=0)


def _permuted_rows_transposed(tensor: Tensor, order: tuple[int, ...]) -> Tensor:
    """:func:`_permute_blocks` of a (4H, K) matrix, as the transposed view of a
    contiguous (K, 4H) one: one copy, already laid out for the compiled loops, whose
    oneDNN products read the transpose (a second, transposing copy otherwise)."""
    blocks = tensor.t().chunk(4, dim=1)
    return torch.cat([blocks[k] for k in order], dim=1).t()


def _lstm_kernel(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    batch_sizes: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """LSTM over all steps, the op ``rnnkit::fused_lstm``, torch.nn's equations and parameters.

    x ``(T, B, I)`` time-major, h0 and c0 ``(B, H)``, biases may be ``None``,
    ``batch_sizes`` an int64 ``(T,)`` tensor (``None`` when full). Returns
    ``(Y (T, B, H), h_final (B, H), c_final (B, H), A, C)``: A ``(T, B, 4H)`` (the
    gates [o, i, f, ĝ]) and C ``(T, B, H)`` (c_t) are what the backward reads, not
    differentiable.

    One sigmoid per step computes all four gates: the g rows of U, W and b are
    doubled (exact in floating point), so the g slot holds ĝ = σ(2·a_g) and
    g = tanh(a_g) = 2ĝ − 1. Strided ``tanh`` is several times slower than a
    contiguous ``sigmoid`` on CPU, which is why.

    Backward (``docs/bptt.md`` §LSTM, :func:`fused_lstm_backward`):
    δ_t = G_t + dA_{t+1}·W; ε_t = ∂L/∂c_t = ε_{t+1} ⊙ f_{t+1} + δ_t ⊙ o_t ⊙ (1 − tanh²c_t);
    dA_t = [δ_t ⊙ K^o_t, ε_t ⊙ K^i_t, ε_t ⊙ K^f_t, ε_t ⊙ K^g_t] with the K
    coefficients computed for all steps before the loop.
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    sizes = _loop_sizes(batch_sizes, T, B)
    order = _LSTM_TO_INTERNAL
    u2 = _permute_blocks(w_ih, order, 2.0)  # [U_o; U_i; U_f; 2·U_g]
    w2 = _permute_blocks(w_hh, order, 2.0)
    assert u2 is not None and w2 is not None
    bias2 = _permute_blocks(_combined_bias(b_ih, b_hh), order, 2.0)
    # A starts as U·x_t + b (g rows doubled) and becomes [o, i, f, ĝ] step by step.
    A = project(x.reshape(T * B, I), u2, bias2).view(T, B, 4 * H)
    loops = compiled.loops_for(x, h0, c0, w_hh)
    if loops is not None:
        C, Y = loops.lstm_forward(A, h0, c0, w2.t(), sizes or ())  # the loops prepare W once
    else:
        # The backward recomputes tanh(c_t), as the compiled one does.
        C, _, Y = FusedLSTM._forward_loop(A, h0, c0, _right_operand(w2, T), sizes)
    return Y, _take_last(Y, sizes), _take_last(C, sizes), A, C


fused_lstm = torch.library.custom_op("rnnkit::fused_lstm", _lstm_kernel, mutates_args=())


@fused_lstm.register_fake
def _(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    batch_sizes: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    return (
        x.new_empty(T, B, H),
        x.new_empty(B, H),
        x.new_empty(B, H),
        x.new_empty(T, B, 4 * H),
        x.new_empty(T, B, H),
    )


def _lstm_backward_kernel(
    grad_Y: Tensor | None,
    grad_h: Tensor | None,
    grad_c: Tensor | None,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    Y: Tensor,
    A: Tensor,
    C: Tensor,
    batch_sizes: Tensor | None,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """∂L/∂ of :func:`fused_lstm`'s (x, h0, c0, w_ih, w_hh, b_ih, b_hh) from ∂L/∂(Y, h, c).

    ``needs`` says which of the seven are wanted; the others come back empty.
    """
    T, B = Y.shape[0], Y.shape[1]
    sizes = _loop_sizes(batch_sizes, T, B)
    wanted = (needs[0], needs[3], needs[4], needs[5] or needs[6], needs[1])  # x, U, W, b, h0
    loops = compiled.loops_for(Y)
    # U and W in the internal gate order
    permute = _permuted_rows_transposed if loops is not None else _permute_blocks
    u = permute(w_ih, _LSTM_TO_INTERNAL)
    w = permute(w_hh, _LSTM_TO_INTERNAL)
    assert u is not None and w is not None
    if loops is not None:
        G, final = _loop_output_grads(grad_Y, grad_h, Y, sizes)
        dx, dU, dW, db, dh0, carry = loops.lstm_backward(
            G, final, A, C, Y, x, h0, c0, u, w, grad_c, sizes or (), wanted, compiled.chunk
        )
    else:
        G = _output_grad(grad_Y, Y, sizes)  # (T, B, H), becomes δ_t
        _fold_final_grad(G, grad_h, sizes)
        dA, carry = FusedLSTM._backward_loop(G, A, C, torch.tanh(C), c0, w, grad_c, sizes)
        dx, dU, dW, db = _weight_grads(dA, x, h0, Y, u, wanted)
        dh0 = torch.mm(dA[0], w)  # (B, H)
    # carry = ε_0 ⊙ f_0 = ∂L/∂c_0
    dU, dW, db = (_permute_blocks(t, _LSTM_TO_TORCH) for t in (dU, dW, db))
    db_hh = db.clone() if needs[5] and needs[6] and db is not None else db
    grads = (dx, dh0, carry, dU, dW, db, db_hh)
    return tuple(or_empty(Y, grads, needs))  # type: ignore[return-value]


fused_lstm_backward = torch.library.custom_op(
    "rnnkit::fused_lstm_backward", _lstm_backward_kernel, mutates_args=()
)


@fused_lstm_backward.register_fake
def _(
    grad_Y: Tensor | None,
    grad_h: Tensor | None,
    grad_c: Tensor | None,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    Y: Tensor,
    A: Tensor,
    C: Tensor,
    batch_sizes: Tensor | None,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    bias = (w_ih.shape[0],)
    shapes = (x.shape, h0.shape, c0.shape, w_ih.shape, w_hh.shape, bias, bias)
    return tuple(fake_grads(Y, shapes, needs))  # type: ignore[return-value]


def _setup_lstm(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_sizes = inputs
    Y, _, _, A, C = output
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, Y, A, C, batch_sizes)
    ctx.mark_non_differentiable(A, C)
    ctx.set_materialize_grads(False)


def _backward_lstm(
    ctx: Any,
    grad_Y: Tensor | None,
    grad_h: Tensor | None,
    grad_c: Tensor | None,
    *_: Any,
    backward: Any = fused_lstm_backward,
) -> tuple[Any, ...]:
    """The autograd formula of :func:`fused_lstm`: ``backward`` is the op, or its kernel."""
    if torch.is_grad_enabled():  # create_graph=True: the loops build no graph
        return _graph_backward(ctx, "lstm", (grad_Y, grad_h, grad_c))
    x, h0, c0, w_ih, w_hh, _, _, Y, A, C, batch_sizes = ctx.saved_tensors
    needs = tuple(ctx.needs_input_grad[:7])
    grads = backward(grad_Y, grad_h, grad_c, x, h0, c0, w_ih, w_hh, Y, A, C, batch_sizes, needs)
    return (*asked(grads, needs), None)


fused_lstm.register_autograd(_backward_lstm, setup_context=_setup_lstm)
_LSTM = Op(
    fused_lstm, _lstm_kernel, _setup_lstm, partial(_backward_lstm, backward=_lstm_backward_kernel)
)


class FusedLSTM:
    """The LSTM's time loops in Python, and :meth:`apply`, :func:`fused_lstm` by tuple."""

    @staticmethod
    def apply(
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        batch_sizes: BatchSizes,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`fused_lstm` with ``batch_sizes`` a tuple: ``(Y, h_final, c_final)``."""
        Y, h, c, _, _ = _LSTM(x, h0, c0, w_ih, w_hh, b_ih, b_hh, _sizes_tensor(batch_sizes))
        return Y, h, c

    @staticmethod
    def _forward_loop(
        A: Tensor, h0: Tensor, c0: Tensor, w_t: Tensor, batch_sizes: BatchSizes
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The forward time loop in Python: A becomes [o, i, f, ĝ]; returns (C, TC, Y)."""
        T, B, H = A.shape[0], A.shape[1], A.shape[2] // 4
        new = torch.empty if batch_sizes is None else torch.zeros
        options: dict[str, Any] = {"dtype": A.dtype, "device": A.device}
        C = new(T, B, H, **options)  # c_t
        TC = new(T, B, H, **options)  # tanh(c_t)
        Y = new(T, B, H, **options)  # h_t
        acts, cs, tcs, ys = (t.unbind(0) for t in (A, C, TC, Y))
        o_, i_, f_, g_ = (A[:, :, k * H : (k + 1) * H].unbind(0) for k in range(4))
        h, c = h0, c0
        full = batch_sizes is None
        for t in range(T):
            b = B if full else batch_sizes[t]  # type: ignore[index]
            if b == B:
                a, o, i, f, g, ct, tc, y, hp, cp = (
                    acts[t], o_[t], i_[t], f_[t], g_[t], cs[t], tcs[t], ys[t], h, c,
                )  # fmt: skip
            else:
                a, o, i, f, g, ct, tc, y = (v[t][:b] for v in (acts, o_, i_, f_, g_, cs, tcs, ys))
                hp, cp = h[:b], c[:b]
            a.addmm_(hp, w_t).sigmoid_()  # [a_o, a_i, a_f, 2·a_g] → o, i, f, ĝ
            torch.mul(f, cp, out=ct)
            ct.addcmul_(i, g, value=2.0).sub_(i)  # c_t = f ⊙ c_{t−1} + i ⊙ (2ĝ − 1)
            torch.tanh(ct, out=tc)
            torch.mul(o, tc, out=y)  # h_t = o ⊙ tanh(c_t)
            h, c = ys[t], cs[t]
        return C, TC, Y

    @staticmethod
    def _backward_loop(
        G: Tensor,
        A: Tensor,
        C: Tensor,
        TC: Tensor,
        c0: Tensor,
        w: Tensor,
        grad_c: Tensor | None,
        batch_sizes: BatchSizes,
    ) -> tuple[Tensor, Tensor]:
        """The backward time loop in Python: G becomes δ; returns (dA, ∂L/∂c_0)."""
        T, B, H = G.shape
        o, i, f, g_hat = A.chunk(4, dim=2)  # (T, B, H) views
        # Coefficients of all steps at once; the loop scales them into dA in place.
        dA = torch.empty_like(A)  # (T, B, 4H), [o, i, f, g]
        d_o, d_i, d_f, d_g = dA.chunk(4, dim=2)
        # Each K is built in its own slice of dA with in-place ops (no temporaries):
        # x ⊙ s(1 − s) is computed as y = x ⊙ s, then y − y ⊙ s.
        torch.mul(o, TC, out=d_o).addcmul_(d_o, o, value=-1.0)  # K^o = tanh c ⊙ o(1 − o)
        torch.mul(g_hat, 2.0, out=d_i).sub_(1.0).mul_(i)  # g ⊙ i, with g = 2ĝ − 1
        d_i.addcmul_(d_i, i, value=-1.0)  # K^i = g ⊙ i(1 − i)
        torch.mul(c0, f[0], out=d_f[0])
        torch.mul(C[:-1], f[1:], out=d_f[1:])
        d_f.addcmul_(d_f, f, value=-1.0)  # K^f = c_{t−1} ⊙ f(1 − f)
        torch.mul(g_hat, i, out=d_g).addcmul_(d_g, g_hat, value=-1.0).mul_(4.0)  # K^g
        # ∂h_t/∂c_t = o ⊙ (1 − tanh²c_t), (T, B, H)
        M = _one_minus_square(TC).mul_(o)
        if batch_sizes is not None:
            dA.masked_fill_(_padding_mask(batch_sizes, B, G.device), 0.0)
        gs, das, ms, fs = G.unbind(0), dA.unbind(0), M.unbind(0), f.unbind(0)
        ifg = dA[:, :, H:].view(T, B, 3, H).unbind(0)  # (B, 3, H) views per step
        do_ = d_o.unbind(0)
        eps = torch.zeros(B, H, dtype=G.dtype, device=G.device)  # ε_t = ∂L/∂c_t
        eps_u = eps.unsqueeze(1)  # (B, 1, H) view, broadcast over the i, f, g blocks
        carry = torch.zeros_like(eps)  # ε_{t+1} ⊙ f_{t+1}: what reaches c_t from the future
        if grad_c is not None and batch_sizes is None:
            carry.copy_(grad_c)
        joined = 0  # rows whose backward pass has started (sorted batch: a prefix)
        for t in range(T - 1, -1, -1):
            b = B if batch_sizes is None else batch_sizes[t]
            if batch_sizes is not None and b > joined:
                # Rows whose last step is t start here; ∂L/∂c_final enters their ε.
                if grad_c is not None:
                    carry[joined:b] = grad_c[joined:b]
                joined = b
            if b == B:
                gt, mt, ft, it, ot, e, eu, k = (
                    gs[t], ms[t], fs[t], ifg[t], do_[t], eps, eps_u, carry,
                )  # fmt: skip
                if t < T - 1:
                    gt.addmm_(das[t + 1], w)  # δ_t = G_t + dA_{t+1}·W
            else:
                gt, mt, ft, it, ot, e, eu, k = (
                    gs[t][:b], ms[t][:b], fs[t][:b], ifg[t][:b], do_[t][:b],
                    eps[:b], eps_u[:b], carry[:b],
                )  # fmt: skip
                if t < T - 1:
                    gt.addmm_(das[t + 1][:b], w)
            torch.addcmul(k, gt, mt, out=e)  # ε_t = ε_{t+1} ⊙ f_{t+1} + δ_t ⊙ ∂h_t/∂c_t
            ot.mul_(gt)  # dA^o_t = δ_t ⊙ K^o
            it.mul_(eu)  # dA^{i,f,g}_t = ε_t ⊙ K^{i,f,g}
            torch.mul(e, ft, out=k)  # ε_t ⊙ f_t, for step t − 1
        return dA, carry


# --------------------------------------------------------------------------- GRU


def _gru_candidate_slope(N: Tensor, z: Tensor, *, out: Tensor) -> Tensor:
    """∂h_t/∂a^n_t = (1 − z_t) ⊙ (1 − n_t²) for all steps, written into ``out``."""
    _one_minus_square(N, out=out)  # 1 − n²
    return out.addcmul_(out, z, value=-1.0)  # x − x ⊙ z = x ⊙ (1 − z)


def _gru_kernel(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    batch_sizes: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """GRU over all steps, the op ``rnnkit::fused_gru``, torch.nn's equations and parameters.

    x ``(T, B, I)`` time-major, h0 ``(B, H)``, biases may be ``None``, ``batch_sizes``
    an int64 ``(T,)`` tensor (``None`` when full). Returns ``(Y (T, B, H), h_final,
    S, N)``: S ``(T, B, 3H)`` and N ``(T, B, H)`` are what the backward reads, not
    differentiable.

    Forward, per step, in one buffer S_t of width 3H: one matrix multiply adds
    W·h_{t−1} to [U_r·x + b_r, U_z·x + b_z, b_hn] (prepared for all steps), then the
    r, z part becomes σ(·) in place, so S_t = [r_t, z_t, W_n·h_{t−1} + b_hn] holds
    exactly what the backward needs, and N_t = n_t. Backward (``docs/bptt.md`` §GRU,
    :func:`fused_gru_backward`): δ_t = G_t + z_{t+1} ⊙ δ_{t+1} + dS_{t+1}·W and
    dS_t = δ_t ⊙ Q_t, with Q computed for all steps before the loop.
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    sizes = _loop_sizes(batch_sizes, T, B)
    # S starts as [U_r·x + b_r, U_z·x + b_z, b_hn] (both biases of r and z sum
    # outside σ; b_hn stays inside the reset) and becomes [r, z, W_n·h + b_hn].
    S = project(x.reshape(T * B, I), w_ih, b_ih).view(T, B, 3 * H)  # U·x + b_ih
    if b_hh is not None:
        S[:, :, : 2 * H] += b_hh[: 2 * H]
    N = S[:, :, 2 * H :].clone()  # U_n·x + b_in, (T, B, H); becomes n_t step by step
    S[:, :, 2 * H :] = 0.0 if b_hh is None else b_hh[2 * H :]
    loops = compiled.loops_for(x, h0, w_hh)
    if loops is not None:
        Y = loops.gru_forward(S, N, h0, w_hh.t(), sizes or ())  # the loops prepare W once
    else:
        Y = FusedGRU._forward_loop(S, N, h0, _right_operand(w_hh, T), sizes)
    return Y, _take_last(Y, sizes), S, N


fused_gru = torch.library.custom_op("rnnkit::fused_gru", _gru_kernel, mutates_args=())


@fused_gru.register_fake
def _(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    batch_sizes: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    return (
        x.new_empty(T, B, H),
        x.new_empty(B, H),
        x.new_empty(T, B, 3 * H),
        x.new_empty(T, B, H),
    )


def _gru_backward_kernel(
    grad_Y: Tensor | None,
    grad_h: Tensor | None,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    Y: Tensor,
    S: Tensor,
    N: Tensor,
    batch_sizes: Tensor | None,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """∂L/∂ of :func:`fused_gru`'s (x, h0, w_ih, w_hh, b_ih, b_hh) from ∂L/∂(Y, h_final).

    ``needs`` says which of the six are wanted; the others come back empty.
    """
    T, B, H = Y.shape
    sizes = _loop_sizes(batch_sizes, T, B)
    loops = compiled.loops_for(Y)
    if loops is not None:
        G, final = _loop_output_grads(grad_Y, grad_h, Y, sizes)
        wanted = (needs[0], needs[2], needs[3], needs[4], needs[5], needs[1])  # … b_hh, h0
        dx, dU, dW, db_ih, db_hh, dh0 = loops.gru_backward(
            G, final, S, N, Y, x, h0, w_ih, w_hh, sizes or (), wanted, compiled.chunk
        )
        return tuple(or_empty(Y, (dx, dh0, dU, dW, db_ih, db_hh), needs))  # type: ignore[return-value]
    G = _output_grad(grad_Y, Y, sizes)  # (T, B, H), becomes δ_t
    _fold_final_grad(G, grad_h, sizes)
    Q = FusedGRU._backward_loop(G, S, N, Y, h0, w_hh, sizes)
    z = S[:, :, H : 2 * H]  # (T, B, H)
    q_n = Q[:, :, 2 * H :]
    zs, q2 = z.unbind(0), Q.unbind(0)
    _, _, dW, db_hh = _weight_grads(Q, x, h0, Y, w_ih, (False, False, needs[3], needs[5]))
    dh0 = None
    if needs[1]:
        dh0 = torch.mm(q2[0], w_hh)  # (B, H)
        dh0.addcmul_(zs[0], G[0])
    # ∂L/∂a on the U side equals dS in the r and z blocks; in the n block it is
    # δ ⊙ ∂h/∂a^n, not multiplied by r. dS is used up, so its n block is
    # overwritten in place and Q becomes ∂L/∂a: no second (T, B, 3H) buffer.
    _gru_candidate_slope(N, z, out=q_n).mul_(G)  # δ is 0 past each row's end
    dx, dU, _, db_ih = _weight_grads(Q, x, h0, Y, w_ih, (needs[0], needs[2], False, needs[4]))
    return tuple(or_empty(Y, (dx, dh0, dU, dW, db_ih, db_hh), needs))  # type: ignore[return-value]


fused_gru_backward = torch.library.custom_op(
    "rnnkit::fused_gru_backward", _gru_backward_kernel, mutates_args=()
)


@fused_gru_backward.register_fake
def _(
    grad_Y: Tensor | None,
    grad_h: Tensor | None,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    Y: Tensor,
    S: Tensor,
    N: Tensor,
    batch_sizes: Tensor | None,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    bias = (w_ih.shape[0],)
    shapes = (x.shape, h0.shape, w_ih.shape, w_hh.shape, bias, bias)
    return tuple(fake_grads(Y, shapes, needs))  # type: ignore[return-value]


def _setup_gru(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes = inputs
    Y, _, S, N = output
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, Y, S, N, batch_sizes)
    ctx.mark_non_differentiable(S, N)
    ctx.set_materialize_grads(False)


def _backward_gru(
    ctx: Any,
    grad_Y: Tensor | None,
    grad_h: Tensor | None,
    *_: Any,
    backward: Any = fused_gru_backward,
) -> tuple[Any, ...]:
    """The autograd formula of :func:`fused_gru`: ``backward`` is the op, or its kernel."""
    if torch.is_grad_enabled():  # create_graph=True: the loops build no graph
        return _graph_backward(ctx, "gru", (grad_Y, grad_h))
    x, h0, w_ih, w_hh, _, _, Y, S, N, batch_sizes = ctx.saved_tensors
    needs = tuple(ctx.needs_input_grad[:6])
    grads = backward(grad_Y, grad_h, x, h0, w_ih, w_hh, Y, S, N, batch_sizes, needs)
    return (*asked(grads, needs), None)


fused_gru.register_autograd(_backward_gru, setup_context=_setup_gru)
_GRU = Op(fused_gru, _gru_kernel, _setup_gru, partial(_backward_gru, backward=_gru_backward_kernel))


class FusedGRU:
    """The GRU's time loops in Python, and :meth:`apply`, :func:`fused_gru` by tuple."""

    @staticmethod
    def apply(
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        batch_sizes: BatchSizes,
    ) -> tuple[Tensor, Tensor]:
        """:func:`fused_gru` with ``batch_sizes`` a tuple: ``(Y, h_final)``."""
        Y, h, _, _ = _GRU(x, h0, w_ih, w_hh, b_ih, b_hh, _sizes_tensor(batch_sizes))
        return Y, h

    @staticmethod
    def _forward_loop(
        S: Tensor, N: Tensor, h0: Tensor, w_t: Tensor, batch_sizes: BatchSizes
    ) -> Tensor:
        """The forward time loop in Python: S becomes [r, z, ĥ], N becomes n; returns Y."""
        T, B, H = N.shape
        new = torch.empty if batch_sizes is None else torch.zeros
        Y = new(T, B, H, dtype=N.dtype, device=N.device)  # h_t
        ss, ns, ys = (t.unbind(0) for t in (S, N, Y))
        rz_, r_, z_, hn_ = (
            S[:, :, a:b_].unbind(0) for a, b_ in ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H))
        )
        h = h0
        full = batch_sizes is None
        for t in range(T):
            b = B if full else batch_sizes[t]  # type: ignore[index]
            if b == B:
                s, rz, r, z, hn, n, y, hp = (
                    ss[t], rz_[t], r_[t], z_[t], hn_[t], ns[t], ys[t], h,
                )  # fmt: skip
            else:
                s, rz, r, z, hn, n, y = (v[t][:b] for v in (ss, rz_, r_, z_, hn_, ns, ys))
                hp = h[:b]
            s.addmm_(hp, w_t)  # [a_r, a_z, W_n·h_{t−1} + b_hn], (b, 3H)
            rz.sigmoid_()  # r, z
            n.addcmul_(r, hn).tanh_()  # n = tanh(U_n·x + b_in + r ⊙ (W_n·h + b_hn))
            torch.lerp(n, hp, z, out=y)  # h_t = n + z ⊙ (h_{t−1} − n)
            h = ys[t]
        return Y

    @staticmethod
    def _backward_loop(
        G: Tensor,
        S: Tensor,
        N: Tensor,
        Y: Tensor,
        h0: Tensor,
        w_hh: Tensor,
        batch_sizes: BatchSizes,
    ) -> Tensor:
        """The backward time loop in Python: G becomes δ; returns dS (T, B, 3H)."""
        T, B, H = G.shape
        r, z, hn = S.chunk(3, dim=2)  # (T, B, H) views
        # Coefficients of all steps at once, each built in place in its own buffer
        # (x ⊙ (1 − s) is computed as x − x ⊙ s: no temporaries).
        Q = torch.empty_like(S)  # (T, B, 3H), becomes dS_t = ∂L/∂(W·h_{t−1} + b_hh)
        q_r, q_z, q_n = Q.chunk(3, dim=2)
        _gru_candidate_slope(N, z, out=q_n)  # ∂h_t/∂a^n_t = (1 − z) ⊙ (1 − n²)
        q_n.mul_(r)  # Q^n = ∂h/∂a^n ⊙ r
        torch.mul(q_n, hn, out=q_r).addcmul_(q_r, r, value=-1.0)  # ∂h/∂a^n ⊙ ĥ ⊙ r(1 − r)
        torch.sub(h0, N[0], out=q_z[0])  # h_{t−1} − n_t
        torch.sub(Y[:-1], N[1:], out=q_z[1:])
        q_z.mul_(z).addcmul_(q_z, z, value=-1.0)  # Q^z = (h_{t−1} − n) ⊙ z(1 − z)
        if batch_sizes is not None:
            Q.masked_fill_(_padding_mask(batch_sizes, B, Y.device), 0.0)
        gs, zs = G.unbind(0), z.unbind(0)
        qs = Q.view(T, B, 3, H).unbind(0)  # (B, 3, H) views per step
        q2 = Q.unbind(0)
        for t in range(T - 1, -1, -1):
            b = B if batch_sizes is None else batch_sizes[t]
            if b == B:
                gt = gs[t]
                if t < T - 1:
                    gt.addcmul_(zs[t + 1], gs[t + 1])  # δ_t = G_t + z_{t+1} ⊙ δ_{t+1}
                    gt.addmm_(q2[t + 1], w_hh)  # … + dS_{t+1}·W
                qs[t].mul_(gt.unsqueeze(1))  # dS_t = δ_t ⊙ Q_t
            else:
                gt = gs[t][:b]
                if t < T - 1:
                    gt.addcmul_(zs[t + 1][:b], gs[t + 1][:b])
                    gt.addmm_(q2[t + 1][:b], w_hh)
                qs[t][:b].mul_(gt.unsqueeze(1))
        return Q


# --------------------------------------------------------------------------- the stack


def fused_supported(cells: Sequence[nn.Module]) -> str:
    """Why the fused backend cannot run this stack, or ``""`` when it can.

    The ops implement exactly the built-in cells; a subclass may compute
    something else, so exact types only, all of one kind and one dtype/device.
    """
    kinds = {type(cell) for cell in cells}
    if len(kinds) != 1:
        return f"the stack mixes cell types {sorted(k.__name__ for k in kinds)}"
    kind = next(iter(kinds))
    if kind not in (RNNCell, LSTMCell, GRUCell):
        return f"{kind.__name__} is not one of rnnkit's built-in cells"
    if kind is RNNCell and len({cell.nonlinearity for cell in cells}) != 1:
        return "the RNN cells mix nonlinearities"
    if len({cell.bias for cell in cells}) != 1:
        return "the cells disagree on bias"
    params = [p for cell in cells for p in cell.parameters()]
    if len({p.dtype for p in params}) != 1 or len({p.device for p in params}) != 1:
        return "the cells' parameters are spread over several dtypes or devices"
    return ""


def _run_cell(
    cell: nn.Module, x: Tensor, state: HiddenState | LSTMState, batch_sizes: Tensor | None
) -> tuple[Tensor, HiddenState | LSTMState]:
    """One direction of one layer, left to right: (T, B, I) time-major → (Y (T, B, H), final).

    Under autocast the op runs in its parameters' dtype with autocast off:
    its in-place buffers must keep one dtype, and a reduced-precision recurrence
    would round the carried state at every step.
    """
    weight: Tensor = cell.weight_hh  # type: ignore[assignment]
    if torch.is_autocast_enabled(x.device.type):
        dtype = weight.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            return _run_cell(
                cell, x.to(dtype), map_state(lambda f: f.to(dtype), state), batch_sizes
            )
    params = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    if isinstance(cell, LSTMCell):
        assert isinstance(state, LSTMState)
        Y, h, c, _, _ = _LSTM(x, state.h, state.c, *params, batch_sizes)
        return Y, LSTMState(h, c)
    if isinstance(cell, GRUCell):
        Y, h, _, _ = _GRU(x, state.h, *params, batch_sizes)
        return Y, HiddenState(h)
    assert isinstance(cell, RNNCell)
    Y, h = _RNN(x, state.h, *params, batch_sizes, cell.nonlinearity == "relu")
    return Y, HiddenState(h)


class FusedBatch:
    """One call's batch in the ops' layout, prepared once for every layer.

    :class:`~rnnkit.Recurrent` runs the layers × directions loop; this object is
    its runner for the fused backend. At construction it transposes the batch to
    time-major ``(T, B, I)``, sorts a ragged batch's rows longest first (so the rows
    still running at step t are a prefix, ``batch_sizes[t]`` of them), zeroes the
    padding, and builds the right-to-left index; :meth:`direction` then runs one
    op per (layer, direction) on that layout, and :meth:`finish` undoes it.

    Attributes:
        inputs: ``(T, B, I)`` time-major, rows sorted longest first when ragged.
        state: the initial state, every field ``(L·D, B, H)``, rows in that order.
        batch_sizes: rows still running at each step, int64 ``(T,)`` on the CPU, or
            ``None`` when all are full.
    """

    __slots__ = ("_columns", "_inverse", "_order", "_reverse", "batch_sizes", "inputs", "state")

    def __init__(self, inputs: Tensor, state: Any, lengths: Tensor | None) -> None:
        """``inputs (B, T, I)``; ``lengths``: validated CPU int64 ``(B,)``, ``None`` when full."""
        if lengths is None:
            self.batch_sizes: Tensor | None = None
            self.inputs = inputs.transpose(0, 1).contiguous()  # (T, B, I)
            self.state = state
            self._order: Tensor | None = None
            self._inverse: Tensor | None = None
            self._reverse: Tensor | None = None
            self._columns: Tensor | None = None
            return
        batch, steps = inputs.shape[0], inputs.shape[1]
        device = inputs.device
        sorted_lengths, order_cpu = torch.sort(lengths, descending=True, stable=True)
        # A tensor, not a tuple of ints: no value reaches Python, so torch.compile
        # traces this without a graph break (the ops read the sizes when they run).
        self.batch_sizes = (sorted_lengths[None, :] > torch.arange(steps)[:, None]).sum(1)
        order = order_cpu.to(device)
        self._order = order
        self._inverse = torch.empty_like(order)
        self._inverse[order] = torch.arange(batch, device=device)
        x = inputs.index_select(0, order).transpose(0, 1)  # (T, B, I), sorted
        valid = torch.arange(steps)[:, None] < sorted_lengths[None, :]  # (T, B)
        # Padding never reaches a sum: zero it (NaN ⋅ 0 would still be NaN).
        self.inputs = x.masked_fill(~valid.to(device)[:, :, None], 0.0).contiguous()
        self.state = map_state(lambda field: field.index_select(1, order), state)
        # Right-to-left over each row's own valid part: step t reads step len − 1 − t;
        # padding maps to itself. The map is its own inverse.
        t_index = torch.arange(steps)[:, None].expand(steps, batch)
        self._reverse = torch.where(valid, sorted_lengths[None, :] - 1 - t_index, t_index).to(
            device
        )  # (T, B)
        self._columns = torch.arange(batch, device=device)[None, :]  # (1, B)

    def direction(
        self, cell: nn.Module, x: Tensor, state: Any, reverse: bool
    ) -> tuple[Tensor, HiddenState | LSTMState]:
        """One direction of one layer: x ``(T, B, ·)`` → (outputs ``(T, B, H)``, final ``(B, H)``)."""
        if not reverse:
            return _run_cell(cell, x, state, self.batch_sizes)
        if self._reverse is None:
            Y, final = _run_cell(cell, x.flip(0), state, self.batch_sizes)
            return Y.flip(0), final
        steps, rows = self._reverse, self._columns
        Y, final = _run_cell(cell, x[steps, rows], state, self.batch_sizes)
        return Y[steps, rows], final

    def locked(self, mask: Tensor) -> Tensor:
        """A per-row mask ``(B, F)``, caller's order → ``(1, B, F)`` over this layout."""
        return (mask if self._order is None else mask.index_select(0, self._order))[None]

    def finish(self, outputs: Tensor, final: Any) -> tuple[Tensor, Any]:
        """``(T, B, D·H)`` and the stacked finals → batch-first, in the caller's row order."""
        out = outputs.transpose(0, 1)  # (B, T, D·H), a view, as torch.nn with batch_first
        inverse = self._inverse
        if inverse is None:
            return out, final
        return out.index_select(0, inverse), map_state(
            lambda field: field.index_select(1, inverse), final
        )
