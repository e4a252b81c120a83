"""Polyphonic music: a real chorale's piano roll overfit with Bernoulli outputs per pitch."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models.music import MusicConfig, PianoRollModel, RollBatch, from_roll, to_roll
from tests.models.fixtures import chorale_roll, overfit


def test_overfits_a_real_chorale_and_its_greedy_continuation_matches() -> None:
    roll = chorale_roll()  # (144, 53) BWV 66.6 on a 16th grid
    # Two halves of the chorale. (Shorter cuts would hold identical openings with
    # different continuations, the chorale's repeated phrase: no model fits those.)
    pieces = torch.stack([roll[:72], roll[72:144]])
    batch = RollBatch(pieces, torch.tensor([72, 72]))
    torch.manual_seed(0)
    model = PianoRollModel(MusicConfig(pitches=53, embed=64, hidden=128, cell="lstm"))
    out, state = model(batch)
    assert state is None  # whole pieces: no state carried
    untrained = float(out.total.detach()) / 142
    # NLL per frame in nats, summed over 53 pitches: about 37 untrained, 0.03 to 0.05
    # here across seeds and thread counts (0.15 leaves a margin of 3).
    assert overfit(model, batch, 1000, lr=0.01) < 0.15 < untrained / 200
    # Thresholded next-frame predictions reproduce every frame after the first.
    with torch.no_grad():
        logits, _ = model.logits(pieces[:, :-1])
    assert torch.equal((logits > 0).float(), pieces[:, 1:])


def test_loss_is_nll_per_frame_and_ignores_padding() -> None:
    torch.manual_seed(1)
    model = PianoRollModel(MusicConfig(pitches=6, embed=4, hidden=5))
    rolls = (torch.rand(2, 7, 6) > 0.5).float()
    lengths = torch.tensor([7, 4])
    out, _ = model(RollBatch(rolls, lengths))
    assert int(out.n_targets) == 6 + 3  # frames predicted: lengths − 1
    noisy = rolls.clone()
    noisy[1, 4:] = 1.0 - noisy[1, 4:]  # change only padded frames
    grads = []
    for roll in (rolls, noisy):
        model.zero_grad()
        loss = model(RollBatch(roll, lengths))[0].total
        loss.backward()
        grads.append([loss.detach(), *[p.grad.clone() for p in model.parameters()]])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    logits, _ = model.logits(rolls[:1, :-1])
    manual = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, rolls[:1, 1:], reduction="sum"
    )
    first, _ = model(RollBatch(rolls[:1], lengths[:1]))
    torch.testing.assert_close(first.total, manual)


def test_generation_samples_frames_deterministically_for_a_seed() -> None:
    torch.manual_seed(2)
    model = PianoRollModel(MusicConfig(pitches=8, embed=4, hidden=6))
    prime = (torch.rand(2, 3, 8) > 0.5).float()
    a = model.generate(prime, 5, generator=torch.Generator().manual_seed(7))
    b = model.generate(prime, 5, generator=torch.Generator().manual_seed(7))
    assert a.shape == (2, 5, 8) and torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prime, 5, temperature=0.0)
    # sample() streams the same frames, one at a time, without gradients.
    model.eval()
    stream = model.sample(prime, generator=torch.Generator().manual_seed(7))
    frames = [next(stream) for _ in range(5)]
    assert torch.equal(torch.stack(frames, dim=1), a) and not frames[0].requires_grad
    assert torch.is_grad_enabled()  # nothing leaked from the generator


def test_rolls_round_trip_with_a_silent_start_frame() -> None:
    roll = to_roll([[60, 64], [], [62]], 60, 64)
    assert roll.shape == (4, 5) and roll[0].sum() == 0
    assert from_roll(roll[1:], 60) == [[60, 64], [], [62]]
