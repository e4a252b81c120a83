"""TBPTT(k1, k2) and stateful streams, against explicitly detached autograd graphs."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.bptt.truncated import (
    StatefulStream,
    TBPTTConfig,
    Window,
    truncated_bptt,
    windows,
)
from tests.helpers import weighted_sum

F64 = torch.float64


def make_stack(name: str = "lstm", backend: str = "unrolled") -> Recurrent:
    torch.manual_seed(11)
    return Recurrent(name, 2, 3, backend=backend).double()


def weighted_loss(outputs: Tensor, window: Window) -> Tensor:
    # Weights depend on the absolute step, so every step's term is distinct.
    steps = torch.arange(window.loss_start, window.stop, dtype=F64)
    return (outputs * torch.cos(steps)[None, :, None]).sum()


def test_windows_of_plain_chunks() -> None:
    assert windows(7, TBPTTConfig(3)) == [
        Window(0, 0, 3, 3),
        Window(3, 3, 6, 6),
        Window(6, 6, 7, 7),
    ]


def test_windows_of_overlapping_tbptt() -> None:
    # Every k1 = 2 steps, backpropagate through the last k2 = 3.
    assert windows(7, TBPTTConfig(2, 3)) == [
        Window(0, 0, 2, 1),
        Window(1, 2, 4, 3),
        Window(3, 4, 6, 5),
        Window(5, 6, 7, 7),  # the short last advance keeps k2 − k1 = 1 step of history
    ]
    # k2 ≥ 2·k1: early windows all start at step 0.
    assert windows(4, TBPTTConfig(1, 3))[:3] == [
        Window(0, 0, 1, 0),
        Window(0, 1, 2, 0),
        Window(0, 2, 3, 1),
    ]


@given(steps=st.integers(1, 40), k1=st.integers(1, 8), extra=st.integers(0, 8))
def test_property_windows_count_each_loss_step_once_within_depth(
    steps: int, k1: int, extra: int
) -> None:
    config = TBPTTConfig(k1, k1 + extra)
    plan = windows(steps, config)
    covered = [t for w in plan for t in range(w.loss_start, w.stop)]
    assert covered == list(range(steps))  # each output enters exactly one loss
    for before, after in itertools.pairwise(plan):
        assert after.start == before.carry  # the next window starts where the carry is
        assert before.start <= before.carry <= before.stop
    for w in plan:
        assert w.stop - w.start <= config.depth
        assert w.stop - w.loss_start <= k1
        assert w.start == max(0, w.loss_start - extra)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="k1: expected a positive int, got 0"):
        TBPTTConfig(0)
    with pytest.raises(ValueError, match="k2: expected an int ≥ k1 = 4"):
        TBPTTConfig(4, 2)
    with pytest.raises(ValueError, match="steps: expected a positive int"):
        windows(0, TBPTTConfig(2))
    assert TBPTTConfig(4).depth == 4 and TBPTTConfig(2, 5).depth == 5


@pytest.mark.parametrize("backend", ["unrolled", "fused"])
@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_one_window_of_the_whole_sequence_is_full_bptt_exactly(name: str, backend: str) -> None:
    stack = make_stack(name, backend)
    x = torch.randn(3, 9, 2, dtype=F64)
    result = truncated_bptt(stack, x, weighted_loss, TBPTTConfig(9))
    truncated = [p.grad.clone() for p in stack.parameters()]
    stack.zero_grad()
    outputs, final = stack(x)
    weighted_loss(outputs, Window(0, 0, 9, 9)).backward()
    for a, p in zip(truncated, stack.parameters(), strict=True):
        assert torch.equal(a, p.grad)
    assert len(result.losses) == 1
    torch.testing.assert_close(result.state.h, final.h.detach(), rtol=0, atol=0)


@pytest.mark.parametrize(("k1", "k2"), [(3, 3), (2, 3), (2, 5), (1, 4)])
@pytest.mark.parametrize("backend", ["unrolled", "fused"])
def test_tbptt_equals_autograd_on_an_explicitly_detached_graph(
    k1: int, k2: int, backend: str
) -> None:
    stack = make_stack("gru", backend)
    steps = 10
    x = torch.randn(2, steps, 2, dtype=F64)
    truncated_bptt(stack, x, weighted_loss, TBPTTConfig(k1, k2))
    truncated = [p.grad.clone() for p in stack.parameters()]

    # The reference, built independently: for every window, the state at its start
    # comes from a no-grad run over the steps before it, then autograd over the window.
    stack.zero_grad()
    for window in windows(steps, TBPTTConfig(k1, k2)):
        state = None
        if window.start > 0:
            with torch.no_grad():
                _, state = stack(x[:, : window.start])
        outputs, _ = stack(x[:, window.start : window.stop], state)
        weighted_loss(outputs[:, window.loss_start - window.start :], window).backward()
    for a, p in zip(truncated, stack.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["unrolled", "fused"])
def test_no_gradient_reaches_past_the_truncation_window(backend: str) -> None:
    # A loss on the last step only, k1 = k2 = 4 over 10 steps: the last window is
    # steps 8 … 9, so inputs before step 8 get exactly zero gradient.
    stack = make_stack("lstm", backend)
    x = torch.randn(2, 10, 2, dtype=F64, requires_grad=True)

    def last_step_only(outputs: Tensor, window: Window) -> Tensor:
        if window.stop < 10:
            return outputs.sum() * 0.0
        return weighted_sum([outputs[:, -1]])

    truncated_bptt(stack, x, last_step_only, TBPTTConfig(4))
    assert x.grad is not None
    assert torch.equal(x.grad[:, :8], torch.zeros_like(x.grad[:, :8]))
    assert (x.grad[:, 8:].abs() > 0).all()

    # The same numbers from autograd on a graph detached by hand at step 8.
    with torch.no_grad():
        _, state = stack(x[:, :8])
    tail = x.detach()[:, 8:].clone().requires_grad_()
    outputs, _ = stack(tail, state)
    weighted_sum([outputs[:, -1]]).backward()
    assert tail.grad is not None
    torch.testing.assert_close(x.grad[:, 8:], tail.grad, rtol=1e-12, atol=1e-12)


def test_after_backward_runs_once_per_window_and_can_step_an_optimizer() -> None:
    stack = make_stack("rnn")
    optimizer = torch.optim.SGD(stack.parameters(), lr=0.1)
    seen: list[Window] = []

    def step(window: Window, loss: Tensor) -> None:
        assert loss.dim() == 0 and not loss.requires_grad
        seen.append(window)
        optimizer.step()
        optimizer.zero_grad()

    before = stack.cells[0].weight_hh.detach().clone()
    result = truncated_bptt(
        stack, torch.randn(2, 7, 2, dtype=F64), weighted_loss, TBPTTConfig(3), None, step
    )
    assert seen == list(result.windows) and len(seen) == 3
    assert not torch.equal(before, stack.cells[0].weight_hh)
    assert len(result.losses) == 3


def test_loss_must_be_a_scalar_and_inputs_batch_first() -> None:
    stack = make_stack("rnn")
    with pytest.raises(ValueError, match=r"loss_fn: expected a scalar, got shape \(2, 3, 3\)"):
        truncated_bptt(stack, torch.randn(2, 3, 2, dtype=F64), lambda o, w: o, TBPTTConfig(3))
    with pytest.raises(ValueError, match=r"inputs: expected \(B, T, ...\), got shape \(5,\)"):
        truncated_bptt(stack, torch.randn(5, dtype=F64), weighted_loss, TBPTTConfig(3))


@pytest.mark.parametrize("backend", ["unrolled", "fused"])
def test_stream_carries_the_state_across_batches_in_order(backend: str) -> None:
    stack = make_stack("lstm", backend)
    x = torch.randn(2, 12, 2, dtype=F64)
    whole, _ = stack(x)
    stream = StatefulStream()
    pieces = [stream(stack, x[:, i : i + 4])[0] for i in range(0, 12, 4)]
    # Three consecutive batches compute exactly the one long sequence …
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=1e-12, atol=1e-12)
    assert stream.batches == 3
    # … with the carried state cut from the graph: no gradient into earlier batches.
    assert all(not field.requires_grad for field in stream.state)
    stream.reset()
    assert stream.state is None and stream.batches == 0
    fresh, _ = stream(stack, x[:, 4:8])
    torch.testing.assert_close(fresh, stack(x[:, 4:8])[0], rtol=0, atol=0)


def test_stream_gradients_stop_at_the_batch_boundary() -> None:
    stack = make_stack("gru")
    stream = StatefulStream()
    first = torch.randn(2, 5, 2, dtype=F64, requires_grad=True)
    stream(stack, first)
    outputs, _ = stream(stack, torch.randn(2, 5, 2, dtype=F64))
    outputs.sum().backward()
    assert first.grad is None  # nothing flowed back into the previous batch


def test_stream_truncated_continues_from_the_carried_state() -> None:
    stack = make_stack("rnn")
    x = torch.randn(2, 8, 2, dtype=F64)
    stream = StatefulStream()
    stream.truncated(stack, x[:, :4], weighted_loss, TBPTTConfig(2))
    result = stream.truncated(stack, x[:, 4:], weighted_loss, TBPTTConfig(2))
    _, expected = stack(x)
    torch.testing.assert_close(result.state.h, expected.h.detach(), rtol=1e-12, atol=1e-12)
    assert stream.batches == 2


def test_stream_refuses_a_batch_of_another_size() -> None:
    stack = make_stack("rnn")
    stream = StatefulStream()
    stream(stack, torch.randn(4, 3, 2, dtype=F64))
    with pytest.raises(ValueError, match="a batch of 3 rows, but the carried state has 4"):
        stream(stack, torch.randn(3, 3, 2, dtype=F64))


def test_models_with_a_head_work_too() -> None:
    # Anything with model(inputs, state) -> (outputs, state) runs under TBPTT.
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = Recurrent("gru", 2, 3)
            self.head = nn.Linear(3, 4)

        def forward(self, inputs: Tensor, state: object = None) -> tuple[Tensor, object]:
            outputs, state = self.rnn(inputs, state)
            return self.head(outputs), state

    model = Tagger()
    result = truncated_bptt(
        model, torch.randn(2, 6, 2), lambda o, w: o.square().mean(), TBPTTConfig(2, 4)
    )
    assert len(result.losses) == 3
    assert model.head.weight.grad is not None
