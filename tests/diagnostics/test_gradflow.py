"""Gradient flow through time: exact against autograd, and the vanishing gradient shown."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

from rnnkit.cells import cell_factory
from rnnkit.cells.init import gate_bias_
from rnnkit.data.synthetic import adding_problem
from rnnkit.diagnostics import GradientFlow, gradient_flow, plot_gradient_flow
from rnnkit.state import HiddenState

F64 = torch.float64
CELLS = ["rnn", "rnn_relu", "lstm", "gru"]


def setup(name: str, steps: int = 5, batch: int = 3, hidden: int = 4) -> tuple[nn.Module, Tensor]:
    torch.manual_seed(CELLS.index(name))
    cell = cell_factory(name)(2, hidden).double()
    return cell, torch.randn(batch, steps, 2, dtype=F64)


def every_step_loss(outputs: Tensor) -> Tensor:
    weights = torch.linspace(-1.0, 1.0, outputs[0].numel(), dtype=F64).view_as(outputs[0])
    return (outputs.tanh() * weights).sum()


def last_step_loss(outputs: Tensor) -> Tensor:
    return outputs[:, -1].square().sum()


def autograd_reference(cell: nn.Module, x: Tensor, loss_fn) -> tuple[list[Tensor], dict]:  # type: ignore[no-untyped-def]
    """The plain autograd answer: ∂L/∂h_t from retained grads, ∂L/∂θ from backward."""
    state = cell.initial_state(x.shape[0], dtype=F64)
    hs, outputs = [], []
    for t in range(x.shape[1]):
        output, state = cell(x[:, t], state)
        state.h.retain_grad()
        hs.append(state.h)
        outputs.append(output)
    cell.zero_grad()
    loss_fn(torch.stack(outputs, dim=1)).backward()
    return [h.grad for h in hs], {n: p.grad.clone() for n, p in cell.named_parameters()}


@pytest.mark.parametrize("loss_fn", [every_step_loss, last_step_loss], ids=["every", "last"])
@pytest.mark.parametrize("name", CELLS)
def test_flow_matches_autograd(name: str, loss_fn) -> None:  # type: ignore[no-untyped-def]
    cell, x = setup(name)
    flow = gradient_flow(cell, x, loss_fn, jacobians=False)
    h_grads, param_grads = autograd_reference(cell, x, loss_fn)
    expected = torch.stack([g.norm() for g in h_grads])
    torch.testing.assert_close(flow.state_grad_norms, expected, rtol=1e-12, atol=1e-14)
    for pname, grad in param_grads.items():
        # The per-step terms sum to the whole gradient: ∂L/∂W = Σ_t (∂L/∂W)|_t.
        torch.testing.assert_close(flow.param_grads[pname], grad, rtol=1e-12, atol=1e-14)
        assert flow.param_step_norms[pname].shape == (5,)
        torch.testing.assert_close(flow.share(pname).sum(), torch.tensor(1.0, dtype=F64))
    if loss_fn is last_step_loss:
        # Nothing after the last step: its δ is the loss's own gradient, 2·h_T.
        assert flow.param_step_norms["weight_hh"][-1] > 0


def test_per_step_terms_are_each_steps_own_contribution() -> None:
    # For the Elman RNN the term of step t is dA_tᵀ h_{t−1}, computable by hand.
    cell, x = setup("rnn", steps=4)
    flow = gradient_flow(cell, x, every_step_loss, jacobians=False)
    h_grads, _ = autograd_reference(cell, x, every_step_loss)
    state = cell.initial_state(3, dtype=F64)
    for t in range(4):
        _, new = cell(x[:, t], state)
        dA = h_grads[t] * (1 - new.h.detach() ** 2)  # (B, H)
        term = dA.t() @ state.h.detach()  # (H, H)
        torch.testing.assert_close(
            flow.param_step_norms["weight_hh"][t], term.norm(), rtol=1e-12, atol=1e-14
        )
        state = HiddenState(new.h.detach())


@pytest.mark.parametrize("name", CELLS)
def test_jacobian_norms_match_brute_force(name: str) -> None:
    cell, x = setup(name, steps=4, batch=2, hidden=3)
    flow = gradient_flow(cell, x, last_step_loss)
    assert flow.jacobian_norms is not None
    # States along the trajectory, then ∂h_3/∂h_t per sample by torch.autograd.functional.
    states = [cell.initial_state(2, dtype=F64)]
    with torch.no_grad():
        for t in range(4):
            states.append(cell(x[:, t], states[-1])[1])
    for t in range(4):
        norms = []
        for b in range(2):
            start = states[t + 1]

            def last_h(h_t: Tensor, b: int = b, t: int = t, start=start) -> Tensor:  # type: ignore[no-untyped-def]
                state = start._replace(h=h_t[None])
                state = type(state)(*(f if i == 0 else f[b : b + 1] for i, f in enumerate(state)))
                for s in range(t + 1, 4):
                    _, state = cell(x[b : b + 1, s], state)
                return state.h[0]

            jac = torch.autograd.functional.jacobian(last_h, start.h[b])
            norms.append(torch.linalg.matrix_norm(jac, ord=2))
        torch.testing.assert_close(
            flow.jacobian_norms[t], torch.stack(norms).mean(), rtol=1e-10, atol=1e-12
        )
    torch.testing.assert_close(flow.jacobian_norms[-1], torch.tensor(1.0, dtype=F64))


def test_vanishing_gradient_on_the_adding_problem() -> None:
    # T = 100, untrained, torch.nn's default init plus the usual +1 "remember"
    # gate bias for the gated cells: the tanh RNN's gradient from the last step all
    # but vanishes by step 0; the LSTM's and GRU's decay far less.
    data = adding_problem(16, 100, seed=0, dtype=F64)
    flows: dict[str, GradientFlow] = {}
    for name in ("rnn", "lstm", "gru"):
        torch.manual_seed(0)
        cell = cell_factory(name)(2, 32).double()
        if name != "rnn":
            gate_bias_(cell, 1.0)
        head = nn.Linear(32, 1).double()

        def loss(outputs: Tensor, head: nn.Module = head) -> Tensor:
            return (head(outputs[:, -1]).squeeze(1) - data.targets).square().mean()

        flows[name] = gradient_flow(cell, data.inputs, loss)
    rnn, lstm, gru = flows["rnn"], flows["lstm"], flows["gru"]
    assert rnn.decay() < 1e-12  # orders of magnitude lost over 100 steps
    assert lstm.decay() > 1e4 * rnn.decay()
    assert gru.decay() > 1e4 * rnn.decay()
    for flow in (lstm, gru):
        assert flow.jacobian_norms is not None and rnn.jacobian_norms is not None
        assert flow.jacobian_norms[0] > 1e4 * rnn.jacobian_norms[0]
    # The first ten steps contribute next to nothing to the RNN's ∂L/∂W.
    assert rnn.share("weight_hh")[:10].sum() < 1e-10


def adding_flow(name: str, gate_bias: float | None, steps: int = 100) -> GradientFlow:
    """A fresh cell (H = 32, seed 0) on the adding problem, its gate bias raised by
    ``gate_bias`` (None: torch.nn's initialisation untouched)."""
    data = adding_problem(16, steps, seed=0, dtype=F64)
    torch.manual_seed(0)
    cell = cell_factory(name)(2, 32).double()
    if gate_bias is not None:
        gate_bias_(cell, gate_bias)
    head = nn.Linear(32, 1).double()

    def loss(outputs: Tensor) -> Tensor:
        return (head(outputs[:, -1]).squeeze(1) - data.targets).square().mean()

    return gradient_flow(cell, data.inputs, loss)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_the_gate_bias_is_the_one_that_keeps_the_state(name: str) -> None:
    # +1 on the LSTM's forget gate f (c_t = f ⊙ c_{t−1} + …) and on the GRU's z
    # (h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}, torch.nn's convention) keeps more of the past:
    # the gradient reaching step 0 grows by orders of magnitude; −1 loses more of it.
    plain, kept, lost = (adding_flow(name, bias, steps=50) for bias in (None, 1.0, -1.0))
    assert kept.decay() > 1e4 * plain.decay()
    assert lost.decay() < plain.decay()
    # A bias of 0 is torch.nn's initialisation exactly: the same flow to the last bit.
    zero = adding_flow(name, 0.0, steps=50)
    assert torch.equal(zero.state_grad_norms, plain.state_grad_norms)


class MemoryState(NamedTuple):
    """A user's state with the hidden vector second: the flow must follow h by name."""

    m: Tensor  # a slow memory, (B, H)
    h: Tensor  # (B, H)


class LeakyCell(nn.Module):
    """m_t = 0.9 m_{t−1} + 0.1 tanh(U x_t + W h_{t−1} + b), h_t = tanh(m_t)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Linear(input_size, hidden_size)
        self.weight_hh = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x_t: Tensor, state: MemoryState) -> tuple[Tensor, MemoryState]:
        m = 0.9 * state.m + 0.1 * torch.tanh(self.weight_ih(x_t) + self.weight_hh(state.h))
        h = torch.tanh(m)
        return h, MemoryState(m, h)

    def initial_state(
        self, batch_size: int, *, device: object = None, dtype: torch.dtype | None = None
    ) -> MemoryState:
        zeros = torch.zeros(batch_size, self.hidden_size, dtype=dtype)
        return MemoryState(zeros, zeros.clone())


@pytest.mark.parametrize("loss_fn", [every_step_loss, last_step_loss], ids=["every", "last"])
def test_a_users_state_is_followed_by_its_field_h(loss_fn) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    cell = LeakyCell(2, 4).double()
    x = torch.randn(3, 6, 2, dtype=F64)
    flow = gradient_flow(cell, x, loss_fn)
    h_grads, param_grads = autograd_reference(cell, x, loss_fn)
    expected = torch.stack([g.norm() for g in h_grads])
    torch.testing.assert_close(flow.state_grad_norms, expected, rtol=1e-12, atol=1e-14)
    for pname, grad in param_grads.items():
        torch.testing.assert_close(flow.param_grads[pname], grad, rtol=1e-12, atol=1e-14)
    assert flow.jacobian_norms is not None
    torch.testing.assert_close(flow.jacobian_norms[-1], torch.tensor(1.0, dtype=F64))


def test_a_state_without_h_is_refused() -> None:
    class Carry(NamedTuple):
        memory: Tensor

    cell, x = setup("rnn")
    state = Carry(torch.zeros(3, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"expected a NamedTuple with a field h .*Carry"):
        gradient_flow(cell, x, last_step_loss, state=state)


def test_plot_writes_a_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib.image

    flows = {}
    for name in ("rnn", "gru"):
        cell, x = setup(name, steps=6)
        flows[name] = gradient_flow(cell, x, every_step_loss)
    path = plot_gradient_flow(flows, tmp_path / "flow.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 300
    with pytest.raises(ValueError, match="flows: expected at least one"):
        plot_gradient_flow({}, tmp_path / "empty.png")


def test_loss_must_be_scalar() -> None:
    cell, x = setup("gru")
    with pytest.raises(ValueError, match=r"loss_fn: expected a scalar, got shape \(3, 5, 4\)"):
        gradient_flow(cell, x, lambda o: o)
