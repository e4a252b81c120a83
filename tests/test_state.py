"""Named state types keep their type through every helper."""

from __future__ import annotations

import pytest
import torch

from rnnkit import (
    HiddenState,
    LSTMState,
    detach_state,
    map_state,
    stack_states,
    unstack_state,
    where_state,
)
from rnnkit.state import check_state_like, describe_state


def test_map_and_detach_keep_the_type() -> None:
    h = torch.randn(2, 3, requires_grad=True)
    state = LSTMState(h * 2, h * 3)
    doubled = map_state(lambda t: t * 2, state)
    assert type(doubled) is LSTMState
    torch.testing.assert_close(doubled.c, h * 6)
    cut = detach_state(state)
    assert type(cut) is LSTMState
    assert not cut.h.requires_grad and cut.h.grad_fn is None
    assert state.h.grad_fn is not None  # the original keeps its graph


def test_where_state_chooses_per_row() -> None:
    new = HiddenState(torch.ones(3, 2))
    old = HiddenState(torch.zeros(3, 2))
    chosen = where_state(torch.tensor([True, False, True]), new, old)
    assert type(chosen) is HiddenState
    assert chosen.h.tolist() == [[1, 1], [0, 0], [1, 1]]


def test_stack_and_unstack_are_inverse() -> None:
    states = [
        LSTMState(torch.full((2, 3), float(i)), torch.full((2, 3), -float(i))) for i in range(4)
    ]
    stacked = stack_states(states)
    assert type(stacked) is LSTMState and stacked.h.shape == (4, 2, 3)
    assert stacked.c[2, 0, 0] == -2.0
    back = unstack_state(stacked)
    assert len(back) == 4 and all(type(s) is LSTMState for s in back)
    for a, b in zip(back, states, strict=True):
        assert torch.equal(a.h, b.h) and torch.equal(a.c, b.c)
    with pytest.raises(ValueError, match="at least one state"):
        stack_states([])


def test_describe_and_check() -> None:
    assert (
        describe_state(LSTMState(torch.zeros(2, 3), torch.zeros(2, 3)))
        == "LSTMState(h=(2, 3), c=(2, 3))"
    )
    assert describe_state(torch.zeros(4)) == "Tensor(4,)"
    assert describe_state(None) == "NoneType"
    reference = HiddenState(torch.zeros(2, 3))
    check_state_like(HiddenState(torch.ones(2, 3)), reference)
    with pytest.raises(
        ValueError, match=r"expected HiddenState\(h=\(2, 3\)\), got HiddenState\(h=\(3, 2\)\)"
    ):
        check_state_like(HiddenState(torch.ones(3, 2)), reference)
