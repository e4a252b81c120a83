"""``rnnkit train seq2seq`` → ``evaluate`` → ``predict`` → ``--resume`` through ``main(argv)``
on real CMUdict entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.training.checkpoint import load_checkpoint
from tests.models.fixtures import lines


@pytest.fixture
def g2p_file(tmp_path: Path) -> Path:
    """The 24 CMUdict entries as ``word TAB phonemes``, one word with two pronunciations."""
    rows = [line.replace(" ", "\t", 1) for line in lines("seq2seq_cmudict_sample.dict")]
    path = tmp_path / "g2p.tsv"
    path.write_text("\n".join([*rows, "burnt\tB ER1 N D"]) + "\n")
    return path


def train(data: Path, out: Path, *extra: str) -> int:
    return main([
        "train", "seq2seq", "--no-report", "--data", str(data), "--out", str(out), "--batch-size", "4",
        "--embed", "8", "--hidden", "16", "--progress", "off", "--lr", "0.01",
        "--attention", "general", "--bidirectional", *extra,
    ])  # fmt: skip


def test_train_evaluate_predict_and_resume(
    g2p_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(g2p_file, out, "--max-steps", "4", "--beam", "2", "--max-output", "12",
                 "--teacher-forcing", "0.9") == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "bidirectional_encoder = true" in printed and 'attention = "general"' in printed
    assert "beam = 2" in printed and "teacher_forcing = 0.9" in printed
    assert "# train: 20 pairs, 19 distinct sources" in printed
    assert "trained 4 steps (max_steps)" in printed
    artifacts = load_checkpoint(out / "checkpoints" / "last").artifacts
    assert {"source_vocab.json", "target_vocab.json"} <= set(artifacts)

    assert main(["evaluate", str(out), "--split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "seq2seq" and report["split"] == "train"
    metrics = report["metrics"]
    assert metrics["sources"] == 19 and metrics["pairs"] == 20
    assert metrics["perplexity"] == pytest.approx(2.718281828459045 ** metrics["loss"])
    assert 0.0 <= metrics["sequence_error_rate"] <= 1.0 and metrics["token_error_rate"] >= 0
    assert report["details"]["decoding"] == "beam 2"
    for mistake in report["details"]["mistakes"]:
        assert len(mistake["output"].split()) <= 12  # --max-output
    assert main(["evaluate", str(out), "--data", str(g2p_file)]) == 0  # the table, a file
    assert "token_error_rate" in capsys.readouterr().out

    assert main(["predict", str(out), "burnt", "cyprus", "--beam", "3", "--json"]) == 0
    first = capsys.readouterr().out
    records = [json.loads(line) for line in first.splitlines()]
    assert [r["input"] for r in records] == ["burnt", "cyprus"]
    for r in records:
        assert r["output"] == " ".join(r["tokens"]) and r["score"] <= 0
    assert main(["predict", str(out), "burnt", "cyprus", "--beam", "3", "--json"]) == 0
    assert capsys.readouterr().out == first  # deterministic

    assert train(g2p_file, out, "--max-steps", "7", "--resume") == 0
    assert "trained 7 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 7


def test_bad_input_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("cat\tK AE1 T\ndog\tD AO1 G\textra\n")
    assert train(bad, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.tsv:2" in err
    good = tmp_path / "good.tsv"
    good.write_text("cat\tK AE1 T\ndog\tD AO1 G\nfish\tF IH1 SH\n")
    assert train(good, tmp_path / "run", "--teacher-forcing", "1.5") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "teacher_forcing" in err
    with pytest.raises(SystemExit) as exit_:
        train(good, tmp_path / "run", "--source-level", "byte")
    assert exit_.value.code == 2
    assert "--source-level" in capsys.readouterr().err
