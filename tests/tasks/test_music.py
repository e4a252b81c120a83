"""The music task on BWV 66.6: pieces, the per-key baseline by hand, scores, generation."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.data.errors import DataError
from rnnkit.data.formats.midi import read_midi, read_roll_text, roll_text
from rnnkit.models.music import (
    MusicConfig,
    PianoRollModel,
    baseline_nll,
    from_roll,
    key_frequencies,
    to_roll,
)
from rnnkit.tasks import music
from rnnkit.tasks.music import TASK, MusicRun, MusicTask
from rnnkit.tasks.options import GenerateOptions, PredictOptions
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import TrainerConfig
from tests.models.fixtures import FIXTURES

CHORALE = FIXTURES / "models_bwv66_6_roll.txt"


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """The chorale cut in three: frames 1-96 train, 97-120 valid, 121-144 test."""
    folder = tmp_path_factory.mktemp("chorale")
    frames = read_roll_text(CHORALE)
    paths = []
    for name, (start, stop) in zip(("train", "valid", "test"), ((0, 96), (96, 120), (120, 144)),
                                   strict=True):  # fmt: skip
        path = folder / f"{name}.txt"
        path.write_text(roll_text(frames[start:stop]))
        paths.append(str(path))
    return paths[0], paths[1], paths[2]


def small_run(data: tuple[str, ...], **task: object) -> MusicRun:
    return MusicRun(
        task=MusicTask(data=data, **task),  # type: ignore[arg-type]
        model=MusicConfig(embed=8, hidden=16),
        trainer=TrainerConfig(epochs=1, max_steps=3, batch_size=1, progress="off"),
    )


def generate(run: Path, options: GenerateOptions) -> list[str]:
    return ["".join(pieces) for pieces in TASK.stream(TASK.load(run), options)]


def test_prepare_fixes_the_range_and_prepends_silence(parts: tuple[str, str, str]) -> None:
    prepared = TASK.prepare(small_run(parts))
    frames = read_roll_text(CHORALE)
    pitches = [p for frame in frames for p in frame]
    assert (prepared.run.task.low, prepared.run.task.high) == (min(pitches), max(pitches))
    assert prepared.run.model.pitches == max(pitches) - min(pitches) + 1
    assert prepared.run.task.frames_per_quarter == 4
    (train,) = prepared.data.rolls["train"]
    assert train.shape == (97, prepared.run.model.pitches)
    assert train[0].sum() == 0  # the start frame
    assert from_roll(train[1:], min(pitches)) == frames[:96]
    assert TASK.examples(prepared, "valid").lengths == [25]


def test_baseline_by_hand() -> None:
    # Two frames over two pitches: pitch 0 in both, pitch 1 in one; add-1 smoothing.
    train = to_roll([[10], [10, 11]], 10, 11)
    p = key_frequencies(train[1:], smoothing=1.0)
    torch.testing.assert_close(p, torch.tensor([3 / 4, 2 / 4]))
    test = to_roll([[10]], 10, 11)
    assert baseline_nll(test[1:], p) == pytest.approx(-(math.log(0.75) + math.log(0.5)))


def test_a_model_that_predicts_the_frequencies_scores_as_the_baseline() -> None:
    p = torch.tensor([0.75, 0.25, 0.6], dtype=torch.float64)
    model = PianoRollModel(MusicConfig(pitches=3, embed=4, hidden=4))
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.copy_(torch.logit(p).float())
    rolls = [to_roll([[0, 2], [1], []], 0, 2), to_roll([[0]], 0, 2)]
    batches = TASK.batches(Examples(rolls, lengths=[4, 2]), 2)
    scores = music.score(model, batches, p, threshold=0.5)
    assert scores["frames"] == 4 and scores["pieces"] == 2
    assert scores["nll_per_frame"] == pytest.approx(scores["baseline_nll_per_frame"], rel=1e-6)
    # Thresholded at 0.5, both predict pitches 0 and 2 in every frame: TP 2 (frames 1
    # and 4: pitch 0; frame 1: pitch 2 — 3 in all), FP 8 − 3 = 5, FN 1 (pitch 1, frame 2).
    assert scores["frame_accuracy"] == pytest.approx(3 / (3 + 5 + 1))
    assert scores["baseline_frame_accuracy"] == scores["frame_accuracy"]


def test_one_folder_is_split_by_piece(tmp_path: Path) -> None:
    frames = read_roll_text(CHORALE)
    for i in range(10):
        (tmp_path / f"piece{i}.txt").write_text(roll_text(frames[i * 12 : i * 12 + 24]))
    pieces = music.read_task(MusicTask(data=(str(tmp_path),)))
    assert [len(pieces.rolls[name]) for name in ("train", "valid", "test")] == [8, 1, 1]
    again = music.read_task(MusicTask(data=(str(tmp_path),)))
    for name, rolls in pieces.rolls.items():  # a fixed seed
        assert all(torch.equal(a, b) for a, b in zip(rolls, again.rolls[name], strict=True))
    with pytest.raises(DataError, match="too few to split"):
        music.read_task(MusicTask(data=(str(CHORALE),)))


def test_pitches_outside_the_range_are_an_error(parts: tuple[str, str, str]) -> None:
    with pytest.raises(
        DataError, match=r"train.txt: frame 23: pitch 49 is outside the range 50\.\.76"
    ):
        TASK.prepare(small_run(parts, low=50))


@pytest.fixture(scope="module")
def trained(parts: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("music") / "run"
    TASK.train(small_run(parts), out)
    return out


def test_evaluate_and_predict_agree(trained: Path, parts: tuple[str, str, str]) -> None:
    loaded = TASK.load(trained)
    result = TASK.evaluate(loaded, "test", None)
    assert result.metrics["frames"] == 24 and result.metrics["pieces"] == 1
    assert 0 <= result.metrics["frame_accuracy"] <= 1
    by_file = TASK.evaluate(loaded, "test", parts[2])
    assert by_file.metrics == result.metrics and by_file.split == parts[2]
    (answer,) = TASK.predict(loaded, PredictOptions(inputs=(parts[2],)))
    assert answer.record["nll_per_frame"] == pytest.approx(result.metrics["nll_per_frame"])
    assert answer.record["baseline_nll_per_frame"] == result.metrics["baseline_nll_per_frame"]


def test_generate_is_seeded_and_writes_midi_and_png(trained: Path, tmp_path: Path) -> None:
    first = generate(trained, GenerateOptions(length=16, seed=5, temperature=0.9))
    assert first == generate(trained, GenerateOptions(length=16, seed=5, temperature=0.9))
    assert len(first[0].splitlines()) == 16
    out = tmp_path / "piece.mid"
    (line,) = generate(trained, GenerateOptions(length=16, seed=5, temperature=0.9,
                                                      out=str(out)))  # fmt: skip
    assert line.startswith(f"wrote {out} (16 frames")
    text = tmp_path / "piece.txt"
    text.write_text(first[0] + "\n")
    expected = read_roll_text(text)
    last = max((t for t, frame in enumerate(expected) if frame), default=-1)
    if last >= 0:
        assert read_midi(out) == expected[: last + 1]
    primed = generate(trained, GenerateOptions(start=str(CHORALE), length=8, seed=5))
    assert len(primed[0].splitlines()) == 8  # the generated frames only, after the piece
    png = tmp_path / "piece.png"
    generate(trained, GenerateOptions(length=16, out=str(png)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_draws_a_generated_piece(trained: Path) -> None:
    (section,) = TASK.report(TASK.load(trained))
    assert section.title == "Generated piece" and section.missing is None
    assert section.images[0].uri.startswith("data:image/png;base64,")
    assert list(trained.parent.iterdir()) == [trained]  # the picture went to a temporary folder


def test_generate_errors(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"^a music run samples every pitch independently"):
        generate(trained, GenerateOptions(beam=2))
    with pytest.raises(DataError, match=r"expected a \.mid or \.png"):
        generate(trained, GenerateOptions(out="piece.wav"))
    with pytest.raises(DataError, match="--top-k"):
        generate(trained, GenerateOptions(top_k=3))
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(DataError, match=r"needs matplotlib \(pip install 'rnnkit\[plot\]'\)"):
        generate(trained, GenerateOptions(length=4, out="piece.png"))
