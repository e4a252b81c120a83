"""The generation path: ``Stepper`` against ``Recurrent``, and every generator's tokens
against its old step (the sequence runner at T = 1).

The stepper runs either the compiled step (``step.cpp``) or the ATen path; both are
tested, tied to ``Recurrent`` and to each other. Token identity is checked in
float64 models with random weights, so no near-tie can flip a token between two
correct computations on any machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.bptt import compiled
from rnnkit.decoding import beam_search, greedy, sample
from rnnkit.models.generator import ConditionedGenerator, GeneratorConfig, GeneratorState
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig
from rnnkit.models.music import MusicConfig, PianoRollModel
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig, Seq2SeqState
from rnnkit.state import HiddenState, LSTMState
from rnnkit.stepping import Stepper, cached_stepper

CELLS = ("rnn", "rnn_relu", "lstm", "gru")
BEAM = 5


def has_compiled_step() -> bool:
    ops = compiled.load()
    return ops is not None and hasattr(ops, "step_lstm")


PATHS = [
    pytest.param(True, id="compiled"),
    pytest.param(False, id="aten"),
]


@contextmanager
def path(use_compiled: bool) -> Iterator[None]:
    """Steppers built inside run the compiled step (skipped when it is unavailable) or not."""
    if use_compiled and not has_compiled_step():
        pytest.skip("the compiled loops are not available here")
    with compiled.enabled(use_compiled):
        yield


def random_state(rnn: Recurrent, batch: int, seed: int) -> Any:
    g = torch.Generator().manual_seed(seed)
    zero = rnn.initial_state(batch)
    return type(zero)(*(torch.randn(f.shape, generator=g, dtype=f.dtype) for f in zero))


def tolerance(dtype: torch.dtype) -> float:
    # float64: both sides sum the same products in another order (1e-10 is far above
    # that, far below any real error); float32: a few hundred ulp of O(1) values,
    # including step.cpp's polynomial exp.
    return 1e-10 if dtype == torch.float64 else 2e3 * torch.finfo(dtype).eps


# --- Stepper against Recurrent -----------------------------------------------------


@pytest.mark.parametrize("use_compiled", PATHS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("layers", "batch"), [(1, 1), (2, BEAM), (3, 2)])
def test_steps_compute_what_recurrent_computes(
    use_compiled: bool, dtype: torch.dtype, cell: str, layers: int, batch: int
) -> None:
    torch.manual_seed(layers * 10 + batch)
    # Odd widths: the packed rows are padded, and the padding must add nothing.
    rnn = Recurrent(cell, 13, 21, num_layers=layers, dtype=dtype).eval()
    inputs = torch.randn(batch, 6, 13, dtype=dtype)
    state = random_state(rnn, batch, seed=3)
    with torch.no_grad():
        outputs, final = rnn(inputs, state)
        with path(use_compiled):
            stepper = Stepper.from_recurrent(rnn)
        assert stepper.compiled == use_compiled
        tops = []
        for t in range(inputs.shape[1]):
            top, state = stepper.step(inputs[:, t], state)
            tops.append(top)
    tol = tolerance(dtype)
    torch.testing.assert_close(torch.stack(tops, dim=1), outputs, rtol=tol, atol=tol)
    assert type(state) is type(final)
    for got, want in zip(state, final, strict=True):
        assert got.shape == (layers, batch, 21) and got.dtype == dtype
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
def test_the_compiled_step_and_the_aten_path_agree(dtype: torch.dtype, cell: str) -> None:
    torch.manual_seed(5)
    rnn = Recurrent(cell, 64, 256, num_layers=2, dtype=dtype).eval()
    state = random_state(rnn, BEAM, seed=7)
    x = torch.randn(BEAM, 64, dtype=dtype)
    with torch.no_grad():
        with path(True):
            fast = Stepper.from_recurrent(rnn)
        with path(False):
            slow = Stepper.from_recurrent(rnn)
        top_fast, state_fast = fast.step(x, state)
        top_slow, state_slow = slow.step(x, state)
    tol = tolerance(dtype)
    torch.testing.assert_close(top_fast, top_slow, rtol=tol, atol=tol)
    for a, b in zip(state_fast, state_slow, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_the_environment_switch_selects_the_aten_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNKIT_COMPILED_LOOPS", "0")
    rnn = Recurrent("lstm", 3, 4, dtype=torch.float64)
    assert not Stepper.from_recurrent(rnn).compiled


def test_a_stack_without_bias_steps_like_recurrent() -> None:
    torch.manual_seed(2)
    rnn = Recurrent("gru", 5, 6, num_layers=2, bias=False, dtype=torch.float64).eval()
    x = torch.randn(3, 1, 5, dtype=torch.float64)
    for use_compiled in (True, False):
        if use_compiled and not has_compiled_step():
            continue
        with torch.no_grad(), compiled.enabled(use_compiled):
            top, state = Stepper.from_recurrent(rnn).step(x[:, 0], rnn.initial_state(3))
            outputs, final = rnn(x)
        torch.testing.assert_close(top, outputs[:, 0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state.h, final.h, rtol=1e-10, atol=1e-10)


def test_stepping_records_no_graph_and_keeps_the_state_type() -> None:
    rnn = Recurrent("lstm", 3, 4)
    top, state = Stepper.from_recurrent(rnn).step(torch.randn(2, 3), rnn.initial_state(2))
    assert isinstance(state, LSTMState) and top.shape == (2, 4)
    assert not top.requires_grad and not state.c.requires_grad
    _, hidden = Stepper.from_recurrent(Recurrent("gru", 3, 4)).step(
        torch.randn(2, 3), Recurrent("gru", 3, 4).initial_state(2)
    )
    assert isinstance(hidden, HiddenState)


# --- what a stepper refuses ------------------------------------------------------------


def test_a_bidirectional_stack_is_refused() -> None:
    with pytest.raises(ValueError, match="bidirectional stack cannot step"):
        Stepper.from_recurrent(Recurrent("lstm", 3, 4, bidirectional=True))


def test_a_cell_of_ones_own_is_refused() -> None:
    class Mine(nn.Module):
        input_size, hidden_size = 3, 4

    with pytest.raises(
        ValueError, match="expected rnnkit's RNNCell, LSTMCell, GRUCell, MinGRUCell"
    ):
        Stepper.from_cells([Mine()])


def test_mixed_kinds_and_broken_chains_are_refused() -> None:
    lstm, gru = Recurrent("lstm", 3, 4).cells[0], Recurrent("gru", 4, 4).cells[0]
    with pytest.raises(ValueError, match="one kind of cell"):
        Stepper.from_cells([lstm, gru])
    tanh, relu = Recurrent("rnn", 3, 4).cells[0], Recurrent("rnn_relu", 4, 4).cells[0]
    with pytest.raises(ValueError, match="one kind of cell"):
        Stepper.from_cells([tanh, relu])
    with pytest.raises(ValueError, match=r"cell 1 maps 3 → 4, expected 4 → 4"):
        Stepper.from_cells([lstm, Recurrent("lstm", 3, 4).cells[0]])
    with pytest.raises(ValueError, match="at least one cell"):
        Stepper.from_cells([])


# --- packed weights follow the parameters ------------------------------------------


def test_a_cached_stepper_is_rebuilt_when_a_parameter_changes() -> None:
    torch.manual_seed(0)
    owner = Recurrent("rnn", 3, 4, dtype=torch.float64).eval()
    x = torch.randn(1, 3, dtype=torch.float64)
    first = cached_stepper(owner, lambda: Stepper.from_recurrent(owner))
    assert cached_stepper(owner, lambda: Stepper.from_recurrent(owner)) is first
    with torch.no_grad():
        owner.cells[0].weight_ih.mul_(2.0)  # in place, as an optimizer step
    assert not first.is_current()
    second = cached_stepper(owner, lambda: Stepper.from_recurrent(owner))
    assert second is not first and second.is_current()
    with torch.no_grad():
        top, _ = second.step(x, owner.initial_state(1))
        want, _ = owner(x[:, None])
    torch.testing.assert_close(top, want[:, 0], rtol=1e-10, atol=1e-10)
    owner.load_state_dict(Recurrent("rnn", 3, 4, dtype=torch.float64).state_dict())
    assert not second.is_current()


# --- every generator: the same tokens as its old step ---------------------------------


class OldStep:
    """A model's step as it was before the stepper: the sequence runner at T = 1."""

    def __init__(self, model: nn.Module, step: Callable[[Tensor, Any], tuple[Tensor, Any]]):
        self.model = model
        self.step = step

    def decode_step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.step(tokens, state)

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        return self.model.reorder_state(state, index)  # type: ignore[operator]


