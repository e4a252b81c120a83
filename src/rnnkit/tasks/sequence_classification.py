"""Sequence classification of real-valued multivariate sequences, and the adding problem.

Classification (the default) follows the many-to-one recipe of the text task, on
``T × C`` floats instead of words:

1. read labelled sequences: a bundled dataset (``japanese-vowels``, ``mnist-5k``)
   or the user's ``.ts`` (:func:`~rnnkit.data.formats.ts.read_ts`) or ``.npz``
   (:func:`~rnnkit.data.formats.ts.read_npz_sequences`) files: one file split
   80/10/10 by a seeded permutation (:func:`~rnnkit.data.splits.split_indices`),
   or three for train, valid and test; a dataset without a validation split
   (japanese-vowels) lends ``valid_fraction`` of its training part;
2. standardise every channel with the mean and standard deviation of the training
   steps alone (:class:`~rnnkit.data.batching.Scaler`, saved with the checkpoint);
3. hand the Trainer one example per sequence, with its length (it batches
   sequences of similar length), and train a
   :class:`~rnnkit.models.classifier.SequenceClassifier` (recurrent encoder →
   pooling → softmax), stopping early on the validation loss;
4. report accuracy, macro-F1 and the confusion matrix.

``--dataset adding`` turns the task into sequence *regression*: the adding problem
(:func:`rnnkit.data.synthetic.adding_problem`) at length ``length``, with train,
valid and test sets generated from their own seeds, a linear head on the final
state, and the MSE reported beside the baseline of always predicting 1
(MSE ≈ 1/6 ≈ 0.167). This is the seeds' vanishing-gradient demonstration: at
T = 200 an LSTM or a GRU learns it, a tanh RNN does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from rnnkit.configuration import check_positive_ints
from rnnkit.data.errors import DataError
from rnnkit.data.formats.ts import read_sequences
from rnnkit.data.forms import LabelledSequences
from rnnkit.data.labels import Labels
from rnnkit.data.registry import fetch_as
from rnnkit.data.sequences import (
    Example,
    Labelled,
    SequenceAssets,
    adding_examples,
    read_unlabelled,
    scaled_examples,
)
from rnnkit.data.splits import SPLITS, check_data_paths, split_files, split_indices
from rnnkit.metrics import classification_report
from rnnkit.models.classifier import ClassifierConfig, SequenceBatch, SequenceClassifier
from rnnkit.report.page import Section, confusion_section, wrong_section
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.task import Evaluation, Loaded, Prediction, Prepared, Task
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import EarlyStoppingConfig, OptimizerConfig, TrainerConfig

ADDING = "adding"
BASELINE = 1.0  # the adding problem's constant prediction: E[target] = 1


@dataclass(frozen=True)
class SequenceClassificationTask:
    """What to read (or generate) and how to cut it.

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
    split_seed: int = 0
    length: int = 200
    train_size: int = 20_000
    valid_size: int = 1_000
    test_size: int = 1_000
    data_seed: int = 0

    def __post_init__(self) -> None:
        check_positive_ints(self, "max_length", "train_size", "valid_size", "test_size")
        check_data_paths(self.data)
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 2:
            raise ValueError(f"length: expected an int ≥ 2, got {self.length!r}")
        if not 0.0 < self.valid_fraction < 0.5:
            raise ValueError(f"valid_fraction: expected a number in (0, 0.5), got "
                             f"{self.valid_fraction!r}")  # fmt: skip

    @property
    def adding(self) -> bool:
        return not self.data and self.dataset == ADDING


# Japanese-vowels trains on about 240 sequences: many short epochs of 16, decoupled
# weight decay, and early stopping on the validation *loss*: with a validation part of
# a few dozen sequences, accuracy moves in coarse steps and its first maximum is
# often a lucky one.
EARLY_STOPPING = EarlyStoppingConfig(monitor="val_loss", mode="min", patience=20)


