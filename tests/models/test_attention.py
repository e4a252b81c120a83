"""The attention scorers: distributions over real positions, the equations, padding, gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.func import functional_call

from rnnkit.models.attention import (
    AdditiveAttention,
    DotAttention,
    GeneralAttention,
    masked_softmax,
)

SCORERS = (AdditiveAttention, DotAttention, GeneralAttention)
HQ = 5


def key_size(kind: type[nn.Module]) -> int:
    # Dot attention needs Hk = Hq; the others get a different size on purpose.
    return HQ if kind is DotAttention else 7


def make(kind: type[nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return kind(HQ, key_size(kind)).double()


def inputs(
    kind: type[nn.Module], lengths: list[int], steps: int, seed: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    query = torch.randn(batch, HQ, generator=generator, dtype=torch.float64)
    keys = torch.randn(batch, steps, key_size(kind), generator=generator, dtype=torch.float64)
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    return query, keys, mask


def reference_scores(module: nn.Module, query: Tensor, keys: Tensor) -> Tensor:
    """e_s written out per row and position, straight from each docstring's equation."""
    batch, steps, _ = keys.shape
    scores = torch.empty(batch, steps, dtype=keys.dtype)
    for b in range(batch):
        for s in range(steps):
            q, k = query[b], keys[b, s]
            if isinstance(module, AdditiveAttention):
                W_q, W_k = module.query_map.weight, module.key_map.weight
                bias, v = module.key_map.bias, module.score.weight[0]
                scores[b, s] = v @ torch.tanh(W_q @ q + W_k @ k + bias)
            elif isinstance(module, DotAttention):
                scores[b, s] = q @ k
            else:
                assert isinstance(module, GeneralAttention)
                scores[b, s] = q @ module.weight @ k
    return scores


@pytest.mark.parametrize("kind", SCORERS)
def test_weights_follow_the_equations_over_real_positions_only(kind: type[nn.Module]) -> None:
    module = make(kind)
    lengths = [4, 1, 3]
    query, keys, mask = inputs(kind, lengths, steps=4)
    context, weights = module(query, keys, mask)
    scores = reference_scores(module, query, keys)
    for b, length in enumerate(lengths):
        expected = torch.softmax(scores[b, :length], dim=0)  # the real positions alone
        torch.testing.assert_close(weights[b, :length], expected, rtol=0, atol=1e-12)
        assert torch.all(weights[b, length:] == 0.0)  # exactly, not approximately
        # c = Σ_s α_s k_s, written as a loop over the real positions
        expected_context = sum(weights[b, s] * keys[b, s] for s in range(length))
        torch.testing.assert_close(context[b], expected_context, rtol=0, atol=1e-12)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3, dtype=torch.float64))
    assert weights[1, 0] == 1.0  # one real position takes all the weight


@pytest.mark.parametrize("kind", SCORERS)
def test_padded_keys_change_neither_outputs_nor_any_gradient(kind: type[nn.Module]) -> None:
    module = make(kind)
    query, keys, mask = inputs(kind, [3, 1, 5], steps=5)
    noisy = keys.clone()
    noisy[~mask] = 1e3 * torch.randn(int((~mask).sum()), keys.shape[2], dtype=torch.float64)

    def run(values: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor]]:
        module.zero_grad()
        q = query.clone().requires_grad_(True)
        k = values.clone().requires_grad_(True)
        context, weights = module(q, k, mask)
        # weight the outputs so every entry gets a distinct upstream gradient
        (context * torch.linspace(-1, 1, context.numel()).view_as(context)).sum().backward()
        assert q.grad is not None and k.grad is not None
        grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
        return context, weights, q.grad, k.grad, grads

    clean, dirty = run(keys), run(noisy)
    for a, b in zip(clean[:4], dirty[:4], strict=True):
        assert torch.equal(a, b)
    assert torch.all(dirty[3][~mask] == 0.0)  # no gradient reaches a padded key
    assert len(clean[4]) == len(list(module.parameters()))
    for a, b in zip(clean[4], dirty[4], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", SCORERS)
def test_gradcheck_float64(kind: type[nn.Module]) -> None:
    module = make(kind)
    query, keys, mask = inputs(kind, [3, 2], steps=3)
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]

    def fn(q: Tensor, k: Tensor, *weights: Tensor) -> tuple[Tensor, Tensor]:
        out: tuple[Tensor, Tensor] = functional_call(
            module, dict(zip(names, weights, strict=True)), (q, k, mask)
        )
        return out

    assert torch.autograd.gradcheck(
        fn, (query.requires_grad_(True), keys.requires_grad_(True), *params)
    )


@st.composite
def ragged(draw: st.DrawFn) -> tuple[type[nn.Module], list[int], int, int]:
    kind = draw(st.sampled_from(SCORERS))
    steps = draw(st.integers(1, 7))
    lengths = draw(st.lists(st.integers(1, steps), min_size=1, max_size=5))
    return kind, lengths, steps, draw(st.integers(0, 2**16))


@given(ragged())
def test_property_random_batches(case: tuple[type[nn.Module], list[int], int, int]) -> None:
    kind, lengths, steps, seed = case
    module = make(kind, seed)
    query, keys, mask = inputs(kind, lengths, steps, seed)
    context, weights = module(query, keys, mask)
    assert context.shape == (len(lengths), key_size(kind))
    assert weights.shape == (len(lengths), steps)
    assert torch.all(weights[~mask] == 0.0)
    assert torch.all(weights[mask] >= 0.0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(len(lengths), dtype=torch.float64))
    torch.testing.assert_close(context, torch.einsum("bs,bsk->bk", weights, keys))


def test_masked_softmax_ignores_the_values_at_padding() -> None:
    scores = torch.tensor([[1.0, 2.0, float("inf")], [0.5, float("nan"), -3.0]])
    mask = torch.tensor([[True, True, False], [True, False, True]])
    weights = masked_softmax(scores, mask)
    first = torch.softmax(torch.tensor([1.0, 2.0]), 0)
    second = torch.softmax(torch.tensor([0.5, -3.0]), 0)
    expected = torch.tensor([[first[0], first[1], 0.0], [second[0], 0.0, second[1]]])
    torch.testing.assert_close(weights, expected, rtol=0, atol=1e-7)
    assert weights[0, 2] == 0.0 and weights[1, 1] == 0.0


def test_dot_attention_needs_equal_sizes() -> None:
    with pytest.raises(ValueError, match="query_size == key_size"):
        DotAttention(4, 6)


@pytest.mark.parametrize(
    ("query", "keys", "mask", "match"),
    [
        (torch.zeros(2, 4), torch.zeros(2, 3, 6), torch.ones(2, 3, dtype=torch.bool), "query"),
        (torch.zeros(2, 5), torch.zeros(3, 3, 6), torch.ones(3, 3, dtype=torch.bool), "keys"),
        (torch.zeros(2, 5), torch.zeros(2, 3, 6), torch.ones(2, 3), "bool mask"),
        (torch.zeros(2, 5), torch.zeros(2, 3, 6), torch.ones(2, 4, dtype=torch.bool), "mask"),
    ],
)
def test_shape_errors_name_the_argument(
    query: Tensor, keys: Tensor, mask: Tensor, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        GeneralAttention(5, 6)(query, keys, mask)


def test_sizes_are_validated() -> None:
    with pytest.raises(ValueError, match="attention_size"):
        AdditiveAttention(3, 4, attention_size=0)
    with pytest.raises(ValueError, match="key_size"):
        GeneralAttention(3, -1)
