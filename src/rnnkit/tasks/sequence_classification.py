"""Sequence classification of real-valued multivariate sequences, and the adding problem.

Classification (the default) follows the many-to-one recipe of the text task, on
``T × C`` floats instead of words:

1. read labelled sequences: a bundled dataset (``japanese-vowels``, ``mnist-5k``)
   or the user's ``.ts`` (:func:`~rnnkit.data.formats.ts.read_ts`) or ``.npz``
   (:func:`~rnnkit.data.formats.ts.read_npz_sequences`) files: one file split
   80/10/10 by a seeded permutation, or three for train, valid and test; a dataset
   without a validation split (japanese-vowels) lends ``valid_fraction`` of its
   training part;
2. standardise every channel with the mean and standard deviation of the training
   steps alone (:class:`~rnnkit.data.batching.Scaler`, saved with the checkpoint);
3. bucket by length, pad, and train a :class:`~rnnkit.models.classifier.SequenceClassifier`
   (recurrent encoder → pooling → softmax), stopping early on the validation loss;
4. report accuracy, macro-F1 and the confusion matrix.

``--dataset adding`` turns the task into sequence *regression*: the adding problem
(:func:`rnnkit.data.synthetic.adding_problem`) at length ``length``, with train,
valid and test sets generated from their own seeds, a linear head on the final
state, and the MSE reported beside the baseline of always predicting 1
(MSE ≈ 1/6 ≈ 0.167). This is the seeds' vanishing-gradient demonstration: at
T = 200 an LSTM or a GRU learns it, a tanh RNN does not.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import Scaler, bucket_batches, split_indices
from rnnkit.data.errors import DataError
from rnnkit.data.formats.ts import read_npz_sequences, read_ts
from rnnkit.models import build_model
from rnnkit.models.classifier import ClassifierConfig, SequenceBatch, SequenceClassifier
from rnnkit.tasks.classification import (
    LABELS_ARTIFACT,
    SPLITS,
    check_data_paths,
    check_labels,
    class_evaluation,
    class_probabilities,
    evaluate_batches,
    label_order,
    label_prediction,
    labels_from_json,
    labels_json,
    top_classes,
)
from rnnkit.tasks.task import (
    Evaluation,
    Prediction,
    PredictOptions,
    Prepared,
    artifact,
    load_into,
    load_weights,
    read_config,
)
from rnnkit.training.trainer import (
    EarlyStoppingConfig,
    OptimizerConfig,
    Trainer,
    TrainerConfig,
    TrainResult,
)

SCALER_ARTIFACT = "scaler.json"
ADDING = "adding"
BASELINE = 1.0  # the adding problem's constant prediction: E[target] = 1


@dataclass(frozen=True)
class SequenceClassificationTask:
    """What to read (or generate) and how to batch it.

    Attributes:
        dataset: a bundled labelled-sequence dataset (``rnnkit datasets list``), or
            ``adding`` for the adding problem; used when ``data`` is not given.
        data: the user's ``.ts`` or ``.npz`` files: one, split 80/10/10 by a
            permutation seeded with ``split_seed``, or three for train, valid, test.
        valid_fraction: the share of the training part held out for validation
            when the data has no validation split (japanese-vowels).
        standardize: scale each channel by the training part's mean and standard
            deviation (not for the adding problem, whose inputs are its definition).
        max_length: steps kept per sequence; the rest of a longer one is cut off.
        batch_size: sequences per batch; batches hold sequences of similar length.
        split_seed: seeds the 80/10/10 split and the validation hold-out.
        length: the adding problem's sequence length T.
        train_size, valid_size, test_size: the adding problem's set sizes.
        data_seed: the adding problem's sets come from seeds data_seed, +1 and +2.
    """

    dataset: str = "japanese-vowels"
    data: tuple[str, ...] = ()
    valid_fraction: float = 0.1
    standardize: bool = True
    max_length: int | None = None
    batch_size: int = 16
    split_seed: int = 0
    length: int = 200
    train_size: int = 20_000
    valid_size: int = 1_000
    test_size: int = 1_000
    data_seed: int = 0

    def __post_init__(self) -> None:
        check_positive_ints(
            self, "max_length", "batch_size", "train_size", "valid_size", "test_size"
        )
        check_data_paths(self.data)
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 2:
            raise ValueError(f"length: expected an int ≥ 2, got {self.length!r}")
        if not 0.0 < self.valid_fraction < 0.5:
            raise ValueError(
                f"valid_fraction: expected a number in (0, 0.5), got {self.valid_fraction!r}"
            )

    @property
    def adding(self) -> bool:
        return not self.data and self.dataset == ADDING


def _trainer() -> TrainerConfig:
    # Each training item is one pre-bucketed batch. Japanese-vowels trains on about
    # 240 sequences: many short epochs, decoupled weight decay, and early stopping on
    # the validation *loss*: with a validation part of a few dozen sequences,
    # accuracy moves in coarse steps and its first maximum is often a lucky one.
    return TrainerConfig(
        epochs=150,
        batch_size=1,
        clip_norm=1.0,
        optimizer=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=0.05),
        early_stopping=EarlyStoppingConfig(monitor="val_loss", mode="min", patience=20),
    )


def _model() -> ClassifierConfig:
    return ClassifierConfig(input_size=1, hidden=64, pooling="last", head="multiclass")


@dataclass(frozen=True)
class SequenceClassificationRun:
    """The resolved configuration of a sequence-classification run (``config.toml``).

    ``model.input_size``, ``model.num_classes`` and (for the adding problem)
    ``model.head`` are filled in by :func:`prepare`.
    """

    kind: Literal["seqclass"] = "seqclass"
    task: SequenceClassificationTask = field(default_factory=SequenceClassificationTask)
    model: ClassifierConfig = field(default_factory=_model)
    trainer: TrainerConfig = field(default_factory=_trainer)


Run = SequenceClassificationRun

Sequences = list[tuple[list[list[float]], str]]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Parts:
    """Float sequences ``(T, C)`` and targets per split, with what the model needs.

    ``labels`` is empty for the adding problem, whose targets are ``(1,)`` floats.
    """

    splits: dict[str, tuple[list[Tensor], Tensor]]
    labels: list[str]
    train_labels: list[str]
    scaler: Scaler | None
    held_out: bool  # valid was cut from train


def read_sequences(path: str, task: SequenceClassificationTask) -> Sequences:
    """A ``.ts`` or ``.npz`` file's labelled sequences (cut at ``max_length`` steps)."""
    kwargs: dict[str, Any] = {"max_length": task.max_length, "on_long": "truncate"}
    if task.max_length is None:
        kwargs = {}
    suffix = Path(path).suffix.lower()
    if suffix == ".ts":
        return read_ts(path, **kwargs)
    if suffix == ".npz":
        return read_npz_sequences(path, **kwargs)
    raise DataError(
        f"cannot tell the format from the extension {suffix!r} (expected .ts or .npz)", path=path
    )


