"""The task contract: what every task provides, and everything tasks share.

A task turns data into a trained model and answers questions with it. Each task is
one small module under ``rnnkit.tasks`` with one subclass of :class:`Task`
(registered in :mod:`rnnkit.tasks`), which declares only what is its own:

configuration
    ``run_type``: the frozen dataclass of the whole run, saved as
    ``RUN/config.toml``, with the fields ``kind`` (a ``Literal`` of the task's
    name), ``task`` (what data, how to cut it), ``model`` and ``trainer``
    (:class:`~rnnkit.training.trainer.TrainerConfig`). The flags of
    ``rnnkit train NAME`` name the dotted keys of this dataclass they set; they are
    listed in :mod:`rnnkit.cli.tasks`, which imports no torch (``--help`` is instant),
    and a test holds every key to the dataclass.
data
    :meth:`Task.prepare` reads and checks the data, builds vocabularies on the
    training part only and fills in the data-dependent model fields;
    :meth:`Task.examples` gives a split's examples, with their lengths for
    bucketing; :meth:`Task.collate` turns a list of examples into a batch.
    The Trainer does all batching (:mod:`rnnkit.training.sampler`).
model
    :meth:`Task.build_model`: a model with the one protocol the Trainer trains,
    ``model(batch, state) -> (LossSum, state)``.
what a trained run keeps
    :meth:`Task.assets` (vocabularies, labels, scalers) are saved with every
    checkpoint (:meth:`Task.save_assets`) and read back (:meth:`Task.load_assets`)
    by :meth:`Task.load`, which gives a :class:`Loaded` run.
answers
    :meth:`Task.metrics` (extra validation metrics during training),
    :meth:`Task.evaluate`, :meth:`Task.predict`, :meth:`Task.stream` (generative
    tasks), :meth:`Task.report` (its own sections of the run's report page) and
    :meth:`Task.sample_batch` (a batch of its own data for the report's probes).

Written once, here: training a prepared run (:meth:`Task.fit`: the model, the
Trainer, the run folder), loading a run (:meth:`Task.load`) and the summed loss of
a split (:meth:`Task.loss`).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from rnnkit import decoding
from rnnkit.data.errors import DataError
from rnnkit.data.formats.text import read_lines
from rnnkit.data.splits import split_indices
from rnnkit.training.budget import available_memory
from rnnkit.training.runs import config_file, load_into, load_weights, read_config, read_toml
from rnnkit.training.sampler import Examples, Geometry, Sampler
from rnnkit.training.trainer import Trainer, TrainResult, move

if TYPE_CHECKING:
    from rnnkit.report.page import Section

R = TypeVar("R")  # the run's configuration (``run_type``)
D = TypeVar("D")  # the prepared data
A = TypeVar("A")  # the assets a trained run keeps (vocabularies, labels, scalers)
E = TypeVar("E")  # one example
B = TypeVar("B")  # one batch
M = TypeVar("M", bound=nn.Module)  # the model
T = TypeVar("T")  # a row of a data file, a bundled dataset's form

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Prepared(Generic[R, D]):
    """A run resolved against its data, ready to train.

    Attributes:
        run: the configuration with every data-dependent field filled in; this is
            what ``config.toml`` holds and what the CLI prints.
        summary: short lines about the data (sizes, vocabulary, classes) for the user.
        data: the task's own prepared data (splits, vocabularies, …).
    """

    run: R
    summary: list[str]
    data: D


@dataclass(frozen=True)
class Loaded(Generic[R, A, M]):
    """A trained run read back: its configuration, its assets and its model (eval mode)."""

    run: R
    assets: A
    model: M
    run_dir: Path


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


def run_kind(run_dir: Path | str) -> str:
    """The task that made a run folder (``kind`` in its ``config.toml``)."""
    path = config_file(run_dir)
    kind = read_toml(path).get("kind")
    if not isinstance(kind, str):
        raise DataError("no `kind` key: which task made this run?", path=path)
    from rnnkit.tasks import NAMES  # the package imports this module: import late

    if kind not in NAMES:
        raise DataError(f"kind: expected one of {', '.join(NAMES)}, got {kind!r}", path=path)
    return kind


def check_data_paths(data: tuple[str, ...]) -> None:
    """``task.data``: one file (the task splits it) or three (train, valid, test)."""
    if len(data) not in (0, 1, 3):
        raise ValueError(f"data: expected one file (split by the task) or three (train, valid, "
                         f"test), got {len(data)}")  # fmt: skip


def split_files(data: tuple[str, ...], read: Callable[[str], list[T]], *, seed: int,
                least: int, what: str) -> dict[str, list[T]]:  # fmt: skip
    """``task.data`` as ``train``, ``valid`` and ``test``: three files read in turn, or
    one file's rows split 80/10/10 by a permutation seeded with ``seed``
    (:func:`~rnnkit.data.splits.split_indices`); a file of fewer than ``least`` rows
    is refused (``what``: the rows in words, e.g. ``sentences``)."""
    if len(data) == 3:
        return {name: read(path) for name, path in zip(SPLITS, data, strict=True)}
    rows = read(data[0])
    if len(rows) < least:
        raise DataError(f"{len(rows)} {what}: too few to split into train, valid and test "
                        f"(expected at least {least}, or three files)", path=data[0])  # fmt: skip
    cut = split_indices(len(rows), (0.8, 0.1, 0.1), seed)
    return {name: [rows[i] for i in part] for name, part in zip(SPLITS, cut, strict=True)}


def bundled(dataset: str, form: type[T], what: str) -> T:
    """The bundled ``dataset`` (:func:`rnnkit.data.registry.fetch`), refused in one line
    unless it has the ``form`` the task reads (``what``: that form in words)."""
    from rnnkit.data.registry import fetch  # the registry's sources load only when used

    found = fetch(dataset)
    if not isinstance(found, form):
        raise DataError(f"dataset: {dataset!r} is not {what} (it is {type(found).__name__})")
    return found


def input_lines(options: PredictOptions, what: str) -> list[str]:
    """``rnnkit predict``'s inputs: those on the command line, then the non-blank lines of
    ``--file``; none at all is refused (``what``: the inputs in words, e.g. ``texts``)."""
    lines = [*options.inputs, *(read_lines(options.file) if options.file else [])]
    if not lines:
        raise DataError(f"give {what} as arguments or --file (one per line)")
    return lines


def asset_file(files: Mapping[str, bytes], name: str, where: Path) -> bytes:
    """The checkpoint's file ``name``, or a one-line error naming the checkpoint."""
    if name not in files:
        raise DataError(f"the checkpoint has no {name} (was it made by another task?)",
                        path=where)  # fmt: skip
    return files[name]


