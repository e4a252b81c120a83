"""Undo: a step proved finite takes no copy; every other step is copied, checked and
can be taken back. The proof's bounds hold for the real optimizers' updates."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.training.averaging import NTASGD
from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig
from rnnkit.training.undo import REMEASURE, Undo
from tests.training.toy import Tagger, collate, examples, weights_of


def step(undo: Undo, params: list[torch.nn.Parameter], grads: list[torch.Tensor]) -> bool:
    """One step as the Trainer takes it: the gradient bound, the update, the check."""
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    norm = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
    undo.prepare(norm)
    undo.optimizer.step()
    undo.optimizer.zero_grad(set_to_none=True)
    return undo.finite()


def optimizers() -> st.SearchStrategy[Any]:
    lr = st.floats(1e-4, 1000.0)
    decay = st.sampled_from([0.0, 1e-4, 0.1, 3.0])
    beta = st.floats(0.0, 0.999)
    adam = st.builds(
        lambda cls, lr, wd, b1, b2, eps, ams: lambda ps: cls(
            ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, amsgrad=ams
        ),
        st.sampled_from([torch.optim.Adam, torch.optim.AdamW]),
        lr, decay, beta, beta, st.sampled_from([1e-8, 1e-3, 1.0]), st.booleans(),
    )  # fmt: skip
    sgd = st.builds(
        lambda cls, lr, wd, mu, nesterov: lambda ps: (
            cls(ps, lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov and mu > 0)
            if cls is torch.optim.SGD
            else cls(ps, lr, momentum=mu, weight_decay=wd)
        ),
        st.sampled_from([torch.optim.SGD, NTASGD]),
        lr, decay, st.sampled_from([0.0, 0.5, 0.9]), st.booleans(),
    )  # fmt: skip
    return st.one_of(adam, sgd)


@settings(max_examples=60, deadline=None)
@given(make=optimizers(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_the_carried_bounds_hold_for_the_real_updates(make: Any, seed: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(5, 7, generator=gen)),
              torch.nn.Parameter(torch.randn(3, generator=gen))]  # fmt: skip
    undo = Undo(make(params))
    for _ in range(12):
        grads = [scale * torch.randn(p.shape, generator=gen) for p in params]
        finite = step(undo, params, grads)
        if undo.proved:  # proved finite, so not checked: it must be
            assert finite and all(bool(torch.isfinite(p).all()) for p in params)
        bounds = undo.bounds
        if not finite or bounds is None:
            break  # diverged (a rate of 100s with decay 3): nothing is bounded any more
        state = undo.optimizer.state
        largest = max(float(p.detach().abs().max()) for p in params)
        assert largest <= bounds["weights"], (largest, bounds)
        for name, keys in {"first": ("exp_avg",), "second": ("exp_avg_sq", "max_exp_avg_sq"),
                           "momentum": ("momentum_buffer",)}.items():  # fmt: skip
            values = [v for p in params for k, v in state[p].items() if k in keys]
            if values and name in bounds:
                assert max(float(v.abs().max()) for v in values) <= bounds[name], name


def test_steady_training_proves_its_steps_and_copies_only_to_remeasure() -> None:
    params = [torch.nn.Parameter(torch.randn(16, 16))]
    undo = Undo(torch.optim.Adam(params, lr=1e-3))
    for _ in range(REMEASURE + 5):
        assert step(undo, params, [torch.randn(16, 16)])
    # The first step (nothing known yet) and the re-measure after REMEASURE proved steps.
    assert undo.copies == 2


def test_proved_steps_change_no_number() -> None:
    def train(prove: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        config = TrainerConfig(optimizer=OptimizerConfig("adamw", lr=0.01, weight_decay=0.1),
                               max_steps=12, batch_size=4, progress="off", device="cpu")  # fmt: skip
        trainer = Trainer(Tagger(), config, examples(37), collate)
        trainer._undo.prove = prove
        trainer.fit()
        if prove:
            assert trainer._undo.copies < 12
        else:
            assert trainer._undo.copies == 12
        return weights_of(trainer.model)

    proved, copied = train(True), train(False)
    for name, value in proved.items():
        assert torch.equal(value, copied[name]), name


def test_a_real_overflowing_update_is_not_proved_and_is_undone() -> None:
    # SGD at the largest rate with a huge decay: w − lr·(g + λw) overflows float32.
    params = [torch.nn.Parameter(torch.full((4,), 2.0))]
    undo = Undo(torch.optim.SGD(params, lr=1000.0, weight_decay=1e36))
    before = params[0].detach().clone()
    assert not step(undo, params, [torch.ones(4)])
    assert not undo.proved and undo.copies == 1
    assert not torch.isfinite(params[0]).all()
    undo.restore()
    assert torch.equal(params[0].detach(), before)


def test_adamw_whose_decay_would_overflow_after_a_proved_step_is_copied() -> None:
    params = [torch.nn.Parameter(torch.full((4,), 2.0))]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    undo = Undo(optimizer)
    assert step(undo, params, [torch.ones(4)]) and step(undo, params, [torch.ones(4)])
    assert undo.proved
    optimizer.param_groups[0]["weight_decay"] = 1e42  # 1 − lr·λ = −1e39: w overflows
    before = params[0].detach().clone()
    assert not step(undo, params, [torch.ones(4)])
    assert not undo.proved
    undo.restore()
    assert torch.equal(params[0].detach(), before)


def test_a_weight_changed_between_steps_is_measured_again() -> None:
    params = [torch.nn.Parameter(torch.ones(4))]
    undo = Undo(torch.optim.SGD(params, lr=0.1))
    assert step(undo, params, [torch.ones(4)]) and step(undo, params, [torch.ones(4)])
    assert undo.proved and undo.copies == 1
    with torch.no_grad():
        params[0].mul_(1e15)  # e.g. a callback: the bound on the weights no longer holds
    assert step(undo, params, [torch.ones(4)])
    assert not undo.proved and undo.copies == 2
    assert undo.bounds is not None and undo.bounds["weights"] >= 1e15


@pytest.mark.parametrize(
    "make",
    [lambda ps: torch.optim.RMSprop(ps, lr=0.01), lambda ps: torch.optim.Adagrad(ps, lr=0.01)],
    ids=["rmsprop", "adagrad"],
)
def test_optimizers_without_a_proof_copy_every_step(make: Any) -> None:
    params = [torch.nn.Parameter(torch.ones(4))]
    undo = Undo(make(params))
    for _ in range(5):
        assert step(undo, params, [torch.ones(4)])
    assert undo.copies == 5


@pytest.mark.parametrize(("dtype", "copies"), [(torch.float32, 1), (torch.float16, 3)])
def test_the_limit_is_the_weights_dtype(dtype: torch.dtype, copies: int) -> None:
    # Weights of 100: far inside float32, above a thousandth of float16's 65504.
    params = [torch.nn.Parameter(torch.full((4,), 100.0, dtype=dtype))]
    undo = Undo(torch.optim.SGD(params, lr=0.1, momentum=0.9))
    for _ in range(3):
        assert step(undo, params, [torch.ones(4, dtype=dtype)])
    assert undo.copies == copies
