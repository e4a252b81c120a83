"""``rnnkit report RUN``: writes RUN/report.html; one clear line when it cannot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from tests.report.runs import lm


def test_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = lm(tmp_path)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out == f"wrote {run / 'report.html'}\n"
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Generated samples" in page


def test_not_a_run_folder_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder (config.toml missing)" in capsys.readouterr().err


def test_without_the_extra_one_line_names_the_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("jinja2", "matplotlib") else real(name, *a),
    )
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (
        "rnnkit report: error: the run report needs jinja2 and matplotlib: "
        "pip install 'rnnkit[report]'\n"
    )