def class_prediction(shown: str, record: dict[str, Any], probs: torch.Tensor,
                     labels: Sequence[str], top: int) -> Prediction:  # fmt: skip
    """``label 0.912 (other 0.088)  INPUT`` for one row of class probabilities, with its
    JSON record: the likeliest label and the ``top`` likeliest with their probabilities."""
    values, ids = probs.topk(min(top, probs.numel()))
    pairs = [(labels[i], round(float(p), 6)) for i, p in zip(ids.tolist(), values, strict=True)]
    best, p = pairs[0]
    rest = ", ".join(f"{label} {q:.3f}" for label, q in pairs[1:])
    line = f"{best} {p:.3f}" + (f" ({rest})" if rest else "") + f"\t{shown}"
    return Prediction(line, {**record, "label": best, "probabilities": dict(pairs)})


def generated_tokens(model: Any, last: torch.Tensor, state: Any, options: GenerateOptions,
                     generator: torch.Generator, banned: Sequence[int], *, eos_id: int | None = None,
                     pad_id: int = 0, length_penalty: float = 1.0) -> Iterator[int]:  # fmt: skip
    """The tokens of one row's generation after its token ``last`` (``(1,)``) and
    ``state``, as they come: the likeliest continuation by beam search when
    ``options.beam > 1`` (:func:`rnnkit.decoding.beam_search`), else sampled with the
    options' temperature, top-k and top-p from ``generator``
    (:func:`rnnkit.decoding.stream`); up to ``options.length`` tokens, fewer at
    ``eos_id``."""
    if options.beam > 1:
        best = decoding.beam_search(model, last, state, max_length=options.length,
                                    beam_size=options.beam, length_penalty=length_penalty,
                                    eos_id=eos_id, pad_id=pad_id, banned=banned).best  # fmt: skip
        yield from best.tokens[0, : int(best.lengths[0])].tolist()
        return
    for step in decoding.stream(model, last, state, max_length=options.length,
                                temperature=options.temperature, top_k=options.top_k,
                                top_p=options.top_p, eos_id=eos_id, pad_id=pad_id,
                                generator=generator, banned=banned):  # fmt: skip
        yield int(step.tokens[0])


