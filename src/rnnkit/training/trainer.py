"""The Trainer: the training loop, exact under accumulation, resumable, distributable.

The Trainer owns batching (:mod:`rnnkit.training.sampler`): it takes a task's
examples, forms the global batch of each optimizer step first (length-bucketed,
seeded, the same for any split into micro-batches or processes), then cuts it
into ``accumulate`` micro-batches per process. Every model it trains has one
protocol::

    model(batch, state) -> (LossSum(total, n_targets), state)

with ``state`` None for a stateless model. The loop, per optimizer step::

    for each micro-batch j of the step:                 # DDP syncs on the last only
        (loss_sum, count), s = model(batch_j, carry[j]) # sums over real targets
        loss_sum.backward()                             # un-normalised
        carry[j] = detach(s)                            # streams only, see below
    N = Σ count over the step and all processes         # one all-reduce
    grads *= world_size / N                             # DDP averaged: now Σ ∂/∂θ / N
    norm = ‖grads‖; skip the update if not finite       # counted, logged
    clip (norm, value); set the scheduled lr; optimizer.step()   # once per step

Dividing once by the step's real target count, after every backward, is what
makes k micro-batches of b equal one batch of k·b with ragged lengths: the loss is
the mean over all targets of the step, not a mean of per-batch means. (A step of
one micro-batch in one process knows N before its backward: it differentiates
loss_sum / N and skips the pass over the gradients; the result is the same.) Clipping,
weight decay (the optimizer's), the learning-rate schedule and the step counter
act once per step, and the last, shorter step of an epoch still steps.

Carried state and truncated BPTT are one mechanism. For *continuous* examples
(a language model's streams: micro-batch j holds the same rows at every step),
``carry[j]`` is the state micro-batch j ended the previous step with, detached
(truncation at the chunk boundary, the repackage_hidden of word-language-model
training); it starts as None at each epoch and is saved in checkpoints. For
other examples it is always None. ``trainer.tbptt`` adds TBPTT(k1, k2) within
each batch: the batch is cut in time (its ``steps(start, stop, loss_from)``) and
each window runs forward from the detached state and backward on its own.

State that makes a resumed run bitwise equal to an uninterrupted one: weights,
optimizer and schedule state, step, epoch, the step reached in the epoch's data
order (a function of seed and epoch, see :mod:`rnnkit.training.sampler`), best score,
early-stopping counters and every process's random-number generators (Python,
NumPy, torch, CUDA), captured at window boundaries. Checkpoints are written by
:mod:`rnnkit.training.checkpoint` (atomic, hashed, no pickle) into
``RUN/checkpoints/last`` and ``RUN/checkpoints/best``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.bptt.truncated import TBPTTConfig, windows
from rnnkit.configuration import (
    MAX_INT,
    check_range,
    check_seed,
    check_sizes,
    write_toml,
)
from rnnkit.losses import LossSum
from rnnkit.state import detach_state
from rnnkit.training import distributed
from rnnkit.training.averaging import NTASGD, averaged
from rnnkit.training.budget import resolve_device
from rnnkit.training.checkpoint import (
    CheckpointError,
    NonFiniteError,
    check_fits,
    has_checkpoint,
    load_checkpoint,
    lock_run_folder,
    remove_temporaries,
    save_checkpoint,
)
from rnnkit.training.distributed import World
from rnnkit.training.progress import Progress, ProgressMode
from rnnkit.training.sampler import Examples, Geometry, Sampler, Shard
from rnnkit.training.schedule import Schedule, ScheduleConfig
from rnnkit.training.undo import Undo

OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop", "adagrad", "ntasgd"]

MAX_LR = 1e3  # see OptimizerConfig.lr
# Micro-batches per step: past this one step would take days, and a whole epoch is
# already one window (the last, shorter window of an epoch still steps).
MAX_ACCUMULATE = 2**20
# More threads than any machine has cores only oversubscribes it.
MAX_THREADS = 4096


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class OptimizerConfig:
    """A torch.optim optimizer.

    Attributes:
        name: ``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad``, or ``ntasgd``:
            SGD that averages its iterates once validation stops improving
            (:mod:`rnnkit.training.averaging`; AWD-LSTM's optimizer), whose averaged
            weights are evaluated and saved.
        lr: the base learning rate (the schedule scales it), in (0, 1000]: the
            largest rates in use (plain SGD on word-level LMs) are about 20, and one
            beyond 1000 only turns the weights into inf.
        weight_decay: L2 penalty (decoupled for ``adamw``), applied once per update;
            finite, ≥ 0.
        momentum: ``sgd`` and ``rmsprop``, in [0, 1) (1 and above never decays).
        nesterov: ``sgd`` with momentum.
        betas: ``adam``/``adamw``, each in [0, 1).
        eps: ``adam``/``adamw``/``rmsprop``/``adagrad``, finite, > 0.
        nonmono: ``ntasgd``: averaging starts at the first validation loss worse than
            the best of those before the last ``nonmono`` evaluations (AWD-LSTM: 5).

    Every number is checked finite and in range here, so ``lr = inf`` or
    ``momentum = nan`` is bad input (exit 2), not NaN weights found at save time.
    """

    name: OptimizerName = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    nonmono: int = 5

    def __post_init__(self) -> None:
        check_range(self, "lr", 0.0, MAX_LR, open_low=True)
        if (
            isinstance(self.nonmono, bool)
            or not isinstance(self.nonmono, int)
            or not 1 <= self.nonmono <= MAX_INT
        ):
            raise ValueError(f"nonmono: expected an int ≥ 1, got {self.nonmono!r}")
        check_range(self, "weight_decay", 0.0)
        check_range(self, "momentum", 0.0, 1.0, open_high=True)
        check_range(self, "eps", 0.0, open_low=True)
        # `0 <= b < 1` is False for NaN, so NaN is refused too.
        if not (isinstance(self.betas, tuple) and len(self.betas) == 2) or not all(
            isinstance(b, int | float) and 0.0 <= b < 1.0 for b in self.betas
        ):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {self.betas!r}")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov: needs optimizer sgd with momentum > 0")

    def build(self, parameters: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
        """The optimizer over ``parameters``; torch's fused kernel where it has one.

        SGD, Adam, AdamW and Adagrad take torch's ``fused`` implementation when every
        parameter is a floating-point tensor on a device it supports (the CPU and CUDA):
        the same update in one pass over each tensor, about 10× faster on a CPU than
        the default per-tensor loop (Adam over the main job's 0.9 M weights: 0.3 ms
        against 3.5 ms), equal to it up to float rounding. RMSprop has no fused kernel.
        """
        params = list(parameters)
        fused = _fusable(params) or None  # None: torch's default implementation
        if self.name == "sgd":
            return torch.optim.SGD(
                params,
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                nesterov=self.nesterov,
                fused=fused,
            )
        if self.name == "ntasgd":
            return NTASGD(params, self.lr, momentum=self.momentum,
                          weight_decay=self.weight_decay, nonmono=self.nonmono)  # fmt: skip
        if self.name == "adam":
            return torch.optim.Adam(
                params, lr=self.lr, betas=self.betas, eps=self.eps,
                weight_decay=self.weight_decay, fused=fused,
            )  # fmt: skip
        if self.name == "adamw":
            return torch.optim.AdamW(
                params, lr=self.lr, betas=self.betas, eps=self.eps,
                weight_decay=self.weight_decay, fused=fused,
            )  # fmt: skip
        if self.name == "rmsprop":
            return torch.optim.RMSprop(
                params,
                lr=self.lr,
                momentum=self.momentum,
                eps=self.eps,
                weight_decay=self.weight_decay,
            )
        return torch.optim.Adagrad(
            params, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay, fused=fused
        )


# The devices torch's fused optimizer kernels run on (torch.optim checks the same).
FUSED_DEVICES = ("cpu", "cuda")


def _fusable(params: Sequence[Tensor]) -> bool:
    """Whether torch's fused optimizers take these parameters: floating point, dense, on
    a device with the kernels."""
    return bool(params) and all(
        p.device.type in FUSED_DEVICES and p.is_floating_point() and not p.is_sparse for p in params
    )


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when the monitored evaluation value stops improving (Keras' EarlyStopping).

    Attributes:
        monitor: ``SPLIT_METRIC`` of an evaluation, e.g. ``val_loss``, ``val_accuracy``.
        mode: ``min`` or ``max``: which direction is better.
        patience: evaluations without improvement before stopping: training stops
            at the ``patience``-th evaluation in a row that does not improve on the
            best (Keras' ``wait >= patience``; 0 stops at the first). The plateau
            schedule counts as torch's ReduceLROnPlateau instead: it reduces after
            *more than* its ``patience`` such evaluations.
        min_delta: the least change that counts as an improvement (finite, ≥ 0).
        restore_best: load the best weights when training ends.
    """

    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = 3
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int):
            raise ValueError(f"patience: expected an int ≥ 0, got {self.patience!r}")
        if not 0 <= self.patience <= MAX_INT:
            raise ValueError(f"patience: expected an int ≥ 0, got {self.patience!r}")
        check_range(self, "min_delta", 0.0)


