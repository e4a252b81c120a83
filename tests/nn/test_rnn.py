"""rnnkit.nn.RNN / LSTM / GRU against torch.nn's modules, weight for weight, in float64."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_sequence

import rnnkit.nn as rnn
from tests.nn.errors import error_of

KINDS: dict[str, tuple[type[nn.RNNBase], type[nn.RNNBase], dict[str, Any]]] = {
    "rnn": (nn.RNN, rnn.RNN, {}),
    "rnn_relu": (nn.RNN, rnn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, rnn.LSTM, {}),
    "lstm_proj": (nn.LSTM, rnn.LSTM, {"proj_size": 2}),
    "gru": (nn.GRU, rnn.GRU, {}),
}
BACKENDS = ["auto", "unrolled", "native", "fused"]
# Every kind on every backend that runs it: fused implements the plain LSTM only
# (it refuses a projection: the last test).
RUNS = [
    (kind, backend)
    for kind in KINDS
    for backend in BACKENDS
    if not (backend == "fused" and "proj_size" in KINDS[kind][2])
]
I, H = 3, 5


def pair(kind: str, backend: str, **options: Any) -> tuple[nn.RNNBase, nn.RNNBase]:
    """(torch.nn's module, rnnkit.nn's) with the same weights, float64."""
    torch_type, ours_type, extra = KINDS[kind]
    reference = torch_type(I, H, dtype=torch.float64, **extra, **options)
    ours = ours_type(I, H, dtype=torch.float64, backend=backend, **extra, **options)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def tensors(result: Any) -> list[Tensor]:
    """Every tensor of a forward's result, flattened: output (data if packed), h, c."""
    output, state = result
    data = output.data if isinstance(output, PackedSequence) else output
    return [data, *(state if isinstance(state, tuple) else (state,))]


def weighted(values: list[Tensor]) -> Tensor:
    generator = torch.Generator().manual_seed(7)
    return sum((v * torch.randn(v.shape, generator=generator, dtype=v.dtype)).sum() for v in values)  # type: ignore[return-value]


def assert_same(
    reference: nn.Module, ours: nn.Module, run: Callable[[nn.Module], Any], inputs: list[Tensor]
) -> None:
    """Forward results and the gradients of inputs and parameters agree to 1e-10."""
    expected, got = tensors(run(reference)), tensors(run(ours))
    assert len(expected) == len(got)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    wanted_ref = [*inputs, *reference.parameters()]
    wanted_ours = [*inputs, *ours.parameters()]
    # retain_graph: both graphs share the inputs' own (a PackedSequence's packing).
    ref_grads = torch.autograd.grad(weighted(expected), wanted_ref, retain_graph=True)
    our_grads = torch.autograd.grad(weighted(got), wanted_ours, retain_graph=True)
    for a, b in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def initial(kind: str, layers: int, directions: int, batch: int | None) -> Any:
    """A random hx for the kind (h, or (h, c)), unbatched when batch is None."""
    rows = (batch,) if batch is not None else ()
    width = KINDS[kind][2].get("proj_size", H)
    h = torch.randn(layers * directions, *rows, width, dtype=torch.float64, requires_grad=True)
    if not kind.startswith("lstm"):
        return h
    c = torch.randn(layers * directions, *rows, H, dtype=torch.float64, requires_grad=True)
    return (h, c)


def hx_leaves(hx: Any) -> list[Tensor]:
    return list(hx) if isinstance(hx, tuple) else [hx]


