"""The backends' large products (rnnkit.projection): numbers, and the measured choice."""

from __future__ import annotations

import gc
import itertools

import pytest
import torch
from torch import Tensor

from rnnkit import Recurrent, projection
from rnnkit.projection import (
    Chooser,
    decide,
    grad_key_of,
    key_of,
    project,
    project_back,
    weight_grad,
)

needs_onednn = pytest.mark.skipif(
    not projection._onednn_available(), reason="this torch has no oneDNN inner product"
)


def operands(rows: int = 256, inner: int = 128, outputs: int = 192) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, inner, generator=generator)
    weight = torch.randn(outputs, inner, generator=generator)
    bias = torch.randn(outputs, generator=generator)
    return x, weight, bias


def float32_tolerance(inner: int, scale: float) -> float:
    # Two libraries sum the same K products in other orders: each result may differ
    # by a few ulps per term of the sum, relative to the terms' size.
    return 4 * inner * torch.finfo(torch.float32).eps * scale


@pytest.mark.parametrize("mode", ["auto", "blas", "onednn"])
def test_project_is_x_times_weight_transposed_plus_bias(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(projection.ENV, mode)
    x, weight, bias = operands()
    expected = x.double() @ weight.double().t() + bias.double()
    scale = (x.abs() @ weight.abs().t()).max().item()
    for b in (bias, None):
        got = project(x, weight, b).double()
        want = expected if b is not None else expected - bias.double()
        assert (got - want).abs().max().item() <= float32_tolerance(128, scale)
    grad = torch.randn(256, 192)
    back = project_back(grad, weight).double()
    assert (back - grad.double() @ weight.double()).abs().max().item() <= float32_tolerance(
        192, (grad.abs() @ weight.abs()).max().item()
    )
    dW = weight_grad(grad, x).double()
    assert (dW - grad.double().t() @ x.double()).abs().max().item() <= float32_tolerance(
        256, (grad.abs().t() @ x.abs()).max().item()
    )


def test_float64_and_small_products_stay_on_torch_mm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(projection.ENV, "onednn")
    x, weight, bias = (t.double() for t in operands())
    assert not projection.eligible(x, weight)
    assert torch.equal(project(x, weight, bias), torch.addmm(bias, x, weight.t()))  # bit for bit
    small = torch.randn(4, 8), torch.randn(16, 8)
    assert not projection.eligible(*small)
    grad = torch.randn(256, 192, dtype=torch.float64)
    assert torch.equal(weight_grad(grad, x), grad.t() @ x)
    narrow = torch.randn(65536, 256), torch.randn(65536, 32)  # 256 × 32: stays on BLAS
    assert not projection.grad_eligible(*narrow)
    assert projection.grad_eligible(torch.empty(1600, 730), torch.empty(1600, 365))


def test_a_bad_mode_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(projection.ENV, "mkl")
    with pytest.raises(ValueError, match="RNNKIT_PROJECTION: expected one of auto, blas, onednn"):
        projection.mode()


def test_decide_keeps_blas_unless_onednn_wins_by_the_margin() -> None:
    assert decide({"blas": 1.0, "onednn": 0.5}) == "onednn"
    assert decide({"blas": 1.0, "onednn": 0.96}) == "blas"  # within 5 %: a near tie
    assert decide({"blas": 1.0, "onednn": 1.5}) == "blas"


def test_the_key_rounds_rows_and_outputs_up_to_powers_of_two() -> None:
    x, weight = torch.empty(3000, 7), torch.empty(700, 7)
    key = key_of(x, weight)
    assert (key.rows, key.inner, key.outputs) == (4096, 7, 1024)
    assert key == key_of(torch.empty(2049, 7), torch.empty(513, 7))
    assert key != key_of(torch.empty(2048, 7), torch.empty(513, 7))
    grad_key = grad_key_of(torch.empty(3000, 700), torch.empty(3000, 7))
    assert (grad_key.rows, grad_key.inner, grad_key.outputs) == (4096, 1024, 8)
    assert grad_key.product != key.product  # never shares a projection's choice


def fake_libraries(seconds: dict[str, float]) -> tuple[Chooser, dict[str, int]]:
    """A Chooser whose clock advances by each library's seconds per call."""
    now = [0.0]
    calls = dict.fromkeys(seconds, 0)

    def library(name: str):  # type: ignore[no-untyped-def]
        def run(*operands: Tensor | None) -> Tensor | None:
            calls[name] += 1
            now[0] += seconds[name]
            return operands[0]

        return run

    chooser = Chooser(clock=lambda: now[0], run={name: library(name) for name in seconds})
    return chooser, calls


def test_the_choice_is_measured_once_per_key_and_kept() -> None:
    chooser, calls = fake_libraries({"blas": 2.0, "onednn": 1.0})
    x, weight, bias = operands()
    assert chooser.choose(key_of(x, weight), (x, weight, bias)) == "onednn"
    measured = dict(calls)
    assert measured == {
        "blas": projection.WARMUP + projection.REPEATS,
        "onednn": projection.WARMUP + projection.REPEATS,
    }
    for _ in range(5):  # no more timing, no flip, whatever the clock says now
        assert chooser.choose(key_of(x, weight), (x, weight, bias)) == "onednn"
    assert calls == measured
    other, other_weight = torch.empty(256, 64), torch.empty(192, 64)
    assert chooser.choose(key_of(other, other_weight), (other, other_weight, None)) == "onednn"
    assert calls["blas"] == 2 * measured["blas"]  # a new key: timed again


def test_a_slower_onednn_is_not_chosen() -> None:
    chooser, _ = fake_libraries({"blas": 1.0, "onednn": 3.0})
    x, weight, bias = operands()
    assert chooser.choose(key_of(x, weight), (x, weight, bias)) == "blas"


@needs_onednn
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "mingru"])
def test_every_library_gives_a_stack_the_same_training_step_in_float32(
    cell: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large enough that the products take this path (MIN_WORK), checked against the
    # float64 run of the same stack: both libraries are within float32 rounding of it.
    torch.manual_seed(0)
    backend = "scan" if cell == "mingru" else "fused"
    stack = Recurrent(cell, 48, 96, num_layers=2, backend=backend)
    x = torch.randn(16, 80, 48, requires_grad=True)
    assert projection.eligible(x.reshape(-1, 48), torch.empty(96, 48))  # the RNN's, smallest

    def step(dtype: torch.dtype) -> list[Tensor]:
        module = stack.to(dtype)
        inputs = x.detach().to(dtype).requires_grad_()
        module.zero_grad()
        out = module(inputs)[0]
        (out * torch.linspace(-1, 1, out.shape[-1], dtype=dtype)).sum().backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert inputs.grad is not None
        return [out.detach(), inputs.grad, *grads]

    reference = step(torch.float64)
    calls = []

    def counted(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        calls.append(tuple(x.shape))
        return projection.onednn(x, weight, bias)

    def counted_grad(grad: Tensor, x: Tensor) -> Tensor:
        grad_calls.append(tuple(grad.shape))
        return projection.onednn_grad(grad, x)

    grad_calls: list[tuple[int, ...]] = []
    monkeypatch.setitem(projection._LIBRARIES, "onednn", counted)
    monkeypatch.setitem(projection._GRADS, "onednn", counted_grad)
    for mode in ("blas", "onednn"):
        monkeypatch.setenv(projection.ENV, mode)
        for got, want in itertools.zip_longest(step(torch.float32), reference):
            error = (got.double() - want).abs().max().item()
            assert error <= 1e-4 * max(want.abs().max().item(), 1.0), (mode, cell)
    assert len(calls) >= 2  # each layer's input projection went through oneDNN
    if cell == "mingru":  # the scan's ∂L/∂U of the second layer (the first is too narrow)
        assert grad_calls


def test_the_cli_refuses_a_bad_mode_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnnkit.cli.main import main

    monkeypatch.setenv(projection.ENV, "mkl")
    assert main(["datasets", "list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "rnnkit datasets: error: RNNKIT_PROJECTION: expected one of auto, blas, onednn, got 'mkl'"
    ]


@pytest.mark.parametrize(
    ("mode", "pins"), [("blas", "packed aten aten"), ("onednn", "onednn onednn onednn")]
)
def test_the_variable_pins_the_compiled_loops_choices_too(mode: str, pins: str) -> None:
    import os
    import subprocess
    import sys

    from rnnkit.bptt import compiled

    if compiled.load() is None:
        pytest.skip("no compiled loops here")
    script = (
        "from rnnkit.bptt import compiled; ops = compiled.load(); "
        "print(ops.step_product('auto'), ops.weight_grad_path('auto'), ops.input_grad_path('auto'))"
    )
    env = {**os.environ, projection.ENV: mode}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == pins  # the settings the load left, then restored


def test_the_transpose_is_kept_while_the_weight_is_unchanged() -> None:
    weight = torch.nn.Parameter(torch.randn(6, 4))
    first = projection.transposed(weight)
    assert torch.equal(first, weight.detach().t()) and first.is_contiguous()
    assert projection.transposed(weight) is first  # no second copy
    with torch.no_grad():
        weight.mul_(2.0)  # an optimizer step: the version moves
    second = projection.transposed(weight)
    assert second is not first and torch.equal(second, weight.detach().t())
    key = id(weight)
    del weight, first, second
    gc.collect()
    assert key not in projection._TRANSPOSED  # dropped with the weight