@dataclass(frozen=True)
class TrainerConfig:
    """Everything the training loop does, and nothing about the model or the data.

    Attributes:
        epochs: passes over the training data (``max_steps`` may end it sooner).
        max_steps: stop after this many optimizer steps (None: no limit).
        max_minutes: stop after the first step that ends this many minutes into the
            run (rank 0's wall clock, broadcast, so every process stops at the same
            step; a resumed run gets the time again).
        batch_size: examples per micro-batch per process (a language model's
            streams per micro-batch).
        accumulate: micro-batches per optimizer step (at most 2^20); the step's
            global batch, ``batch_size · accumulate · processes`` examples, is
            formed first and then cut, so only memory depends on the split.
        clip_norm: clip the global gradient norm to this (None: no clipping).
        clip_value: clip every gradient element to ±this (None: no clipping).
        max_bad_steps: stop after this many consecutive steps skipped because the
            gradient norm was not finite.
        eval_every: evaluate every N optimizer steps (None: only at epoch ends).
        eval_each_epoch: evaluate at the end of every epoch.
        checkpoint_every: save ``last`` every N optimizer steps, besides epoch ends,
            evaluations, the end and Ctrl-C (None: only those).
        seed: seeds Python, NumPy and torch (+ rank) and the data order; an int in
            [0, 2^63), what torch.manual_seed takes.
        deterministic: torch's deterministic algorithms (slower on CUDA).
        threads: CPU threads torch uses (``torch.set_num_threads``); None: torch's
            default, one per core. Saved with the run, since float rounding, and so
            a run's numbers, depend on it.
        precision: ``fp32``, or ``bf16`` autocast for the forward pass.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        shuffle: reshuffle the training data every epoch (streams never are).
        progress: ``auto`` (a bar on a terminal, lines otherwise), ``bar``, ``lines``
            or ``off``.
        tensorboard: also log to ``RUN/tensorboard``.
        tbptt: TBPTT(k1, k2) of Williams & Peng (:mod:`rnnkit.bptt.truncated`)
            within each batch, for batches that can be cut in time
            (:class:`TimeSliced`, a language model's chunks); across batches the
            state is carried as for any continuous examples.
        optimizer, schedule, early_stopping: see their classes.
    """

    epochs: int = 10
    max_steps: int | None = None
    max_minutes: float | None = None
    batch_size: int = 32
    accumulate: int = 1
    clip_norm: float | None = None
    clip_value: float | None = None
    max_bad_steps: int = 10
    eval_every: int | None = None
    eval_each_epoch: bool = True
    checkpoint_every: int | None = None
    seed: int = 0
    deterministic: bool = False
    threads: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "auto"
    shuffle: bool = True
    progress: ProgressMode = "auto"
    tensorboard: bool = False
    tbptt: TBPTTConfig | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig | None = None

    def __post_init__(self) -> None:
        # Counts must fit the int64 that torch and NumPy compute them in.
        counts = ("epochs", "batch_size", "max_bad_steps", "max_steps", "eval_every")
        check_sizes(self, *counts, "checkpoint_every", at_most=MAX_INT)
        check_sizes(self, "accumulate", at_most=MAX_ACCUMULATE)
        check_sizes(self, "threads", at_most=MAX_THREADS)
        check_seed(self)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(
                f"device: expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}"
            )
        for name in ("clip_norm", "clip_value", "max_minutes"):
            check_range(self, name, 0.0, open_low=True)


