"""The fused BPTT Functions: gradcheck, agreement with the explicit loop, edge cases."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from rnnkit import Recurrent, unroll
from rnnkit.bptt import compiled
from rnnkit.bptt.fused import (
    FusedBatch,
    FusedGRU,
    FusedLSTM,
    FusedRNN,
    fused_supported,
)
from rnnkit.cells import GRUCell, LSTMCell, RNNCell, cell_factory
from rnnkit.state import HiddenState, LSTMState, map_state
from tests.helpers import weighted_sum

F64 = torch.float64


def batch_sizes_of(lengths: list[int], steps: int) -> tuple[int, ...]:
    """Sizes of a batch sorted longest first (lengths must be sorted descending)."""
    return tuple(sum(1 for n in lengths if n > t) for t in range(steps))


def function_inputs(
    name: str, steps: int, batch: int, bias: bool, seed: int
) -> tuple[Any, list[Any], int]:
    """(Function, its tensor arguments before batch_sizes, hidden size) with grads on."""
    torch.manual_seed(seed)
    hidden, features = 3, 2
    cell = cell_factory(name, bias=bias)(features, hidden).double()
    x = torch.randn(steps, batch, features, dtype=F64, requires_grad=True)
    h0 = torch.randn(batch, hidden, dtype=F64, requires_grad=True)
    params = [
        cell.weight_ih.detach().clone().requires_grad_(),
        cell.weight_hh.detach().clone().requires_grad_(),
        None if cell.bias_ih is None else cell.bias_ih.detach().clone().requires_grad_(),
        None if cell.bias_hh is None else cell.bias_hh.detach().clone().requires_grad_(),
    ]
    if name == "lstm":
        c0 = torch.randn(batch, hidden, dtype=F64, requires_grad=True)
        return FusedLSTM, [x, h0, c0, *params], hidden
    if name == "gru":
        return FusedGRU, [x, h0, *params], hidden
    return FusedRNN, [x, h0, *params], hidden


def apply(function: Any, args: list[Any], sizes: tuple[int, ...] | None, name: str) -> Any:
    if function is FusedRNN:
        return function.apply(*args, sizes, name == "rnn_relu")
    return function.apply(*args, sizes)


@pytest.fixture(params=["python", "compiled"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test over the Python loops and over the compiled ones (in chunks of 2)."""
    if request.param == "python":
        monkeypatch.setattr(compiled, "_enabled", False)
    else:
        if compiled.load() is None:
            pytest.skip(f"no compiled loops here: {compiled.status()}")
        monkeypatch.setattr(compiled, "chunk", 2)
    return str(request.param)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("name", ["rnn", "rnn_relu", "lstm", "gru"])
