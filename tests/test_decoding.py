"""Greedy, sampling and beam search against hand-made step decoders with known answers.

Two kinds of model: a table of next-token logits indexed by the previous token
(answers by hand), and a tiny embedding → rnnkit ``Recurrent`` → linear model
whose state (``HiddenState`` or ``LSTMState``, batch in dim 1) carries the whole
history, so a beam that followed the wrong parent through ``reorder_state``
would report scores its tokens do not have.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.decoding import (
    GREEDY_TEMPERATURE,
    BeamResult,
    Decoded,
    StepDecoder,
    beam_search,
    greedy,
    sample,
    stream,
)
from rnnkit.state import map_state

EOS, BOS, A, B, C, D = range(6)  # the vocabulary of the hand-made tables


class Steps(NamedTuple):
    """The table model's state: steps taken by each row, (B,)."""

    steps: Tensor


class TableModel(nn.Module):
    """logits_t = table[y_{t−1}]: the next token depends on the previous one only."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.calls = 0
        self.seen_training: list[bool] = []
        self.seen_grad: list[bool] = []

    def decode_step(self, tokens: Tensor, state: Steps) -> tuple[Tensor, Steps]:
        self.calls += 1
        self.seen_training.append(self.training)
        self.seen_grad.append(torch.is_grad_enabled())
        table = self.get_buffer("table")
        # Finished rows must be fed real tokens, not pad (−1 would index from the end).
        assert ((tokens >= 0) & (tokens < table.shape[0])).all(), tokens
        return table[tokens], Steps(state.steps + 1)

    def reorder_state(self, state: Steps, index: Tensor) -> Steps:
        return Steps(state.steps.index_select(0, index))

    def initial_state(self, batch: int) -> Steps:
        return Steps(torch.zeros(batch, dtype=torch.long))


def table_model(rows: dict[int, dict[int, float]], vocab: int = 6) -> TableModel:
    """A table from next-token probabilities; unlisted tokens get probability 1e-4."""
    probs = torch.full((vocab, vocab), 1e-4, dtype=torch.float64)
    for prev, nexts in rows.items():
        for token, p in nexts.items():
            probs[prev, token] = p
    return TableModel(probs.log())


def random_table(vocab: int, seed: int, scale: float = 2.0) -> TableModel:
    g = torch.Generator().manual_seed(seed)
    return TableModel(scale * torch.randn(vocab, vocab, generator=g, dtype=torch.float64))


class RecurrentModel(nn.Module):
    """Embedding → one-layer rnnkit ``Recurrent`` → linear, in float64."""

    def __init__(self, cell: str, vocab: int, seed: int, eos_bias: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(vocab, 4)
        self.rnn = Recurrent(cell, 4, 6)
        self.out = nn.Linear(6, vocab)
        with torch.no_grad():
            self.out.bias[EOS] += eos_bias  # rows that end, at a chosen rate
        self.double()

    def decode_step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        x = self.embed(tokens).unsqueeze(1)  # (B, 1, E)
        y, state = self.rnn(x, state)  # (B, 1, H)
        return 3.0 * self.out(y.squeeze(1)), state  # (B, V)

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        # Recurrent's states are (L·D, B, H): the batch is dim 1.
        return map_state(lambda field: field.index_select(1, index), state)

    def random_state(self, batch: int, seed: int) -> Any:
        g = torch.Generator().manual_seed(seed)
        zeros = self.rnn.initial_state(batch, dtype=torch.float64)
        return map_state(lambda f: torch.randn(f.shape, generator=g, dtype=f.dtype), zeros)


def rescore(model: StepDecoder, start: Tensor, state: Any, decoded: Decoded) -> Tensor:
    """Σ log p of each row's tokens up to its length, by teacher forcing: (B,)."""
    tokens, lengths = decoded.tokens, decoded.lengths
    total = torch.zeros(start.shape[0], dtype=torch.float64)
    previous = start
    with torch.no_grad():
        for t in range(tokens.shape[1]):
            logits, state = model.decode_step(previous, state)
            real = t < lengths  # (B,)
            token = torch.where(real, tokens[:, t], 0)  # pad may not be a token
            log_p = logits.double().log_softmax(-1).gather(1, token.unsqueeze(1)).squeeze(1)
            total += torch.where(real, log_p, 0.0)
            previous = token
    return total


