"""carry_state: language-model streams trained chunk by chunk with a carried, detached state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.bptt.truncated import TBPTTConfig, Window, truncated_bptt
from rnnkit.losses import LossSum, masked_cross_entropy
from rnnkit.state import HiddenState
from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig
from tests.training.toy import weights_of

VOCAB = 7


class StreamLM(nn.Module):
    """Next-token prediction over chunks (B streams × T steps); records what it is given."""

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


def chunks(n: int = 12, streams: int = 3, steps: int = 6) -> list[Tensor]:
    # One long sequence per stream, cut into consecutive chunks that overlap by one
    # token (the last input of a chunk is the first target of the next).
    g = torch.Generator().manual_seed(0)
    text = torch.randint(0, VOCAB, (streams, n * (steps - 1) + 1), generator=g)
    return [text[:, k * (steps - 1) : k * (steps - 1) + steps] for k in range(n)]


def make(run_dir: Path | None = None, resume: bool = False, **changes: Any) -> Trainer:
    torch.manual_seed(0)
    config = TrainerConfig(
        **{
            "epochs": 2,
            "batch_size": 1,
            "shuffle": False,
            "carry_state": True,
            "progress": "off",
            "device": "cpu",
            "optimizer": OptimizerConfig("adam", lr=0.01),
            **changes,
        }
    )
    return Trainer(
        StreamLM(), config, chunks(), lambda items: items[0], run_dir=run_dir, resume=resume
    )


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
    # One window of two chunks: chunk 1 runs with the weights chunk 0 ran with, so
    # the state it receives must equal chunk 0's final state computed by hand.
    trainer = make(epochs=1, max_steps=1, accumulate=2)
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


def test_carried_state_is_checkpointed_and_resume_is_exact(tmp_path: Path) -> None:
    whole = make()
    whole.fit()
    first = make(tmp_path, max_steps=17)
    first.fit()
    resumed = make(tmp_path, resume=True)
    assert resumed.carry is not None
    torch.testing.assert_close(resumed.carry.h, first.carry.h, rtol=0, atol=0)
    resumed.fit()
    for name, value in weights_of(whole.model).items():
        assert torch.equal(weights_of(resumed.model)[name], value), name


def test_carry_state_needs_an_ordered_stream() -> None:
    with pytest.raises(ValueError, match="carry_state: the batches must stay in order"):
        TrainerConfig(carry_state=True, shuffle=True)


class Chunk(NamedTuple):
    inputs: Tensor  # (B, T) tokens
    targets: Tensor  # (B, T) the next tokens


class SequenceLM(nn.Module):
    """The same network as a sequence model, with a per-window loss, for TBPTT."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 5)
        self.rnn = Recurrent("gru", 5, 6)
        self.out = nn.Linear(6, VOCAB)

    def forward(self, inputs: Tensor, state: HiddenState | None) -> tuple[Tensor, HiddenState]:
        h, final = self.rnn(self.embed(inputs), state)
        return self.out(h), final

    def window_loss(self, logits: Tensor, chunk: Chunk, window: Window) -> LossSum:
        targets = chunk.targets[:, window.loss_start : window.stop]
        return masked_cross_entropy(logits, targets, torch.ones_like(targets, dtype=torch.bool))


def tbptt_trainer(tbptt: TBPTTConfig, run_dir: Path | None = None, **changes: Any) -> Trainer:
    torch.manual_seed(0)
    config = TrainerConfig(
        **{
            "epochs": 2, "batch_size": 1, "shuffle": False, "carry_state": True,
            "tbptt": tbptt, "progress": "off", "device": "cpu",
            "optimizer": OptimizerConfig("sgd", lr=0.5), **changes,
        }
    )  # fmt: skip
    data = [Chunk(c[:, :-1], c[:, 1:]) for c in chunks()]
    return Trainer(SequenceLM().double(), config, data, lambda items: items[0], run_dir=run_dir)


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
    # By hand: TBPTT(2, 4) over chunk 0, normalise by its targets, SGD step; chunk 1
    # from the carried state.
    state = None
    for chunk in [Chunk(c[:, :-1], c[:, 1:]) for c in chunks()[:2]]:
        counts: list[float] = []

        def loss(out: Tensor, w: Window, chunk: Chunk = chunk, counts: list = counts) -> Tensor:
            part = model.window_loss(out, chunk, w)
            counts.append(float(part.n_targets))
            return part.total

        result = truncated_bptt(model, chunk.inputs, loss, config, state)
        state = result.state
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad / sum(counts)
                p.grad = None
    for name, value in weights_of(model).items():
        torch.testing.assert_close(weights_of(trainer.model)[name], value, rtol=0, atol=1e-12)


def test_tbptt_needs_carried_state() -> None:
    with pytest.raises(ValueError, match="tbptt: truncated BPTT trains streams"):
        TrainerConfig(tbptt=TBPTTConfig(2), shuffle=False)
