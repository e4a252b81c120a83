"""Stamps of kept weight copies: a fused optimizer's step, which leaves the version
counter where it was, still makes every copy stale.

The regression these guard against: the input gradient's kept transpose (and the
generation path's packed weights) outlived the first fused Adam step, so every later
backward used the initial weights: a 5 × 318 minGRU language model trained to a
training loss of 2.5 while its validation loss was 5.3 nats.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

from rnnkit import Recurrent, projection
from rnnkit.stamps import optimizer_steps, stamp, stamps
from rnnkit.training.trainer import OptimizerConfig

FUSED = [
    lambda ps: torch.optim.SGD(ps, lr=0.1, fused=True),
    lambda ps: torch.optim.Adam(ps, lr=0.1, fused=True),
    lambda ps: torch.optim.AdamW(ps, lr=0.1, fused=True),
    lambda ps: torch.optim.Adagrad(ps, lr=0.1, fused=True),
]


@pytest.mark.parametrize("make", FUSED, ids=["sgd", "adam", "adamw", "adagrad"])
def test_a_fused_step_moves_the_stamp_though_not_the_version(
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
) -> None:
    weight = torch.nn.Parameter(torch.randn(3, 4))
    optimizer = make([weight])
    before, version = stamp(weight), weight._version
    weight.grad = torch.ones(3, 4)
    optimizer.step()
    assert weight._version == version  # torch's fused kernels leave the counter
    assert stamp(weight) != before and optimizer_steps() == before[0] + 1
    assert stamp(weight) == stamp(weight)  # nothing else moves it


def test_stamps_see_in_place_changes_and_new_storage() -> None:
    a, b = torch.zeros(2), torch.zeros(3)
    first = stamps([a, b])
    a.add_(1.0)
    assert stamps([a, b]) != first
    second = stamps([a, b])
    b.data = torch.zeros(3)  # a new storage
    assert stamps([a, b]) != second


def test_the_trainers_optimizers_move_the_stamp() -> None:
    weight = torch.nn.Parameter(torch.randn(3, 4))
    for name in ("sgd", "ntasgd", "adam", "adamw", "rmsprop", "adagrad"):
        optimizer = OptimizerConfig(name=name, lr=0.01).build([weight])
        before = stamp(weight)
        weight.grad = torch.ones(3, 4)
        optimizer.step()
        assert stamp(weight) != before, name


def test_the_kept_transpose_follows_a_fused_step() -> None:
    weight = torch.nn.Parameter(torch.randn(6, 4))
    optimizer = torch.optim.Adam([weight], lr=0.5, fused=True)
    first = projection.transposed(weight)
    weight.grad = torch.randn(6, 4)
    optimizer.step()
    second = projection.transposed(weight)
    assert second is not first and torch.equal(second, weight.detach().t())


@pytest.mark.parametrize(
    ("cell", "backend"),
    [
        ("lstm", "fused"),
        ("gru", "fused"),
        ("rnn", "fused"),
        ("mingru", "scan"),
        ("minlstm", "scan"),
        ("gru", "unrolled"),
    ],
)
def test_gradients_after_fused_steps_equal_a_fresh_copys(
    cell: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After two fused Adam steps with oneDNN's products forced, the gradients equal
    those of a deep copy of the model, which holds no kept copy of any weight."""
    if not projection.eligible(torch.zeros(4096, 64), torch.zeros(64, 64)):
        pytest.skip("oneDNN's products are not available here")
    monkeypatch.setenv(projection.ENV, "onednn")
    torch.manual_seed(0)
    model = Recurrent(cell, 64, 64, num_layers=2, backend=backend)  # 4 H = 256
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, fused=True)
    x = torch.randn(16, 64, 64)  # (B, T, I): 1,024 rows, every product on oneDNN

    def gradients(module: Recurrent) -> list[torch.Tensor]:
        module.zero_grad(set_to_none=True)
        out, _ = module(x)
        out.square().mean().backward()
        return [p.grad.clone() for p in module.parameters() if p.grad is not None]

    for _ in range(2):
        gradients(model)
        optimizer.step()
    kept = gradients(model)
    fresh = gradients(copy.deepcopy(model))
    # Same sums on the same library: differences are float32 rounding of reordered
    # additions, far below a stale weight's (the step moved every weight by ~0.05).
    for got, want in zip(kept, fresh, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)


def test_a_cached_stepper_is_rebuilt_after_a_fused_step() -> None:
    """The decoders' greedy validation (seq2seq's early stopping) steps through the
    packed weights: they must be the ones the last optimizer step wrote."""
    from rnnkit.stepping import Stepper, cached_stepper

    torch.manual_seed(0)
    owner = Recurrent("lstm", 3, 4).eval()
    first = cached_stepper(owner, lambda: Stepper.from_recurrent(owner))
    optimizer = torch.optim.Adam(owner.parameters(), lr=0.1, fused=True)
    for p in owner.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert not first.is_current()
    second = cached_stepper(owner, lambda: Stepper.from_recurrent(owner))
    x = torch.randn(2, 3)
    with torch.no_grad():
        top, _ = second.step(x, owner.initial_state(2))
        want, _ = owner(x[:, None])
    torch.testing.assert_close(top, want[:, 0])  # float32, one step: the default tolerance
