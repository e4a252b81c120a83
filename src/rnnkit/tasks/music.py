"""The music task: piano rolls → a recurrent model of the next frame → NLL per frame.

Polyphonic music as in Boulanger-Lewandowski et al. 2012 and Chung et al. 2014: each
frame is a 0/1 vector over the pitches ``low … high``, and
:class:`~rnnkit.models.music.PianoRollModel` gives every pitch of the next frame an
independent Bernoulli probability given all the frames before. The recipe:

1. read the pieces: a bundled dataset (bach-chorales: 16th-note grid, MIDI 36–88,
   its own train/valid/test), or the user's files in the piano-roll text format or
   MIDI (:mod:`rnnkit.data.formats.midi`): one path (a file or a folder of them)
   split by piece 80/10/10 (:func:`~rnnkit.data.splits.split_files`, seed 0), or
   three paths for train, valid, test;
2. prepend a silent "start" frame to every piece, so the model predicts every real
   frame, the first one included, and generation can start from silence;
3. hand the Trainer one example per piece, with its length: it batches pieces of
   similar length, padded; the loss is the Bernoulli NLL summed over pitches, per
   frame;
4. report the NLL per frame (nats) and the frame accuracy (predictions thresholded
   at ``threshold``), always beside the per-key Bernoulli baseline: one independent
   Bernoulli per pitch, its frequency counted on the training frames with add-
   ``smoothing`` (Laplace) smoothing, scored on the same frames.

``generate`` samples a piece and writes it as a Standard MIDI File or a PNG piano
roll (whole or not at all); ``predict`` scores the user's piano-roll files. The
checkpoint's file ``baseline.json`` holds the baseline's per-pitch frequencies.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from rnnkit.configuration import check_positive_ints, check_range
from rnnkit.data.errors import DataError
from rnnkit.data.formats.midi import (
    PIECE_SUFFIXES,
    check_pitches,
    read_pieces,
    roll_text,
    write_piece,
)
from rnnkit.data.forms import PianoRolls
from rnnkit.data.registry import fetch_as
from rnnkit.data.splits import SPLITS, check_data_paths, check_parts, split_files
from rnnkit.decoding import GREEDY_TEMPERATURE
from rnnkit.losses import bernoulli_nll
from rnnkit.metrics import frame_accuracy, nll_per_frame
from rnnkit.models.music import (
    MusicConfig,
    PianoRollModel,
    RollBatch,
    baseline_nll,
    from_roll,
    key_frequencies,
    to_roll,
)
from rnnkit.report.page import Section, image
from rnnkit.tasks.options import GenerateOptions, PredictOptions
from rnnkit.tasks.task import Evaluation, Loaded, Prediction, Prepared, Task
from rnnkit.training.budget import available_memory
from rnnkit.training.runs import asset_bytes
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig

BASELINE_FILE = "baseline.json"


@dataclass(frozen=True)
class MusicTask:
    """What to read and how to score it.

    Attributes:
        dataset: a bundled ``PianoRolls`` dataset, used when ``data`` is not given.
        data: the user's piano rolls (text format or MIDI): one file or folder, split
            by piece 80/10/10 (seed 0), or three paths (train, valid, test).
        low, high: the pitch range, inclusive (one model unit each); None: the
            dataset's, or the lowest and highest pitch of the user's files.
        frames_per_quarter: the time grid; None: the dataset's, 4 (16ths) for files.
        smoothing: add-k smoothing of the baseline's per-pitch frequencies.
        threshold: a pitch counts as predicted when its probability is above this
            (frame accuracy).
    """

    dataset: str = "bach-chorales"
    data: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    frames_per_quarter: int | None = None
    smoothing: float = 1.0
    threshold: float = 0.5

    def __post_init__(self) -> None:
        check_positive_ints(self, "frames_per_quarter")
        for name in ("low", "high"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and 0 <= value <= 127):
                raise ValueError(f"{name}: expected a MIDI pitch 0-127, got {value!r}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low, high: expected low ≤ high, got {self.low} > {self.high}")
        check_range(self, "smoothing", 0, open_low=True)  # inf: the baseline is inf/inf = NaN
        check_range(self, "threshold", 0, 1, open_low=True, open_high=True)
        check_data_paths(self.data)


@dataclass(frozen=True)
class MusicRun:
    """The resolved configuration of a music run (``config.toml``)."""

    kind: Literal["music"] = "music"
    # low, high, frames_per_quarter and model.pitches: filled in by Music.prepare
    task: MusicTask = field(default_factory=MusicTask)
    model: MusicConfig = field(default_factory=MusicConfig)
    # Whole pieces, 8 a batch: bach-chorales' 292 training pieces make 37 steps an epoch.
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=30, batch_size=8, clip_norm=5.0, optimizer=OptimizerConfig(lr=5e-3)))  # fmt: skip


@dataclass(frozen=True)
class Pieces:
    """The task's pieces by split as rolls (:func:`~rnnkit.models.music.to_roll`: a
    silent frame first) on the pitch range ``low … high``."""

    rolls: dict[str, list[Tensor]]
    low: int
    high: int
    frames_per_quarter: int


@dataclass(frozen=True)
class Baseline:
    """What a trained run keeps: the per-key baseline's ``(P,)`` pitch frequencies."""

    low: int
    frequencies: Tensor


