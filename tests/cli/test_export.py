"""``rnnkit export RUN --onnx FILE`` through ``main(argv)``: tiny runs of each exportable
task, their files run in onnxruntime against the loaded run, and the refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rnnkit import tasks
from rnnkit.cli.main import main
from tests.models.fixtures import FIXTURES, lines

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-5


def session(path: Path) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_a_classify_run_exports_its_classifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = str(FIXTURES / "models_rotten_tomatoes_sample.tsv")
    run = tmp_path / "run"
    assert main([
        "train", "classify", "--no-report", "--data", sample, sample, sample, "--comment", "#",
        "--out", str(run), "--batch-size", "4", "--embed", "8", "--hidden", "6",
        "--min-freq", "1", "--progress", "off", "--max-steps", "2", "--bidirectional",
        "--pooling", "attention",
    ]) == 0  # fmt: skip
    capsys.readouterr()
    target = tmp_path / "classify.onnx"
    assert main(["export", str(run), "--onnx", str(target)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"wrote {target} (the classify run's SequenceClassifier")
    assert printed[1:] == [
        "  input tokens int64 (batch, time)",
        "  input lengths int64 (batch)",
        "  output logits float32 (batch, 2)",
        "  output probabilities float32 (batch, 2)",
    ]
    props = metadata(target)
    assert props["rnnkit.kind"] == "classify" and 'kind = "classify"' in props["rnnkit.config.toml"]
    assert {"rnnkit.assets.vocab.json", "rnnkit.assets.labels.json"} <= set(props)

    loaded = tasks.get("classify").load(run)
    ids = torch.tensor([[5, 9, 2, 7, 3], [4, 8, 0, 0, 0], [6, 0, 0, 0, 0]])
    lengths = torch.tensor([5, 2, 1])
    (logits, probabilities) = session(target).run(
        None, {"tokens": ids.numpy(), "lengths": lengths.numpy()}
    )
    want = loaded.model.probabilities(ids, lengths).numpy()
    assert np.abs(probabilities - want).max() <= TOLERANCE
    with torch.no_grad():
        want = loaded.model.head.logits(loaded.model.pooled(ids, lengths)).numpy()
    assert np.abs(logits - want).max() <= TOLERANCE

    assert main(["export", str(run), "--onnx", str(tmp_path / "no" / "m.onnx")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "expected an existing folder" in error
    assert main(["export", str(run), "--onnx", str(tmp_path)]) == 2
    assert "expected a file name" in capsys.readouterr().err


def test_a_tag_run_exports_its_emissions_and_an_lm_run_one_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag_run, lm_run = tmp_path / "tag", tmp_path / "lm"
    assert main([
        "train", "tag", "--no-report", "--data", str(FIXTURES / "tagger_wnut16_sample.txt"),
        "--comment", "# ", "--out", str(tag_run), "--batch-size", "2", "--embed", "4",
        "--hidden", "5", "--progress", "off", "--max-steps", "2", "--crf", "--min-freq", "1",
    ]) == 0  # fmt: skip
    text = tmp_path / "song.txt"
    text.write_text("\n".join(lines("models_tempest_song.txt") * 12) + "\n")
    assert main([
        "train", "lm", "--no-report", "--data", str(text), "--out", str(lm_run),
        "--batch-size", "2", "--steps", "8", "--embed", "4", "--hidden", "6", "--layers", "2",
        "--progress", "off", "--max-steps", "2",
    ]) == 0  # fmt: skip
    capsys.readouterr()

    tagger = tmp_path / "tag.onnx"
    assert main(["export", str(tag_run), "--onnx", str(tagger)]) == 0
    assert "output emissions float32 (batch, time, 8)" in capsys.readouterr().out
    model = tasks.get("tag").load(tag_run).model
    tokens, lengths = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2])
    (emissions,) = session(tagger).run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        assert np.abs(emissions - model.emissions(tokens, lengths).numpy()).max() <= TOLERANCE

    step = tmp_path / "lm.onnx"
    assert main(["export", str(lm_run), "--onnx", str(step)]) == 0
    printed = capsys.readouterr().out
    assert "  input h_0 float32 (2, batch, 6)" in printed and "  output c_n" in printed
    assert json.loads(metadata(step)["rnnkit.assets.vocab.json"])
    lm = tasks.get("lm").load(lm_run).model
    state = lm.rnn.initial_state(3)
    tokens = torch.tensor([1, 2, 3])
    got = session(step).run(
        None, {"tokens": tokens.numpy(), "h_0": state.h.numpy(), "c_0": state.c.numpy()}
    )
    with torch.no_grad():
        logits, final = lm.decode_step(tokens, state)
    for value, expected in zip(got, [logits, *final], strict=True):
        assert np.abs(value - expected.numpy()).max() <= TOLERANCE


@pytest.mark.parametrize(
    ("kind", "flags", "output"),
    [
        ("seqclass", ["--data", *[str(FIXTURES / "seqclass_japanese_vowels_sample.ts")] * 3,
                      "--batch-size", "8", "--pooling", "max"], "probabilities"),
        ("forecast", ["--data", str(FIXTURES / "models_airpassengers.csv"), "--window", "24",
                      "--horizon", "12", "--batch-size", "16"], "predictions"),
    ],
)  # fmt: skip
def test_real_valued_runs_export_their_classifier(
    kind: str, flags: list[str], output: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, target = tmp_path / "run", tmp_path / f"{kind}.onnx"
    assert main(["train", kind, "--no-report", "--out", str(run), "--hidden", "5",
                 "--progress", "off", "--max-steps", "2", *flags]) == 0  # fmt: skip
    assert main(["export", str(run), "--onnx", str(target)]) == 0
    printed = capsys.readouterr().out
    assert "  input inputs float32 (batch, time, " in printed and f"  output {output} " in printed
    model = tasks.get(kind).load(run).model
    x = torch.randn(3, 7, model.encoder.input_size)
    lengths = torch.tensor([7, 3, 1])
    got = session(target).run([output], {"inputs": x.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        want = model.head.predict(model.pooled(x, lengths))
    assert np.abs(got[0] - want.numpy()).max() <= TOLERANCE


def test_bad_input_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = str(tmp_path / "model.onnx")
    assert main(["export", str(tmp_path / "nowhere"), "--onnx", target]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a run folder (config.toml missing)" in error
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a run\n")
    for folder in ("empty", "a-file"):
        assert main(["export", str(tmp_path / folder), "--onnx", target]) == 2
        assert capsys.readouterr().err.count("\n") == 1

    g2p = tmp_path / "g2p.tsv"
    rows = [line.replace(" ", "\t", 1) for line in lines("seq2seq_cmudict_sample.dict")]
    g2p.write_text("\n".join(rows) + "\n")
    seq2seq = tmp_path / "seq2seq"
    assert main([
        "train", "seq2seq", "--no-report", "--data", str(g2p), "--out", str(seq2seq),
        "--batch-size", "4", "--embed", "4", "--hidden", "4", "--progress", "off",
        "--max-steps", "1",
    ]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["export", str(seq2seq), "--onnx", target]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"rnnkit export: error: {seq2seq}: a seq2seq run cannot be exported")
    assert "got a Seq2Seq" in error and not Path(target).exists()

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the export extra were missing
    assert main(["export", str(seq2seq), "--onnx", target]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pip install 'rnnkit[export]'" in error
