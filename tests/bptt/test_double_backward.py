"""Second derivatives (create_graph=True) on every backend: exact, as torch.nn's.

A gradient penalty (WGAN-GP, input-gradient regularisers) differentiates a
gradient, so the gradient must itself carry a graph. The fused Functions' loops
compute numbers only; under create_graph=True they replay the forward in autograd
ops instead, so every backend gives torch.nn's higher derivatives.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rnnkit import HiddenState, LSTMState, Recurrent
from rnnkit.bptt import compiled, fused
from rnnkit.cells import TORCH_CELL_NAMES
from rnnkit.recurrent import BACKENDS
from tests.bptt.test_fused import apply, batch_sizes_of, function_inputs, loops
from tests.helpers import TOLERANCES, TORCH_STACKS, weighted_sum
from tests.test_recurrent import run_torch

F64 = torch.float64
BATCH, STEPS, INPUT, HIDDEN = 3, 4, 2, 3
RAGGED = [STEPS, 1, 3]

__all__ = ["loops"]  # the fixture, imported to be used here

# Every backend of the torch.nn cells (scan runs the minimal cells: tests/bptt/test_scan.py);
# fused and auto over both the Python and the compiled loops.
CASES = [(backend, "python") for backend in BACKENDS if backend != "scan"] + [
    ("fused", "compiled"),
    ("auto", "compiled"),
]


def penalised(
    module: nn.Module, x: Tensor, state: list[Tensor], lengths: list[int] | None, ours: bool
) -> tuple[Tensor, Tensor]:
    """(L, penalty) with L a weighted sum of everything and penalty = ‖∂L/∂(x, h0…)‖²."""
    if ours:
        state_type = LSTMState if len(state) == 2 else HiddenState
        out, final = module(x, state_type(*state), lengths=lengths)
        finals = list(final)
    else:
        out, finals = run_torch(module, x, state, lengths)  # type: ignore[arg-type]
    loss = weighted_sum([out, *finals])
    grads = torch.autograd.grad(loss, [x, *state], create_graph=True)
    return loss, sum((g.square().sum() for g in grads), torch.zeros((), dtype=F64))


@pytest.mark.parametrize(("backend", "loop_kind"), CASES, ids=[f"{b}-{k}" for b, k in CASES])
@pytest.mark.parametrize(
    "shape", [(1, False, False), (2, True, True)], ids=["1layer-uni-full", "2layer-bi-ragged"]
)
@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_gradient_penalty_matches_torch_nn(
    name: str,
    shape: tuple[int, bool, bool],
    backend: str,
    loop_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if loop_kind == "python":
        monkeypatch.setattr(compiled, "_enabled", False)
    elif compiled.load() is None:
        pytest.skip(f"no compiled loops here: {compiled.status()}")
    else:
        monkeypatch.setattr(compiled, "chunk", 2)
    num_layers, bidirectional, ragged = shape
    torch.manual_seed(TORCH_CELL_NAMES.index(name) * 10 + num_layers)
    torch_type, extra = TORCH_STACKS[name]
    reference = torch_type(
        INPUT, HIDDEN, num_layers, bidirectional=bidirectional, batch_first=True, dtype=F64, **extra
    )
    ours = Recurrent.from_torch(reference, backend=backend)
    lengths = RAGGED if ragged else None
    x = torch.randn(BATCH, STEPS, INPUT, dtype=F64)
    fields = 2 if name == "lstm" else 1
    state = [
        torch.randn(num_layers * (1 + bidirectional), BATCH, HIDDEN, dtype=F64)
        for _ in range(fields)
    ]

    results = []
    for module, is_ours in ((ours, True), (reference, False)):
        leaves = [t.clone().requires_grad_() for t in (x, *state)]
        loss, penalty = penalised(module, leaves[0], leaves[1:], lengths, is_ours)
        wrt = [*module.parameters(), *leaves]
        # The penalty alone, where a dropped second-order term cannot hide behind L's.
        alone = torch.autograd.grad(penalty, wrt, retain_graph=True)
        total = torch.autograd.grad(loss + penalty, wrt)
        results.append((penalty.detach(), alone, total))
    (p_ours, alone_ours, total_ours), (p_ref, alone_ref, total_ref) = results

    tol = TOLERANCES[F64]
    torch.testing.assert_close(p_ours, p_ref, **tol)
    assert len(alone_ours) == num_layers * (1 + bidirectional) * 4 + 1 + fields
    for a, b in zip(alone_ours + total_ours, alone_ref + total_ref, strict=True):
        torch.testing.assert_close(a, b, **tol)
    # The penalty's own gradient is far from zero: what the old fused backward dropped.
    assert max(float(g.abs().max()) for g in alone_ref) > 1e-2


@pytest.mark.parametrize("backend", ["fused", "auto"])
def test_backward_of_a_gradient_reaches_the_weights(backend: str) -> None:
    # .backward() of a gradient (not autograd.grad to chosen inputs) gives the
    # unrolled backend's .grad on every parameter and on the input.
    torch.manual_seed(0)
    grads = []
    for kind in (backend, "unrolled"):
        torch.manual_seed(1)
        stack = Recurrent("gru", 2, 3, backend=kind).double()
        x = torch.randn(2, 5, 2, dtype=F64, requires_grad=True)
        out, final = stack(x, lengths=[5, 3])
        (g,) = torch.autograd.grad(weighted_sum([out, *final]), x, create_graph=True)
        g.square().sum().backward()
        grads.append([x.grad, *(p.grad for p in stack.parameters())])
    for a, b in zip(*grads, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_first_order_backward_never_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ordinary training pays nothing: only create_graph=True takes the replay path.
    calls = []
    original = fused._replay

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fused, "_replay", spy)
    stack = Recurrent("lstm", 2, 3, backend="fused").double()
    x = torch.randn(2, 4, 2, dtype=F64, requires_grad=True)
    loss = stack(x)[0].square().sum()
    torch.autograd.grad(loss, x, retain_graph=True)
    assert calls == []
    torch.autograd.grad(loss, x, create_graph=True)
    assert calls == [1]  # one layer, one direction: one replay


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("name", ["rnn", "rnn_relu", "lstm", "gru"])
def test_gradgradcheck_of_each_fused_function(
    name: str, ragged: bool, bias: bool, loops: str
) -> None:
    steps, batch = 3, 3
    function, args, _ = function_inputs(name, steps, batch, bias, seed=11)
    sizes = batch_sizes_of([3, 2, 1], steps) if ragged else None
    if name == "rnn_relu":
        with torch.no_grad():  # away from ReLU's kink, where finite differences lie
            args[0].mul_(3.0)

    def run(*tensors: Tensor) -> tuple[Tensor, ...]:
        it = iter(tensors)
        full = [next(it) if a is not None else None for a in args]
        return tuple(apply(function, full, sizes, name))

    inputs = tuple(a for a in args if a is not None)
    assert torch.autograd.gradgradcheck(run, inputs, eps=1e-6, atol=1e-6)


STACKS = [(name, backend) for name in TORCH_CELL_NAMES for backend in BACKENDS if backend != "scan"]
STACKS += [(name, backend) for name in ("mingru", "minlstm") for backend in ("scan", "auto")]


@pytest.mark.parametrize(("name", "backend"), STACKS, ids=[f"{n}-{b}" for n, b in STACKS])
def test_gradgradcheck_of_a_whole_stack_on_every_backend(name: str, backend: str) -> None:
    """gradgradcheck of Recurrent itself: 2 layers, both directions, ragged, float64.

    Checked through x and two weights (layer 0's W, the last cell's U), the rest held
    fixed: every path between the layers and directions is crossed, at a fraction
    of the cost of checking every parameter."""
    torch.manual_seed(4)
    stack = Recurrent(name, INPUT, 2, num_layers=2, bidirectional=True, backend=backend)
    stack.double()
    x = torch.randn(BATCH, STEPS, INPUT, dtype=F64, requires_grad=True)
    first = "cells.0.weight_hh" if name in TORCH_CELL_NAMES else "cells.0.weight_ih"
    names = [first, f"cells.{len(stack.cells) - 1}.weight_ih"]
    weights = [dict(stack.named_parameters())[n].detach().clone().requires_grad_() for n in names]

    def run(x: Tensor, *chosen: Tensor) -> tuple[Tensor, ...]:
        replaced = dict(zip(names, chosen, strict=True))
        out, final = torch.func.functional_call(stack, replaced, (x,), {"lengths": RAGGED})
        return (out, *final)

    assert torch.autograd.gradgradcheck(run, (x, *weights), eps=1e-6, atol=1e-5, fast_mode=True)