# --------------------------------------------------------------------------- data


def read_task(task: MusicTask) -> Pieces:
    """The task's pieces by split, checked against the pitch range."""
    if not task.data:
        dataset = fetch_as(task.dataset, PianoRolls, "a set of piano rolls")
        named = {name: [(Path(task.dataset), piece) for piece in dataset.splits.get(name, [])]
                 for name in SPLITS}  # fmt: skip
        low = dataset.low if task.low is None else task.low
        high = dataset.high if task.high is None else task.high
        grid = task.frames_per_quarter or dataset.frames_per_quarter
    else:
        grid = task.frames_per_quarter or 4
        named = split_files(task.data, lambda path: read_pieces([path], frames_per_quarter=grid),
                            seed=0, least=10, what="pieces")  # fmt: skip
        pitches = [p for part in named.values() for _, piece in part for f in piece for p in f]
        if not pitches:
            raise DataError("every frame is silent (expected some notes)", path=task.data[0])
        low = min(pitches) if task.low is None else task.low
        high = max(pitches) if task.high is None else task.high
    check_parts(named, "pieces")
    for path, piece in (pair for part in named.values() for pair in part):
        check_pitches(piece, low, high, path)
    rolls = {name: [to_roll(piece, low, high) for _, piece in named[name]] for name in SPLITS}
    return Pieces(rolls, low, high, grid)


def _rolls_of(path: str, run: MusicRun) -> list[Tensor]:
    """The rolls of the user's piano-roll file or folder, on the run's pitch range."""
    task = run.task
    assert task.low is not None and task.high is not None
    rolls = []
    for file, piece in read_pieces([path], frames_per_quarter=task.frames_per_quarter or 4):
        check_pitches(piece, task.low, task.high, file)
        rolls.append(to_roll(piece, task.low, task.high))
    return rolls


def _examples(rolls: list[Tensor]) -> Examples[Tensor]:
    return Examples(rolls, lengths=[roll.shape[0] for roll in rolls])


# --------------------------------------------------------------------------- scores


def _frames(rolls: list[Tensor]) -> Tensor:
    """The real frames of the rolls, their start frames left out: ``(N, P)``."""
    return torch.cat([roll[1:] for roll in rolls])


@torch.no_grad()
def score(model: PianoRollModel, batches: Iterable[RollBatch], frequencies: Tensor,
          threshold: float) -> dict[str, float]:  # fmt: skip
    """NLL per frame and frame accuracy of the model and of the per-key baseline."""
    total, predicted, gold = 0.0, [], []
    for batch in batches:
        logits, targets, mask = model.next_frames(batch)  # (B, T−1, P) twice, (B, T−1)
        total += float(bernoulli_nll(logits, targets, mask).total)
        for i, length in enumerate((batch.lengths - 1).tolist()):
            predicted.append((torch.sigmoid(logits[i, :length]) > threshold).cpu().numpy())
            gold.append(targets[i, :length].bool().cpu().numpy())
    frames = torch.from_numpy(np.concatenate(gold))  # (N, P)
    keys = (frequencies > threshold).numpy()  # the baseline's prediction, every frame
    constant = [np.repeat(keys[None], len(g), axis=0) for g in gold]
    return {
        "nll_per_frame": nll_per_frame(total, len(frames)),
        "baseline_nll_per_frame": nll_per_frame(baseline_nll(frames, frequencies), len(frames)),
        "frame_accuracy": frame_accuracy(predicted, gold),
        "baseline_frame_accuracy": frame_accuracy(constant, gold),
        "frames": float(len(frames)),
        "pieces": float(len(gold)),
    }


