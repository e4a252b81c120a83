"""ONNX export: rnnkit's stacks and task models as graphs of ONNX's own RNN, LSTM and GRU.

The graph is written here, node by node, from the module's weights (``onnx.helper``),
rather than traced: each layer of a :class:`~rnnkit.Recurrent` becomes one ONNX
``RNN``, ``LSTM`` or ``GRU`` node (both directions in one node), so the file keeps
the recurrence as one operator that runtimes implement natively, with dynamic batch
and time axes and ragged rows through the operator's ``sequence_lens``.
``docs/export.md`` says what this does that ``torch.onnx.export`` does not.

Layouts, torch.nn's (rnnkit's cells keep it) → ONNX's, with G gates and D directions:

==========  ===================================  ===================================
            torch.nn / rnnkit                    ONNX
==========  ===================================  ===================================
gate order  LSTM i, f, g, o; GRU r, z, n         LSTM i, o, f, c; GRU z, r, h
weights     ``weight_ih`` (G·H, I) per cell      W (D, G·H, I), rows reordered
            ``weight_hh`` (G·H, H)               R (D, G·H, H)
biases      ``bias_ih``, ``bias_hh`` (G·H,)      B (D, 2·G·H) = [Wb; Rb]
GRU reset   r ⊙ (W_n·h + b_hn)                   ``linear_before_reset = 1``
sequences   batch-first (B, T, I)                time-major X (T, B, I)
outputs     (B, T, D·H)                          Y (T, D, B, H): transposed, reshaped
states      (L·D, B, H), index l·D + d           Y_h (D, B, H) per layer, concatenated
==========  ===================================  ===================================

With ``sequence_lens`` the reverse direction reads each row right to left from its
own last valid step, as rnnkit's ``Recurrent`` does, and ``Y_h`` is each row's state
at its last valid step (step 0 for the reverse direction). The ONNX specification
leaves ``Y`` past a row's length unspecified (onnxruntime writes zeros), so the
graph sets the last layer's outputs there to zero itself, as ``Recurrent`` does.

What a graph computes is the module in eval mode: dropout is the identity, and the
weights are written as float32.

Exported graphs (dimension names ``batch`` and ``time``; ``int64`` ids and lengths):

* a :class:`~rnnkit.Recurrent` (:func:`recurrent_to_onnx`): ``inputs`` (batch, time,
  I) [, ``lengths`` (batch,)] [, ``h_0`` [, ``c_0``] (L·D, batch, H)] → ``outputs``
  (batch, time, D·H), ``h_n`` [, ``c_n``] (L·D, batch, H);
* a classifier (many-to-one, :class:`~rnnkit.models.classifier.SequenceClassifier`):
  ``tokens`` (batch, time) or ``inputs`` (batch, time, F), ``lengths`` (batch,) →
  ``logits`` and ``probabilities`` ((batch,) for a binary head, (batch, C) for a
  multiclass one) or ``predictions`` (batch, K) for a regression head;
* a tagger (many-to-many, :class:`~rnnkit.models.tagger.Tagger`): ``tokens``,
  ``lengths`` → ``emissions`` (batch, time, C) and, without a CRF, ``tags`` (batch,
  time), 0 past each row's end. With a CRF the graph stops at the emissions: the
  Viterbi decode over them (the CRF's ``transitions``, ``start`` and ``end``) is not
  exported;
* a language model, one decoding step (:class:`~rnnkit.models.language_model.LanguageModel`):
  ``tokens`` (batch,), ``h_0`` [, ``c_0``] (L, batch, H) → ``logits`` (batch, V),
  ``h_n`` [, ``c_n``]: the state out is the next step's state in.

onnx is an optional dependency (``pip install 'rnnkit[export]'``), imported when an
export runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.dropout import PooledDropout, WordDropout
from rnnkit.models.heads import BinaryHead, ClassHead, RegressionHead
from rnnkit.models.language_model import LanguageModel
from rnnkit.models.pooling import AttentionPooling, LastPooling, MaxPooling, MeanPooling
from rnnkit.models.tagger import Tagger
from rnnkit.recurrent import Recurrent

if TYPE_CHECKING:
    import onnx

#: The ONNX operator set the graphs use (RNN, LSTM and GRU are version 14 in it).
OPSET = 17

#: Rows of torch.nn's gate blocks in ONNX's order: LSTM i,f,g,o → i,o,f,c; GRU r,z,n → z,r,h.
_GATE_ORDER: dict[type[nn.Module], list[int]] = {
    RNNCell: [0],
    LSTMCell: [0, 3, 1, 2],
    GRUCell: [1, 0, 2],
}
_OPERATOR = {RNNCell: "RNN", LSTMCell: "LSTM", GRUCell: "GRU"}
BATCH, TIME = "batch", "time"  # the graphs' dynamic dimensions

# The graphs' input and output names.
_PUBLIC = frozenset({"inputs", "tokens", "lengths", "h_0", "c_0", "outputs", "h_n", "c_n",
                     "logits", "probabilities", "predictions", "emissions", "tags"})  # fmt: skip
_MODELS = (
    "a Recurrent of rnn, rnn_relu, lstm or gru cells, a classifier, a tagger or a language model"
)


def require_onnx() -> Any:
    """The onnx package, or a one-line ValueError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise ValueError(
            "export: ONNX export needs the onnx package: pip install 'rnnkit[export]'"
        ) from None
    return onnx