def penalty(length: Tensor | int, alpha: float) -> Tensor:
    return torch.as_tensor(((5.0 + length) / 6.0) ** alpha, dtype=torch.float64)


def brute_force(
    model: StepDecoder, start: int, state: Any, *, vocab: int, max_length: int, alpha: float
) -> tuple[list[int], float, float]:
    """The best of every sequence up to max_length (ending at its first EOS):
    (tokens up to its length, log-prob, ranking score)."""
    every = torch.tensor(list(itertools.product(range(vocab), repeat=max_length)))  # (N, L)
    n = every.shape[0]
    state = model.reorder_state(state, torch.zeros(n, dtype=torch.long))
    log_p = torch.zeros(n, max_length, dtype=torch.float64)
    previous = torch.full((n,), start)
    with torch.no_grad():
        for t in range(max_length):
            logits, state = model.decode_step(previous, state)
            log_p[:, t] = logits.log_softmax(-1).gather(1, every[:, t : t + 1]).squeeze(1)
            previous = every[:, t]
    best: tuple[list[int], float, float] | None = None
    for row, steps in zip(every.tolist(), log_p, strict=True):
        length = row.index(EOS) + 1 if EOS in row else max_length
        lp = float(steps[:length].sum())
        score = lp / float(penalty(length, alpha))
        if best is None or score > best[2]:
            best = (row[:length], lp, score)
    assert best is not None
    return best


def assert_same(a: Decoded, b: Decoded) -> None:
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.lengths, b.lengths)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-12)


# A table where greedy goes wrong: A is likelier than B first, but B is almost
# surely followed by EOS while A spreads its mass.
#   greedy:  A C     p = .5 · .35 = .175
#   best:    B EOS   p = .4 · .9  = .36
GREEDY_TRAP = {
    BOS: {A: 0.5, B: 0.4, EOS: 0.1},
    A: {C: 0.35, D: 0.25, EOS: 0.2, A: 0.1, B: 0.1},
    B: {EOS: 0.9, C: 0.1},
    C: {EOS: 0.6, D: 0.4},
    D: {EOS: 0.6, C: 0.4},
}


# --- greedy -------------------------------------------------------------------


def test_greedy_follows_the_argmax_chain_and_pads_after_eos() -> None:
    model = table_model(
        {BOS: {A: 0.6, B: 0.4}, A: {B: 0.7, C: 0.3}, B: {EOS: 0.8, A: 0.2}, C: {C: 0.9, D: 0.1}}
    )
    start = torch.tensor([BOS, B, C])
    out = greedy(model, start, model.initial_state(3), max_length=5, eos_id=EOS, pad_id=-1)
    assert out.tokens.tolist() == [
        [A, B, EOS, -1, -1],  # BOS → A → B → EOS
        [EOS, -1, -1, -1, -1],  # B → EOS at once
        [C, C, C, C, C],  # C loops on itself: never ends
    ]
    assert out.lengths.tolist() == [3, 1, 5]
    log = math.log
    expected = [log(0.6) + log(0.7) + log(0.8), log(0.8), 5 * log(0.9)]
    # The table's 1e-4 floor makes the probabilities slightly smaller than written.
    torch.testing.assert_close(
        out.scores, torch.tensor(expected, dtype=torch.float64), atol=2e-3, rtol=0
    )
    torch.testing.assert_close(out.scores, rescore(model, start, model.initial_state(3), out))


def test_greedy_stops_stepping_once_every_row_ended() -> None:
    model = table_model({BOS: {A: 0.9}, A: {EOS: 0.9}})
    out = greedy(model, torch.tensor([BOS, BOS]), model.initial_state(2), max_length=8, eos_id=EOS)
    assert out.tokens.tolist() == [[A, EOS, 0, 0, 0, 0, 0, 0]] * 2
    assert model.calls == 2


def test_without_eos_every_row_runs_to_max_length() -> None:
    model = table_model({BOS: {EOS: 0.9}, EOS: {EOS: 0.9}})
    out = greedy(model, torch.tensor([BOS]), model.initial_state(1), max_length=3)
    assert out.tokens.tolist() == [[EOS, EOS, EOS]]
    assert out.lengths.tolist() == [3]


