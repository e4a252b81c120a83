"""One time step of a whole stack of built-in cells, for generation: :class:`Stepper`.

A decoder feeds one token at a time, so it runs a recurrent stack at T = 1 over
and over with B between 1 and the beam size. A sequence runner pays, at every
call, for what is only worth paying once per sequence: input and state checks,
backend dispatch, and for torch.nn's module at T = 1 an RNN primitive built per
call. A :class:`Stepper` pays it once: built from a stack's cells, it checks them,
packs their weights (:func:`Stepper.from_cells`), and then steps every layer in
one call without checking anything again::

    stepper = Stepper.from_recurrent(rnn)              # checks and packs once
    top, state = stepper.step(x_t, state)              # (B, I) → (B, H), all L layers

For layer l = 0 … L−1 (x^0_t = x_t, the cell's own equations, see :mod:`rnnkit.cells`)::

    h^l_t, (c^l_t) = cell_l(x^l_t, s^l_{t−1}),   x^{l+1}_t = h^l_t,   top = h^{L−1}_t

with the state a ``HiddenState`` or ``LSTMState`` whose fields are ``(L, B, H)``,
layer l at index l: what :class:`~rnnkit.Recurrent` returns for a unidirectional
stack. A generator runs left to right, so a bidirectional stack cannot step: it
is refused when the stepper is built. Dropout between layers is not applied (a
generation runs in eval mode).

The minimal cells (``MinGRUCell``, ``MinLSTMCell``) step too: their step is one
product U·x_t + b and the cell's own gates, then h_t = a_t ⊙ h_{t−1} + b_t, a few
ATen calls per layer (no W, so nothing to pack beyond Uᵀ).

The step runs in the compiled library (:mod:`rnnkit.bptt.compiled`, ``step.cpp``:
one matrix–vector pass per layer over the packed weights, then one pass over the
gates) on CPU tensors of float32 or float64, and otherwise, or with
``RNNKIT_COMPILED_LOOPS=0``, in a few ATen calls per layer over the same weights:
the same numbers up to rounding (tests tie the two, and both to ``Recurrent``).

The packed weights are a copy: a stepper describes the parameters as they were
when it was built. :meth:`Stepper.is_current` says whether they have changed since
(an optimizer step, ``load_state_dict``, ``.to()``), and :func:`cached_stepper`
keeps one stepper per owner, rebuilt when they have.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from rnnkit.bptt import compiled
from rnnkit.cells import GRUCell, LSTMCell, MinimalCell, RecurrentCell, RNNCell
from rnnkit.recurrent import Recurrent
from rnnkit.stamps import Stamp, stamps
from rnnkit.state import HiddenState, LSTMState

# Columns per strip of the packed weights (step.cpp's kStrip): a strip's products
# fit in registers, and the gate columns are padded to a whole number of strips.
STRIP = 64

# Gates per unit of each kind (torch.nn's order: LSTM i, f, g, o; GRU r, z, n).
_GATES = {"rnn": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class _Layer:
    """One layer's weights for the ATen path.

    Attributes:
        u_t: Uᵀ, ``(I_l, G·H)``; w_t: Wᵀ, ``(H, G·H)`` (empty for a minimal cell).
        b_ih, b_hh: ``(G·H,)`` each (zeros for ``bias=False``; b_hh empty for a minimal
            cell).
        gates: a minimal cell's own equations, pre-activations → (a_t, b_t)
            (:meth:`~rnnkit.cells.MinimalCell.gates`); ``None`` for the others.
    """

    u_t: Tensor
    w_t: Tensor
    b_ih: Tensor
    b_hh: Tensor
    gates: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None


@dataclass(frozen=True)
class Stepper:
    """A unidirectional stack of built-in cells, packed to step one time step at a time.

    Build it with :meth:`from_cells` or :meth:`from_recurrent`; :meth:`step` then
    runs all layers for a batch of B ≥ 1 rows.

    Attributes:
        kind: ``"rnn"`` (tanh), ``"rnn_relu"``, ``"lstm"``, ``"gru"``, or a minimal
            cell's name (``"mingru"``, ``"minlstm"``, ``"mingru_log"``, ``"minlstm_log"``).
        input_size: I, features of x_t.
        hidden_size: H.
        num_layers: L.
        weights, bias: the packed parameters of every layer for the compiled step
            (layout in ``step.cpp``); empty when the ATen path runs.
        layers: per-layer weights for the ATen path; empty when the compiled step runs.
        ops: the compiled library, or ``None`` for the ATen path.
        parameters: the cells' parameters, in order.
        versions: their :func:`~rnnkit.stamps.stamps` when packed.
    """

    kind: str
    input_size: int
    hidden_size: int
    num_layers: int
    weights: Tensor
    bias: Tensor
    layers: tuple[_Layer, ...]
    ops: Any
    parameters: tuple[Tensor, ...]
    versions: tuple[Stamp, ...]

    @classmethod
    def from_cells(cls, cells: Sequence[nn.Module]) -> Stepper:
        """Check and pack a stack of built-in cells, layer 0 first.

        Every cell must be an ``RNNCell`` (one nonlinearity for all), ``LSTMCell`` or
        ``GRUCell`` of one kind, with one hidden size H; layer 0 reads I features,
        each later layer reads H. Parameters stay where they are (device, dtype):
        the compiled step runs for CPU float32/float64, the ATen path otherwise.

        Raises:
            ValueError: the stack is empty, mixes kinds, is not a chain of widths,
                or holds a cell that is not built in (a factory's own cell).
        """
        if not cells:
            raise ValueError("Stepper: expected at least one cell, got none")
        kind = _kind_of(cells[0])
        # Every cell is checked to be built in by _kind_of below.
        built = cast(list[RecurrentCell[Any]], list(cells))
        hidden = built[0].hidden_size
        for index, cell in enumerate(built):
            if _kind_of(cell) != kind:
                raise ValueError(
                    f"Stepper: cell {index} is {_kind_of(cell)}, cell 0 is {kind}: "
                    "a stepped stack has one kind of cell"
                )
            expected = built[0].input_size if index == 0 else hidden
            if cell.hidden_size != hidden or cell.input_size != expected:
                raise ValueError(
                    f"Stepper: cell {index} maps {cell.input_size} → {cell.hidden_size}, "
                    f"expected {expected} → {hidden} (layer l > 0 reads layer l − 1's h)"
                )
        like = built[0].weight_ih
        ops = compiled.loops_for(like)
        if (ops is not None and not hasattr(ops, "step_lstm")) or kind not in _GATES:
            # A library built before step.cpp existed, or a minimal cell: the step of
            # h_t = a_t ⊙ h_{t−1} + b_t is one product and a few elementwise ATen calls.
            ops = None
        parameters = tuple(p for cell in built for p in cell.parameters())
        with torch.no_grad():
            if ops is not None:
                weights, bias = _pack(built, _GATES[kind], hidden)
                layers: tuple[_Layer, ...] = ()
            else:
                layers = tuple(_layer(cell) for cell in built)
                weights = bias = like.new_empty(0)
        return cls(
            kind=kind,
            input_size=built[0].input_size,
            hidden_size=hidden,
            num_layers=len(built),
            weights=weights,
            bias=bias,
            layers=layers,
            ops=ops,
            parameters=parameters,
            versions=stamps(parameters),
        )

    @classmethod
    def from_recurrent(cls, rnn: Recurrent) -> Stepper:
        """:meth:`from_cells` of a :class:`~rnnkit.Recurrent` stack.

        Raises:
            ValueError: the stack is bidirectional (a right-to-left pass needs the
                whole sequence before its first output), or its cells are not
                built-in cells of one kind.
        """
        if rnn.bidirectional:
            raise ValueError(
                "Stepper: a bidirectional stack cannot step: its right-to-left pass "
                "needs the whole sequence first; generate with a unidirectional stack"
            )
        return cls.from_cells(list(rnn.cells))

    @property
    def compiled(self) -> bool:
        """Whether :meth:`step` runs the compiled step (else the ATen path)."""
        return self.ops is not None

    def is_current(self) -> bool:
        """Whether the cells' parameters hold what was packed: none updated in place
        since (an optimizer step, fused ones included, ``load_state_dict``) and none
        given new storage (``.to()``); see :mod:`rnnkit.stamps`. A parameter *object*
        swapped for another on a cell is not seen: build a new stepper then."""
        return stamps(self.parameters) == self.versions

    def step(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One time step of every layer: ``(h^{L−1}_t (B, H), new state)``.

        Args:
            x_t: ``(B, I)``, the parameters' dtype and device.
            state: ``HiddenState`` (RNN, GRU) or ``LSTMState`` with fields
                ``(L, B, H)``.

        Nothing is checked here (the stepper was checked when built); a wrong shape
        fails inside the step. No autograd graph is recorded.
        """
        ops = self.ops
        if ops is not None:
            if self.kind == "lstm":
                top, h, c = ops.step_lstm(x_t, state.h, state.c, self.weights, self.bias)
                return top, LSTMState(h, c)
            if self.kind == "gru":
                top, h = ops.step_gru(x_t, state.h, self.weights, self.bias)
            else:
                top, h = ops.step_rnn(x_t, state.h, self.weights, self.bias,
                                      self.kind == "rnn_relu")  # fmt: skip
            return top, HiddenState(h)
        return _STEPS[self.kind](self.layers, x_t, state)


_bypassed = False  # set by `bypassed()`


def stepping(module: nn.Module) -> bool:
    """Whether a decoder should step ``module`` through a :class:`Stepper` now.

    In eval mode without gradients, yes; in training mode (dropout) or under
    autograd, or inside :func:`bypassed`, the decoder steps its ``Recurrent`` at
    T = 1 instead. Both give the same numbers.
    """
    return not (module.training or torch.is_grad_enabled() or _bypassed)


@contextlib.contextmanager
def bypassed() -> Iterator[None]:
    """Within the block, decoders call their ``Recurrent`` stacks rather than a Stepper,
    so that forward hooks on ``Recurrent`` (the report's probe) see every step."""
    global _bypassed
    previous, _bypassed = _bypassed, True
    try:
        yield
    finally:
        _bypassed = previous


def cached_stepper(owner: nn.Module, build: Callable[[], Stepper]) -> Stepper:
    """``owner``'s stepper, made by ``build()`` on first use and again once stale.

    The stepper is kept on ``owner`` (a plain attribute, not a parameter or buffer:
    it is a packed copy of weights, never saved) and rebuilt when a parameter has
    changed since it was packed (:meth:`Stepper.is_current`): an optimizer step,
    ``load_state_dict`` and ``.to()`` all show there.
    """
    stepper: Stepper | None = owner.__dict__.get("_rnnkit_stepper")
    if stepper is None or not stepper.is_current():
        stepper = build()
        owner.__dict__["_rnnkit_stepper"] = stepper
    return stepper


# ----------------------------------------------------------------- building


def _kind_of(cell: nn.Module) -> str:
    if type(cell) is RNNCell:
        return "rnn" if cell.nonlinearity == "tanh" else "rnn_relu"
    if type(cell) is LSTMCell:
        return "lstm"
    if type(cell) is GRUCell:
        return "gru"
    if isinstance(cell, MinimalCell) and type(cell).__name__ in ("MinGRUCell", "MinLSTMCell"):
        name = type(cell).__name__.removesuffix("Cell").lower()  # "mingru", "minlstm"
        return name if cell.form == "plain" else f"{name}_{cell.form}"
    raise ValueError(
        f"Stepper: expected rnnkit's RNNCell, LSTMCell, GRUCell, MinGRUCell or MinLSTMCell, "
        f"got {type(cell).__name__} (a cell of one's own runs through Recurrent or unroll)"
    )


def _layer(cell: RecurrentCell[Any]) -> _Layer:
    if isinstance(cell, MinimalCell):
        u = cell.weight_ih.detach()
        b = u.new_zeros(u.shape[0]) if cell.bias_ih is None else cell.bias_ih.detach().clone()
        return _Layer(u.t().contiguous(), u.new_empty(0), b, u.new_empty(0), cell.gates)
    u, w = cell.weight_ih.detach(), cell.weight_hh.detach()
    zeros = u.new_zeros(u.shape[0])
    b_ih = zeros if cell.bias_ih is None else cell.bias_ih.detach()
    b_hh = zeros if cell.bias_hh is None else cell.bias_hh.detach()
    return _Layer(u.t().contiguous(), w.t().contiguous(), b_ih.clone(), b_hh.clone())


def _pack(cells: Sequence[RecurrentCell[Any]], gates: int, hidden: int) -> tuple[Tensor, Tensor]:
    """Every layer in step.cpp's layout, flattened: the transposed weights [Uᵀ; Wᵀ]
    ``(I_l + H, N)``, their G·H columns padded with zeros to N (a multiple of
    :data:`STRIP`), cut into strips ``(N / STRIP, I_l + H, STRIP)``; the biases
    ``(2, G·H)`` = [bias_ih; bias_hh] of each layer.
    """
    columns = gates * hidden
    n = -(-columns // STRIP) * STRIP
    sizes = [n * (cell.input_size + hidden) for cell in cells]
    like = cells[0].weight_hh
    # One allocation, written once (fresh memory costs a page fault per page).
    weights = like.new_empty(sum(sizes))
    offset = 0
    biases = []
    for cell, size in zip(cells, sizes, strict=True):
        rows = cell.input_size + hidden
        full = like.new_zeros(rows, n)  # [Uᵀ; Wᵀ], padded
        full[: cell.input_size, :columns] = cell.weight_ih.detach().t()
        full[cell.input_size :, :columns] = cell.weight_hh.detach().t()
        strips = weights[offset : offset + size].view(n // STRIP, rows, STRIP)
        strips.copy_(full.view(rows, n // STRIP, STRIP).transpose(0, 1))
        offset += size
        for bias in (cell.bias_ih, cell.bias_hh):
            biases.append(like.new_zeros(columns) if bias is None else bias.detach())
    return weights, torch.cat(biases)


# ----------------------------------------------------------------- the ATen path
# The cells' equations over the pre-transposed weights, layer after layer.


def _rnn_steps(f: Callable[[Tensor], Tensor]) -> Callable[..., tuple[Tensor, HiddenState]]:
    def steps(
        layers: Sequence[_Layer], x: Tensor, state: HiddenState
    ) -> tuple[Tensor, HiddenState]:
        out = []
        for layer, h in zip(layers, state.h, strict=True):
            pre = torch.addmm(layer.b_ih, x, layer.u_t) + torch.addmm(layer.b_hh, h, layer.w_t)
            x = f(pre)  # h_t = f(U·x_t + b_ih + W·h_{t−1} + b_hh), (B, H)
            out.append(x)
        return x, HiddenState(torch.stack(out))

    return steps


def _lstm_steps(layers: Sequence[_Layer], x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
    hs, cs = [], []
    for layer, h, c in zip(layers, state.h, state.c, strict=True):
        gates = torch.addmm(layer.b_ih, x, layer.u_t) + torch.addmm(layer.b_hh, h, layer.w_t)
        i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # c_t
        x = torch.sigmoid(o) * torch.tanh(c)  # h_t
        hs.append(x)
        cs.append(c)
    return x, LSTMState(torch.stack(hs), torch.stack(cs))


def _gru_steps(
    layers: Sequence[_Layer], x: Tensor, state: HiddenState
) -> tuple[Tensor, HiddenState]:
    out = []
    for layer, h in zip(layers, state.h, strict=True):
        x_r, x_z, x_n = torch.addmm(layer.b_ih, x, layer.u_t).chunk(3, dim=1)  # (B, H) each
        h_r, h_z, h_n = torch.addmm(layer.b_hh, h, layer.w_t).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        x = (1 - z) * n + z * h  # h_t
        out.append(x)
    return x, HiddenState(torch.stack(out))


def _minimal_steps(
    layers: Sequence[_Layer], x: Tensor, state: HiddenState
) -> tuple[Tensor, HiddenState]:
    out = []
    for layer, h in zip(layers, state.h, strict=True):
        assert layer.gates is not None
        a, b = layer.gates(torch.addmm(layer.b_ih, x, layer.u_t))  # (B, H) each
        x = torch.addcmul(b, a, h)  # h_t = a_t ⊙ h_{t−1} + b_t
        out.append(x)
    return x, HiddenState(torch.stack(out))


_STEPS: dict[str, Callable[..., tuple[Tensor, Any]]] = {
    "rnn": _rnn_steps(torch.tanh),
    "rnn_relu": _rnn_steps(torch.relu),
    "lstm": _lstm_steps,
    "gru": _gru_steps,
    "mingru": _minimal_steps,
    "minlstm": _minimal_steps,
    "mingru_log": _minimal_steps,
    "minlstm_log": _minimal_steps,
}


__all__ = ["STRIP", "Stepper", "cached_stepper"]
