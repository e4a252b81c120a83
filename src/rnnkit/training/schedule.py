"""Learning-rate schedules, counted in optimizer steps, with a linear warm-up.

The learning rate at optimizer step s (0-based: the rate the s-th update uses) is

    lr(s) = warmup(s) · shape(s)

* ``warmup(s) = min(1, (s + 1) / warmup_steps)``: linear from base_lr/warmup_steps
  to the schedule's rate over the first ``warmup_steps`` updates (1 without);
* ``shape`` is the schedule: ``constant`` base_lr; ``step`` base_lr·γ^⌊s / step_size⌋;
  ``cosine`` min_lr + (base_lr − min_lr)·½(1 + cos(π·p)), p the fraction of the
  steps after warm-up done; ``plateau`` max(base_lr·m, min_lr), where m is
  multiplied by ``factor`` whenever the monitored evaluation metric has not
  improved for more than ``patience`` evaluations in a row (as Keras' and torch's
  ReduceLROnPlateau: with ``patience = 2`` the third evaluation in a row without
  improvement reduces). Early stopping counts the other way, as Keras'
  EarlyStopping does: with ``patience = 2`` it stops at the second
  (:class:`~rnnkit.training.trainer.EarlyStoppingConfig`).

The schedule sets each parameter group's ``lr`` directly before every update (no
torch scheduler chained on top), and its whole state is a few numbers, so a
resumed run continues with exactly the rates an uninterrupted one would use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from rnnkit.configuration import MAX_INT, check_range, check_sizes

ScheduleName = Literal["constant", "step", "cosine", "plateau"]


@dataclass(frozen=True)
class ScheduleConfig:
    """How the learning rate moves over optimizer steps.

    Attributes:
        name: ``constant``, ``step``, ``cosine`` or ``plateau``.
        warmup_steps: updates over which the rate rises linearly to its base value.
        step_size: ``step``: updates between two multiplications by ``gamma``.
        gamma: ``step``: the factor applied every ``step_size`` updates.
        min_lr: ``cosine``: the final rate; ``plateau``: the floor.
        factor: ``plateau``: the factor applied on a plateau.
        patience: ``plateau``: reduce after more than this many evaluations in a row
            without improvement (torch's ReduceLROnPlateau).
        mode: ``plateau``: whether the monitored metric should go down or up.
        threshold: ``plateau``: the least change that counts as an improvement.
    """

    name: ScheduleName = "constant"
    warmup_steps: int = 0
    step_size: int = 1000
    gamma: float = 0.5
    min_lr: float = 0.0
    factor: float = 0.5
    patience: int = 2
    mode: Literal["min", "max"] = "min"
    threshold: float = 0.0

    def __post_init__(self) -> None:
        for name in ("warmup_steps", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
                raise ValueError(f"{name}: expected an int ≥ 0, got {value!r}")
        check_sizes(self, "step_size", at_most=MAX_INT)
        check_range(self, "gamma", 0.0, 1.0, open_low=True)
        check_range(self, "factor", 0.0, 1.0, open_low=True, open_high=True)
        check_range(self, "min_lr", 0.0)
        check_range(self, "threshold", 0.0)


class Schedule:
    """Sets the learning rate of every parameter group before each update."""

    def __init__(
        self, config: ScheduleConfig, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> None:
        self.config = config
        self.optimizer = optimizer
        self.total_steps = max(1, total_steps)
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.plateau = 1.0  # multiplier from plateau reductions
        self.best: float | None = None
        self.bad_evaluations = 0

    def rate(self, base: float, step: int) -> float:
        """The learning rate of a group with base rate ``base`` at update ``step``."""
        c = self.config
        warmup = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if c.name == "step":
            return base * warmup * c.gamma ** (step // c.step_size)
        if c.name == "cosine":
            span = max(1, self.total_steps - c.warmup_steps)
            done = min(1.0, max(0.0, (step - c.warmup_steps) / span))
            cosine = 0.5 * (1.0 + math.cos(math.pi * done))
            return warmup * (c.min_lr + (base - c.min_lr) * cosine)
        if c.name == "plateau":
            return warmup * max(base * self.plateau, c.min_lr)
        return base * warmup

    def apply(self, step: int) -> list[float]:
        """Set every group's rate for update ``step`` (0-based); returns the rates."""
        rates = []
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self.rate(base, step)
            rates.append(group["lr"])
        return rates

    def observe(self, value: float) -> bool:
        """An evaluation result for ``plateau``; True when it reduced the rate."""
        c = self.config
        if c.name != "plateau" or not math.isfinite(value):
            return False
        improved = (
            self.best is None
            or (c.mode == "min" and value < self.best - c.threshold)
            or (c.mode == "max" and value > self.best + c.threshold)
        )
        if improved:
            self.best = value
            self.bad_evaluations = 0
            return False
        self.bad_evaluations += 1
        if self.bad_evaluations > c.patience:
            self.plateau *= c.factor
            self.bad_evaluations = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "plateau": self.plateau,
            "best": self.best,
            "bad_evaluations": self.bad_evaluations,
            "base_lrs": list(self.base_lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau = float(state["plateau"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_evaluations = int(state["bad_evaluations"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