def test_eval_mode_and_no_grad_only_during_the_call() -> None:
    model = table_model(GREEDY_TRAP)
    child = nn.Dropout()
    model.add_module("child", child)
    model.train()
    child.eval()  # mixed modes come back as they were
    start, state = torch.tensor([BOS]), model.initial_state(1)
    greedy(model, start, state, max_length=2)
    sample(model, start, state, max_length=2, generator=torch.Generator().manual_seed(0))
    beam_search(model, start, state, max_length=2, beam_size=2)
    assert model.seen_training and not any(model.seen_training)
    assert not any(model.seen_grad)
    assert model.training and not child.training
    assert torch.is_grad_enabled()


# --- beam search ------------------------------------------------------------------


def test_beam_search_escapes_the_greedy_trap() -> None:
    model = table_model(GREEDY_TRAP)
    start, state = torch.tensor([BOS]), model.initial_state(1)
    assert greedy(model, start, state, max_length=2, eos_id=EOS).tokens.tolist() == [[A, C]]
    result = beam_search(
        model, start, state, max_length=2, beam_size=2, length_penalty=0.0, eos_id=EOS, pad_id=-1
    )
    assert isinstance(result, BeamResult)
    assert result.best.tokens.tolist() == [[B, EOS]]
    assert result.best.lengths.tolist() == [2]
    torch.testing.assert_close(
        result.best.scores,
        torch.tensor([math.log(0.4 * 0.9)], dtype=torch.float64),
        atol=1e-3,
        rtol=0,
    )
    torch.testing.assert_close(result.beam_scores, result.best.scores)  # α = 0


@pytest.mark.parametrize(
    ("cell", "alpha"), [("table", 0.0), ("gru", 0.0), ("lstm", 0.0), ("gru", 1.0)]
)
def test_exhaustive_beam_equals_brute_force(cell: str, alpha: float) -> None:
    vocab, max_length = 4, 4
    model: TableModel | RecurrentModel
    if cell == "table":
        model = random_table(vocab, seed=1)
        state: Any = model.initial_state(1)
    else:
        model = RecurrentModel(cell, vocab, seed=2)
        state = model.random_state(1, seed=3)
    tokens, lp, score = brute_force(
        model, BOS, state, vocab=vocab, max_length=max_length, alpha=alpha
    )
    # K = V^L holds every hypothesis, so nothing is pruned and no row stops early.
    result = beam_search(
        model,
        torch.tensor([BOS]),
        state,
        max_length=max_length,
        beam_size=vocab**max_length,
        length_penalty=alpha,
        eos_id=EOS,
        pad_id=-1,
    )
    length = len(tokens)
    assert result.best.lengths.tolist() == [length]
    assert result.best.tokens.tolist() == [tokens + [-1] * (max_length - length)]
    assert result.best.scores.item() == pytest.approx(lp, abs=1e-10)
    assert result.beam_scores.item() == pytest.approx(score, abs=1e-10)


def test_beam_search_stops_once_no_open_hypothesis_can_win() -> None:
    # Step 1 finishes [EOS] (p = .1); step 2 finishes [A EOS] (p = .81), filling K = 2.
    # The best open hypothesis, [A B] (p ≈ .09), is already below both: at α = 0 it can
    # only fall, so the search ends after two steps of the ten allowed.
    model = table_model({BOS: {A: 0.9, EOS: 0.1}, A: {EOS: 0.9, B: 0.0996}})
    start, state = torch.tensor([BOS]), model.initial_state(1)
    result = beam_search(
        model, start, state, max_length=10, beam_size=2, length_penalty=0.0, eos_id=EOS
    )
    assert model.calls == 2
    assert result.best.tokens.tolist() == [[A, EOS] + [0] * 8]
    assert result.best.scores.item() == pytest.approx(math.log(0.81), abs=1e-3)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_beam_scores_are_the_scores_of_the_returned_tokens(cell: str) -> None:
    # With a history-dependent model, following the wrong parent's state would show.
    model = RecurrentModel(cell, vocab=7, seed=4)
    start = torch.tensor([BOS, A, B, C])
    state = model.random_state(4, seed=5)
    for alpha in (0.0, 0.6):
        result = beam_search(
            model, start, state, max_length=6, beam_size=3, length_penalty=alpha, eos_id=EOS
        )
        torch.testing.assert_close(result.best.scores, rescore(model, start, state, result.best))
        torch.testing.assert_close(
            result.beam_scores, result.best.scores / penalty(result.best.lengths, alpha)
        )


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("cell", ["table", "gru"])
def test_beam_size_one_is_greedy(alpha: float, cell: str) -> None:
    model: TableModel | RecurrentModel
    if cell == "table":
        model = random_table(6, seed=6)
        state: Any = model.initial_state(5)
    else:
        model = RecurrentModel(cell, 6, seed=4)
        state = model.random_state(5, seed=8)
    start = torch.tensor([BOS, A, B, C, D])
    expected = greedy(model, start, state, max_length=7, eos_id=EOS, pad_id=9)
    assert (expected.lengths < 7).any()  # some rows end early: the EOS path is exercised
    result = beam_search(
        model, start, state, max_length=7, beam_size=1, length_penalty=alpha, eos_id=EOS, pad_id=9
    )
    assert_same(result.best, expected)


