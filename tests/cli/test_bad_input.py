"""A folder that is not a run, and an empty input, are one line with exit status 2.

The bad data files once tabled here are cases of ``test_hostile_input.py`` now
(``hostile_cases.DATA_CASES``), with the rest of the hostile input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkit.cli.main import main


def test_a_folder_that_is_not_a_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["evaluate"], ["predict"], ["generate"]):
        assert main([*command, str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "config.toml missing" in err
    (tmp_path / "config.toml").write_text('kind = "lm"\n[task]\nlevel = "syllable"\n')
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "task.level: expected one of 'char', 'word'" in err
    (tmp_path / "config.toml").write_text('kind = "lm"\n')
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no checkpoint yet" in capsys.readouterr().err


def test_an_empty_input_to_predict_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(tmp_path), "fine", "  "]) == 2
    assert capsys.readouterr().err == (
        "rnnkit predict: error: INPUT 2 is empty (expected a text, a sentence or a source)\n"
    )