def old_lm(model: LanguageModel) -> OldStep:
    def step(tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        logits, state = model.logits(tokens[:, None], state)
        return logits[:, 0], state

    return OldStep(model, step)


def old_generator(model: ConditionedGenerator) -> OldStep:
    def step(tokens: Tensor, state: GeneratorState) -> tuple[Tensor, GeneratorState]:
        o, rnn = model.rnn(model._inputs(tokens[:, None], state.condition), state.rnn)
        return model.out(o[:, 0]), GeneratorState(rnn, state.condition)

    return OldStep(model, step)


def old_seq2seq(model: Seq2Seq) -> OldStep:
    def step(tokens: Tensor, state: Seq2SeqState) -> tuple[Tensor, Seq2SeqState]:
        logits, state, _ = model._step(tokens, state)
        return logits, state

    return OldStep(model, step)


def assert_same_decodings(
    model: nn.Module, old: OldStep, start: Tensor, state: Any, eos_id: int | None
) -> None:
    """Greedy, seeded sampling (plain, top-k, nucleus) and beam: identical tokens, and
    the new ones came through the model's stepper on the path asked for."""
    model.eval()
    model.__dict__.pop("_rnnkit_stepper", None)
    options: dict[str, Any] = {"max_length": 30, "eos_id": eos_id}
    for decode in (
        lambda m: greedy(m, start, state, **options),
        lambda m: sample(m, start, state, generator=torch.Generator().manual_seed(1), **options),
        lambda m: sample(
            m,
            start,
            state,
            temperature=0.7,
            top_k=5,
            top_p=0.9,
            generator=torch.Generator().manual_seed(2),
            **options,
        ),
    ):
        with torch.no_grad():
            want = decode(old)
        got = decode(model)
        assert torch.equal(got.tokens, want.tokens)
        assert torch.equal(got.lengths, want.lengths)
        torch.testing.assert_close(got.scores, want.scores, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        want_beam = beam_search(old, start, state, beam_size=BEAM, length_penalty=0.6, **options)
    got_beam = beam_search(model, start, state, beam_size=BEAM, length_penalty=0.6, **options)
    assert torch.equal(got_beam.best.tokens, want_beam.best.tokens)
    assert torch.equal(got_beam.best.lengths, want_beam.best.lengths)
    torch.testing.assert_close(got_beam.beam_scores, want_beam.beam_scores, rtol=1e-10, atol=1e-10)
    assert model.__dict__["_rnnkit_stepper"].compiled == compiled._enabled


@pytest.mark.parametrize("use_compiled", PATHS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_language_model_generates_the_tokens_it_did(use_compiled: bool, cell: str) -> None:
    torch.manual_seed(11)
    config = LanguageModelConfig(vocab_size=17, embed=8, hidden=12, layers=2, cell=cell)
    model = LanguageModel(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # confident, varied predictions: greedy paths that go somewhere
        last, state = model.prime(torch.tensor([[3, 4, 5], [6, 7, 8]]))
    with path(use_compiled):
        assert_same_decodings(model, old_lm(model), last, state, eos_id=None)
        assert_same_decodings(model, old_lm(model), last, state, eos_id=2)


@pytest.mark.parametrize("use_compiled", PATHS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_conditioned_generator_generates_the_tokens_it_did(
    use_compiled: bool, cell: str
) -> None:
    torch.manual_seed(12)
    config = GeneratorConfig(vocab_size=15, num_labels=3, embed=6, hidden=10, layers=2,
                             cell=cell, condition_embed=4)  # fmt: skip
    model = ConditionedGenerator(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        bos, state = model.start(torch.tensor([0, 2]))
    with path(use_compiled):
        assert_same_decodings(model, old_generator(model), bos, state, eos_id=2)


@pytest.mark.parametrize("use_compiled", PATHS)
@pytest.mark.parametrize(
    ("cell", "attention", "layers"),
    [("lstm", "bahdanau", 2), ("gru", "general", 1), ("rnn", "none", 2)],
)
def test_the_seq2seq_decoder_generates_the_tokens_it_did(
    use_compiled: bool, cell: str, attention: str, layers: int
) -> None:
    torch.manual_seed(13)
    config = Seq2SeqConfig(11, 14, embed=6, hidden=10, layers=layers, cell=cell,
                           attention=attention)  # fmt: skip
    model = Seq2Seq(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        bos, state = model.start(torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2]))
    with path(use_compiled):
        assert_same_decodings(model, old_seq2seq(model), bos, state, eos_id=config.eos_id)


@pytest.mark.parametrize("use_compiled", PATHS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_music_model_samples_the_frames_it_did(use_compiled: bool, cell: str) -> None:
    torch.manual_seed(14)
    model = PianoRollModel(MusicConfig(pitches=9, embed=5, hidden=7, layers=2, cell=cell))
    model = model.double().eval()
    prime = (torch.rand(2, 4, 9) < 0.3).double()

    def old_generate(steps: int, generator: torch.Generator) -> Tensor:
        with torch.no_grad():  # PianoRollModel.generate as it was: logits at T = 1
            logits, state = model.logits(prime)
            out = []
            for _ in range(steps):
                frame = torch.bernoulli(torch.sigmoid(logits[:, -1] / 0.8), generator=generator)
                out.append(frame)
                logits, state = model.logits(frame[:, None], state)
            return torch.stack(out, dim=1)

    want = old_generate(25, torch.Generator().manual_seed(3))
    with path(use_compiled):
        got = model.generate(prime, 25, temperature=0.8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, want)
    assert got.sum() > 0  # not a silent piece
    assert model.__dict__["_rnnkit_stepper"].compiled == use_compiled


def test_a_model_in_training_mode_steps_through_its_sequence_runner() -> None:
    # Dropout and autograd need the sequence runner; the stepper is for eval, no_grad.
    model = LanguageModel(LanguageModelConfig(vocab_size=7, embed=4, hidden=5, layers=2,
                                              dropout=0.5))  # fmt: skip
    _, state = model.prime(torch.tensor([[1, 2]]))
    logits, _ = model.decode_step(torch.tensor([3]), state)
    assert logits.requires_grad
    assert "_rnnkit_stepper" not in model.__dict__


def test_inside_bypassed_decoders_call_their_recurrent_stack() -> None:
    # The report's probe watches Recurrent's forward calls; bypassed() lets it see them.
    from rnnkit import stepping

    model = LanguageModel(LanguageModelConfig(vocab_size=7, embed=4, hidden=5)).eval()
    calls: list[int] = []
    handle = model.rnn.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            _, state = model.prime(torch.tensor([[1, 2]]))
            stepped, _ = model.decode_step(torch.tensor([3]), state)
            assert calls == [] and stepping.stepping(model)
            with stepping.bypassed():
                assert not stepping.stepping(model)
                _, state = model.prime(torch.tensor([[1, 2]]))
                called, _ = model.decode_step(torch.tensor([3]), state)
            assert len(calls) == 2 and stepping.stepping(model)
    finally:
        handle.remove()
    torch.testing.assert_close(called, stepped)


# --- the minimal cells: trained by scan, generated by the step --------------------------


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "mingru_log", "minlstm_log"])
def test_minimal_cells_step_what_the_scan_computes(cell: str) -> None:
    torch.manual_seed(21)
    rnn = Recurrent(cell, 13, 21, num_layers=3, dtype=torch.float64).eval()
    assert rnn.resolve_backend() == "scan"
    inputs = torch.randn(BEAM, 6, 13, dtype=torch.float64)
    state = random_state(rnn, BEAM, seed=4)
    with torch.no_grad():
        outputs, final = rnn(inputs, state)
        stepper = Stepper.from_recurrent(rnn)
        assert stepper.kind == cell and not stepper.compiled  # the ATen step
        tops = []
        for t in range(inputs.shape[1]):
            top, state = stepper.step(inputs[:, t], state)
            tops.append(top)
    torch.testing.assert_close(torch.stack(tops, dim=1), outputs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state.h, final.h, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_a_minimal_language_model_samples_what_its_scan_predicts(cell: str) -> None:
    # Text sampled one step at a time (the stepper) must be what the scan, run over the
    # whole sampled sequence at once, predicts at every position: greedy tokens are
    # its argmax, and the sampled tokens' scores its log-probabilities.
    torch.manual_seed(13)
    config = LanguageModelConfig(vocab_size=17, embed=8, hidden=12, layers=2, cell=cell)
    model = LanguageModel(config).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        prompt = torch.tensor([[3, 4, 5], [6, 7, 8]])
        last, state = model.prime(prompt)
        for decode in (
            lambda: greedy(model, last, state, max_length=20),
            lambda: sample(
                model, last, state, max_length=20, generator=torch.Generator().manual_seed(3)
            ),
        ):
            got = decode()
            text = torch.cat([prompt, got.tokens], dim=1)  # (B, 3 + 20)
            logits, _ = model.logits(text[:, :-1])  # the scan over the whole sequence
            logp = torch.log_softmax(logits[:, 2:], dim=-1)  # predictions of the sampled part
            chosen = logp.gather(2, got.tokens[..., None])[..., 0].sum(1)
            torch.testing.assert_close(chosen, got.scores, rtol=1e-10, atol=1e-10)
        greedy_tokens = greedy(model, last, state, max_length=20).tokens
        text = torch.cat([prompt, greedy_tokens], dim=1)
        logits, _ = model.logits(text[:, :-1])
        assert torch.equal(logits[:, 2:].argmax(-1), greedy_tokens)
    assert model.__dict__["_rnnkit_stepper"].kind == cell


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_minimal_language_model_generates_the_tokens_its_sequence_runner_does(
    cell: str,
) -> None:
    torch.manual_seed(14)
    config = LanguageModelConfig(vocab_size=17, embed=8, hidden=12, layers=2, cell=cell)
    model = LanguageModel(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        last, state = model.prime(torch.tensor([[3, 4, 5], [6, 7, 8]]))
    with path(False):  # minimal cells always take the ATen step
        assert_same_decodings(model, old_lm(model), last, state, eos_id=2)
