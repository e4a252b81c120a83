"""``rnnkit backends``: the cached table of measured choices, ``--clear``, bad input."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from rnnkit import tuning
from rnnkit.cli.main import main
from rnnkit.tuning import Tuner, TuningKey

KEY = TuningKey(cell="gru", layers=1, directions=2, input_size=3, hidden_size=8,
                dtype="float32", device="cpu", threads=1, training=True, batch=4,
                steps=16, ragged=True, loops="compiled")  # fmt: skip


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RNNKIT_TUNE", "0")
    return tmp_path / "backends"


def record(key: TuningKey, fused: float, native: float) -> None:
    """Measure ``key`` with scripted times into the table ``rnnkit backends`` reads."""
    clock = [0.0]
    times = {"fused": fused, "native": native}

    @contextlib.contextmanager
    def runs() -> Iterator[dict[str, Callable[[], object]]]:
        def run(name: str) -> Callable[[], None]:
            def call() -> None:
                clock[0] += times[name]

            return call

        yield {name: run(name) for name in times}

    tuner = Tuner(clock=lambda: clock[0])
    tuner.choose(key, "fused", ("fused", "native"), runs)


def test_an_empty_table(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert f"table: {tuning.cache_path()} (none yet)" in out
    assert f"machine: {tuning.machine()}" in out
    assert "tuning: off (RNNKIT_TUNE=0)" in out
    assert "no measured choices yet" in out


def test_the_table_shows_each_measured_choice(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record(KEY, fused=0.002, native=0.001)
    record(replace(KEY, training=False, ragged=False), fused=0.001, native=0.0012)
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("cell")))
    rows = [line.split() for line in lines[header + 1 :]]
    assert rows == [
        ["gru", "1", "2", "3", "8", "float32", "cpu", "1", "no-grad", "≤4", "≤16", "full",
         "compiled", "fused", "fused", "1", "1.2"],
        ["gru", "1", "2", "3", "8", "float32", "cpu", "1", "train", "≤4", "≤16", "ragged",
         "compiled", "native", "fused", "2", "1"],
    ]  # fmt: skip
    assert main(["backends", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(tuning.cache_path()) and data["tuning"] is False
    assert [entry["backend"] for entry in data["entries"]] == ["fused", "native"]


def test_clear_forgets_the_tables(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(KEY, fused=0.002, native=0.001)
    assert main(["backends", "--clear"]) == 0
    assert capsys.readouterr().out == f"removed 1 table from {cache}\n"
    assert main(["backends"]) == 0
    assert "(none yet)" in capsys.readouterr().out
    assert main(["backends", "--clear"]) == 0  # nothing left: still fine
    assert capsys.readouterr().out == f"removed 0 tables from {cache}\n"


def test_a_corrupt_table_is_reported_not_fatal(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache.mkdir(parents=True)
    tuning.cache_path().write_text('{"schema": ')
    assert main(["backends"]) == 0
    assert "ignored and re-measured" in capsys.readouterr().out


def test_a_bad_argument_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["backends", "--clean"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --clean" in err


def test_the_cli_shows_the_library_reports_on_stderr(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = logging.getLogger("rnnkit")
    handlers, level = list(library.handlers), library.level
    try:
        for handler in handlers:
            library.removeHandler(handler)
        library.setLevel(logging.NOTSET)
        assert main(["backends"]) == 0
        assert main(["backends"]) == 0  # a second main adds no second handler
        capsys.readouterr()
        record(replace(KEY, hidden_size=9), fused=0.003, native=0.001)
        err = capsys.readouterr().err
        assert err == (
            "rnnkit: backend native for gru L1 D2 I3 H9 float32 cpu t1 train B4 T16 ragged "
            "compiled (measured: fused 3 ms, native 1 ms; static rule: fused)\n"
        )
    finally:
        for handler in list(library.handlers):
            library.removeHandler(handler)
        for handler in handlers:
            library.addHandler(handler)
        library.setLevel(level)