def read_labelled(task: SequenceClassificationTask) -> tuple[dict[str, Sequences], bool]:
    """The labelled sequences as train/valid/test, and whether valid was held out of train."""
    if task.data:
        if len(task.data) == 3:
            parts = [read_sequences(path, task) for path in task.data]
            return dict(zip(SPLITS, parts, strict=True)), False
        rows = read_sequences(task.data[0], task)
        if len(rows) < 10:
            raise DataError(
                f"{len(rows)} sequences are too few to split 80/10/10 (expected at "
                "least 10, or give three files: train, valid, test)",
                path=task.data[0],
            )
        cut = split_indices(len(rows), (0.8, 0.1, 0.1), seed=task.split_seed)
        return {
            name: [rows[i] for i in part] for name, part in zip(SPLITS, cut, strict=True)
        }, False
    from rnnkit.data.forms import LabelledSequences
    from rnnkit.data.registry import fetch, info

    form = info(task.dataset).form
    if form != "LabelledSequences":
        raise DataError(
            f"dataset: {task.dataset!r} is not a labelled-sequence dataset (it is "
            f"{form}); try japanese-vowels, mnist-5k or adding"
        )
    dataset = fetch(task.dataset)
    assert isinstance(dataset, LabelledSequences)
    splits = {name: list(rows) for name, rows in dataset.splits.items()}
    if "train" not in splits or "test" not in splits:
        raise DataError(f"dataset: {task.dataset!r} lacks a train or a test split")
    if "valid" in splits:
        return {name: splits[name] for name in SPLITS}, False
    train = splits["train"]
    keep, valid = split_indices(
        len(train), (1 - task.valid_fraction, task.valid_fraction), seed=task.split_seed
    )
    held = {
        "train": [train[i] for i in keep],
        "valid": [train[i] for i in valid],
        "test": splits["test"],
    }
    return held, True


