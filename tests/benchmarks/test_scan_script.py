"""The scan benchmark script still runs and writes its table (tiny settings, no timing claims)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scan.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rnnkit_bench_scan", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_writes_a_row_per_candidate_and_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = load_script()
    monkeypatch.setattr(scan, "BATCH", 2)
    monkeypatch.setattr(scan, "INPUTS", 3)
    monkeypatch.setattr(scan, "HIDDEN", 4)
    target = tmp_path / "BENCH.md"
    argv = ["--steps", "5,9", "--repeats", "1", "--threads", "1", "--no-memory",
            "--write", str(target)]  # fmt: skip
    assert scan.main(argv) == 0
    rows = [line for line in target.read_text().splitlines() if line.startswith("| 5 |")
            or line.startswith("| 9 |")]  # fmt: skip
    assert len(rows) == 2 * len(scan.CANDIDATES)
    assert all(row.count("×") == 2 for row in rows)
    assert "python benchmarks/scan.py --steps 5,9" in target.read_text()


def test_peak_step_memory_counts_the_step() -> None:
    scan = load_script()
    assert scan.peak_step_memory("mingru", 64, 1) >= 0.0
