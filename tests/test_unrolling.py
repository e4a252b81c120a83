"""``unroll``: any cell, ragged lengths, reverse runs; checked against independent references."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnkit import HiddenState, LSTMState, Recurrent, unroll
from rnnkit.cells import TORCH_CELL_NAMES, cell_factory
from tests.helpers import TORCH_STACKS, torch_state_fields, weighted_sum

# ----------------------------------------------------------------- cells defined here


class IRNNCell(nn.Module):
    """Le et al. 2015: a ReLU RNN whose W starts as the identity and b at zero."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.U = nn.Linear(input_size, hidden_size, bias=False)
        self.W = nn.Linear(hidden_size, hidden_size)
        with torch.no_grad():
            self.W.weight.copy_(torch.eye(hidden_size))
            self.W.bias.zero_()

    def forward(self, x_t: Tensor, state: HiddenState) -> tuple[Tensor, HiddenState]:
        h = torch.relu(self.U(x_t) + self.W(state.h))
        return h, HiddenState(h)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> HiddenState:  # type: ignore[no-untyped-def]
        return HiddenState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))


class LayerNormLSTMCell(nn.Module):
    """An LSTM with layer normalisation on the gate pre-activations and on c_t (Ba et al. 2016)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.ih = nn.Linear(input_size, 4 * hidden_size, bias=False)
        self.hh = nn.Linear(hidden_size, 4 * hidden_size)
        self.norm_gates = nn.LayerNorm(4 * hidden_size)
        self.norm_cell = nn.LayerNorm(hidden_size)

    def forward(self, x_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        i, f, g, o = self.norm_gates(self.ih(x_t) + self.hh(state.h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.norm_cell(c))
        return h, LSTMState(h, c)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> LSTMState:  # type: ignore[no-untyped-def]
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return LSTMState(zeros, zeros.clone())


class CounterState(NamedTuple):
    count: Tensor  # (B, 1)
    total: Tensor  # (B, 2): a state field wider than the output


class CounterCell(nn.Module):
    """No parameters, a state type of its own, an output narrower than the state."""

    input_size, hidden_size = 2, 1

    def forward(self, x_t: Tensor, state: CounterState) -> tuple[Tensor, CounterState]:
        new = CounterState(state.count + 1, state.total + x_t)
        return new.total.sum(dim=1, keepdim=True), new

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> CounterState:  # type: ignore[no-untyped-def]
        return CounterState(
            torch.zeros(batch_size, 1, device=device, dtype=dtype),
            torch.zeros(batch_size, 2, device=device, dtype=dtype),
        )


def manual_loop(cell: nn.Module, x: Tensor) -> tuple[Tensor, object]:
    """The reference: a plain loop with no masking and no validation."""
    state = cell.initial_state(x.shape[0], dtype=x.dtype)
    outs = []
    for t in range(x.shape[1]):
        out, state = cell(x[:, t], state)
        outs.append(out)
    return torch.stack(outs, 1), state


# ----------------------------------------------------------------- user-defined cells


@pytest.mark.parametrize("cell_type", [IRNNCell, LayerNormLSTMCell])
def test_a_cell_defined_in_the_test_runs_under_unroll(cell_type: type[nn.Module]) -> None:
    torch.manual_seed(0)
    cell = cell_type(3, 4).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    outputs, final = unroll(cell, x)
    expected_outputs, expected_final = manual_loop(cell, x)
    torch.testing.assert_close(outputs, expected_outputs, rtol=0, atol=0)
    assert type(final) is type(expected_final)
    for a, b in zip(final, expected_final, strict=True):  # type: ignore[call-overload]
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_irnn_with_zero_input_keeps_its_state() -> None:
    # W = I, b = 0 and x = 0 make the ReLU RNN an identity map on a non-negative state.
    cell = IRNNCell(2, 3).double()
    h0 = HiddenState(torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64))
    outputs, final = unroll(cell, torch.zeros(1, 10, 2, dtype=torch.float64), h0)
    torch.testing.assert_close(final.h, h0.h)
    torch.testing.assert_close(outputs[:, -1], h0.h)


def test_custom_cell_state_type_and_ragged_lengths() -> None:
    x = torch.ones(3, 5, 2, dtype=torch.float64)
    outputs, final = unroll(CounterCell(), x, lengths=[5, 2, 1])
    assert type(final) is CounterState
    assert final.count.flatten().tolist() == [5.0, 2.0, 1.0]
    assert final.total.tolist() == [[5.0, 5.0], [2.0, 2.0], [1.0, 1.0]]
    assert outputs[1, :, 0].tolist() == [2.0, 4.0, 0.0, 0.0, 0.0]
    # Reverse: the output at step t sums x over t … length−1, so order shows.
    steps = torch.arange(1.0, 6.0, dtype=torch.float64)[None, :, None].expand(3, 5, 2)
    backward_out, backwards = unroll(CounterCell(), steps, lengths=[5, 2, 1], reverse=True)
    assert backwards.count.flatten().tolist() == [5.0, 2.0, 1.0]
    assert backward_out[0, :, 0].tolist() == [30.0, 28.0, 24.0, 18.0, 10.0]
    assert backward_out[1, :, 0].tolist() == [6.0, 4.0, 0.0, 0.0, 0.0]


def test_custom_cells_stack_in_recurrent_and_backpropagate() -> None:
    torch.manual_seed(0)
    stack = Recurrent(LayerNormLSTMCell, 3, 4, num_layers=2, bidirectional=True).double()
    assert stack.resolve_backend() == "unrolled"
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    outputs, final = stack(x, lengths=[5, 3])
    assert outputs.shape == (2, 5, 8)
    assert type(final) is LSTMState and final.h.shape == (4, 2, 4)
    weighted_sum([outputs, *final]).backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Padded inputs of row 1 (steps 3, 4) get no gradient.
    assert x.grad is not None and not x.grad[1, 3:].any()


# ----------------------------------------------------------------- ragged semantics


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
@pytest.mark.parametrize("reverse", [False, True])
def test_ragged_rows_equal_their_own_trimmed_runs(name: str, reverse: bool) -> None:
    torch.manual_seed(0)
    cell = cell_factory(name)(3, 4).double()
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    lengths = [6, 1, 4, 2]
    outputs, final = unroll(cell, x, lengths=lengths, reverse=reverse)
    for b, n in enumerate(lengths):
        alone, alone_final = unroll(cell, x[b : b + 1, :n], reverse=reverse)
        torch.testing.assert_close(outputs[b : b + 1, :n], alone, rtol=1e-12, atol=1e-12)
        assert not outputs[b, n:].any(), "outputs past the length must be zero"
        for field, alone_field in zip(final, alone_final, strict=True):
            torch.testing.assert_close(field[b : b + 1], alone_field, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_reverse_is_forward_over_the_flipped_valid_part(name: str) -> None:
    torch.manual_seed(1)
    cell = cell_factory(name)(2, 3).double()
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    lengths = [5, 3, 1]
    flipped = x.clone()
    for b, n in enumerate(lengths):
        flipped[b, :n] = x[b, :n].flip(0)
    backward_out, backward_final = unroll(cell, x, lengths=lengths, reverse=True)
    forward_out, forward_final = unroll(cell, flipped, lengths=lengths)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(backward_out[b, :n], forward_out[b, :n].flip(0))
    for a, c in zip(backward_final, forward_final, strict=True):
        torch.testing.assert_close(a, c)


@pytest.mark.parametrize("garbage", [1e6, float("nan"), float("inf")])
def test_padded_positions_influence_nothing(garbage: float) -> None:
    torch.manual_seed(2)
    cell = cell_factory("lstm")(3, 4).double()
    clean = torch.randn(2, 6, 3, dtype=torch.float64)
    noisy = clean.clone()
    noisy[1, 3:] = garbage
    lengths = torch.tensor([6, 3])
    results = []
    for data in (clean, noisy):
        x = data.clone().requires_grad_()
        out, final = unroll(cell, x, lengths=lengths)
        cell.zero_grad()
        weighted_sum([out, *final]).backward()
        grads = [p.grad.clone() for p in cell.parameters() if p.grad is not None]
        results.append((out, final, x.grad, grads))
    (out, final, x_grad, grads), (out2, final2, x_grad2, grads2) = results
    torch.testing.assert_close(out, out2, rtol=0, atol=0)
    torch.testing.assert_close(final.h, final2.h, rtol=0, atol=0)
    torch.testing.assert_close(final.c, final2.c, rtol=0, atol=0)
    assert len(grads) == len(grads2) == 4
    for a, b in zip(grads, grads2, strict=True):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert x_grad2 is not None and not x_grad2[1, 3:].any()
    torch.testing.assert_close(x_grad, x_grad2, rtol=0, atol=0)


def test_full_lengths_equal_no_lengths() -> None:
    cell = cell_factory("rnn")(2, 3).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    a, sa = unroll(cell, x)
    b, sb = unroll(cell, x, lengths=torch.tensor([4, 4]))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(sa.h, sb.h, rtol=0, atol=0)


def test_given_state_is_used_and_its_gradient_flows() -> None:
    cell = cell_factory("lstm")(2, 3).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    h0 = LSTMState(
        torch.randn(2, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 3, dtype=torch.float64, requires_grad=True),
    )
    out, _ = unroll(cell, x, h0, lengths=[4, 1])
    zero_out, _ = unroll(cell, x, lengths=[4, 1])
    assert not torch.allclose(out, zero_out)
    out.sum().backward()
    assert h0.h.grad is not None and h0.h.grad.abs().sum() > 0
    assert h0.c.grad is not None and h0.c.grad.abs().sum() > 0


# ----------------------------------------------------------------- properties


@st.composite
def ragged_problems(draw: st.DrawFn) -> dict[str, object]:
    batch = draw(st.integers(1, 5))
    steps = draw(st.integers(1, 8))
    return {
        "name": draw(st.sampled_from(TORCH_CELL_NAMES)),
        "batch": batch,
        "steps": steps,
        "input_size": draw(st.integers(1, 4)),
        "hidden_size": draw(st.integers(1, 6)),
        "reverse": draw(st.booleans()),
        "lengths": draw(
            st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch)
        ),
        "seed": draw(st.integers(0, 2**16)),
    }


@given(ragged_problems())
def test_property_unroll_agrees_with_torch_nn_on_any_ragged_batch(problem: dict) -> None:  # type: ignore[type-arg]
    torch.manual_seed(problem["seed"])
    B, T, I, H = problem["batch"], problem["steps"], problem["input_size"], problem["hidden_size"]
    name, lengths, reverse = problem["name"], problem["lengths"], problem["reverse"]
    cell = cell_factory(name)(I, H).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    outputs, final = unroll(cell, x, lengths=lengths, reverse=reverse)
    assert outputs.shape == (B, T, H)
    assert all(field.shape == (B, H) for field in final)

    # torch.nn oracle: a bidirectional layer holds both directions; copy this cell
    # into the one we compare and read that half.
    torch_type, extra = TORCH_STACKS[name]
    oracle = torch_type(I, H, batch_first=True, bidirectional=True, dtype=torch.float64, **extra)
    suffix = "_l0_reverse" if reverse else "_l0"
    with torch.no_grad():
        for pname, p in cell.named_parameters():
            getattr(oracle, pname + suffix).copy_(p)
    full = [T] * B if lengths is None else lengths
    packed = nn.utils.rnn.pack_padded_sequence(
        x, torch.tensor(full), batch_first=True, enforce_sorted=False
    )
    out_packed, state = oracle(packed)
    expected, _ = nn.utils.rnn.pad_packed_sequence(out_packed, batch_first=True, total_length=T)
    half = slice(H, 2 * H) if reverse else slice(0, H)
    torch.testing.assert_close(outputs, expected[:, :, half], rtol=1e-10, atol=1e-10)
    for ours, theirs in zip(final, torch_state_fields(state), strict=True):
        torch.testing.assert_close(ours, theirs[1 if reverse else 0], rtol=1e-10, atol=1e-10)
    for b, n in enumerate(full):
        assert not outputs[b, n:].any()


@given(
    st.integers(1, 4),
    st.integers(1, 6),
    st.lists(st.integers(1, 6), min_size=1, max_size=4),
    st.booleans(),
)
def test_property_rows_are_independent(
    batch: int, hidden: int, raw: list[int], reverse: bool
) -> None:
    torch.manual_seed(batch * 100 + hidden)
    steps = max(raw)
    lengths = (raw * batch)[:batch]
    steps = max(lengths)
    cell = LayerNormLSTMCell(2, hidden).double()
    x = torch.randn(batch, steps, 2, dtype=torch.float64)
    outputs, final = unroll(cell, x, lengths=lengths, reverse=reverse)
    for b, n in enumerate(lengths):
        alone, alone_final = unroll(cell, x[b : b + 1, :n], reverse=reverse)
        torch.testing.assert_close(outputs[b : b + 1, :n], alone, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(final.c[b : b + 1], alone_final.c, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------- bad input


def test_bad_inputs_name_expected_and_actual() -> None:
    cell = cell_factory("lstm")(3, 4)
    with pytest.raises(ValueError, match=r"inputs: expected \(B, T, 3\), got 2-D \(5, 3\)"):
        unroll(cell, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"inputs: expected \(B, T, 3\), got \(2, 5, 4\)"):
        unroll(cell, torch.randn(2, 5, 4))
    with pytest.raises(
        ValueError, match=r"inputs: expected a floating-point tensor, got dtype torch.int64"
    ):
        unroll(cell, torch.ones(2, 5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"at least one row and one step, got \(2, 0, 3\)"):
        unroll(cell, torch.randn(2, 0, 3))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        ([3, 0], r"lengths: expected every length in 1..5, got values in 0..3"),
        ([6, 2], r"lengths: expected every length in 1..5, got values in 2..6"),
        ([3], r"lengths: expected shape \(2,\), got \(1,\)"),
        (torch.tensor([[3, 2]]), r"lengths: expected shape \(2,\), got \(1, 2\)"),
        (torch.tensor([3.0, 2.0]), r"lengths: expected an integer tensor, got dtype torch.float32"),
        (["a", "b"], r"lengths: expected a sequence of ints"),
        ([2.7, 4.0], r"lengths: expected a sequence of ints, got \[2.7, 4.0\]"),
        ([True, 4], r"lengths: expected a sequence of ints"),
        (np.array([2.5, 4.0]), r"lengths: expected a sequence of ints"),
        (5, r"lengths: expected a sequence of ints, got 5"),
    ],
)
def test_bad_lengths(lengths: object, message: str) -> None:
    cell = cell_factory("gru")(3, 4)
    with pytest.raises(ValueError, match=message):
        unroll(cell, torch.randn(2, 5, 3), lengths=lengths)  # type: ignore[arg-type]


def test_numpy_integer_lengths_are_accepted() -> None:
    cell = cell_factory("gru")(3, 4)
    x = torch.randn(2, 5, 3)
    a, _ = unroll(cell, x, lengths=np.array([5, 2]))
    b, _ = unroll(cell, x, lengths=[5, 2])
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dtype_mismatch_is_a_value_error() -> None:
    cell = cell_factory("lstm")(3, 4).double()
    with pytest.raises(
        ValueError,
        match=r"inputs: expected dtype torch.float64 like the parameters, got torch.float32",
    ):
        unroll(cell, torch.randn(2, 5, 3))


def test_bad_state() -> None:
    cell = cell_factory("lstm")(3, 4)
    x = torch.randn(2, 5, 3)
    with pytest.raises(
        ValueError,
        match=r"state: expected LSTMState\(h=\(2, 4\), c=\(2, 4\)\), got HiddenState\(h=\(2, 4\)\)",
    ):
        unroll(cell, x, HiddenState(torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"got LSTMState\(h=\(3, 4\), c=\(3, 4\)\)"):
        unroll(cell, x, LSTMState(torch.zeros(3, 4), torch.zeros(3, 4)))
    with pytest.raises(ValueError, match=r"got tuple\(0=\(2, 4\), 1=\(2, 4\)\)"):
        unroll(cell, x, (torch.zeros(2, 4), torch.zeros(2, 4)))
    with pytest.raises(
        ValueError, match=r"expected dtype torch.float32 like the inputs, got torch.float64"
    ):
        unroll(
            cell,
            x,
            LSTMState(
                torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
            ),
        )
