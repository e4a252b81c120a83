"""Decoding from any model that predicts one token at a time: greedy, sampling, beam search.

A generating model (language model, conditioned generator, encoder–decoder)
implements :class:`StepDecoder`: ``decode_step`` maps the previous token of each
row and a state to next-token logits and a new state, and ``reorder_state``
selects batch entries of a state. The functions here know nothing else about the
model. Each one starts from ``start`` (B,), the token fed at the first step (a
BOS token, or the last token of a prompt whose state is ``state``), and
generates up to ``max_length`` tokens per row.

A row has finished once it emits ``eos_id``. From then on its outputs are
``pad_id`` and its score stops changing; the model still steps it (batches stay
rectangular), fed ``eos_id`` again, so ``pad_id`` need not be a token the model
knows.

:func:`stream` is the one left-to-right loop: it yields each step's tokens as they
are drawn, carrying the state and holding nothing else, so a caller can write an
output of any length with flat memory. :func:`greedy` and :func:`sample` collect
it into a :class:`Decoded`. Beam search cannot stream (the best hypothesis is
known only at the end), so it allocates ``max_length`` up front.

Every function runs under ``torch.no_grad()`` with the model (when it is an
``nn.Module``) in eval mode, and gives each submodule back the mode it had. The
arguments, and the shape of the first step's logits, are checked once, before
or at the first step; the steps themselves check nothing, and rnnkit's models
step their recurrent stacks through :class:`rnnkit.stepping.Stepper` there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn


class StepDecoder(Protocol):
    """A model that generates one token per step for a batch of rows."""

    def decode_step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One step: ``tokens`` (B,) int64, the previous output token of each row,
        → ``(logits (B, V) float, new state)``."""
        ...

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        """The state with its batch entries selected/reordered by ``index`` (B',) int64
        (beam search), every tensor in it: entry i of the result is entry index[i]."""
        ...


