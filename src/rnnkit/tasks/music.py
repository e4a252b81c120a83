"""The music task: piano rolls → a recurrent model of the next frame → NLL per frame.

Polyphonic music as in Boulanger-Lewandowski et al. 2012 and Chung et al. 2014: each
frame is a 0/1 vector over the pitches ``low … high``, and
:class:`~rnnkit.models.music.PianoRollModel` gives every pitch of the next frame an
independent Bernoulli probability given all the frames before. The recipe:

1. read the pieces: a bundled dataset (bach-chorales: 16th-note grid, MIDI 36–88,
   its own train/valid/test), or the user's files in the piano-roll text format or
   MIDI (:mod:`rnnkit.data.formats.midi`): one path (a file or a folder of them)
   split by piece 80/10/10 with a fixed seed, or three paths for train, valid, test;
2. prepend a silent "start" frame to every piece, so the model predicts every real
   frame, the first one included, and generation can start from silence;
3. train on whole pieces (padded batches), the loss the Bernoulli NLL summed over
   pitches, per frame;
4. report the NLL per frame (nats) and the frame accuracy (predictions thresholded
   at ``threshold``), always beside the per-key Bernoulli baseline: one independent
   Bernoulli per pitch, its frequency counted on the training frames with add-
   ``smoothing`` (Laplace) smoothing, scored on the same frames.

``generate`` samples a piece and writes it as a Standard MIDI File or a PNG piano
roll; ``predict`` scores the user's piano-roll files. The checkpoint's artifact
``baseline.json`` holds the baseline's per-pitch frequencies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from rnnkit.configuration import check_positive_ints
from rnnkit.data.errors import DataError
from rnnkit.data.formats.midi import MIDI_SUFFIXES, read_roll, roll_text, write_midi
from rnnkit.decoding import GREEDY_TEMPERATURE
from rnnkit.losses import bernoulli_nll
from rnnkit.metrics import frame_accuracy, nll_per_frame
from rnnkit.models import build_model
from rnnkit.models.music import MusicConfig, PianoRollModel, RollBatch
from rnnkit.tasks.task import (
    Evaluation,
    GenerateOptions,
    Prediction,
    PredictOptions,
    Prepared,
    artifact,
    load_into,
    load_weights,
    read_config,
)
from rnnkit.training.budget import available_memory
from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig, TrainResult

BASELINE_ARTIFACT = "baseline.json"
SPLITS = ("train", "valid", "test")
ROLL_SUFFIXES = (".txt", ".roll", *MIDI_SUFFIXES)


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
        if not 0 < self.smoothing < float("inf"):  # inf: the baseline is inf/inf = NaN
            raise ValueError(f"smoothing: expected a finite number > 0, got {self.smoothing}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold: expected a number in (0, 1), got {self.threshold}")
        if len(self.data) not in (0, 1, 3):
            raise ValueError(f"data: expected one file or folder, or three (train, valid, "
                             f"test), got {len(self.data)}")  # fmt: skip


def _trainer() -> TrainerConfig:
    # Whole pieces, 8 a batch: bach-chorales' 292 training pieces make 37 steps an epoch.
    return TrainerConfig(epochs=30, batch_size=8, clip_norm=5.0,
                         optimizer=OptimizerConfig(lr=5e-3))  # fmt: skip


@dataclass(frozen=True)
class MusicRun:
    """The resolved configuration of a music run (``config.toml``).

    ``model.pitches`` and the task's ``low``, ``high`` and ``frames_per_quarter`` are
    filled in by :func:`prepare`.
    """

    kind: Literal["music"] = "music"
    task: MusicTask = field(default_factory=MusicTask)
    model: MusicConfig = field(default_factory=MusicConfig)
    trainer: TrainerConfig = field(default_factory=_trainer)


Run = MusicRun

Piece = list[list[int]]  # frames of MIDI pitches


@dataclass(frozen=True)
class Pieces:
    """The task's pieces by split, on the pitch range ``low … high``."""

    splits: dict[str, list[Piece]]
    low: int
    high: int
    frames_per_quarter: int


# --------------------------------------------------------------------------- data