class _Graph:
    """The nodes, weights, inputs and outputs of one ONNX graph as it is being written."""

    def __init__(self) -> None:
        self.onnx = require_onnx()
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self._names: set[str] = set(_PUBLIC)  # inner values never take an input's or output's name
        self._constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def fresh(self, hint: str) -> str:
        name, count = hint, 1
        while name in self._names:
            count += 1
            name = f"{hint}_{count}"
        self._names.add(name)
        return name

    def input(self, name: str, dtype: Any, shape: Sequence[str | int]) -> str:
        assert name in _PUBLIC
        elem = self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self.inputs.append(self.onnx.helper.make_tensor_value_info(name, elem, list(shape)))
        return name

    def output(self, value: str, name: str, dtype: Any, shape: Sequence[str | int]) -> None:
        """Expose ``value`` as the graph output ``name`` (through an Identity if renamed)."""
        assert name in _PUBLIC
        if value != name:
            self.nodes.append(self.onnx.helper.make_node("Identity", [value], [name]))
        elem = self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, elem, list(shape)))

    def weight(self, hint: str, value: Tensor | np.ndarray) -> str:
        """A weight as an initializer: a tensor as float32, an array as it is."""
        if isinstance(value, Tensor):
            value = value.detach().to("cpu", torch.float32).numpy()
        name = self.fresh(hint)
        array = np.ascontiguousarray(value)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def constant(self, hint: str, value: np.ndarray) -> str:
        """A small constant (axes, shapes, 0 and 1), written once however often it is used."""
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._constants:
            self._constants[key] = self.weight(hint, value)
        return self._constants[key]

    def ints(self, hint: str, *values: int) -> str:
        """A 1-D int64 constant (axes, starts, shapes)."""
        return self.constant(hint, np.array(values, dtype=np.int64))

    def scalar(self, hint: str, value: float, dtype: Any) -> str:
        """A 0-D constant of ``dtype``."""
        return self.constant(hint, np.array(value, dtype=dtype))

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attributes: Any) -> str:
        """One node with one output; returns the output's name."""
        return self.ops(op_type, *inputs, count=1, hint=hint, **attributes)[0]

    def ops(
        self, op_type: str, *inputs: str, count: int, hint: str | None = None, **attributes: Any
    ) -> list[str]:
        """One node with ``count`` outputs."""
        base = hint or op_type.lower()
        outputs = [self.fresh(f"{base}_{i}" if count > 1 else base) for i in range(count)]
        node = self.onnx.helper.make_node(
            op_type, list(inputs), outputs, name=self.fresh(f"node_{base}"), **attributes
        )
        self.nodes.append(node)
        return outputs

    def linear(self, x: str, layer: nn.Linear, hint: str) -> str:
        """``x·Wᵀ + b`` over the last axis of ``x`` (a ``Linear``: any leading axes)."""
        y = self.op("MatMul", x, self.weight(f"{hint}.weight_t", layer.weight.T), hint=hint)
        bias: Tensor | None = layer.bias  # None for Linear(bias=False)
        if bias is None:
            return y
        return self.op("Add", y, self.weight(f"{hint}.bias", bias), hint=hint)

    def model(self, name: str, doc: str) -> onnx.ModelProto:
        helper = self.onnx.helper
        graph = helper.make_graph(
            self.nodes, name, self.inputs, self.outputs, self.initializers, doc_string=doc
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="rnnkit",
            producer_version=_version(),
        )
        # IR version 8 is opset 17's (onnx 1.12): runtimes refuse IR versions newer than theirs.
        model.ir_version = min(model.ir_version, 8)
        self.onnx.checker.check_model(model, full_check=True)
        return model  # type: ignore[no-any-return]


