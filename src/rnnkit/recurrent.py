"""``Recurrent``: layers × directions of any cell, with a choice of backend."""

from __future__ import annotations

import contextlib
import copy
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit.tuning as tuning
from rnnkit.bptt import compiled, ops, scan
from rnnkit.bptt.fused import FusedBatch, fused_supported
from rnnkit.cells import (
    CELL_NAMES,
    MINIMAL_CELL_NAMES,
    CellFactory,
    GRUCell,
    LSTMCell,
    ProjectedLSTMCell,
    RNNCell,
    cell_factory,
)
from rnnkit.cells.zoneout import Zoneout
from rnnkit.native import NativeBatch, native_kernel
from rnnkit.state import LSTMState, check_state_like, map_state, stack_states
from rnnkit.unrolling import Lengths, check_inputs, check_lengths, unroll

Backend = Literal["auto", "unrolled", "native", "fused", "scan"]
BACKENDS: tuple[str, ...] = ("auto", "unrolled", "native", "fused", "scan")

# torch.nn's module for each built-in cell name, for from_torch/to_torch.
_TORCH_MODULES: dict[str, tuple[Callable[..., nn.RNNBase], dict[str, Any]]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}


def is_exporting() -> bool:
    """Whether torch.onnx's TorchScript exporter or torch.export traces this call."""
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


class Runner(Protocol):
    """One backend's run of one forward call, as :meth:`Recurrent._stack`'s loop uses it.

    Made once per call, it holds the batch in the backend's layout (batch-first,
    time-major and sorted, packed) and the initial state with its rows in the
    backend's order. The loop asks it for one layer at a time, applies dropout
    between layers itself (elementwise, so on any layout), and hands it the last
    layer's outputs and all the final states to put back into ``(B, T, D·H)`` and
    the caller's row order.
    """

    inputs: Tensor  # layer 0's input, in the runner's layout
    state: Any  # the initial state, every field (L·D, B, H), rows in the runner's order

    def layer(self, index: int, cells: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Any]:
        """Layer ``index``'s D cells (left to right first) over x, the runner's layout.

        Returns ``(outputs, final)``: D·H features per position, concatenated in the
        cells' order (torch.nn's layout), and the layer's final state, fields
        ``(D, B, H)``.
        """
        ...

    def finish(self, outputs: Tensor, final: Any) -> tuple[Tensor, Any]:
        """``(B, T, D·H)`` outputs and the ``(L·D, B, H)`` final state, in the caller's order."""
        ...

    def locked(self, mask: Tensor) -> Tensor:
        """A mask of one row per sequence, ``(B, F)`` in the caller's row order, as a
        tensor that broadcasts over the runner's layout of a layer's input (locked
        dropout: the same mask at every step)."""
        ...


class DirectionRunner(Protocol):
    """A backend that runs one direction of one layer at a time (see :class:`Directions`)."""

    inputs: Tensor  # layer 0's input, in the runner's layout
    state: Any  # the initial state, every field (L·D, B, H), rows in the runner's order

    def direction(
        self, cell: nn.Module, x: Tensor, state: Any, reverse: bool
    ) -> tuple[Tensor, Any]:
        """One cell over x, right to left if ``reverse``: (outputs, H features; final (B, H))."""
        ...

    def finish(self, outputs: Tensor, final: Any) -> tuple[Tensor, Any]: ...

    def locked(self, mask: Tensor) -> Tensor: ...


class Directions:
    """The :class:`Runner` of a :class:`DirectionRunner`, as Flax's ``Bidirectional``.

    Each direction of a layer runs on its own: direction 0 left to right,
    direction 1 right to left (over each row's own valid part), from its own
    initial state ``l·D + d``; their outputs are concatenated in that order.
    """

    __slots__ = ("direction", "finish", "inputs", "locked", "state")

    def __init__(self, runner: DirectionRunner) -> None:
        self.inputs = runner.inputs
        self.state = runner.state
        self.direction = runner.direction
        self.finish = runner.finish
        self.locked = runner.locked

    def layer(self, index: int, cells: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Any]:
        first = index * len(cells)
        outputs, finals = [], []
        for direction, cell in enumerate(cells):
            start = map_state(operator.itemgetter(first + direction), self.state)  # (B, H)
            output, final = self.direction(cell, x, start, direction == 1)
            outputs.append(output)
            finals.append(final)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1), stack_states(finals)


class Unrolled:
    """The unrolled backend's :class:`DirectionRunner`: :func:`~rnnkit.unroll`, batch-first."""

    __slots__ = ("inputs", "lengths", "state")

    def __init__(self, inputs: Tensor, state: Any, lengths: Tensor | None) -> None:
        self.inputs = inputs  # (B, T, I)
        self.state = state
        self.lengths = lengths

    def direction(
        self, cell: nn.Module, x: Tensor, state: Any, reverse: bool
    ) -> tuple[Tensor, Any]:
        return unroll(cell, x, state, self.lengths, reverse=reverse)  # (B, T, H)

    def finish(self, outputs: Tensor, final: Any) -> tuple[Tensor, Any]:
        return outputs, final

    def locked(self, mask: Tensor) -> Tensor:
        return mask[:, None]  # (B, 1, F)


