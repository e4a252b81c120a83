"""Learning-rate schedules: warm-up, step, cosine and plateau, counted in optimizer steps."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rnnkit.training.schedule import Schedule, ScheduleConfig


def schedule(config: ScheduleConfig, total: int = 100, lr: float = 0.1) -> Schedule:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return Schedule(config, optimizer, total)


def test_linear_warmup_then_constant() -> None:
    s = schedule(ScheduleConfig("constant", warmup_steps=4))
    assert [round(s.apply(k)[0], 10) for k in range(6)] == [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]


def test_step_multiplies_by_gamma_every_step_size() -> None:
    s = schedule(ScheduleConfig("step", step_size=3, gamma=0.5))
    assert [s.apply(k)[0] for k in (0, 2, 3, 5, 6)] == [0.1, 0.1, 0.05, 0.05, 0.025]


def test_cosine_runs_from_the_base_rate_to_min_lr_after_warmup() -> None:
    s = schedule(ScheduleConfig("cosine", warmup_steps=10, min_lr=0.01), total=110)
    assert math.isclose(s.apply(9)[0], 0.1)  # end of warm-up
    assert math.isclose(s.apply(10)[0], 0.1)
    assert math.isclose(s.apply(60)[0], 0.01 + 0.09 * 0.5)  # halfway
    assert math.isclose(s.apply(110)[0], 0.01)
    rates = [s.apply(k)[0] for k in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(rates))


def test_plateau_reduces_after_patience_and_survives_a_state_round_trip() -> None:
    s = schedule(ScheduleConfig("plateau", patience=1, factor=0.5, min_lr=0.03))
    assert not s.observe(1.0)  # first value: best
    assert not s.observe(1.0)  # one without improvement: within patience
    assert s.observe(1.1)  # two: reduce
    assert math.isclose(s.apply(5)[0], 0.05)
    s.observe(2.0), s.observe(2.0)
    assert math.isclose(s.apply(6)[0], 0.03)  # floored at min_lr
    copy = schedule(ScheduleConfig("plateau", patience=1, factor=0.5, min_lr=0.03))
    copy.load_state_dict(s.state_dict())
    assert copy.apply(7) == s.apply(7) and copy.best == s.best


@pytest.mark.parametrize(
    ("field", "value"), [("gamma", 0.0), ("factor", 1.0), ("warmup_steps", -1), ("step_size", 0)]
)
def test_bad_values_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ScheduleConfig(**{field: value})  # type: ignore[arg-type]
