"""The compile benchmark script still runs and writes its table (tiny settings, no timing claims)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compile.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rnnkit_bench_compile", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_writes_an_eager_and_a_compiled_row_per_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script()
    for name, value in (("BATCH", 2), ("STEPS", 3), ("INPUTS", 3), ("HIDDEN", 4)):
        monkeypatch.setattr(script, name, value)
    torch.compiler.reset()
    target = tmp_path / "BENCH.md"
    target.write_text("intro\n<!-- compile:begin -->\nold\n<!-- compile:end -->\n")
    # aot_eager: dynamo and AOTAutograd without inductor's code generation (slow here).
    argv = ["--repeats", "1", "--threads", "1", "--compiler", "aot_eager", "--write", str(target)]
    try:
        assert script.main(argv) == 0
    finally:
        torch.compiler.reset()
    text = target.read_text()
    assert text.startswith("intro") and "old" not in text
    rows = [line for line in text.splitlines() if line.startswith(("| lstm |", "| gru |"))]
    assert [row.split(" | ")[1] for row in rows] == ["eager", "compiled"] * 2
    assert all(row.count("×") == 1 for row in rows)
    assert "python benchmarks/compile.py --repeats 1" in text