@dataclass(frozen=True)
class SequenceClassificationRun:
    """The resolved configuration of a sequence-classification run (``config.toml``)."""

    kind: Literal["seqclass"] = "seqclass"
    task: SequenceClassificationTask = field(default_factory=SequenceClassificationTask)
    # input_size, num_classes and (for the adding problem) head: filled in by prepare
    model: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(
        input_size=1, hidden=64, pooling="last", head="multiclass"))  # fmt: skip
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=150, batch_size=16, clip_norm=1.0, early_stopping=EARLY_STOPPING,
        optimizer=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=0.05)))  # fmt: skip


@dataclass(frozen=True)
class Parts:
    """The scaled examples of each split, with the assets made from the training part."""

    assets: SequenceAssets
    splits: dict[str, list[Example]]
    held_out: bool  # valid was cut from train


def read_labelled(task: SequenceClassificationTask) -> tuple[dict[str, Labelled], bool]:
    """The labelled sequences as train/valid/test, and whether valid was held out of train."""
    if task.data:
        read = partial(read_sequences, max_length=task.max_length)
        return split_files(task.data, read, seed=task.split_seed, least=10,
                           what="sequences"), False  # fmt: skip
    dataset = fetch_as(task.dataset, LabelledSequences, "a labelled-sequence dataset")
    splits = {name: list(rows) for name, rows in dataset.splits.items()}
    if "train" not in splits or "test" not in splits:
        raise DataError(f"dataset: {task.dataset!r} lacks a train or a test split")
    if "valid" in splits:
        return {name: splits[name] for name in SPLITS}, False
    train, fraction = splits["train"], task.valid_fraction
    keep, valid = split_indices(len(train), (1 - fraction, fraction), task.split_seed)
    held = [[train[i] for i in keep], [train[i] for i in valid], splits["test"]]
    return dict(zip(SPLITS, held, strict=True)), True


def read_parts(task: SequenceClassificationTask) -> Parts:
    """Read (or generate), split and scale; labels and the scaler come from train only."""
    if task.adding:
        return adding_parts(task)
    parts, held_out = read_labelled(task)
    assets, splits = scaled_examples(parts, standardize=task.standardize)
    return Parts(assets, splits, held_out)


def adding_parts(task: SequenceClassificationTask) -> Parts:
    """The adding problem's three sets, each generated from its own seed."""
    sizes = (task.train_size, task.valid_size, task.test_size)
    splits = adding_examples(sizes, task.length, task.data_seed)
    return Parts(SequenceAssets(Labels(()), None), splits, False)


def regression_scores(model: SequenceClassifier,
                      batches: Iterable[SequenceBatch]) -> dict[str, float]:  # fmt: skip
    """The adding problem's MSE beside the constant baseline's."""
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


# --------------------------------------------------------------------------- the task

Trained = Loaded[SequenceClassificationRun, SequenceAssets, SequenceClassifier]


