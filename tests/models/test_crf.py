"""The linear-chain CRF against brute-force enumeration of every tag path."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnkit.models.crf import CRF


def random_crf(num_tags: int, seed: int) -> CRF:
    """A float64 CRF with scores of order 1, so that no path dominates trivially."""
    generator = torch.Generator().manual_seed(seed)
    crf = CRF(num_tags).double()
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return crf


def ragged(lengths: list[int], steps: int, num_tags: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random float64 emissions ``(B, T, C)`` and the prefix mask of ``lengths``."""
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(len(lengths), steps, num_tags, generator=generator, dtype=torch.float64)
    mask = torch.arange(steps) < torch.tensor(lengths).unsqueeze(1)
    return emissions, mask


def path_scores(crf: CRF, emissions: Tensor, length: int) -> dict[tuple[int, ...], float]:
    """S(y) of every one of the C^n paths of one row, summed term by term in Python."""
    A, s, f = crf.transitions.tolist(), crf.start.tolist(), crf.end.tolist()
    e = emissions.tolist()
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=length):
        total = s[path[0]] + f[path[-1]] + sum(e[t][y] for t, y in enumerate(path))
        total += sum(A[path[t - 1]][path[t]] for t in range(1, length))
        scores[path] = total
    return scores


def brute_log_z(scores: dict[tuple[int, ...], float]) -> float:
    top = max(scores.values())
    return top + math.log(sum(math.exp(v - top) for v in scores.values()))


LENGTHS = [4, 1, 3, 2, 4]  # ragged, including a one-step row and full rows


def test_log_partition_and_score_match_enumeration() -> None:
    crf = random_crf(3, seed=0)
    emissions, mask = ragged(LENGTHS, 4, 3, seed=1)
    generator = torch.Generator().manual_seed(2)
    tags = torch.randint(0, 3, (len(LENGTHS), 4), generator=generator)
    log_z = crf.log_partition(emissions, mask)
    score = crf.score(emissions, tags, mask)
    for row, length in enumerate(LENGTHS):
        scores = path_scores(crf, emissions[row], length)
        assert log_z[row].item() == pytest.approx(brute_log_z(scores), abs=1e-10, rel=0)
        gold = tuple(tags[row, :length].tolist())
        assert score[row].item() == pytest.approx(scores[gold], abs=1e-10, rel=0)


def test_viterbi_matches_enumeration_argmax() -> None:
    crf = random_crf(3, seed=3)
    emissions, mask = ragged(LENGTHS, 4, 3, seed=4)
    tags, best = crf.viterbi(emissions, mask)
    assert tags.dtype == torch.int64
    assert tags.shape == (len(LENGTHS), 4)
    for row, length in enumerate(LENGTHS):
        scores = path_scores(crf, emissions[row], length)
        argmax = max(scores, key=scores.__getitem__)
        assert tuple(tags[row, :length].tolist()) == argmax
        assert tags[row, length:].eq(0).all()
        assert best[row].item() == pytest.approx(scores[argmax], abs=1e-10, rel=0)


def test_nll_is_minus_log_probability_of_the_gold_paths() -> None:
    crf = random_crf(3, seed=5)
    emissions, mask = ragged(LENGTHS, 4, 3, seed=6)
    generator = torch.Generator().manual_seed(7)
    tags = torch.randint(0, 3, (len(LENGTHS), 4), generator=generator)
    loss = crf.nll(emissions, tags, mask)
    expected = 0.0
    for row, length in enumerate(LENGTHS):
        scores = path_scores(crf, emissions[row], length)
        gold = tuple(tags[row, :length].tolist())
        # −log softmax over all paths, taken at the gold path
        expected -= scores[gold] - brute_log_z(scores)
    assert loss.total.item() >= 0.0
    assert loss.total.item() == pytest.approx(expected, abs=1e-10, rel=0)
    assert loss.n_targets.item() == sum(LENGTHS)


class _LogPartition(nn.Module):
    """Exposes log_partition as forward, so functional_call can swap the CRF's parameters."""

    def __init__(self, crf: CRF) -> None:
        super().__init__()
        self.crf = crf

    def forward(self, emissions: Tensor, mask: Tensor) -> Tensor:
        return self.crf.log_partition(emissions, mask)