def _version() -> str:
    from rnnkit.version import __version__

    return __version__


# --------------------------------------------------------------------------- the stack


def _check_stack(recurrent: Recurrent) -> type[nn.Module]:
    """The one cell type of a stack ONNX's operators compute, or a one-line ValueError."""
    kinds = {type(cell) for cell in recurrent.cells}
    kind = kinds.pop() if len(kinds) == 1 else None
    # Exact types: a subclass (the projected LSTM among them) computes something else.
    if kind not in _OPERATOR:
        names = sorted(k.__name__ for k in {type(cell) for cell in recurrent.cells})
        raise ValueError(
            "export: expected a Recurrent of rnnkit's rnn, rnn_relu, lstm or gru cells "
            f"(ONNX's RNN, LSTM and GRU operators), got cells {', '.join(names)}"
        )
    if kind is RNNCell and len({cell.nonlinearity for cell in recurrent.cells}) != 1:
        raise ValueError("export: expected one nonlinearity in an RNN stack, got tanh and relu")
    if len({cell.bias for cell in recurrent.cells}) != 1:
        raise ValueError("export: expected every cell of the stack with a bias or none")
    return kind


def _gates(weight: Tensor, order: list[int]) -> Tensor:
    """``(G·H, ·)`` or ``(G·H,)`` rows of torch.nn's gate blocks in ONNX's order."""
    blocks = weight.detach().reshape(len(order), -1, *weight.shape[1:])  # (G, H, ·)
    return blocks[order].reshape(weight.shape)


def _stack(
    g: _Graph,
    recurrent: Recurrent,
    x: str,
    *,
    lengths: str | None,
    h_0: str | None,
    c_0: str | None,
    hint: str,
) -> tuple[str, str, str | None]:
    """The stack's layers over time-major ``x`` (T, B, I): one ONNX node per layer.

    Returns ``(y (T, B, D·H), h_n, c_n)`` with the states ``(L·D, B, H)`` in torch.nn's
    order; ``c_n`` is None but for the LSTM. ``lengths``: int32 ``(B,)`` or None;
    ``h_0``/``c_0``: ``(L·D, B, H)`` or None for zeros. Outputs past a row's length
    are whatever the runtime writes (see :func:`_zero_past_end`).
    """
    kind = _check_stack(recurrent)
    order = _GATE_ORDER[kind]
    D, H = recurrent.num_directions, recurrent.hidden_size
    attributes: dict[str, Any] = {"hidden_size": H}
    if D == 2:
        attributes["direction"] = "bidirectional"
    if kind is GRUCell:
        attributes["linear_before_reset"] = 1  # torch.nn's GRU: r ⊙ (W_n·h + b_hn)
    if kind is RNNCell:
        tanh = getattr(recurrent.cells[0], "nonlinearity", "tanh") == "tanh"
        attributes["activations"] = ["Tanh" if tanh else "Relu"] * D
    operator = _OPERATOR[kind]
    every: list[Any] = list(recurrent.cells)  # built-in cells: weight_ih, weight_hh, biases
    finals_h: list[str] = []
    finals_c: list[str] = []
    for layer in range(recurrent.num_layers):
        cells = every[layer * D : (layer + 1) * D]
        name = f"{hint}.l{layer}"
        W = g.weight(f"{name}.W", torch.stack([_gates(c.weight_ih, order) for c in cells]))
        R = g.weight(f"{name}.R", torch.stack([_gates(c.weight_hh, order) for c in cells]))
        B = ""
        if cells[0].bias:
            B = g.weight(
                f"{name}.B",
                torch.stack(
                    [torch.cat([_gates(c.bias_ih, order), _gates(c.bias_hh, order)]) for c in cells]
                ),
            )
        inputs = [x, W, R, B, lengths or ""]
        for start, field in ((h_0, "h_0"), (c_0, "c_0")):
            if start is not None:  # this layer's rows l·D … l·D + D − 1 of (L·D, B, H)
                rows = g.ints("from", layer * D), g.ints("to", (layer + 1) * D)
                sliced = g.op("Slice", start, *rows, g.ints("axis_0", 0), hint=f"{name}.{field}")
                inputs.append(sliced)
            elif field == "h_0" or kind is LSTMCell:
                inputs.append("")
        while inputs[-1] == "":
            inputs.pop()  # trailing optional inputs are left out, not named empty
        count = 3 if kind is LSTMCell else 2
        outputs = g.ops(operator, *inputs, count=count, hint=name, **attributes)
        y = g.op("Transpose", outputs[0], perm=[0, 2, 1, 3], hint=f"{name}.y")  # (T, B, D, H)
        x = g.op("Reshape", y, g.ints(f"{name}.shape", 0, 0, D * H), hint=f"{name}.y")
        finals_h.append(outputs[1])
        if kind is LSTMCell:
            finals_c.append(outputs[2])
    h_n = finals_h[0] if len(finals_h) == 1 else g.op("Concat", *finals_h, axis=0, hint="h_n")
    c_n = None
    if finals_c:
        c_n = finals_c[0] if len(finals_c) == 1 else g.op("Concat", *finals_c, axis=0, hint="c_n")
    return x, h_n, c_n


