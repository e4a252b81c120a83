"""Zoneout: units kept from the step before with probability z; the expectation in eval."""

from __future__ import annotations

import pytest
import torch

from rnnkit import LSTMState, Recurrent
from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.cells.zoneout import Zoneout

F64 = torch.float64


def test_in_training_each_unit_is_either_kept_or_the_cell_s_new_value() -> None:
    torch.manual_seed(0)
    cell = LSTMCell(3, 64, dtype=F64)
    wrapped = Zoneout(cell, 0.3).train()
    x = torch.randn(50, 3, dtype=F64)
    old = LSTMState(torch.randn(50, 64, dtype=F64), torch.randn(50, 64, dtype=F64))
    out, new = wrapped(x, old)
    _, fresh = cell(x, old)
    for got, before, after in zip(new, old, fresh, strict=True):
        kept = got == before
        assert bool((kept | (got == after)).all())  # each unit one or the other
        assert abs(float(kept.float().mean()) - 0.3) < 0.03  # 3,200 draws: > 5 sd margin
    assert torch.equal(out, new.h)


def test_in_eval_the_state_is_the_expectation_and_z_0_is_the_cell() -> None:
    torch.manual_seed(1)
    cell = GRUCell(3, 4, dtype=F64)
    x, h = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
    _, fresh = cell(x, type(cell.initial_state(2))(h))
    out, new = Zoneout(cell, 0.25).eval()(x, type(fresh)(h))
    torch.testing.assert_close(new.h, 0.25 * h + 0.75 * fresh.h, rtol=1e-12, atol=1e-12)
    assert torch.equal(out, new.h)  # the step emits the mixed state
    out0, _ = Zoneout(cell, 0.0).train()(x, type(fresh)(h))
    torch.testing.assert_close(out0, fresh.h, rtol=0, atol=0)


def test_a_stack_with_zoneout_runs_unrolled_and_gradchecks_under_a_fixed_seed() -> None:
    stack = Recurrent("lstm", 3, 2, num_layers=2, bidirectional=True, zoneout=0.2, dtype=F64)
    assert stack.resolve_backend() == "unrolled"
    x = torch.randn(3, 4, 3, dtype=F64, requires_grad=True)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng():
            torch.manual_seed(3)
            return stack(x, lengths=[4, 1, 3])[0]

    assert torch.autograd.gradcheck(run, (x,), eps=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="zoneout: draws its masks per step"):
        Recurrent("lstm", 3, 2, zoneout=0.2, backend="fused")
    assert "zoneout=0.2" in repr(stack)
