"""The Trainer: the training loop, exact under accumulation, resumable, distributable.

The loop, per optimizer step (``accumulate`` micro-batches, a "window")::

    for each micro-batch of the window:                 # DDP syncs on the last only
        loss_sum, count = model(batch)                  # sums over real targets
        loss_sum.backward()                             # un-normalised
    N = Σ count over the window and all processes       # one all-reduce
    grads *= world_size / N                             # DDP averaged: now Σ ∂/∂θ / N
    norm = ‖grads‖; skip the update if not finite       # counted, logged
    clip (norm, value); set the scheduled lr; optimizer.step()   # once per window

Dividing once by the window's real target count, after every backward, is what
makes k micro-batches of b equal one batch of k·b with ragged lengths: the loss is
the mean over all targets of the window, not a mean of per-batch means. Clipping,
weight decay (the optimizer's), the learning-rate schedule and the step counter
act once per window, and the last, shorter window of an epoch still steps.

State that makes a resumed run bitwise equal to an uninterrupted one: weights,
optimizer and schedule state, step, epoch, the position in the epoch's data order
(a function of seed and epoch, see :mod:`rnnkit.training.order`), best score,
early-stopping counters and every process's random-number generators (Python,
NumPy, torch, CUDA), captured at window boundaries. Checkpoints are written by
:mod:`rnnkit.training.checkpoint` (atomic, hashed, no pickle) into
``RUN/checkpoints/last`` and ``RUN/checkpoints/best``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.bptt.truncated import TBPTTConfig, Window, truncated_bptt
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
from rnnkit.training.order import EpochOrder, Shard
from rnnkit.training.progress import Progress, ProgressMode
from rnnkit.training.schedule import Schedule, ScheduleConfig

OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop", "adagrad"]

MAX_LR = 1e3  # see OptimizerConfig.lr
# Micro-batches per step: past this one step would take days, and a whole epoch is
# already one window (the last, shorter window of an epoch still steps).
MAX_ACCUMULATE = 2**20


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class OptimizerConfig:
    """A torch.optim optimizer.

    Attributes:
        name: ``sgd``, ``adam``, ``adamw``, ``rmsprop`` or ``adagrad``.
        lr: the base learning rate (the schedule scales it), in (0, 1000]: the
            largest rates in use (plain SGD on word-level LMs) are about 20, and one
            beyond 1000 only turns the weights into inf.
        weight_decay: L2 penalty (decoupled for ``adamw``), applied once per update;
            finite, ≥ 0.
        momentum: ``sgd`` and ``rmsprop``, in [0, 1) (1 and above never decays).
        nesterov: ``sgd`` with momentum.
        betas: ``adam``/``adamw``, each in [0, 1).
        eps: ``adam``/``adamw``/``rmsprop``/``adagrad``, finite, > 0.

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

    def __post_init__(self) -> None:
        check_range(self, "lr", 0.0, MAX_LR, open_low=True)
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
            run (wall clock of this process; a resumed run gets the time again).
        batch_size: examples per micro-batch per process.
        accumulate: micro-batches per optimizer step (at most 2^20).
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
        precision: ``fp32``, or ``bf16`` autocast for the forward pass.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        shuffle: reshuffle the training data every epoch.
        progress: ``auto`` (a bar on a terminal, lines otherwise), ``bar``, ``lines``
            or ``off``.
        tensorboard: also log to ``RUN/tensorboard``.
        carry_state: language-model streams: the batches of an epoch are consecutive
            chunks of the same streams, and ``model(batch, state)`` returns
            ``(LossSum, state)``; the state is carried to the next micro-batch
            detached (truncated BPTT at chunk boundaries, the repackage_hidden of
            word-language-model training), reset at each epoch start, and saved in
            checkpoints. Needs ``shuffle = false``.
        tbptt: TBPTT(k1, k2) of Williams & Peng within each chunk
            (:func:`rnnkit.bptt.truncated.truncated_bptt`), with the state carried
            across chunks; needs ``carry_state``. The model is then a sequence model,
            ``model(inputs, state) -> (outputs, state)`` over ``batch.inputs``
            ``(B, T, ...)``, with ``model.window_loss(outputs, batch, window) ->
            LossSum`` for the outputs of ``window.loss_start … window.stop − 1``.
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
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "auto"
    shuffle: bool = True
    progress: ProgressMode = "auto"
    tensorboard: bool = False
    carry_state: bool = False
    tbptt: TBPTTConfig | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig | None = None

    def __post_init__(self) -> None:
        # Counts must fit the int64 that torch and NumPy compute them in.
        counts = ("epochs", "batch_size", "max_bad_steps", "max_steps", "eval_every")
        check_sizes(self, *counts, "checkpoint_every", at_most=MAX_INT)
        check_sizes(self, "accumulate", at_most=MAX_ACCUMULATE)
        check_seed(self)
        if self.tbptt is not None and not self.carry_state:
            raise ValueError("tbptt: truncated BPTT trains streams; set carry_state = true")
        if self.carry_state and self.shuffle:
            raise ValueError("carry_state: the batches must stay in order; set shuffle = false")
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
    position: int = 0  # micro-batches of that epoch already used
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