# --------------------------------------------------------------------------- results


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many non-finite steps); the message says why."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``last`` was saved first. The CLI exits with 130."""


@dataclass
class TrainState:
    """Where training stands; all of it goes into a checkpoint."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch in progress (0-based)
    position: int = 0  # optimizer steps (global batches) of that epoch already taken
    skipped: int = 0  # steps skipped for a non-finite gradient norm, in total
    bad_in_a_row: int = 0
    best: float | None = None  # best monitored value so far
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    stop_reason: str = ""


@dataclass(frozen=True)
class TrainResult:
    """How a ``fit`` ended."""

    steps: int
    epochs: int
    skipped: int
    best: float | None
    best_step: int | None
    stop_reason: str
    last_metrics: dict[str, float]


class Callback:
    """Hooks called on every process; override what you need."""

    def on_step_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        """After every optimizer step (taken or skipped)."""

    def on_evaluate(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        """After every evaluation, with ``SPLIT_METRIC`` keys."""

    def on_epoch_end(self, trainer: Trainer) -> None:
        """After every epoch."""


# --------------------------------------------------------------------------- the loop


class TimeSliced(Protocol):
    """A batch that TBPTT can cut in time (a language model's chunk)."""

    @property
    def num_steps(self) -> int:
        """T, the steps of the batch."""
        ...

    def steps(self, start: int, stop: int, loss_from: int) -> Any:
        """The batch over steps ``start … stop − 1`` whose targets before step
        ``loss_from`` do not count (the history a TBPTT window re-reads)."""
        ...


class Trainer:
    """Train a model ``model(batch, state) -> (LossSum, state)`` on a task's examples.

    Args:
        model: returns the loss summed over the batch's real targets and their
            number (:class:`~rnnkit.losses.LossSum`), and its final state (None for
            a stateless model).
        config: the loop's configuration.
        train: the training examples, with their lengths (bucketing) and whether
            they are continuous streams (:class:`~rnnkit.training.sampler.Examples`);
            a plain sequence is examples without lengths.
        collate: turns a list of examples into a batch (tensors anywhere inside a
            tuple, list, dict or dataclass are moved to the device).
        val: evaluation examples (``val_loss`` = summed loss / targets).
        evaluate: extra evaluation metrics, ``evaluate(model, batches)`` → dict,
            over the batches of all of ``val``; run on rank 0.
        run_dir: the run folder (config.toml, metrics.csv, checkpoints/); None keeps
            nothing on disk.
        resume: continue from ``run_dir/checkpoints/last`` if it exists.
        artifacts: files saved with every checkpoint (vocabularies, …), name → bytes.
        callbacks: :class:`Callback` hooks.
        config_to_save: the resolved configuration written to ``run_dir/config.toml``
            (default: ``config``).
        world: the processes (default: set up from the environment, as torchrun's).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig,
        train: Examples[Any] | Sequence[Any],
        collate: Callable[[list[Any]], Any],
        *,
        val: Examples[Any] | Sequence[Any] | None = None,
        evaluate: Callable[[nn.Module, Iterator[Any]], Mapping[str, float]] | None = None,
        run_dir: Path | str | None = None,
        resume: bool = False,
        artifacts: Mapping[str, bytes] | None = None,
        callbacks: Sequence[Callback] = (),
        config_to_save: Any = None,
        world: World | None = None,
    ) -> None:
        self.config = config
        if world is None:
            resolve_device(config.device)  # a device torch cannot use: one line, not torch's
        self.world = world if world is not None else distributed.setup(config.device)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        self.model = model.to(self.world.device)
        # A plain list of examples: no lengths to bucket by, not continuous.
        self.train_data = train if isinstance(train, Examples) else Examples(train)
        self.val_data = val if val is None or isinstance(val, Examples) else Examples(val)
        self.collate = collate
        self.evaluate_fn = evaluate
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.artifacts = dict(artifacts or {})
        self.callbacks = list(callbacks)
        self.geometry = Geometry(config.batch_size, config.accumulate, self.world.size)
        self.sampler = Sampler(self.train_data, self.geometry, seed=config.seed, shuffle=config.shuffle,
                               rank=self.world.rank)  # fmt: skip
        self.steps_per_epoch = len(self.sampler)
        total = config.epochs * self.steps_per_epoch
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        self.optimizer = config.optimizer.build([p for p in model.parameters() if p.requires_grad])
        if config.schedule.name == "plateau" and val is None:
            raise ValueError("schedule.name: plateau reduces on evaluation results; give val data")
        self.schedule = Schedule(config.schedule, self.optimizer, self.total_steps)
        self._undo = Undo(self.optimizer)
        self.state = TrainState()
        self.monitor = self._monitor()
        self._best_weights: dict[str, Tensor] | None = None
        self._evaluated_at: int | None = None  # the step of the last recorded evaluation
        # Continuous examples: the detached state each micro-batch slot ended the last
        # step with (None: the initial state).
        self.carry: list[Any] = []
        self._step_carry: list[Any] = []
        self.ddp: nn.Module = self.model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.world.device.index] if self.world.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

        self._metrics_rows: int | None = None
        # Held until fit() ends: a second trainer on this folder is refused, not interleaved.
        self._lock = (
            lock_run_folder(self.run_dir) if self.run_dir is not None and self.world.main else None
        )
        resumed = False
        if resume and self.run_dir is not None and has_checkpoint(self._checkpoint_dir("last")):
            try:
                self._load(self._checkpoint_dir("last"))
            except BaseException:
                self._unlock()  # a refused resume leaves the folder free at once
                raise
            resumed = True
        else:  # a fresh start, also when --resume finds nothing to resume
            seed_everything(config.seed + self.world.rank)
        if self.run_dir is not None and self.world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            header = "The resolved configuration of this run, written by rnnkit."
            write_toml(
                config_to_save if config_to_save is not None else config,
                self.run_dir / "config.toml",
                header=header,
            )
        self.progress = Progress(
            self.run_dir,
            mode=config.progress,
            enabled=self.world.main,
            tensorboard=config.tensorboard,
            resume_step=self.state.step if resumed else None,
            resume_rows=self._metrics_rows if resumed else None,
        )
        if resumed:
            self.progress.line(
                f"resumed from {self._checkpoint_dir('last')} at step {self.state.step} "
                f"(epoch {self.state.epoch + 1}, step {self.state.position} of the epoch)"
            )

    # ----------------------------------------------------------------- public

    def fit(self) -> TrainResult:
        """Train until the epochs or ``max_steps`` are done, or early stopping."""
        c = self.config
        last: dict[str, float] = {}
        try:
            while self.state.epoch < c.epochs and not self._done():
                self.progress.start_epoch(self.state.epoch + 1, self._epoch_total(),
                                          self.state.position)  # fmt: skip
                for metrics in self._epoch():
                    last = metrics
                    if self._done():
                        break
                if self._done() and self.state.position < self.steps_per_epoch:
                    # Stopped mid-epoch (max_steps): the checkpoint keeps the position, and
                    # the truncated epoch still ends with an evaluation, as a full one does.
                    self.progress.close_bar()
                    evaluated = self._evaluated_at == self.state.step
                    if c.eval_each_epoch and self.val_data is not None and not evaluated:
                        last.update(self._evaluate())
                    break
                self.progress.close_bar()
                evaluated = self._evaluated_at == self.state.step  # by eval_every just now
                if c.eval_each_epoch and self.val_data is not None and not evaluated:
                    last.update(self._evaluate())
                for callback in self.callbacks:
                    callback.on_epoch_end(self)
                self.state.epoch += 1
                self.state.position = 0
                self._save("last")
            if not self.state.stop_reason:
                self.state.stop_reason = (
                    "max_steps" if c.max_steps and self.state.step >= c.max_steps else "epochs"
                )
            self._save("last")
        except KeyboardInterrupt as interrupt:
            self.progress.close_bar()
            self.optimizer.zero_grad(set_to_none=True)
            self.carry = self._step_carry
            self._save("last", rng=plain_rng(self._step_rng), gather=False)
            self.progress.line(f"interrupted at step {self.state.step}; saved checkpoints/last")
            self.progress.close()
            raise Interrupted() from interrupt
        except (TrainingError, CheckpointError):
            self.progress.close()
            raise
        finally:
            self._unlock()
        if isinstance(self.optimizer, NTASGD):
            self.optimizer.finish()  # the model ends with the averaged weights it saved
        self._restore_best()
        self.progress.close()
        return TrainResult(
            steps=self.state.step,
            epochs=self.state.epoch,
            skipped=self.state.skipped,
            best=self.state.best,
            best_step=self.state.best_step,
            stop_reason=self.state.stop_reason,
            last_metrics=last,
        )

    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``val`` now; ``SPLIT_METRIC`` keys (``val_loss``, …)."""
        return self._evaluate(record=False)

    # ----------------------------------------------------------------- one epoch

    def _epoch_total(self) -> int:
        """The steps this epoch will run: all of them, or up to ``max_steps``."""
        left = self.steps_per_epoch - self.state.position
        if self.config.max_steps is not None:
            left = min(left, max(0, self.config.max_steps - self.state.step))
        return self.state.position + left

    def _epoch(self) -> Iterator[dict[str, float]]:
        c = self.config
        if self.state.position == 0:
            self.carry = []  # a new epoch starts the streams afresh
        self._step_rng = snapshot_rng()
        self._step_carry = list(self.carry)
        for shards in self.sampler.steps(self.state.epoch, self.state.position):
            metrics = self._step(shards)
            if c.max_minutes is not None and self._out_of_time(c.max_minutes):
                self.state.stop_reason = "max_minutes"  # Lightning's max_time
            self._step_rng = snapshot_rng()
            self._step_carry = list(self.carry)
            for callback in self.callbacks:
                callback.on_step_end(self, metrics)
            if c.eval_every and self.state.step % c.eval_every == 0 and self.val_data is not None:
                metrics = {**metrics, **self._evaluate()}
            if c.checkpoint_every and self.state.step % c.checkpoint_every == 0:
                self._save("last")
            yield metrics
            if self._done():
                return

    def _out_of_time(self, minutes: float) -> bool:
        """Rank 0's clock decides, so that every process stops after the same step."""
        late = self.progress.seconds >= 60 * minutes if self.world.main else False
        return bool(distributed.broadcast_object(self.world, late))

    def _batch(self, shard: Shard, examples: Examples[Any]) -> Any:
        return move(self.collate([examples.items[j] for j in shard.indices]), self.world.device)

    def _step(self, shards: list[Shard]) -> dict[str, float]:
        """One optimizer step over its micro-batches (``shards``)."""
        c = self.config
        started = time.perf_counter()
        if not (self.ddp.training and self.model.training):  # else a walk over every module
            self.ddp.train()
        loss_sum = 0.0
        tokens = 0.0
        continuous = self.train_data.continuous
        carried = self.carry + [None] * (len(shards) - len(self.carry))
        # One micro-batch in one process: its target count is the step's, known before
        # the backward, so the loss is normalised there and no pass over the gradients
        # is left to do. Otherwise the counts of every shard (and process) come first.
        normalised = len(shards) == 1 and not self.world.distributed and c.tbptt is None
        for j, shard in enumerate(shards):
            batch = self._batch(shard, self.train_data)
            if c.tbptt is not None:
                total_j, count_j, state = self._truncated(batch, carried[j], shard.weight)
            else:
                sync = j == len(shards) - 1
                no_sync = getattr(self.ddp, "no_sync", None)
                with (
                    no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext(),
                    self._autocast(),
                ):
                    out, state = _loss_and_state(self.ddp(batch, carried[j]))
                    # A stand-in shard (weight 0) counts nothing; × 1.0 would only add an op.
                    total = out.total if shard.weight == 1.0 else out.total * shard.weight
                count_j = float(out.n_targets) * shard.weight
                seed = total / count_j if normalised and count_j else total
                seed.backward()  # type: ignore[no-untyped-call]
                total_j = float(total.detach())
            loss_sum += total_j
            tokens += count_j
            if continuous:
                # The one visible line of truncated BPTT across steps: the next chunk of
                # these rows starts from this state's value, and no gradient flows back.
                carried[j] = detach_state(state)
        self.carry = carried if continuous else []
        loss_sum, tokens = distributed.all_sum(self.world, [loss_sum, tokens])
        params = [p for p in self._undo.params if p.grad is not None]  # the optimizer's
        metrics: dict[str, float] = {"loss": loss_sum / tokens if tokens else float("nan")}
        if tokens == 0:
            self.optimizer.zero_grad(set_to_none=True)
            self._skip(metrics, "the step has no targets")
            return metrics
        # DDP averaged the sums over processes; the TBPTT path summed them itself.
        scale = (self.world.size if c.tbptt is None else 1.0) / tokens
        grads = [p.grad for p in params if p.grad is not None]
        if grads and not normalised:
            torch._foreach_mul_(grads, scale)  # one call, the products of p.grad.mul_(scale)
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        metrics["grad_norm"] = norm
        if not math.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._skip(metrics, f"non-finite gradient norm ({norm})")
            return metrics
        clipped = c.clip_norm is not None and norm > c.clip_norm
        if c.clip_norm is not None and clipped:
            torch.nn.utils.clip_grads_with_norm_(params, c.clip_norm, torch.tensor(norm))
        if c.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, c.clip_value)
        rates = self.schedule.apply(self.state.step)
        # Every gradient element is at most the clipped 2-norm (and clip_value).
        bound = min(c.clip_norm, norm) if clipped and c.clip_norm is not None else norm
        self._undo.prepare(bound if c.clip_value is None else min(bound, c.clip_value))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not self._undo.finite():
            # A finite gradient can still make an infinite update (a huge rate, Adam's
            # division by a vanishing second moment): undone, and counted as a bad step.
            self._undo.restore()
            self._skip(metrics, "the update made a weight non-finite; undone")
            return metrics
        # The state moves on only once the update is done: an interrupt before this
        # line resumes at the start of the step.
        self.state.step += 1
        self.state.position += 1
        self.state.bad_in_a_row = 0
        seconds = time.perf_counter() - started
        metrics.update(
            lr=rates[0],
            clipped=1.0 if clipped else 0.0,
            skipped=0.0,
            tokens_per_s=tokens / seconds if seconds > 0 else 0.0,
        )
        self.progress.step(self.state.step, self.state.epoch + 1, metrics)
        return metrics

    def _truncated(self, batch: Any, state: Any, weight: float) -> tuple[float, float, Any]:
        """Forward and backward of one batch by TBPTT(k1, k2): (loss, targets, final state).

        Each window runs forward from the detached state at its start, over its
        history steps (targets not counted) and its own steps, and backward at once.
        DDP's hooks expect one forward per backward; TBPTT makes several of each, so
        this path runs the bare model and sums the gradients over processes itself.
        """
        config = self.config.tbptt
        assert config is not None
        if not (hasattr(batch, "steps") and hasattr(batch, "num_steps")):
            raise TrainingError(
                f"tbptt: this task's batches ({type(batch).__name__}) cannot be cut in time; "
                "truncated BPTT trains a language model's streams"
            )
        sliced: TimeSliced = batch
        loss_sum = tokens = 0.0
        state = None if state is None else detach_state(state)
        for window in windows(sliced.num_steps, config):
            # The forward is split at `carry`, where the next window's state comes from
            # (one graph: the gradient still flows across the split).
            split = window.start < window.carry < window.stop
            cuts = (
                [window.start, window.carry, window.stop] if split else [window.start, window.stop]
            )
            running, following = state, state  # carry == start: the next window starts here too
            total: Tensor | None = None
            with self._autocast():
                for a, b in itertools.pairwise(cuts):
                    out, running = _loss_and_state(
                        self.model(sliced.steps(a, b, window.loss_start), running)
                    )
                    total = out.total if total is None else total + out.total
                    tokens += float(out.n_targets) * weight
                    if b == window.carry:
                        following = detach_state(running)
            assert total is not None
            (total * weight).backward()  # type: ignore[no-untyped-call]
            loss_sum += float(total.detach()) * weight
            state = following
        if self.world.distributed:
            for p in self.model.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
        return loss_sum, tokens, state

    def _skip(self, metrics: dict[str, float], why: str) -> None:
        self.state.position += 1
        self.state.skipped += 1
        self.state.bad_in_a_row += 1
        metrics.update(skipped=1.0, clipped=0.0)
        self.progress.step(self.state.step, self.state.epoch + 1, metrics)
        self.progress.line(
            f"step {self.state.step + 1} skipped: {why} "
            f"({self.state.bad_in_a_row} in a row, {self.state.skipped} in total)"
        )
        if self.state.bad_in_a_row >= self.config.max_bad_steps:
            self.state.stop_reason = "non-finite gradients"
            raise TrainingError(
                f"training stopped: {self.state.bad_in_a_row} optimizer steps in a row were "
                f"skipped ({why}); max_bad_steps = {self.config.max_bad_steps}. The weights "
                f"are those of step {self.state.step}; lower the learning rate or clip "
                f"gradients (clip_norm)."
            )

    def _done(self) -> bool:
        c = self.config
        return bool(self.state.stop_reason) or (
            c.max_steps is not None and self.state.step >= c.max_steps
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.world.device.type, dtype=torch.bfloat16)

    # ----------------------------------------------------------------- evaluation

    def _monitor(self) -> EarlyStoppingConfig | None:
        if self.config.early_stopping is not None:
            return self.config.early_stopping
        if self.val_data is not None:
            # Without early stopping, "best" still tracks val_loss (checkpoints/best).
            return EarlyStoppingConfig(patience=0, restore_best=False)
        return None

    def _evaluate(self, record: bool = True) -> dict[str, float]:
        # NT-ASGD: what is evaluated (and saved, see _save) is the average.
        with averaged(self.optimizer):
            metrics = self._evaluate_now(record)
        ntasgd = self.optimizer if isinstance(self.optimizer, NTASGD) else None
        if record and ntasgd is not None and ntasgd.observe(metrics["val_loss"], self.state.step):
            self.progress.line(
                f"NT-ASGD: val_loss {metrics['val_loss']:.6g} is worse than the best before "
                f"the last {ntasgd.param_groups[0]['nonmono']} evaluations; averaging the "
                f"weights from step {self.state.step}"
            )
        return metrics

    def _evaluate_now(self, record: bool) -> dict[str, float]:
        assert self.val_data is not None
        self.ddp.eval()
        # The training geometry: continuous validation streams keep their slots.
        sampler = Sampler(self.val_data, self.geometry, shuffle=False, rank=self.world.rank)
        total = count = 0.0
        carried: list[Any] = []
        with torch.no_grad(), self._autocast():
            for shards in sampler.steps(0):
                carried += [None] * (len(shards) - len(carried))
                for j, shard in enumerate(shards):
                    out, state = _loss_and_state(
                        self.model(self._batch(shard, self.val_data), carried[j])
                    )
                    if self.val_data.continuous:
                        carried[j] = state
                    total += float(out.total) * shard.weight
                    count += float(out.n_targets) * shard.weight
        total, count = distributed.all_sum(self.world, [total, count])
        values = {"loss": total / count if count else float("nan")}
        if self.evaluate_fn is not None:
            extra: Mapping[str, float] = {}
            if self.world.main:
                whole = Sampler(self.val_data, Geometry(self.config.batch_size), shuffle=False)
                batches = (self._batch(shard, self.val_data)
                           for shards in whole.steps(0) for shard in shards)  # fmt: skip
                with torch.no_grad():
                    extra = dict(self.evaluate_fn(self.model, batches))
            values.update(distributed.broadcast_object(self.world, extra))
        self.ddp.train()
        metrics = {f"val_{name}": value for name, value in values.items()}
        if record:
            self._evaluated_at = self.state.step
            self.progress.record(self.state.step, self.state.epoch + 1, "val", values)
            self._track_best(metrics)
            for callback in self.callbacks:
                callback.on_evaluate(self, metrics)
        return metrics

    def _track_best(self, metrics: Mapping[str, float]) -> None:
        monitor = self.monitor
        if monitor is None:
            return
        if monitor.monitor not in metrics:
            raise TrainingError(
                f"early_stopping.monitor: {monitor.monitor!r} is not among the evaluation "
                f"values ({', '.join(sorted(metrics))})"
            )
        value = metrics[monitor.monitor]
        best = self.state.best
        better = math.isfinite(value) and (
            best is None
            or (monitor.mode == "min" and value < best - monitor.min_delta)
            or (monitor.mode == "max" and value > best + monitor.min_delta)
        )
        self.schedule.observe(value)
        if better:
            before = (
                self.state.best,
                self.state.best_step,
                self.state.evaluations_without_improvement,
            )
            self.state.best = value
            self.state.best_step = self.state.step
            self.state.evaluations_without_improvement = 0
            try:
                self._save("best")
            except BaseException:
                # Ctrl-C or a full disk mid-save: `best` on disk is still the old one,
                # so the state saved next (checkpoints/last) must say so.
                (self.state.best, self.state.best_step,
                 self.state.evaluations_without_improvement) = before  # fmt: skip
                raise
            if self.run_dir is None and monitor.restore_best:
                self._best_weights = {
                    k: v.detach().clone() for k, v in self.model.state_dict().items()
                }
            return
        self.state.evaluations_without_improvement += 1
        if (
            self.config.early_stopping is not None
            # Keras' EarlyStopping: stop once `wait >= patience` (patience 2: the second
            # evaluation in a row without improvement), unlike ReduceLROnPlateau's `>`.
            and self.state.evaluations_without_improvement >= monitor.patience
        ):
            self.state.stop_reason = (
                f"early stopping: {monitor.monitor} did not improve for "
                f"{self.state.evaluations_without_improvement} evaluations "
                f"(best {best:.6g} at step {self.state.best_step})"
            )
            self.progress.line(self.state.stop_reason)

    def _restore_best(self) -> None:
        monitor = self.config.early_stopping
        if monitor is None or not monitor.restore_best or self.state.best_step is None:
            return
        if self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)
        elif self.run_dir is not None and has_checkpoint(self._checkpoint_dir("best")):
            best = load_checkpoint(self._checkpoint_dir("best"))
            self.model.load_state_dict(best.weights)
            if best.step != self.state.best_step:  # report what is on disk, never the hope
                self.progress.line(
                    f"restored the best weights on disk (step {best.step}); the best "
                    f"evaluation (step {self.state.best_step}) was not saved"
                )
                return
        self.progress.line(
            f"restored the best weights (step {self.state.best_step}, "
            f"{monitor.monitor} {self.state.best:.6g})"
        )

    # ----------------------------------------------------------------- checkpoints

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._unlock()

    def _checkpoint_dir(self, name: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "checkpoints" / name

    def _save(self, name: str, rng: dict[str, Any] | None = None, gather: bool = True) -> None:
        if self.run_dir is None:
            return
        mine = rng if rng is not None else capture_rng()
        # Every process's generators, so each resumes its own dropout stream. After
        # Ctrl-C the processes are no longer in step, so rank 0 saves its own only
        # and the others reseed on resume (their dropout masks then differ).
        states = distributed.gather_objects(self.world, mine) if gather else [mine]
        if not self.world.main:
            return
        # NT-ASGD: the average is saved as the weights, the iterates in the optimizer's
        # state; both are views of live tensors, so the save happens inside.
        with averaged(self.optimizer):
            self._write(name, states)

    def _write(self, name: str, states: list[Any]) -> None:
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state = {
            "trainer": vars(copy.copy(self.state)),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": states,
            "world_size": self.world.size,
            "carry": _plain_state(self.carry),
            # metrics.csv as it stood at this step, so a resume cuts it back to exactly this.
            "metrics_rows": self.progress.rows if hasattr(self, "progress") else None,
        }
        try:
            save_checkpoint(
                self._checkpoint_dir(name),
                weights,
                state,
                step=self.state.step,
                artifacts=self.artifacts,
            )
        except NonFiniteError as error:
            self.state.stop_reason = "non-finite weights"
            raise TrainingError(
                f"training stopped: {error}; refusing to save non-finite values. The last "
                f"checkpoint on disk is untouched."
            ) from error
        except OSError as error:  # disk full, a size limit (EFBIG), a read-only folder
            raise CheckpointError(
                f"cannot save a checkpoint to {self._checkpoint_dir(name)}: "
                f"{error.strerror or error} ({error.filename or 'a file'}); the last "
                "checkpoint on disk is untouched"
            ) from None

    def _load(self, folder: Path) -> None:
        # A damaged checkpoint is bad input (exit 2), not training that cannot go on.
        checkpoint = load_checkpoint(folder)
        for name in ("last", "best"):  # what a kill during a save left behind
            remove_temporaries(self._checkpoint_dir(name))
        state = checkpoint.state
        where = checkpoint.path_of("state")
        _check_state(state, where)
        if state["world_size"] != self.world.size:
            raise TrainingError(
                f"cannot resume {folder}: it was saved by {state['world_size']} process(es), "
                f"this run has {self.world.size}; the data order would differ"
            )
        check_fits(checkpoint.weights, self.model.state_dict(), checkpoint.path_of("weights"))
        self.model.load_state_dict(checkpoint.weights)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if isinstance(self.optimizer, NTASGD):
                self.optimizer.resumed()  # the weights saved are the average: train on
            self.schedule.load_state_dict(state["schedule"])
            self.state = TrainState(**state["trainer"])
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise CheckpointError(
                f"{where}: the training state does not fit this run ({_first_line(error)})"
            ) from None
        rows = state.get("metrics_rows")  # absent before rnnkit recorded it: cut by step
        self._metrics_rows = rows if type(rows) is int and rows >= 0 else None
        self.state.stop_reason = ""  # a resumed run goes on to its own limits
        carry = _restore_state(state.get("carry"), self.world.device)
        self.carry = carry if isinstance(carry, list) else []
        states = state["rng"]
        if self.world.rank < len(states):
            restore_rng(states[self.world.rank])
        else:
            seed_everything(self.config.seed + self.world.rank + 7919 * self.state.step)


# --------------------------------------------------------------------------- helpers


def _check_state(state: dict[str, Any], where: Path) -> None:
    """Refuse a state file that is plain data but not a trainer's state, in one line."""
    expected = {"trainer": dict, "optimizer": dict, "schedule": dict, "rng": list,
                "world_size": int}  # fmt: skip
    for key, kind in expected.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(
                f"{where}: malformed training state: {key}: expected "
                f"{'an' if kind is int else 'a'} {kind.__name__}, "
                f"got {type(value).__name__ if key in state else 'nothing'}"
            )
    fields = {f.name for f in dataclasses.fields(TrainState)}
    unknown = sorted(set(state["trainer"]) - fields)
    if unknown:
        raise CheckpointError(f"{where}: malformed training state: trainer: unknown field "
                              f"{unknown[0]!r}")  # fmt: skip
    for name in ("step", "epoch", "position"):
        value = state["trainer"].get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{where}: malformed training state: trainer.{name}: "
                                  f"expected an int ≥ 0, got {value!r}")  # fmt: skip


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _loss_and_state(result: Any) -> tuple[LossSum, Any]:
    """A model's ``(LossSum, state)``, or a one-line error naming the protocol."""
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], LossSum)):
        got = type(result[0] if isinstance(result, tuple) and result else result).__name__
        raise TypeError(
            f"model: expected forward(batch, state) to return (LossSum(total, n_targets), "
            f"state), got {got}"
        )
    return result[0], result[1]


