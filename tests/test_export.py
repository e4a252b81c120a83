"""ONNX export (rnnkit.export): onnxruntime computes what torch computes, within 1e-5.

Every graph is run at batch sizes and lengths of its own choosing (the graphs have no
traced shapes: their batch and time axes are named, ``batch`` and ``time``), and
compared with the module in eval mode.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.cells import GRUCell
from rnnkit.export import describe, recurrent_to_onnx, save_onnx, to_onnx
from rnnkit.models import build_model
from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier
from rnnkit.models.dropout import regularised
from rnnkit.models.heads import RegressionHead
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig
from rnnkit.models.seq2seq import Seq2SeqConfig
from rnnkit.models.tagger import Tagger, TaggerConfig

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-5
CELLS = ("rnn", "rnn_relu", "lstm", "gru")
# (batch, time) pairs the graphs run at; none is a shape the exporter saw (it sees none).
SHAPES = ((3, 6), (1, 1), (5, 9))


def session(model: Any) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def ragged_lengths(batch: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Lengths in 1 … T with at least one row full (T) and, for B > 1, one of length 1."""
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    lengths[0] = steps
    if batch > 1:
        lengths[-1] = 1
    return lengths


def largest_error(got: list[np.ndarray], want: list[torch.Tensor]) -> float:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))


# --------------------------------------------------------------------------- stacks


@pytest.mark.parametrize(
    ("cell", "layers", "bidirectional", "ragged"),
    [
        pytest.param(
            *case,
            id=f"{case[0]}-L{case[1]}-{'bi' if case[2] else 'uni'}-"
            f"{'ragged' if case[3] else 'full'}",
        )
        for case in itertools.product(CELLS, (1, 2), (False, True), (False, True))
    ],
)
def test_a_stack_runs_in_onnxruntime_as_in_torch(
    cell: str, layers: int, bidirectional: bool, ragged: bool
) -> None:
    torch.manual_seed(layers * 10 + bidirectional)
    stack = Recurrent(cell, 4, 6, num_layers=layers, bidirectional=bidirectional).eval()
    model = recurrent_to_onnx(stack, lengths=ragged)
    inputs = [value.name for value in model.graph.input]
    assert inputs == (["inputs", "lengths"] if ragged else ["inputs"])
    operator = {"rnn": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]
    nodes = [node for node in model.graph.node if node.op_type in ("RNN", "LSTM", "GRU")]
    assert [node.op_type for node in nodes] == [operator] * layers  # one node per layer
    if cell == "gru":
        assert all(
            onnx.helper.get_attribute_value(a) == 1
            for node in nodes
            for a in node.attribute
            if a.name == "linear_before_reset"
        )
    run = session(model)
    generator = torch.Generator().manual_seed(1)
    for batch, steps in SHAPES:
        x = torch.randn(batch, steps, 4, generator=generator)
        feeds = {"inputs": x.numpy()}
        lengths = None
        if ragged:
            lengths = ragged_lengths(batch, steps, generator)
            feeds["lengths"] = lengths.numpy()
        with torch.no_grad():
            outputs, final = stack(x, lengths=lengths)
        error = largest_error(run.run(None, feeds), [outputs, *final])
        assert error <= TOLERANCE, (batch, steps, error)


@pytest.mark.parametrize("cell", CELLS)
def test_a_stack_takes_an_initial_state(cell: str) -> None:
    torch.manual_seed(3)
    stack = Recurrent(cell, 3, 5, num_layers=2, bidirectional=True).eval()
    model = recurrent_to_onnx(stack, initial_state=True)
    names = [value.name for value in model.graph.input]
    assert names == ["inputs", "lengths", "h_0", *(["c_0"] if cell == "lstm" else [])]
    x = torch.randn(4, 7, 3)
    lengths = torch.tensor([7, 2, 5, 1])
    state = stack.initial_state(4)
    state = type(state)(*(torch.randn_like(field) for field in state))
    feeds = {"inputs": x.numpy(), "lengths": lengths.numpy()}
    feeds |= {
        f"{field}_0": value.numpy() for field, value in zip(state._fields, state, strict=True)
    }
    with torch.no_grad():
        outputs, final = stack(x, state, lengths)
    assert largest_error(session(model).run(None, feeds), [outputs, *final]) <= TOLERANCE


