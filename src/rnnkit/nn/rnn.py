"""``rnnkit.nn.RNN``, ``LSTM`` and ``GRU``: torch.nn's modules, run on rnnkit's backends.

Each class subclasses ``torch.nn.RNNBase``, the base of torch.nn's three, and takes
torch.nn's own checks of its arguments and states (``RNNBase``'s methods, and
``nn.LSTM``'s for the cell state), so everything torch.nn defines about the module
holds unchanged: the constructor and its checks, the parameter names and
``state_dict`` keys (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``),
``all_weights``, ``_flat_weights``, initialisation, ``extra_repr``, pickling,
``.to()``. They are not subclasses of ``nn.LSTM`` itself, on purpose:
``torch.compile`` refuses any instance of ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM``
("Dynamo does not support RNN, GRU, or LSTM"), and these compile whole, without a
graph break (the backends are custom ops). Only ``forward`` is rnnkit's: it hands the
module's own parameters, as they are at that call, to a
:class:`~rnnkit.Recurrent` stack of rnnkit's cells (:meth:`_runner_stack`) and
runs it on the backend the ``backend=`` keyword names (``"auto"`` by default: the
measured choice of :mod:`rnnkit.tuning`). Weights therefore load from and into
torch.nn both ways, and gradients land on the module's own parameters.

What ``forward`` accepts is torch.nn's: ``(T, B, I)`` (or ``(B, T, I)`` with
``batch_first=True``), an unbatched ``(T, I)``, a ``PackedSequence`` (which gives a
``PackedSequence`` back), ``hx`` as ``h_0`` or ``(h_0, c_0)`` (in the caller's row
order, also for a packed batch), and a batch of zero rows. Misuse raises torch.nn's
own errors, with its messages, since the checks are torch.nn's methods
(``check_input``, ``check_forward_args``).

Differences, on purpose or not yet closed:

* dropout between layers draws its masks with ``torch.nn.functional.dropout``,
  layer by layer, so a seed gives other masks than torch.nn's kernel draws (the
  same distribution);
* a batch of zero rows runs torch.nn's own kernel: there is nothing to compute,
  and rnnkit's backends are built for B ≥ 1; so does a call traced by
  ``torch.onnx.export`` or ``torch.export``, whose tracers know torch.nn's kernels
  (``rnnkit.export.to_onnx`` writes a graph without ``torch.onnx.export``'s gaps,
  see docs/export.md);
* ``flatten_parameters()`` does nothing: no backend of rnnkit reads cuDNN's flat
  weight buffer;
* ``isinstance(module, torch.nn.LSTM)`` is false (see above; ``nn.RNNBase`` is
  true);
* ``torch.jit.script`` is not supported.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.recurrent import BACKENDS, Recurrent, is_exporting
from rnnkit.state import HiddenState, LSTMState

# The key of a module's private Recurrent in its __dict__ (kept out of _modules, so
# that state_dict, parameters() and repr are exactly torch.nn's).
_STACK = "_rnnkit_stack"
_CELL_OF_MODE = {"RNN_TANH": "rnn", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}


def check_backend(backend: object) -> str:
    """``backend`` if it names one of :data:`rnnkit.recurrent.BACKENDS` but ``"scan"``."""
    allowed = [name for name in BACKENDS if name != "scan"]
    if backend not in allowed:
        raise ValueError(f"backend: expected one of {', '.join(allowed)}, got {backend!r}")
    return str(backend)


class _OnRnnkit(nn.RNNBase):
    """What :class:`RNN`, :class:`LSTM` and :class:`GRU` add to ``nn.RNNBase``."""

    backend: str
    _torch_forward: Any  # torch.nn's forward of the same class, for what rnnkit leaves to it

    def _runner_stack(self) -> Recurrent:
        """The module's :class:`~rnnkit.Recurrent`, holding the module's parameters now.

        Built once, with its own parameters on the meta device (no memory), and at
        every call given the module's current tensors by name: what ``.to()``,
        ``load_state_dict``, ``torch.func.functional_call``, parametrizations or an
        assignment ``m.weight_hh_l0 = …`` left there is what runs.
        """
        stack: Recurrent | None = self.__dict__.get(_STACK)
        if stack is None:
            stack = Recurrent(
                _CELL_OF_MODE[self.mode],
                self.input_size,
                self.hidden_size,
                self.num_layers,
                self.bidirectional,
                0.0,
                "unrolled",  # set below: nothing to resolve on the meta device
                bias=self.bias,
                proj_size=self.proj_size,
                batch_first=self.batch_first,
                device="meta",
                dtype=getattr(self, self._flat_weights_names[0]).dtype,
            )
            self.__dict__[_STACK] = stack
            self.__dict__["_rnnkit_names"] = [
                (cell._parameters, name, torch_name)
                for (torch_name, _), (cell, name) in zip(
                    stack._torch_names(),
                    [(c, n) for c in stack.cells for n, _ in c.named_parameters()],
                    strict=True,
                )
            ]
        for parameters, name, torch_name in self.__dict__["_rnnkit_names"]:
            parameters[name] = getattr(self, torch_name)
        # Plain attributes, set in the stack's __dict__: Module.__setattr__'s checks
        # would cost more than the rest of this method.
        stack.__dict__.update(
            training=self.training,
            dropout=float(self.dropout),
            batch_first=self.batch_first,
            backend=self.backend,
        )
        return stack

    def __getstate__(self) -> dict[str, Any]:
        # The stack is a cache of references to this module's own parameters.
        state = dict(super().__getstate__())  # type: ignore[no-untyped-call]
        state.pop(_STACK, None)
        state.pop("_rnnkit_names", None)
        return state

    def flatten_parameters(self) -> None:
        """Nothing to do: rnnkit's backends read the parameters as they are."""

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.backend == "auto" else f"{text}, backend={self.backend!r}"

    def _run(self, input: Tensor | PackedSequence, hx: Any) -> tuple[Any, Any]:
        """torch.nn's forward contract over :meth:`_runner_stack` (see the module docstring)."""
        lstm = self.mode == "LSTM"
        name = {"LSTM": "LSTM", "GRU": "GRU"}.get(self.mode, "RNN")
        batch_dim, time_dim = (0, 1) if self.batch_first else (1, 0)
        packed = input if isinstance(input, PackedSequence) else None
        lengths: Tensor | None = None
        if packed is not None:
            # Padded in the caller's row order, as the lengths and hx are.
            x, lengths = pad_packed_sequence(packed, batch_first=self.batch_first)
            batched = True
        else:
            assert isinstance(input, Tensor)
            x = input
            if x.dim() not in (2, 3):
                tail = " tensor" if name == "RNN" else ""
                raise ValueError(
                    f"{name}: Expected input to be 2D or 3D, got {x.dim()}D{tail} instead"
                )
            batched = x.dim() == 3
            if not batched:
                x = x.unsqueeze(batch_dim)
        if hx is not None:
            hx = self._check_hx(hx, batched, lstm)
            self.check_forward_args(x, hx, None)  # torch.nn's checks and messages
        else:
            self.check_input(x, None)
        if x.shape[time_dim] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        if x.shape[batch_dim] == 0 or is_exporting():
            # No rows: torch.nn's kernel returns the empty tensors of the right shapes.
            # Under torch.onnx.export or torch.export: torch.nn's forward, which their
            # tracers know (ATen's lstm/gru/rnn ops), so the module exports as torch.nn's
            # does; rnnkit.export.to_onnx writes a graph without that exporter's gaps.
            done: tuple[Any, Any] = type(self)._torch_forward(self, input, hx)
            return done

        state = None
        if hx is not None:
            state = LSTMState(hx[0], hx[1]) if lstm else HiddenState(hx)
        outputs, final = self._runner_stack()(x, state, lengths)
        if packed is not None:
            assert lengths is not None
            order = packed.sorted_indices
            if self.batch_first:
                outputs = outputs.transpose(0, 1)  # (T, B, D·H)
            if order is not None:
                outputs = outputs.index_select(1, order)
                lengths = lengths.index_select(0, order.cpu())
            data = pack_padded_sequence(outputs, lengths).data  # (N, D·H)
            result: Any = PackedSequence(
                data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
            )
        else:
            result = outputs if batched else outputs.squeeze(batch_dim)
        if not batched:
            final = type(final)(*(field.squeeze(1) for field in final))
        # torch.nn's types: h_n, or a plain tuple (h_n, c_n) (code rebuilds it by its type).
        return result, (final.h, final.c) if lstm else final.h

    def _check_hx(self, hx: Any, batched: bool, lstm: bool) -> Any:
        """torch.nn's checks of ``hx``'s rank; an unbatched one gains its batch dimension."""
        if lstm:
            h, c = hx
            wanted = 3 if batched else 2
            if h.dim() != wanted or c.dim() != wanted:
                kind = "batched 3-D" if batched else "unbatched 2-D"
                raise RuntimeError(
                    f"For {kind} input, hx and cx should also be {wanted}-D but got "
                    f"({h.dim()}-D, {c.dim()}-D) tensors"
                )
            return (h, c) if batched else (h.unsqueeze(1), c.unsqueeze(1))
        wanted = 3 if batched else 2
        if hx.dim() != wanted:
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise RuntimeError(
                f"For {kind} input, hx should also be {wanted}-D but got {hx.dim()}-D tensor"
            )
        return hx if batched else hx.unsqueeze(1)