def _plain_state(state: Any) -> Any:
    """A carried state as plain values: a tensor, or the type's name and its fields."""
    if state is None or isinstance(state, Tensor):
        return state
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return {"type": type(state).__name__, "fields": [f.detach().cpu() for f in state]}
    if isinstance(state, tuple | list):
        return [_plain_state(item) for item in state]
    raise TypeError(f"carry_state: cannot checkpoint a state of type {type(state).__name__}")


def _restore_state(plain: Any, device: torch.device) -> Any:
    from rnnkit import state as states

    if plain is None or isinstance(plain, Tensor):
        return None if plain is None else plain.to(device)
    if isinstance(plain, dict):
        kind = getattr(states, plain["type"], None)
        if kind is None:
            raise TrainingError(f"cannot resume: unknown carried state type {plain['type']!r}")
        return kind(*(f.to(device) for f in plain["fields"]))
    return [_restore_state(item, device) for item in plain]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class RngSnapshot(NamedTuple):
    """Every generator's state as the generators hand it out: cheap to take (about
    40 µs, a third of :func:`capture_rng`), so the Trainer takes one at every step
    boundary and turns only the one it saves into plain values."""

    python: tuple[Any, ...]
    numpy: tuple[Any, ...]
    torch: Tensor
    cuda: list[Tensor] | None


def snapshot_rng() -> RngSnapshot:
    """The generators' states now, not yet converted (see :func:`plain_rng`)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    numpy = np.random.get_state(legacy=True)
    assert isinstance(numpy, tuple)  # legacy=True: the tuple form, never the dict
    return RngSnapshot(random.getstate(), numpy, torch.get_rng_state(), cuda)


def plain_rng(snapshot: RngSnapshot) -> dict[str, Any]:
    """A snapshot as plain values (safe for ``weights_only`` loading)."""
    version, internal, gauss = snapshot.python
    kind, keys, pos, has_gauss, cached = snapshot.numpy
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": snapshot.torch,
    }
    if snapshot.cuda is not None:
        state["cuda"] = snapshot.cuda
    return state


def capture_rng() -> dict[str, Any]:
    """Every generator's state as plain values (safe for ``weights_only`` loading)."""
    return plain_rng(snapshot_rng())


def restore_rng(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def move(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor inside it on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # NamedTuple
        return type(batch)(*(move(item, device) for item in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: move(value, device) for key, value in batch.items()}
    import dataclasses

    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(
            batch,
            **{f.name: move(getattr(batch, f.name), device) for f in dataclasses.fields(batch)},
        )
    return batch