# --------------------------------------------------------------------------- the task

Trained = Loaded[MusicRun, Baseline, PianoRollModel]


class Music(Task[MusicRun, Pieces, Baseline, Tensor, RollBatch, PianoRollModel]):
    """``rnnkit train music``: piano rolls → a next-frame model that generates pieces."""

    name = "music"
    generative = True

    def prepare(self, run: MusicRun) -> Prepared[MusicRun, Baseline, Pieces]:
        """Read the pieces, fix the pitch range, fit the baseline on the training frames."""
        pieces = read_task(run.task)
        low, high = pieces.low, pieces.high
        task = replace(run.task, low=low, high=high, frames_per_quarter=pieces.frames_per_quarter)
        run = replace(run, task=task, model=replace(run.model, pitches=high - low + 1))
        summary = [f"{name}: {len(part):,} pieces, {len(_frames(part)):,} frames"
                   for name, part in pieces.rolls.items()]  # fmt: skip
        summary.append(f"pitches: MIDI {low}..{high} ({run.model.pitches}), "
                       f"{pieces.frames_per_quarter} frames per quarter note")  # fmt: skip
        baseline = Baseline(low, key_frequencies(_frames(pieces.rolls["train"]), task.smoothing))
        valid = _frames(pieces.rolls["valid"])
        nll = baseline_nll(valid, baseline.frequencies) / len(valid)
        summary.append(f"per-key Bernoulli baseline: valid NLL {nll:.3f} nats per frame")
        return Prepared(run, summary, baseline, pieces)

    def examples(self, prepared: Prepared[MusicRun, Baseline, Pieces],
                 split: str) -> Examples[Tensor]:  # fmt: skip
        return _examples(prepared.data.rolls[split])

    def collate(self, examples: list[Tensor]) -> RollBatch:
        lengths = torch.tensor([roll.shape[0] for roll in examples])
        return RollBatch(pad_sequence(examples, batch_first=True), lengths)  # (B, T, P)

    def save_assets(self, assets: Baseline) -> dict[str, bytes]:
        record = {"low": assets.low, "frequencies": assets.frequencies.tolist()}
        return {BASELINE_FILE: json.dumps(record).encode()}

    def load_assets(self, run: MusicRun, files: Mapping[str, bytes], where: Path) -> Baseline:
        try:
            record = json.loads(asset_bytes(files, BASELINE_FILE, where))
            frequencies = torch.tensor(record["frequencies"], dtype=torch.float64)
            low = int(record["low"])
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise DataError(f"damaged ({error})", path=where / BASELINE_FILE) from None
        if frequencies.shape != (run.model.pitches,):
            raise DataError(f"expected {run.model.pitches} frequencies",
                            path=where / BASELINE_FILE)  # fmt: skip
        return Baseline(low, frequencies)

    def _score(self, loaded: Trained, rolls: list[Tensor]) -> dict[str, float]:
        batches = self.batches(_examples(rolls), loaded.run.trainer.batch_size)
        return score(loaded.model, batches, loaded.assets.frequencies, loaded.run.task.threshold)

    def evaluate(self, loaded: Trained, split: str, data: str | None) -> Evaluation:
        """NLL per frame (nats) and frame accuracy on a split or on the user's piano rolls
        (a file or folder), beside the per-key Bernoulli baseline on the same frames."""
        rolls = _rolls_of(data, loaded.run) if data else read_task(loaded.run.task).rolls[split]
        metrics = self._score(loaded, rolls)
        gain = metrics["baseline_nll_per_frame"] - metrics["nll_per_frame"]
        details = {"below_baseline": gain > 0, "nats_per_frame_below_baseline": gain}
        return Evaluation(data or split, metrics, details)

    def predict(self, loaded: Trained, options: PredictOptions) -> list[Prediction]:
        """NLL per frame of each piano-roll file (text or MIDI) given, beside the baseline."""
        paths = [*options.inputs, *([options.file] if options.file else [])]
        if not paths:
            raise DataError("give piano-roll files (text or .mid) as arguments or --file")
        results = []
        for path in paths:
            metrics = self._score(loaded, _rolls_of(path, loaded.run))
            text = (f"{path}: NLL {metrics['nll_per_frame']:.4f} nats/frame (baseline "
                    f"{metrics['baseline_nll_per_frame']:.4f}), frame accuracy "
                    f"{metrics['frame_accuracy']:.4f}, {int(metrics['frames'])} frames")  # fmt: skip
            results.append(Prediction(text, {"input": path, **metrics}))
        return results

    def stream(self, loaded: Trained, options: GenerateOptions) -> Iterator[Iterator[str]]:
        """``num_samples`` pieces of ``length`` frames, one after another (one seeded
        generator for all), after a silent frame or the piano-roll file ``start``: in
        the text format each frame's line is yielded as it is sampled; with ``out``
        (``.mid`` or ``.png``, numbered when several) each piece is written whole
        (:func:`~rnnkit.data.formats.midi.write_piece`) and reported."""
        task, model = loaded.run.task, loaded.model
        assert task.low is not None and task.high is not None
        low, high = task.low, task.high
        if options.beam > 1 or options.top_k is not None or options.top_p is not None:
            raise DataError("a music run samples every pitch independently; --beam, --top-k "
                            "and --top-p do not apply (use --temperature)")  # fmt: skip
        if options.out is not None:
            if Path(options.out).suffix.lower() not in PIECE_SUFFIXES:
                raise DataError(f"--out: expected a .mid or .png file, got {options.out!r}")
            # A file is written whole: its frames are held, about 100 bytes each as lists.
            need, have = 100 * options.length, available_memory()
            if need > have:
                raise DataError(f"--length: {options.length} frames for --out need about "
                                f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB "
                                "available; print them instead (no --out)")  # fmt: skip
        # Continue the piano-roll file --start, or the silent start frame alone.
        prime = _rolls_of(options.start, loaded.run)[0] if options.start else to_roll([], low, high)
        generator = torch.Generator().manual_seed(options.seed)
        # σ(logit / T) for T below this is the step (logit > 0) in float32, and 0 / T stays
        # 0 (a coin flip, as at every T) where T = 1e-300 would be 0 in float32: 0 / 0.
        temperature = max(options.temperature, GREEDY_TEMPERATURE)

        def frames() -> Iterator[list[int]]:
            sampled = model.sample(prime[None], temperature=temperature, generator=generator)
            for _, frame in zip(range(options.length), sampled, strict=False):
                yield from_roll(frame, low)[0]  # (1, P) → its pitches

        def text() -> Iterator[str]:
            for t, frame in enumerate(frames()):
                yield ("\n" if t else "") + roll_text([frame]).rstrip("\n")

        def written(index: int) -> Iterator[str]:
            path = Path(options.out or "")
            if options.num_samples > 1:
                path = path.with_name(f"{path.stem}-{index}{path.suffix}")
            piece = list(frames())
            write_piece(piece, path, low=low, high=high,
                        frames_per_quarter=task.frames_per_quarter or 4)  # fmt: skip
            yield f"wrote {path} ({len(piece)} frames, {sum(map(len, piece))} note-frames)"

        if options.out is None:
            return (text() for _ in range(options.num_samples))
        return (written(index) for index in range(1, options.num_samples + 1))

    def report(self, loaded: Trained) -> list[Section]:
        """A piece of 64 frames sampled after a silent frame (seed 1), as a piano roll."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "piece.png"
            for lines in self.stream(loaded, GenerateOptions(length=64, seed=1, out=str(path))):
                list(lines)
            png = path.read_bytes()
        return [Section("Generated piece", text=["64 frames sampled after a silent frame (seed 1)."],
                        images=[image(png, "piano roll of a generated piece")])]  # fmt: skip


TASK = Music()