def test_length_penalty_changes_the_winner() -> None:
    # [EOS]: p = .4 at length 1; [A A A]: p = .6 · .8 · .8 = .384 at length 3.
    # α = 0 prefers the shorter one; α = 1 divides log .384 by 8/6 and prefers the longer.
    model = table_model({BOS: {A: 0.6, EOS: 0.4}, A: {A: 0.8, EOS: 0.2}})
    start, state = torch.tensor([BOS]), model.initial_state(1)
    short = beam_search(
        model, start, state, max_length=3, beam_size=2, length_penalty=0.0, eos_id=EOS
    )
    assert short.best.tokens.tolist() == [[EOS, 0, 0]]
    long = beam_search(
        model, start, state, max_length=3, beam_size=2, length_penalty=1.0, eos_id=EOS
    )
    assert long.best.tokens.tolist() == [[A, A, A]]
    assert long.best.lengths.tolist() == [3]
    assert long.beam_scores.item() == pytest.approx(long.best.scores.item() / (8 / 6))
    assert long.best.scores.item() == pytest.approx(math.log(0.384), abs=2e-3)


def test_batched_rows_are_decoded_independently() -> None:
    model = RecurrentModel("gru", vocab=6, seed=9)
    start = torch.tensor([BOS, A, C])
    state = model.random_state(3, seed=10)
    batched = {
        "greedy": greedy(model, start, state, max_length=6, eos_id=EOS),
        "beam": beam_search(model, start, state, max_length=6, beam_size=3, eos_id=EOS).best,
    }
    for row in range(3):
        index = torch.tensor([row])
        one_start, one_state = start[index], model.reorder_state(state, index)
        alone = {
            "greedy": greedy(model, one_start, one_state, max_length=6, eos_id=EOS),
            "beam": beam_search(
                model, one_start, one_state, max_length=6, beam_size=3, eos_id=EOS
            ).best,
        }
        for name, out in alone.items():
            assert torch.equal(out.tokens[0], batched[name].tokens[row])
            assert torch.equal(out.lengths[0], batched[name].lengths[row])
            torch.testing.assert_close(out.scores[0], batched[name].scores[row])


# --- sampling -----------------------------------------------------------------


def test_the_same_seed_gives_the_same_samples_whatever_the_global_rng() -> None:
    model = RecurrentModel("gru", vocab=6, seed=11)
    start, state = torch.tensor([BOS] * 4), model.random_state(4, seed=12)

    def draw(global_seed: int) -> Decoded:
        torch.manual_seed(global_seed)
        g = torch.Generator().manual_seed(123)
        return sample(
            model,
            start,
            state,
            max_length=8,
            eos_id=EOS,
            generator=g,
            temperature=1.5,
            top_k=4,
            top_p=0.95,
        )

    first, second = draw(0), draw(99)
    assert_same(first, second)
    other = sample(
        model, start, state, max_length=8, eos_id=EOS, generator=torch.Generator().manual_seed(124)
    )
    assert not torch.equal(first.tokens, other.tokens)
    # Scores are the model's own log-probabilities, whatever shaped the draws.
    torch.testing.assert_close(first.scores, rescore(model, start, state, first))


