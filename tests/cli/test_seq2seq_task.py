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
    assert "# train: 21 pairs, 20 distinct sources" in printed
    assert "trained 4 steps (max_steps)" in printed
    artifacts = load_checkpoint(out / "checkpoints" / "last").artifacts
    assert {"source.json", "target.json"} <= set(artifacts)

    assert main(["evaluate", str(out), "--split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "seq2seq" and report["split"] == "train"
    metrics = report["metrics"]
    assert metrics["sources"] == 20 and metrics["pairs"] == 21
    assert metrics["perplexity"] == pytest.approx(2.718281828459045 ** metrics["loss"])
    assert 0.0 <= metrics["sequence_error_rate"] <= 1.0 and metrics["token_error_rate"] >= 0
    assert report["details"]["decoding"] == "beam 2"
    for mistake in report["details"]["mistakes"]:
        assert len(mistake["output"].split()) <= 12  # --max-output
    assert main(["evaluate", str(out), "--data", str(g2p_file)]) == 0  # the table, a file
    text = capsys.readouterr().out
    assert "token_error_rate" in text and "PER (phoneme error rate)" in text

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


def test_accumulate_trains_what_the_whole_batch_trains(g2p_file: Path) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact, assert_minimal_cells_train

    # Teacher forcing 1 (the default) draws nothing; dropout off; 3 steps of 16 pairs
    # (the 21 training pairs are one step of 16 and one of 5, then 16 again). SGD, not
    # Adam: Adam divides by √v, so on a weight whose gradient is near 0 it turns the
    # float32 rounding of a sum in another order into an update of ~1e-6 (measured
    # 1.2e-6 at lr 0.02 on 2 threads); SGD's update is linear in the gradient (3e-8).
    command = ["train", "seq2seq", "--data", str(g2p_file), "--embed", "8", "--hidden", "12",
               "--attention", "general", "--bidirectional", "--dropout", "0",
               "--optimizer", "sgd", "--lr", "0.5", "--max-steps", "3", "--backend", "fused",
               "--seed", "3", "--max-output", "8"]  # fmt: skip
    assert_accumulation_is_exact(g2p_file.parent, command)
    assert_minimal_cells_train(g2p_file.parent, command)