def roll_files(path: Path | str) -> list[Path]:
    """A piano-roll file, or the piano-roll files of a folder (sorted)."""
    folder = Path(path)
    if not folder.is_dir():
        return [folder]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in ROLL_SUFFIXES)
    if not files:
        raise DataError(f"no piano-roll files (expected {', '.join(ROLL_SUFFIXES)})", path=folder)
    return files


def read_pieces(paths: list[Path | str], frames_per_quarter: int) -> list[tuple[Path, Piece]]:
    return [(file, read_roll(file, frames_per_quarter=frames_per_quarter))
            for path in paths for file in roll_files(path)]  # fmt: skip


def _split_by_piece(pieces: list[tuple[Path, Piece]], where: str) -> dict[str, list[Any]]:
    n = len(pieces)
    if n < 3:
        raise DataError(f"{n} piece(s): too few to split into train, valid and test "
                        "(give three paths, or at least 3 pieces)", path=where)  # fmt: skip
    held = max(1, round(0.1 * n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    cut = {"valid": order[:held], "test": order[held : 2 * held], "train": order[2 * held :]}
    return {name: [pieces[i] for i in sorted(cut[name])] for name in SPLITS}


def read_task(task: MusicTask) -> Pieces:
    """The task's pieces by split, checked against the pitch range."""
    if not task.data:
        from rnnkit.data.forms import PianoRolls
        from rnnkit.data.registry import fetch

        dataset = fetch(task.dataset)
        if not isinstance(dataset, PianoRolls):
            raise DataError(f"dataset: {task.dataset!r} is not a set of piano rolls (it is a "
                            f"{type(dataset).__name__})")  # fmt: skip
        named = {name: [(Path(task.dataset), piece) for piece in dataset.splits.get(name, [])]
                 for name in SPLITS}  # fmt: skip
        low = dataset.low if task.low is None else task.low
        high = dataset.high if task.high is None else task.high
        grid = task.frames_per_quarter or dataset.frames_per_quarter
    else:
        grid = task.frames_per_quarter or 4
        if len(task.data) == 3:
            pairs = zip(SPLITS, task.data, strict=True)
            named = {name: read_pieces([path], grid) for name, path in pairs}
        else:
            named = _split_by_piece(read_pieces([task.data[0]], grid), task.data[0])
        pitches = [p for part in named.values() for _, piece in part for f in piece for p in f]
        if not pitches:
            raise DataError("every frame is silent (expected some notes)", path=task.data[0])
        low = min(pitches) if task.low is None else task.low
        high = max(pitches) if task.high is None else task.high
    for name in SPLITS:
        if not named[name]:
            raise DataError(f"the {name} part has no pieces")
        for path, piece in named[name]:
            check_range(piece, low, high, path)
    splits = {name: [piece for _, piece in named[name]] for name in SPLITS}
    return Pieces(splits, low, high, grid)


def check_range(piece: Piece, low: int, high: int, path: Path | str | None = None) -> None:
    for t, frame in enumerate(piece):
        for pitch in frame:
            if not low <= pitch <= high:
                raise DataError(f"frame {t + 1}: pitch {pitch} is outside the range {low}..{high} "
                                "(--low/--high set the model's pitches)", path=path)  # fmt: skip


def to_roll(piece: Piece, low: int, high: int) -> Tensor:
    """``(T + 1, P)`` 0/1 frames: a silent start frame, then the piece."""
    roll = torch.zeros(len(piece) + 1, high - low + 1)
    for t, frame in enumerate(piece, start=1):
        roll[t, [p - low for p in frame]] = 1.0
    return roll


def from_roll(roll: Tensor, low: int) -> Piece:
    """The pitches of each frame of a ``(T, P)`` 0/1 roll."""
    return [[low + int(i) for i in torch.nonzero(frame).flatten()] for frame in roll]


def collate(rolls: list[Tensor]) -> RollBatch:
    lengths = torch.tensor([roll.shape[0] for roll in rolls])
    batch = torch.zeros(len(rolls), int(lengths.max()), rolls[0].shape[1])
    for i, roll in enumerate(rolls):
        batch[i, : roll.shape[0]] = roll
    return RollBatch(batch, lengths)


# --------------------------------------------------------------------------- baseline


def key_frequencies(rolls: list[Tensor], smoothing: float) -> Tensor:
    """``(P,)`` each pitch's share of the frames (the start frames left out), add-k smoothed."""
    frames = torch.cat([roll[1:] for roll in rolls])  # (N, P)
    return (frames.sum(0) + smoothing) / (frames.shape[0] + 2 * smoothing)


def baseline_nll(rolls: list[Tensor], frequencies: Tensor) -> float:
    """Σ over frames and pitches of −log P(x) under independent Bernoullis (nats)."""
    frames = torch.cat([roll[1:] for roll in rolls]).double()  # (N, P)
    p = frequencies.double()
    return float(-(frames * p.log() + (1 - frames) * (1 - p).log()).sum())


# --------------------------------------------------------------------------- train


def prepare(run: MusicRun) -> Prepared[MusicRun]:
    """Read the pieces, fix the pitch range, fit the baseline on the training frames."""
    pieces = read_task(run.task)
    task = replace(run.task, low=pieces.low, high=pieces.high,
                   frames_per_quarter=pieces.frames_per_quarter)  # fmt: skip
    rolls = {name: [to_roll(piece, pieces.low, pieces.high) for piece in part]
             for name, part in pieces.splits.items()}  # fmt: skip
    frequencies = key_frequencies(rolls["train"], task.smoothing)
    run = replace(run, task=task, model=replace(run.model, pitches=pieces.high - pieces.low + 1))
    summary = [
        f"{name}: {len(part):,} pieces, {sum(len(p) for p in part):,} frames"
        for name, part in pieces.splits.items()
    ]
    summary.append(f"pitches: MIDI {pieces.low}..{pieces.high} ({run.model.pitches}), "
                   f"{pieces.frames_per_quarter} frames per quarter note")  # fmt: skip
    valid_baseline = baseline_nll(rolls["valid"], frequencies) / _frames(rolls["valid"])
    summary.append(f"per-key Bernoulli baseline: valid NLL {valid_baseline:.3f} nats per frame")
    return Prepared(run, summary, {"rolls": rolls, "frequencies": frequencies})


def _frames(rolls: list[Tensor]) -> int:
    return sum(roll.shape[0] - 1 for roll in rolls)


def fit(prepared: Prepared[MusicRun], out: Path | str, *, resume: bool = False) -> TrainResult:
    """Train (or resume) the prepared run into the folder ``out``."""
    run, data = prepared.run, prepared.data
    torch.manual_seed(run.trainer.seed)
    baseline = {"low": run.task.low, "frequencies": data["frequencies"].tolist()}
    trainer = Trainer(
        build_model(run.model),
        run.trainer,
        data["rolls"]["train"],
        collate,
        val=data["rolls"]["valid"],
        run_dir=out,
        resume=resume,
        artifacts={BASELINE_ARTIFACT: json.dumps(baseline).encode()},
        config_to_save=run,
    )
    return trainer.fit()


def train(run: MusicRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Prepare and train (or resume) a run into the folder ``out``."""
    return fit(prepare(run), out, resume=resume)


def load_run(run_dir: Path | str) -> tuple[PianoRollModel, Tensor, MusicRun]:
    """The trained model (best checkpoint, else last), the baseline's frequencies, the run."""
    run = read_config(run_dir, MusicRun)
    checkpoint = load_weights(run_dir)
    try:
        record = json.loads(artifact(checkpoint, BASELINE_ARTIFACT, run_dir))
        frequencies = torch.tensor(record["frequencies"], dtype=torch.float64)
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise DataError(f"{BASELINE_ARTIFACT}: damaged ({error})", path=run_dir) from None
    model = build_model(run.model)
    assert isinstance(model, PianoRollModel)
    load_into(model, checkpoint)
    model.eval()
    if frequencies.shape != (run.model.pitches,):
        raise DataError(f"{BASELINE_ARTIFACT}: expected {run.model.pitches} frequencies",
                        path=run_dir)  # fmt: skip
    return model, frequencies, run


# --------------------------------------------------------------------------- scores


@torch.no_grad()
def score(
    model: PianoRollModel, rolls: list[Tensor], frequencies: Tensor, threshold: float
) -> dict[str, float]:
    """NLL per frame and frame accuracy of the model and of the per-key baseline."""
    total, predicted, gold = 0.0, [], []
    for start in range(0, len(rolls), 16):
        batch = collate(rolls[start : start + 16])
        logits, _ = model.logits(batch.rolls[:, :-1], None, batch.lengths - 1)  # (B, T, P)
        mask = torch.arange(logits.shape[1])[None] < (batch.lengths - 1)[:, None]
        total += float(bernoulli_nll(logits, batch.rolls[:, 1:], mask).total)
        for i, length in enumerate(batch.lengths.tolist()):
            predicted.append((torch.sigmoid(logits[i, : length - 1]) > threshold).numpy())
            gold.append(batch.rolls[i, 1:length].bool().numpy())
    frames = _frames(rolls)
    keys = (frequencies > threshold).numpy()  # the baseline's prediction, every frame
    constant = [keys[None].repeat(len(g), 0) for g in gold]
    return {
        "nll_per_frame": nll_per_frame(total, frames),
        "baseline_nll_per_frame": nll_per_frame(baseline_nll(rolls, frequencies), frames),
        "frame_accuracy": frame_accuracy(predicted, gold),
        "baseline_frame_accuracy": frame_accuracy(constant, gold),
        "frames": float(frames),
        "pieces": float(len(rolls)),
    }


def _rolls_of(paths: list[str], run: MusicRun) -> list[Tensor]:
    task = run.task
    assert task.low is not None and task.high is not None
    rolls = []
    for path, piece in read_pieces(list(paths), task.frames_per_quarter or 4):
        check_range(piece, task.low, task.high, path)
        rolls.append(to_roll(piece, task.low, task.high))
    return rolls


def evaluate(run_dir: Path | str, *, split: str = "test", data: str | None = None) -> Evaluation:
    """NLL per frame (nats) and frame accuracy on a split or on the user's piano rolls
    (a file or folder), beside the per-key Bernoulli baseline on the same frames."""
    model, frequencies, run = load_run(run_dir)
    if data is not None:
        rolls, split = _rolls_of([data], run), data
    else:
        pieces = read_task(run.task)
        low, high = pieces.low, pieces.high
        rolls = [to_roll(piece, low, high) for piece in pieces.splits[split]]
    metrics = score(model, rolls, frequencies, run.task.threshold)
    gain = metrics["baseline_nll_per_frame"] - metrics["nll_per_frame"]
    details = {"below_baseline": gain > 0, "nats_per_frame_below_baseline": gain}
    return Evaluation(split, metrics, details)


def predict(run_dir: Path | str, options: PredictOptions) -> list[Prediction]:
    """NLL per frame of each piano-roll file (text or MIDI) given, beside the baseline."""
    model, frequencies, run = load_run(run_dir)
    paths = [*options.inputs, *([options.file] if options.file else [])]
    if not paths:
        raise DataError("predict: give piano-roll files (text or .mid) as arguments or --file")
    results = []
    for path in paths:
        metrics = score(model, _rolls_of([path], run), frequencies, run.task.threshold)
        text = (f"{path}: NLL {metrics['nll_per_frame']:.4f} nats/frame (baseline "
                f"{metrics['baseline_nll_per_frame']:.4f}), frame accuracy "
                f"{metrics['frame_accuracy']:.4f}, {int(metrics['frames'])} frames")  # fmt: skip
        results.append(Prediction(text, {"input": path, **metrics}))
    return results


# --------------------------------------------------------------------------- generate


@torch.no_grad()
def generate(run_dir: Path | str, options: GenerateOptions) -> list[str]:
    """Sample ``num_samples`` pieces of ``length`` frames (seeded) after a silent frame,
    or after the piano-roll file ``start``; write each to ``out`` (``.mid`` or ``.png``,
    numbered when several) or return it in the text format."""
    return ["".join(pieces) for pieces in stream(run_dir, options)]


def stream(run_dir: Path | str, options: GenerateOptions) -> Iterator[Iterator[str]]:
    """The pieces of :func:`generate`, one after another (one seeded generator for
    all): in the text format each frame's line is yielded as it is sampled; with
    ``out`` each file is written whole (temporary file, then renamed, so none is
    left half-written) into its folder, created when missing, and reported."""
    model, _, run = load_run(run_dir)
    task = run.task
    assert task.low is not None and task.high is not None
    low, high = task.low, task.high
    if options.beam > 1 or options.top_k is not None or options.top_p is not None:
        raise DataError("generate: a music run samples every pitch independently; "
                        "--beam, --top-k and --top-p do not apply (use --temperature)")  # fmt: skip
    if options.out is not None:
        suffix = Path(options.out).suffix.lower()
        if suffix not in (*MIDI_SUFFIXES, ".png"):
            raise DataError(f"--out: expected a .mid or .png file, got {options.out!r}")
        # A file is written whole: its frames are held, about 100 bytes each as lists.
        need, have = 100 * options.length, available_memory()
        if need > have:
            raise DataError(f"--length: {options.length} frames for --out need about "
                            f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB "
                            "available; print them instead (no --out)")  # fmt: skip
    # Continue the piano-roll file --start, or the silent start frame alone.
    silence = to_roll([], low, high)
    prime = _rolls_of([options.start], run)[0] if options.start else silence
    generator = torch.Generator().manual_seed(options.seed)
    # σ(logit / T) for T below this is the step (logit > 0) in float32, and 0 / T stays
    # 0 (a coin flip, as at every T) where T = 1e-300 would be 0 in float32: 0 / 0.
    temperature = max(options.temperature, GREEDY_TEMPERATURE)

    def frames() -> Iterator[list[int]]:
        # PianoRollModel.generate, one frame at a time with the state carried.
        model.eval()
        with torch.no_grad():
            logits, state = model.logits(prime[None].to(model.inputs.weight.dtype))
            last = logits[:, -1]  # (1, P)
            for _ in range(options.length):
                p = torch.sigmoid(last / temperature)  # (1, P)
                frame = torch.bernoulli(p, generator=generator)
                yield from_roll(frame, low)[0]
                last, state = model.decode_step(frame, state)

    def text() -> Iterator[str]:
        for t, frame in enumerate(frames()):
            yield ("\n" if t else "") + roll_text([frame]).rstrip("\n")

    def written(index: int) -> Iterator[str]:
        path = Path(options.out or "")
        if options.num_samples > 1:
            path = path.with_name(f"{path.stem}-{index}{path.suffix}")
        piece = list(frames())
        _write_atomically(path, lambda partial: (
            write_png(piece, partial, low, high) if path.suffix.lower() == ".png"
            else write_midi(piece, partial, frames_per_quarter=task.frames_per_quarter or 4)
        ))  # fmt: skip
        notes = sum(len(frame) for frame in piece)
        yield f"wrote {path} ({len(piece)} frames, {notes} note-frames)"

    if options.out is None:
        return (text() for _ in range(options.num_samples))
    return (written(index) for index in range(1, options.num_samples + 1))


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a temporary file beside ``path``, then rename it to ``path``; on any
    error or interrupt the temporary file goes and ``path`` is untouched."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"--out: cannot create the folder {path.parent}: "
                        f"{error.strerror or error}") from None  # fmt: skip
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # the suffix picks the format
    try:
        write(partial)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise DataError(f"--out: cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_png(piece: Piece, path: Path, low: int, high: int) -> None:
    """A piano-roll image: time across, pitch up (needs matplotlib, the ``plot`` extra)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise DataError("--out: a .png needs matplotlib (pip install 'rnnkit[plot]'), or "
                        "write a .mid") from None  # fmt: skip
    roll = to_roll(piece, low, high)[1:].T.numpy()  # (P, T)
    figure = Figure(figsize=(max(4.0, min(20.0, len(piece) / 16)), 4), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(roll, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                extent=(0, len(piece), low - 0.5, high + 0.5))  # fmt: skip
    axes.set_xlabel("frame")
    axes.set_ylabel("MIDI pitch")
    figure.tight_layout()
    figure.savefig(path)
