"""``rnnkit selfcheck``: prove on this machine that every cell and backend matches torch.nn.

For each built-in cell it copies a torch.nn module's weights into a
:class:`~rnnkit.Recurrent`, runs a ragged batch through every backend in float64
and reports the largest difference of outputs, final states and all gradients.
Then it times a training step of each backend against torch.nn on the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.bptt import compiled
from rnnkit.cells import MINIMAL_CELL_NAMES, TORCH_CELL_NAMES
from rnnkit.recurrent import Recurrent
from rnnkit.timing import time_interleaved, training_step

_TORCH_TYPES: dict[str, tuple[Callable[..., nn.RNNBase], dict[str, str]]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}
_BACKENDS = ("unrolled", "native", "fused")


@dataclass(frozen=True)
class SelfCheckConfig:
    """What ``rnnkit selfcheck`` runs.

    Attributes:
        batch, steps, input_size, hidden_size: the timing problem (B, T, I, H).
        repeats: interleaved timing rounds; medians are reported.
        tolerance: largest float64 difference from torch.nn that counts as agreement.
        seed: for weights and data.
    """

    batch: int = 16
    steps: int = 50
    input_size: int = 32
    hidden_size: int = 128
    repeats: int = 5
    tolerance: float = 1e-10
    seed: int = 0


@dataclass(frozen=True)
class Agreement:
    """Largest absolute difference from torch.nn for one cell and backend."""

    cell: str
    backend: str
    outputs: float
    gradients: float


@dataclass(frozen=True)
class Speed:
    """Median seconds of a training step, and torch.nn's median divided by it."""

    cell: str
    backend: str
    median_s: float
    speedup_vs_torch: float


def check_agreement(config: SelfCheckConfig) -> list[Agreement]:
    """Every cell × backend, 2 bidirectional layers, a ragged float64 batch, vs torch.nn."""
    rows = []
    lengths = torch.tensor([7, 1, 4, 6])
    for name in TORCH_CELL_NAMES:
        torch.manual_seed(config.seed)
        torch_type, extra = _TORCH_TYPES[name]
        reference = torch_type(
            3, 5, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64, **extra
        )
        x = torch.randn(4, 7, 3, dtype=torch.float64)
        ref_values, ref_grads = _torch_run(reference, x, lengths)
        for backend, label in _agreement_candidates():
            ours = Recurrent.from_torch(reference, backend=backend)
            inputs = x.clone().requires_grad_()
            with compiled.enabled(label != "fused-py"):
                outputs, final = ours(inputs, lengths=lengths)
                values = [outputs, *final]
                torch.autograd.backward(_loss(values))
            grads = [inputs.grad, *(p.grad for p in ours.parameters())]
            rows.append(
                Agreement(name, label, _max_diff(values, ref_values), _max_diff(grads, ref_grads))
            )
    rows += _minimal_agreement(config, lengths)
    return rows


def _minimal_agreement(config: SelfCheckConfig, lengths: Tensor) -> list[Agreement]:
    """The minimal cells have no torch.nn twin: their oracle is the explicit loop,
    ``unrolled`` (:func:`rnnkit.unroll` of the cell's own step); the scan is checked
    against it over the compiled layer and the Python path."""
    rows = []
    for name in MINIMAL_CELL_NAMES:
        torch.manual_seed(config.seed)
        loop = Recurrent(name, 3, 5, num_layers=2, bidirectional=True, backend="unrolled",
                         dtype=torch.float64)  # fmt: skip
        x = torch.randn(4, 7, 3, dtype=torch.float64)
        results = []
        for label in ("unrolled", "scan", "scan-py"):
            module = Recurrent(name, 3, 5, num_layers=2, bidirectional=True,
                               backend=label.removesuffix("-py"), dtype=torch.float64)  # fmt: skip
            module.load_state_dict(loop.state_dict())
            inputs = x.clone().requires_grad_()
            with compiled.enabled(label != "scan-py"):
                outputs, final = module(inputs, lengths=lengths)
                values = [outputs, *final]
                torch.autograd.backward(_loss(values))
            results.append((label, values, [inputs.grad, *(p.grad for p in module.parameters())]))
        _, ref_values, ref_grads = results[0]
        for label, values, grads in results[1:]:
            rows.append(
                Agreement(name, label, _max_diff(values, ref_values), _max_diff(grads, ref_grads))
            )
    return rows


def _agreement_candidates() -> list[tuple[str, str]]:
    """(backend, label) pairs: every backend, and the fused one over both of its loops."""
    candidates = [(backend, backend) for backend in _BACKENDS]
    if compiled.load() is not None:
        candidates.append(("fused", "fused-py"))  # the Python loops, checked as well
    return candidates


def measure_speed(config: SelfCheckConfig) -> list[Speed]:
    """Training-step time of each backend and of torch.nn, interleaved, float32."""
    rows = []
    for name in ("rnn", "lstm", "gru"):
        torch.manual_seed(config.seed)
        torch_type, extra = _TORCH_TYPES[name]
        reference = torch_type(config.input_size, config.hidden_size, batch_first=True, **extra)
        x = torch.randn(config.batch, config.steps, config.input_size)
        candidates: dict[str, Callable[[], object]] = {"torch.nn": training_step(reference, x)}
        for backend in _BACKENDS:
            ours = Recurrent.from_torch(reference, backend=backend)
            candidates[backend] = training_step(ours, x)
        timings = time_interleaved(candidates, config.repeats)
        base = timings["torch.nn"].median
        for label, timing in timings.items():
            rows.append(Speed(name, label, timing.median, base / timing.median))
    return rows


def _torch_run(module: nn.RNNBase, x: Tensor, lengths: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    inputs = x.clone().requires_grad_()
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    out_packed, final = module(packed)
    outputs, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
    values = [outputs, *(final if isinstance(final, tuple) else (final,))]
    torch.autograd.backward(_loss(values))
    return values, [inputs.grad, *(p.grad for p in module.parameters())]  # type: ignore[list-item]


def _loss(values: list[Tensor]) -> Tensor:
    # Fixed random weights per element: every output's gradient is distinct.
    generator = torch.Generator().manual_seed(7)
    return sum(
        ((v * torch.randn(v.shape, generator=generator, dtype=v.dtype)).sum() for v in values),
        torch.zeros((), dtype=values[0].dtype),
    )


def _max_diff(ours: Sequence[Tensor | None], theirs: Sequence[Tensor | None]) -> float:
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        if a is None or b is None:
            return float("inf")  # a missing gradient is a disagreement
        diff = float((a.detach() - b.detach()).abs().max())
        if diff != diff:  # NaN: max() would silently keep the old value
            return float("inf")
        worst = max(worst, diff)
    return worst