@dataclass(frozen=True, kw_only=True)
class Regularisers:
    """The stack's regularisers besides ``dropout``, in every configuration that builds
    a :class:`Recurrent` (:class:`RecurrentConfig` and each model's): keyword-only
    fields, so a subclass's own fields keep their positions.

    Attributes:
        locked_dropout: ``dropout`` between layers draws one mask per sequence, the
            same at every step (Gal & Ghahramani 2016), instead of one per position.
        weight_drop: DropConnect on W (``weight_hh``), one mask per forward call, in
            training (Wan et al. 2013; AWD-LSTM's weight drop); 0 for none.
        zoneout: each state unit keeps its previous value with this probability, per
            step (:class:`~rnnkit.cells.zoneout.Zoneout`); 0 for none. Its masks are
            drawn per step, inside the loop through time, so it runs on
            ``"unrolled"`` only (``"auto"`` picks it; the other backends refuse it).
    """

    locked_dropout: bool = False
    weight_drop: float = 0.0
    zoneout: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.locked_dropout, bool):
            raise ValueError(f"locked_dropout: expected True or False, got {self.locked_dropout!r}")
        _check_probability(self, "weight_drop")
        _check_probability(self, "zoneout")

    def regularisers(self) -> dict[str, Any]:
        """The fields as keyword arguments of :class:`Recurrent`."""
        return {"locked_dropout": self.locked_dropout, "weight_drop": self.weight_drop,
                "zoneout": self.zoneout}  # fmt: skip


