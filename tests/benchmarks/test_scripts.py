"""The memory and gradient-flow benchmark scripts still run (tiny settings, no claims)."""

from __future__ import annotations

import importlib.util
import math
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
    # Linux sums RSS from per-CPU counters, so a run that grows nothing can read a
    # little below its start (CI saw -0.25 MiB); the figure's resolution is ~1 MiB.
    assert math.isfinite(peak) and peak > -2.0
    assert seconds > 0.0


def test_gradient_flow_script_writes_figures_and_table(tmp_path: Path) -> None:
    script = load("gradient_flow")
    doc = tmp_path / "gradient-flow.md"
    doc.write_text("intro\n<!-- gradflow:begin -->\nold\n<!-- gradflow:end -->\noutro\n")
    assert script.main(["--out", str(tmp_path), "--steps", "12"]) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro") and text.rstrip().endswith("outro")
    assert text.count("| torch.nn default |") == 3
    assert (tmp_path / "gradient-flow.png").stat().st_size > 1000
    assert (tmp_path / "gradient-flow-default.png").stat().st_size > 1000


def test_write_block_replaces_between_markers_or_appends(tmp_path: Path) -> None:
    common = load("common")
    doc = tmp_path / "doc.md"
    common.write_block(doc, "x", "first")  # a new file
    assert doc.read_text() == "<!-- x:begin -->\nfirst\n<!-- x:end -->\n"
    doc.write_text("head\n" + doc.read_text() + "tail\n")
    common.write_block(doc, "x", "second")
    assert doc.read_text() == "head\n<!-- x:begin -->\nsecond\n<!-- x:end -->\ntail\n"
    common.write_block(doc, "y", "other")
    assert doc.read_text().endswith("tail\n\n<!-- y:begin -->\nother\n<!-- y:end -->\n")


def test_profile_step_splits_a_step_into_matmul_elementwise_and_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = load("profile_step")
    speed = sys.modules["speed"]  # imported by profile_step from benchmarks/
    monkeypatch.setitem(speed.PROBLEMS, "a", speed.Problem("a", 2, 3, 4, 5))
    doc = tmp_path / "B.md"
    assert profile.main(["--configs", "a", "--cells", "gru", "--write", str(doc)]) == 0
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| (a)")]
    assert [row.split(" | ")[2] for row in rows] == ["torch.nn", "fused", "fused-py"]
    for candidate in ("fused", "fused-py"):
        parts = profile.split("a", "gru", candidate)
        assert parts["matmul"] > 0 and parts["elementwise"] > 0 and parts["ops_per_step"] > 0


def test_command_line_names_the_script_and_its_arguments() -> None:
    common = load("common")
    assert common.command_line("speed.py", ["--configs", "a", ""]) == (
        "Command: `python benchmarks/speed.py --configs a`"
    )
    assert common.command_line("speed.py", []) == "Command: `python benchmarks/speed.py`"


def test_drop_in_compares_each_module_and_cell_with_torch_nn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load("drop_in")
    monkeypatch.setattr(script, "PROBLEMS", {"t": (2, 3, 4, 5)})
    monkeypatch.setattr(script, "CELL_STEPS", 2)
    doc = tmp_path / "BENCHMARKS.md"
    assert script.main(["--configs", "t", "--repeats", "1", "--write", str(doc)]) == 0
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| ")][1:]
    # 3 kinds × (training, no-grad) for the stacks, and for the cells × B ∈ {1, 32}.
    assert len(rows) == 3 * 2 + 3 * 2 * 2
    assert all(line.endswith("× |") for line in rows)


def test_each_quality_row_trains_with_its_own_thread_count(tmp_path: Path) -> None:
    quality = load("quality")
    for row in quality.ROWS:
        for run in row.trains:
            argv = quality.command(row, run, tmp_path)
            assert argv[argv.index("--threads") + 1] == str(row.threads)
            assert argv[-2:] == ["--out", str(tmp_path / row.name / run)]
    threads = {row.name: row.threads for row in quality.ROWS}
    # Two one-thread rows share the 2-core machine; the one two-thread row runs alone.
    assert threads.pop("selective-copying") == 2 and set(threads.values()) == {1}
