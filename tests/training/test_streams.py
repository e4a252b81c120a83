"""Streams: continuous examples trained chunk by chunk, each micro-batch slot's state
carried (detached) into the next step, and TBPTT(k1, k2) within a chunk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.bptt.truncated import TBPTTConfig, Window, truncated_bptt
from rnnkit.losses import LossSum, masked_cross_entropy
from rnnkit.state import HiddenState
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig, TrainingError
from tests.training.toy import weights_of

VOCAB = 7
ROWS = 3


class StreamLM(nn.Module):
    """Next-token prediction over chunks (B rows × T + 1 tokens); records what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 5)
        self.rnn = Recurrent("gru", 5, 6)
        self.out = nn.Linear(6, VOCAB)
        self.seen: list[HiddenState | None] = []

    def forward(self, chunk: Tensor, state: HiddenState | None) -> tuple[LossSum, HiddenState]:
        self.seen.append(state)
        h, final = self.rnn(self.embed(chunk[:, :-1]), state)  # (B, T, H)
        logits = self.out(h)
        targets = chunk[:, 1:]
        return masked_cross_entropy(
            logits, targets, torch.ones_like(targets, dtype=torch.bool)
        ), final


def text(n: int = 12, steps: int = 6) -> Tensor:
    """One long sequence per row, ``(ROWS, n·(steps − 1) + 1)``."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (ROWS, n * (steps - 1) + 1), generator=g)


def chunks(n: int = 12, steps: int = 6) -> list[Tensor]:
    # Consecutive chunks of every row that overlap by one token (the last input of a
    # chunk is the first target of the next), ``(ROWS, steps)`` each.
    rows = text(n, steps)
    return [rows[:, k * (steps - 1) : k * (steps - 1) + steps] for k in range(n)]


def examples() -> Examples[Tensor]:
    """One row's chunk per example, chunk-major (example k·ROWS + r: chunk k of row r)."""
    return Examples([chunk[r] for chunk in chunks() for r in range(ROWS)], continuous=True)


def make(run_dir: Path | None = None, resume: bool = False, **changes: Any) -> Trainer:
    torch.manual_seed(0)
    config = TrainerConfig(
        **{
            "epochs": 2,
            "batch_size": ROWS,
            "progress": "off",
            "device": "cpu",
            "optimizer": OptimizerConfig("adam", lr=0.01),
            **changes,
        }
    )
    return Trainer(StreamLM(), config, examples(), torch.stack, run_dir=run_dir, resume=resume)


def test_the_state_is_carried_detached_and_reset_each_epoch() -> None:
    trainer = make()
    trainer.fit()
    seen = trainer.model.seen  # type: ignore[union-attr]
    assert len(seen) == 24
    assert seen[0] is None and seen[12] is None  # each epoch starts afresh
    for state in seen[1:12] + seen[13:]:
        assert state is not None and not state.h.requires_grad and state.h.grad_fn is None
    assert seen[5] is not None and seen[5].h.shape == (1, 3, 6)


def test_the_next_chunk_starts_from_the_previous_final_state() -> None:
    # Step 1 ran with the initial weights, so the state step 2 receives must equal
    # chunk 0's final state computed by hand from them.
    trainer = make(epochs=1, max_steps=2)
    trainer.fit()
    seen = trainer.model.seen  # type: ignore[union-attr]
    torch.manual_seed(0)
    initial = StreamLM()  # the same initial weights as the trainer's model
    with torch.no_grad():
        _, final = initial(chunks()[0], None)
    assert seen[1] is not None
    # Training and no-grad calls may run different backends (auto measures each mode
    # on its own): the same numbers up to float32 rounding.
    torch.testing.assert_close(seen[1].h, final.h)


def test_each_micro_batch_slot_carries_its_own_rows() -> None:
    # One row per micro-batch, three micro-batches a step: slot j holds row j at every
    # step, and step 2's slot j starts from row j's state after chunk 0.
    trainer = make(epochs=1, max_steps=2, batch_size=1, accumulate=3)
    trainer.fit()
    seen = trainer.model.seen  # type: ignore[union-attr]
    assert len(seen) == 6 and seen[:3] == [None, None, None]
    torch.manual_seed(0)
    initial = StreamLM()
    for j in range(ROWS):
        with torch.no_grad():
            _, final = initial(chunks()[0][j : j + 1], None)
        state = seen[3 + j]
        assert state is not None and state.h.shape == (1, 1, 6)
        torch.testing.assert_close(state.h, final.h)


def test_accumulated_slots_train_what_the_whole_batch_trains() -> None:
    # float64: the two orders of summation agree to rounding.
    runs = []
    for changes in ({"batch_size": ROWS}, {"batch_size": 1, "accumulate": ROWS}):
        trainer = make(epochs=1, max_steps=5, **changes)  # type: ignore[arg-type]
        trainer.model.double()
        trainer.fit()
        runs.append(weights_of(trainer.model))
    for name, value in runs[0].items():
        torch.testing.assert_close(runs[1][name], value, rtol=0, atol=1e-12)


