"""The Trainer in real processes: SIGKILL and resume, Ctrl-C, and torchrun with two processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rnnkit.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, torchrun: int = 0, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", "OMP_NUM_THREADS": "1"}
    if torchrun:
        with socket.socket() as s:  # a free port for the rendezvous
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={torchrun}",
            "--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={port}",
            "-m", "tests.training.run_toy", *args,
        ]  # fmt: skip
    else:
        command = [sys.executable, "-m", "tests.training.run_toy", *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def assert_same(a: Path, b: Path, atol: float = 0.0) -> None:
    left, right = load_file(a), load_file(b)
    assert left.keys() == right.keys()
    for name in left:
        if atol == 0.0:
            assert torch.equal(left[name], right[name]), name
        else:
            torch.testing.assert_close(left[name], right[name], rtol=0, atol=atol)


@pytest.mark.parametrize("every", [4, 3], ids=["kill-just-before-a-save", "kill-between-saves"])
def test_sigkill_then_resume_ends_bitwise_equal(tmp_path: Path, every: int) -> None:
    # Dropout on, so the generators' states matter; killed right after step 8 of 20
    # (10 per epoch), before that step's checkpoint, so resumed from step 4 (or 6)
    # and replaying the steps after it.
    common = ["--dropout", "0.3", "--checkpoint-every", str(every)]
    run("--out", str(tmp_path / "whole.safetensors"), *common)
    run_dir, scrap = str(tmp_path / "run"), str(tmp_path / "scrap.safetensors")
    killed = run("--run-dir", run_dir, "--out", scrap, "--kill-at", "8", *common, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(Path(run_dir) / "checkpoints" / "last").step == 7 // every * every
    run("--run-dir", run_dir, "--out", str(tmp_path / "resumed.safetensors"), "--resume", *common)
    assert_same(tmp_path / "whole.safetensors", tmp_path / "resumed.safetensors")


def test_ctrl_c_saves_last_exits_130_and_resumes_exactly(tmp_path: Path) -> None:
    common = ["--dropout", "0.3"]
    run("--out", str(tmp_path / "whole.safetensors"), *common)
    run_dir, scrap = str(tmp_path / "run"), str(tmp_path / "scrap.safetensors")
    stopped = run("--run-dir", run_dir, "--out", scrap, "--interrupt-at", "5", *common, check=False)
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted at step 5; saved checkpoints/last" in stopped.stderr
    assert load_checkpoint(Path(run_dir) / "checkpoints" / "last").step == 5
    run("--run-dir", run_dir, "--out", str(tmp_path / "resumed.safetensors"), "--resume", *common)
    assert_same(tmp_path / "whole.safetensors", tmp_path / "resumed.safetensors")


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_processes_with_batch_b_equal_one_with_batch_2b(
    tmp_path: Path, accumulate: int
) -> None:
    # 37 examples: the last global batch is short, so the stand-in shard path runs too.
    common = ["--examples", "37", "--accumulate", str(accumulate), "--double"]
    run("--out", str(tmp_path / "one.safetensors"), "--batch-size", "8", *common)
    run(
        "--out", str(tmp_path / "two.safetensors"), "--batch-size", "4",
        "--run-dir", str(tmp_path / "run"), *common, torchrun=2,
    )  # fmt: skip
    assert_same(tmp_path / "one.safetensors", tmp_path / "two.safetensors", atol=1e-6)


def test_two_processes_stopped_and_resumed_equal_an_uninterrupted_pair(tmp_path: Path) -> None:
    # Dropout on: each process's generators are saved (gathered on rank 0) and
    # restored to the process they belong to.
    common = ["--examples", "37", "--batch-size", "4", "--dropout", "0.3"]
    run("--out", str(tmp_path / "whole.safetensors"), *common, torchrun=2)
    run_dir, scrap = str(tmp_path / "run"), str(tmp_path / "scrap.safetensors")
    run("--run-dir", run_dir, "--out", scrap, "--max-steps", "7", *common, torchrun=2)
    assert load_checkpoint(Path(run_dir) / "checkpoints" / "last").step == 7
    run("--run-dir", run_dir, "--out", str(tmp_path / "resumed.safetensors"), "--resume",
        *common, torchrun=2)  # fmt: skip
    assert_same(tmp_path / "whole.safetensors", tmp_path / "resumed.safetensors")
