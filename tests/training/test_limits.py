"""Limits before allocation: size caps, the memory estimate and the device, in one line."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from rnnkit.models import build_model
from rnnkit.models.classifier import ClassifierConfig
from rnnkit.models.language_model import LanguageModelConfig
from rnnkit.recurrent import Recurrent, RecurrentConfig
from rnnkit.tasks.classification import ClassificationRun
from rnnkit.tasks.language_model import LanguageModelRun
from rnnkit.training import budget
from rnnkit.training.budget import BudgetError, check_run, estimate, resolve_device
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig


def classify(**model: Any) -> ClassificationRun:
    run = ClassificationRun()
    values = {"vocab_size": 50, "num_classes": 3, **model}
    return dataclasses.replace(run, model=dataclasses.replace(run.model, **values))


# --------------------------------------------------------------------------- caps


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (
            lambda: ClassifierConfig(vocab_size=5, hidden=2**16 + 1),
            "hidden: expected at most 65,536",
        ),
        (lambda: ClassifierConfig(vocab_size=5, embed=10**9), "embed: expected at most 65,536"),
        (lambda: ClassifierConfig(vocab_size=5, layers=65), "layers: expected at most 64"),
        (lambda: ClassifierConfig(vocab_size=5, layers=10**26), "layers: expected at most 64"),
        (lambda: LanguageModelConfig(5, hidden=10**9), "hidden: expected at most 65,536"),
        (lambda: RecurrentConfig("gru", 3, 4, num_layers=1000), "num_layers: expected at most 64"),
        (lambda: Recurrent("lstm", 3, 2**17), "hidden_size: expected at most 65,536"),
        (lambda: ClassifierConfig(vocab_size=5, gate_bias=float("nan")), "gate_bias: expected"),
        (lambda: ClassifierConfig(vocab_size=5, gate_bias=float("-inf")), "gate_bias: expected"),
        (lambda: ClassifierConfig(vocab_size=5, gate_bias=1e300), "gate_bias: expected"),
    ],
)
def test_sizes_and_biases_beyond_the_caps_are_refused(make: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()


def test_the_caps_themselves_are_accepted() -> None:
    config = ClassifierConfig(vocab_size=5, hidden=2**16, embed=2**16, layers=64, gate_bias=-100)
    assert (config.hidden, config.layers, config.gate_bias) == (2**16, 64, -100)


# --------------------------------------------------------------------------- the estimate


def test_parameters_are_counted_exactly_without_building_on_a_real_device() -> None:
    run = classify(hidden=24, embed=12, layers=2, bidirectional=True)
    real = sum(p.numel() for p in build_model(run.model).parameters())
    need = estimate(run)
    assert need.parameters == need.gradients == 4 * real
    # adamw: two state tensors per parameter; the undo copy holds weights and state.
    assert need.optimizer == 2 * need.parameters and need.undo == 3 * need.parameters
    # LSTM keeps ~8 values per unit, layer, direction; the head's linear its outputs;
    # batch × max_length steps; float32, value and gradient.
    per_step = 8 * 2 * 2 * 24 + 3
    assert need.activations == 4 * 2 * run.trainer.batch_size * run.task.max_length * per_step


def test_the_optimizer_state_follows_the_optimizer() -> None:
    run = classify(hidden=8, embed=4)
    weights = estimate(run).parameters
    for optimizer, states in [(OptimizerConfig("sgd", lr=0.1), 0),
                              (OptimizerConfig("sgd", lr=0.1, momentum=0.9), 1),
                              (OptimizerConfig("rmsprop"), 1),
                              (OptimizerConfig("rmsprop", momentum=0.5), 2),
                              (OptimizerConfig("adagrad"), 1),
                              (OptimizerConfig("adam"), 2)]:  # fmt: skip
        trainer = dataclasses.replace(run.trainer, optimizer=optimizer)
        assert estimate(dataclasses.replace(run, trainer=trainer)).optimizer == states * weights


def test_an_estimate_of_terabytes_is_computed_without_allocating() -> None:
    # 64 bidirectional layers of 65,536 LSTM units: ~6.6 · 10^12 weights, built on the
    # meta device only. Per direction, 4 gates · H · (inputs + H + 2 biases); the
    # inputs of layer 0 are the embedding, those of the others both directions' H.
    h = 2**16
    run = classify(hidden=h, embed=h, layers=64)
    lstm = 2 * 4 * h * ((h + h + 2) + 63 * (2 * h + h + 2))
    need = estimate(run)
    assert lstm < need.parameters / 4 < lstm * 1.001  # + the embedding and the head
    assert need.total > 10**14


def test_a_run_beyond_the_available_memory_is_refused_in_one_line(monkeypatch: Any) -> None:
    monkeypatch.setattr(budget, "available_memory", lambda device: 21 * 10**9)
    run = classify(hidden=2**16, layers=64)
    with pytest.raises(BudgetError) as raised:
        check_run(run)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("model.hidden = 65536, model.embed = 64, model.layers = 64")
    assert "training needs ~" in message and " TB (" in message
    assert message.endswith("21 GB is available on cpu")


def test_a_run_that_fits_passes_and_returns_its_estimate(monkeypatch: Any) -> None:
    run = dataclasses.replace(LanguageModelRun(), model=LanguageModelConfig(65, embed=64))
    need = estimate(run)
    monkeypatch.setattr(budget, "available_memory", lambda device: need.total)
    assert check_run(run) == need  # exactly enough is enough
    monkeypatch.setattr(budget, "available_memory", lambda device: need.total - 1)
    with pytest.raises(BudgetError, match=r"model\.hidden = 256"):
        check_run(run)


def test_available_memory_reads_the_machine() -> None:
    have = budget.available_memory("cpu")
    assert 2**20 < have <= 2**63 - 1
    if torch.cuda.is_available():
        _, total = torch.cuda.mem_get_info()
        assert 0 < budget.available_memory("cuda") <= total


# --------------------------------------------------------------------------- devices


def test_devices_torch_can_use_resolve() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps_is_one_line() -> None:
    with pytest.raises(BudgetError, match=r"^device: mps was asked for, but this torch or "):
        resolve_device("mps")


def test_cuda_without_cuda_or_beyond_the_devices_is_one_line(monkeypatch: Any) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BudgetError, match="device: cuda:1 was asked for, but torch sees no CUDA"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(BudgetError, match=r"sees 2 CUDA device\(s\) \(cuda:0 … cuda:1\)"):
        resolve_device("cuda:99")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_a_trainer_refuses_an_unusable_device_before_it_builds_anything(monkeypatch: Any) -> None:
    from rnnkit.training.trainer import Trainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(BudgetError, match="device: cuda was asked for"):
        Trainer(model, TrainerConfig(device="cuda"), [], lambda items: items)
    assert next(model.parameters()).device.type == "cpu"


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "0", "-1", "x"])
def test_positive_float_flags_refuse_non_finite_numbers(text: str) -> None:
    import argparse

    from rnnkit.cli.arguments import finite_float, positive_float

    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)
    if text in ("0", "-1"):
        assert finite_float(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="expected a finite number"):
            finite_float(text)


def test_seed_flags_take_exactly_what_torch_manual_seed_takes() -> None:
    import argparse

    from rnnkit.cli.arguments import seed

    assert seed("0") == 0 and seed(str(2**63 - 1)) == 2**63 - 1
    torch.manual_seed(seed(str(2**63 - 1)))
    for text in (str(2**63), "99999999999999999999999999", "-1", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            seed(text)


@pytest.mark.parametrize("command", [["generate", "RUN"], ["explain"], ["gradflow"]])
def test_every_seed_flag_refuses_a_seed_beyond_int64(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from rnnkit.cli.main import main

    with pytest.raises(SystemExit) as exited:  # argparse's usage error: status 2
        main([*command, "--seed", str(2**64)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seed: expected an int in [0, 2**63), got 18446744073709551616" in err
    assert "Traceback" not in err