class Trainer:
    """Train a model that maps a batch to a :class:`~rnnkit.losses.LossSum`.

    Args:
        model: ``model(batch) -> LossSum(total, n_targets)``: the loss summed over the
            batch's real targets and their number.
        config: the loop's configuration.
        train: the training examples (anything with ``len`` and indexing).
        collate: turns a list of examples into a batch (tensors anywhere inside a
            tuple, list, dict or dataclass are moved to the device).
        val: evaluation examples (``val_loss`` = summed loss / targets).
        evaluate: extra evaluation metrics, ``evaluate(model, batches)`` → dict;
            run on rank 0 over all of ``val``.
        run_dir: the run folder (config.toml, metrics.csv, checkpoints/); None keeps
            nothing on disk.
        resume: continue from ``run_dir/checkpoints/last`` if it exists.
        artifacts: files saved with every checkpoint (vocabularies, …), name → bytes.
        callbacks: :class:`Callback` hooks.
        config_to_save: the resolved configuration written to ``run_dir/config.toml``
            (default: ``config``).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig,
        train: Sequence[Any],
        collate: Callable[[list[Any]], Any],
        *,
        val: Sequence[Any] | None = None,
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
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        self.model = model.to(self.world.device)
        self.train_data = train
        self.val_data = val
        self.collate = collate
        self.evaluate_fn = evaluate
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.artifacts = dict(artifacts or {})
        self.callbacks = list(callbacks)
        self.order = EpochOrder(
            len(train),
            config.batch_size,
            seed=config.seed,
            shuffle=config.shuffle,
            rank=self.world.rank,
            world_size=self.world.size,
        )
        self.steps_per_epoch = -(-len(self.order) // config.accumulate)
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
        self.carry: Any = None  # the detached state carried between stream chunks
        self._window_carry: Any = None
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
                f"(epoch {self.state.epoch + 1}, micro-batch {self.state.position})"
            )

    # ----------------------------------------------------------------- public

    def fit(self) -> TrainResult:
        """Train until the epochs or ``max_steps`` are done, or early stopping."""
        c = self.config
        last: dict[str, float] = {}
        try:
            while self.state.epoch < c.epochs and not self._done():
                self.progress.start_epoch(
                    self.state.epoch + 1, self.steps_per_epoch, self.state.position // c.accumulate
                )
                for metrics in self._epoch():
                    last = metrics
                    if self._done():
                        break
                if self._done() and self.state.position < len(self.order):
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
            self.carry = self._window_carry
            self._save("last", rng=self._window_rng, gather=False)
            self.progress.line(f"interrupted at step {self.state.step}; saved checkpoints/last")
            self.progress.close()
            raise Interrupted() from interrupt
        except (TrainingError, CheckpointError):
            self.progress.close()
            raise
        finally:
            self._unlock()
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

    def _epoch(self) -> Iterator[dict[str, float]]:
        c = self.config
        shards = self.order.batches(self.state.epoch, self.state.position)
        window: list[Shard] = []
        if self.state.position == 0:
            self.carry = None  # a new epoch starts the streams afresh
        self._window_rng = capture_rng()
        self._window_carry = self.carry
        for shard in shards:
            window.append(shard)
            remaining = len(self.order) - self.state.position - len(window)
            if len(window) < c.accumulate and remaining > 0:
                continue
            metrics = self._step(window)
            window = []
            if c.max_minutes is not None and self.progress.seconds >= 60 * c.max_minutes:
                self.state.stop_reason = "max_minutes"  # Lightning's max_time
            self._window_rng = capture_rng()
            self._window_carry = self.carry
            for callback in self.callbacks:
                callback.on_step_end(self, metrics)
            if c.eval_every and self.state.step % c.eval_every == 0 and self.val_data is not None:
                metrics = {**metrics, **self._evaluate()}
            if c.checkpoint_every and self.state.step % c.checkpoint_every == 0:
                self._save("last")
            yield metrics
            if self._done():
                return

    def _step(self, window: list[Shard]) -> dict[str, float]:
        """One optimizer step over ``window``'s micro-batches."""
        c = self.config
        started = time.perf_counter()
        self.ddp.train()
        loss_sum = 0.0
        tokens = 0.0
        if c.tbptt is not None:
            loss_sum, tokens = self._tbptt_window(window)
        for i, shard in enumerate(window if c.tbptt is None else []):
            batch = move(
                self.collate([self.train_data[j] for j in shard.indices]), self.world.device
            )
            sync = i == len(window) - 1
            no_sync = getattr(self.ddp, "no_sync", None)
            with (
                no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext(),
                self._autocast(),
            ):
                if self.config.carry_state:
                    out, state = self.ddp(batch, self.carry)
                    # The one visible line of truncated BPTT: the next chunk starts from
                    # this state's value, and no gradient flows back into this chunk.
                    self.carry = detach_state(state)
                else:
                    out = self.ddp(batch)
                if not isinstance(out, LossSum):
                    raise TypeError(
                        f"model: expected forward(batch) to return LossSum(total, n_targets), "
                        f"got {type(out).__name__}"
                    )
                # A stand-in shard (weight 0) counts nothing; × 1.0 would only add an op.
                total = out.total if shard.weight == 1.0 else out.total * shard.weight
            total.backward()  # type: ignore[no-untyped-call]
            loss_sum += float(total.detach())
            tokens += float(out.n_targets) * shard.weight
        loss_sum, tokens = distributed.all_sum(self.world, [loss_sum, tokens])
        params = [p for p in self.model.parameters() if p.grad is not None]
        metrics: dict[str, float] = {"loss": loss_sum / tokens if tokens else float("nan")}
        if tokens == 0:
            self.optimizer.zero_grad(set_to_none=True)
            self._skip(window, metrics, "the window has no targets")
            return metrics
        # DDP averaged the sums over processes; the TBPTT path summed them itself.
        scale = (self.world.size if c.tbptt is None else 1.0) / tokens
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, scale)  # one call, the products of p.grad.mul_(scale)
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        metrics["grad_norm"] = norm
        if not math.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._skip(window, metrics, f"non-finite gradient norm ({norm})")
            return metrics
        clipped = c.clip_norm is not None and norm > c.clip_norm
        if c.clip_norm is not None and clipped:
            torch.nn.utils.clip_grads_with_norm_(params, c.clip_norm, torch.tensor(norm))
        if c.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, c.clip_value)
        rates = self.schedule.apply(self.state.step)
        self._undo.save()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not self._undo.finite():
            # A finite gradient can still make an infinite update (a huge rate, Adam's
            # division by a vanishing second moment): undone, and counted as a bad step.
            self._undo.restore()
            self._skip(window, metrics, "the update made a weight non-finite; undone")
            return metrics
        # The state moves on only once the update is done: an interrupt before this
        # line resumes at the start of the window.
        self.state.step += 1
        self.state.position += len(window)
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

    def _tbptt_window(self, window: list[Shard]) -> tuple[float, float]:
        """Forward and backward of a window's chunks by TBPTT(k1, k2); (loss, targets).

        DDP's hooks expect one forward per backward; TBPTT makes several of each, so
        this path runs the bare model and sums the gradients over processes itself.
        """
        config = self.config.tbptt
        assert config is not None
        loss_sum = tokens = 0.0
        model: Any = self.model
        for shard in window:
            batch = move(
                self.collate([self.train_data[j] for j in shard.indices]), self.world.device
            )
            counts: list[float] = []
            weight = shard.weight

            def window_loss(
                outputs: Tensor,
                part: Window,
                batch: Any = batch,
                counts: list[float] = counts,
                weight: float = weight,
            ) -> Tensor:
                out = model.window_loss(outputs, batch, part)
                counts.append(float(out.n_targets))
                total: Tensor = out.total * weight
                return total

            with self._autocast():
                result = truncated_bptt(model, batch.inputs, window_loss, config, self.carry)
            self.carry = result.state
            loss_sum += sum(result.losses)
            tokens += sum(counts) * weight
        if self.world.distributed:
            for p in self.model.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
        return loss_sum, tokens

    def _skip(self, window: list[Shard], metrics: dict[str, float], why: str) -> None:
        self.state.position += len(window)
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
        assert self.val_data is not None
        self.ddp.eval()
        order = EpochOrder(
            len(self.val_data),
            self.config.batch_size,
            seed=0,
            shuffle=False,
            rank=self.world.rank,
            world_size=self.world.size,
        )
        total = count = 0.0
        carry = None
        with torch.no_grad(), self._autocast():
            for shard in order.batches(0):
                batch = move(
                    self.collate([self.val_data[j] for j in shard.indices]), self.world.device
                )
                if self.config.tbptt is not None:
                    # The whole chunk as one window: evaluation needs no truncation.
                    steps = batch.inputs.shape[1]
                    sequence: Any = self.model
                    outputs, carry = sequence(batch.inputs, carry)
                    out = sequence.window_loss(outputs, batch, Window(0, 0, steps, steps))
                elif self.config.carry_state:
                    out, carry = self.model(batch, carry)
                else:
                    out = self.model(batch)
                total += float(out.total) * shard.weight
                count += float(out.n_targets) * shard.weight
        total, count = distributed.all_sum(self.world, [total, count])
        values = {"loss": total / count if count else float("nan")}
        if self.evaluate_fn is not None:
            extra: Mapping[str, float] = {}
            if self.world.main:
                batches = (
                    move(self.collate([self.val_data[j] for j in s.indices]), self.world.device)
                    for s in EpochOrder(
                        len(self.val_data), self.config.batch_size, seed=0, shuffle=False
                    ).batches(0)
                )
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
            self.schedule.load_state_dict(state["schedule"])
            self.state = TrainState(**state["trainer"])
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise CheckpointError(
                f"{where}: the training state does not fit this run ({_first_line(error)})"
            ) from None
        rows = state.get("metrics_rows")  # absent before rnnkit recorded it: cut by step
        self._metrics_rows = rows if type(rows) is int and rows >= 0 else None
        self.state.stop_reason = ""  # a resumed run goes on to its own limits
        self.carry = _restore_state(state.get("carry"), self.world.device)
        states = state["rng"]
        if self.world.rank < len(states):
            restore_rng(states[self.world.rank])
        else:
            seed_everything(self.config.seed + self.world.rank + 7919 * self.state.step)


