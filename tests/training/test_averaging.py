"""NT-ASGD: the trigger, the running average, what is evaluated and saved, exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from rnnkit.training.averaging import NTASGD
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig
from tests.training.toy import Tagger, collate, examples, weights_of


def test_the_trigger_waits_for_a_loss_worse_than_the_best_before_the_last_n() -> None:
    optimizer = NTASGD([nn.Parameter(torch.zeros(2))], lr=0.1, nonmono=2)
    assert not optimizer.observe(4.0, 1)
    assert not optimizer.observe(9.0, 2)  # only 2 losses: nothing before the last 2 yet
    assert not optimizer.averaging
    assert optimizer.observe(5.0, 3)  # the best before the last 2 is 4.0, and 5 > 4
    assert optimizer.averaging and not optimizer.observe(9.0, 4)  # it fires once
    other = NTASGD([nn.Parameter(torch.zeros(2))], lr=0.1, nonmono=2)
    assert [other.observe(v, i) for i, v in enumerate([4.0, 3.0, 2.9, 2.8, 3.5])] == [
        False, False, False, False, True,
    ]  # fmt: skip
    assert other.param_groups[0]["averaging_since"] == 4


def test_after_the_trigger_the_average_is_the_mean_of_the_iterates() -> None:
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(3, dtype=torch.float64))
    optimizer = NTASGD([weight], lr=0.1, nonmono=1)
    optimizer.observe(1.0, 0)
    optimizer.observe(2.0, 0)  # 2 > 1: averaging from now on
    iterates = []
    for _ in range(4):
        weight.grad = torch.randn(3, dtype=torch.float64)
        optimizer.step()
        iterates.append(weight.detach().clone())
    with optimizer.averaged():
        torch.testing.assert_close(weight.detach(), torch.stack(iterates).mean(0))
    torch.testing.assert_close(weight.detach(), iterates[-1])  # the iterate is back


def make(config: TrainerConfig, **kwargs: Any) -> Trainer:
    torch.manual_seed(0)
    return Trainer(Tagger(0.2), config, examples(37), collate, val=examples(9, seed=1), **kwargs)


def base(**changes: Any) -> TrainerConfig:
    values: dict[str, Any] = {
        "epochs": 6,
        "batch_size": 4,
        "progress": "off",
        "device": "cpu",
        "eval_every": 3,
        "checkpoint_every": 5,
        "shuffle": True,
        # A rate so large that validation soon stops improving: the trigger fires early.
        "optimizer": OptimizerConfig("ntasgd", lr=3.0, nonmono=1),
    }
    values.update(changes)
    return TrainerConfig(**values)


def test_a_run_stopped_and_resumed_after_the_trigger_ends_as_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    config = base()
    whole = make(config, run_dir=tmp_path / "whole")
    whole.fit()
    since = whole.optimizer.param_groups[0]["averaging_since"]
    assert since is not None and since < 40, "the trigger must fire before the stop at 40"
    first = make(TrainerConfig(**{**vars(config), "max_steps": 40}), run_dir=tmp_path / "cut")
    first.fit()
    assert isinstance(first.optimizer, NTASGD) and first.optimizer.averaging
    resumed = make(config, run_dir=tmp_path / "cut", resume=True)
    assert resumed.state.step == 40
    resumed.fit()
    for name, value in weights_of(whole.model).items():
        assert torch.equal(weights_of(resumed.model)[name], value), name
    # What was saved is the average, the model's weights at the end of training.
    saved = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last").weights
    for name, value in weights_of(whole.model).items():
        assert torch.equal(saved[name], value), name


def test_evaluation_reads_the_averaged_weights() -> None:
    trainer = make(base(epochs=3))
    trainer.fit()
    optimizer = trainer.optimizer
    assert isinstance(optimizer, NTASGD) and optimizer.averaging
    # fit() ended by putting the average into the model: evaluating now, or evaluating
    # the iterate inside averaged(), gives the same number.
    after = trainer.evaluate()["val_loss"]
    with optimizer.averaged():
        inside = trainer.evaluate()["val_loss"]
    assert after == pytest.approx(inside, rel=1e-12)


def test_nonmono_is_checked() -> None:
    with pytest.raises(ValueError, match="nonmono: expected an int ≥ 1, got 0"):
        OptimizerConfig("ntasgd", nonmono=0)
