"""``rnnkit bench``: lists the benchmarks and runs one from the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.cli import bench
from rnnkit.cli.main import main


def test_without_a_name_it_lists_every_benchmark_script(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench"]) == 0
    out = capsys.readouterr().out
    for name, (script, _) in bench.BENCHMARKS.items():
        assert name in out and (bench.benchmarks_dir() / script).is_file()


def test_it_runs_the_script_with_the_remaining_arguments() -> None:
    # A subprocess, so the script's output is the command's own.
    result = subprocess.run(
        [sys.executable, "-m", "rnnkit", "bench", "quality", "--list"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rnnkit train seqclass --dataset adding" in result.stdout
    assert "ptb-char: test ≤ 1.40 bits per character" in result.stdout


def test_outside_a_checkout_it_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "a" / "b" / "c" / "bench.py"))
    assert main(["bench", "speed"]) == 2
    assert "source checkout" in capsys.readouterr().err