def _valid(g: _Graph, lengths: str, steps: str, *, time_major: bool) -> str:
    """Bool ``(T, B)`` (or ``(B, T)``): true on each row's first ``lengths`` steps."""
    positions = g.op(
        "Range", g.scalar("zero", 0, np.int64), steps, g.scalar("one", 1, np.int64), hint="t"
    )  # (T,)
    if time_major:
        column = g.op("Unsqueeze", positions, g.ints("axis_1", 1), hint="t")  # (T, 1)
        row = g.op("Unsqueeze", lengths, g.ints("axis_0", 0), hint="lengths")  # (1, B)
    else:
        column = g.op("Unsqueeze", positions, g.ints("axis_0", 0), hint="t")  # (1, T)
        row = g.op("Unsqueeze", lengths, g.ints("axis_1", 1), hint="lengths")  # (B, 1)
    return g.op("Less", column, row, hint="valid")


def _steps(g: _Graph, x: str, axis: int) -> str:
    """The scalar size of axis ``axis`` of ``x`` (int64)."""
    shape = g.op("Shape", x, hint="shape")
    return g.op("Gather", shape, g.scalar(f"index_{axis}", axis, np.int64), axis=0, hint="steps")


def _zero_past_end(g: _Graph, y: str, valid: str) -> str:
    """``y (T, B, F)`` with zeros where ``valid (T, B)`` is false, as ``Recurrent`` outputs."""
    mask = g.op("Unsqueeze", valid, g.ints("axis_2", 2), hint="valid")  # (T, B, 1)
    return g.op("Where", mask, y, g.scalar("zero_f", 0.0, np.float32), hint="outputs")


def _recurrent(
    g: _Graph, recurrent: Recurrent, x_batch_first: str, lengths: str | None, *,
    h_0: str | None = None, c_0: str | None = None, hint: str = "rnn",
) -> tuple[str, str, str | None, str | None]:  # fmt: skip
    """A stack over batch-first ``x`` (B, T, I) with int64 ``lengths``.

    Returns ``(outputs (B, T, D·H), h_n, c_n, valid (B, T) or None)``, outputs zero past
    each row's length as ``Recurrent``'s.
    """
    x = g.op("Transpose", x_batch_first, perm=[1, 0, 2], hint="time_major")  # (T, B, I)
    sequence_lens = None
    if lengths is not None:
        sequence_lens = g.op("Cast", lengths, to=g.onnx.TensorProto.INT32, hint="sequence_lens")
    y, h_n, c_n = _stack(g, recurrent, x, lengths=sequence_lens, h_0=h_0, c_0=c_0, hint=hint)
    valid = None
    if lengths is not None:
        valid_tb = _valid(g, lengths, _steps(g, x, 0), time_major=True)  # (T, B)
        y = _zero_past_end(g, y, valid_tb)
        valid = g.op("Transpose", valid_tb, perm=[1, 0], hint="valid")  # (B, T)
    return g.op("Transpose", y, perm=[1, 0, 2], hint="outputs"), h_n, c_n, valid


def _state_shape(recurrent: Recurrent) -> list[str | int]:
    return [recurrent.num_layers * recurrent.num_directions, BATCH, recurrent.hidden_size]