def test_gradcheck_of_each_fused_function(name: str, ragged: bool, bias: bool, loops: str) -> None:
    steps, batch = 5, 3
    function, args, _ = function_inputs(name, steps, batch, bias, seed=7)
    sizes = batch_sizes_of([5, 2, 1], steps) if ragged else None
    if name == "rnn_relu":
        # Keep pre-activations away from ReLU's kink, where finite differences lie.
        with torch.no_grad():
            args[0].mul_(3.0)

    def run(*tensors: Tensor) -> tuple[Tensor, ...]:
        it = iter(tensors)
        full = [next(it) if a is not None else None for a in args]
        return tuple(apply(function, full, sizes, name))

    inputs = tuple(a for a in args if a is not None)
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["left", "right"])
@pytest.mark.parametrize("name", ["rnn", "rnn_relu", "lstm", "gru"])
def test_one_direction_of_the_runner_equals_the_explicit_loop_of_its_cell(
    name: str, reverse: bool, lengths: list[int] | None
) -> None:
    # FusedBatch's layout (time-major, sorted, reversed by index) and one Function,
    # against unroll over the same cell, with Recurrent's loop out of the way.
    torch.manual_seed(3)
    steps, batch = 6, 4
    cell = cell_factory(name)(2, 5).double()
    x = torch.randn(batch, steps, 2, dtype=F64)
    state = cell.initial_state(batch, dtype=F64)
    state = type(state)(*(torch.randn_like(f) for f in state))
    expected, expected_final = unroll(cell, x, state, lengths, reverse=reverse)
    stacked = map_state(lambda field: field[None], state)  # (L·D = 1, B, H)
    checked = None if lengths is None else torch.tensor(lengths)
    run = FusedBatch(x, stacked, checked)
    start = map_state(lambda field: field[0], run.state)  # (B, H), the runner's row order
    Y, final = run.direction(cell, run.inputs, start, reverse)
    assert type(final) is type(state)
    outputs, finals = run.finish(Y, map_state(lambda field: field[None], final))
    torch.testing.assert_close(outputs, expected, rtol=0, atol=1e-12)
    for a, b in zip(finals, expected_final, strict=True):
        torch.testing.assert_close(a[0], b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_backward_twice_with_retain_graph_gives_the_same_gradients(name: str) -> None:
    # The backward must not consume or mutate what the forward saved.
    stack = Recurrent(name, 2, 3, backend="fused").double()
    x = torch.randn(2, 5, 2, dtype=F64)
    out, final = stack(x, lengths=[5, 3])
    loss = weighted_sum([out, *final])
    first = torch.autograd.grad(loss, list(stack.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(stack.parameters()))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bias_gradients_are_separate_tensors() -> None:
    # ∂L/∂bias_ih = ∂L/∂bias_hh for the RNN and LSTM; two .grad fields must not alias.
    for name in ("rnn", "lstm"):
        stack = Recurrent(name, 2, 3, backend="fused")
        stack(torch.randn(2, 4, 2))[0].sum().backward()
        cell = stack.cells[0]
        assert torch.equal(cell.bias_ih.grad, cell.bias_hh.grad)
        assert cell.bias_ih.grad.data_ptr() != cell.bias_hh.grad.data_ptr()


@pytest.mark.parametrize("garbage", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_garbage_in_the_padding_changes_nothing(name: str, garbage: float) -> None:
    torch.manual_seed(5)
    stack = Recurrent(name, 2, 3, bidirectional=True, backend="fused").double()
    clean = torch.randn(3, 5, 2, dtype=F64)
    lengths = [5, 2, 4]
    dirty = clean.clone()
    dirty[1, 2:] = garbage
    dirty[2, 4:] = garbage
    results = []
    for x in (clean, dirty):
        stack.zero_grad()
        x = x.requires_grad_()
        out, final = stack(x, lengths=lengths)
        weighted_sum([out, *final]).backward()
        assert x.grad is not None
        results.append((out.detach(), x.grad, [p.grad.clone() for p in stack.parameters()]))
    (o1, g1, p1), (o2, g2, p2) = results
    torch.testing.assert_close(o1, o2, rtol=0, atol=0)
    assert torch.isfinite(g2).all()
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    for a, b in zip(p1, p2, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_rows_longer_than_every_length_leave_trailing_empty_steps() -> None:
    # All rows end before T: the last steps have no active row at all.
    stack = Recurrent("lstm", 2, 3, backend="fused").double()
    reference = Recurrent.from_torch(stack.to_torch(), backend="unrolled")
    x = torch.randn(2, 6, 2, dtype=F64)
    out, final = stack(x, lengths=[2, 3])
    expected, expected_final = reference(x, lengths=[2, 3])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert torch.equal(out[:, 3:], torch.zeros_like(out[:, 3:]))
    for a, b in zip(final, expected_final, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_bad_batch_sizes_are_refused() -> None:
    function, args, _ = function_inputs("gru", 3, 2, True, seed=0)
    with pytest.raises(ValueError, match=r"batch_sizes: expected 3 sizes starting at 2"):
        function.apply(*args, (2, 1))
    with pytest.raises(ValueError, match="batch_sizes: expected non-increasing sizes"):
        function.apply(*args, (2, 1, 2))


def test_fused_supported_names_what_it_cannot_run() -> None:
    assert fused_supported([LSTMCell(2, 3), LSTMCell(3, 3)]) == ""
    assert "mixes cell types" in fused_supported([LSTMCell(2, 3), GRUCell(3, 3)])
    assert "mix nonlinearities" in fused_supported(
        [RNNCell(2, 3), RNNCell(3, 3, nonlinearity="relu")]
    )
    assert "disagree on bias" in fused_supported([GRUCell(2, 3), GRUCell(3, 3, bias=False)])
    assert "dtypes or devices" in fused_supported([GRUCell(2, 3), GRUCell(3, 3).double()])

    class Sub(GRUCell):
        pass

    assert "Sub is not one of rnnkit's built-in cells" in fused_supported([Sub(2, 3)])


@settings(max_examples=25)
@given(
    name=st.sampled_from(["rnn", "rnn_relu", "lstm", "gru"]),
    batch=st.integers(1, 4),
    steps=st.integers(1, 7),
    bidirectional=st.booleans(),
    data=st.data(),
)
def test_property_fused_equals_unrolled_on_random_ragged_batches(
    name: str, batch: int, steps: int, bidirectional: bool, data: st.DataObject
) -> None:
    lengths = data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    torch.manual_seed(batch * 13 + steps)
    fused = Recurrent(name, 2, 3, bidirectional=bidirectional, backend="fused").double()
    unrolled = Recurrent.from_torch(fused.to_torch(), backend="unrolled")
    x = torch.randn(batch, steps, 2, dtype=F64)
    grads = []
    for stack in (fused, unrolled):
        out, final = stack(x, lengths=lengths)
        assert out.shape == (batch, steps, (2 if bidirectional else 1) * 3)
        loss = weighted_sum([out, *final])
        grads.append([out, *final, *torch.autograd.grad(loss, list(stack.parameters()))])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_state_types_are_kept() -> None:
    out, final = Recurrent("lstm", 2, 3, num_layers=2, backend="fused")(torch.randn(2, 4, 2))
    assert type(final) is LSTMState and final.h.shape == final.c.shape == (2, 2, 3)
    out, final = Recurrent("gru", 2, 3, backend="fused")(torch.randn(2, 4, 2))
    assert type(final) is HiddenState and out.shape == (2, 4, 3)


def test_fused_under_bf16_autocast_runs_in_the_parameters_dtype() -> None:
    # The Functions keep one dtype in their buffers: under autocast they run in
    # float32 and give exactly the float32 result.
    torch.manual_seed(4)
    for name in ("rnn", "lstm", "gru"):
        stack = Recurrent(name, 3, 5, backend="fused")
        x = torch.randn(2, 6, 3)
        expected, _ = stack(x, lengths=[6, 3])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual, _ = stack(x, lengths=[6, 3])
        assert actual.dtype == torch.float32
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