class Task(ABC, Generic[R, D, A, E, B, M]):
    """One task: data → examples → batches → model → metrics, answers and report.

    Subclasses set :attr:`name` and :attr:`run_type` and implement the abstract
    methods; the rest is shared. The type parameters: ``R`` the run configuration,
    ``D`` the prepared data, ``A`` the assets a trained run keeps, ``E`` an
    example, ``B`` a batch, ``M`` the model.
    """

    name: ClassVar[str]  # ``rnnkit train NAME``, and ``kind`` in config.toml
    run_type: ClassVar[type[Any]]  # R
    generative: ClassVar[bool] = False  # has stream(): ``rnnkit generate``

    # ----------------------------------------------------------------- data

    @abstractmethod
    def prepare(self, run: R) -> Prepared[R, D]:
        """Read and check the data; fill in the data-dependent fields of ``run``.

        Nothing is trained and nothing is written: ``rnnkit train --dry-run`` stops
        after this.
        """

    @abstractmethod
    def examples(self, run: R, data: D, split: str) -> Examples[E]:
        """The examples of ``split`` (``train``, ``valid`` or ``test``) of prepared data."""

    @abstractmethod
    def collate(self, examples: list[E]) -> B:
        """One batch of examples (the Trainer moves its tensors to the device)."""

    # ----------------------------------------------------------------- model and assets

    @abstractmethod
    def build_model(self, run: R) -> M:
        """The model, ``model(batch, state) -> (LossSum, state)``, freshly initialised."""

    @abstractmethod
    def assets(self, run: R, data: D) -> A:
        """What a trained run needs besides its weights (vocabularies, labels, …)."""

    @abstractmethod
    def save_assets(self, assets: A) -> dict[str, bytes]:
        """The assets as files saved with every checkpoint, name → bytes."""

    @abstractmethod
    def load_assets(self, run: R, files: Mapping[str, bytes], where: Path) -> A:
        """The assets back from the checkpoint's files (``where``: for error messages)."""

    # ----------------------------------------------------------------- answers

    def metrics(self, run: R, data: D, model: M, batches: Iterable[B]) -> dict[str, float]:
        """Validation metrics besides the loss, during training (none by default)."""
        return {}

    @abstractmethod
    def evaluate(self, loaded: Loaded[R, A, M], split: str, data: str | None) -> Evaluation:
        """The task's metrics on a split of the run's data, or on the user's file ``data``."""

    @abstractmethod
    def predict(self, loaded: Loaded[R, A, M], options: PredictOptions) -> list[Prediction]:
        """Answers for new inputs."""

    def stream(self, loaded: Loaded[R, A, M], options: GenerateOptions) -> Iterator[Iterator[str]]:
        """Samples, each an iterator of text pieces yielded as they are generated.

        Checks the options before it returns. Only generative tasks have one.
        """
        raise DataError(f"a {self.name} run does not generate; use predict")

    def report(self, loaded: Loaded[R, A, M]) -> list[Section]:
        """The task's own sections of the run's report page (none by default)."""
        return []

    def step_names(self, loaded: Loaded[R, A, M], batch: B) -> list[str] | None:
        """The first row's tokens, one per step, to label the report's hidden-state
        heatmap; None: the steps are not tokens (real-valued inputs)."""
        return None

    def sample_batch(self, loaded: Loaded[R, A, M], split: str, size: int = 16) -> B:
        """Up to ``size`` examples of ``split`` of the run's own data, as one batch, for
        the report's probes: the first batch of the split, bucketed by length."""
        prepared = self.prepare(loaded.run)
        examples = self.examples(prepared.run, prepared.data, split)
        if len(examples) == 0:
            raise DataError(f"the {split} part has no examples")
        sampler = Sampler(examples, Geometry(size), shuffle=False)
        (first, *_) = sampler.micro_batches(sampler.global_batches(0)[0])
        return self.collate([examples.items[i] for i in first.indices])

    # ----------------------------------------------------------------- shared

    def train(self, run: R, out: Path | str, *, resume: bool = False) -> TrainResult:
        """Prepare and train (or resume) a run into the folder ``out``."""
        return self.fit(self.prepare(run), out, resume=resume)

    def fit(
        self, prepared: Prepared[R, D], out: Path | str, *, resume: bool = False
    ) -> TrainResult:
        """Train (or resume) a prepared run into the run folder ``out``.

        The model is built under the run's seed; the Trainer gets the training and
        validation examples, the task's extra metrics, and the assets to save with
        every checkpoint; ``config.toml`` is the resolved run.
        """
        run, data = prepared.run, prepared.data
        trainer_config = run.trainer  # type: ignore[attr-defined]
        torch.manual_seed(trainer_config.seed)
        model = self.build_model(run)
        has_metrics = type(self).metrics is not Task.metrics
        val = self.examples(run, data, "valid")  # none held out (forecast valid = 0): no val

        def evaluate(net: nn.Module, batches: Iterator[Any]) -> Mapping[str, float]:
            return self.metrics(run, data, net, batches)  # type: ignore[arg-type]

        trainer = Trainer(
            model,
            trainer_config,
            self.examples(run, data, "train"),
            self.collate,
            val=val if len(val) else None,
            evaluate=evaluate if has_metrics else None,
            run_dir=out,
            resume=resume,
            artifacts=self.save_assets(self.assets(run, data)),
            config_to_save=run,
        )
        return trainer.fit()

    def load(self, run_dir: Path | str) -> Loaded[R, A, M]:
        """The trained run (best checkpoint, else last), its assets and configuration."""
        run: R = read_config(run_dir, self.run_type)
        checkpoint = load_weights(run_dir)
        assets = self.load_assets(run, checkpoint.artifacts, checkpoint.path_of("weights").parent)
        model = self.build_model(run)
        load_into(model, checkpoint)
        model.eval()
        return Loaded(run, assets, model, Path(run_dir))

    def batches(self, examples: Examples[E], batch_size: int) -> Iterator[B]:
        """The examples as batches, in order (bucketed by length when they have lengths)."""
        sampler = Sampler(examples, Geometry(batch_size), shuffle=False)
        for batch in sampler.global_batches(0):
            yield self.collate([examples.items[i] for i in batch])

    @torch.no_grad()
    def loss(self, model: M, examples: Examples[E], batch_size: int) -> tuple[float, float]:
        """``(summed loss, targets)`` of ``model`` over the examples, the state carried
        from batch to batch for continuous examples."""
        model.eval()
        device = next(model.parameters()).device
        total = count = 0.0
        state = None
        for batch in self.batches(examples, batch_size):
            out, final = model(move(batch, device), state)
            state = final if examples.continuous else None
            total, count = total + float(out.total), count + float(out.n_targets)
        return total, count


def world_size() -> int:
    """Processes training together (torchrun's ``WORLD_SIZE``; 1 alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))