def recurrent_to_onnx(
    recurrent: Recurrent, *, lengths: bool = True, initial_state: bool = False
) -> onnx.ModelProto:
    """The graph of a :class:`~rnnkit.Recurrent` of built-in ``rnn``, ``rnn_relu``,
    ``lstm`` or ``gru`` cells: what ``recurrent(inputs, state, lengths)`` computes.

    Args:
        recurrent: the stack; any backend (the graph does not depend on it).
        lengths: take ``lengths`` (batch,) int64, each in 1 … time, as an input
            (ragged rows); False: every row is ``time`` steps long.
        initial_state: take ``h_0`` (and ``c_0`` for the LSTM), ``(L·D, batch, H)``,
            as inputs; False: the zero state, as ``state=None``.

    Returns:
        The model: inputs ``inputs`` [``lengths``] [``h_0`` [``c_0``]], outputs
        ``outputs`` (batch, time, D·H), ``h_n`` [``c_n``] (L·D, batch, H); for a stack
        built with ``batch_first=False`` (as ``Recurrent.from_torch`` of a seq-first
        module), ``inputs`` and ``outputs`` are (time, batch, ·), as the module's.
    """
    kind = _check_stack(recurrent)
    g = _Graph()
    seq_first = not recurrent.batch_first
    layout = [TIME, BATCH] if seq_first else [BATCH, TIME]
    x = g.input("inputs", np.float32, [*layout, recurrent.input_size])
    if seq_first:
        x = g.op("Transpose", x, perm=[1, 0, 2], hint="batch_first")  # (B, T, I)
    n = g.input("lengths", np.int64, [BATCH]) if lengths else None
    state = _state_shape(recurrent)
    h_0 = g.input("h_0", np.float32, state) if initial_state else None
    c_0 = g.input("c_0", np.float32, state) if initial_state and kind is LSTMCell else None
    outputs, h_n, c_n, _ = _recurrent(g, recurrent, x, n, h_0=h_0, c_0=c_0)
    if seq_first:
        outputs = g.op("Transpose", outputs, perm=[1, 0, 2], hint="seq_first")  # (T, B, D·H)
    features = recurrent.num_directions * recurrent.hidden_size
    g.output(outputs, "outputs", np.float32, [*layout, features])
    g.output(h_n, "h_n", np.float32, state)
    if c_n is not None:
        g.output(c_n, "c_n", np.float32, state)
    return g.model("rnnkit.Recurrent", f"rnnkit {recurrent!r}")


# --------------------------------------------------------------------------- task models


def _embedded(g: _Graph, layer: nn.Module, x: str, what: str) -> str:
    """An input layer (an ``Embedding``, the identity, dropouts, a ``Sequential`` of them)."""
    if isinstance(layer, nn.Embedding):
        return g.op("Gather", g.weight(f"{what}.weight", layer.weight), x, axis=0, hint=what)
    if isinstance(layer, nn.Identity | nn.Dropout | WordDropout):
        return x  # the identity in eval mode
    if isinstance(layer, nn.Sequential):
        for index, part in enumerate(layer):
            x = _embedded(g, part, x, f"{what}.{index}")
        return x
    raise ValueError(f"export: expected an Embedding input layer, got {type(layer).__name__}")


def _embedding(layer: nn.Module) -> nn.Embedding | None:
    """The ``Embedding`` of an input layer, or None for real-valued inputs."""
    if isinstance(layer, nn.Embedding):
        return layer
    if isinstance(layer, nn.Sequential):
        found = [e for e in map(_embedding, layer) if e is not None]
        return found[0] if found else None
    return None