class RNN(_OnRnnkit):
    r"""``torch.nn.RNN`` (Elman: h_t = tanh or relu(W_ih·x_t + b_ih + W_hh·h_{t−1} + b_hh)).

    The constructor is ``torch.nn.RNN``'s, plus ``backend=`` (``"auto"``,
    ``"unrolled"``, ``"native"`` or ``"fused"``). U = ``weight_ih_l{k}``,
    W = ``weight_hh_l{k}``, b = ``bias_ih_l{k}`` + ``bias_hh_l{k}``; ``_reverse`` for
    the right-to-left direction. See :mod:`rnnkit.nn.rnn` for the forward contract.
    """

    _torch_forward = nn.RNN.forward

    def __init__(self, *args: Any, backend: str = "auto", **kwargs: Any) -> None:
        # torch.nn.RNN's own argument handling: nonlinearity is the 4th positional.
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        rest = list(args)
        nonlinearity = rest.pop(3) if len(rest) > 3 else kwargs.pop("nonlinearity", "tanh")
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if nonlinearity not in modes:
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        super().__init__(modes[nonlinearity], *rest, **kwargs)
        self.nonlinearity = nonlinearity
        self.backend = check_backend(backend)
        self._runner_stack()  # built here: torch.compile cannot build modules

    def forward(self, input: Any, hx: Tensor | None = None) -> tuple[Any, Tensor]:
        return self._run(input, hx)