@pytest.mark.parametrize(
    "settings", [{"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-6}], ids=str
)
def test_degenerate_sampling_is_greedy(settings: dict[str, Any]) -> None:
    model = random_table(6, seed=13)
    start, state = torch.tensor([BOS, A, B, C, D, EOS]), model.initial_state(6)
    expected = greedy(model, start, state, max_length=6, eos_id=EOS)
    g = torch.Generator().manual_seed(14)
    out = sample(model, start, state, max_length=6, eos_id=EOS, generator=g, **settings)
    assert_same(out, expected)


def single_step_frequencies(model: TableModel, n: int, **settings: Any) -> Tensor:
    start = torch.full((n,), BOS)
    g = torch.Generator().manual_seed(15)
    out = sample(model, start, model.initial_state(n), max_length=1, generator=g, **settings)
    return torch.bincount(out.tokens[:, 0], minlength=6).double() / n


def test_sampling_frequencies_match_the_tempered_softmax() -> None:
    logits = torch.tensor([1.0, -0.5, 0.3, 2.0, 0.0, -1.0], dtype=torch.float64)
    model = TableModel(logits.expand(6, 6).clone())
    n = 20_000  # one standard error ≤ 0.0036: tolerance 0.015 is over 4 of them
    for temperature in (0.7, 1.0, 1.8):
        expected = torch.softmax(logits / temperature, dim=0)
        freq = single_step_frequencies(model, n, temperature=temperature)
        assert (freq - expected).abs().max() < 0.015, (temperature, freq, expected)

    # top-k = 3 keeps tokens 3, 0, 2 and renormalises.
    kept = torch.tensor([0, 2, 3])
    expected = torch.zeros(6, dtype=torch.float64)
    expected[kept] = torch.softmax(logits[kept], dim=0)
    freq = single_step_frequencies(model, n, top_k=3)
    assert (freq[[1, 4, 5]] == 0).all()
    assert (freq - expected).abs().max() < 0.015

    # softmax(logits) ≈ [.202, .045, .100, .550, .074, .027]; by mass: 3, 0, 2, 4, 1, 5 with
    # running sums .550, .752, .853, …: the nucleus of .7 is {3, 0}, that of .8 is {3, 0, 2}.
    probs = torch.softmax(logits, dim=0)
    for p, nucleus in ((0.7, [0, 3]), (0.8, [0, 2, 3])):
        index = torch.tensor(nucleus)
        expected = torch.zeros(6, dtype=torch.float64)
        expected[index] = probs[index] / probs[index].sum()
        freq = single_step_frequencies(model, n, top_p=p)
        assert (freq - expected).abs().max() < 0.015, (p, freq, expected)
        outside = torch.ones(6, dtype=torch.bool)
        outside[index] = False
        assert (freq[outside] == 0).all()


def test_tokens_outside_the_top_k_never_appear() -> None:
    model = random_table(8, seed=16)
    start = torch.randint(0, 8, (200,), generator=torch.Generator().manual_seed(17))
    g = torch.Generator().manual_seed(18)
    out = sample(
        model, start, model.initial_state(200), max_length=10, top_k=3, temperature=3.0, generator=g
    )
    previous = torch.cat([start.unsqueeze(1), out.tokens[:, :-1]], dim=1)  # (B, L)
    top3 = model.get_buffer("table").topk(3, dim=1).indices  # (V, 3)
    allowed = (top3[previous] == out.tokens.unsqueeze(2)).any(dim=2)
    assert allowed.all()
    # High temperature spreads the draws over all three.
    assert len(set(out.tokens.flatten().tolist())) > 3


# --- arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda m, s, state: sample(m, s, state, max_length=2, temperature=0.0), "temperature"),
        (lambda m, s, state: sample(m, s, state, max_length=2, temperature=-1.0), "temperature"),
        (
            lambda m, s, state: sample(m, s, state, max_length=2, temperature=math.nan),
            "temperature",
        ),
        (lambda m, s, state: sample(m, s, state, max_length=2, top_k=0), "top_k"),
        (lambda m, s, state: sample(m, s, state, max_length=2, top_k=1.5), "top_k"),  # type: ignore[arg-type]
        (lambda m, s, state: sample(m, s, state, max_length=2, top_p=0.0), "top_p"),
        (lambda m, s, state: sample(m, s, state, max_length=2, top_p=1.5), "top_p"),
        (lambda m, s, state: beam_search(m, s, state, max_length=2, beam_size=0), "beam_size"),
        (
            lambda m, s, state: beam_search(m, s, state, max_length=2, length_penalty=-1.0),
            "length_penalty",
        ),
        (lambda m, s, state: greedy(m, s, state, max_length=0), "max_length"),
        (lambda m, s, state: greedy(m, s, state, max_length=2, eos_id=-1), "eos_id"),
        (lambda m, s, state: greedy(m, s, state, max_length=2, eos_id=6), "eos_id"),
        (lambda m, s, state: beam_search(m, s, state, max_length=2, eos_id=6), "eos_id"),
        (lambda m, s, state: greedy(m, s.view(2, 1), state, max_length=2), "start"),
        (lambda m, s, state: greedy(m, s.float(), state, max_length=2), "start"),
        (lambda m, s, state: greedy(m, s[:0], state, max_length=2), "start"),
    ],
)
def test_bad_arguments_name_themselves(call: Any, name: str) -> None:
    model = random_table(6, seed=19)
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        call(model, torch.tensor([BOS, A]), model.initial_state(2))