@pytest.mark.parametrize(("kind", "backend"), RUNS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_a_batch_matches_torch(kind: str, backend: str, bidirectional: bool, batch_first: bool):
    reference, ours = pair(
        kind, backend, num_layers=2, bidirectional=bidirectional, batch_first=batch_first
    )
    shape = (4, 6, I) if batch_first else (6, 4, I)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    hx = initial(kind, 2, 2 if bidirectional else 1, 4)
    assert_same(reference, ours, lambda m: m(x, hx), [x, *hx_leaves(hx)])
    assert_same(reference, ours, lambda m: m(x), [x])


@pytest.mark.parametrize(("kind", "backend"), RUNS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unbatched_input_matches_torch(kind: str, backend: str, bidirectional: bool) -> None:
    reference, ours = pair(kind, backend, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(6, I, dtype=torch.float64, requires_grad=True)  # (T, I)
    hx = initial(kind, 2, 2 if bidirectional else 1, None)
    assert_same(reference, ours, lambda m: m(x, hx), [x, *hx_leaves(hx)])
    assert_same(reference, ours, lambda m: m(x), [x])


@pytest.mark.parametrize(("kind", "backend"), RUNS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_packed_sequence_gives_torch_s_packed_sequence(
    kind: str, backend: str, bidirectional: bool
) -> None:
    reference, ours = pair(kind, backend, num_layers=2, bidirectional=bidirectional)
    rows = [torch.randn(n, I, dtype=torch.float64, requires_grad=True) for n in (3, 6, 1, 6)]
    packed = pack_sequence(rows, enforce_sorted=False)
    hx = initial(kind, 2, 2 if bidirectional else 1, len(rows))  # the caller's row order
    expected, got = reference(packed, hx)[0], ours(packed, hx)[0]
    assert isinstance(got, PackedSequence)
    for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        assert torch.equal(getattr(got, field), getattr(expected, field))
    assert_same(reference, ours, lambda m: m(packed, hx), [*rows, *hx_leaves(hx)])


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    kind=st.sampled_from(list(KINDS)),
    backend=st.sampled_from(["auto", "unrolled", "native"]),
    batch_first=st.booleans(),
    sort=st.booleans(),
)
def test_any_packed_batch_matches_torch(
    lengths: list[int], kind: str, backend: str, batch_first: bool, sort: bool
) -> None:
    reference, ours = pair(kind, backend, bidirectional=True, batch_first=batch_first)
    if sort:
        lengths = sorted(lengths, reverse=True)
    rows = [torch.randn(n, I, dtype=torch.float64, requires_grad=True) for n in lengths]
    packed = pack_sequence(rows, enforce_sorted=sort)
    assert_same(reference, ours, lambda m: m(packed), rows)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("batch_first", [False, True])
def test_a_batch_of_zero_rows_has_torch_s_shapes(kind: str, batch_first: bool) -> None:
    reference, ours = pair(kind, "auto", num_layers=2, batch_first=batch_first)
    x = torch.randn((0, 4, I) if batch_first else (4, 0, I), dtype=torch.float64)
    for a, b in zip(tensors(ours(x)), tensors(reference(x)), strict=True):
        assert a.shape == b.shape and a.numel() == 0


# torch's kernel says so for a float32 projected LSTM on the CPU, in torch.nn and here.
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_state_dicts_load_both_ways_with_torch_s_keys() -> None:
    reference = nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2)
    ours = rnn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2)
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert "weight_hr_l1_reverse" in ours.state_dict()
    ours.load_state_dict(reference.state_dict())
    back = nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(5, 2, I)
    # Exact on purpose: two nn.LSTM of the same shapes and kernel, weights round-tripped.
    torch.testing.assert_close(back(x)[0], reference(x)[0], rtol=0, atol=0)
    assert isinstance(ours, nn.RNNBase) and not isinstance(ours, nn.LSTM)  # see rnnkit.nn.rnn
    assert [len(layer) for layer in ours.all_weights] == [5] * 4


def test_the_final_state_is_used_like_torch_s() -> None:
    _, gru = pair("gru", "auto", num_layers=2)
    _, h_n = gru(torch.randn(5, 3, I, dtype=torch.float64))
    assert isinstance(h_n, Tensor) and h_n.shape == (2, 3, H)
    _, lstm = pair("lstm", "auto")
    _, (h, c) = lstm(torch.randn(5, 3, I, dtype=torch.float64))
    assert h.shape == c.shape == (1, 3, H)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gradient_penalty_has_torch_s_second_derivative(backend: str) -> None:
    """The issue's case: L + ‖∂L/∂x‖² through a GRU, differentiated again (create_graph)."""
    reference, ours = pair("gru", backend, num_layers=2, bidirectional=True)

    def penalised(module: nn.Module) -> list[Tensor]:
        x = torch.randn(6, 3, I, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        x.requires_grad_(True)
        output, _ = module(x)
        loss = output.square().sum()
        (grad_x,) = torch.autograd.grad(loss, x, create_graph=True)
        total = loss + grad_x.square().sum()
        return list(torch.autograd.grad(total, list(module.parameters())))

    for a, b in zip(penalised(ours), penalised(reference), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_dropout_between_layers_follows_the_module_s_mode_and_value() -> None:
    reference, ours = pair("lstm", "auto", num_layers=2, dropout=1.0)
    x = torch.randn(5, 2, I, dtype=torch.float64)
    reference.train()
    ours.train()
    # p = 1 zeros layer 2's inputs in both, whatever masks each draws.
    torch.testing.assert_close(ours(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)
    ours.eval()
    reference.eval()
    torch.testing.assert_close(ours(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)
    ours.dropout = reference.dropout = 0.0  # changed after construction, as torch allows
    ours.train()
    reference.train()
    torch.testing.assert_close(ours(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)


def test_parameters_swapped_or_reparametrised_are_the_ones_that_run() -> None:
    reference, ours = pair("gru", "auto")
    x = torch.randn(5, 2, I, dtype=torch.float64)
    swapped = {name: torch.zeros_like(p) for name, p in reference.named_parameters()}
    got = torch.func.functional_call(ours, swapped, (x,))[0]
    want = torch.func.functional_call(reference, swapped, (x,))[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for module in (reference, ours):
        nn.utils.parametrizations.weight_norm(module, "weight_hh_l0")
    torch.testing.assert_close(ours(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)


def test_copies_pickles_and_moves_keep_working() -> None:
    reference, ours = pair("lstm", "auto", num_layers=2)
    x = torch.randn(5, 2, I, dtype=torch.float64)
    ours(x)  # builds the private stack, which must not travel with the module
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for module in (copy.deepcopy(ours), loaded):
        torch.testing.assert_close(module(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)
    single, expected = ours.float(), reference.float()
    torch.testing.assert_close(single(x.float())[0], expected(x.float())[0])


def test_flatten_parameters_is_a_no_op_and_the_repr_names_a_pinned_backend() -> None:
    module = rnn.GRU(I, H, backend="fused")
    before = [p.data_ptr() for p in module.parameters()]
    module.flatten_parameters()
    assert [p.data_ptr() for p in module.parameters()] == before
    assert repr(module) == "GRU(3, 5, backend='fused')"
    assert repr(rnn.GRU(I, H)) == repr(nn.GRU(I, H))


# The misuse cases: each raises what torch.nn raises, with its message.
MISUSE: dict[str, Callable[[Any], Any]] = {
    "4-D input": lambda m: m(torch.randn(2, 2, 2, I)),
    "wrong feature size": lambda m: m(torch.randn(5, 2, I + 1)),
    "wrong dtype": lambda m: m(torch.randn(5, 2, I, dtype=torch.float64)),
    "zero steps": lambda m: m(torch.randn(0, 2, I)),
    "unbatched input, 3-D hx": lambda m: m(torch.randn(5, I), _hx(m, (1, 1))),
    "batched input, 2-D hx": lambda m: m(torch.randn(5, 2, I), _hx(m, (1,))),
    "hx of the wrong batch": lambda m: m(torch.randn(5, 2, I), _hx(m, (1, 3))),
    "hx of the wrong width": lambda m: m(torch.randn(5, 2, I), _hx(m, (1, 2), width=H + 1)),
}


def _hx(module: nn.Module, leading: tuple[int, ...], width: int = H) -> Any:
    h = torch.zeros(*leading, width)
    return (h, torch.zeros(*leading, width)) if getattr(module, "mode", "") == "LSTM" else h


@pytest.mark.parametrize("case", list(MISUSE))
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_misuse_raises_torch_s_error(case: str, kind: str) -> None:
    torch_type, ours_type, extra = KINDS[kind]
    expected = error_of(lambda: MISUSE[case](torch_type(I, H, **extra)))
    got = error_of(lambda: MISUSE[case](ours_type(I, H, **extra)))
    assert (type(got), str(got)) == (type(expected), str(expected))


def test_constructor_misuse_raises_torch_s_error_and_a_bad_backend_is_named() -> None:
    for args, kwargs in (((I, 0), {}), ((I, H), {"dropout": 2.0}), ((I, H), {"proj_size": H})):
        expected = error_of(lambda: nn.LSTM(*args, **kwargs))  # noqa: B023
        got = error_of(lambda: rnn.LSTM(*args, **kwargs))  # noqa: B023
        assert (type(got), str(got)) == (type(expected), str(expected))
    with pytest.raises(ValueError, match="backend: expected one of auto, unrolled"):
        rnn.GRU(I, H, backend="scan")
    with pytest.raises(ValueError, match="backend 'fused' cannot run an LSTM with proj_size"):
        rnn.LSTM(I, H, proj_size=2, backend="fused")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_torch_compile_traces_the_module_whole_with_eager_s_numbers(kind: str) -> None:
    """fullgraph=True: no graph break (torch.compile refuses nn.LSTM itself, not these)."""
    torch.manual_seed(8)
    _, ours = pair(kind, "auto", num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(3, 5, I, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    got, eager = tensors(compiled(x)), tensors(ours(x))
    for a, b in zip(got, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    wanted = [x, *ours.parameters()]
    for a, b in zip(
        torch.autograd.grad(weighted(got), wanted),
        torch.autograd.grad(weighted(eager), wanted),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