class LSTM(_OnRnnkit):
    r"""``torch.nn.LSTM``, gate order i, f, g, o; ``proj_size`` P > 0 projects h to P units.

    The constructor is ``torch.nn.LSTM``'s, plus ``backend=``. U = ``weight_ih_l{k}``
    ``(4H, I)``, W = ``weight_hh_l{k}`` ``(4H, H)`` (``(4H, P)`` with a projection),
    b = ``bias_ih_l{k}`` + ``bias_hh_l{k}``, W_r = ``weight_hr_l{k}`` ``(P, H)``. A
    projected LSTM runs on ``"native"`` or ``"unrolled"`` (``"auto"`` picks
    ``"native"``); ``"fused"`` implements the plain LSTM only and refuses it.
    Returns ``(output, (h_n, c_n))``, a plain tuple as torch.nn's.
    """

    # torch.nn.LSTM's checks of (h_0, c_0), its messages included.
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args  # type: ignore[assignment]
    permute_hidden = nn.LSTM.permute_hidden  # type: ignore[assignment]
    _torch_forward = nn.LSTM.forward

    def __init__(self, *args: Any, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__("LSTM", *args, **kwargs)
        self.backend = check_backend(backend)
        if self.proj_size and self.backend == "fused":
            raise ValueError("backend 'fused' cannot run an LSTM with proj_size > 0")
        self._runner_stack()  # built here: torch.compile cannot build modules

    def forward(
        self, input: Any, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Any, tuple[Tensor, Tensor]]:
        return self._run(input, hx)


class GRU(_OnRnnkit):
    r"""``torch.nn.GRU``, gate order r, z, n, with the reset gate applied after W_hn·h (torch's form).

    The constructor is ``torch.nn.GRU``'s, plus ``backend=``. U = ``weight_ih_l{k}``
    ``(3H, I)``, W = ``weight_hh_l{k}`` ``(3H, H)``, b = ``bias_ih_l{k}`` +
    ``bias_hh_l{k}`` (kept apart: b_hn sits inside r ⊙ (W_hn·h + b_hn)).
    """

    _torch_forward = nn.GRU.forward

    def __init__(self, *args: Any, backend: str = "auto", **kwargs: Any) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)
        self.backend = check_backend(backend)
        self._runner_stack()  # built here: torch.compile cannot build modules

    def forward(self, input: Any, hx: Tensor | None = None) -> tuple[Any, Tensor]:
        return self._run(input, hx)