# --------------------------------------------------------------------------- helpers


class Undo:
    """The weights and optimizer state from before a step, so that a step whose update
    made a weight non-finite can be taken back exactly.

    :meth:`save` copies every parameter and every tensor of the optimizer's state
    into buffers allocated once (again only when the state's shapes change: after
    the optimizer's first step creates it), with one fused ``torch._foreach_copy_``;
    :meth:`finite` is one fused 2-norm over the parameters and a single host sync;
    :meth:`restore` copies them back and drops state the step created. The cost is
    one device-memory copy of the weights and the optimizer state per step, and as
    much memory again; recomputing the step is no alternative, since the update of
    most optimizers cannot be inverted.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params: list[Tensor] = [p for g in optimizer.param_groups for p in g["params"]]
        self.buffers: list[Tensor] = []
        self.keys: list[tuple[Tensor, str]] = []
        self.plain: dict[Tensor, dict[str, Any]] = {}  # non-tensor state values, as they were

    def save(self) -> None:
        state = self.optimizer.state
        self.keys = []
        self.plain = {}
        sources = list(self.params)
        for p in self.params:
            entries = state.get(p, {})
            self.plain[p] = {k: v for k, v in entries.items() if not isinstance(v, Tensor)}
            for key, value in entries.items():
                if isinstance(value, Tensor):
                    self.keys.append((p, key))
                    sources.append(value)
        if [b.shape for b in self.buffers] != [t.shape for t in sources]:
            self.buffers = [torch.empty_like(t) for t in sources]
        with torch.no_grad():
            torch._foreach_copy_(self.buffers, sources)

    def finite(self) -> bool:
        """Every parameter is finite: a NaN or ±inf anywhere makes its 2-norm non-finite."""
        if not self.params:
            return True
        with torch.no_grad():
            norms = torch._foreach_norm(self.params)  # fused; ~20× faster than ord=inf on CPU
            if bool(torch.stack([n.to(norms[0].device) for n in norms]).isfinite().all()):
                return True
            # The 2-norm also overflows for finite weights past ~1e19: decide exactly.
            return all(bool(p.isfinite().all()) for p in self.params)

    def restore(self) -> None:
        state = self.optimizer.state
        saved = self.buffers[len(self.params) :]
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.buffers[: len(self.params)])
            for (p, key), buffer in zip(self.keys, saved, strict=True):
                state[p][key].copy_(buffer)
        kept = {id(p) for p, _ in self.keys}
        for p in self.params:
            if id(p) not in kept and not self.plain.get(p):
                state.pop(p, None)  # the step created this state: it had none before
            elif p in state:
                state[p].update(self.plain.get(p, {}))


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


def capture_rng() -> dict[str, Any]:
    """Every generator's state as plain values (safe for ``weights_only`` loading)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


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
