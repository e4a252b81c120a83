"""``Recurrent`` against torch.nn: the whole oracle matrix, every backend, interop, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnkit import GRUCell, HiddenState, LSTMCell, LSTMState, Recurrent, RecurrentConfig, tuning
from rnnkit.bptt import compiled
from rnnkit.cells import TORCH_CELL_NAMES
from rnnkit.unrolling import unroll
from tests.helpers import TOLERANCES, TORCH_STACKS, ConcatCell, torch_state_fields, weighted_sum

BATCH, STEPS, INPUT, HIDDEN = 5, 6, 3, 4
RAGGED = [STEPS, 1, 3, STEPS - 1, 2]  # includes length 1 and full length


def torch_name(index: int, num_directions: int, name: str) -> str:
    layer, direction = divmod(index, num_directions)
    return f"{name}_l{layer}" + ("_reverse" if direction else "")


def run_torch(
    module: nn.RNNBase, x: Tensor, state: list[Tensor], lengths: list[int] | None
) -> tuple[Tensor, list[Tensor]]:
    hx = tuple(state) if len(state) > 1 else state[0]
    if lengths is None:
        out, final = module(x, hx)
        return out, torch_state_fields(final)
    packed = nn.utils.rnn.pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    out_packed, final = module(packed, hx)
    out, _ = nn.utils.rnn.pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
    return out, torch_state_fields(final)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", ["unrolled", "native", "fused", "auto"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_oracle_matrix(
    name: str, num_layers: int, bidirectional: bool, ragged: bool, backend: str, dtype: torch.dtype
) -> None:
    # A stable seed per case (str hashes change between processes).
    torch.manual_seed(TORCH_CELL_NAMES.index(name) * 100 + num_layers * 10 + int(bidirectional))
    torch_type, extra = TORCH_STACKS[name]
    reference = torch_type(
        INPUT,
        HIDDEN,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=True,
        dtype=dtype,
        **extra,
    )
    ours = Recurrent.from_torch(reference, backend=backend)
    directions = 2 if bidirectional else 1
    lengths = RAGGED if ragged else None

    x_ours = torch.randn(BATCH, STEPS, INPUT, dtype=dtype, requires_grad=True)
    x_theirs = x_ours.detach().clone().requires_grad_()
    n_fields = 2 if name == "lstm" else 1
    s_ours = [
        torch.randn(num_layers * directions, BATCH, HIDDEN, dtype=dtype, requires_grad=True)
        for _ in range(n_fields)
    ]
    s_theirs = [s.detach().clone().requires_grad_() for s in s_ours]
    state_type = LSTMState if name == "lstm" else HiddenState

    out, final = ours(x_ours, state_type(*s_ours), lengths=lengths)
    ref_out, ref_final = run_torch(reference, x_theirs, s_theirs, lengths)

    tol = TOLERANCES[dtype]
    assert out.shape == (BATCH, STEPS, directions * HIDDEN)
    assert type(final) is state_type
    torch.testing.assert_close(out, ref_out, **tol)
    for a, b in zip(final, ref_final, strict=True):
        torch.testing.assert_close(a, b, **tol)

    weighted_sum([out, *final]).backward()
    weighted_sum([ref_out, *ref_final]).backward()
    assert x_ours.grad is not None and x_theirs.grad is not None
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, **tol)
    for a, b in zip(s_ours, s_theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, **tol)
    checked = 0
    for index, cell in enumerate(ours.cells):
        for pname, p in cell.named_parameters():
            expected = getattr(reference, torch_name(index, directions, pname)).grad
            torch.testing.assert_close(p.grad, expected, **tol, msg=lambda m, n=pname: f"{n}: {m}")
            checked += 1
    assert checked == num_layers * directions * 4


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
@pytest.mark.parametrize("backend", ["unrolled", "native", "fused"])
def test_dropout_between_layers_matches_torch_nn_in_training(name: str, backend: str) -> None:
    # p = 1 makes dropout deterministic (every inter-layer input is zero), so training
    # mode can be compared exactly: layer 2 then sees only its biases and state.
    # Seeded: with some random weights a ReLU layer 2 is dead in both modes (all zeros),
    # and the last check below could not tell them apart.
    torch.manual_seed(3)
    torch_type, extra = TORCH_STACKS[name]
    reference = torch_type(
        INPUT, HIDDEN, num_layers=2, dropout=1.0, batch_first=True, dtype=torch.float64, **extra
    )
    ours = Recurrent.from_torch(reference, backend=backend)
    assert ours.training and ours.dropout == 1.0
    x = torch.randn(2, 4, INPUT, dtype=torch.float64)
    out, _ = ours(x)
    ref_out, _ = reference(x)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    ours.eval()
    reference.eval()
    torch.testing.assert_close(ours(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)
    assert not torch.allclose(ours(x)[0], out)  # eval mode really differs


def test_dropout_is_not_applied_to_the_first_layer_or_the_outputs() -> None:
    torch.manual_seed(0)
    one_layer = Recurrent("gru", 3, 4, num_layers=1, dropout=0.9, backend="unrolled").double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    one_layer.train()
    train_out = one_layer(x)[0]
    one_layer.eval()
    torch.testing.assert_close(train_out, one_layer(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
def test_from_torch_keeps_a_seq_first_layout(name: str) -> None:
    torch_type, extra = TORCH_STACKS[name]
    reference = torch_type(
        INPUT, HIDDEN, num_layers=2, bidirectional=True, dtype=torch.float64, **extra
    )
    ours = Recurrent.from_torch(reference)
    assert not ours.batch_first  # the layout is kept: no silent transpose trap
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64)  # (T, B, I), as the original
    ref_out, ref_final = reference(x)
    out, final = ours(x)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    assert ours.to_torch().batch_first is False
    for a, b in zip(final, torch_state_fields(ref_final), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", TORCH_CELL_NAMES)
@pytest.mark.parametrize("bias", [True, False])
def test_to_torch_round_trip(name: str, bias: bool) -> None:
    torch.manual_seed(5)
    ours = Recurrent(
        name, INPUT, HIDDEN, num_layers=2, bidirectional=True, bias=bias, dtype=torch.float64
    )
    module = ours.to_torch()
    torch_type, extra = TORCH_STACKS[name]
    assert type(module) is torch_type and module.batch_first and module.bias == bias
    if extra:
        assert module.nonlinearity == extra["nonlinearity"]  # type: ignore[attr-defined]
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64)
    out, final = ours(x, lengths=RAGGED)
    ref_out, ref_final = run_torch(
        module, x, list(ours.initial_state(BATCH, dtype=torch.float64)), RAGGED
    )
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    for a, b in zip(final, ref_final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    back = Recurrent.from_torch(module)
    for (n1, p1), (n2, p2) in zip(ours.named_parameters(), back.named_parameters(), strict=True):
        assert n1 == n2
        assert torch.equal(p1, p2)


@pytest.mark.parametrize("backend", ["native", "fused"])
def test_weights_are_shared_not_copied_by_the_backend(backend: str) -> None:
    # Training through a kernel must move rnnkit's own parameters.
    stack = Recurrent("lstm", 3, 4, backend=backend)
    before = stack.cells[0].weight_hh.detach().clone()
    optimizer = torch.optim.SGD(stack.parameters(), lr=0.1)
    stack(torch.randn(2, 5, 3))[0].pow(2).sum().backward()
    optimizer.step()
    assert not torch.equal(before, stack.cells[0].weight_hh)


def test_auto_backend_rule(tmp_path: Path) -> None:
    # `auto` measures its choice per call (tests/test_tuning.py); without a call's
    # inputs, or with tuning off (as in this suite: tests/conftest.py), it applies
    # the static rule BENCHMARKS.md measures: fused for RNN/GRU on the CPU, training
    # and inference alike; for the LSTM, fused for training with the compiled loops
    # and native otherwise (oneDNN's forward is faster); native on CUDA.
    x = torch.randn(2, 5, 3)
    with tuning.enabled(False):
        for name in ("lstm", "gru"):
            stack = Recurrent(name, 3, 4)
            assert stack.resolve_backend(inputs=x) == stack.resolve_backend()
    previous = tuning.set_default_tuner(tuning.Tuner(tmp_path))
    try:
        with tuning.enabled(True):
            for name in ("lstm", "gru"):
                stack = Recurrent(name, 3, 4)
                assert stack.resolve_backend(inputs=x) in ("fused", "native")
                assert stack.resolve_backend() in ("fused", "native")  # the static rule
    finally:
        tuning.set_default_tuner(previous)
    lstm = Recurrent("lstm", 3, 4)
    assert lstm.resolve_backend() == ("fused" if compiled.load() is not None else "native")
    with compiled.enabled(False):
        assert lstm.resolve_backend() == "native"
    with torch.no_grad():
        assert lstm.resolve_backend() == "native"
    assert lstm.resolve_backend(torch.device("cuda")) == "native"
    assert lstm.to(torch.bfloat16).resolve_backend() == "native"
    for name in ("rnn", "rnn_relu", "gru"):
        stack = Recurrent(name, 3, 4)
        assert stack.resolve_backend() == "fused"
        assert stack.resolve_backend(torch.device("cuda")) == "native"
        with torch.no_grad():
            assert stack.resolve_backend() == "fused"
    assert Recurrent("gru", 3, 4, backend="unrolled").resolve_backend() == "unrolled"
    assert Recurrent("lstm", 3, 4, backend="fused").resolve_backend() == "fused"

    custom = Recurrent(ConcatCell, 3, 4, num_layers=2)
    assert custom.resolve_backend() == "unrolled"
    assert custom(torch.randn(2, 3, 3))[0].shape == (2, 3, 4)
    with pytest.raises(
        ValueError,
        match="backend 'native' cannot run this stack: ConcatCell is not one of rnnkit's built-in cells",
    ):
        Recurrent(ConcatCell, 3, 4, backend="native")
    with pytest.raises(
        ValueError,
        match="backend 'fused' cannot run this stack: ConcatCell is not one of rnnkit's built-in cells",
    ):
        Recurrent(ConcatCell, 3, 4, backend="fused")


def test_factory_cells_of_the_wrong_size_are_refused() -> None:
    # A mis-sized cell would make torch.nn's kernel read the weights with the wrong stride.
    with pytest.raises(ValueError, match="cell: the factory's cell 0 has input_size 5, expected 2"):
        Recurrent(lambda i, h: LSTMCell(5, h), 2, 3, backend="native")
    with pytest.raises(ValueError, match="cell: the factory's cell 2 has input_size 3, expected 6"):
        Recurrent(lambda i, h: GRUCell(3, h), 3, 3, num_layers=2, bidirectional=True)
    with pytest.raises(
        ValueError, match="cell: the factory's cell 0 has hidden_size 4, expected 3"
    ):
        Recurrent(lambda i, h: GRUCell(i, 4), 3, 3)


def test_frozen_weights_stay_frozen_both_ways() -> None:
    reference = nn.GRU(3, 4, num_layers=2)
    reference.weight_hh_l1.requires_grad_(False)
    ours = Recurrent.from_torch(reference)
    assert not ours.cells[1].weight_hh.requires_grad
    assert ours.cells[0].weight_hh.requires_grad
    back = ours.to_torch()
    assert not back.weight_hh_l1.requires_grad and back.weight_hh_l0.requires_grad


def test_to_torch_with_single_layer_dropout_does_not_warn() -> None:
    # filterwarnings = error turns torch.nn's single-layer dropout warning into a failure.
    module = Recurrent("lstm", 3, 4, dropout=0.3).to_torch()
    assert module.num_layers == 1


def test_config_rejects_non_boolean_flags() -> None:
    with pytest.raises(ValueError, match="bidirectional: expected True or False, got 2"):
        RecurrentConfig("gru", 3, 4, bidirectional=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dropout: expected a number in \[0, 1\], got True"):
        Recurrent("gru", 3, 4, dropout=True)


def test_initial_state_is_stacked() -> None:
    stack = Recurrent("lstm", 3, 4, num_layers=3, bidirectional=True)
    state = stack.initial_state(2)
    assert type(state) is LSTMState
    assert state.h.shape == state.c.shape == (6, 2, 4)


def test_config_round_trip_and_validation() -> None:
    config = RecurrentConfig("gru", 3, 4, num_layers=2, bidirectional=True, dropout=0.1)
    stack = Recurrent.from_config(config)
    assert stack.config == config
    with pytest.raises(Exception, match="cannot assign"):
        config.hidden_size = 5  # type: ignore[misc]
    with pytest.raises(
        ValueError, match=r"cell: expected one of rnn, .*, minlstm_log, got 'transformer'"
    ):
        RecurrentConfig("transformer", 3, 4)
    with pytest.raises(ValueError, match="num_layers: expected a positive int, got 0"):
        RecurrentConfig("gru", 3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout: expected a number in \[0, 1\], got 1.5"):
        RecurrentConfig("gru", 3, 4, dropout=1.5)
    with pytest.raises(
        ValueError, match="backend: expected one of auto, unrolled, native, fused, scan, got 'cuda'"
    ):
        RecurrentConfig("gru", 3, 4, backend="cuda")


def test_bad_input_to_recurrent() -> None:
    stack = Recurrent("lstm", 3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"cell: expected one of rnn, .*, minlstm_log, got .lsmt."):
        Recurrent("lsmt", 3, 4)
    with pytest.raises(ValueError, match=r"inputs: expected \(B, T, 3\), got \(2, 5, 7\)"):
        stack(torch.randn(2, 5, 7))
    with pytest.raises(
        ValueError,
        match=r"inputs: expected dtype torch.float32 like the parameters, got torch.float64",
    ):
        stack(torch.randn(2, 5, 3, dtype=torch.float64))
    with pytest.raises(
        ValueError, match=r"lengths: expected every length in 1..5, got values in 0..5"
    ):
        stack(torch.randn(2, 5, 3), lengths=[5, 0])
    with pytest.raises(
        ValueError,
        match=r"state: expected LSTMState\(h=\(2, 2, 4\), c=\(2, 2, 4\)\), got LSTMState\(h=\(1, 2, 4\)",
    ):
        stack(torch.randn(2, 5, 3), LSTMState(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match=r"got Tensor\(2, 2, 4\)"):
        stack(torch.randn(2, 5, 3), torch.zeros(2, 2, 4))
    with pytest.raises(
        ValueError, match=r"from_torch: expected nn\.RNN, nn\.LSTM or nn\.GRU, got Linear"
    ):
        Recurrent.from_torch(nn.Linear(2, 3))
    with pytest.raises(ValueError, match="proj_size: only the LSTM has a projection"):
        Recurrent("gru", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size: expected less than hidden_size 4"):
        Recurrent("lstm", 3, 4, proj_size=4)
    with pytest.raises(ValueError, match="backend 'fused' cannot run this stack"):
        Recurrent("lstm", 3, 4, proj_size=2, backend="fused")


@given(
    name=st.sampled_from(TORCH_CELL_NAMES),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    batch=st.integers(1, 4),
    steps=st.integers(1, 6),
    hidden=st.integers(1, 5),
    data=st.data(),
)
@settings(max_examples=25)
def test_property_stacks_agree_with_torch_nn(
    name: str,
    num_layers: int,
    bidirectional: bool,
    batch: int,
    steps: int,
    hidden: int,
    data: st.DataObject,
) -> None:
    lengths = data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    torch.manual_seed(batch * 31 + steps)
    torch_type, extra = TORCH_STACKS[name]
    reference = torch_type(
        2,
        hidden,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=True,
        dtype=torch.float64,
        **extra,
    )
    x = torch.randn(batch, steps, 2, dtype=torch.float64)
    zeros = list(Recurrent.from_torch(reference).initial_state(batch, dtype=torch.float64))
    ref_out, ref_final = run_torch(reference, x, zeros, lengths)
    for backend in ("unrolled", "native", "fused"):
        out, final = Recurrent.from_torch(reference, backend=backend)(x, lengths=lengths)
        assert out.shape == (batch, steps, (2 if bidirectional else 1) * hidden)
        torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
        for a, b in zip(final, ref_final, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["auto", "native", "unrolled"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_projected_lstm_matches_torch(backend: str, bidirectional: bool) -> None:
    """proj_size: outputs, both state fields and every gradient equal nn.LSTM(proj_size=P)."""
    torch.manual_seed(11)
    reference = nn.LSTM(
        INPUT, 6, num_layers=2, bidirectional=bidirectional, proj_size=2, batch_first=True,
        dtype=torch.float64,
    )  # fmt: skip
    ours = Recurrent.from_torch(reference, backend)
    assert ours.output_size == 2 and ours.resolve_backend() in ("native", "unrolled")
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([STEPS, 2, 4][:BATCH] + [STEPS] * max(0, BATCH - 3))
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_packed, (ref_h, ref_c) = reference(packed)
    ref_out, _ = nn.utils.rnn.pad_packed_sequence(ref_packed, batch_first=True, total_length=STEPS)
    out, final = ours(x, lengths=lengths)
    assert out.shape == (BATCH, STEPS, 2 * (2 if bidirectional else 1))
    assert final.h.shape[-1] == 2 and final.c.shape[-1] == 6
    for a, b in ((out, ref_out), (final.h, ref_h), (final.c, ref_c)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    ref_loss = ref_out.square().sum() + ref_h.sum() + ref_c.sum()
    loss = out.square().sum() + final.h.sum() + final.c.sum()
    ref_grads = torch.autograd.grad(ref_loss, [x, *reference.parameters()])
    grads = torch.autograd.grad(loss, [x, *(p for _, p in ours._torch_names())])
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- regularisers

REGULARISED = [
    (n, b) for n in ("rnn", "lstm", "gru") for b in ("unrolled", "native", "fused", "auto")
]


def regularised(name: str, backend: str, **options: object) -> Recurrent:
    torch.manual_seed(21)
    stack = Recurrent(name, INPUT, HIDDEN, num_layers=3, bidirectional=True, dropout=0.4,
                      backend=backend, locked_dropout=True, dtype=torch.float64,
                      **options)  # type: ignore[arg-type]  # fmt: skip
    return stack.train()


def seeded_run(stack: Recurrent, x: Tensor, lengths: list[int]) -> list[Tensor]:
    """Outputs, final state and every gradient, the masks drawn from seed 5."""
    with torch.random.fork_rng():
        torch.manual_seed(5)
        out, final = stack(x, lengths=lengths)
    values = [out, *final]
    grads = torch.autograd.grad(weighted_sum(values), [x, *stack.parameters()])
    return [*values, *grads]


@pytest.mark.parametrize(("name", "backend"), REGULARISED)
def test_locked_dropout_and_weight_drop_agree_on_every_backend(name: str, backend: str) -> None:
    """The same seed, the same masks: every backend equals unrolled in float64."""
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64, requires_grad=True)
    lengths = [STEPS, 2, 5, 1, 4][:BATCH]
    reference = seeded_run(regularised(name, "unrolled", weight_drop=0.3), x, lengths)
    got = seeded_run(regularised(name, backend, weight_drop=0.3), x, lengths)
    for a, b in zip(got, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_the_locked_mask_holds_for_every_step_and_weight_drop_masks_w() -> None:
    """An oracle written out: layer by layer, W ⊙ m/(1 − p), one mask per row between."""
    stack = regularised("gru", "fused", weight_drop=0.3)
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        out, _ = stack(x)
    torch.manual_seed(5)
    # In the stack's order: W's masks for the call, then one per layer boundary.
    masks = [torch.empty_like(c.weight_hh).bernoulli_(0.7) / 0.7 for c in stack.cells]
    between = [torch.empty(BATCH, 2 * HIDDEN, dtype=torch.float64).bernoulli_(0.6) / 0.6
               for _ in range(2)]  # fmt: skip
    h = x
    for layer in range(3):
        if layer:
            h = h * between[layer - 1][:, None, :]  # the same mask at every step
        runs = []
        for d in range(2):
            cell = stack.cells[2 * layer + d]
            plain = GRUCell(cell.input_size, HIDDEN, dtype=torch.float64)
            plain.load_state_dict({**cell.state_dict(),
                                   "weight_hh": cell.weight_hh * masks[2 * layer + d]})  # fmt: skip
            runs.append(unroll(plain, h, reverse=d == 1)[0])
        h = torch.cat(runs, dim=-1)
    torch.testing.assert_close(out, h, rtol=1e-10, atol=1e-10)
    stack.eval()  # no masks at all in eval mode
    plain_stack = Recurrent("gru", INPUT, HIDDEN, num_layers=3, bidirectional=True,
                            dtype=torch.float64)  # fmt: skip
    plain_stack.load_state_dict(stack.state_dict())
    torch.testing.assert_close(stack(x)[0], plain_stack(x)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["fused", "native", "unrolled"])
def test_gradcheck_under_fixed_masks(backend: str) -> None:
    stack = Recurrent("lstm", INPUT, 2, num_layers=2, dropout=0.3, locked_dropout=True,
                      weight_drop=0.4, backend=backend, dtype=torch.float64).train()  # fmt: skip
    x = torch.randn(3, 4, INPUT, dtype=torch.float64, requires_grad=True)
    names = ["cells.0.weight_hh", "cells.1.weight_ih"]
    weights = [dict(stack.named_parameters())[n].detach().clone().requires_grad_() for n in names]

    def run(x: Tensor, *chosen: Tensor) -> Tensor:
        with torch.random.fork_rng():
            torch.manual_seed(9)  # the same masks at every evaluation
            replaced = dict(zip(names, chosen, strict=True))
            out, _ = torch.func.functional_call(stack, replaced, (x,), {"lengths": [4, 1, 3]})
        return out

    assert torch.autograd.gradcheck(run, (x, *weights), eps=1e-6, atol=1e-6)


def test_regulariser_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"weight_drop: expected a number in \[0, 1\), got 1.0"):
        Recurrent("lstm", 3, 4, weight_drop=1.0)
    with pytest.raises(ValueError, match="weight_drop: the mingru cell has no W"):
        Recurrent("mingru", 3, 4, weight_drop=0.2)
    with pytest.raises(ValueError, match="locked_dropout: expected True or False"):
        Recurrent("lstm", 3, 4, locked_dropout=1)  # type: ignore[arg-type]
    stack = Recurrent("gru", 3, 4, num_layers=2, dropout=0.1, locked_dropout=True, weight_drop=0.2)
    assert Recurrent.from_config(stack.config).config == stack.config
    assert "locked_dropout=True, weight_drop=0.2" in repr(stack)


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_locked_dropout_on_the_scan_backend_agrees_with_unrolled(name: str) -> None:
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64, requires_grad=True)
    lengths = [STEPS, 2, 5, 1, 4][:BATCH]
    reference = seeded_run(regularised(name, "unrolled"), x, lengths)
    for a, b in zip(seeded_run(regularised(name, "scan"), x, lengths), reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
