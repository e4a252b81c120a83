"""The task contract: what every task provides, and everything tasks share.

A task turns data into a trained model and answers questions with it. Each task is
one small module under ``rnnkit.tasks`` with one subclass of :class:`Task`
(registered in :mod:`rnnkit.tasks`), which declares only what is its own:

configuration
    ``run_type``: the frozen dataclass of the whole run, saved as
    ``RUN/config.toml``, with the fields ``kind`` (a ``Literal`` of the task's
    name), ``task`` (what data, how to cut it; where reading it takes more than a
    call, this dataclass lives beside its reader in :mod:`rnnkit.data`, as
    ``CaptionTask`` and ``ForecastTask`` do), ``model`` and ``trainer``
    (:class:`~rnnkit.training.trainer.TrainerConfig`). The flags of
    ``rnnkit train NAME`` name the dotted keys of this dataclass they set; they are
    listed in :mod:`rnnkit.cli.tasks`, which imports no torch (``--help`` is instant),
    and a test holds every key to the dataclass.
data
    :meth:`Task.prepare` reads and checks the data, builds what a trained run keeps
    (its *assets*: vocabularies, labels, scalers) on the training part only and
    fills in the data-dependent model fields; :meth:`Task.examples` gives a split's
    examples, with their lengths for bucketing; :meth:`Task.collate` turns a list of
    examples into a batch. The Trainer does all batching
    (:mod:`rnnkit.training.sampler`).
model
    ``model_type``, built by :meth:`Task.build_model` from ``run.model`` through
    :func:`rnnkit.models.build_model`: a model with the one protocol the Trainer
    trains, ``model(batch, state) -> (LossSum, state)``.
what a trained run keeps
    The assets are saved with every checkpoint (:meth:`Task.save_assets`; by
    default one JSON file per field of the assets dataclass) and read back
    (:meth:`Task.load_assets`) by :meth:`Task.load`, which gives a
    :class:`Loaded` run.
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

import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import torch
from torch import nn

from rnnkit.data.errors import DataError
from rnnkit.models import build_model
from rnnkit.tasks.options import GenerateOptions, PredictOptions
from rnnkit.training.runs import (
    asset_files,
    config_file,
    load_into,
    load_weights,
    read_assets,
    read_config,
    read_toml,
)
from rnnkit.training.sampler import Examples, Geometry, Sampler
from rnnkit.training.trainer import Trainer, TrainerConfig, TrainResult, move

if TYPE_CHECKING:
    from rnnkit.report.page import Section


class RunConfig(Protocol):
    """What every task's ``run_type`` has: ``kind``, ``task``, ``model``, ``trainer``."""

    @property
    def kind(self) -> str: ...
    @property
    def task(self) -> Any: ...
    @property
    def model(self) -> Any: ...
    @property
    def trainer(self) -> TrainerConfig: ...


R = TypeVar("R", bound=RunConfig)  # the run's configuration (``run_type``)
D = TypeVar("D")  # the prepared data: the splits, in the task's own form
A = TypeVar("A")  # the assets a trained run keeps (vocabularies, labels, scalers)
E = TypeVar("E")  # one example
B = TypeVar("B")  # one batch
M = TypeVar("M", bound=nn.Module)  # the model


@dataclass(frozen=True)
class Prepared(Generic[R, A, D]):
    """A run resolved against its data, ready to train.

    Attributes:
        run: the configuration with every data-dependent field filled in; this is
            what ``config.toml`` holds and what the CLI prints.
        summary: short lines about the data (sizes, vocabulary, classes) for the user.
        assets: what the trained run will keep (vocabularies, labels, scalers), built
            on the training part only.
        data: the task's prepared splits.
    """

    run: R
    summary: list[str]
    assets: A
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

    @staticmethod
    def of_classes(shown: str, record: dict[str, Any], probs: torch.Tensor,
                   labels: Sequence[str], top: int) -> Prediction:  # fmt: skip
        """``label 0.912 (other 0.088)  INPUT`` for one row of class probabilities, with
        its record: the likeliest label and the ``top`` likeliest with their probabilities."""
        values, ids = probs.topk(min(top, probs.numel()))
        pairs = [(labels[i], round(float(p), 6))
                 for i, p in zip(ids.tolist(), values, strict=True)]  # fmt: skip
        best, p = pairs[0]
        rest = ", ".join(f"{label} {q:.3f}" for label, q in pairs[1:])
        line = f"{best} {p:.3f}" + (f" ({rest})" if rest else "") + f"\t{shown}"
        return Prediction(line, {**record, "label": best, "probabilities": dict(pairs)})


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