def _classifier(g: _Graph, model: SequenceClassifier) -> None:
    encoder = model.encoder
    embedding = _embedding(model.inputs)
    if embedding is not None:
        x = g.input("tokens", np.int64, [BATCH, TIME])
    else:
        x = g.input("inputs", np.float32, [BATCH, TIME, encoder.input_size])
    lengths = g.input("lengths", np.int64, [BATCH])
    embedded = _embedded(g, model.inputs, x, "inputs")
    outputs, h_n, _, valid = _recurrent(g, encoder, embedded, lengths, hint="encoder")
    assert valid is not None
    D = encoder.num_directions
    pooling = model.pooling.inner if isinstance(model.pooling, PooledDropout) else model.pooling
    if isinstance(pooling, LastPooling):  # [→h at the last step, ←h at step 0] of the last layer
        rows = encoder.num_layers * D
        axis = g.ints("axis_0", 0)
        last = g.op("Slice", h_n, g.ints("from", rows - D), g.ints("to", rows), axis)  # (D, B, H)
        final = g.op("Transpose", last, perm=[1, 0, 2], hint="final")  # (B, D, H)
        pooled = g.op("Reshape", final, g.ints("shape", 0, -1), hint="pooled")  # (B, D·H)
    elif isinstance(pooling, MeanPooling):
        total = g.op("ReduceSum", outputs, g.ints("axis_1", 1), keepdims=0, hint="total")
        count = g.op("Cast", lengths, to=g.onnx.TensorProto.FLOAT, hint="count")
        count = g.op("Unsqueeze", count, g.ints("axis_1", 1), hint="count")  # (B, 1)
        pooled = g.op("Div", total, count, hint="pooled")
    elif isinstance(pooling, MaxPooling):
        mask = g.op("Unsqueeze", valid, g.ints("axis_2", 2), hint="valid")  # (B, T, 1)
        low = g.scalar("minus_inf", -np.inf, np.float32)
        hidden = g.op("Where", mask, outputs, low, hint="hidden")
        pooled = g.op("ReduceMax", hidden, axes=[1], keepdims=0, hint="pooled")
    elif isinstance(pooling, AttentionPooling):
        projected = g.op("Tanh", g.linear(outputs, pooling.proj, "pooling.proj"), hint="proj")
        scored = g.linear(projected, pooling.score, "pooling.score")  # (B, T, 1)
        scores = g.op("Squeeze", scored, g.ints("axis_2", 2), hint="scores")  # (B, T)
        low = g.scalar("minus_inf", -np.inf, np.float32)
        masked = g.op("Where", valid, scores, low, hint="scores")
        alpha = g.op("Softmax", masked, axis=1, hint="alpha")  # (B, T)
        row = g.op("Unsqueeze", alpha, g.ints("axis_1", 1), hint="alpha")  # (B, 1, T)
        weighted = g.op("MatMul", row, outputs, hint="pooled")  # (B, 1, F)
        pooled = g.op("Squeeze", weighted, g.ints("axis_1", 1), hint="pooled")  # (B, F)
    else:
        raise ValueError(f"export: expected last, mean, max or attention pooling, got "
                         f"{type(pooling).__name__}")  # fmt: skip
    head = model.head
    logits = g.linear(pooled, head.out, "head.out")
    if isinstance(head, BinaryHead):
        logits = g.op("Squeeze", logits, g.ints("axis_1", 1), hint="logits")  # (B,)
        g.output(logits, "logits", np.float32, [BATCH])
        g.output(g.op("Sigmoid", logits), "probabilities", np.float32, [BATCH])
    elif isinstance(head, ClassHead):
        classes = head.out.out_features
        g.output(logits, "logits", np.float32, [BATCH, classes])
        g.output(g.op("Softmax", logits, axis=-1), "probabilities", np.float32, [BATCH, classes])
    elif isinstance(head, RegressionHead):
        g.output(logits, "predictions", np.float32, [BATCH, head.out.out_features])
    else:
        raise ValueError(f"export: expected a binary, multiclass or regression head, got "
                         f"{type(head).__name__}")  # fmt: skip


def _tagger(g: _Graph, model: Tagger) -> None:
    if model.chars is not None:
        raise ValueError("export: a character-aware tagger (char_embed > 0) is not exported")
    tokens = g.input("tokens", np.int64, [BATCH, TIME])
    lengths = g.input("lengths", np.int64, [BATCH])
    embedded = _embedded(g, model.embedding, tokens, "embedding")
    outputs, _, _, valid = _recurrent(g, model.recurrent, embedded, lengths, hint="recurrent")
    assert valid is not None
    emissions = g.linear(outputs, model.output, "output")  # (B, T, C)
    tags = model.output.out_features
    g.output(emissions, "emissions", np.float32, [BATCH, TIME, tags])
    if model.crf is None:
        best = g.op("ArgMax", emissions, axis=2, keepdims=0, hint="best")  # (B, T) int64
        zero = g.scalar("zero", 0, np.int64)
        g.output(g.op("Where", valid, best, zero, hint="tags"), "tags", np.int64, [BATCH, TIME])


