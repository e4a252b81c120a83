"""The Trainer: exact accumulation, once-per-step clipping, skips, resume, early stopping."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

from rnnkit.configuration import from_mapping
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.progress import read_metrics
from rnnkit.training.schedule import ScheduleConfig
from rnnkit.training.trainer import (
    Callback,
    EarlyStoppingConfig,
    OptimizerConfig,
    Trainer,
    TrainerConfig,
    TrainingError,
)
from tests.training.toy import Tagger, collate, examples, weights_of


def make(
    config: TrainerConfig,
    *,
    n: int = 37,
    dropout: float = 0.0,
    double: bool = False,
    poison: frozenset[int] = frozenset(),
    **kwargs: Any,
) -> Trainer:
    torch.manual_seed(0)
    model = Tagger(dropout)
    if double:
        model = model.double()
    return Trainer(model, config, examples(n, poison=poison), collate, **kwargs)


def base(**changes: Any) -> TrainerConfig:
    values: dict[str, Any] = {"epochs": 2, "batch_size": 4, "progress": "off", "device": "cpu"}
    values.update(changes)
    return TrainerConfig(**values)


# --------------------------------------------------------------------------- accumulation


@pytest.mark.parametrize(
    "optimizer",
    [
        OptimizerConfig("sgd", lr=0.5),
        OptimizerConfig("sgd", lr=0.3, momentum=0.9, weight_decay=0.01),
        OptimizerConfig("adamw", lr=0.01, weight_decay=0.1),
    ],
    ids=["sgd", "sgd-momentum-decay", "adamw-decay"],
)
def test_accumulating_k_micro_batches_equals_one_batch_of_k_times_b(
    optimizer: OptimizerConfig,
) -> None:
    # 37 ragged sequences: micro-batches of 4 in windows of 3 and batches of 12 cut the
    # epoch the same way (12, 12, 12, 1 examples), so 4 optimizer steps per epoch each.
    # Clipping is on and binds: it must act once on the window's summed gradient.
    common = {"optimizer": optimizer, "clip_norm": 0.5, "epochs": 3}
    accumulated = make(base(batch_size=4, accumulate=3, **common), double=True)
    whole = make(base(batch_size=12, accumulate=1, **common), double=True)
    assert accumulated.steps_per_epoch == whole.steps_per_epoch == 4
    a, b = accumulated.fit(), whole.fit()
    assert a.steps == b.steps == 12
    for name, value in weights_of(whole.model).items():
        torch.testing.assert_close(weights_of(accumulated.model)[name], value, rtol=0, atol=1e-10)


def test_the_first_gradient_is_the_mean_over_every_target_of_the_window() -> None:
    # One SGD step with lr 1: Δθ = −∂L/∂θ with L = Σ loss / Σ targets over the window.
    trainer = make(
        base(batch_size=4, accumulate=3, max_steps=1, optimizer=OptimizerConfig("sgd", lr=1.0)),
        double=True,
    )
    before = weights_of(trainer.model)
    first = trainer.sampler.global_batches(0)[0]  # the 12 examples of the first step
    assert len(first) == 12
    reference = Tagger().double()
    reference.load_state_dict(before)
    out, _ = reference(collate([trainer.train_data.items[i] for i in first]))
    (out.total / out.n_targets).backward()
    trainer.fit()
    for name, param in reference.named_parameters():
        step = before[name] - weights_of(trainer.model)[name]
        torch.testing.assert_close(step, param.grad, rtol=0, atol=1e-12)


def test_the_last_shorter_window_of_an_epoch_still_steps() -> None:
    # 10 micro-batches per epoch in windows of 4: 4 + 4 + 2 → 3 steps per epoch.
    trainer = make(base(batch_size=4, accumulate=4, epochs=2), n=40)
    steps: list[int] = []

    class Count(Callback):
        def on_step_end(self, t: Trainer, metrics: Any) -> None:
            steps.append(t.state.step)

    trainer.callbacks.append(Count())
    result = trainer.fit()
    assert result.steps == 6 == math.ceil(10 / 4) * 2
    assert steps == [1, 2, 3, 4, 5, 6]


def test_clipping_by_norm_bounds_the_update_once_per_step() -> None:
    trainer = make(
        base(accumulate=3, max_steps=1, clip_norm=1e-3, optimizer=OptimizerConfig("sgd", lr=1.0)),
        double=True,
    )
    before = weights_of(trainer.model)
    trainer.fit()
    after = weights_of(trainer.model)
    squared = sum(float(((after[k] - before[k]) ** 2).sum()) for k in before)
    # torch divides by norm + 1e-6, hence not exactly 1e-3.
    assert math.isclose(math.sqrt(squared), 1e-3, rel_tol=1e-5)


def test_clipping_by_value_bounds_every_element() -> None:
    trainer = make(
        base(max_steps=1, clip_value=1e-4, optimizer=OptimizerConfig("sgd", lr=1.0)), double=True
    )
    before = weights_of(trainer.model)
    trainer.fit()
    after = weights_of(trainer.model)
    largest = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert math.isclose(largest, 1e-4, rel_tol=1e-9)


# --------------------------------------------------------------------------- non-finite


def test_a_nan_loss_skips_the_step_and_training_goes_on(tmp_path: Path) -> None:
    # Example 5 carries a NaN into its batch's loss: that window is skipped.
    trainer = make(base(epochs=1, accumulate=1), poison=frozenset({5}), run_dir=tmp_path)
    position = next(k for k, batch in enumerate(trainer.sampler.global_batches(0)) if 5 in batch)
    seen: list[dict[str, float]] = []

    class Record(Callback):
        def on_step_end(self, t: Trainer, metrics: Any) -> None:
            seen.append(dict(metrics))

    trainer.callbacks.append(Record())
    result = trainer.fit()
    assert result.skipped == 1 and result.steps == len(trainer.sampler) - 1
    assert seen[position]["skipped"] == 1.0 and math.isnan(seen[position]["grad_norm"])
    saved = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert all(torch.isfinite(v).all() for v in saved.weights.values())
    rows = read_metrics(tmp_path / "metrics.csv")
    assert sum(1 for r in rows if r["metric"] == "skipped" and r["value"] == 1.0) == 1


def test_too_many_non_finite_steps_in_a_row_stop_training_clearly() -> None:
    poison = frozenset(range(37))
    trainer = make(base(epochs=1, max_bad_steps=3), poison=poison)
    before = weights_of(trainer.model)
    with pytest.raises(TrainingError, match="3 optimizer steps in a row were skipped"):
        trainer.fit()
    for name, value in weights_of(trainer.model).items():
        assert torch.equal(value, before[name])  # no update ever applied


def test_non_finite_weights_are_never_saved(tmp_path: Path) -> None:
    class Break(Callback):
        def on_step_end(self, t: Trainer, metrics: Any) -> None:
            if t.state.step == 3:
                with torch.no_grad():
                    t.model.out.bias[0] = float("inf")

    trainer = make(base(checkpoint_every=2), run_dir=tmp_path, callbacks=[Break()])
    with pytest.raises(TrainingError, match="refusing to save non-finite values"):
        trainer.fit()
    saved = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert saved.step == 2 and all(torch.isfinite(v).all() for v in saved.weights.values())


# --------------------------------------------------------------------------- resume


def test_resume_continues_bitwise_like_an_uninterrupted_run(tmp_path: Path) -> None:
    # Dropout on: the generators' states must come back too. Stopped mid-epoch (step
    # 7 of 10 per epoch), so the data position matters as well.
    config = base(epochs=2, batch_size=4, checkpoint_every=7, shuffle=True)
    whole = make(config, dropout=0.3)
    whole.fit()
    first = make(TrainerConfig(**{**vars(config), "max_steps": 7}), dropout=0.3, run_dir=tmp_path)
    assert first.fit().steps == 7
    resumed = make(config, dropout=0.3, run_dir=tmp_path, resume=True)
    assert (resumed.state.step, resumed.state.epoch, resumed.state.position) == (7, 0, 7)
    resumed.fit()
    for name, value in weights_of(whole.model).items():
        assert torch.equal(weights_of(resumed.model)[name], value), name
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.csv") if r["metric"] == "loss"]
    assert steps == sorted(set(steps))  # no duplicated rows across the restart


def test_the_run_folder_holds_config_metrics_and_checkpoints(tmp_path: Path) -> None:
    config = base(epochs=1, schedule=ScheduleConfig("cosine", warmup_steps=2))
    make(config, run_dir=tmp_path, val=examples(9, seed=1)).fit()
    parsed = tomllib.loads((tmp_path / "config.toml").read_text())
    assert from_mapping(TrainerConfig, parsed) == config
    assert (tmp_path / "checkpoints" / "last" / "manifest.json").exists()
    assert (tmp_path / "checkpoints" / "best" / "manifest.json").exists()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert {r["split"] for r in rows} == {"train", "val"}
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "clipped", "skipped"} <= {
        r["metric"] for r in rows if r["split"] == "train"
    }


# --------------------------------------------------------------------------- evaluation


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path: Path) -> None:
    # A learning rate so large that validation gets worse after the first epoch.
    config = base(
        epochs=30,
        optimizer=OptimizerConfig("sgd", lr=30.0),
        early_stopping=EarlyStoppingConfig(patience=2),
    )
    trainer = make(config, run_dir=tmp_path, val=examples(9, seed=1))
    result = trainer.fit()
    assert result.stop_reason.startswith("early stopping: val_loss did not improve for 2")
    assert result.epochs < 30
    best = load_checkpoint(tmp_path / "checkpoints" / "best")
    assert best.step == result.best_step
    for name, value in best.weights.items():
        assert torch.equal(weights_of(trainer.model)[name], value)
    assert math.isclose(trainer.evaluate()["val_loss"], result.best or 0.0, rel_tol=1e-6)


def test_evaluation_every_n_steps_and_extra_metrics() -> None:
    calls: list[int] = []

    def accuracy(model: Any, batches: Any) -> dict[str, float]:
        calls.append(1)
        return {"accuracy": 0.5}

    trainer = make(
        base(epochs=1, eval_every=3, eval_each_epoch=False), val=examples(5), evaluate=accuracy
    )
    seen: list[dict[str, float]] = []

    class Record(Callback):
        def on_evaluate(self, t: Trainer, metrics: Any) -> None:
            seen.append({"step": t.state.step, **metrics})

    trainer.callbacks.append(Record())
    trainer.fit()
    assert [s["step"] for s in seen] == [3, 6, 9]
    assert all(s["val_accuracy"] == 0.5 and s["val_loss"] > 0 for s in seen)


def test_training_reduces_the_loss_with_each_optimizer_and_bf16() -> None:
    # Evaluated on the training examples: each optimizer must fit them (loss at
    # chance is ln 4 ≈ 1.39; fifteen epochs bring it down by 0.12 to 0.77 across
    # seeds, SGD the least: 0.05 leaves a margin that holds on any machine).
    for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad"):
        lr = {"sgd": 0.5, "adagrad": 0.1}.get(name, 0.01)
        trainer = make(base(epochs=15, optimizer=OptimizerConfig(name, lr=lr)), val=examples(37))  # type: ignore[arg-type]
        before = trainer.evaluate()["val_loss"]
        trainer.fit()
        assert trainer.evaluate()["val_loss"] < before - 0.05, name
    trainer = make(
        base(epochs=15, precision="bf16", optimizer=OptimizerConfig("adam", lr=0.01)),
        val=examples(37),
    )
    before = trainer.evaluate()["val_loss"]
    trainer.fit()
    after = trainer.evaluate()["val_loss"]
    assert math.isfinite(after) and after < before - 0.05


def test_plain_lines_when_not_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    make(base(epochs=2, progress="auto"), val=examples(5)).fit()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["epoch 1 step 10 val", "epoch 2 step 20 val"]


def test_bad_configuration_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="accumulate: expected a positive int"):
        TrainerConfig(accumulate=0)
    with pytest.raises(ValueError, match="accumulate: expected at most 1,048,576"):
        TrainerConfig(accumulate=10**26)
    with pytest.raises(ValueError, match=r"clip_norm: expected a finite number in \(0, inf\]"):
        TrainerConfig(clip_norm=0.0)
    for name in ("clip_norm", "clip_value", "max_minutes"):
        with pytest.raises(ValueError, match=f"{name}: expected a finite number"):
            TrainerConfig(**{name: math.inf})
    for seed in (-1, 2**63, 10**26):
        with pytest.raises(ValueError, match=r"seed: expected an int in \[0, 2\*\*63\)"):
            TrainerConfig(seed=seed)
    TrainerConfig(seed=2**63 - 1)  # the largest torch.manual_seed takes
    with pytest.raises(ValueError, match="plateau reduces on evaluation results"):
        make(base(schedule=ScheduleConfig("plateau")))
    with pytest.raises(ValueError, match="nesterov"):
        OptimizerConfig("adam", nesterov=True)


def test_tensorboard_gets_every_value_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TensorBoard is an optional extra; a stand-in writer records what it is given.
    import sys
    import types

    written: list[tuple[str, float, int]] = []

    class Writer:
        def __init__(self, log_dir: str) -> None:
            assert log_dir == str(tmp_path / "tensorboard")

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            written.append((tag, value, step))

        def close(self) -> None:
            written.append(("closed", 0.0, 0))

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = Writer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    make(base(epochs=1, tensorboard=True), run_dir=tmp_path, val=examples(5)).fit()
    tags = {tag for tag, _, _ in written}
    assert {"train/loss", "train/grad_norm", "train/lr", "val/loss", "closed"} <= tags
    assert [s for t, _, s in written if t == "train/loss"] == list(range(1, 11))


def test_tensorboard_without_the_package_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ValueError, match=r"pip install 'rnnkit\[tensorboard\]'"):
        make(base(tensorboard=True), run_dir=tmp_path)


def test_deterministic_switch_and_seed_make_runs_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda flag: calls.append(flag))
    calls: list[bool] = []
    a = make(base(epochs=1, deterministic=True), dropout=0.3)
    assert calls == [True]
    a.fit()
    b = make(base(epochs=1, deterministic=True), dropout=0.3)
    b.fit()
    c = make(base(epochs=1, seed=1), dropout=0.3)
    c.fit()
    for name, value in weights_of(a.model).items():
        assert torch.equal(weights_of(b.model)[name], value)
    assert any(not torch.equal(weights_of(c.model)[k], v) for k, v in weights_of(a.model).items())


def test_max_minutes_stops_after_the_step_that_crosses_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnkit.training.progress import Progress

    clock = iter(range(0, 10_000, 20))  # each reading of the clock: 20 s later
    monkeypatch.setattr(Progress, "seconds", property(lambda self: float(next(clock))))
    trainer = make(base(max_minutes=1.0), run_dir=tmp_path)
    result = trainer.fit()
    assert result.stop_reason == "max_minutes"
    assert 1 <= result.steps < trainer.total_steps
    assert load_checkpoint(tmp_path / "checkpoints" / "last").step == result.steps
    with pytest.raises(ValueError, match="max_minutes"):
        base(max_minutes=0.0)


def test_an_epoch_end_on_an_eval_every_step_evaluates_once(tmp_path: Path) -> None:
    # 37 examples in batches of 4: 10 steps per epoch; eval_every 5 lands on each epoch end,
    # and max_steps 20 ends training at an epoch end too.
    trainer = make(base(eval_every=5, max_steps=20), run_dir=tmp_path, val=examples(9))
    trainer.fit()
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.csv")
             if r["split"] == "val" and r["metric"] == "loss"]  # fmt: skip
    assert steps == [5, 10, 15, 20]


def test_an_unknown_device_is_a_one_line_config_error() -> None:
    with pytest.raises(ValueError, match="device: expected auto, cpu, cuda, cuda:N or mps"):
        base(device="gpu0")
    assert base(device="cuda:1").device == "cuda:1"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lr": math.inf}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"lr": 1e300}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": math.nan}, "weight_decay"),
        ({"weight_decay": math.inf}, "weight_decay"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"name": "sgd", "momentum": math.nan}, "momentum"),
        ({"name": "sgd", "momentum": 1.0}, "momentum"),
        ({"eps": 0.0}, "eps"),
        ({"eps": math.inf}, "eps"),
        ({"betas": (0.9, math.nan)}, "betas"),
        ({"betas": (1.0, 0.999)}, "betas"),
    ],
)
def test_optimizer_numbers_must_be_finite_and_in_range(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: expected"):
        OptimizerConfig(**changes)


def test_the_largest_sane_optimizer_numbers_are_accepted() -> None:
    config = OptimizerConfig("sgd", lr=1e3, momentum=0.999, weight_decay=10.0)
    assert (config.lr, config.momentum) == (1e3, 0.999)
    with pytest.raises(ValueError, match=r"lr: expected a finite number in \(0, 1000\]"):
        OptimizerConfig(lr=1000.5)


def _stops_at(early: EarlyStoppingConfig, scores: list[float]) -> int | None:
    """The 1-based evaluation at which early stopping ends training, fed ``scores``."""
    trainer = make(base(early_stopping=early), val=examples(3))
    for i, score in enumerate(scores, start=1):
        trainer._track_best({early.monitor: score})
        if trainer.state.stop_reason:
            return i
    return None


@pytest.mark.parametrize(
    ("early", "scores", "stop"),
    [
        # Keras' EarlyStopping: wait += 1 on no improvement, stop once wait >= patience.
        (EarlyStoppingConfig(patience=2), [1.0, 1.1, 1.2, 1.3], 3),
        (EarlyStoppingConfig(patience=2), [1.0, 1.1, 0.9, 1.0, 0.95, 0.95], 5),
        (EarlyStoppingConfig(patience=1), [1.0, 0.9, 0.9], 3),  # equal is no improvement
        (EarlyStoppingConfig(patience=0), [1.0, 0.5, 0.6], 3),
        (EarlyStoppingConfig(patience=3), [1.0, 1.0, 1.0], None),
        (
            EarlyStoppingConfig(patience=2, mode="max", monitor="val_accuracy"),
            [0.5, 0.6, 0.6, 0.7, 0.65, 0.6],
            6,
        ),
        # min_delta: 0.95 is not better than 1.0 by more than 0.1, 0.85 is.
        (EarlyStoppingConfig(patience=2, min_delta=0.1), [1.0, 0.95, 0.85, 0.8, 0.79], 5),
        (EarlyStoppingConfig(patience=2, min_delta=0.1), [1.0, 0.95, 0.91], 3),
        (
            EarlyStoppingConfig(patience=2, mode="max", min_delta=0.05, monitor="val_f1"),
            [0.5, 0.54, 0.56, 0.6],
            None,
        ),
        # A NaN evaluation never counts as an improvement.
        (EarlyStoppingConfig(patience=2), [1.0, math.nan, math.nan], 3),
    ],
)
def test_patience_counts_as_keras_early_stopping(
    early: EarlyStoppingConfig, scores: list[float], stop: int | None
) -> None:
    assert _stops_at(early, scores) == stop


def test_the_stop_message_names_the_evaluations_and_the_best() -> None:
    trainer = make(base(early_stopping=EarlyStoppingConfig(patience=2)), val=examples(3))
    for score in (0.5, 0.7, 0.6):
        trainer._track_best({"val_loss": score})
    assert trainer.state.stop_reason == (
        "early stopping: val_loss did not improve for 2 evaluations (best 0.5 at step 0)"
    )


def test_resume_numbers_the_epoch_as_training_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 37 examples in batches of 4: 10 steps an epoch; stop in epoch 2, at step 13.
    make(base(epochs=3, max_steps=13, progress="lines"), run_dir=tmp_path, val=examples(5)).fit()
    err = capsys.readouterr().err
    assert "epoch 2 step 13 val" in err and "epoch 0" not in err
    make(base(epochs=3, progress="lines"), run_dir=tmp_path, resume=True, val=examples(5)).fit()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"resumed from {tmp_path / 'checkpoints' / 'last'} at step 13 "
                             "(epoch 2, step 3 of the epoch)")  # fmt: skip
    assert [line.split(":")[0] for line in err[1:] if " val" in line] == [
        "epoch 2 step 20 val", "epoch 3 step 30 val"]  # fmt: skip
    epochs = {(r["step"], r["epoch"]) for r in read_metrics(tmp_path / "metrics.csv")}
    assert {(13, 2), (20, 2), (21, 3), (30, 3)} <= epochs
    assert min(e for _, e in epochs) == 1


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_each_optimizer_takes_torchs_fused_kernel_where_there_is_one_with_the_same_update(
    name: str,
) -> None:
    # float64, so the fused kernel and torch's default loop agree to a few ulps.
    torch.manual_seed(0)
    start = [torch.randn(7, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    config = OptimizerConfig(name, lr=0.01, weight_decay=0.1)  # type: ignore[arg-type]
    fused = [torch.nn.Parameter(x.clone()) for x in start]
    plain = [torch.nn.Parameter(x.clone()) for x in start]
    ours = config.build(fused)
    reference = config.build(plain)
    for group in reference.param_groups:
        group["fused"] = None  # torch's default per-tensor loop, read at each step
    assert ours.defaults.get("fused") is (None if name == "rmsprop" else True)
    for _ in range(5):
        grads = [torch.randn_like(x) for x in start]
        for params, optimizer in ((fused, ours), (plain, reference)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_max_minutes_is_decided_by_rank_0_for_every_process(monkeypatch: Any) -> None:
    # Rank 0's clock says time is up; this process's own clock would go on: it stops
    # after the same step as rank 0, because the decision is broadcast.
    from rnnkit.training import distributed

    decisions: list[bool] = []

    def broadcast(world: Any, value: Any) -> Any:
        decisions.append(value)
        return True  # what rank 0 sent

    monkeypatch.setattr(distributed, "broadcast_object", broadcast)
    trainer = make(base(epochs=3, max_minutes=60.0))
    result = trainer.fit()
    assert result.steps == 1 and result.stop_reason == "max_minutes"
    assert decisions == [False]  # this process alone would have gone on