def test_log_partition_gradcheck() -> None:
    crf = random_crf(3, seed=8)
    emissions, mask = ragged([3, 1, 2], 3, 3, seed=9)
    wrapper = _LogPartition(crf)

    def log_z(emissions: Tensor, transitions: Tensor, start: Tensor, end: Tensor) -> Tensor:
        parameters = {"crf.transitions": transitions, "crf.start": start, "crf.end": end}
        out: Tensor = torch.func.functional_call(wrapper, parameters, (emissions, mask))
        return out

    inputs = tuple(
        t.detach().clone().requires_grad_(True)
        for t in (emissions, crf.transitions, crf.start, crf.end)
    )
    assert torch.autograd.gradcheck(log_z, inputs, eps=1e-6, atol=1e-8)


def test_padding_changes_neither_the_nll_nor_any_gradient() -> None:
    crf = random_crf(4, seed=10)
    lengths = [5, 2, 1, 4]
    emissions, mask = ragged(lengths, 5, 4, seed=11)
    generator = torch.Generator().manual_seed(12)
    tags = torch.randint(0, 4, (4, 5), generator=generator)
    # Different junk past each row's end, in emissions and tags alike (inf and nan too).
    other = emissions.clone()
    other[~mask] = 100.0 * torch.randn(int((~mask).sum()), 4, generator=generator).double()
    other[1, 3, 0], other[2, 4, 1] = math.inf, math.nan
    other_tags = tags.masked_fill(~mask, -100)

    results = []
    for e, y in ((emissions, tags), (other, other_tags)):
        crf.zero_grad()
        leaf = e.clone().requires_grad_(True)
        loss = crf.nll(leaf, y, mask)
        loss.total.backward()
        assert leaf.grad is not None
        grads = [leaf.grad] + [p.grad for p in crf.parameters() if p.grad is not None]
        results.append((loss.total.detach(), grads))

    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    assert len(grads_a) == len(grads_b) == 4
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.equal(a, b)
    assert grads_a[0][~mask].eq(0).all()  # the padded emissions get exactly no gradient


def test_input_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^num_tags: "):
        CRF(0)
    crf = CRF(3)
    emissions = torch.zeros(2, 4, 3)
    with pytest.raises(ValueError, match=r"^emissions: "):
        crf.log_partition(torch.zeros(2, 4, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^mask: "):
        crf.log_partition(emissions, torch.ones(2, 4))  # not bool
    with pytest.raises(ValueError, match=r"^mask: .*prefix"):
        crf.log_partition(emissions, torch.tensor([[True, False, True, False]] * 2))
    with pytest.raises(ValueError, match=r"^mask: .*length"):
        crf.log_partition(emissions, torch.tensor([[False] * 4, [True] * 4]))
    with pytest.raises(ValueError, match=r"^tags: "):
        crf.score(emissions, torch.zeros(2, 3, dtype=torch.int64), torch.ones(2, 4).bool())


@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 4),
    num_tags=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_viterbi_is_a_path_no_better_than_log_z(
    batch: int, steps: int, num_tags: int, seed: int, data: st.DataObject
) -> None:
    lengths = data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    crf = random_crf(num_tags, seed)
    emissions, mask = ragged(lengths, steps, num_tags, seed + 1)
    tags, best = crf.viterbi(emissions, mask)
    log_z = crf.log_partition(emissions, mask)
    assert tags.shape == (batch, steps)
    assert tags.min() >= 0 and tags.max() < num_tags
    assert tags[~mask].eq(0).all()
    torch.testing.assert_close(crf.score(emissions, tags, mask), best, rtol=0, atol=1e-10)
    # log Z = log Σ exp S ≥ max S, with equality only when one path has all the mass
    assert (best <= log_z + 1e-12).all()
    for row, length in enumerate(lengths):
        scores = path_scores(crf, emissions[row], length)
        assert best[row].item() == pytest.approx(max(scores.values()), abs=1e-10, rel=0)
        assert log_z[row].item() == pytest.approx(brute_log_z(scores), abs=1e-10, rel=0)
