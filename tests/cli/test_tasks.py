"""``rnnkit train``'s flag table and configuration layers: defaults, --config, flags."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit import tasks
from rnnkit.cli.main import main
from rnnkit.cli.tasks import COMMON, TASKS
from rnnkit.configuration import replace
from tests.models.fixtures import lines


def sample_value(flag: str) -> object:
    """A valid value of each shared flag, to set through its key."""
    values: dict[str, object] = {
        "--dataset": "shakespeare", "--data": ("a.txt",), "--cell": "gru", "--hidden": 7,
        "--layers": 2, "--embed": 5, "--dropout": 0.25, "--bidirectional": True,
        "--attention": "dot", "--crf": True, "--gate-bias": 1.0, "--epochs": 3,
        "--max-steps": 9, "--max-minutes": 1.5,
        "--batch-size": 4, "--lr": 0.5, "--weight-decay": 0.01, "--optimizer": "sgd",
        "--nonmono": 3, "--threads": 1, "--locked-dropout": True, "--weight-drop": 0.2,
        "--zoneout": 0.1,
        "--schedule": "cosine", "--warmup": 2, "--accumulate": 3, "--grad-clip": 1.5,
        "--tbptt": {"k1": 5, "k2": 10}, "--precision": "bf16", "--seed": 11,
        "--deterministic": True, "--patience": 4, "--eval-every": 6, "--device": "cpu",
        "--progress": "off", "--tensorboard": True, "--backend": "native",
    }  # fmt: skip
    return values[flag]


def test_every_task_has_a_command_and_a_module() -> None:
    assert set(TASKS) == set(tasks.NAMES)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_flag_sets_a_key_of_its_task(name: str) -> None:
    run_type = tasks.get(name).run_type
    default = run_type()
    assert default.kind == name  # a run folder says which task made it
    for option, key in TASKS[name].flags():
        if option.flag not in COMMON:
            continue  # the task's own flags are exercised by its own tests
        value = sample_value(option.flag)
        if option.flag == "--attention" and name == "seq2seq":
            value = "general"  # dot needs a unidirectional encoder of the decoder's size
        try:
            changed = replace(default, {key: value})
        except ValueError as error:
            pytest.fail(f"{name} {option.flag} -> {key}: {error}")
        head = changed
        for part in key.split("."):
            head = getattr(head, part)
        if isinstance(value, dict):
            assert {k: getattr(head, k) for k in value} == value
        else:
            assert head == value, f"{name} {option.flag} did not reach {key}"


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "song.txt"
    path.write_text("\n".join(lines("models_tempest_song.txt") * 12) + "\n")
    return path


def test_config_file_then_flags(
    song: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "my.toml"
    config.write_text('[model]\nhidden = 24\ncell = "gru"\n\n[trainer.optimizer]\nlr = 0.05\n')
    args = ["train", "lm", "--data", str(song), "--config", str(config), "--lr", "0.01",
            "--batch-size", "2", "--dry-run"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert 'kind = "lm"' in out and "hidden = 24" in out and 'cell = "gru"' in out
    assert "lr = 0.01" in out  # the flag wins over the file
    assert "dry run: nothing trained" in out
    assert not (tmp_path / "runs").exists()


def test_saved_config_is_a_valid_config_file(
    song: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    common = ["--no-report", "--data", str(song), "--batch-size", "2", "--steps", "12", "--embed", "8",
              "--hidden", "16", "--layers", "1", "--progress", "off"]  # fmt: skip
    assert main(["train", "lm", *common, "--max-steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "lm", "--config", str(out / "config.toml"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "hidden = 16" in printed and "max_steps = 2" in printed
    # Training again into the same folder without --resume would overwrite it: refused.
    assert main(["train", "lm", *common, "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nhiden = 3\n", "model.hiden: unknown key"),
        ("[modle]\nhidden = 3\n", "modle: unknown key"),
        ('[model]\nhidden = "big"\n', "model.hidden: expected an integer"),
        ("[model\nhidden = 3\n", "not valid TOML"),
        ('kind = "tag"\n', "kind: expected one of 'lm'"),
    ],
)
def test_config_file_errors_name_the_file_and_key(
    text: str, message: str, song: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["train", "lm", "--data", str(song), "--config", str(config), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.toml" in err and message in err


def test_flag_values_are_checked_by_the_config(
    song: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --dropout is parsed as a fraction; --tbptt K1,K2 with K2 < K1 is refused by TBPTTConfig.
    assert main(["train", "lm", "--data", str(song), "--tbptt", "10,5", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit train: error: --tbptt:") and "k2" in err
    with pytest.raises(SystemExit) as stop:
        main(["train", "lm", "--dropout", "1.5"])
    assert stop.value.code == 2
    assert "--dropout" in capsys.readouterr().err


def test_flags_of_other_tasks_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "lm", "--crf"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --crf" in capsys.readouterr().err


def test_help_does_not_import_torch() -> None:
    # `rnnkit --help` and every subcommand's help must answer at once: no torch import.
    names = ["--help"] + [f"train {name} --help" for name in TASKS]
    names += ["evaluate --help", "predict --help", "generate --help", "bench --help",
              "backends --help"]  # fmt: skip
    code = (
        "import sys\n"
        "from rnnkit.cli.main import main\n"
        f"for argv in {[n.split() for n in names]!r}:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, argv\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize("name", sorted(tasks.NAMES))
def test_every_task_follows_the_one_contract(name: str) -> None:
    from rnnkit.tasks.task import Task

    task = tasks.get(name)
    assert isinstance(task, Task) and task.name == name
    assert task.run_type().kind == name
    # The classes run time needs come from the task's type parameters.
    assert dataclasses.is_dataclass(task.assets_type)
    assert isinstance(task.build_model(task.run_type()), task.model_type)
    assert task.generative == (name in ("lm", "caption", "music"))
    # The Trainer's batch size is the one batch size; no task keeps its own.
    assert not hasattr(task.run_type().task, "batch_size")


def test_an_unknown_task_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="task: expected one of classify, tag, lm"):
        tasks.get("translate")
    # A module whose TASK is missing or is another task's breaks the registry's contract.
    monkeypatch.setitem(tasks.NAMES, "tag", "classification")
    with pytest.raises(TypeError, match=r"rnnkit\.tasks\.classification\.TASK is not the 'tag'"):
        tasks.get("tag")
    monkeypatch.setitem(tasks.NAMES, "tag", "options")
    with pytest.raises(TypeError, match="is not the 'tag' task"):
        tasks.get("tag")