def test_logits_of_the_wrong_shape_are_reported() -> None:
    class Flat(TableModel):
        def decode_step(self, tokens: Tensor, state: Steps) -> tuple[Tensor, Steps]:
            logits, state = super().decode_step(tokens, state)
            return logits.flatten(), state

    model = Flat(torch.zeros(6, 6))
    with pytest.raises(ValueError, match=r"^decode_step: expected logits \(2, V\)"):
        greedy(model, torch.tensor([BOS, A]), model.initial_state(2), max_length=2)


# --- a property over shapes and lengths ----------------------------------------------


@given(
    batch=st.integers(1, 4),
    max_length=st.integers(1, 6),
    vocab=st.integers(2, 6),
    eos=st.one_of(st.none(), st.integers(0, 5)),
    pad_id=st.sampled_from([-1, 0, 99]),
    beam_size=st.integers(1, 3),
    alpha=st.sampled_from([0.0, 0.7]),
    seed=st.integers(0, 2**16),
)
def test_outputs_are_well_formed(
    batch: int,
    max_length: int,
    vocab: int,
    eos: int | None,
    pad_id: int,
    beam_size: int,
    alpha: float,
    seed: int,
) -> None:
    eos_id = None if eos is None else eos % vocab
    model = random_table(vocab, seed)
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, vocab, (batch,), generator=g)
    state = model.initial_state(batch)
    beam = beam_search(
        model,
        start,
        state,
        max_length=max_length,
        beam_size=beam_size,
        length_penalty=alpha,
        eos_id=eos_id,
        pad_id=pad_id,
    )
    outputs = [
        greedy(model, start, state, max_length=max_length, eos_id=eos_id, pad_id=pad_id),
        sample(
            model, start, state, max_length=max_length, eos_id=eos_id, pad_id=pad_id, generator=g
        ),
        beam.best,
    ]
    position = torch.arange(max_length)
    for out in outputs:
        assert out.tokens.shape == (batch, max_length) and out.tokens.dtype == torch.long
        assert out.lengths.shape == (batch,) and out.lengths.dtype == torch.long
        assert ((out.lengths >= 1) & (out.lengths <= max_length)).all()
        real = position < out.lengths.unsqueeze(1)  # (B, L)
        assert (out.tokens[~real] == pad_id).all()
        assert ((out.tokens[real] >= 0) & (out.tokens[real] < vocab)).all()
        if eos_id is None:
            assert (out.lengths == max_length).all()
        else:
            # EOS, if anywhere, is exactly the last real token; a row without it is full.
            last = out.tokens.gather(1, (out.lengths - 1).unsqueeze(1)).squeeze(1)
            assert ((last == eos_id) | (out.lengths == max_length)).all()
            assert not (
                out.tokens[real & (position < (out.lengths - 1).unsqueeze(1))] == eos_id
            ).any()
        torch.testing.assert_close(out.scores, rescore(model, start, state, out))
    torch.testing.assert_close(
        beam.beam_scores, beam.best.scores / penalty(beam.best.lengths, alpha)
    )


