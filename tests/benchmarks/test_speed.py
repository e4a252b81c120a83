"""The speed benchmark script still runs and writes its table (tiny settings, no timing claims)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rnnkit_bench_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_writes_the_table_between_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    speed = load_script()
    # Shrink the problem so the test checks the plumbing, not the machine.
    monkeypatch.setitem(speed.PROBLEMS, "a", speed.Problem("a", 2, 3, 4, 5))
    target = tmp_path / "BENCH.md"
    target.write_text("# title\n\n<!-- speed:begin -->\nold table\n<!-- speed:end -->\n\nfooter\n")
    status = speed.main(
        [
            "--configs",
            "a",
            "--cells",
            "lstm,gru",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--inference",
            "--write",
            str(target),
        ]
    )
    assert status == 0
    text = target.read_text()
    assert "old table" not in text
    assert text.startswith("# title") and text.rstrip().endswith("footer")
    rows = [line for line in text.splitlines() if line.startswith("| (a)")]
    # Training: 2 cells × (torch.nn, auto, fused, native, unrolled); inference: 2 × 4.
    assert len(rows) == 10 + 8
    assert all(row.endswith("× |") for row in rows)
    assert "python benchmarks/speed.py --configs a" in text
    assert "wrote" in capsys.readouterr().out


def test_peak_step_memory_is_measured_per_candidate() -> None:
    speed = load_script()
    # In-process (the script runs it in a fresh process per candidate): the figure
    # is a non-negative number of MiB, larger for a larger problem.
    small = speed.peak_step_memory("a", "gru", "fused", 1)
    assert small >= 0.0
