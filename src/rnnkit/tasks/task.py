"""What every task provides, and the run folder the tasks share.

A task turns data into a trained model and answers questions with it. Each task
module (``rnnkit.tasks.<module>``, listed in :data:`rnnkit.tasks.MODULES`) defines:

``Run``
    the frozen dataclass of the whole run, saved as ``RUN/config.toml``. Its fields
    are ``kind`` (a ``Literal`` of the task's name, so a run folder says which task
    made it), ``task`` (what data, how to cut it), ``model`` (the model family's
    configuration) and ``trainer`` (:class:`~rnnkit.training.trainer.TrainerConfig`).
``prepare(run) -> Prepared``
    read and check the data, build vocabularies on the training part only, fill in
    the data-dependent model fields (vocabulary sizes, classes, features). Nothing is
    trained and nothing is written: ``rnnkit train --dry-run`` stops here.
``fit(prepared, out, *, resume=False) -> TrainResult``
    train (or resume) into the run folder ``out``.
``evaluate(run_dir, *, split="test", data=None) -> Evaluation``
    the task's metrics on a split of the run's data, or on the user's file ``data``.
``predict(run_dir, options) -> list[Prediction]``
    answers for new inputs (:class:`PredictOptions`).
``generate(run_dir, options) -> list[str]`` (generative tasks only)
    samples (:class:`GenerateOptions`); a task that writes a file returns its path.
``stream(run_dir, options) -> Iterator[Iterator[str]]`` (generative tasks only)
    the same samples, each an iterator of text pieces yielded as they are generated.

The helpers here read a run folder back: its configuration (:func:`read_config`),
which task made it (:func:`run_kind`) and its best weights (:func:`load_weights`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from rnnkit.configuration import ConfigError, from_mapping
from rnnkit.data.errors import DataError
from rnnkit.training.budget import available_memory
from rnnkit.training.checkpoint import Checkpoint, check_fits, has_checkpoint, load_checkpoint

R = TypeVar("R")


@dataclass(frozen=True)
class Prepared(Generic[R]):
    """A run resolved against its data, ready to train.

    Attributes:
        run: the configuration with every data-dependent field filled in; this is
            what ``config.toml`` holds and what the CLI prints.
        summary: short lines about the data (sizes, vocabulary, classes) for the user.
        data: the task's own prepared data (splits as tensors, vocabularies, …).
    """

    run: R
    summary: list[str]
    data: Any


@dataclass(frozen=True)
class Evaluation:
    """A task's metrics on one split.

    Attributes:
        split: ``train``, ``valid``, ``test``, or the path of the user's file.
        metrics: scalar metrics, printed as a table (``accuracy``, ``span_f1``, …).
        details: JSON-able extras: a confusion matrix (``{"labels": [...],
            "matrix": [[...]]}``), per-type scores, baselines, ….
    """

    split: str
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    """One answer: a line for people and a record for programs (JSON lines)."""

    text: str
    record: dict[str, Any]


@dataclass(frozen=True)
class PredictOptions:
    """What ``rnnkit predict`` asks a run.

    Attributes:
        inputs: inputs given on the command line (texts, sentences, source strings).
        file: a file of inputs in the task's format (one per line for text tasks).
        beam: beam width for sequence outputs (1: greedy).
        top: how many alternatives to show (classes, next tokens).
    """

    inputs: tuple[str, ...] = ()
    file: str | None = None
    beam: int = 1
    top: int = 3


@dataclass(frozen=True)
class GenerateOptions:
    """What ``rnnkit generate`` asks a generative run (char-rnn / nanoGPT conventions).

    Attributes:
        start: the prompt.
        length: tokens (or frames) to generate.
        temperature, top_k, top_p: sampling (:func:`rnnkit.decoding.sample`).
        beam: beam search instead of sampling when > 1.
        seed: the sampling seed; the same seed gives the same samples.
        num_samples: how many samples.
        condition: caption runs: the label or vector to generate from.
        out: music runs: the MIDI (``.mid``) or image (``.png``) file to write.
    """

    start: str = ""
    length: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    beam: int = 1
    seed: int = 0
    num_samples: int = 1
    condition: str | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        # Refused here, before a run is loaded: every generation streams with flat
        # memory, so the bounds are what a counter, a wait or beam search can hold.
        if not (isinstance(self.length, int) and 1 <= self.length <= MAX_LENGTH):
            raise DataError(f"--length: expected an integer in 1 … {MAX_LENGTH:.0e}, got "
                            f"{self.length}")  # fmt: skip
        if not (isinstance(self.num_samples, int) and 1 <= self.num_samples <= MAX_SAMPLES):
            raise DataError(f"--num-samples: expected an integer in 1 … {MAX_SAMPLES:,}, got "
                            f"{self.num_samples}")  # fmt: skip
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise DataError(f"--temperature: expected a finite number > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise DataError(f"--top-k: expected an integer ≥ 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:  # NaN fails too
            raise DataError(f"--top-p: expected a number in (0, 1], got {self.top_p}")
        if self.beam < 1:
            raise DataError(f"--beam: expected an integer ≥ 1, got {self.beam}")
        # Beam search holds about eight (beam, length) int64 tensors at once.
        need, have = 64 * self.beam * self.length, available_memory()
        if self.beam > 1 and need > have:
            raise DataError(f"--length: beam search of width {self.beam} over {self.length} "
                            f"tokens needs about {need / 2**30:.1f} GiB, more than the "
                            f"{have / 2**30:.1f} GiB available")  # fmt: skip


# A generation ends; 10^12 tokens take years at any speed, and a count beyond int64
# cannot be a tensor size.
MAX_LENGTH = 10**12
# Samples are generated one after another, each printed as it goes; more than this
# is not a request anyone reads.
MAX_SAMPLES = 100_000


def config_file(run_dir: Path | str) -> Path:
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise DataError("not a run folder (config.toml missing)", path=Path(run_dir))
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"not valid TOML: {error}", path=path) from None


def run_kind(run_dir: Path | str) -> str:
    """The task that made a run folder (``kind`` in its ``config.toml``)."""
    path = config_file(run_dir)
    kind = _read_toml(path).get("kind")
    if not isinstance(kind, str):
        raise DataError("no `kind` key: which task made this run?", path=path)
    from rnnkit.tasks import MODULES  # the package imports this module: import late

    if kind not in MODULES:
        raise DataError(f"kind: expected one of {', '.join(MODULES)}, got {kind!r}", path=path)
    return kind


def read_config(run_dir: Path | str, cls: type[R]) -> R:
    """The run's resolved configuration, checked key by key."""
    path = config_file(run_dir)
    try:
        return from_mapping(cls, _read_toml(path))
    except ConfigError as error:
        raise DataError(str(error), path=path) from None