def test_banned_tokens_are_never_generated_and_the_rest_renormalised() -> None:
    # B's likeliest next token is A (0.6); with A banned greedy takes C, and the score
    # is C's probability among what is left: 0.3 / (1 − 0.6).
    model = table_model({BOS: {B: 1.0}, B: {A: 0.6, C: 0.3, D: 0.1}, C: {EOS: 1.0}})
    start = torch.tensor([B])
    out = greedy(model, start, model.initial_state(1), max_length=2, eos_id=EOS, banned=(A,))
    assert out.tokens.tolist() == [[C, EOS]]
    torch.testing.assert_close(out.scores[0].exp(), torch.tensor(0.75, dtype=torch.float64),
                               atol=2e-3, rtol=0)  # fmt: skip
    beam = beam_search(model, start, model.initial_state(1), max_length=2, beam_size=3,
                       eos_id=EOS, banned=(A,)).best  # fmt: skip
    assert A not in beam.tokens[0].tolist()
    drawn = sample(model, start.repeat(200), model.initial_state(200), max_length=1,
                   generator=torch.Generator().manual_seed(0), banned=(A, D))  # fmt: skip
    first = drawn.tokens[:, 0].tolist()
    assert A not in first and D not in first and first.count(C) > 190
    with pytest.raises(ValueError, match="banned: expected tokens below V"):
        greedy(model, start, model.initial_state(1), max_length=1, banned=(99,))


# --- streaming ----------------------------------------------------------------


def test_stream_yields_the_tokens_greedy_and_sample_collect() -> None:
    model = RecurrentModel("lstm", vocab=6, seed=21, eos_bias=1.0)
    start, state = torch.tensor([BOS, A, B]), model.random_state(3, seed=22)
    settings: dict[str, Any] = {"temperature": 0.7, "top_k": 4, "top_p": 0.9, "eos_id": EOS}
    drawn = sample(model, start, state, max_length=9, generator=torch.Generator().manual_seed(5),
                   **settings)  # fmt: skip
    steps = list(stream(model, start, state, max_length=9,
                        generator=torch.Generator().manual_seed(5), **settings))  # fmt: skip
    assert 1 <= len(steps) <= 9
    tokens = torch.stack([step.tokens for step in steps], dim=1)  # (B, steps)
    assert torch.equal(tokens, drawn.tokens[:, : len(steps)])
    assert (drawn.tokens[:, len(steps) :] == 0).all()  # every row ended: pad after
    scores = torch.stack([step.log_probs for step in steps], dim=1).sum(dim=1)
    torch.testing.assert_close(scores, drawn.scores, rtol=0, atol=0)
    ended_at = torch.stack([step.ended for step in steps], dim=1).int().argmax(dim=1) + 1
    assert torch.equal(ended_at, drawn.lengths)
    best = greedy(model, start, state, max_length=9, eos_id=EOS)
    greedy_steps = list(stream(model, start, state, max_length=9, greedy=True, eos_id=EOS))
    assert torch.equal(torch.stack([s.tokens for s in greedy_steps], dim=1),
                       best.tokens[:, : len(greedy_steps)])  # fmt: skip


def test_an_unbounded_stream_steps_only_when_asked() -> None:
    model = table_model({BOS: {A: 0.9}, A: {B: 0.9}, B: {A: 0.9}})
    steps = stream(model, torch.tensor([BOS]), model.initial_state(1), greedy=True)
    assert model.calls == 0  # nothing runs before the first step is asked for
    first = [int(next(steps).tokens[0]) for _ in range(1000)]
    assert model.calls == 1000
    assert first[:4] == [A, B, A, B] and set(first) == {A, B}
    steps.close()  # stopping the iteration gives the model its mode back
    assert model.training


def test_stream_checks_its_arguments_before_the_first_step() -> None:
    model = random_table(6, seed=23)
    with pytest.raises(ValueError, match=r"^temperature: expected"):
        stream(model, torch.tensor([BOS]), model.initial_state(1), temperature=float("nan"))
    with pytest.raises(ValueError, match=r"^max_length: expected"):
        stream(model, torch.tensor([BOS]), model.initial_state(1), max_length=0)
    assert model.calls == 0


@pytest.mark.parametrize("temperature", [1e-300, 1e-40, GREEDY_TEMPERATURE, 1e-20])
def test_a_vanishing_temperature_is_greedy_without_nan(temperature: float) -> None:
    # float32 logits, where 1e-300 is 0: dividing by it made 0 / 0 = NaN probabilities.
    model = random_table(6, seed=24)
    model.table = model.get_buffer("table").float()
    start, state = torch.tensor([BOS, A, B, C, D, EOS]), model.initial_state(6)
    expected = greedy(model, start, state, max_length=7, eos_id=EOS)
    for seed in (1, 2):
        out = sample(model, start, state, max_length=7, eos_id=EOS, temperature=temperature,
                     generator=torch.Generator().manual_seed(seed))  # fmt: skip
        assert_same(out, expected)
        assert out.scores.isfinite().all()