@dataclass(frozen=True)
class RecurrentConfig(Regularisers):
    """Everything that defines a :class:`Recurrent` stack of built-in cells.

    Attributes:
        cell: ``"rnn"`` (tanh), ``"rnn_relu"``, ``"lstm"``, ``"gru"``, or a minimal
            cell: ``"mingru"``, ``"minlstm"``, ``"mingru_log"``, ``"minlstm_log"``.
        input_size: I, features per step of the input.
        hidden_size: H, per direction; the stack's outputs have D·H features.
        num_layers: L; layer l > 0 reads layer l−1's outputs.
        bidirectional: D = 2 when true (a right-to-left pass per layer), else 1.
        dropout: dropout on the inputs of layers 1 … L−1 during training, as torch.nn.
        bias: learn b; ``False`` matches torch.nn's ``bias=False``.
        backend: ``"auto"``, ``"unrolled"``, ``"native"``, ``"fused"`` or ``"scan"``
            (see :class:`Recurrent`).
        proj_size: P > 0 projects each LSTM layer's output to P units
            (``nn.LSTM(proj_size=P)``); 0, the default, for none. LSTM only.
        batch_first: inputs and outputs ``(B, T, ·)`` (the default), else
            ``(T, B, ·)``, torch.nn's default.
        locked_dropout, weight_drop, zoneout: the regularisers
            (:class:`Regularisers`), keyword-only.
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    bias: bool = True
    backend: str = "auto"
    proj_size: int = 0
    batch_first: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cell not in CELL_NAMES:
            raise ValueError(f"cell: expected one of {', '.join(CELL_NAMES)}, got {self.cell!r}")
        from rnnkit.configuration import MAX_LAYERS, check_positive_ints, check_sizes

        check_positive_ints(self, "input_size")
        check_sizes(self, "hidden_size")  # ≤ 2^16: see rnnkit.configuration.MAX_WIDTH
        check_sizes(self, "num_layers", at_most=MAX_LAYERS)
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"bidirectional: expected True or False, got {self.bidirectional!r}")
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias: expected True or False, got {self.bias!r}")
        _check_probability(self, "dropout", closed=True)
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if not isinstance(self.batch_first, bool):
            raise ValueError(f"batch_first: expected True or False, got {self.batch_first!r}")
        if self.zoneout and self.backend in ("native", "fused", "scan"):
            raise ValueError(
                f"zoneout: draws its masks per step inside the loop through time, which "
                f"only the unrolled backend runs; got backend {self.backend!r}"
            )
        if self.weight_drop and self.cell in MINIMAL_CELL_NAMES:
            raise ValueError(
                f"weight_drop: the {self.cell} cell has no W (its gates read x_t alone)"
            )
        if (
            isinstance(self.proj_size, bool)
            or not isinstance(self.proj_size, int)
            or self.proj_size < 0
        ):
            raise ValueError(f"proj_size: expected an int >= 0, got {self.proj_size!r}")
        if self.proj_size:
            if self.cell != "lstm":
                raise ValueError(
                    f"proj_size: only the LSTM has a projection, got cell {self.cell!r}"
                )
            if self.proj_size >= self.hidden_size:
                raise ValueError(
                    f"proj_size: expected less than hidden_size {self.hidden_size}, "
                    f"got {self.proj_size}"
                )


def _check_probability(config: object, name: str, closed: bool = False) -> None:
    """The field is a number in [0, 1), or [0, 1] when ``closed``."""
    value = getattr(config, name)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        bounds = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name}: expected a number in {bounds}, got {value!r}")


class Recurrent(nn.Module):
    """A stack of ``num_layers`` × ``D`` recurrent cells over sequences, batch-first by default.

    ``Recurrent("lstm", I, H, num_layers=2, bidirectional=True)`` computes what
    ``torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)``
    computes, parameter for parameter (see :meth:`from_torch` and :meth:`to_torch`),
    and also runs any cell that follows the protocol of :mod:`rnnkit.cells.base`.

    Shapes:
        inputs ``(B, T, I)`` → outputs ``(B, T, D·H)``: for each step, the forward
        direction's h_t in features ``0 … H−1`` and the backward direction's in
        ``H … 2H−1`` (torch.nn's layout). Past a row's length, outputs are zero.

        ``final_state`` has the cell's state type (``HiddenState`` or
        ``LSTMState``) with every field ``(L·D, B, H)``; index ``l·D + d`` is layer
        ``l``, direction ``d`` (0 = left to right, 1 = right to left), exactly
        torch.nn's ``h_n``/``c_n``. For a ragged batch it is each row's state at
        its last valid step (step 0 for the backward direction).

        ``batch_first=False`` takes and returns ``(T, B, ·)`` instead, torch.nn's
        default layout (a transposed view: the backends run what they run).
        ``proj_size=P`` (LSTM only) makes every layer a
        :class:`~rnnkit.cells.ProjectedLSTMCell`: outputs ``D·P`` features and
        ``h`` fields ``(L·D, B, P)``, as ``nn.LSTM(proj_size=P)``; it runs on
        ``"native"`` (``"auto"`` picks it) and ``"unrolled"``.

    Backends (all compute the same numbers; tests tie them to torch.nn). One loop,
    :meth:`_stack`, runs the layers for every backend (dropout between layers, the
    final states in torch.nn's order); each backend supplies a :class:`Runner`,
    made once per call, that holds the batch in its own layout and runs one layer:
        ``"unrolled"``: the explicit Python loop of :func:`rnnkit.unroll`, per layer
            and direction; autograd gives BPTT. Runs any cell.
        ``"native"``: torch.nn's kernels (:mod:`rnnkit.native`) called on this
            module's own parameters, one call per layer (both directions at
            once). Only for built-in cells of one kind.
        ``"fused"``: rnnkit's hand-derived BPTT (:mod:`rnnkit.bptt.fused`), one
            ``torch.library`` custom op per layer and direction (``rnnkit::fused_lstm``
            and friends, with fake kernels and registered autograd, so
            ``torch.compile(fullgraph=True)`` traces them). Built-in cells of one kind.
        ``"scan"``: the minimal cells (``"mingru"``, ``"minlstm"`` and their log
            forms) only: every step's gates in one matrix multiply, then a scan
            over time with a hand-derived backward (:mod:`rnnkit.bptt.scan`), per
            layer and direction. ``"auto"`` always picks it for those cells; the
            other backends but ``"unrolled"`` cannot run them.
        ``"auto"`` (the default): the fastest exact backend for the call, measured
            on the machine at hand (:mod:`rnnkit.tuning`, like cuDNN's benchmark
            mode). The first forward with a new key (cell, L, D, I, H, dtype,
            device, threads, training or no-grad, B and T rounded up to powers of
            two, ragged or not) times ``"fused"`` and ``"native"`` on random inputs
            of its shape (forward and backward when a backward will follow), then
            keeps the winner for the process and in a per-machine table on disk
            that ``rnnkit backends`` shows. The static rule's choice (see
            :meth:`resolve_backend`) stays unless the other is more than 5 %
            faster, and a key's choice never changes within a process. A cell of
            your own always runs ``"unrolled"``. ``RNNKIT_TUNE=0`` or
            ``rnnkit.tuning.set_enabled(False)`` turns the measuring off (the
            static rule applies); ``backend=`` pins one.

        Under autocast (``--precision bf16``) the backends differ in precision:
        ``"fused"`` runs its recurrence in its parameters' dtype (float32) with
        autocast off, while torch.nn's LSTM and RNN kernels (``"native"``) run in
        bfloat16. ``"auto"`` therefore measures nothing there and applies the
        static rule, as it does under ``torch.use_deterministic_algorithms(True)``
        (``--deterministic``), where a seed must reproduce its run bit for bit.

        Higher derivatives (``create_graph=True``, as a gradient penalty needs) are
        exact on every backend on the CPU: autograd's for ``"unrolled"`` and
        ``"native"``, and ``"fused"`` replays its forward in autograd ops when a
        backward builds a graph (:mod:`rnnkit.bptt.fused`), so ``"auto"`` needs no
        other rule. On CUDA, cuDNN (``"native"``, and ``"auto"`` when it chooses
        it) has no double backward:
        torch raises ``NotImplementedError`` at the second backward; ``"fused"`` or
        ``"unrolled"`` compute it there.

    Args:
        cell: a built-in cell name (``"rnn"``, ``"rnn_relu"``, ``"lstm"``, ``"gru"``,
            ``"mingru"``, ``"minlstm"``, ``"mingru_log"``, ``"minlstm_log"``) or a
            factory ``(input_size, hidden_size) -> cell``.
        input_size: I.
        hidden_size: H, per direction.
        num_layers: L.
        bidirectional: two directions per layer.
        dropout: on the inputs of every layer but the first, in training mode.
        backend: ``"auto"``, ``"unrolled"``, ``"native"``, ``"fused"`` or ``"scan"``.
        bias: for named cells, learn b; a factory configures its own cells.
        proj_size: P > 0 projects each LSTM layer's output to P units (see above).
        batch_first: ``(B, T, ·)`` inputs and outputs when true (the default), else
            ``(T, B, ·)``.
        locked_dropout: the dropout between layers keeps one mask per sequence for
            every step (variational dropout), on every backend.
        weight_drop: in training, W (each cell's ``weight_hh``) is multiplied by a
            Bernoulli(1 − p) mask / (1 − p), drawn once per forward call and shared
            by every step: the backends run W's dropped copy unchanged (the fused
            loops keep their speed), and its gradient reaches W through the mask.
    """

    def __init__(
        self,
        cell: str | CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        backend: Backend | str = "auto",
        *,
        bias: bool = True,
        proj_size: int = 0,
        batch_first: bool = True,
        locked_dropout: bool = False,
        weight_drop: float = 0.0,
        zoneout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(cell, str):
            config = RecurrentConfig(
                cell,
                input_size,
                hidden_size,
                num_layers,
                bidirectional,
                dropout,
                bias,
                backend,
                proj_size,
                batch_first,
                locked_dropout=locked_dropout,
                weight_drop=weight_drop,
                zoneout=zoneout,
            )
            factory = cell_factory(cell, bias=bias, proj_size=proj_size)
            self.cell_name: str | None = cell
        elif callable(cell):
            if not bias:
                raise ValueError("bias: a cell factory configures its own bias; pass bias=True")
            if proj_size:
                raise ValueError("proj_size: a cell factory configures its own cells")
            # Validate the shared fields through the same dataclass, with a stand-in name.
            config = RecurrentConfig(
                "rnn",
                input_size,
                hidden_size,
                num_layers,
                bidirectional,
                dropout,
                bias,
                backend,
                batch_first=batch_first,
                locked_dropout=locked_dropout,
                zoneout=zoneout,
            )
            if weight_drop:
                raise ValueError("weight_drop: only for built-in cells (a factory's own W is "
                                 "not known to be weight_hh)")  # fmt: skip
            factory = cell
            self.cell_name = None
        else:
            raise ValueError(
                f"cell: expected one of {', '.join(CELL_NAMES)} or a cell factory, got {cell!r}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(config.dropout)
        self.bias = bias
        self.backend = config.backend
        self.proj_size = proj_size
        self.batch_first = batch_first
        self.locked_dropout = locked_dropout
        self.weight_drop = float(config.weight_drop)
        self.zoneout = float(config.zoneout)
        # What each direction emits and carries as h: P with a projection, else H.
        self.output_size = proj_size or hidden_size
        self.cells = nn.ModuleList(
            factory(
                input_size if layer == 0 else self.num_directions * self.output_size, hidden_size
            )
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )
        for index, built in enumerate(self.cells):
            for attribute in ("initial_state", "input_size", "hidden_size"):
                if not hasattr(built, attribute):
                    raise ValueError(
                        f"cell: the factory's cell {index} ({type(built).__name__}) has no "
                        f"{attribute!r}; see the cell protocol in rnnkit.cells.base"
                    )
            expected_input = (
                input_size
                if index < self.num_directions
                else self.num_directions * self.output_size
            )
            for attribute, expected in (
                ("input_size", expected_input),
                ("hidden_size", hidden_size),
            ):
                if getattr(built, attribute) != expected:
                    raise ValueError(
                        f"cell: the factory's cell {index} has {attribute} "
                        f"{getattr(built, attribute)}, expected {expected}"
                    )
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)
        if self.backend in ("native", "fused", "scan"):
            self.resolve_backend()  # fail at construction, not at the first batch

    @classmethod
    def from_config(
        cls,
        config: RecurrentConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Recurrent:
        """Build the stack a :class:`RecurrentConfig` describes."""
        return cls(
            config.cell,
            config.input_size,
            config.hidden_size,
            config.num_layers,
            config.bidirectional,
            config.dropout,
            config.backend,
            bias=config.bias,
            proj_size=config.proj_size,
            batch_first=config.batch_first,
            **config.regularisers(),
            device=device,
            dtype=dtype,
        )

    @property
    def config(self) -> RecurrentConfig:
        """This stack as a :class:`RecurrentConfig` (built-in cells only)."""
        if self.cell_name is None:
            raise ValueError("config: a stack built from a cell factory has no named config")
        return RecurrentConfig(
            self.cell_name,
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
            self.dropout,
            self.bias,
            self.backend,
            self.proj_size,
            self.batch_first,
            locked_dropout=self.locked_dropout,
            weight_drop=self.weight_drop,
            zoneout=self.zoneout,
        )

    def resolve_backend(
        self,
        device: torch.device | None = None,
        *,
        inputs: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> str:
        """The backend a forward call would use: ``"native"``, ``"fused"``, ``"scan"`` or
        ``"unrolled"``.

        A pinned backend is returned after checking that it can run this stack. For
        ``"auto"``:

        * a stack of cells of your own: ``"unrolled"``, the only backend that runs it;
        * a stack of minimal cells: ``"scan"``, nothing measured (the alternative,
          ``"unrolled"``, is one small step per time step and never faster);
        * given the call's ``inputs`` ``(B, T, I)`` (and its ``lengths``, checked,
          ``None`` when all are T), with tuning on: the measured choice for the
          call's :class:`~rnnkit.tuning.TuningKey`, timing the candidates now if the
          key is new, exactly as :meth:`forward` does;
        * while ``torch.compile`` traces, a rule dynamo traces without a break:
          on the CPU, ``"fused"`` for the RNN and GRU, and for the LSTM unless grad
          is off and no ``lengths`` are given (then ``"native"``); ``"native"`` on
          other devices and for a projection. That is the static rule below as it
          reads with the compiled loops (inductor needs the C++ compiler they need,
          so the loops are not asked about), except that a ragged batch never goes
          to torch.nn's kernel, whose packing breaks the graph. Nothing is timed or
          looked up. There ``lengths``, when given, are never ``None``, even if all
          are T (Python cannot look at their values);
        * otherwise (no inputs, ``RNNKIT_TUNE=0``, ``rnnkit.tuning.set_enabled(False)``,
          under autocast or ``torch.use_deterministic_algorithms(True)``, on
          devices other than the CPU and CUDA, or while ``torch.jit`` traces) the
          static rule, from BENCHMARKS.md's measurements on the CPU: ``"fused"`` for
          the RNN and GRU; for the LSTM, ``"fused"`` for training steps (grad
          enabled) when the compiled loops (:mod:`rnnkit.bptt.compiled`) are
          available and torch.nn's kernel (``"native"``) otherwise. On any other
          device than the CPU (``device``, default: the inputs', else the
          parameters'), ``"native"``.

        Raises:
            ValueError: ``"native"`` or ``"fused"`` was asked for and cannot run
                this stack; the message says why.
        """
        if self.backend == "unrolled" or self.zoneout:  # zoneout: per-step masks, in unroll
            return "unrolled"
        cells = list(self.cells)
        why_not_scan = scan.scan_supported(cells)
        if self.backend == "scan":
            if why_not_scan:
                raise ValueError(f"backend 'scan' cannot run this stack: {why_not_scan}")
            return "scan"
        if not why_not_scan and self.backend == "auto":
            return "scan"
        if self.backend == "fused":
            why = fused_supported(cells)
            if why:
                raise ValueError(f"backend 'fused' cannot run this stack: {why}")
            return "fused"
        kernel, why = native_kernel(cells)
        if self.backend == "native":
            if kernel is None:
                raise ValueError(f"backend 'native' cannot run this stack: {why}")
            return "native"
        if kernel is None:
            return "unrolled"  # not a built-in stack: only the explicit loop runs it
        if device is None:
            device = inputs.device if inputs is not None else next(self.parameters()).device
        if torch.compiler.is_compiling():
            # The static rule, in what dynamo traces without a break: nothing timed or
            # cached, no look at the lazily built loops (inductor needs the C++
            # compiler they need), and no packed batch for torch.nn's kernel.
            if device.type != "cpu" or fused_supported(cells):  # a why-not: a projection
                return "native"
            inference = not torch.is_grad_enabled() and lengths is None
            return "native" if isinstance(cells[0], LSTMCell) and inference else "fused"
        if (
            inputs is None
            or not tuning.is_enabled()
            or torch._C._get_tracing_state() is not None  # torch.jit.trace records one path
            or device.type not in ("cpu", "cuda")  # meta, fake or untimed devices
            # A seed must reproduce its run bit for bit, whatever a timing says.
            or torch.are_deterministic_algorithms_enabled()
            # Under autocast the candidates differ in precision, not only in speed.
            or torch.is_autocast_enabled(device.type)
        ):
            return self._static_backend(device)
        training = torch.is_grad_enabled() and (
            inputs.requires_grad
            or any(p.requires_grad for c in cells for p in c._parameters.values() if p is not None)
        )
        key = self._tuning_key(inputs, lengths, training)
        tuner = tuning.default_tuner()
        known = tuner.remembered(key)  # the per-call path: one dict look-up after the key
        if known is not None:
            return known
        candidates = ("native",) if fused_supported(cells) else ("fused", "native")
        return tuner.choose(
            key,
            self._static_backend(device),
            candidates,
            lambda: self._timing_runs(inputs, lengths, training),
        )

    def _static_backend(self, device: torch.device) -> str:
        """``"auto"``'s rule without measuring (see :meth:`resolve_backend`)."""
        cells = list(self.cells)
        if device.type != "cpu" or fused_supported(cells):  # a projection: not fused
            return "native"
        if isinstance(cells[0], RNNCell | GRUCell):
            return "fused"
        weight = next(cells[0].parameters())
        lstm_training = torch.is_grad_enabled() and compiled.loops_for(weight) is not None
        return "fused" if lstm_training else "native"

    def _tuning_key(
        self, inputs: Tensor, lengths: Tensor | None, training: bool
    ) -> tuning.TuningKey:
        # check_inputs has made the inputs' dtype the parameters' (and the kernels
        # need one device), so the inputs stand for the weights: no parameter walk.
        dtype = str(inputs.dtype).removeprefix("torch.")
        batch, steps = inputs.shape[0], inputs.shape[1]
        return tuning.TuningKey(
            # A projection changes the kernels and rules fused out: its own key.
            cell=(self.cell_name or type(self.cells[0]).__name__)
            + (f"_proj{self.proj_size}" if self.proj_size else ""),
            layers=self.num_layers,
            directions=self.num_directions,
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            dtype=dtype,
            device=tuning.device_name(inputs.device),
            threads=torch.get_num_threads(),
            training=training,
            batch=tuning.bucket(batch),
            steps=tuning.bucket(steps),
            ragged=lengths is not None,
            loops="compiled" if compiled.loops_for(inputs) is not None else "python",
        )

    @contextlib.contextmanager
    def _timing_runs(
        self, inputs: Tensor, lengths: Tensor | None, training: bool
    ) -> Iterator[dict[str, Callable[[], object]]]:
        """One call of each candidate on random inputs of ``inputs``' shape.

        The runs use private copies of the cells, so the user's ``.grad``, hooks and
        autograd graph are untouched; ``fork_rng`` gives the user's RNG streams back
        unchanged (dropout draws from it). Training runs are forward + backward of
        mean(h²) through :func:`torch.autograd.grad`; the others forward only.
        """
        device = inputs.device
        forked = []  # the CPU generator is always forked; CUDA's of this device too
        if device.type == "cuda":
            forked = [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=forked, device_type=device.type):
            with torch.no_grad():
                cells: list[Any]  # protocol cells: initial_state is not on nn.Module
                try:
                    cells = copy.deepcopy(list(self.cells))
                except RuntimeError:  # a parameter that cannot be copied: time the originals
                    cells = list(self.cells)
                x = torch.randn(inputs.shape, dtype=inputs.dtype, device=device)  # (B, T, I)
            x.requires_grad_(training and inputs.requires_grad)
            wanted: list[Tensor] = [p for c in cells for p in c.parameters() if p.requires_grad]
            wanted += [x] if x.requires_grad else []

            def run(backend: str) -> Callable[[], object]:
                def call() -> None:
                    with torch.set_grad_enabled(training):
                        state = stack_states(
                            [
                                c.initial_state(x.shape[0], device=device, dtype=x.dtype)
                                for c in cells
                            ]
                        )
                        runner = self._runner(backend, cells, x, state, lengths)
                        outputs, _ = self._stack(cells, runner)
                        if training:
                            torch.autograd.grad(outputs.square().mean(), wanted, allow_unused=True)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)

                return call

            yield {"fused": run("fused"), "native": run("native")}

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Any:
        """Each cell's initial state, stacked: every field ``(L·D, B, H)``."""
        cells: list[Any] = list(self.cells)  # protocol cells: initial_state is not on nn.Module
        return stack_states(
            [cell.initial_state(batch_size, device=device, dtype=dtype) for cell in cells]
        )

    def forward(
        self, inputs: Tensor, state: Any = None, lengths: Lengths | None = None
    ) -> tuple[Tensor, Any]:
        """Run the stack.

        Args:
            inputs: ``(B, T, I)``; ``(T, B, I)`` when built with ``batch_first=False``.
            state: initial state with fields ``(L·D, B, H)``; ``None`` for zeros.
            lengths: ``(B,)`` valid lengths in ``1 … T``; ``None`` when all are ``T``.

        Returns:
            ``(outputs (B, T, D·H), final_state)`` as described in the class docstring
            (outputs ``(T, B, D·H)`` when not ``batch_first``).

        Under ``torch.compile(model, fullgraph=True)`` this traces without a graph
        break, and computes what it computes eagerly, on ``"fused"`` and ``"auto"``
        for the RNN, LSTM and GRU (any layers, either direction or both, with or
        without ``lengths``, training or no-grad, autocast, ``batch_first`` either
        way) and on ``"scan"`` (and ``"auto"``) for the minimal cells: their layers
        are ``torch.library`` custom ops (:mod:`rnnkit.bptt.fused`,
        :mod:`rnnkit.bptt.scan`), the lengths are checked by one more op when the
        graph runs (:func:`rnnkit.bptt.ops.checked_lengths`), and ``"auto"`` applies
        its static rule, which never sends a ragged batch to torch.nn's kernel
        (:meth:`resolve_backend`). Pass ``lengths`` as a tensor there: dynamo
        specialises on the values of a list of ints. What does not compile
        without a break: a ragged batch on ``"native"`` (torch.nn's packing) or
        ``"unrolled"`` (its loop reads the lengths' values), a projection
        (``proj_size``), and double backward through a compiled graph (AOTAutograd
        has none; eager mode has it on every backend).

        Under ``torch.onnx.export`` (either exporter) or ``torch.export``, a stack of
        torch.nn's cell kinds runs torch.nn's whole-stack kernel instead
        (:meth:`_exported`), which those tracers know: it exports as the torch.nn
        module of the same configuration does, with that exporter's gaps
        (docs/export.md); :func:`rnnkit.export.to_onnx` writes a graph without them.
        """
        if is_exporting() and native_kernel(list(self.cells))[0] is not None:
            return self._exported(inputs, state, lengths)
        if not self.batch_first:
            if isinstance(inputs, Tensor) and inputs.dim() == 3:
                inputs = inputs.transpose(0, 1)  # (B, T, I), a view
            else:
                got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs)
                raise ValueError(f"inputs: expected (T, B, {self.input_size}), got {got}")
            outputs, final = self._forward(inputs, state, lengths)
            return outputs.transpose(0, 1), final  # (T, B, D·H)
        return self._forward(inputs, state, lengths)

    def _exported(self, inputs: Tensor, state: Any, lengths: Lengths | None) -> tuple[Tensor, Any]:
        """What ``torch.nn.RNN``/``LSTM``/``GRU.forward`` does, on this stack's parameters:
        one kernel call for every layer, zeros made from the inputs' (symbolic) batch
        size, and a ragged batch packed as torch.nn packs it; dropout as torch.nn's."""
        kernel, _ = native_kernel(list(self.cells))
        assert kernel is not None
        batch_dim = 0 if self.batch_first else 1
        rows = inputs.shape[batch_dim]
        if state is None:
            state = map_state(
                lambda field: inputs.new_zeros(field.shape[0], rows, field.shape[2]),
                self.initial_state(1, device=inputs.device, dtype=inputs.dtype),
            )
        weights = [p for cell in self.cells for _, p in cell.named_parameters()]
        has_biases = any(n.startswith("bias") for n, _ in self.cells[0].named_parameters())
        hx = (state.h, state.c) if isinstance(state, LSTMState) else state.h
        options = (has_biases, self.num_layers, self.dropout, self.training, self.bidirectional)
        if lengths is None:
            result = kernel(inputs, hx, weights, *options, self.batch_first)
            return result[0], type(state)(*result[1:])
        given = lengths if isinstance(lengths, Tensor) else torch.tensor(list(lengths))
        packed = pack_padded_sequence(inputs, given.cpu(), self.batch_first, enforce_sorted=False)
        assert packed.sorted_indices is not None and packed.unsorted_indices is not None
        order, unorder = packed.sorted_indices, packed.unsorted_indices
        if isinstance(hx, tuple):
            hx = tuple(h.index_select(1, order) for h in hx)
        else:
            hx = hx.index_select(1, order)
        result = kernel(packed.data, packed.batch_sizes, hx, weights, *options)
        # The TorchScript tracer cannot compare a traced T with the longest row: there
        # the outputs have max(lengths) steps, as torch.nn's pad_packed_sequence gives.
        steps = None if torch.onnx.is_in_onnx_export() else inputs.shape[1 - batch_dim]
        outputs, _ = pad_packed_sequence(
            PackedSequence(result[0], packed.batch_sizes, order, unorder),
            self.batch_first,
            total_length=steps,
        )
        return outputs, type(state)(*(field.index_select(1, unorder) for field in result[1:]))

    def _forward(
        self, inputs: Tensor, state: Any = None, lengths: Lengths | None = None
    ) -> tuple[Tensor, Any]:
        """:meth:`forward` on batch-first inputs ``(B, T, I)``."""
        batch, steps = check_inputs(self, inputs)
        if lengths is None:
            checked = None
        elif torch.compiler.is_compiling():
            # No value may reach Python while dynamo traces: an op checks the lengths
            # when the graph runs, and a batch whose rows are all full length stays
            # ragged in form (the fused ops then run the loops of a full batch).
            given = lengths if isinstance(lengths, Tensor) else torch.tensor(list(lengths))
            checked = ops.checked_lengths(given, batch, steps)
        else:
            checked = check_lengths(lengths, batch, steps)
            if int(checked.min()) == steps:
                checked = None  # all rows full length: no masking or packing needed
        reference = self.initial_state(batch, device=inputs.device, dtype=inputs.dtype)
        if state is None:
            state = reference
        else:
            check_state_like(state, reference)

        backend = self.resolve_backend(inputs.device, inputs=inputs, lengths=checked)
        cells = list(self.cells)
        if self.zoneout:  # the unrolled loop steps each cell through a zoneout wrapper
            cells = [Zoneout(cell, self.zoneout).train(self.training) for cell in cells]
        with self._dropped_weights(cells):
            return self._stack(cells, self._runner(backend, cells, inputs, state, checked))

    @contextlib.contextmanager
    def _dropped_weights(self, cells: Sequence[nn.Module]) -> Iterator[None]:
        """Weight drop for one call: each cell runs W ⊙ m / (1 − p) in place of W.

        The cells' ``weight_hh`` entries point at the dropped copies for the call and
        back at the parameters after; the copies are functions of W in the graph, so
        the backward reaches W (times the mask). Nothing happens in eval mode or at
        p = 0."""
        p = self.weight_drop
        if not (self.training and p > 0.0):
            yield
            return
        originals = []
        for wrapped in cells:
            cell = wrapped.cell if isinstance(wrapped, Zoneout) else wrapped
            weight = cell._parameters["weight_hh"]
            assert weight is not None
            keep = torch.empty_like(weight).bernoulli_(1.0 - p)  # (G·H, H)
            originals.append((cell, weight))
            cell._parameters["weight_hh"] = weight * keep / (1.0 - p)  # type: ignore[assignment]
        try:
            yield
        finally:
            for cell, weight in originals:
                cell._parameters["weight_hh"] = weight

    def _runner(
        self,
        backend: str,
        cells: Sequence[nn.Module],
        inputs: Tensor,
        state: Any,
        lengths: Tensor | None,
    ) -> Runner:
        """The backend's runner for one call: its layout of the batch, prepared once."""
        if backend == "fused":
            return Directions(FusedBatch(inputs, state, lengths))
        if backend == "scan":
            return Directions(scan.ScanBatch(inputs, state, lengths))
        if backend == "native":
            kernel, _ = native_kernel(cells)
            assert kernel is not None
            return NativeBatch(kernel, inputs, state, lengths, self.training)
        return Directions(Unrolled(inputs, state, lengths))

    def _stack(self, cells: Sequence[nn.Module], run: Runner) -> tuple[Tensor, Any]:
        """The layers × directions loop of every backend: layer l reads layer l−1's outputs.

        Dropout (training mode only) acts on the inputs of layers 1 … L−1; the runner
        runs each layer's D directions (:meth:`Runner.layer`); the final states are
        joined in torch.nn's order, index l·D + d.
        """
        D = self.num_directions
        x = run.inputs  # layer 0's input, then layer l−1's outputs (D·H features)
        finals: list[Any] = []  # per layer, fields (D, B, H)
        p = self.dropout
        for layer in range(self.num_layers):
            if layer > 0 and p > 0.0 and self.locked_dropout and self.training:
                rows = run.state[0].shape[1]  # B: the state is (L·D, B, H)
                keep = x.new_empty(rows, x.shape[-1]).bernoulli_(1.0 - p)  # (B, D·H)
                x = x * run.locked(keep / (1.0 - p))
            elif layer > 0 and p > 0.0:
                x = F.dropout(x, p, self.training)
            x, final = run.layer(layer, cells[layer * D : (layer + 1) * D], x)
            finals.append(final)
        if len(finals) > 1:
            final = type(final)(*(torch.cat(fields) for fields in zip(*finals, strict=True)))
        return run.finish(x, final)

    # ----------------------------------------------------------------- torch.nn interop

    @classmethod
    def from_torch(cls, module: nn.Module, backend: Backend | str = "auto") -> Recurrent:
        """A ``Recurrent`` with the same configuration and (copied) weights as a torch.nn RNN.

        Accepts ``nn.RNN`` (tanh or relu), ``nn.LSTM`` (with or without ``proj_size``)
        and ``nn.GRU``, and :mod:`rnnkit.nn`'s modules of the same names. The result
        keeps the module's layout: a seq-first module (torch.nn's default,
        ``batch_first=False``) gives a stack that takes and returns ``(T, B, ·)``, so
        the tensors that fed the original feed the copy.
        The training/eval mode and frozen parameters are copied too.
        """
        # By torch.nn's mode, which rnnkit.nn's modules (RNNBase, not nn.LSTM) share.
        modes = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn_relu"}
        if not isinstance(module, nn.RNNBase) or module.mode not in modes:
            raise ValueError(
                f"from_torch: expected nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}"
            )
        name = modes[module.mode]
        like = next(module.parameters())
        result = cls(
            name,
            module.input_size,
            module.hidden_size,
            module.num_layers,
            module.bidirectional,
            module.dropout,
            backend,
            bias=module.bias,
            proj_size=getattr(module, "proj_size", 0),
            batch_first=module.batch_first,
            device=like.device,
            dtype=like.dtype,
        )
        with torch.no_grad():
            for source, parameter in result._torch_names():
                original = getattr(module, source)
                parameter.copy_(original)
                parameter.requires_grad_(original.requires_grad)  # frozen stays frozen
        result.train(module.training)
        return result

    def to_torch(self) -> nn.RNNBase:
        """The equivalent ``torch.nn`` module, of the same layout, holding a copy of the weights."""
        if self.cell_name is None or not all(
            type(cell) in (RNNCell, LSTMCell, GRUCell, ProjectedLSTMCell) for cell in self.cells
        ):
            raise ValueError("to_torch: only stacks of built-in cells have a torch.nn equivalent")
        module_type, extra = _TORCH_MODULES[self.cell_name]
        like = next(self.parameters())
        module = module_type(
            self.input_size,
            self.hidden_size,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            # torch.nn warns about dropout on a single layer, where it has no effect.
            dropout=self.dropout if self.num_layers > 1 else 0.0,
            bidirectional=self.bidirectional,
            device=like.device,
            dtype=like.dtype,
            **extra,
            **({"proj_size": self.proj_size} if self.proj_size else {}),
        )
        with torch.no_grad():
            for source, parameter in self._torch_names():
                getattr(module, source).copy_(parameter)
                getattr(module, source).requires_grad_(parameter.requires_grad)
        module.train(self.training)
        return module

    def _torch_names(self) -> list[tuple[str, nn.Parameter]]:
        """(torch.nn parameter name, this module's parameter), in this module's order."""
        pairs = []
        for index, cell in enumerate(self.cells):
            layer, direction = divmod(index, self.num_directions)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            for name, parameter in cell.named_parameters():
                pairs.append((name + suffix, parameter))
        return pairs

    def extra_repr(self) -> str:
        parts = [
            f"cell={self.cell_name or 'custom'}",
            f"input_size={self.input_size}",
            f"hidden_size={self.hidden_size}",
        ]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if self.bidirectional:
            parts.append("bidirectional=True")
        if self.proj_size:
            parts.append(f"proj_size={self.proj_size}")
        if not self.batch_first:
            parts.append("batch_first=False")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if self.locked_dropout:
            parts.append("locked_dropout=True")
        if self.weight_drop:
            parts.append(f"weight_drop={self.weight_drop}")
        if self.zoneout:
            parts.append(f"zoneout={self.zoneout}")
        parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)
