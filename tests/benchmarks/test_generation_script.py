"""benchmarks/generation.py still runs and writes its section (tiny settings, no claims)."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.test_scripts import load


def test_the_step_table_has_a_row_per_cell_and_thread_count(tmp_path: Path) -> None:
    script = load("generation")
    doc = tmp_path / "B.md"
    doc.write_text("intro\n<!-- generation:begin -->\nold\n<!-- generation:end -->\n")
    argv = [
        "--no-generate",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--write",
        str(doc),
    ]
    assert script.main(argv) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro")
    rows = [
        line.split(" | ")
        for line in text.splitlines()
        if line.startswith("| ") and "µs" not in line
    ]
    assert [row[0] for row in rows if row[0] in ("| rnn", "| lstm", "| gru")] == [
        "| rnn",
        "| lstm",
        "| gru",
    ]


def test_the_clock_splits_start_up_from_generation() -> None:
    clock = load("generation").Clock()
    clock.write("ROMEO:")
    clock.write("a")
    clock.write("b")
    assert clock.characters == 2 and clock.first is not None and clock.last >= clock.first