def load_weights(run_dir: Path | str) -> Checkpoint:
    """The run's ``best`` checkpoint, else its ``last``."""
    folder = Path(run_dir) / "checkpoints"
    for name in ("best", "last"):
        if has_checkpoint(folder / name):
            return load_checkpoint(folder / name)
    raise DataError("no checkpoint yet (checkpoints/best and checkpoints/last missing)",
                    path=folder)  # fmt: skip


def load_into(model: Any, checkpoint: Checkpoint, *, prefix: str = "") -> None:
    """Load the checkpoint's weights (saved with ``prefix`` before each name) into
    ``model``, refused in one line naming the weights file unless every name and shape
    matches: torch's own refusal is many lines."""
    weights = strip_prefix(checkpoint.weights, prefix) if prefix else checkpoint.weights
    check_fits(weights, model.state_dict(), checkpoint.path_of("weights"))
    model.load_state_dict(weights)


def artifact(checkpoint: Checkpoint, name: str, run_dir: Path | str) -> bytes:
    """A file saved with the checkpoint (a vocabulary, a scaler, …)."""
    if name not in checkpoint.artifacts:
        raise DataError(f"the checkpoint has no {name} (was it made by another task?)",
                        path=Path(run_dir))  # fmt: skip
    return checkpoint.artifacts[name]


def artifact_file(checkpoint: Checkpoint, name: str) -> str:
    """The file an artifact was read from, for error messages about its content."""
    return str(checkpoint.path_of(name))


def strip_prefix(weights: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Weights saved from a wrapper (``model.`` of a stream view) for the bare model."""
    return {key.removeprefix(prefix): value for key, value in weights.items()}
