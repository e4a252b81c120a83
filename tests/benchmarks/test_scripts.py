"""The memory and gradient-flow benchmark scripts still run (tiny settings, no claims)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"rnnkit_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["stream", "tbptt", "full"])
def test_stream_memory_runs_each_mode(mode: str) -> None:
    peak, seconds = load("stream_memory").run(mode, 500)
    assert peak >= 0.0 and seconds > 0.0


def test_gradient_flow_script_writes_figures_and_table(tmp_path: Path) -> None:
    script = load("gradient_flow")
    doc = tmp_path / "gradient-flow.md"
    doc.write_text(f"intro\n{script.BEGIN}\nold\n{script.END}\noutro\n")
    assert script.main(["--out", str(tmp_path), "--steps", "12"]) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro") and text.rstrip().endswith("outro")
    assert text.count("| torch.nn default |") == 3
    assert (tmp_path / "gradient-flow.png").stat().st_size > 1000
    assert (tmp_path / "gradient-flow-default.png").stat().st_size > 1000
