"""The minimal cells (minGRU, minLSTM) against their equations, written out here."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from rnnkit import HiddenState, MinGRUCell, MinLSTMCell
from rnnkit.cells import MINIMAL_CELL_NAMES, cell_factory
from rnnkit.cells.minimal import positive

F64 = torch.float64


def g(v: Tensor) -> Tensor:  # the paper's g, written independently of the cell's
    return torch.where(v >= 0, v + 0.5, 1 / (1 + torch.exp(-v)))


@pytest.mark.parametrize("form", ["plain", "log"])
def test_mingru_step_follows_the_paper(form: str) -> None:
    torch.manual_seed(0)
    cell = MinGRUCell(3, 4, form=form).double()
    x, h_prev = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
    U, b = cell.weight_ih, cell.bias_ih
    assert U.shape == (8, 3) and b is not None and b.shape == (8,)
    k = x @ U.T + b
    z = torch.sigmoid(k[:, :4])
    cand = k[:, 4:] if form == "plain" else g(k[:, 4:])
    want = (1 - z) * h_prev + z * cand
    out, state = cell(x, HiddenState(h_prev))
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    assert state.h is out
    a, bb = cell.coefficients(x)
    torch.testing.assert_close(a, 1 - z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bb, z * cand, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", ["plain", "log"])
def test_minlstm_step_follows_the_paper(form: str) -> None:
    torch.manual_seed(1)
    cell = MinLSTMCell(3, 4, form=form).double()
    x, h_prev = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
    k = x @ cell.weight_ih.T + cell.bias_ih
    i, f = torch.sigmoid(k[:, :4]), torch.sigmoid(k[:, 4:8])
    cand = k[:, 8:] if form == "plain" else g(k[:, 8:])
    want = f / (f + i) * h_prev + i / (f + i) * cand
    out, _ = cell(x, HiddenState(h_prev))
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_minlstm_gates_stay_finite_where_both_sigmoids_underflow() -> None:
    # f + i = 0 in float32 for pre-activations below −104: the direct ratio is 0/0.
    cell = MinLSTMCell(1, 1, bias=False)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[200.0], [201.0], [1.0]]))  # k_i, k_f, k_h
    a, b = cell.coefficients(torch.tensor([[-1.0]]))  # k_i = −200, k_f = −201
    e = torch.exp(torch.tensor(-1.0))  # f/i = e^{k_f − k_i} in this limit
    torch.testing.assert_close(a, (e / (1 + e)).reshape(1, 1))
    assert torch.isfinite(b).all()


def test_the_log_form_keeps_the_state_positive() -> None:
    torch.manual_seed(2)
    v = torch.linspace(-30, 30, 601, dtype=F64)
    assert bool((positive(v) > 0).all())
    torch.testing.assert_close(positive(torch.zeros(1)), torch.tensor([0.5]))  # continuous at 0
    for name in ("mingru_log", "minlstm_log"):
        cell = cell_factory(name)(3, 5).double()
        state = cell.initial_state(4)
        for _ in range(50):
            out, state = cell(5 * torch.randn(4, 3, dtype=F64), state)
        assert bool((out > 0).all())


@pytest.mark.parametrize("name", MINIMAL_CELL_NAMES)
def test_parameters_are_u_and_b_only_initialised_like_linear(name: str) -> None:
    cell = cell_factory(name)(16, 7)
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "bias_ih"]  # no W
    gates = 2 if name.startswith("mingru") else 3
    assert cell.weight_ih.shape == (gates * 7, 16)
    bound = 1 / 16**0.5  # nn.Linear's, 1/√I
    assert all(float(p.detach().abs().max()) <= bound for p in cell.parameters())
    assert not hasattr(cell, "weight_hh")
    no_bias = cell_factory(name, bias=False)(16, 7)
    assert no_bias.bias_ih is None and [n for n, _ in no_bias.named_parameters()] == ["weight_ih"]


def test_bad_form_and_bad_step_input_are_refused() -> None:
    with pytest.raises(ValueError, match="form: expected one of plain, log, got 'exp'"):
        MinGRUCell(2, 3, form="exp")
    cell = MinGRUCell(2, 3)
    with pytest.raises(ValueError, match=r"expected x_t of shape \(B, 2\)"):
        cell(torch.randn(4, 3), cell.initial_state(4))
    with pytest.raises(ValueError, match="expected state of type HiddenState"):
        cell(torch.randn(4, 2), torch.zeros(4, 3))


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_one_cell_overfits_a_tiny_batch(name: str) -> None:
    # 8 sequences of 12 steps, a linear readout of every h_t regressing a running
    # mean of the inputs: a memory task the linear recurrence can represent.
    torch.manual_seed(5)
    from rnnkit import Recurrent

    rnn = Recurrent(name, 2, 16)
    head = torch.nn.Linear(16, 1)
    x = torch.randn(8, 12, 2)
    y = torch.cumsum(x[..., :1], dim=1) / torch.arange(1, 13)[None, :, None]  # (8, 12, 1)
    params = [*rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.02)
    first = None
    for _ in range(300):
        optimizer.zero_grad()
        out, _ = rnn(x)
        loss = (head(out) - y).square().mean()
        loss.backward()
        optimizer.step()
        first = float(loss.detach()) if first is None else first
    assert first is not None and float(loss.detach()) < 0.02 * first
