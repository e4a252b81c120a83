"""A step whose update makes a weight non-finite is undone, counted and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.trainer import (
    OptimizerConfig,
    Trainer,
    TrainerConfig,
    TrainingError,
)
from rnnkit.training.undo import Undo
from tests.training.toy import Tagger, collate, examples, weights_of


def make(optimizer: OptimizerConfig, **changes: Any) -> Trainer:
    torch.manual_seed(0)
    values: dict[str, Any] = {"epochs": 1, "batch_size": 4, "progress": "lines", "device": "cpu"}
    values.update(changes)
    run_dir = values.pop("run_dir", None)
    config = TrainerConfig(optimizer=optimizer, **values)
    return Trainer(Tagger(), config, examples(37), collate, run_dir=run_dir)


def poison_steps(trainer: Trainer, bad: set[int]) -> list[dict[str, Any]]:
    """Make the optimizer's updates number ``bad`` (1-based calls) write a NaN into the
    output weight; returns, per bad call, the weights and optimizer state before it.

    The NaN comes from outside the optimizer's arithmetic, which the proof that a step
    is finite (:mod:`rnnkit.training.undo`) rightly cannot foresee: every step is
    copied and checked here. ``test_undo.py`` makes real non-finite updates."""
    trainer._undo.prove = False
    step = trainer.optimizer.step
    calls = [0]
    before: list[dict[str, Any]] = []

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] in bad:
            before.append(
                {
                    "weights": {k: v.clone() for k, v in weights_of(trainer.model).items()},
                    "state": _state(trainer.optimizer),
                }
            )
        result = step(*args, **kwargs)
        if calls[0] in bad:
            with torch.no_grad():
                trainer.model.out.weight[1, 2] = float("nan")
        return result

    trainer.optimizer.step = poisoned  # type: ignore[method-assign]
    return before


def _state(optimizer: torch.optim.Optimizer) -> dict[tuple[int, str], Any]:
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return {
        (i, key): value.clone() if isinstance(value, torch.Tensor) else value
        for i, p in enumerate(params)
        for key, value in optimizer.state.get(p, {}).items()
    }


@pytest.mark.parametrize(
    "optimizer",
    [OptimizerConfig("adam", lr=0.01), OptimizerConfig("sgd", lr=0.1, momentum=0.9)],
    ids=["adam", "sgd-momentum"],
)
def test_a_step_that_writes_a_nan_is_undone_exactly(
    optimizer: OptimizerConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = make(optimizer, max_steps=6)
    before = poison_steps(trainer, {4})
    seen: list[tuple[dict[str, torch.Tensor], dict[Any, Any]]] = []
    original = trainer._undo.restore

    def restore() -> None:
        original()
        seen.append(
            ({k: v.clone() for k, v in weights_of(trainer.model).items()},
             _state(trainer.optimizer))
        )  # fmt: skip

    trainer._undo.restore = restore  # type: ignore[method-assign]
    result = trainer.fit()
    assert len(before) == len(seen) == 1
    weights, state = seen[0]
    for name, value in before[0]["weights"].items():
        assert torch.equal(weights[name], value), name
    assert state.keys() == before[0]["state"].keys()
    for key, value in before[0]["state"].items():
        assert torch.equal(state[key], value) if isinstance(value, torch.Tensor) else (
            state[key] == value), key  # fmt: skip
    # Counted as a bad step, the data moved on, and training went on to max_steps.
    assert result.skipped == 1 and result.steps == 6
    assert trainer.state.position == 7 and trainer.state.bad_in_a_row == 0
    assert all(torch.isfinite(v).all() for v in weights_of(trainer.model).values())
    err = capsys.readouterr().err
    assert "step 4 skipped: the update made a weight non-finite; undone (1 in a row" in err


def test_the_first_step_undone_leaves_no_optimizer_state() -> None:
    # Adam creates its state on its first step: undoing that step removes it again.
    trainer = make(OptimizerConfig("adam", lr=0.01), max_bad_steps=1)
    initial = {k: v.clone() for k, v in weights_of(trainer.model).items()}
    poison_steps(trainer, {1})
    with pytest.raises(TrainingError, match="max_bad_steps = 1"):
        trainer.fit()
    assert trainer.state.step == 0 and trainer.state.skipped == 1
    assert not any(trainer.optimizer.state.get(p) for p in trainer.model.parameters())
    for name, value in initial.items():
        assert torch.equal(weights_of(trainer.model)[name], value), name


def test_max_bad_steps_in_a_row_stop_training_and_nothing_non_finite_is_saved(
    tmp_path: Path,
) -> None:
    trainer = make(OptimizerConfig("sgd", lr=0.1), max_bad_steps=3, run_dir=tmp_path)
    poison_steps(trainer, {3, 4, 5})
    with pytest.raises(TrainingError, match=r"3 optimizer steps in a row were skipped \(the "
                       r"update made a weight non-finite; undone\); max_bad_steps = 3"):  # fmt: skip
        trainer.fit()
    assert trainer.state.step == 2 and trainer.state.skipped == 3
    assert all(torch.isfinite(v).all() for v in weights_of(trainer.model).values())


def test_finite_sees_nan_and_inf_anywhere() -> None:
    params = [torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.ones(5))]
    undo = Undo(torch.optim.SGD(params, lr=0.1))
    assert undo.finite()
    for bad in (float("nan"), float("inf"), float("-inf")):
        with torch.no_grad():
            params[1][4] = bad
        assert not undo.finite(), bad
    with torch.no_grad():
        params[1][4] = 3.4e38  # finite, near float32's largest
    assert undo.finite()


def test_a_checkpoint_after_an_undone_step_holds_the_weights_before_it(tmp_path: Path) -> None:
    trainer = make(OptimizerConfig("adam", lr=0.01), max_steps=4, run_dir=tmp_path)
    poison_steps(trainer, {4})
    result = trainer.fit()
    last = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert (last.step, result.skipped) == (4, 1)  # the fifth update made step 4
    for name, value in last.weights.items():
        assert torch.equal(weights_of(trainer.model)[name], value), name