class Task(ABC, Generic[R, D, A, E, B, M]):
    """One task: data → examples → batches → model → metrics, answers and report.

    Subclasses set :attr:`name` and implement the abstract methods; the rest is
    shared. The type parameters: ``R`` the run configuration, ``D`` the prepared
    data, ``A`` the assets a trained run keeps, ``E`` an example, ``B`` a batch,
    ``M`` the model. A subclass names them once, in its base
    (``class Tag(Task[TaggingRun, Parts, TagAssets, Example, TagBatch, Tagger])``),
    and the classes that run time needs are read from there: ``run_type`` (R, what
    ``config.toml`` is read into), ``assets_type`` (A) and ``model_type`` (M).
    """

    name: ClassVar[str]  # ``rnnkit train NAME``, and ``kind`` in config.toml
    generative: ClassVar[bool] = False  # has stream(): ``rnnkit generate``
    run_type: ClassVar[type[Any]]  # R
    assets_type: ClassVar[type[Any]]  # A, a frozen dataclass (see ``save_assets``)
    model_type: ClassVar[type[nn.Module]]  # M, what ``build_model`` builds

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Task:
                run, _, assets, _, _, model = typing.get_args(base)
                cls.run_type, cls.assets_type, cls.model_type = run, assets, model

    # ----------------------------------------------------------------- data

    @abstractmethod
    def prepare(self, run: R) -> Prepared[R, A, D]:
        """Read and check the data; build the assets on the training part; fill in the
        data-dependent fields of ``run``.

        Nothing is trained and nothing is written: ``rnnkit train --dry-run`` stops
        after this.
        """

    @abstractmethod
    def examples(self, prepared: Prepared[R, A, D], split: str) -> Examples[E]:
        """The examples of ``split`` (``train``, ``valid`` or ``test``) of prepared data."""

    @abstractmethod
    def collate(self, examples: list[E]) -> B:
        """One batch of examples (the Trainer moves its tensors to the device)."""

    # ----------------------------------------------------------------- model and assets

    def build_model(self, run: R) -> M:
        """The model, ``model(batch, state) -> (LossSum, state)``, freshly initialised:
        ``run.model``'s class (:func:`rnnkit.models.build_model`), which must be the
        task's ``model_type``."""
        model = build_model(run.model)
        if not isinstance(model, self.model_type):
            raise ValueError(f"model: a {self.name} run trains a {self.model_type.__name__}, "
                             f"not a {type(model).__name__}")  # fmt: skip
        return model  # type: ignore[return-value]

    def save_assets(self, assets: A) -> dict[str, bytes]:
        """The assets as files saved with every checkpoint, name → bytes: by default one
        ``FIELD.json`` per field of the dataclass, each field's ``to_json()``."""
        return asset_files(assets)

    def load_assets(self, run: R, files: Mapping[str, bytes], where: Path) -> A:
        """The assets back from the checkpoint's files (``where``: for error messages): by
        default each field's type's ``from_json(data, path=...)``."""
        assets: A = read_assets(self.assets_type, files, where)
        return assets

    # ----------------------------------------------------------------- answers

    def metrics(self, prepared: Prepared[R, A, D], model: M,
                batches: Iterable[B]) -> dict[str, float]:  # fmt: skip
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
        examples = self.examples(self.prepare(loaded.run), split)
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
        self, prepared: Prepared[R, A, D], out: Path | str, *, resume: bool = False
    ) -> TrainResult:
        """Train (or resume) a prepared run into the run folder ``out``.

        The model is built under the run's seed; the Trainer gets the training and
        validation examples, the task's extra metrics, and the assets to save with
        every checkpoint; ``config.toml`` is the resolved run.
        """
        run = prepared.run
        torch.manual_seed(run.trainer.seed)
        model = self.build_model(run)
        has_metrics = type(self).metrics is not Task.metrics
        val = self.examples(prepared, "valid")  # none held out (forecast valid = 0): no val

        def evaluate(net: nn.Module, batches: Iterator[Any]) -> Mapping[str, float]:
            return self.metrics(prepared, net, batches)  # type: ignore[arg-type]

        trainer = Trainer(
            model,
            run.trainer,
            self.examples(prepared, "train"),
            self.collate,
            val=val if len(val) else None,
            evaluate=evaluate if has_metrics else None,
            run_dir=out,
            resume=resume,
            artifacts=self.save_assets(prepared.assets),
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