def test_a_stack_without_bias_and_a_float64_stack() -> None:
    torch.manual_seed(4)
    for dtype, stack in (
        (torch.float32, Recurrent("gru", 3, 4, bias=False).eval()),
        (torch.float64, Recurrent("lstm", 3, 4, bidirectional=True, dtype=torch.float64).eval()),
    ):
        x = torch.randn(2, 5, 3, dtype=dtype)
        lengths = torch.tensor([3, 5])
        run = session(recurrent_to_onnx(stack))  # float32 weights either way
        got = run.run(None, {"inputs": x.float().numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            outputs, final = stack(x, lengths=lengths)
        assert largest_error(got, [t.float() for t in (outputs, *final)]) <= TOLERANCE


def test_a_torch_nn_module_exports_through_from_torch() -> None:
    # torch.onnx.export unrolls nn.RNN at the traced length and cannot export packed
    # sequences (docs/export.md); through Recurrent.from_torch both are ONNX RNN nodes.
    torch.manual_seed(8)
    module = nn.RNN(3, 4, num_layers=2, nonlinearity="relu", bidirectional=True,
                    batch_first=True).eval()  # fmt: skip
    run = session(recurrent_to_onnx(Recurrent.from_torch(module)))
    x, lengths = torch.randn(5, 7, 3), torch.tensor([7, 1, 4, 6, 2])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        y, h_n = module(packed)
    outputs, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=7)
    got = run.run(None, {"inputs": x.numpy(), "lengths": lengths.numpy()})
    assert largest_error(got, [outputs, h_n]) <= TOLERANCE


def test_padding_is_zero_like_the_stack() -> None:
    stack = Recurrent("lstm", 3, 4, bidirectional=True).eval()
    x = torch.randn(2, 6, 3)
    (outputs, *_) = session(recurrent_to_onnx(stack)).run(
        None, {"inputs": x.numpy(), "lengths": np.array([6, 2])}
    )
    assert np.all(outputs[1, 2:] == 0.0) and np.all(outputs[0] != 0.0)


# --------------------------------------------------------------------------- task models


def tokens_and_lengths(
    batch: int, steps: int, vocab: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = ragged_lengths(batch, steps, generator)
    tokens = torch.randint(1, vocab, (batch, steps), generator=generator)
    tokens[torch.arange(steps)[None, :] >= lengths[:, None]] = 0  # padding
    return tokens, lengths


@pytest.mark.parametrize(
    ("pooling", "head", "tokens"),
    [
        ("last", "multiclass", True),
        ("mean", "binary", True),
        ("max", "multiclass", True),
        ("attention", "binary", True),
        ("last", "regression", False),
        ("attention", "multiclass", False),
    ],
)
def test_a_classifier_runs_in_onnxruntime_as_in_torch(
    pooling: str, head: str, tokens: bool
) -> None:
    torch.manual_seed(5)
    sizes: dict[str, Any] = {"vocab_size": 11} if tokens else {"input_size": 3}
    config = ClassifierConfig(**sizes, embed=5, hidden=6, layers=2, cell="gru",
                              bidirectional=True, pooling=pooling, head=head,  # type: ignore[arg-type]
                              num_classes=3, outputs=2)  # fmt: skip
    model = build_model(config)
    assert isinstance(model, SequenceClassifier)
    if tokens:  # the classify task's dropouts around the parts: the identity in eval mode
        model = regularised(model, word=0.1, embed=0.2, pooled=0.3, pad_id=0, unk_id=1)
    model.eval()
    run = session(to_onnx(model))
    generator = torch.Generator().manual_seed(2)
    for batch, steps in SHAPES:
        if tokens:
            x, lengths = tokens_and_lengths(batch, steps, 11, generator)
        else:
            lengths = ragged_lengths(batch, steps, generator)
            x = torch.randn(batch, steps, 3, generator=generator)
        feeds = {"tokens" if tokens else "inputs": x.numpy(), "lengths": lengths.numpy()}
        got = run.run(None, feeds)
        with torch.no_grad():
            pooled = model.pooled(x, lengths)
            want = [model.head.predict(pooled)]
            if not isinstance(model.head, RegressionHead):
                want.insert(0, model.head.logits(pooled))
        assert largest_error(got, want) <= TOLERANCE, (batch, steps)


@pytest.mark.parametrize("crf", [False, True])
def test_a_tagger_runs_in_onnxruntime_as_in_torch(crf: bool) -> None:
    torch.manual_seed(6)
    model = Tagger(TaggerConfig(vocab_size=13, num_tags=5, embed=4, hidden=5, layers=2,
                                cell="lstm", bidirectional=True, crf=crf, dropout=0.3))  # fmt: skip
    model.eval()
    graph = to_onnx(model)
    assert [v.name for v in graph.graph.output] == ["emissions", *([] if crf else ["tags"])]
    run = session(graph)
    generator = torch.Generator().manual_seed(3)
    for batch, steps in SHAPES:
        tokens, lengths = tokens_and_lengths(batch, steps, 13, generator)
        got = run.run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            emissions = model.emissions(tokens, lengths)
        assert largest_error(got[:1], [emissions]) <= TOLERANCE
        if not crf:
            assert np.array_equal(got[1], model.predict(tokens, lengths).numpy())


@pytest.mark.parametrize(
    ("cell", "tie_weights", "hidden"), [("lstm", False, 6), ("gru", True, 6), ("rnn", True, 4)]
)
def test_a_language_model_step_runs_in_onnxruntime_as_in_torch(
    cell: str, tie_weights: bool, hidden: int
) -> None:
    torch.manual_seed(7)
    model = LanguageModel(LanguageModelConfig(vocab_size=9, embed=4, hidden=hidden, layers=2,
                                              cell=cell, tie_weights=tie_weights))  # fmt: skip
    model.eval()
    graph = to_onnx(model)
    fields = ["h", "c"] if cell == "lstm" else ["h"]
    assert [v.name for v in graph.graph.input] == ["tokens", *(f"{f}_0" for f in fields)]
    assert [v.name for v in graph.graph.output] == ["logits", *(f"{f}_n" for f in fields)]
    run = session(graph)
    for batch in (1, 4):
        state = model.rnn.initial_state(batch)
        feeds: dict[str, np.ndarray] = {}
        for step in range(3):  # the state out of one step is the next step's state in
            tokens = torch.randint(0, 9, (batch,))
            feeds = {"tokens": tokens.numpy()}
            feeds |= {f"{f}_0": v.numpy() for f, v in zip(fields, state, strict=True)}
            got = run.run(None, feeds)
            with torch.no_grad():
                logits, state = model.decode_step(tokens, state)
            assert largest_error(got, [logits, *state]) <= TOLERANCE, (batch, step)


# --------------------------------------------------------------------------- what is refused


class OwnGRUCell(GRUCell):
    """A cell of one's own (a subclass may compute anything): not exported as a GRU."""


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Recurrent("mingru", 3, 4), "rnn, rnn_relu, lstm or gru cells"),
        (lambda: Recurrent(OwnGRUCell, 3, 4), "got cells OwnGRUCell"),
        (
            lambda: build_model(Seq2SeqConfig(source_vocab=5, target_vocab=5, embed=4, hidden=4)),
            "a classifier, a tagger or a language model, got a Seq2Seq",
        ),
        (lambda: nn.LSTM(3, 4, proj_size=2), "proj_size > 0 cannot export"),
        (lambda: nn.Linear(3, 4), "got a Linear"),
    ],
    ids=["minimal-cell", "own-cell", "seq2seq", "projected-lstm", "linear"],
)
def test_what_onnx_cannot_express_is_one_line_valueerror(
    make: Callable[[], nn.Module], expected: str
) -> None:
    with pytest.raises(ValueError, match=expected) as error:
        to_onnx(make())
    assert "\n" not in str(error.value)


