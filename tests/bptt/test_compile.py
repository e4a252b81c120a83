"""torch.compile(fullgraph=True) over a model with a Recurrent inside: no graph break,
eager's numbers; and torch.library.opcheck of every custom op rnnkit registers.

Most cases compile with ``backend="aot_eager"`` (dynamo and AOTAutograd, what finds
graph breaks and checks the fake kernels and autograd formulas, without inductor's
code generation, which is slow on two cores); one case runs inductor end to end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.bptt import compiled, fused, ops, scan
from tests.bptt.test_fused import batch_sizes_of, function_inputs, loops
from tests.helpers import weighted_sum

F64 = torch.float64
BATCH, STEPS, FEATURES, HIDDEN = 3, 5, 4, 6
LENGTHS = [5, 2, 4]

__all__ = ["loops"]  # the fixture (Python loops, then compiled ones), imported to be used here


class Model(nn.Module):
    """Linear → Recurrent → Linear, the outputs and the final state's fields returned."""

    def __init__(self, cell: str, backend: str, bidirectional: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(FEATURES, FEATURES)
        self.rnn = Recurrent(
            cell, FEATURES, HIDDEN, num_layers=2, bidirectional=bidirectional, backend=backend
        )
        self.head = nn.Linear((1 + bidirectional) * HIDDEN, 2)

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, ...]:
        out, final = self.rnn(torch.tanh(self.embed(x)), lengths=lengths)
        return (self.head(out), *final)


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Each test compiles from scratch and counts only its own graph breaks."""
    torch.compiler.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch.compiler.reset()


def run(
    model: nn.Module, x: Tensor, lengths: Tensor | None, train: bool
) -> tuple[list[Tensor], list[Tensor]]:
    """(outputs, gradients of a weighted sum of them w.r.t. the parameters and x)."""
    x = x.detach().clone().requires_grad_(train)
    with torch.set_grad_enabled(train):
        outputs = list(model(x, lengths))
    if not train:
        return outputs, []
    wrt = [*model.parameters(), x]
    return outputs, list(torch.autograd.grad(weighted_sum(outputs), wrt))


def assert_compiles_like_eager(
    model: nn.Module,
    x: Tensor,
    lengths: Tensor | None,
    backend: str = "aot_eager",
    modes: tuple[bool, ...] = (True, False),
) -> None:
    """The compiled model's outputs and gradients are eager's, in training (True) and
    no-grad (False) calls, and nothing broke the graph."""
    compiled_model = torch.compile(model, fullgraph=True, backend=backend)
    for train in modes:
        expected, expected_grads = run(model, x, lengths, train)
        actual, actual_grads = run(compiled_model, x, lengths, train)
        for a, b in zip(actual + actual_grads, expected + expected_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # fullgraph=True raises at a break; the counter says so independently.
    assert dict(torch._dynamo.utils.counters["graph_break"]) == {}


CASES = [(False, False), (True, True)]  # (bidirectional, ragged): both of each, per cell


@pytest.mark.parametrize(("bidirectional", "ragged"), CASES, ids=["uni-full", "bi-ragged"])
@pytest.mark.parametrize("backend", ["fused", "auto"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fullgraph_compile_gives_eager_outputs_and_gradients(
    cell: str, backend: str, bidirectional: bool, ragged: bool
) -> None:
    torch.manual_seed(0)
    model = Model(cell, backend, bidirectional)
    x = torch.randn(BATCH, STEPS, FEATURES)
    assert_compiles_like_eager(model, x, torch.tensor(LENGTHS) if ragged else None)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_scan_backend_compiles_too(cell: str) -> None:
    torch.manual_seed(1)
    model = Model(cell, "auto", bidirectional=True)
    assert model.rnn.resolve_backend() == "scan"
    x = torch.randn(BATCH, STEPS, FEATURES)
    assert_compiles_like_eager(model, x, torch.tensor(LENGTHS))
    assert_compiles_like_eager(model, x, None)


@pytest.mark.parametrize("cell", ["lstm", "mingru"])
# torch's own: dynamo instantiates LinearScan (the scan's Python path) while tracing it.
@pytest.mark.filterwarnings("ignore:<class 'torch.autograd.function.Function'> should not be")
def test_the_python_loops_compile_too(cell: str, loops: str) -> None:
    # Which loops run is decided inside the op (fused) or fixed at tracing (scan).
    torch.manual_seed(4)
    model = Model(cell, "auto", bidirectional=True)
    x = torch.randn(BATCH, STEPS, FEATURES)
    assert_compiles_like_eager(model, x, torch.tensor(LENGTHS), modes=(True,))


def test_autocast_compiles_to_eager_numbers() -> None:
    # The fused ops run in float32 with autocast off, compiled or not.
    torch.manual_seed(5)
    stack = Recurrent("gru", FEATURES, HIDDEN, num_layers=2, bidirectional=True, backend="fused")
    x, lengths = torch.randn(BATCH, STEPS, FEATURES), torch.tensor(LENGTHS)
    compiled_stack = torch.compile(stack, fullgraph=True, backend="aot_eager")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, expected_final = stack(x, lengths=lengths)
        actual, actual_final = compiled_stack(x, lengths=lengths)
    assert actual.dtype == torch.float32
    for a, b in zip((actual, *actual_final), (expected, *expected_final), strict=True):
        torch.testing.assert_close(a, b)  # float32's tolerance: the compiler may reorder


def test_lengths_that_are_all_full_compile_to_the_same_numbers() -> None:
    # Under compile the stack cannot see that every row is full: the ops do.
    torch.manual_seed(2)
    model = Model("gru", "fused", bidirectional=True)
    x = torch.randn(BATCH, STEPS, FEATURES)
    assert_compiles_like_eager(model, x, torch.full((BATCH,), STEPS))


def test_the_graph_holds_the_ops_and_nothing_breaks_it() -> None:
    model = Model("lstm", "fused", bidirectional=True)
    x, lengths = torch.randn(BATCH, STEPS, FEATURES), torch.tensor(LENGTHS)
    explanation = torch._dynamo.explain(model)(x, lengths)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0
    targets = {node.target for graph in explanation.graphs for node in graph.graph.nodes}
    assert torch.ops.rnnkit.fused_lstm.default in targets
    assert torch.ops.rnnkit.checked_lengths.default in targets


def test_bad_lengths_still_raise_under_compile() -> None:
    model = torch.compile(Model("gru", "fused", False), fullgraph=True, backend="aot_eager")
    x = torch.randn(BATCH, STEPS, FEATURES)
    with pytest.raises(ValueError, match=r"lengths: expected every length in 1\.\.5"):
        model(x, torch.tensor([5, 0, 3]))


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++"))


@pytest.mark.skipif(_compiler() is None, reason="inductor needs a C++ compiler")
# torch's own: inductor's first import touches a deprecated torch.jit API.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_inductor_compiles_a_ragged_bidirectional_lstm() -> None:
    torch.manual_seed(3)
    model = Model("lstm", "auto", bidirectional=True)
    x = torch.randn(BATCH, STEPS, FEATURES)
    # Training only: each mode is a compile of its own, tens of seconds on two cores.
    assert_compiles_like_eager(model, x, torch.tensor(LENGTHS), "inductor", modes=(True,))


# --------------------------------------------------------------------------- opcheck


def _fused_cases() -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
    """(id, op, args) for each fused op and its backward: float64, full and ragged."""
    forwards = {"rnn": fused.fused_rnn, "lstm": fused.fused_lstm, "gru": fused.fused_gru}
    for name, op in forwards.items():
        for ragged in (False, True):
            _, args, _ = function_inputs(name, 4, 3, bias=True, seed=5)
            sizes = fused._sizes_tensor(batch_sizes_of([4, 3, 1], 4) if ragged else None)
            extra = (False,) if name == "rnn" else ()
            yield f"{name}-{'ragged' if ragged else 'full'}", op, (*args, sizes, *extra)


@pytest.mark.parametrize(
    ("op", "args"),
    [(op, args) for _, op, args in _fused_cases()],
    ids=[case for case, _, _ in _fused_cases()],
)
def test_opcheck_of_the_fused_ops_and_their_backwards(op: Any, args: tuple[Any, ...]) -> None:
    torch.library.opcheck(op, args)
    # The backward op, on what autograd hands it: the forward's saved tensors.
    outputs = [output.detach() for output in op(*args)]
    plain = [a.detach() if isinstance(a, Tensor) else a for a in args]
    grads = [torch.randn_like(t) for t in outputs[: 3 if op is fused.fused_lstm else 2]]
    if op is fused.fused_lstm:
        x, h0, c0, w_ih, w_hh, _, _, sizes = plain
        Y, _, _, A, C = outputs
        backward = (*grads, x, h0, c0, w_ih, w_hh, Y, A, C, sizes, [True] * 7)
        torch.library.opcheck(fused.fused_lstm_backward, backward)
        partial = (*grads, x, h0, c0, w_ih, w_hh, Y, A, C, sizes, [True, False] * 3 + [True])
        torch.library.opcheck(fused.fused_lstm_backward, partial)
    elif op is fused.fused_gru:
        x, h0, w_ih, w_hh, _, _, sizes = plain
        Y, _, S, N = outputs
        backward = (*grads, x, h0, w_ih, w_hh, Y, S, N, sizes, [True] * 6)
        torch.library.opcheck(fused.fused_gru_backward, backward)
        partial = (None, grads[1], x, h0, w_ih, w_hh, Y, S, N, sizes, [False, True] * 3)
        torch.library.opcheck(fused.fused_gru_backward, partial)
    else:
        x, h0, w_ih, w_hh, _, _, sizes, relu = plain
        Y = outputs[0]
        backward = (*grads, x, h0, w_ih, w_hh, Y, sizes, relu, [True] * 6)
        torch.library.opcheck(fused.fused_rnn_backward, backward)
        partial = (grads[0], None, x, h0, w_ih, w_hh, Y, sizes, relu, [True, True] + [False] * 4)
        torch.library.opcheck(fused.fused_rnn_backward, partial)


@pytest.mark.parametrize("kind", [0, 1], ids=["mingru", "minlstm"])
def test_opcheck_of_the_scan_op_and_its_backward(kind: int) -> None:
    if compiled.load() is None or not hasattr(compiled.load(), "minimal_forward"):
        pytest.skip(f"no compiled loops here: {compiled.status()}")
    torch.manual_seed(6)
    gates = 2 + kind
    x = torch.randn(3, 4, 2, dtype=F64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=F64, requires_grad=True)
    weight = torch.randn(gates * 5, 2, dtype=F64, requires_grad=True)
    bias = torch.randn(gates * 5, dtype=F64, requires_grad=True)
    for lengths, reverse in ((None, False), (torch.tensor([4, 1, 3]), True)):
        args = (x, h0, weight, bias, lengths, kind, kind == 1, reverse)
        torch.library.opcheck(scan.minimal_layer, args)
        Y, final, P = scan.minimal_layer(*args)
        plain = (x.detach(), h0.detach(), weight.detach(), bias.detach(), P, Y.detach())
        backward = (torch.randn_like(Y), torch.randn_like(final), *plain)
        options = (lengths, kind, kind == 1, reverse)
        torch.library.opcheck(scan.minimal_layer_backward, (*backward, *options, [True] * 4))
        torch.library.opcheck(
            scan.minimal_layer_backward, (*backward, *options, [False, True, True, False])
        )


def test_opcheck_of_the_lengths_check() -> None:
    torch.library.opcheck(ops.checked_lengths, (torch.tensor(LENGTHS), BATCH, STEPS))
    torch.library.opcheck(ops.checked_lengths, (torch.tensor(LENGTHS, dtype=torch.int32), 3, 5))