@dataclass(frozen=True)
class Decoded:
    """Generated sequences, one per row.

    Attributes:
        tokens: ``(B, max_length)`` int64, the generated tokens (not the start
            token); positions at and after ``lengths`` hold ``pad_id``.
        lengths: ``(B,)`` int64, tokens up to and including EOS, or ``max_length``
            for a row that never emitted it; always in 1 … max_length.
        scores: ``(B,)`` float, Σ_t log p(y_t | y_<t, state) over those tokens,
            under the model's own distribution (before any temperature or filtering).
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor


@dataclass(frozen=True)
class BeamResult:
    """The best hypothesis of each row and the score that ranked it.

    Attributes:
        best: the winning hypotheses; ``best.scores`` is their summed log-probability.
        beam_scores: ``(B,)`` float, their ranking score
            ``best.scores / ((5 + best.lengths) / 6) ** length_penalty``.
    """

    best: Decoded
    beam_scores: Tensor


@dataclass(frozen=True)
class Step:
    """One step of :func:`stream`, for every row.

    Attributes:
        tokens: ``(B,)`` int64, the token each row generated; ``pad_id`` for a row
            that had already finished.
        log_probs: ``(B,)`` float, log p of that token under the model's own
            distribution; 0 for a finished row.
        ended: ``(B,)`` bool, the rows whose token at this step is ``eos_id``.
    """

    tokens: Tensor
    log_probs: Tensor
    ended: Tensor


# Below this temperature sampling is greedy: (log p_max − log p_v) / T is already far
# beyond exp's range (> 1e28 for any gap above 1e-2), so the tempered distribution is
# the argmax; dividing by a smaller T in float32 (where 1e-300 is 0) would make 0 / 0.
GREEDY_TEMPERATURE = 1e-30


def greedy(
    model: StepDecoder,
    start: Tensor,
    state: Any,
    *,
    max_length: int,
    eos_id: int | None = None,
    pad_id: int = 0,
    banned: Sequence[int] = (),
) -> Decoded:
    """Greedy decoding: y_t = argmax_v log p(v | y_<t) at every step.

    Args:
        model: any :class:`StepDecoder`.
        start: ``(B,)`` int64, the token fed at the first step.
        state: the model's state for those B rows.
        max_length: most tokens generated per row (≥ 1).
        eos_id: the token that ends a row; ``None``: every row runs to max_length.
        pad_id: written after a row's EOS.
        banned: tokens never generated (probability 0), e.g. ``<pad>`` and ``<bos>``,
            which a model never saw as targets but still gives some mass.
    """
    steps = stream(model, start, state, max_length=max_length, greedy=True, eos_id=eos_id,
                   pad_id=pad_id, banned=banned)  # fmt: skip
    return _collect(steps, start, max_length, pad_id)


def sample(
    model: StepDecoder,
    start: Tensor,
    state: Any,
    *,
    max_length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
    banned: Sequence[int] = (),
) -> Decoded:
    """Ancestral sampling: y_t ~ softmax(logits_t / T), restricted to top-k and/or nucleus.

    Each step scales the logits by 1/T, keeps the ``top_k`` largest, then keeps the
    nucleus: the smallest set of the most probable remaining tokens whose
    probability (renormalised after top-k) sums to ≥ ``top_p`` (never empty), and
    draws from what is left renormalised. Draws come from ``generator`` only, so a
    seeded generator gives the same samples whatever the global RNG state.

    Args:
        model, start, state, max_length, eos_id, pad_id, banned: as for :func:`greedy`.
        temperature: T > 0; T → 0 approaches greedy, T = 1 is the model's distribution.
        top_k: keep the k ≥ 1 most probable tokens; ``None``: no limit.
        top_p: nucleus mass in (0, 1]; ``None`` (or 1): no nucleus cut.
        generator: the source of randomness; ``None``: torch's global generator.
    """
    steps = stream(model, start, state, max_length=max_length, temperature=temperature,
                   top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id,
                   generator=generator, banned=banned)  # fmt: skip
    return _collect(steps, start, max_length, pad_id)


def stream(
    model: StepDecoder,
    start: Tensor,
    state: Any,
    *,
    max_length: int | None = None,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
    banned: Sequence[int] = (),
) -> Iterator[Step]:
    """Greedy decoding (``greedy=True``) or sampling, one :class:`Step` at a time.

    The arguments are checked now, before the first step; the steps run as they are
    asked for, so stopping the iteration stops the decoding. It ends after
    ``max_length`` steps (``None``: never), or once every row has emitted ``eos_id``.
    A temperature below :data:`GREEDY_TEMPERATURE` is greedy.

    Args:
        model, start, state, eos_id, pad_id, banned: as for :func:`greedy`.
        max_length: most steps (≥ 1), or ``None`` for no limit.
        greedy: take the argmax; ``temperature``, ``top_k`` and ``top_p`` are ignored.
        temperature, top_k, top_p, generator: as for :func:`sample`.
    """
    _check_common(start, 1 if max_length is None else max_length, eos_id)
    choose = _argmax if greedy else _sampler(temperature, top_k, top_p, generator)
    return _steps(model, start, state, choose, max_length, eos_id, pad_id, banned)


def _argmax(log_probs: Tensor) -> Tensor:
    return log_probs.argmax(dim=-1)


def _sampler(
    temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None
) -> Callable[[Tensor], Tensor]:
    """The sampling rule of :func:`sample`, its settings checked."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: expected a positive finite number, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k: expected an int ≥ 1 or None, got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p: expected a number in (0, 1] or None, got {top_p!r}")
    if temperature < GREEDY_TEMPERATURE:
        return _argmax  # the argmax is inside every top-k and nucleus

    def choose(log_probs: Tensor) -> Tensor:
        # log_probs differ from the logits by a per-row constant, which softmax ignores.
        scaled = log_probs if temperature == 1 else log_probs / temperature  # (B, V)
        if top_k is not None:
            scaled = _keep_top_k(scaled, top_k)
        if top_p is not None and top_p < 1:
            scaled = _keep_nucleus(scaled, top_p)
        probs = torch.softmax(scaled.float(), dim=-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)

    return choose