def test_a_missing_onnx_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'rnnkit\[export\]'"):
        to_onnx(Recurrent("lstm", 3, 4))


def test_save_writes_a_file_that_loads_and_describes_itself(tmp_path: Any) -> None:
    stack = Recurrent("gru", 3, 4, num_layers=2)
    path = save_onnx(to_onnx(stack), tmp_path / "gru.onnx", metadata={"note": "a stack"})
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded)
    assert {p.key: p.value for p in loaded.metadata_props} == {"note": "a stack"}
    assert describe(loaded) == [
        "input inputs float32 (batch, time, 3)",
        "input lengths int64 (batch)",
        "output outputs float32 (batch, time, 4)",
        "output h_n float32 (2, batch, 4)",
    ]
    with pytest.raises(ValueError, match="expected an existing folder"):
        save_onnx(to_onnx(stack), tmp_path / "nowhere" / "gru.onnx")
    with pytest.raises(ValueError, match="expected a file name"):
        save_onnx(to_onnx(stack), tmp_path)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_a_drop_in_module_exports_in_its_own_layout(kind: str, batch_first: bool) -> None:
    """to_onnx of rnnkit.nn's (or torch.nn's) module: its layout, ragged rows, any shape."""
    import rnnkit.nn

    torch.manual_seed(2)
    module = getattr(rnnkit.nn, kind)(3, 4, num_layers=2, bidirectional=True,
                                      batch_first=batch_first).eval()  # fmt: skip
    run = session(to_onnx(module))
    generator = torch.Generator().manual_seed(5)
    for batch, steps in SHAPES:
        x = torch.randn(batch, steps, 3, generator=generator)  # (B, T, I)
        lengths = ragged_lengths(batch, steps, generator)
        given = x if batch_first else x.transpose(0, 1).contiguous()
        packed = nn.utils.rnn.pack_padded_sequence(
            given, lengths, batch_first=batch_first, enforce_sorted=False
        )
        with torch.no_grad():
            out, _ = module(packed)
            expected, _ = nn.utils.rnn.pad_packed_sequence(
                out, batch_first=batch_first, total_length=steps
            )
        got = run.run(None, {"inputs": given.numpy(), "lengths": lengths.numpy()})[0]
        np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=TOLERANCE)