class SequenceClassification(Task[SequenceClassificationRun, Parts, SequenceAssets, Example,
                                  SequenceBatch, SequenceClassifier]):  # fmt: skip
    """``rnnkit train seqclass``: labelled real-valued sequences → a many-to-one classifier,
    or the adding problem → a many-to-one regression."""

    name = "seqclass"

    def prepare(self, run: SequenceClassificationRun
                ) -> Prepared[SequenceClassificationRun, SequenceAssets, Parts]:  # fmt: skip
        """Read (or generate) and scale the sequences; fill in the features and the classes."""
        task, parts = run.task, read_parts(run.task)
        channels = int(parts.splits["train"][0][0].shape[1])
        model = replace(run.model, vocab_size=None, input_size=channels)
        trainer, summary = run.trainer, []
        if task.adding:
            model = replace(model, head="regression", outputs=1)
            if trainer.early_stopping == EARLY_STOPPING:
                # A fixed budget is the experiment (an LSTM sits on the 0.167 plateau for
                # a while before it learns): no early stop unless one was asked for.
                trainer = replace(trainer, early_stopping=None)
            for name, rows in parts.splits.items():
                mse = float(((torch.stack([y for _, y in rows]) - BASELINE) ** 2).mean())
                summary.append(f"{name}: {len(rows):,} sequences of {task.length} steps (seed "
                               f"{task.data_seed + SPLITS.index(name)}); predicting 1 gives MSE "
                               f"{mse:.4f}")  # fmt: skip
            summary.append("adding problem: regression on the final state, metric MSE; "
                           "checkpoints/best tracks val_loss")  # fmt: skip
        else:
            if run.model.head != "multiclass":
                raise DataError(f"model.head: seqclass classifies with 'multiclass' (got "
                                f"{run.model.head!r}); 'regression' is for --dataset adding")  # fmt: skip
            labels = parts.assets.labels
            model = replace(model, num_classes=len(labels))
            for name, rows in parts.splits.items():
                steps = [int(x.shape[0]) for x, _ in rows]
                held = name == "valid" and parts.held_out
                note = f", held out of train (valid_fraction {task.valid_fraction})" if held else ""
                summary.append(f"{name}: {len(rows):,} sequences, {min(steps)}–{max(steps)} steps, "
                               f"{len({int(y) for _, y in rows})} classes{note}")  # fmt: skip
            scaled = (
                "standardised with training statistics" if parts.assets.scaler else "not scaled"
            )
            summary += [f"{channels} channels, {scaled}", f"labels: {', '.join(labels.names)}"]
        run = replace(run, model=model.resolved(), trainer=trainer)
        return Prepared(run, summary, parts.assets, parts)

    def examples(self, prepared: Prepared[SequenceClassificationRun, SequenceAssets, Parts],
                 split: str) -> Examples[Example]:  # fmt: skip
        return self._examples(prepared.data.splits[split])

    def _examples(self, items: list[Example]) -> Examples[Example]:
        return Examples(items, lengths=[int(x.shape[0]) for x, _ in items])

    def collate(self, examples: list[Example]) -> SequenceBatch:
        inputs = pad_sequence([x for x, _ in examples], batch_first=True)  # (B, T, C), zeros after
        lengths = torch.tensor([x.shape[0] for x, _ in examples])  # (B,)
        return SequenceBatch(inputs, lengths, torch.stack([y for _, y in examples]))

    def save_assets(self, assets: SequenceAssets) -> dict[str, bytes]:
        return assets.files()

    def load_assets(self, run: SequenceClassificationRun, files: Mapping[str, bytes],
                    where: Path) -> SequenceAssets:  # fmt: skip
        return SequenceAssets.from_files(files, where)

    def metrics(self, prepared: Prepared[SequenceClassificationRun, SequenceAssets, Parts],
                model: SequenceClassifier, batches: Iterable[SequenceBatch]) -> dict[str, float]:  # fmt: skip
        if prepared.run.task.adding:
            return regression_scores(model, batches)
        pairs = [(model.probabilities(b.inputs, b.lengths).argmax(-1), b.targets) for b in batches]
        predicted, gold = (torch.cat(column).tolist() for column in zip(*pairs, strict=True))
        report, _ = classification_report(predicted, gold, prepared.assets.labels.names)
        return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}

    @torch.no_grad()
    def _outputs(self, loaded: Trained, xs: list[Tensor]) -> Tensor:
        """The model's answer for each sequence, in order: P(class) ``(N, C)``, or the adding
        problem's predicted sum ``(N, 1)``."""
        size, outputs = loaded.run.trainer.batch_size, []
        for start in range(0, len(xs), size):
            chunk = xs[start : start + size]
            inputs = pad_sequence(chunk, batch_first=True)  # (B, T, C)
            lengths = torch.tensor([len(x) for x in chunk])  # (B,)
            answer = loaded.model.predict if loaded.run.task.adding else loaded.model.probabilities
            outputs.append(answer(inputs, lengths))
        return torch.cat(outputs)

    def _split(self, loaded: Trained, split: str, data: str | None) -> tuple[str, list[Example]]:
        """The examples of a split of the run's data, or of the user's labelled file."""
        task = loaded.run.task
        if data is None:
            parts = read_parts(task)
            if parts.assets.labels.names != loaded.assets.labels.names:
                raise DataError("the data's labels differ from the run's (was the data changed?)")
            return split, parts.splits[split]
        if task.adding:
            raise DataError("an adding-problem run evaluates on its generated splits (use --split)")
        rows = read_sequences(data, max_length=task.max_length)
        loaded.assets.labels.check({"file's": [y for _, y in rows]}, str(data))
        xs = [torch.tensor(steps, dtype=torch.float32) for steps, _ in rows]
        xs = loaded.assets.scale(xs, loaded.run.model.input_size, data)
        ids = loaded.assets.labels.ids([label for _, label in rows])
        return data, [(x, torch.tensor(y)) for x, y in zip(xs, ids, strict=True)]

    def evaluate(self, loaded: Trained, split: str, data: str | None) -> Evaluation:
        """Accuracy, macro-F1, loss and the confusion matrix on a split of the run's data (or
        the labelled ``.ts``/``.npz`` file ``data``); MSE beside the baseline for adding runs."""
        where, items = self._split(loaded, split, data)
        if not items:
            raise DataError(f"{where}: no examples to evaluate")
        size = loaded.run.trainer.batch_size
        if loaded.run.task.adding:
            metrics = regression_scores(loaded.model, self.batches(self._examples(items), size))
            metrics = {**metrics, "examples": float(len(items)),
                       "mse_over_baseline": metrics["mse"] / metrics["baseline_mse"]}  # fmt: skip
            return Evaluation(where, metrics, {"length": loaded.run.task.length})
        total, count = self.loss(loaded.model, self._examples(items), size)
        predicted = self._outputs(loaded, [x for x, _ in items]).argmax(-1).tolist()
        gold = [int(y) for _, y in items]
        labels = loaded.assets.labels
        metrics, details = classification_report(predicted, gold, labels.names, labels.majority)
        return Evaluation(where, {**metrics, "loss": total / count}, details)

    def predict(self, loaded: Trained, options: PredictOptions) -> list[Prediction]:
        """The likeliest label of each sequence with the ``top`` classes' probabilities; the
        predicted sum for adding-problem runs. Labels in a file are ignored."""
        named = read_unlabelled(options.inputs, options.file, loaded.run.task.max_length)
        xs = loaded.assets.scale([x for x, _ in named], loaded.run.model.input_size, "input")
        outputs = self._outputs(loaded, xs)
        if loaded.run.task.adding:
            return [Prediction(f"{value:.4f}\t{name}", {"input": name, "prediction": round(value, 6)})
                    for (_, name), value in zip(named, outputs[:, 0].tolist(), strict=True)]  # fmt: skip
        return [Prediction.of_classes(name, {"input": name}, row, loaded.assets.labels.names, options.top)
                for (_, name), row in zip(named, outputs, strict=True)]  # fmt: skip

    def report(self, loaded: Trained) -> list[Section]:
        """The test split's confusion matrix and its most confidently wrong sequences."""
        if loaded.run.task.adding:
            why = "an adding-problem run regresses: no classes, nothing to get wrong"
            return [Section(title, missing=why)
                    for title in ("Confusion matrix", "Most confidently wrong")]  # fmt: skip
        evaluation = self.evaluate(loaded, "test", None)
        items = read_parts(loaded.run.task).splits["test"][:2000]
        probs = self._outputs(loaded, [x for x, _ in items])  # (N, C)
        names, wrong = loaded.assets.labels.names, []
        for i, ((x, y), row) in enumerate(zip(items, probs, strict=True)):
            if int(row.argmax()) != int(y):
                shown = f"test sequence {i + 1} ({x.shape[0]} steps)"
                wrong.append((float(row.max()), shown, names[int(y)], names[int(row.argmax())]))
        matrix = evaluation.details["confusion_matrix"]
        return [confusion_section(evaluation.metrics, matrix, "test"), wrong_section(wrong)]


TASK = SequenceClassification()
