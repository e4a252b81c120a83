"""The run folder as a trust boundary: what a resume finds there, and what a trainer
may write. Damaged checkpoints are refused in one line; a resume leaves the folder as
if the run had never stopped; faults while writing keep the last good checkpoint."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from rnnkit.cli.main import _known_error, main
from rnnkit.training import checkpoint as checkpoint_module
from rnnkit.training import trainer as trainer_module
from rnnkit.training.checkpoint import (
    CheckpointError,
    check_fits,
    load_checkpoint,
    lock_run_folder,
    save_checkpoint,
)
from rnnkit.training.trainer import (
    EarlyStoppingConfig,
    Interrupted,
    OptimizerConfig,
    Trainer,
    TrainerConfig,
)
from tests.cli import hostile_cases as hc
from tests.training.toy import Tagger, collate, examples

ROOT = Path(__file__).resolve().parents[2]


def trainer(run_dir: Path, *, resume: bool = False, epochs: int = 2, **config: Any) -> Trainer:
    torch.manual_seed(0)
    config = {"progress": "off", **config}
    settings = TrainerConfig(epochs=epochs, batch_size=4, device="cpu",
                             optimizer=OptimizerConfig("adam", lr=0.01), **config)  # fmt: skip
    return Trainer(Tagger(), settings, examples(24), collate, val=examples(8, seed=1),
                   run_dir=run_dir, resume=resume)  # fmt: skip


# --- point 9: metrics.csv and .tmp files after a kill and a resume -------------------


def run_toy(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.training.run_toy", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def rows_without_seconds(path: Path) -> list[list[str]]:
    """The rows without what the wall clock decides (seconds, throughput)."""
    with path.open(newline="") as handle:
        rows = [row[:-1] for row in csv.reader(handle)]
    return [row[:4] if row[3].endswith("_per_s") else row for row in rows]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")
# 10 steps an epoch, `last` saved every 5: a kill between two saves, and one after the
# epoch-end evaluation at step 10, which follows the save at step 10 and is run again on
# resume (its rows were logged after that checkpoint, at the checkpoint's own step).
@pytest.mark.parametrize("kill", [("--kill-at", "7"), ("--kill-on-eval", "10")],
                         ids=["between-saves", "after-the-epoch-end-evaluation"])  # fmt: skip
def test_metrics_after_sigkill_and_resume_match_an_uninterrupted_run_row_for_row(
    kill: tuple[str, str], tmp_path: Path
) -> None:
    common = ["--examples", "40", "--val", "8", "--epochs", "2", "--checkpoint-every", "5",
              "--eval-every", "3"]  # fmt: skip
    whole = run_toy(*common, "--run-dir", str(tmp_path / "whole"), "--out", str(tmp_path / "w"))
    assert whole.returncode == 0, whole.stderr
    run = str(tmp_path / "killed")
    killed = run_toy(*common, "--run-dir", run, "--out", str(tmp_path / "k"), *kill)
    assert killed.returncode == -signal.SIGKILL
    # The killed run logged rows after its last checkpoint (at step 5 or 10): they must go.
    assert len(rows_without_seconds(Path(run, "metrics.csv"))) > 1
    resumed = run_toy(*common, "--run-dir", run, "--out", str(tmp_path / "r"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    expected = rows_without_seconds(tmp_path / "whole" / "metrics.csv")
    assert {row[2] for row in expected[1:]} == {"train", "val"}
    assert rows_without_seconds(Path(run, "metrics.csv")) == expected


def test_a_resume_removes_what_an_interrupted_save_left(tmp_path: Path) -> None:
    trainer(tmp_path, epochs=1).fit()
    last = tmp_path / "checkpoints" / "last"
    stale = last / ".model-00000006.safetensors.0123456789abcdef.tmp"
    stale.write_bytes(b"half a file")
    mine = last / "notes.txt"  # not a file a save writes: left alone
    mine.write_text("keep me")
    resumed = trainer(tmp_path, resume=True, epochs=2)
    assert not stale.exists()
    assert mine.read_text() == "keep me"
    resumed.fit()


# --- point 3: a damaged checkpoint is refused in one line ---------------------------


def test_weights_that_do_not_fit_the_model_are_named_in_one_line(tmp_path: Path) -> None:
    model = Tagger().state_dict()
    path = tmp_path / "model.safetensors"
    missing = {k: v for k, v in model.items() if k != next(iter(model))}
    with pytest.raises(CheckpointError, match=rf"missing '{next(iter(model))}'") as info:
        check_fits(missing, model, path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="unexpected 'extra'"):
        check_fits({**model, "extra": torch.zeros(1)}, model, path)
    name, tensor = next(iter(model.items()))
    wrong = {**model, name: torch.zeros(*tensor.shape, 2)}
    with pytest.raises(CheckpointError, match=re.escape(f"{name}: expected shape (11, 6), found")):
        check_fits(wrong, model, path)
    check_fits(dict(model), model, path)  # the same names and shapes: accepted


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b'{"format": "' + b"x" * (5 * 2**20) + b'"}'],
    ids=["deeply-nested", "over-the-cap"],
)
def test_a_hostile_manifest_is_a_checkpoint_error(content: bytes, tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"w": torch.ones(2)}, {}, step=1)
    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        load_checkpoint(tmp_path)


def test_non_finite_weights_are_refused_at_load(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"w": torch.ones(2)}, {}, step=1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    poisoned = safetensors.torch.save({"w": torch.tensor([1.0, float("nan")])})
    (tmp_path / manifest["weights"]["file"]).write_bytes(poisoned)
    manifest["weights"].update(size=len(poisoned), sha256=hashlib.sha256(poisoned).hexdigest())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="w holds NaN or inf"):
        load_checkpoint(tmp_path)


def test_a_state_file_of_plain_data_without_a_trainers_fields_is_refused(tmp_path: Path) -> None:
    trainer(tmp_path, epochs=1).fit()
    last = tmp_path / "checkpoints" / "last"
    loaded = load_checkpoint(last)
    save_checkpoint(last, loaded.weights, {}, step=loaded.step, artifacts=loaded.artifacts)
    with pytest.raises(
        CheckpointError, match=r"state-\d+\.pt: malformed training state: trainer: expected a dict"
    ):
        trainer(tmp_path, resume=True)
    lock = lock_run_folder(tmp_path)  # the refused resume let go of the folder at once
    assert lock is not None
    os.close(lock)


def test_a_symlinked_checkpoint_folder_is_neither_read_nor_written(tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-run"
    save_checkpoint(elsewhere, {"w": torch.ones(2)}, {}, step=1)
    before = sorted(os.listdir(elsewhere))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last").symlink_to(elsewhere)
    with pytest.raises(CheckpointError, match="last: is a symbolic link"):
        load_checkpoint(tmp_path / "run" / "checkpoints" / "last")
    with pytest.raises(CheckpointError, match="last: is a symbolic link"):
        save_checkpoint(tmp_path / "run" / "checkpoints" / "last", {"w": torch.ones(2)}, {},
                        step=2)  # fmt: skip
    assert sorted(os.listdir(elsewhere)) == before


# --- point 11: faults and a second writer -------------------------------------------


def test_a_second_trainer_on_a_run_folder_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    first = trainer(tmp_path, epochs=1)
    with pytest.raises(CheckpointError, match="another rnnkit process is training"):
        trainer(tmp_path, resume=True)
    first.fit()
    trainer(tmp_path, resume=True).fit()  # the lock went with the first trainer's fit


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EROFS])
def test_a_failed_write_is_one_line_and_keeps_the_last_checkpoint(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer(tmp_path, epochs=1).fit()
    last = tmp_path / "checkpoints" / "last"
    saved = load_checkpoint(last)

    def full(path: Path, data: bytes) -> None:
        raise OSError(code, os.strerror(code), str(path))

    resumed = trainer(tmp_path, resume=True, epochs=2)
    monkeypatch.setattr(checkpoint_module, "_write_atomically", full)
    with pytest.raises(CheckpointError) as info:
        resumed.fit()
    message = str(info.value)
    assert "\n" not in message and os.strerror(code) in message and "untouched" in message
    assert str(tmp_path / "checkpoints") in message
    monkeypatch.undo()
    kept = load_checkpoint(last)
    assert kept.step == saved.step
    assert all(torch.equal(kept.weights[k], saved.weights[k]) for k in saved.weights)
    # And a write failing anywhere else in the folder (metrics.csv) is exit 2, not a traceback.
    assert _known_error(OSError(code, os.strerror(code), "metrics.csv")) == 2
    assert _known_error(OSError(errno.EIO, "I/O error")) is None


def test_ctrl_c_during_the_best_write_never_reports_unsaved_best_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stopping = EarlyStoppingConfig(patience=100)
    real_save = trainer_module.save_checkpoint
    best_saves: list[int] = []

    def interrupted_second_best(folder: Path, *args: Any, step: int, **kwargs: Any) -> Path:
        if Path(folder).name == "best":
            best_saves.append(step)
            if len(best_saves) == 2:  # Ctrl-C while the second best is being written
                raise KeyboardInterrupt
        return real_save(folder, *args, step=step, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", interrupted_second_best)
    with pytest.raises(Interrupted):
        trainer(tmp_path, epochs=4, eval_every=1, early_stopping=stopping).fit()
    monkeypatch.undo()
    on_disk = load_checkpoint(tmp_path / "checkpoints" / "best").step
    assert on_disk == best_saves[0] < best_saves[1]
    last = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert last.state["trainer"]["best_step"] == on_disk
    resumed = trainer(tmp_path, resume=True, epochs=4, eval_every=1, early_stopping=stopping,
                      progress="lines")  # fmt: skip
    result = resumed.fit()
    err = capsys.readouterr().err
    final_best = load_checkpoint(tmp_path / "checkpoints" / "best").step
    assert result.best_step == final_best
    assert f"restored the best weights (step {final_best}," in err


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="file-size limits are POSIX only")
def test_a_file_size_limit_is_one_line_naming_the_checkpoint(tmp_path: Path) -> None:
    import resource

    # CPython ignores SIGXFSZ, so past the limit a write fails with EFBIG: one line.

    name, content, flags = hc.GOOD["classify"]
    (tmp_path / name).write_text(content)

    def limit() -> None:  # `ulimit -f 4`: the state file (RNG state alone is 5 KB) cannot fit
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    command = [sys.executable, "-m", "rnnkit", "train", "classify", "--data", name, *flags,
               "--embed", "4", "--hidden", "4", "--batch-size", "4", "--max-steps", "1",
               "--out", "run", "--no-report", "--progress", "off"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120, preexec_fn=limit)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "checkpoints" in lines[0], lines
    assert not list((tmp_path / "run").rglob("*.tmp"))


# --- point 11: the CLI's --out and --resume -----------------------------------------


def test_resuming_after_the_data_changed_warns_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    name, content, flags = hc.GOOD["classify"]
    (tmp_path / name).write_text(content)
    argv = ["train", "classify", "--data", name, *flags, "--embed", "4", "--hidden", "4",
            "--batch-size", "4", "--out", "run", "--no-report", "--progress", "off"]  # fmt: skip
    assert main([*argv, "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert main([*argv, "--max-steps", "2", "--resume"]) == 0
    assert "warning" not in capsys.readouterr().err  # the same data: no warning
    header, *rows = content.splitlines()  # the same words and labels, in another order
    (tmp_path / name).write_text("\n".join([header, *reversed(rows)]) + "\n")
    assert main([*argv, "--max-steps", "3", "--resume"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and name in warnings[0] and "changed" in warnings[0]