# torch 2.13's exporter trips over its own deprecation inside torch.export.
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated")
def test_torch_onnx_export_of_a_drop_in_module_is_torch_nn_s_graph() -> None:
    """torch.onnx.export traces rnnkit.nn.GRU as it traces torch.nn.GRU: ONNX GRU nodes."""
    pytest.importorskip("onnxscript")
    import rnnkit.nn

    torch.manual_seed(3)
    module = rnnkit.nn.GRU(3, 4, num_layers=2).eval()
    x = torch.randn(5, 2, 3)
    program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
    assert program is not None
    graph = program.model_proto
    assert [node.op_type for node in graph.graph.node].count("GRU") == 2
    with torch.no_grad():
        expected = module(x)[0]
    got = session(graph).run(None, {graph.graph.input[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=TOLERANCE)


@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated")
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_torch_onnx_export_of_a_recurrent_runs_torch_nn_s_kernel(name: str) -> None:
    """torch.onnx.export(Recurrent): one ONNX node per layer, onnxruntime's numbers."""
    pytest.importorskip("onnxscript")
    torch.manual_seed(4)
    stack = Recurrent(name, 3, 4, num_layers=2, bidirectional=True, backend="fused").eval()
    x = torch.randn(2, 5, 3)
    program = torch.onnx.export(stack, (x,), dynamo=True, verbose=False)
    assert program is not None
    graph = program.model_proto
    assert [node.op_type for node in graph.graph.node].count(name.upper()) == 2
    with torch.no_grad():
        out, final = stack(x)
    got = session(graph).run(None, {graph.graph.input[0].name: x.numpy()})
    assert largest_error(got, [out, *final]) <= TOLERANCE


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_the_torchscript_exporter_takes_a_ragged_recurrent(tmp_path: Any) -> None:
    """dynamo=False: packed rows become sequence_lens, as torch.nn's do there."""
    torch.manual_seed(5)
    stack = Recurrent("gru", 3, 4, bidirectional=True).eval()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    path = tmp_path / "gru.onnx"
    torch.onnx.export(stack, (x, None, lengths), str(path), dynamo=False,
                      input_names=["inputs", "lengths"])  # fmt: skip
    run = session(onnx.load(str(path)))
    with torch.no_grad():
        out, final = stack(x, lengths=lengths)
    names = [i.name for i in run.get_inputs()]
    feeds = {names[0]: x.numpy(), **({names[1]: lengths.numpy()} if len(names) > 1 else {})}
    assert largest_error(run.run(None, feeds), [out, *final]) <= TOLERANCE