def _language_model_step(g: _Graph, model: LanguageModel) -> None:
    rnn = model.rnn
    kind = _check_stack(rnn)
    if not isinstance(model.out, nn.Linear):
        raise ValueError(
            "export: the language model's adaptive softmax is not exported (a full "
            "softmax is: train without adaptive_cutoffs)"
        )
    tokens = g.input("tokens", np.int64, [BATCH])
    state = _state_shape(rnn)
    h_0 = g.input("h_0", np.float32, state)
    c_0 = g.input("c_0", np.float32, state) if kind is LSTMCell else None
    e = _embedded(g, model.embedding, tokens, "embedding")  # (B, E)
    x = g.op("Unsqueeze", e, g.ints("axis_0", 0), hint="step")  # (1, B, E), time-major
    y, h_n, c_n = _stack(g, rnn, x, lengths=None, h_0=h_0, c_0=c_0, hint="rnn")
    o = g.op("Squeeze", y, g.ints("axis_0", 0), hint="o")  # (B, H)
    if isinstance(model.project, nn.Linear):
        o = g.linear(o, model.project, "project")
    elif not isinstance(model.project, nn.Identity):
        raise ValueError(
            f"export: expected a Linear projection, got {type(model.project).__name__}"
        )
    logits = g.linear(o, model.out, "out")
    g.output(logits, "logits", np.float32, [BATCH, model.out.out_features])
    g.output(h_n, "h_n", np.float32, state)
    if c_n is not None:
        g.output(c_n, "c_n", np.float32, state)


def to_onnx(model: nn.Module) -> onnx.ModelProto:
    """The ONNX graph of a stack or a task model (see the module docstring for each).

    ``Recurrent``: with ``lengths`` and without initial-state inputs
    (:func:`recurrent_to_onnx` for the other forms). A torch.nn or :mod:`rnnkit.nn`
    ``RNN``, ``LSTM`` or ``GRU`` goes through :meth:`Recurrent.from_torch` (its
    layout kept). Raises ValueError for a model
    ONNX's recurrent operators cannot express (a cell of your own, the minimal or
    projected cells, an encoder–decoder) and when onnx is not installed.
    """
    if isinstance(model, Recurrent):
        return recurrent_to_onnx(model)
    if isinstance(model, nn.RNNBase):
        if getattr(model, "proj_size", 0):
            raise ValueError("export: ONNX's LSTM has no projection; proj_size > 0 cannot export")
        return recurrent_to_onnx(Recurrent.from_torch(model))
    builders: list[tuple[type[nn.Module], Any, str]] = [
        (SequenceClassifier, _classifier, "rnnkit.SequenceClassifier"),
        (Tagger, _tagger, "rnnkit.Tagger"),
        (LanguageModel, _language_model_step, "rnnkit.LanguageModel.decode_step"),
    ]
    for kind, build, name in builders:
        if isinstance(model, kind):
            g = _Graph()
            with torch.no_grad():
                build(g, model)
            return g.model(name, f"rnnkit {type(model).__name__}, eval mode")
    raise ValueError(f"export: expected {_MODELS}, got a {type(model).__name__}")


def save_onnx(
    graph: onnx.ModelProto, path: Path | str, *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write a graph of :func:`to_onnx` to ``path``, its weights inside; return the path.

    ``metadata``: key → text pairs stored in the file's ``metadata_props`` (what
    ``rnnkit export`` puts there: the run's task, configuration and assets, so a
    reader can map words to the ``tokens`` ids and the outputs back to labels).
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(
            f"export: expected a file name for the ONNX model, got the folder {target}"
        )
    if not target.parent.is_dir():
        raise ValueError(f"export: expected an existing folder for {target}, got none at "
                         f"{target.parent}")  # fmt: skip
    onnx_module = require_onnx()
    if metadata:
        onnx_module.helper.set_model_props(graph, dict(metadata))
    onnx_module.save_model(graph, str(target))
    return target


def describe(model: onnx.ModelProto) -> list[str]:
    """One line per graph input and output: ``input tokens int64 (batch, time)``."""
    onnx_module = require_onnx()
    lines = []
    for role, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            tensor = value.type.tensor_type
            dims = ", ".join(d.dim_param or str(d.dim_value) for d in tensor.shape.dim)
            dtype = onnx_module.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            lines.append(f"{role} {value.name} {dtype} ({dims})")
    return lines