def beam_search(
    model: StepDecoder,
    start: Tensor,
    state: Any,
    *,
    max_length: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    banned: Sequence[int] = (),
) -> BeamResult:
    """Beam search, every row and beam stepped as one batch of B·K.

    Each row keeps K = ``beam_size`` open hypotheses. A step extends each by every
    token and ranks a row's K·V extensions by summed log-probability. An
    extension ending in EOS that ranks among the row's best K joins the row's
    finished hypotheses; the best K extensions not ending in EOS stay open (so
    the beam stays full). The state follows its hypotheses through
    ``model.reorder_state``.

    Finished hypotheses are ranked by the GNMT length-penalised score (Wu et al.,
    2016)::

        s(y) = log p(y) / ((5 + |y|) / 6) ** α,   α = length_penalty

    α = 0 ranks by raw log-probability; larger α favours longer outputs. A row
    keeps its K best finished hypotheses and stops once it has K of them and none
    of its open hypotheses, scored at its current length, would beat the worst.
    For α = 0 that bound is exact (log-probabilities only fall as a hypothesis
    grows); for α > 0 it is the usual heuristic (a longer continuation could still
    score higher), and it is what makes beam_size = 1 exactly greedy decoding for
    every α. At ``max_length`` the open hypotheses
    compete with the finished ones at length max_length.

    Args:
        model, start, state, max_length, eos_id, pad_id, banned: as for :func:`greedy`.
        beam_size: K ≥ 1 hypotheses per row.
        length_penalty: α ≥ 0.
    """
    _check_common(start, max_length, eos_id)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size: expected an int ≥ 1, got {beam_size!r}")
    if (
        isinstance(length_penalty, bool)
        or not isinstance(length_penalty, int | float)
        or not (math.isfinite(length_penalty) and length_penalty >= 0)
    ):
        raise ValueError(f"length_penalty: expected a finite number ≥ 0, got {length_penalty!r}")

    def penalty(length: int) -> float:
        return float(((5 + length) / 6) ** length_penalty)

    B, K = start.shape[0], beam_size
    device = start.device
    rows = torch.arange(B, device=device)
    normalise = _normaliser(B * K, eos_id, banned)
    rank: Tensor | None = None  # (B, n) 0 … n − 1, made once n is known
    no_eos: Tensor | None = None
    with _inference(model):
        # Row b's beams are entries b·K … b·K + K − 1 of the flattened batch.
        state = model.reorder_state(state, rows.repeat_interleave(K))
        tokens = start.repeat_interleave(K)  # (B·K,)
        open_seq = torch.full((B, K, max_length), pad_id, dtype=torch.long, device=device)
        open_lp: Tensor | None = None  # (B, K) summed log-probs; made with the first logits
        done = torch.zeros(B, dtype=torch.bool, device=device)
        pool: _Pool | None = None
        for t in range(max_length):
            logits, state = model.decode_step(tokens, state)
            log_probs = normalise(logits)
            V = log_probs.shape[1]
            if open_lp is None:
                # Only beam 0 starts open: K copies of one start would fill the beam
                # with K copies of one hypothesis.
                open_lp = log_probs.new_full((B, K), -math.inf)
                open_lp[:, 0] = 0.0
                pool = _Pool.empty(B, K, max_length, pad_id, log_probs.dtype, device)
            assert pool is not None

            candidates = (open_lp.unsqueeze(2) + log_probs.view(B, K, V)).view(B, K * V)
            # 2K candidates always hold K that do not end in EOS (at most K end in it).
            n = min(2 * K, K * V)
            cand_lp, cand_index = candidates.topk(n, dim=1)  # (B, n), best first
            cand_beam = torch.div(cand_index, V, rounding_mode="floor")  # (B, n)
            cand_token = cand_index % V  # (B, n)
            cand_seq = open_seq.gather(1, cand_beam.unsqueeze(2).expand(B, n, max_length))
            cand_seq[:, :, t] = cand_token  # (B, n, max_length)

            if rank is None:
                rank = torch.arange(n, device=device).expand(B, n)
                no_eos = torch.zeros_like(cand_token, dtype=torch.bool)
            assert no_eos is not None
            is_eos = no_eos if eos_id is None else cand_token == eos_id
            ends = is_eos & (rank < K) & cand_lp.isfinite() & ~done.unsqueeze(1)
            pool = pool.merge(cand_seq, cand_lp, t + 1, penalty(t + 1), ends)

            # The best K extensions that do not end in EOS stay open; argsort is stable,
            # so they keep their rank order. With fewer than K (V = 1), EOS fill-ins die.
            keep = torch.where(is_eos, n, rank).argsort(dim=1, stable=True)[:, :K]  # (B, K)
            stays = ~is_eos.gather(1, keep)
            open_lp = torch.where(stays, cand_lp.gather(1, keep), -math.inf)
            open_seq = cand_seq.gather(1, keep.unsqueeze(2).expand(B, K, max_length))
            open_token = cand_token.gather(1, keep)  # (B, K)
            parents = rows.unsqueeze(1) * K + cand_beam.gather(1, keep)  # (B, K) flat
            state = model.reorder_state(state, parents.view(-1))
            tokens = open_token.view(-1)

            best_open = open_lp.max(dim=1).values / penalty(t + 1)  # (B,)
            full = pool.count() == K
            done |= (full & (pool.worst_score() >= best_open)) | best_open.isneginf()
            if bool(done.all()):
                break

        assert open_lp is not None and pool is not None
        # Rows still running offer their open hypotheses at length max_length.
        last = ~done.unsqueeze(1) & open_lp.isfinite()
        pool = pool.merge(open_seq, open_lp, max_length, penalty(max_length), last)
        best, beam_scores = pool.best()
    return BeamResult(best=best, beam_scores=beam_scores)