def test_carried_state_is_checkpointed_and_resume_is_exact(tmp_path: Path) -> None:
    whole = make()
    whole.fit()
    first = make(tmp_path, max_steps=17)
    first.fit()
    resumed = make(tmp_path, resume=True)
    assert len(resumed.carry) == 1
    torch.testing.assert_close(resumed.carry[0].h, first.carry[0].h, rtol=0, atol=0)
    resumed.fit()
    for name, value in weights_of(whole.model).items():
        assert torch.equal(weights_of(resumed.model)[name], value), name


def test_streams_are_never_shuffled() -> None:
    plain, shuffled = make(max_steps=6), make(max_steps=6, shuffle=True)
    plain.fit()
    shuffled.fit()
    for name, value in weights_of(plain.model).items():
        assert torch.equal(weights_of(shuffled.model)[name], value), name


@dataclass(frozen=True)
class Chunk:
    """Rows' inputs and next tokens ``(B, T)``; targets before ``loss_from`` do not count."""

    inputs: Tensor
    targets: Tensor
    loss_from: int = 0

    @property
    def num_steps(self) -> int:
        return int(self.inputs.shape[1])

    def steps(self, start: int, stop: int, loss_from: int) -> Chunk:
        cut = slice(start, stop)
        return Chunk(self.inputs[:, cut], self.targets[:, cut], max(0, loss_from - start))


def collate(rows: list[Tensor]) -> Chunk:
    stacked = torch.stack(rows)  # (B, T + 1)
    return Chunk(stacked[:, :-1], stacked[:, 1:])


class SequenceLM(nn.Module):
    """The same network on chunks that TBPTT can cut in time."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 5)
        self.rnn = Recurrent("gru", 5, 6)
        self.out = nn.Linear(6, VOCAB)

    def logits(self, inputs: Tensor, state: HiddenState | None) -> tuple[Tensor, HiddenState]:
        h, final = self.rnn(self.embed(inputs), state)
        return self.out(h), final

    def forward(self, chunk: Chunk, state: HiddenState | None) -> tuple[LossSum, HiddenState]:
        logits, final = self.logits(chunk.inputs, state)
        return window_loss(logits[:, chunk.loss_from :], chunk.targets[:, chunk.loss_from :]), final


def window_loss(logits: Tensor, targets: Tensor) -> LossSum:
    return masked_cross_entropy(logits, targets, torch.ones_like(targets, dtype=torch.bool))


def tbptt_trainer(tbptt: TBPTTConfig, run_dir: Path | None = None, **changes: Any) -> Trainer:
    torch.manual_seed(0)
    config = TrainerConfig(
        **{
            "epochs": 2, "batch_size": ROWS, "tbptt": tbptt, "progress": "off",
            "device": "cpu", "optimizer": OptimizerConfig("sgd", lr=0.5), **changes,
        }
    )  # fmt: skip
    return Trainer(SequenceLM().double(), config, examples(), collate, run_dir=run_dir)


def test_tbptt_with_k1_equal_to_the_chunk_is_plain_carried_state_training() -> None:
    plain = make(optimizer=OptimizerConfig("sgd", lr=0.5))
    plain.model.double()
    plain.fit()
    tbptt = tbptt_trainer(TBPTTConfig(5))  # chunks of 5 steps: one window each
    tbptt.fit()
    for name, value in weights_of(plain.model).items():
        torch.testing.assert_close(weights_of(tbptt.model)[name], value, rtol=0, atol=1e-12)


def test_tbptt_k1_k2_step_equals_the_engine_run_by_hand() -> None:
    config = TBPTTConfig(2, 4)
    trainer = tbptt_trainer(config, max_steps=2)
    model = SequenceLM().double()
    model.load_state_dict(weights_of(trainer.model))
    trainer.fit()
    # By hand, the oracle: TBPTT(2, 4) over chunk 0, normalise by its targets, SGD
    # step; chunk 1 from the carried state.
    state = None
    for chunk in [collate(list(c)) for c in chunks()[:2]]:
        counts: list[float] = []

        def loss(out: Tensor, w: Window, chunk: Chunk = chunk, counts: list = counts) -> Tensor:
            part = window_loss(out, chunk.targets[:, w.loss_start : w.stop])
            counts.append(float(part.n_targets))
            return part.total

        result = truncated_bptt(model.logits, chunk.inputs, loss, config, state)
        state = result.state
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad / sum(counts)
                p.grad = None
    for name, value in weights_of(model).items():
        torch.testing.assert_close(weights_of(trainer.model)[name], value, rtol=0, atol=1e-12)


def test_tbptt_needs_batches_that_can_be_cut_in_time() -> None:
    trainer = make(tbptt=TBPTTConfig(2))  # plain tensors: no num_steps, no steps()
    with pytest.raises(TrainingError, match=r"tbptt: .*\(Tensor\) cannot be cut in time"):
        trainer.fit()