def fit_scaler(sequences: list[Tensor]) -> Scaler:
    """Per-channel statistics over every step of the training sequences."""
    return Scaler().fit(torch.cat(sequences, dim=0))


def read_parts(task: SequenceClassificationTask) -> Parts:
    """Read (or generate), split and scale; labels and the scaler come from train only."""
    if task.adding:
        return adding_parts(task)
    parts, held_out = read_labelled(task)
    for name, rows in parts.items():
        if not rows:
            raise DataError(f"data: the {name} part is empty (expected some sequences)")
    channels = {len(steps[0]) for rows in parts.values() for steps, _ in rows}
    if len(channels) != 1:
        raise DataError(
            f"data: the parts' sequences have {sorted(channels)} channels (expected "
            "one number of channels throughout)"
        )
    train_labels = [label for _, label in parts["train"]]
    labels = label_order(train_labels)
    if len(labels) < 2:
        raise DataError(
            f"data: the training part has one label ({labels[0]!r}); a classifier "
            "needs at least two"
        )
    check_labels({name: [y for _, y in rows] for name, rows in parts.items()}, labels, "data")
    index = {label: i for i, label in enumerate(labels)}
    tensors = {
        name: [torch.tensor(steps, dtype=torch.float32) for steps, _ in rows]
        for name, rows in parts.items()
    }
    scaler = fit_scaler(tensors["train"]) if task.standardize else None
    splits = {}
    for name, rows in parts.items():
        xs = tensors[name] if scaler is None else [scaler.transform(x) for x in tensors[name]]
        splits[name] = (xs, torch.tensor([index[y] for _, y in rows]))
    return Parts(splits, labels, train_labels, scaler, held_out)


def adding_parts(task: SequenceClassificationTask) -> Parts:
    """The adding problem's three sets, each generated from its own seed."""
    from rnnkit.data.synthetic import adding_problem

    splits = {}
    sizes = (task.train_size, task.valid_size, task.test_size)
    for offset, (name, size) in enumerate(zip(SPLITS, sizes, strict=True)):
        batch = adding_problem(size, task.length, seed=task.data_seed + offset)
        splits[name] = (list(batch.inputs.unbind(0)), batch.targets.unsqueeze(-1))  # (N, 1)
    return Parts(splits, [], [], None, False)


