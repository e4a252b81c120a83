"""What every built-in cell shares: torch.nn's layout, the oracle, gradcheck, input checks."""

from __future__ import annotations

import math

import pytest
import torch

import rnnkit
from rnnkit import GRUCell, HiddenState, LSTMCell, LSTMState, RNNCell
from rnnkit.cells import TORCH_CELL_NAMES, cell_factory
from tests.helpers import TOLERANCES, TORCH_CELLS, weighted_sum

GATES = {"rnn": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def make_pair(name: str, dtype: torch.dtype, bias: bool = True) -> tuple[torch.nn.Module, ...]:
    torch.manual_seed(0)
    ours = cell_factory(name, bias=bias)(3, 5).to(dtype)
    torch_type, extra = TORCH_CELLS[name]
    theirs = torch_type(3, 5, bias=bias, dtype=dtype, **extra)
    return ours, theirs


def as_torch_state(state: tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    return tuple(state) if len(state) > 1 else state[0]


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_layout_is_torch_nn(name: str, bias: bool) -> None:
    ours, theirs = make_pair(name, torch.float64, bias)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    theirs_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert ours_shapes == theirs_shapes
    assert ours_shapes["weight_ih"] == (GATES[name] * 5, 3)
    assert ours_shapes["weight_hh"] == (GATES[name] * 5, 5)


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_step_matches_torch_nn_cell_values_and_gradients(name: str, dtype: torch.dtype) -> None:
    ours, theirs = make_pair(name, dtype)
    theirs.load_state_dict(ours.state_dict())  # copies without any reshaping
    x = torch.randn(4, 3, dtype=dtype, requires_grad=True)
    state = ours.initial_state(4, dtype=dtype)
    state = type(state)(*(torch.randn_like(f).requires_grad_() for f in state))
    # Two steps, so the state's path through W is exercised as well as x's through U.
    out1, s1 = ours(x, state)
    out2, s2 = ours(x * 0.5, s1)
    t_state = as_torch_state(state)
    t1 = theirs(x, t_state)
    t2 = theirs(x * 0.5, t1)
    ours_fields = [out2, *s2]
    theirs_fields = [t2[0], *t2] if isinstance(t2, tuple) else [t2, t2]
    tol = TOLERANCES[dtype]
    for a, b in zip(ours_fields, theirs_fields, strict=True):
        torch.testing.assert_close(a, b, **tol)
    del out1
    loss_ours = weighted_sum(list(s2))
    loss_theirs = weighted_sum(list(t2) if isinstance(t2, tuple) else [t2])
    wrt_ours = [x, *state, *ours.parameters()]
    grads_ours = torch.autograd.grad(loss_ours, wrt_ours)
    grads_theirs = torch.autograd.grad(loss_theirs, [x, *state, *theirs.parameters()])
    for a, b in zip(grads_ours, grads_theirs, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_gradcheck_float64(name: str) -> None:
    torch.manual_seed(1)
    cell = cell_factory(name)(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    fields = [
        torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        for _ in range(len(cell.initial_state(1)))
    ]
    params = list(cell.parameters())
    names = [n for n, _ in cell.named_parameters()]

    def step(x_t: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state_fields, weights = tensors[: len(fields)], tensors[len(fields) :]
        state = cell.state_type(*state_fields)
        replaced = dict(zip(names, weights, strict=True))
        output, new_state = torch.func.functional_call(cell, replaced, (x_t, state))
        return (output, *new_state)

    assert torch.autograd.gradcheck(step, (x, *fields, *params))


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_initial_state_is_zeros_of_the_cells_type(name: str) -> None:
    cell = cell_factory(name)(3, 5)
    state = cell.initial_state(7)
    assert type(state) is (LSTMState if name == "lstm" else HiddenState)
    for field in state:
        assert field.shape == (7, 5)
        assert field.dtype == torch.float32
        assert not field.any()
    assert cell.initial_state(2, dtype=torch.float64).h.dtype == torch.float64


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_reset_parameters_uses_torch_nn_bound(name: str) -> None:
    cell = cell_factory(name)(3, 16)
    bound = 1 / math.sqrt(16)
    for p in cell.parameters():
        assert p.abs().max() <= bound
        assert p.abs().max() > bound / 2  # really drawn, not left at zero


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_wrong_input_shape_names_expected_and_actual(name: str) -> None:
    cell = cell_factory(name)(3, 5)
    state = cell.initial_state(4)
    with pytest.raises(ValueError, match=r"expected x_t of shape \(B, 3\), got \(4, 2\)"):
        cell(torch.randn(4, 2), state)
    with pytest.raises(ValueError, match=r"expected x_t of shape \(B, 3\), got \(4, 1, 3\)"):
        cell(torch.randn(4, 1, 3), state)


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_wrong_state_names_expected_and_actual(name: str) -> None:
    cell = cell_factory(name)(3, 5)
    good = cell.initial_state(4)
    wrong_shape = type(good)(*(torch.zeros(4, 6) for _ in good))
    with pytest.raises(ValueError, match=r"expected every state field of shape \(4, 5\)"):
        cell(torch.randn(4, 3), wrong_shape)
    wrong_type = HiddenState(torch.zeros(4, 5)) if name == "lstm" else LSTMState(*good, *good)
    with pytest.raises(ValueError, match=r"expected state of type"):
        cell(torch.randn(4, 3), wrong_type)
    with pytest.raises(ValueError, match=r"expected state of type"):
        cell(torch.randn(4, 3), good[0])  # a bare tensor is not a state
    holey = type(good)(*([None] * len(good)))
    with pytest.raises(
        ValueError, match=r"expected every state field of shape \(4, 5\), got \w+\(h=NoneType"
    ):
        cell(torch.randn(4, 3), holey)


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_dtype_mismatch_names_the_dtypes(name: str) -> None:
    cell = cell_factory(name)(3, 5)
    with pytest.raises(ValueError, match=r"like the parameters, got x_t torch.float64"):
        cell(torch.randn(4, 3, dtype=torch.float64), cell.initial_state(4))


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0"):
        LSTMCell(3, 0)
    with pytest.raises(ValueError, match=r"input_size must be a positive int, got 2\.5"):
        GRUCell(2.5, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="unknown cell 'lsmt': expected one of rnn, rnn_relu"):
        cell_factory("lsmt")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        RNNCell(3, 4).initial_state(0)


def test_docstrings_give_equations_and_parameter_names() -> None:
    for cell in (RNNCell, LSTMCell, GRUCell):
        doc = cell.__doc__ or ""
        for needed in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "U", "W", "h_{t−1}"):
            assert needed in doc, f"{cell.__name__} docstring lacks {needed!r}"
    for cell in (RNNCell, LSTMCell, GRUCell):
        assert "V·h_t + c" in (cell.__doc__ or ""), f"{cell.__name__} does not name V and c"
    assert "i, f, g, o" in (LSTMCell.__doc__ or "")
    assert "r, z, n" in (GRUCell.__doc__ or "")


def test_protocol_is_runtime_checkable() -> None:
    assert isinstance(LSTMCell(2, 3), rnnkit.Cell)
    assert not isinstance(torch.nn.Linear(2, 3), rnnkit.Cell)