@dataclass(frozen=True)
class _Pool:
    """Each row's K best finished hypotheses; empty slots score −∞.

    Attributes:
        seq: ``(B, K, max_length)`` tokens, pad after each length.
        log_prob: ``(B, K)`` summed log-probabilities.
        length: ``(B, K)`` tokens, EOS included.
        score: ``(B, K)`` length-penalised ranking score.
    """

    seq: Tensor
    log_prob: Tensor
    length: Tensor
    score: Tensor

    @staticmethod
    def empty(
        B: int,
        K: int,
        max_length: int,
        pad_id: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> _Pool:
        return _Pool(
            seq=torch.full((B, K, max_length), pad_id, dtype=torch.long, device=device),
            log_prob=torch.full((B, K), -math.inf, dtype=dtype, device=device),
            length=torch.ones((B, K), dtype=torch.long, device=device),
            score=torch.full((B, K), -math.inf, dtype=dtype, device=device),
        )

    def merge(
        self, seq: Tensor, log_prob: Tensor, length: int, penalty: float, valid: Tensor
    ) -> _Pool:
        """Offer ``(B, n, …)`` hypotheses of one length; those where ``valid`` compete."""
        B, K = self.score.shape
        n = log_prob.shape[1]
        score = torch.where(valid, log_prob / penalty, -math.inf)  # (B, n)
        all_score = torch.cat([self.score, score], dim=1)  # (B, K + n)
        # Sorting the pool first keeps a hypothesis already there ahead of an equal newcomer.
        chosen = all_score.sort(dim=1, descending=True, stable=True).indices[:, :K]  # (B, K)
        all_seq = torch.cat([self.seq, seq], dim=1)
        all_lp = torch.cat([self.log_prob, torch.where(valid, log_prob, -math.inf)], dim=1)
        all_length = torch.cat([self.length, self.length.new_full((B, n), length)], dim=1)
        return _Pool(
            seq=all_seq.gather(1, chosen.unsqueeze(2).expand(B, K, seq.shape[2])),
            log_prob=all_lp.gather(1, chosen),
            length=all_length.gather(1, chosen),
            score=all_score.gather(1, chosen),
        )

    def count(self) -> Tensor:
        """``(B,)`` finished hypotheses held."""
        return self.score.isfinite().sum(dim=1)

    def worst_score(self) -> Tensor:
        """``(B,)`` the lowest ranking score held (−∞ while a slot is empty)."""
        return self.score.min(dim=1).values

    def best(self) -> tuple[Decoded, Tensor]:
        """The top hypothesis of each row and its ranking score."""
        top = self.score.argmax(dim=1, keepdim=True)  # (B, 1)
        B, _, max_length = self.seq.shape
        decoded = Decoded(
            tokens=self.seq.gather(1, top.unsqueeze(2).expand(B, 1, max_length)).squeeze(1),
            lengths=self.length.gather(1, top).squeeze(1),
            scores=self.log_prob.gather(1, top).squeeze(1),
        )
        return decoded, self.score.gather(1, top).squeeze(1)


def _steps(
    model: StepDecoder,
    start: Tensor,
    state: Any,
    choose: Callable[[Tensor], Tensor],
    max_length: int | None,
    eos_id: int | None,
    pad_id: int,
    banned: Sequence[int],
) -> Iterator[Step]:
    """The left-to-right loop shared by greedy and sampling; ``choose`` maps
    log-probabilities (B, V) to the next tokens (B,)."""
    B = start.shape[0]
    tokens = start
    normalise = _normaliser(B, eos_id, banned)
    # Without an EOS no row finishes: one all-false `ended` serves every step.
    never = torch.zeros(B, dtype=torch.bool, device=start.device)
    finished = never
    t = 0
    with _inference(model):
        while max_length is None or t < max_length:
            t += 1
            logits, state = model.decode_step(tokens, state)
            log_probs = normalise(logits)  # (B, V)
            chosen = choose(log_probs)  # (B,)
            step = log_probs.gather(1, chosen.unsqueeze(1)).squeeze(1)  # (B,)
            if eos_id is None:
                yield Step(tokens=chosen, log_probs=step, ended=never)
                tokens = chosen
                continue
            ended = ~finished & (chosen == eos_id)
            yield Step(tokens=chosen.masked_fill(finished, pad_id),
                       log_probs=step.masked_fill(finished, 0.0), ended=ended)  # fmt: skip
            # A finished row is fed its EOS again: any token the model knows would do,
            # and pad_id may not be one.
            tokens = torch.where(finished, tokens, chosen)
            finished = finished | ended
            if bool(finished.all()):
                return


def _collect(steps: Iterator[Step], start: Tensor, max_length: int, pad_id: int) -> Decoded:
    """The steps of a bounded :func:`stream` as one :class:`Decoded`."""
    B = start.shape[0]
    out = torch.full((B, max_length), pad_id, dtype=torch.long, device=start.device)
    lengths = torch.full((B,), max_length, dtype=torch.long, device=start.device)
    scores: Tensor | None = None
    for t, step in enumerate(steps):
        out[:, t] = step.tokens
        lengths.masked_fill_(step.ended, t + 1)
        # The first step's log-probabilities start the sum (a copy: steps may share them).
        scores = step.log_probs.clone() if scores is None else scores.add_(step.log_probs)
    assert scores is not None  # max_length ≥ 1
    return Decoded(tokens=out, lengths=lengths, scores=scores)


def _normaliser(
    rows: int, eos_id: int | None, banned: Sequence[int] = ()
) -> Callable[[Tensor], Tensor]:
    """Maps a step's logits (rows, V) to log-probabilities, the ``banned`` tokens
    excluded (−∞: the rest renormalised among themselves).

    The first logits are checked (shape, ``eos_id`` and ``banned`` below V) and the
    banned index is made from them; later steps of the same decoding are not checked.
    """
    banned_index: Tensor | None = None
    checked = False

    def normalise(logits: Tensor) -> Tensor:
        nonlocal banned_index, checked
        if not checked:
            _check_logits(logits, rows, eos_id, banned)
            if banned:
                banned_index = torch.tensor(list(banned), device=logits.device)
            checked = True
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # sum scores in float32
        if banned_index is not None:
            logits = logits.index_fill(1, banned_index, float("-inf"))
        return torch.log_softmax(logits, dim=-1)

    return normalise


def _check_logits(logits: Tensor, rows: int, eos_id: int | None, banned: Sequence[int]) -> None:
    if logits.dim() != 2 or logits.shape[0] != rows or logits.shape[1] < 1:
        raise ValueError(f"decode_step: expected logits ({rows}, V), got {tuple(logits.shape)}")
    if eos_id is not None and eos_id >= logits.shape[1]:
        raise ValueError(f"eos_id: expected a token below V = {logits.shape[1]}, got {eos_id}")
    if banned:
        if any(not 0 <= token < logits.shape[1] for token in banned):
            raise ValueError(f"banned: expected tokens below V = {logits.shape[1]}, got {banned}")
        if len(set(banned)) >= logits.shape[1]:
            raise ValueError("banned: every token is banned; nothing is left to generate")


def _keep_top_k(scaled: Tensor, k: int) -> Tensor:
    """Set all but the k largest entries of each row (B, V) to −∞ (exactly k, ties by index)."""
    if k >= scaled.shape[-1]:
        return scaled
    index = scaled.topk(k, dim=-1).indices  # (B, k)
    keep = torch.zeros_like(scaled, dtype=torch.bool).scatter_(-1, index, True)
    return scaled.masked_fill(~keep, -math.inf)


def _keep_nucleus(scaled: Tensor, p: float) -> Tensor:
    """Keep, per row, the most probable tokens until their probability reaches ``p``.

    A token stays when the mass of the tokens sorted before it is still below p,
    so the first always stays and the set is the smallest with mass ≥ p.
    """
    sorted_logits, order = scaled.sort(dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    before = probs.cumsum(dim=-1) - probs  # (B, V) mass ahead of each token
    keep_sorted = before < p
    keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return scaled.masked_fill(~keep, -math.inf)


def _check_common(start: Tensor, max_length: int, eos_id: int | None) -> None:
    if not isinstance(start, Tensor) or start.dim() != 1 or start.dtype != torch.long:
        got = (
            f"{start.dtype} {tuple(start.shape)}"
            if isinstance(start, Tensor)
            else type(start).__name__
        )
        raise ValueError(f"start: expected a (B,) int64 tensor, got {got}")
    if start.shape[0] < 1:
        raise ValueError("start: expected at least one row, got an empty batch")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length: expected an int ≥ 1, got {max_length!r}")
    if eos_id is not None and (
        isinstance(eos_id, bool) or not isinstance(eos_id, int) or eos_id < 0
    ):
        raise ValueError(f"eos_id: expected a token id ≥ 0 or None, got {eos_id!r}")


@contextmanager
def _inference(model: StepDecoder) -> Iterator[None]:
    """No gradients, and eval mode for the call; every submodule gets its own mode back."""
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, nn.Module) else []
    try:
        if isinstance(model, nn.Module):
            model.eval()
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