def pad_floats(xs: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack ``(T_i, C)`` sequences into ``(B, T, C)`` zero-padded inputs and ``(B,)`` lengths."""
    lengths = torch.tensor([x.shape[0] for x in xs])
    inputs = torch.zeros(len(xs), int(lengths.max()), xs[0].shape[1])  # (B, T, C)
    for row, x in enumerate(xs):
        inputs[row, : x.shape[0]] = x
    return inputs, lengths


def sequence_batches(
    xs: list[Tensor], targets: Tensor, batch_size: int, *, seed: int, shuffle: bool
) -> list[SequenceBatch]:
    """Padded batches ``(B, T, C)`` of sequences of similar length."""
    lengths = [x.shape[0] for x in xs]
    batches = []
    for group in bucket_batches(lengths, batch_size, seed=seed, shuffle=shuffle):
        inputs, group_lengths = pad_floats([xs[i] for i in group])
        batches.append(SequenceBatch(inputs, group_lengths, targets[group]))
    return batches


def _first(items: list[SequenceBatch]) -> SequenceBatch:
    return items[0]  # each item is already a whole batch


def evaluate_regression(model: nn.Module, batches: Iterator[SequenceBatch]) -> dict[str, float]:
    """The Trainer's ``evaluate`` for the adding problem: MSE beside the constant baseline."""
    assert isinstance(model, SequenceClassifier)
    return regression_scores(model, batches)


def regression_scores(model: SequenceClassifier, batches: Any) -> dict[str, float]:
    squared = baseline = 0.0
    count = 0
    for batch in batches:
        predicted = model.predict(batch.inputs, batch.lengths).float()  # (B, 1)
        targets = batch.targets.float().reshape(predicted.shape)
        squared += float(((predicted - targets) ** 2).sum())
        baseline += float(((targets - BASELINE) ** 2).sum())
        count += targets.numel()
    if count == 0:
        raise DataError("no examples to evaluate")
    return {"mse": squared / count, "baseline_mse": baseline / count}


# --------------------------------------------------------------------------- the contract


def prepare(run: SequenceClassificationRun) -> Prepared[SequenceClassificationRun]:
    """Read (or generate) and scale the sequences; fill in the features and the classes."""
    task = run.task
    parts = read_parts(task)
    xs, _ = parts.splits["train"]
    channels = int(xs[0].shape[1])
    trainer = replace(run.trainer, batch_size=1)
    summary = []
    if task.adding:
        model = replace(
            run.model, vocab_size=None, input_size=channels, head="regression", outputs=1
        )
        if trainer.early_stopping == _trainer().early_stopping:
            # A fixed budget is the experiment (an LSTM sits on the 0.167 plateau for a
            # while before it learns): no early stop unless one was asked for.
            trainer = replace(trainer, early_stopping=None)
        for name, (seqs, targets) in parts.splits.items():
            mse = float(((targets - BASELINE) ** 2).mean())
            summary.append(
                f"{name}: {len(seqs):,} sequences of {task.length} steps "
                f"(seed {task.data_seed + SPLITS.index(name)}); predicting 1 "
                f"gives MSE {mse:.4f}"
            )
        summary.append(
            "adding problem: regression on the final state, metric MSE; "
            "checkpoints/best tracks val_loss"
        )
    else:
        if run.model.head != "multiclass":
            raise DataError(
                f"model.head: seqclass classifies with 'multiclass' (got "
                f"{run.model.head!r}); 'regression' is for --dataset adding"
            )
        model = replace(
            run.model, vocab_size=None, input_size=channels, num_classes=len(parts.labels)
        )
        for name, (seqs, targets) in parts.splits.items():
            steps = [int(x.shape[0]) for x in seqs]
            counts = Counter(targets.tolist())
            note = (
                f", held out of train (valid_fraction {task.valid_fraction})"
                if (name == "valid" and parts.held_out)
                else ""
            )
            summary.append(
                f"{name}: {len(seqs):,} sequences, {min(steps)}–{max(steps)} steps, "
                f"{len(counts)} classes{note}"
            )
        summary.append(
            f"{channels} channels, "
            + (
                "standardised with training statistics"
                if parts.scaler is not None
                else "not scaled"
            )
        )
        summary.append(f"labels: {', '.join(parts.labels)}")
    return Prepared(replace(run, model=model, trainer=trainer), summary, parts)


def fit(
    prepared: Prepared[SequenceClassificationRun], out: Path | str, *, resume: bool = False
) -> TrainResult:
    """Train (or resume) the prepared run into the folder ``out``."""
    run, parts = prepared.run, prepared.data
    torch.manual_seed(run.trainer.seed)
    model = build_model(run.model)
    size = run.task.batch_size
    train_xs, train_targets = parts.splits["train"]
    valid_xs, valid_targets = parts.splits["valid"]
    artifacts = {LABELS_ARTIFACT: labels_json(parts.labels)}
    if parts.scaler is not None:
        artifacts[SCALER_ARTIFACT] = json.dumps(parts.scaler.state_dict()).encode()
    trainer = Trainer(
        model,
        run.trainer,
        sequence_batches(train_xs, train_targets, size, seed=run.trainer.seed, shuffle=True),
        _first,
        val=sequence_batches(valid_xs, valid_targets, size, seed=0, shuffle=False),
        evaluate=evaluate_regression if run.task.adding else evaluate_batches,
        run_dir=out,
        resume=resume,
        artifacts=artifacts,
        config_to_save=run,
    )
    return trainer.fit()


def train(run: SequenceClassificationRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Prepare and train (or resume) a run into the folder ``out``."""
    return fit(prepare(run), out, resume=resume)


@dataclass(frozen=True)
class Loaded:
    """A trained run read back: the model in eval mode and what it needs."""

    model: SequenceClassifier
    labels: list[str]
    scaler: Scaler | None
    run: SequenceClassificationRun


def load_run(run_dir: Path | str) -> Loaded:
    """The trained model (best checkpoint, else last), its labels, scaler and configuration."""
    run = read_config(run_dir, SequenceClassificationRun)
    checkpoint = load_weights(run_dir)
    labels = labels_from_json(artifact(checkpoint, LABELS_ARTIFACT, run_dir), run_dir)
    scaler = None
    if SCALER_ARTIFACT in checkpoint.artifacts:
        scaler = Scaler()
        try:
            state = json.loads(checkpoint.artifacts[SCALER_ARTIFACT].decode("utf-8"))
        except ValueError:
            raise DataError("scaler.json: not valid JSON", path=run_dir) from None
        scaler.load_state_dict(state)
    model = build_model(run.model)
    assert isinstance(model, SequenceClassifier)
    load_into(model, checkpoint)
    model.eval()
    return Loaded(model, labels, scaler, run)


def _scaled(xs: list[Tensor], loaded: Loaded, where: str) -> list[Tensor]:
    channels = loaded.run.model.input_size
    for i, x in enumerate(xs):
        if x.shape[1] != channels:
            raise DataError(
                f"{where}: sequence {i + 1} has {x.shape[1]} channels (expected "
                f"{channels}, as the run was trained on)"
            )
    return xs if loaded.scaler is None else [loaded.scaler.transform(x) for x in xs]


@torch.no_grad()
def evaluate(run_dir: Path | str, *, split: str = "test", data: str | None = None) -> Evaluation:
    """Accuracy, macro-F1, loss and the confusion matrix on a split of the run's data (or
    the labelled ``.ts``/``.npz`` file ``data``); MSE beside the baseline for adding runs."""
    loaded = load_run(run_dir)
    task = loaded.run.task
    if task.adding:
        if data is not None:
            raise DataError(
                "evaluate: an adding-problem run evaluates on its generated splits (use --split)"
            )
        xs, targets = adding_parts(task).splits[split]
        batches = sequence_batches(xs, targets, task.batch_size, seed=0, shuffle=False)
        metrics = {**regression_scores(loaded.model, batches), "examples": float(len(xs))}
        metrics["mse_over_baseline"] = metrics["mse"] / metrics["baseline_mse"]
        return Evaluation(split, metrics, {"length": task.length})
    if data is not None:
        rows = read_sequences(data, task)
        check_labels({"file's": [y for _, y in rows]}, loaded.labels, str(data))
        index = {label: i for i, label in enumerate(loaded.labels)}
        xs = _scaled([torch.tensor(s, dtype=torch.float32) for s, _ in rows], loaded, str(data))
        targets = torch.tensor([index[y] for _, y in rows])
        train_labels = _train_labels(task, loaded.labels)
        split = data
    else:
        parts = read_parts(task)
        if parts.labels != loaded.labels:
            raise DataError("the data's labels differ from the run's (was the data changed?)")
        xs, targets = parts.splits[split]
        train_labels = parts.train_labels
    batches = sequence_batches(xs, targets, task.batch_size, seed=0, shuffle=False)
    return class_evaluation(loaded.model, batches, loaded.labels, train_labels, split)


def _train_labels(task: SequenceClassificationTask, fallback: list[str]) -> list[str]:
    try:
        return [label for _, label in read_labelled(task)[0]["train"]]
    except (DataError, OSError):
        return fallback


def parse_sequence(text: str, number: int) -> Tensor:
    """One sequence typed on the command line: JSON ``[[c1, c2, …], …]`` (steps × channels),
    or ``[v1, v2, …]`` for one channel."""
    where = f"input {number}"
    try:
        value = json.loads(text)
    except ValueError:
        raise DataError(
            f"{where}: not JSON (expected a sequence as [[x, y, …], …], one list per step)"
        ) from None
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        value = [[v] for v in value]
    if not (
        isinstance(value, list) and value and all(isinstance(step, list) and step for step in value)
    ):
        raise DataError(f"{where}: expected a non-empty list of steps, each a list of numbers")
    if len({len(step) for step in value}) != 1:
        raise DataError(f"{where}: every step needs the same number of channels")
    try:
        x = torch.tensor(value, dtype=torch.float32)  # (T, C)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected numbers in every step") from None
    if not torch.isfinite(x).all():
        raise DataError(f"{where}: expected finite numbers")
    return x


def read_inputs(
    options: PredictOptions, task: SequenceClassificationTask
) -> list[tuple[Tensor, str]]:
    """The sequences to answer with how each is named: JSON arguments and/or a .ts/.npz file."""
    inputs = [
        (parse_sequence(text, i)[: task.max_length], text if len(text) <= 40 else text[:39] + "…")
        for i, text in enumerate(options.inputs, start=1)
    ]
    if options.file is not None:
        rows = read_sequences(options.file, task)
        inputs += [
            (torch.tensor(steps, dtype=torch.float32), f"{options.file}#{i}")
            for i, (steps, _) in enumerate(rows, start=1)
        ]
    if not inputs:
        raise DataError(
            "predict: give --file (a .ts or .npz file) or sequences as JSON "
            "arguments ([[x, y, …], …], one list per step)"
        )
    return inputs


@torch.no_grad()
def predict(run_dir: Path | str, options: PredictOptions) -> list[Prediction]:
    """The likeliest label of each sequence with the ``top`` classes' probabilities; the
    predicted sum for adding-problem runs. Labels in a file are ignored."""
    loaded = load_run(run_dir)
    inputs_named = read_inputs(options, loaded.run.task)
    xs = _scaled([x for x, _ in inputs_named], loaded, "predict")
    results = []
    size = loaded.run.task.batch_size
    for start in range(0, len(xs), size):
        chunk = range(start, min(start + size, len(xs)))
        inputs, lengths = pad_floats([xs[i] for i in chunk])
        if loaded.run.task.adding:
            values = loaded.model.predict(inputs, lengths)[:, 0]  # (B,)
            for i, value in zip(chunk, values.tolist(), strict=True):
                name = inputs_named[i][1]
                results.append(
                    Prediction(
                        f"{value:.4f}\t{name}", {"input": name, "prediction": round(value, 6)}
                    )
                )
            continue
        probs = class_probabilities(loaded.model, inputs, lengths)
        for i, row in zip(chunk, probs, strict=True):
            pairs = top_classes(row, loaded.labels, options.top)
            name = inputs_named[i][1]
            results.append(label_prediction(name, {"input": name}, pairs))
    return results
