"""The GRU cell against its equations, including torch.nn's placement of the reset gate."""

from __future__ import annotations

import torch

from rnnkit import GRUCell, HiddenState


def test_step_follows_the_gate_equations_in_order_r_z_n() -> None:
    torch.manual_seed(0)
    cell = GRUCell(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    h_prev = torch.randn(2, 4, dtype=torch.float64)
    H = 4
    gi = x @ cell.weight_ih.T + cell.bias_ih  # type: ignore[operator]
    gh = h_prev @ cell.weight_hh.T + cell.bias_hh  # type: ignore[operator]
    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
    z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])  # b_hn inside the reset
    h = (1 - z) * n + z * h_prev
    output, state = cell(x, HiddenState(h_prev))
    torch.testing.assert_close(output, h, rtol=1e-12, atol=1e-12)
    assert state.h is output


def test_reset_applies_after_the_matrix_multiply_not_before() -> None:
    # Cho et al. compute W_n·(r ⊙ h); torch.nn computes r ⊙ (W_n·h + b_hn). With a
    # non-diagonal W_n the two differ, and this cell must give torch.nn's value.
    torch.manual_seed(3)
    cell = GRUCell(2, 3).double()
    x = torch.randn(1, 2, dtype=torch.float64)
    h_prev = torch.randn(1, 3, dtype=torch.float64)
    H = 3
    gi = x @ cell.weight_ih.T + cell.bias_ih  # type: ignore[operator]
    gh = h_prev @ cell.weight_hh.T + cell.bias_hh  # type: ignore[operator]
    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
    z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    W_n, b_hn = cell.weight_hh[2 * H :], cell.bias_hh[2 * H :]  # type: ignore[index]
    n_paper = torch.tanh(gi[:, 2 * H :] + (r * h_prev) @ W_n.T + b_hn)
    paper = (1 - z) * n_paper + z * h_prev
    output, _ = cell(x, HiddenState(h_prev))
    assert (output - paper).abs().max() > 1e-3
    reference = torch.nn.GRUCell(2, 3, dtype=torch.float64)
    reference.load_state_dict(cell.state_dict())
    torch.testing.assert_close(output, reference(x, h_prev), rtol=1e-12, atol=1e-12)


def test_update_gate_one_keeps_the_previous_state() -> None:
    cell = GRUCell(2, 2).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.fill_(0.0)
        cell.bias_ih[2:4] = 60.0  # type: ignore[index]  # z ≈ 1
    h_prev = torch.tensor([[0.3, -0.8]], dtype=torch.float64)
    output, _ = cell(torch.randn(1, 2, dtype=torch.float64), HiddenState(h_prev))
    torch.testing.assert_close(output, h_prev, rtol=0, atol=1e-12)
