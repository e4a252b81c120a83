"""The scan backend against the explicit loop: parallel = sequential, in float64.

``Recurrent(..., backend="scan")`` (the compiled layer, or the Python path of
autograd ops around the doubling scan) must compute what ``backend="unrolled"``
computes, which is :func:`rnnkit.unroll` of the cell's own step: outputs, final
states and every gradient, for ragged lengths, both directions and several layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from rnnkit import Recurrent
from rnnkit.bptt import compiled
from rnnkit.bptt.scan import LinearScan, scan_steps, scan_supported
from rnnkit.cells import MINIMAL_CELL_NAMES, cell_factory

F64 = torch.float64
PATHS = [pytest.param(True, id="compiled"), pytest.param(False, id="python")]


def has_compiled_scan() -> bool:
    ops = compiled.load()
    return ops is not None and hasattr(ops, "minimal_forward")


@contextmanager
def path(use_compiled: bool) -> Iterator[None]:
    if use_compiled and not has_compiled_scan():
        pytest.skip("the compiled loops are not available here")
    with compiled.enabled(use_compiled):
        yield


def pair(name: str, inputs: int, hidden: int, layers: int, bidirectional: bool,
         bias: bool = True) -> tuple[Recurrent, Recurrent]:  # fmt: skip
    scan = Recurrent(name, inputs, hidden, layers, bidirectional, backend="scan", bias=bias,
                     dtype=F64)  # fmt: skip
    loop = Recurrent(name, inputs, hidden, layers, bidirectional, backend="unrolled", bias=bias,
                     dtype=F64)  # fmt: skip
    loop.load_state_dict(scan.state_dict())
    return scan, loop


def everything(rnn: Recurrent, x: Tensor, h0: Tensor, lengths: Tensor | None,
               weights: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:  # fmt: skip
    """Outputs, final h and ∂L/∂(x, h0, parameters) for L = Σ w ⊙ outputs + Σ final²."""
    state = rnn.initial_state(x.shape[0], dtype=F64)
    out, final = rnn(x, type(state)(h0), lengths)
    loss = (out * weights).sum() + final.h.square().sum()
    grads = torch.autograd.grad(loss, [x, h0, *rnn.parameters()])
    return out, final.h, list(grads)


@given(
    name=st.sampled_from(MINIMAL_CELL_NAMES),
    batch=st.integers(1, 4),
    steps=st.integers(1, 9),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
@settings(max_examples=40, deadline=None)
def test_scan_equals_the_explicit_loop_to_1e10(name: str, batch: int, steps: int, layers: int,
                                               bidirectional: bool, bias: bool, seed: int,
                                               data: st.DataObject) -> None:  # fmt: skip
    lengths_list = data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    use_compiled = data.draw(st.booleans()) and has_compiled_scan()
    torch.manual_seed(seed)
    scan, loop = pair(name, 3, 5, layers, bidirectional, bias)
    D = 2 if bidirectional else 1
    x = torch.randn(batch, steps, 3, dtype=F64, requires_grad=True)
    h0 = torch.randn(layers * D, batch, 5, dtype=F64, requires_grad=True)
    weights = torch.randn(batch, steps, D * 5, dtype=F64)
    lengths = torch.tensor(lengths_list)
    with compiled.enabled(use_compiled):
        got = everything(scan, x, h0, lengths, weights)
    want = everything(loop, x, h0, lengths, weights)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-10)
    for g, w in zip(got[2], want[2], strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)
    # torch.nn's convention: zero outputs past each row's length.
    past = torch.arange(steps)[None, :] >= lengths[:, None]
    assert bool((got[0].detach()[past] == 0).all())


@pytest.mark.parametrize("use_compiled", PATHS)
@pytest.mark.parametrize("name", MINIMAL_CELL_NAMES)
def test_gradcheck(use_compiled: bool, name: str) -> None:
    torch.manual_seed(3)
    rnn = Recurrent(name, 2, 3, num_layers=2, bidirectional=True, backend="scan", dtype=F64)
    x = torch.randn(3, 4, 2, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, 3, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])

    def f(x: Tensor, h0: Tensor, *params: Tensor) -> tuple[Tensor, Tensor]:
        state = rnn.initial_state(3, dtype=F64)
        out, final = torch.func.functional_call(
            rnn, dict(zip([n for n, _ in rnn.named_parameters()], params, strict=True)),
            (x, type(state)(h0), lengths),
        )  # fmt: skip
        return out, final.h

    params = tuple(p.detach().clone().requires_grad_(True) for p in rnn.parameters())
    with path(use_compiled):
        assert torch.autograd.gradcheck(f, (x, h0, *params))
        assert torch.autograd.gradgradcheck(f, (x, h0, *params))  # double backward


@pytest.mark.parametrize("use_compiled", PATHS)
def test_float32_scan_agrees_with_the_loop_within_float32_rounding(use_compiled: bool) -> None:
    torch.manual_seed(4)
    for name in ("mingru", "minlstm"):
        scan = Recurrent(name, 8, 32, num_layers=2, backend="scan")
        loop = Recurrent(name, 8, 32, num_layers=2, backend="unrolled")
        loop.load_state_dict(scan.state_dict())
        x = torch.randn(4, 200, 8)
        with path(use_compiled):
            got, _ = scan(x)
        want, _ = loop(x)
        # 200 steps of a contraction: the rounding stays at a few float32 ulps of |h| ≤ ~3.
        eps = torch.finfo(torch.float32).eps
        torch.testing.assert_close(got, want, rtol=0, atol=200 * eps)


def test_scan_steps_is_the_sequential_recurrence_at_every_length() -> None:
    torch.manual_seed(6)
    for steps in (1, 2, 3, 7, 8, 9, 64, 100):
        a, b = torch.rand(steps, 5, dtype=F64), torch.randn(steps, 5, dtype=F64)
        h0 = torch.randn(5, dtype=F64)
        h, want = h0, []
        for t in range(steps):
            h = a[t] * h + b[t]
            want.append(h)
        torch.testing.assert_close(scan_steps(a, b, h0), torch.stack(want), rtol=0, atol=1e-12)


def test_linear_scan_backward_is_the_reverse_recursion() -> None:
    torch.manual_seed(7)
    a = torch.rand(6, 4, dtype=F64, requires_grad=True)
    b = torch.randn(6, 4, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(LinearScan.apply, (a, b, h0))
    assert torch.autograd.gradgradcheck(LinearScan.apply, (a, b, h0))


def test_a_long_sequence_does_not_underflow() -> None:
    # a_t ≈ 0.5 over 20,000 steps: Π a_t = 2^−20000 underflows any float, and a scan
    # that divides by cumulative products of a_t would return NaN or inf here.
    torch.manual_seed(8)
    rnn = Recurrent("mingru", 1, 4, backend="scan")
    with torch.no_grad():
        rnn.cells[0].weight_ih.zero_()
        rnn.cells[0].bias_ih.copy_(torch.tensor([0.0] * 4 + [1.0] * 4))  # z = ½, h̃ = 1
    out, final = rnn(torch.zeros(1, 20_000, 1))
    torch.testing.assert_close(final.h, torch.ones(1, 1, 4))  # h_t → the fixed point 1
    assert bool(torch.isfinite(out).all())


def test_auto_picks_scan_and_the_other_backends_say_why_not() -> None:
    assert Recurrent("mingru", 2, 3).resolve_backend() == "scan"
    assert Recurrent("minlstm_log", 2, 3, backend="unrolled").resolve_backend() == "unrolled"
    for backend in ("fused", "native"):
        with pytest.raises(ValueError, match=f"backend '{backend}' cannot run this stack"):
            Recurrent("mingru", 2, 3, backend=backend)
    with pytest.raises(ValueError, match="backend 'scan' cannot run this stack: GRUCell is not"):
        Recurrent("gru", 2, 3, backend="scan")
    mixed = [cell_factory("mingru")(2, 3), cell_factory("minlstm")(2, 3)]
    assert "mixes cell types" in scan_supported(mixed)
    forms = [cell_factory("mingru")(2, 3), cell_factory("mingru_log")(2, 3)]
    assert "disagree on bias or form" in scan_supported(forms)


def test_dropout_between_layers_is_applied_by_the_one_stacking_loop() -> None:
    torch.manual_seed(9)
    rnn = Recurrent("mingru", 3, 6, num_layers=2, dropout=0.5, backend="scan")
    x = torch.randn(2, 5, 3)
    rnn.eval()
    a, _ = rnn(x)
    b, _ = rnn(x)
    assert torch.equal(a, b)  # no dropout in eval mode
    rnn.train()
    torch.manual_seed(1)
    c, _ = rnn(x)
    loop = Recurrent("mingru", 3, 6, num_layers=2, dropout=0.5, backend="unrolled")
    loop.load_state_dict(rnn.state_dict())
    torch.manual_seed(1)
    d, _ = loop(x)
    assert not torch.allclose(a, c)  # training mode dropped some inputs of layer 2
    torch.testing.assert_close(c, d)  # the same masks, drawn by the same loop


def test_bf16_autocast_runs_the_recurrence_in_float32() -> None:
    # As the fused backend: the layer runs in its parameters' dtype with autocast off,
    # so it gives exactly the float32 result.
    torch.manual_seed(10)
    for name in ("mingru", "minlstm"):
        rnn = Recurrent(name, 4, 8, backend="scan")
        x = torch.randn(2, 6, 4)
        want, _ = rnn(x, lengths=[6, 3])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, final = rnn(x, lengths=[6, 3])
        assert got.dtype == torch.float32 and final.h.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0, atol=0)
