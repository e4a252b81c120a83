"""The compiled time loops: the same numbers as the Python loops and torch.nn, and the fallback."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.bptt import compiled
from tests.helpers import weighted_sum

F64 = torch.float64
NAMES = ["rnn", "rnn_relu", "lstm", "gru"]


@pytest.fixture
def built() -> None:
    if compiled.load() is None:
        pytest.skip(f"no compiled loops here: {compiled.status()}")


def run(
    stack: Recurrent, x: Tensor, lengths: list[int] | None, *, initial: bool = True
) -> list[Tensor]:
    """Outputs, final state and every parameter's and the input's gradient, and with
    ``initial`` the gradient of a random initial state (the loops' ∂L/∂h0, ∂L/∂c0)."""
    x = x.detach().clone().requires_grad_()
    state = None
    leaves = [x, *stack.parameters()]
    if initial:
        torch.manual_seed(11)
        zeros = stack.initial_state(x.shape[0], dtype=x.dtype)
        state = type(zeros)(*(torch.randn_like(f).requires_grad_() for f in zeros))
        leaves += list(state)
    out, final = stack(x, state, lengths=lengths)
    loss = weighted_sum([out, *final])
    grads = torch.autograd.grad(loss, leaves)
    return [out, *final, *grads]


def both_paths(
    stack: Recurrent, x: Tensor, lengths: list[int] | None, chunk: int
) -> Iterator[list[Tensor]]:
    with compiled.enabled(False):
        yield run(stack, x, lengths)
    previous, compiled.chunk = compiled.chunk, chunk
    try:
        yield run(stack, x, lengths)
    finally:
        compiled.chunk = previous


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize("chunk", [0, 1, 3], ids=["auto", "chunk1", "chunk3"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("name", NAMES)
def test_compiled_loops_equal_the_python_loops_in_float64(
    name: str, ragged: bool, chunk: int
) -> None:
    # Two layers, both directions, biases: every Function argument and every chunk
    # boundary (T = 7 with chunks of 1 or 3 steps) is crossed.
    torch.manual_seed(11)
    stack = Recurrent(name, 3, 4, num_layers=2, bidirectional=True, backend="fused").double()
    x = torch.randn(3, 7, 3, dtype=F64)
    lengths = [7, 4, 1] if ragged else None
    python, native = both_paths(stack, x, lengths, chunk)
    for a, b in zip(python, native, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_compiled_float32_agrees_with_torch_nn_where_gates_saturate(name: str) -> None:
    # float32 uses a polynomial exp: check it against torch.nn over pre-activations
    # from ±0 to far past saturation (inputs up to ~±60), where a bad clamp or
    # overflow would show as NaN or a wrong limit.
    torch.manual_seed(5)
    reference = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[name](8, 16, batch_first=True)
    stack = Recurrent.from_torch(reference, backend="fused")
    x = torch.randn(4, 30, 8) * torch.logspace(-3, 1.5, 30)[None, :, None]
    expected = run_torch(reference, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        actual = run(stack, x, None, initial=False)
    for a, b in zip(actual, expected, strict=True):
        assert torch.isfinite(a).all()
        # Relative to each tensor's largest entry: the Python loops measure 1–4e-7
        # here, and so do the compiled ones.
        assert (a - b).abs().max() <= 2e-6 * b.abs().max()


def run_torch(module: nn.RNNBase, x: Tensor) -> list[Tensor]:
    x = x.detach().clone().requires_grad_()
    out, final = module(x)
    fields = list(final) if isinstance(final, tuple) else [final]
    loss = weighted_sum([out, *fields])
    grads = torch.autograd.grad(loss, [x, *module.parameters()])
    return [out, *fields, *grads]


@pytest.mark.usefixtures("built")
def test_unneeded_gradients_are_not_computed() -> None:
    # Frozen weights and an input without grad: the compiled backward returns None
    # for them, and the ones asked for still match the Python loops.
    torch.manual_seed(2)
    for name in ("rnn", "lstm", "gru"):
        stack = Recurrent(name, 3, 4, backend="fused").double()
        stack.cells[0].weight_ih.requires_grad_(False)
        x = torch.randn(2, 5, 3, dtype=F64)
        results = []
        for flag in (False, True):
            with compiled.enabled(flag):
                out, _ = stack(x)
                out.sum().backward()
                results.append([p.grad.clone() for p in stack.parameters() if p.grad is not None])
                stack.zero_grad(set_to_none=True)
        assert len(results[0]) == len(results[1]) == 3
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@contextlib.contextmanager
def forced(setting: str, path: str) -> Iterator[None]:
    """Force one of the compiled loops' library choices (loops.cpp): ``setting`` is the
    op that sets it, ``step_product`` (the per-step products), ``weight_grad_path``
    (the backward's weight gradients) or ``input_grad_path`` (its input gradients)."""
    set_path = getattr(compiled.load(), setting)
    previous = set_path(path)
    try:
        yield
    finally:
        set_path(previous)


def assert_float32_match(name: str, ragged: bool, setting: str, path: str, chunk: int) -> None:
    """A forced library choice gives the Python loops' numbers in float32.

    oneDNN's and MKL's products run only in float32 (float64 always takes at::addmm),
    so they are compared in float32: the Python loops' products are at::addmm's, the
    same sums in another order. Ragged batches mix full steps (packed path) and
    shorter ones (at::addmm) in one loop; chunks of 3 steps make a weight-gradient sum
    cross chunk boundaries.
    """
    torch.manual_seed(3)
    stack = Recurrent(name, 5, 24, num_layers=2, bidirectional=True, backend="fused")
    x = torch.randn(6, 9, 5)
    lengths = [9, 9, 7, 4, 2, 1] if ragged else None
    with compiled.enabled(False):
        expected = run(stack, x, lengths)
    previous, compiled.chunk = compiled.chunk, chunk
    try:
        with forced(setting, path):
            actual = run(stack, x, lengths)
    finally:
        compiled.chunk = previous
    tolerance = 64 * torch.finfo(torch.float32).eps
    for a, b in zip(actual, expected, strict=True):
        assert (a - b).abs().max() <= tolerance * max(b.abs().max().item(), 1.0)


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize("path", ["auto", "static", "onednn", "packed", "aten"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("name", NAMES)
def test_every_step_product_path_gives_the_python_loops_numbers_in_float32(
    name: str, ragged: bool, path: str
) -> None:
    assert_float32_match(name, ragged, "step_product", path, chunk=0)


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize("path", ["auto", "onednn", "aten"])
@pytest.mark.parametrize("chunk", [0, 3], ids=["planned", "chunk3"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("setting", ["weight_grad_path", "input_grad_path"])
def test_every_gradient_path_gives_the_python_loops_numbers_in_float32(
    setting: str, name: str, ragged: bool, chunk: int, path: str
) -> None:
    """The backward's weight gradients (``weight_grad_path``) and input gradients
    (``input_grad_path``) by each library."""
    assert_float32_match(name, ragged, setting, path, chunk)


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize("setting", ["weight_grad_path", "input_grad_path"])
def test_a_bad_gradient_path_is_refused(setting: str) -> None:
    with pytest.raises(RuntimeError, match=f"{setting} expects"):
        getattr(compiled.load(), setting)("mkl")


@pytest.mark.usefixtures("built")
def test_the_static_step_product_rule_takes_onednn_only_for_large_float32_steps() -> None:
    ops = compiled.load()
    large, small = torch.zeros(512, 2048), torch.zeros(128, 512)  # (K, N): H → 4H
    with forced("step_product", "onednn"):
        has_onednn = ops.step_product_path(small, 16) == "onednn"
    with forced("step_product", "packed"):
        has_mkl = ops.step_product_path(small, 16) == "packed"
    fallback = "packed" if has_mkl else "aten"
    with forced("step_product", "static"):
        assert ops.step_product_path(large, 64) == ("onednn" if has_onednn else fallback)
        assert ops.step_product_path(small, 16) == fallback
        assert ops.step_product_path(large.double(), 64) == "aten"
    with forced("step_product", "aten"):
        assert ops.step_product_path(large, 64) == "aten"
    with pytest.raises(RuntimeError, match="step_product expects"):
        ops.step_product("mkl")


@pytest.mark.usefixtures("built")
def test_the_measured_step_product_path_is_one_that_runs_and_is_kept() -> None:
    ops = compiled.load()
    with forced("step_product", "onednn"):
        has_onednn = ops.step_product_path(torch.zeros(64, 256), 8) == "onednn"
    with forced("step_product", "packed"):
        has_mkl = ops.step_product_path(torch.zeros(64, 256), 8) == "packed"
    w = torch.zeros(96, 384)  # a shape no other test measures
    with forced("step_product", "auto"):
        first = ops.step_product_path(w, 12)
        assert all(ops.step_product_path(w, 12) == first for _ in range(5))  # kept, no flip
        assert ops.step_product_path(w.double(), 12) == "aten"
    runs = {"onednn": has_onednn, "packed": has_mkl, "aten": not (has_onednn and has_mkl)}
    assert runs[first]
    if has_onednn and has_mkl:
        assert first in ("onednn", "packed")


@settings(max_examples=30)
@given(
    name=st.sampled_from(NAMES),
    batch=st.integers(1, 4),
    steps=st.integers(1, 9),
    chunk=st.integers(0, 4),
    data=st.data(),
)
def test_property_compiled_equals_python_on_random_ragged_batches(
    name: str, batch: int, steps: int, chunk: int, data: st.DataObject
) -> None:
    if compiled.load() is None:
        pytest.skip(f"no compiled loops here: {compiled.status()}")
    lengths = data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    torch.manual_seed(batch * 7 + steps)
    stack = Recurrent(name, 2, 3, backend="fused").double()
    x = torch.randn(batch, steps, 2, dtype=F64)
    python, native = both_paths(stack, x, lengths, chunk)
    for a, b in zip(python, native, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_off_switch_keeps_the_python_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNKIT_COMPILED_LOOPS", "0")
    assert compiled.loops_for(torch.zeros(1)) is None
    assert compiled.status() == "Python loops (RNNKIT_COMPILED_LOOPS=0)"


def test_other_dtypes_keep_the_python_loops() -> None:
    assert compiled.loops_for(torch.zeros(1, dtype=torch.bfloat16)) is None
    assert compiled.loops_for(torch.zeros(1), torch.zeros(1, dtype=torch.float16)) is None


def test_a_failed_build_warns_once_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("no C++ compiler\nsecond line")

    monkeypatch.setattr(compiled, "_ops", None)
    monkeypatch.setattr(compiled, "_failure", "")
    monkeypatch.setattr(compiled, "_build", broken)
    monkeypatch.delenv("RNNKIT_COMPILED_LOOPS", raising=False)
    with pytest.warns(RuntimeWarning, match=r"did not compile \(OSError: no C\+\+ compiler\)"):
        assert compiled.load() is None
    assert compiled.load() is None  # no second attempt, no second warning
    assert compiled.status() == "Python loops (compiling failed: OSError: no C++ compiler)"
    # The fused backend still runs, on the Python loops.
    out, _ = Recurrent("gru", 2, 3, backend="fused")(torch.randn(2, 4, 2))
    assert out.shape == (2, 4, 3)


def test_a_failed_build_is_an_error_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("no C++ compiler")

    monkeypatch.setattr(compiled, "_ops", None)
    monkeypatch.setattr(compiled, "_failure", "")
    monkeypatch.setattr(compiled, "_build", broken)
    monkeypatch.setenv("RNNKIT_COMPILED_LOOPS", "1")
    with pytest.raises(RuntimeError, match="RNNKIT_COMPILED_LOOPS=1 but the fused loops did not"):
        compiled.load()
