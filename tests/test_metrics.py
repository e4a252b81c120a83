"""Metrics: hand-computed values, cross-checks against seqeval, scikit-learn and
sacrebleu (test-only dependencies, skipped where absent), and properties."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.metrics import (
    PRF,
    accuracy,
    bits_per_character,
    bleu,
    confusion_matrix,
    edit_distance,
    forecast_report,
    frame_accuracy,
    macro_f1,
    mae,
    mape,
    mase,
    naive_forecast,
    nll_per_frame,
    perplexity,
    rmse,
    seasonal_naive_forecast,
    sequence_error_rate,
    smape,
    span_scores,
    token_error_rate,
)

# ---------------------------------------------------------------------------
# Classification


def test_accuracy_macro_f1_and_confusion_matrix_by_hand() -> None:
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    assert accuracy(pred, gold) == 4 / 6
    # F1: a = 2·2/(2+3) = 0.8, b = 2·1/(2+2) = 0.5, c = 2·1/(2+1) = 2/3
    assert macro_f1(pred, gold) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-15)
    assert confusion_matrix(pred, gold, ["a", "b", "c"]) == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # a listed label seen nowhere counts as F1 = 0 in the mean
    assert macro_f1(pred, gold, labels=["a", "b", "c", "d"]) == pytest.approx(
        (0.8 + 0.5 + 2 / 3) / 4, abs=1e-15
    )
    # a subset of labels: only a and c averaged
    assert macro_f1(pred, gold, labels=["a", "c"]) == pytest.approx((0.8 + 2 / 3) / 2, abs=1e-15)


def test_classification_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="predicted: empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="predicted has 2 items but gold has 1"):
        macro_f1([1, 2], [1])
    with pytest.raises(ValueError, match=r"gold\[1\] = 'z' is not in labels"):
        confusion_matrix(["a", "a"], ["a", "z"], ["a", "b"])
    with pytest.raises(ValueError, match="labels: 'a' appears more than once"):
        confusion_matrix(["a"], ["a"], ["a", "a"])
    with pytest.raises(ValueError, match="labels: empty"):
        macro_f1(["a"], ["a"], labels=[])


label_pairs = st.integers(1, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
    )
)


@given(label_pairs)
def test_classification_properties(pair: tuple[list[int], list[int]]) -> None:
    pred, gold = pair
    acc, f1 = accuracy(pred, gold), macro_f1(pred, gold)
    assert 0.0 <= acc <= 1.0 and 0.0 <= f1 <= 1.0
    assert (acc == 1.0) == (pred == gold) == (f1 == 1.0)
    m = confusion_matrix(pred, gold, [0, 1, 2, 3])
    assert sum(map(sum, m)) == len(gold)
    assert sum(m[i][i] for i in range(4)) / len(gold) == acc
    assert [sum(row) for row in m] == [gold.count(k) for k in range(4)]  # rows are gold
    assert [sum(col) for col in zip(*m, strict=True)] == [pred.count(k) for k in range(4)]


@given(st.integers(1, 12), st.randoms(use_true_random=False))
def test_macro_f1_equals_accuracy_when_gold_and_predictions_are_balanced(
    half: int, rng: random.Random
) -> None:
    # With n/2 of each class in gold and in the predictions, the two off-diagonal
    # counts are equal and so are the two diagonal ones: both F1s equal accuracy.
    gold = [0] * half + [1] * half
    pred = list(gold)
    rng.shuffle(pred)
    assert macro_f1(pred, gold) == pytest.approx(accuracy(pred, gold), abs=1e-15)


@given(label_pairs, st.booleans())
def test_classification_matches_scikit_learn(
    pair: tuple[list[int], list[int]], all_labels: bool
) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    pred, gold = pair
    labels = [0, 1, 2, 3] if all_labels else None
    expected = metrics.f1_score(gold, pred, average="macro", labels=labels, zero_division=0)
    assert macro_f1(pred, gold, labels) == pytest.approx(float(expected), abs=1e-12)
    assert accuracy(pred, gold) == pytest.approx(float(metrics.accuracy_score(gold, pred)))
    cm = metrics.confusion_matrix(gold, pred, labels=[0, 1, 2, 3]).tolist()
    assert confusion_matrix(pred, gold, [0, 1, 2, 3]) == cm


# ---------------------------------------------------------------------------
# Tagging


def test_span_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "O", "O"]]
    s = span_scores(pred, gold)
    # PER: predicted 2 spans, 1 correct, 1 gold; LOC: predicted 1 (a shorter one), 0 correct
    assert s.per_type == {
        "LOC": PRF(0.0, 0.0, 0.0, 2),
        "PER": PRF(0.5, 1.0, 2 * 0.5 * 1.0 / 1.5, 1),
    }
    assert s.micro == PRF(1 / 3, 1 / 3, 2 * (1 / 3) * (1 / 3) / (2 / 3), 3)
    json.dumps(dataclasses.asdict(s))  # JSON-friendly


def test_ill_formed_predictions_follow_conlleval() -> None:
    gold = [["O", "B-PER", "I-PER", "O"]]
    # I- after O opens a chunk, so this prediction is exactly right
    assert span_scores([["O", "I-PER", "I-PER", "O"]], gold).micro.f1 == 1.0
    # a change of type splits a chunk: B-PER I-LOC is PER(1,1) and LOC(2,2)
    s = span_scores([["O", "B-PER", "I-LOC", "O"]], gold)
    assert s.per_type["PER"] == PRF(0.0, 0.0, 0.0, 1)
    assert s.per_type["LOC"] == PRF(0.0, 0.0, 0.0, 0)
    assert s.micro.precision == 0.0 and s.micro.support == 1
    # BIOES: E- ends, S- is a single-token span, I- after E- starts a new one
    bioes = [["S-A", "B-A", "E-A", "I-A", "E-A", "O"]]
    s = span_scores(bioes, [["S-A", "B-A", "E-A", "B-A", "E-A", "O"]], scheme="BIOES")
    assert s.micro == PRF(1.0, 1.0, 1.0, 3)


def test_no_entities_anywhere_scores_zero() -> None:
    s = span_scores([["O", "O"], []], [["O", "O"], []])
    assert s.per_type == {} and s.micro == PRF(0.0, 0.0, 0.0, 0)


def test_span_scores_reject_bad_tags_and_shapes() -> None:
    with pytest.raises(ValueError, match=r"predicted\[0\]\[1\] = 'E-PER' \(expected 'O' or B-TYPE"):
        span_scores([["B-PER", "E-PER"]], [["B-PER", "I-PER"]])
    for bad in ("B-", "B", "o", "O-PER", "BPER", "X-PER"):
        with pytest.raises(ValueError, match=r"gold\[0\]\[0\]"):
            span_scores([["O"]], [[bad]], scheme="BIOES")
    with pytest.raises(ValueError, match=r"predicted\[0\] has 1 tags but gold\[0\] has 2"):
        span_scores([["O"]], [["O", "O"]])
    with pytest.raises(ValueError, match="scheme"):
        span_scores([["O"]], [["O"]], scheme="IOB1")  # type: ignore[arg-type]


def _assert_same_as_seqeval(pred: list[list[str]], gold: list[list[str]], scheme: str) -> None:
    seqeval = pytest.importorskip("seqeval.metrics")
    ours = span_scores(pred, gold, scheme=scheme)  # type: ignore[arg-type]
    # default mode (conlleval's rules); zero_division=0 is our 0/0 convention
    assert ours.micro.precision == seqeval.precision_score(gold, pred, zero_division=0)
    assert ours.micro.recall == seqeval.recall_score(gold, pred, zero_division=0)
    assert ours.micro.f1 == seqeval.f1_score(gold, pred, zero_division=0)
    if not ours.per_type:
        return  # seqeval's report averages over no types, which numpy warns about
    report = seqeval.classification_report(gold, pred, output_dict=True, zero_division=0)
    theirs = {
        name: PRF(row["precision"], row["recall"], row["f1-score"], row["support"])
        for name, row in report.items()
        if not name.endswith(" avg")
    }
    assert ours.per_type == theirs
    assert ours.micro.support == report["micro avg"]["support"]


@pytest.mark.parametrize(
    ("pred", "gold", "scheme"),
    [
        (
            [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
            [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
            "BIO",
        ),
        (
            [["I-PER", "I-LOC", "B-LOC", "I-PER", "O", "I-X-Y"]],
            [["B-PER", "B-LOC", "I-LOC", "O", "O", "B-X-Y"]],
            "BIO",
        ),
        ([["E-A", "S-A", "I-A", "E-B", "B-A"]], [["S-A", "S-A", "B-A", "E-A", "S-B"]], "BIOES"),
        ([["O", "O"], ["B-A"]], [["B-A", "I-A"], ["O"]], "BIO"),
    ],
)
def test_span_scores_match_seqeval_on_hand_made_cases(
    pred: list[list[str]], gold: list[list[str]], scheme: str
) -> None:
    _assert_same_as_seqeval(pred, gold, scheme)


@st.composite
def tag_corpora(draw: st.DrawFn, scheme: str) -> tuple[list[list[str]], list[list[str]]]:
    prefixes = "BI" if scheme == "BIO" else "BIES"
    tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in ("PER", "LOC", "X-Y")]
    lengths = draw(st.lists(st.integers(0, 8), min_size=1, max_size=5))
    # "O" weighted up so that well-formed and ill-formed spans both occur
    tag = st.one_of(st.just("O"), st.sampled_from(tags))
    corpora = [[draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths] for _ in "pg"]
    return corpora[0], corpora[1]


@settings(max_examples=300)
@given(st.sampled_from(["BIO", "BIOES"]).flatmap(lambda s: st.tuples(st.just(s), tag_corpora(s))))
def test_span_scores_match_seqeval_on_random_tags(
    case: tuple[str, tuple[list[list[str]], list[list[str]]]],
) -> None:
    scheme, (pred, gold) = case
    _assert_same_as_seqeval(pred, gold, scheme)
    assert span_scores(gold, gold, scheme=scheme).micro.f1 == (  # type: ignore[arg-type]
        1.0 if any(t != "O" for s in gold for t in s) else 0.0
    )


# ---------------------------------------------------------------------------
# Language models and music


def test_perplexity_and_bits_per_character() -> None:
    assert perplexity(10 * math.log(5), 10) == pytest.approx(5.0, rel=1e-15)
    assert perplexity(0.0, 3) == 1.0
    assert perplexity(1e6, 1) == math.inf
    assert bits_per_character(6 * math.log(2), 3) == pytest.approx(2.0, rel=1e-15)
    # uniform over 256 byte values: 8 bits per character
    assert bits_per_character(100 * math.log(256), 100) == pytest.approx(8.0, rel=1e-15)
    assert nll_per_frame(17.5, 7) == 2.5
    with pytest.raises(ValueError, match="tokens"):
        perplexity(1.0, 0)
    with pytest.raises(ValueError, match="total_nll_nats"):
        bits_per_character(float("nan"), 3)
    with pytest.raises(ValueError, match="total_nll"):
        nll_per_frame(-1.0, 3)
    with pytest.raises(ValueError, match="frames"):
        nll_per_frame(1.0, True)  # a bool is not a count


def test_frame_accuracy_by_hand() -> None:
    gold = [np.array([[1, 0, 1], [0, 0, 1]]), np.array([[1, 1, 0]])]
    last = torch.tensor([[True, False, False]])  # tensors and bools are accepted too
    pred: list[Any] = [np.array([[1, 1, 0], [0, 0, 1]]), last]
    # TP: (0,0), (1,2), (2,0) = 3; FP: (0,1) = 1; FN: (0,2), (2,1) = 2
    assert frame_accuracy(pred, gold) == 3 / 6
    # the grouping into pieces does not change the sums
    assert frame_accuracy([np.concatenate([pred[0], last.numpy()])], [np.concatenate(gold)]) == 0.5
    assert frame_accuracy([np.zeros((4, 3))], [np.zeros((4, 3))]) == 1.0
    with pytest.raises(ValueError, match=r"predicted_rolls\[0\]: expected a binary piano roll"):
        frame_accuracy([np.full((1, 2), 0.7)], [np.zeros((1, 2))])
    with pytest.raises(ValueError, match=r"predicted_rolls\[0\] has shape \(1, 2\) but gold_rolls"):
        frame_accuracy([np.zeros((1, 2))], [np.zeros((2, 2))])


# ---------------------------------------------------------------------------
# Forecasting


def test_point_forecast_errors_by_hand() -> None:
    f, a = [110.0, 90.0, 100.0], [100.0, 100.0, 100.0]
    assert mae(f, a) == pytest.approx(20 / 3, rel=1e-15)
    assert rmse(f, a) == pytest.approx(math.sqrt(200 / 3), rel=1e-15)
    assert mape(f, a) == pytest.approx(20 / 3, rel=1e-15)
    assert smape(f, a) == pytest.approx((200 * 10 / 210 + 200 * 10 / 190) / 3, rel=1e-15)
    assert smape([0.0, 0.0], [0.0, 5.0]) == 100.0  # 0/0 counts 0, the other step 200
    assert smape([1.0], [-1.0]) == 200.0
    assert mae(torch.tensor([1.0, 2.0]), np.array([2.0, 2.0])) == 0.5


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=20))
def test_smape_is_symmetric_and_bounded(pairs: list[tuple[float, float]]) -> None:
    f, a = [p[0] for p in pairs], [p[1] for p in pairs]
    assert smape(f, a) == smape(a, f)
    assert 0.0 <= smape(f, a) <= 200.0
    assert rmse(f, a) >= mae(f, a) - 1e-9 * max(1.0, mae(f, a))


def test_forecast_errors_reject_bad_series() -> None:
    with pytest.raises(ValueError, match=r"actual\[1\] = 0: MAPE"):
        mape([1.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="forecast has 2 values but actual has 1"):
        mae([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"actual\[0\] = nan"):
        rmse([1.0], [float("nan")])
    with pytest.raises(ValueError, match="forecast: shape"):
        smape([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="forecast: not a sequence of numbers"):
        mae(["x"], [1.0])
    with pytest.raises(ValueError, match="train: the seasonal naive forecast"):
        mase([1.0], [2.0], [3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="train: 2 values"):
        mase([1.0], [2.0], [3.0, 4.0], season=2)
    with pytest.raises(ValueError, match="season"):
        mase([1.0], [2.0], [3.0, 4.0], season=0)


def test_baselines_by_hand() -> None:
    history = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert naive_forecast(history, 3) == [6.0, 6.0, 6.0]
    assert seasonal_naive_forecast(history, 6, 4) == [3.0, 4.0, 5.0, 6.0, 3.0, 4.0]
    assert seasonal_naive_forecast(history, 2, 1) == naive_forecast(history, 2)
    with pytest.raises(ValueError, match="history: 2 values"):
        seasonal_naive_forecast([1.0, 2.0], 1, 3)
    with pytest.raises(ValueError, match="horizon"):
        naive_forecast(history, 0)


def test_mase_by_hand() -> None:
    train = [1.0, 3.0, 2.0, 5.0]  # naive in-sample errors 2, 1, 3: scale 2
    assert mase([6.0, 6.0], [5.0, 8.0], train) == (1 + 2) / 2 / 2
    # season 2: in-sample errors |2 − 1|, |5 − 3| → scale 1.5
    assert mase([6.0], [5.0], train, season=2) == 1 / 1.5


@given(st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_mase_of_the_in_sample_seasonal_naive_forecast_is_one(seed: int, season: int) -> None:
    # The definition check: MASE's scale is this forecast's own in-sample MAE.
    walk = np.cumsum(np.random.default_rng(seed).normal(size=40))
    assert mase(walk[:-season], walk[season:], walk, season) == pytest.approx(1.0, rel=1e-12)


def test_forecast_report_by_hand() -> None:
    history = [10.0, 20.0, 10.0, 20.0, 12.0]  # naive in-sample errors 10, 10, 10, 8: scale 9.5
    actual = [20.0, 10.0]
    report = forecast_report([19.0, 10.0], actual, history, season=1)
    assert list(report) == ["model", "naive", "seasonal_naive"]
    assert report["model"] == {
        "mae": 0.5,
        "rmse": math.sqrt(0.5),
        "smape": pytest.approx(200 / 39 / 2, rel=1e-15),
        "mape": 2.5,
        "mase": 0.5 / 9.5,
    }
    assert report["naive"]["mae"] == 5.0  # forecasts 12, 12
    assert report["naive"] == report["seasonal_naive"]  # season 1 is the naive forecast
    # season 2: the seasonal naive forecast repeats 20, 12; scale (0 + 0 + 2)/3
    report = forecast_report([19.0, 10.0], [20.0, 0.0], history, season=2)
    assert report["seasonal_naive"]["mae"] == (0 + 12) / 2
    assert report["seasonal_naive"]["mase"] == pytest.approx(6 / (2 / 3), rel=1e-15)
    assert report["model"]["mape"] is None  # an actual 0
    json.dumps(report)
    with pytest.raises(ValueError, match="history: 2 values"):
        forecast_report([1.0], [1.0], [3.0, 3.0], season=2)
    flat = forecast_report([1.0], [1.0], [3.0, 3.0], season=1)
    assert flat["model"]["mase"] is None  # constant history: scale 0


# ---------------------------------------------------------------------------
# Sequence to sequence


def test_edit_distance_and_error_rates_by_hand() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance(["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW", "Z"]) == 2
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance("flaw", "lawn") == 2
    pred = [["K", "AE", "T"], ["D", "AO", "G"], ["B", "ER", "D"]]
    gold = [["K", "AE", "T"], ["D", "AA", "G", "Z"], ["B", "ER", "D"]]
    assert token_error_rate(pred, gold) == 2 / 10
    assert sequence_error_rate(pred, gold) == 1 / 3
    with pytest.raises(ValueError, match="gold: every sequence is empty"):
        token_error_rate([["a"]], [[]])
    with pytest.raises(ValueError, match="predicted has 1 items but gold has 2"):
        sequence_error_rate([["a"]], [["a"], ["b"]])


tokens = st.lists(st.sampled_from("abc"), max_size=7)


@given(tokens, tokens, tokens)
def test_edit_distance_is_a_metric(a: list[str], b: list[str], c: list[str]) -> None:
    d = edit_distance(a, b)
    assert d == edit_distance(b, a)
    assert (d == 0) == (a == b)
    assert d <= edit_distance(a, c) + edit_distance(c, b)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))


def _brute_edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return len(a) + len(b)
    return min(
        _brute_edit_distance(a[1:], b) + 1,
        _brute_edit_distance(a, b[1:]) + 1,
        _brute_edit_distance(a[1:], b[1:]) + (a[0] != b[0]),
    )


@given(st.lists(st.sampled_from("ab"), max_size=5), st.lists(st.sampled_from("ab"), max_size=5))
def test_edit_distance_matches_the_recursive_definition(a: list[str], b: list[str]) -> None:
    assert edit_distance(a, b) == _brute_edit_distance(a, b)


def test_bleu_by_hand() -> None:
    # Papineni et al.'s clipping example: "the" counted at most twice, c = 7 > r = 6
    assert (
        bleu(
            [["the", "the", "the", "the", "the", "the", "the"]],
            [["the", "cat", "is", "on", "the", "mat"]],
            1,
        )
        == 2 / 7
    )
    hyp = [["the", "cat", "sat", "on", "the", "mat"], ["a", "b", "c", "d", "e"]]
    ref = [["the", "cat", "is", "on", "the", "mat"], ["a", "b", "c", "d", "f", "g"]]
    # p1 = (5+4)/(6+5), p2 = (3+3)/(5+4), p3 = (1+2)/(4+3), p4 = (0+1)/(3+2); c = 11 < r = 12
    expected = math.exp(1 - 12 / 11) * (9 / 11 * 6 / 9 * 3 / 7 * 1 / 5) ** 0.25
    assert bleu(hyp, ref) == pytest.approx(expected, rel=1e-14)
    # no matching 4-gram in the first sentence alone: unsmoothed BLEU is 0
    assert bleu(hyp[:1], ref[:1]) == 0.0
    assert bleu([[]], [["a"]]) == 0.0
    assert bleu([["a", "b"]], [["a", "b"]], max_n=2) == 1.0
    with pytest.raises(ValueError, match="max_n"):
        bleu([["a"]], [["a"]], max_n=0)
    with pytest.raises(ValueError, match="predicted_tokens has 1 items but reference_tokens has 2"):
        bleu([["a"]], [["a"], ["b"]])


corpora = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        st.lists(st.lists(st.sampled_from("abcd"), max_size=9), min_size=n, max_size=n),
        st.lists(st.lists(st.sampled_from("abcd"), min_size=1, max_size=9), min_size=n, max_size=n),
    )
)


@settings(max_examples=150)
@given(corpora, st.integers(1, 4))
def test_bleu_matches_sacrebleu(
    corpus: tuple[list[list[str]], list[list[str]]], max_n: int
) -> None:
    bleu_metrics = pytest.importorskip("sacrebleu.metrics")
    hyp, ref = corpus
    scorer = bleu_metrics.BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_n)
    theirs = scorer.corpus_score([" ".join(h) for h in hyp], [[" ".join(r) for r in ref]]).score
    assert bleu(hyp, ref, max_n) == pytest.approx(theirs / 100, rel=1e-12, abs=1e-12)
