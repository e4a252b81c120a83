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

import rnnkit.tuning as tuning
from rnnkit.bptt import compiled, scan
from rnnkit.bptt.fused import FusedBatch, fused_supported
from rnnkit.cells import CELL_NAMES, CellFactory, GRUCell, LSTMCell, RNNCell, cell_factory
from rnnkit.native import NativeBatch, native_kernel
from rnnkit.state import check_state_like, map_state, stack_states
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


class Directions:
    """The :class:`Runner` of a :class:`DirectionRunner`, as Flax's ``Bidirectional``.

    Each direction of a layer runs on its own: direction 0 left to right,
    direction 1 right to left (over each row's own valid part), from its own
    initial state ``l·D + d``; their outputs are concatenated in that order.
    """

    __slots__ = ("direction", "finish", "inputs", "state")

    def __init__(self, runner: DirectionRunner) -> None:
        self.inputs = runner.inputs
        self.state = runner.state
        self.direction = runner.direction
        self.finish = runner.finish

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


@dataclass(frozen=True)
class RecurrentConfig:
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
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    bias: bool = True
    backend: str = "auto"

    def __post_init__(self) -> None:
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
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, int | float)
            or not 0.0 <= self.dropout <= 1.0
        ):
            raise ValueError(f"dropout: expected a number in [0, 1], got {self.dropout!r}")
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )


class Recurrent(nn.Module):
    """A stack of ``num_layers`` × ``D`` recurrent cells over batch-first sequences.

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
            autograd Function per layer and direction. Built-in cells of one kind.
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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(cell, str):
            config = RecurrentConfig(
                cell, input_size, hidden_size, num_layers, bidirectional, dropout, bias, backend
            )
            factory = cell_factory(cell, bias=bias)
            self.cell_name: str | None = cell
        elif callable(cell):
            if not bias:
                raise ValueError("bias: a cell factory configures its own bias; pass bias=True")
            # Validate the shared fields through the same dataclass, with a stand-in name.
            config = RecurrentConfig(
                "rnn", input_size, hidden_size, num_layers, bidirectional, dropout, bias, backend
            )
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
        self.cells = nn.ModuleList(
            factory(input_size if layer == 0 else self.num_directions * hidden_size, hidden_size)
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
                input_size if index < self.num_directions else self.num_directions * hidden_size
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
        * otherwise (no inputs, ``RNNKIT_TUNE=0``, ``rnnkit.tuning.set_enabled(False)``,
          under autocast or ``torch.use_deterministic_algorithms(True)``, on
          devices other than the CPU and CUDA, or while ``torch.jit`` or
          ``torch.compile`` traces) the static rule, from
          BENCHMARKS.md's measurements on the CPU: ``"fused"`` for the RNN and GRU;
          for the LSTM, ``"fused"`` for training steps (grad enabled) when the
          compiled loops (:mod:`rnnkit.bptt.compiled`) are available and torch.nn's
          kernel (``"native"``) otherwise. On any other device than the CPU
          (``device``, default: the inputs', else the parameters'), ``"native"``.

        Raises:
            ValueError: ``"native"`` or ``"fused"`` was asked for and cannot run
                this stack; the message says why.
        """
        if self.backend == "unrolled":
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
        if (
            inputs is None
            or not tuning.is_enabled()
            or torch._C._get_tracing_state() is not None  # torch.jit.trace records one path
            or torch.compiler.is_compiling()
            or device.type not in ("cpu", "cuda")  # meta, fake or untimed devices
            # A seed must reproduce its run bit for bit, whatever a timing says.
            or torch.are_deterministic_algorithms_enabled()
            # Under autocast the candidates differ in precision, not only in speed.
            or torch.is_autocast_enabled(device.type)
        ):
            return self._static_backend(device)
        training = torch.is_grad_enabled() and (
            inputs.requires_grad or any(p.requires_grad for p in self.parameters())
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
        if device.type != "cpu":
            return "native"
        cells = list(self.cells)
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
            cell=self.cell_name or type(self.cells[0]).__name__,
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
            inputs: ``(B, T, I)``.
            state: initial state with fields ``(L·D, B, H)``; ``None`` for zeros.
            lengths: ``(B,)`` valid lengths in ``1 … T``; ``None`` when all are ``T``.

        Returns:
            ``(outputs (B, T, D·H), final_state)`` as described in the class docstring.
        """
        batch, steps = check_inputs(self, inputs)
        checked = None if lengths is None else check_lengths(lengths, batch, steps)
        if checked is not None and int(checked.min()) == steps:
            checked = None  # all rows full length: no masking or packing needed
        reference = self.initial_state(batch, device=inputs.device, dtype=inputs.dtype)
        if state is None:
            state = reference
        else:
            check_state_like(state, reference)

        backend = self.resolve_backend(inputs.device, inputs=inputs, lengths=checked)
        cells = list(self.cells)
        return self._stack(cells, self._runner(backend, cells, inputs, state, checked))

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
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0.0:
                x = F.dropout(x, self.dropout, self.training)
            x, final = run.layer(layer, cells[layer * D : (layer + 1) * D], x)
            finals.append(final)
        if len(finals) > 1:
            final = type(final)(*(torch.cat(fields) for fields in zip(*finals, strict=True)))
        return run.finish(x, final)

    # ----------------------------------------------------------------- torch.nn interop

    @classmethod
    def from_torch(cls, module: nn.Module, backend: Backend | str = "auto") -> Recurrent:
        """A ``Recurrent`` with the same configuration and (copied) weights as a torch.nn RNN.

        Accepts ``nn.RNN`` (tanh or relu), ``nn.LSTM`` (without ``proj_size``) and
        ``nn.GRU``, batch-first or not; the result is always batch-first. The
        training/eval mode is copied too.
        """
        if isinstance(module, nn.LSTM):
            if module.proj_size:
                raise ValueError("from_torch: nn.LSTM with proj_size > 0 is not supported")
            name = "lstm"
        elif isinstance(module, nn.GRU):
            name = "gru"
        elif isinstance(module, nn.RNN):
            name = "rnn" if module.nonlinearity == "tanh" else "rnn_relu"
        else:
            raise ValueError(
                f"from_torch: expected nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}"
            )
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
        """The equivalent ``torch.nn`` module (batch_first=True) holding a copy of the weights."""
        if self.cell_name is None or not all(
            type(cell) in (RNNCell, LSTMCell, GRUCell) for cell in self.cells
        ):
            raise ValueError("to_torch: only stacks of built-in cells have a torch.nn equivalent")
        module_type, extra = _TORCH_MODULES[self.cell_name]
        like = next(self.parameters())
        module = module_type(
            self.input_size,
            self.hidden_size,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=True,
            # torch.nn warns about dropout on a single layer, where it has no effect.
            dropout=self.dropout if self.num_layers > 1 else 0.0,
            bidirectional=self.bidirectional,
            device=like.device,
            dtype=like.dtype,
            **extra,
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
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)
