"""The numbers rnnkit reports for each task, computed in plain Python and numpy.

Every function checks its inputs (equal lengths, nothing empty, finite values)
and raises ``ValueError`` naming the argument at fault. Results are plain
``float``/``int``/``list``/``dict`` values or frozen dataclasses of them, so
``json.dumps`` (after ``dataclasses.asdict``) writes any of them.

Conventions, where the literature leaves a choice:

* **Rates are fractions in [0, 1]** (accuracy, F1, error rates, BLEU), except
  ``smape`` and ``mape``, which are percentages as forecasters quote them.
* **0/0.** Precision with nothing predicted, or recall with nothing to find, is
  0, as in conlleval and in scikit-learn/seqeval with ``zero_division=0``;
  sMAPE counts a step where forecast and actual are both 0 as error 0;
  ``frame_accuracy`` on rolls that are silent in both is 1 (nothing was missed
  and nothing was added). Other undefined values (MAPE with a zero actual, MASE
  on a constant training series) raise ``ValueError``.
* **Span F1** is computed from the rounded precision and recall as
  2·P·R/(P + R), the formula of conlleval and seqeval, so the values agree with
  theirs bit for bit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

ArrayLike = npt.ArrayLike | torch.Tensor
FloatArray = npt.NDArray[np.float64]

# ---------------------------------------------------------------------------
# Checks shared by every metric


def _check_pair(
    pred_name: str, predicted: Sequence[Any], gold_name: str, gold: Sequence[Any]
) -> None:
    """Both non-empty and of equal length, or a ValueError naming the arguments."""
    if len(predicted) == 0:
        raise ValueError(f"{pred_name}: empty (expected at least one item)")
    if len(predicted) != len(gold):
        raise ValueError(
            f"{pred_name} has {len(predicted)} items but {gold_name} has {len(gold)} "
            "(expected equal lengths)"
        )


def _check_count(name: str, value: int) -> None:
    """A positive integer count (tokens, characters, frames)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name}: {value!r} (expected a positive integer count)")


def _check_nll(name: str, value: float) -> float:
    """A finite, non-negative total negative log-likelihood (of discrete outcomes)."""
    total = float(value)
    if not math.isfinite(total) or total < 0:
        raise ValueError(f"{name}: {value!r} (expected a finite total NLL ≥ 0, in nats)")
    return total


def _to_numpy(x: ArrayLike) -> Any:
    # np.asarray refuses tensors that require grad, and needs them on the CPU.
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _series(name: str, x: ArrayLike) -> FloatArray:
    """``x`` as a finite 1-D float64 array with at least one value."""
    try:
        arr = np.asarray(_to_numpy(x), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: not a sequence of numbers ({err})") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: shape {arr.shape} (expected a non-empty 1-D series)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} (expected finite values)")
    return arr


def _paired_series(
    pred_name: str, predicted: ArrayLike, gold_name: str, gold: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    f, a = _series(pred_name, predicted), _series(gold_name, gold)
    if f.shape != a.shape:
        raise ValueError(
            f"{pred_name} has {f.size} values but {gold_name} has {a.size} (expected equal lengths)"
        )
    return f, a


def _check_season(season: int) -> None:
    if isinstance(season, bool) or not isinstance(season, int | np.integer) or season < 1:
        raise ValueError(f"season: {season!r} (expected an integer period ≥ 1)")


# ---------------------------------------------------------------------------
# Classification


def _labels(
    predicted: Sequence[Hashable], gold: Sequence[Hashable], labels: Sequence[Hashable] | None
) -> list[Hashable]:
    if labels is None:
        # First appearance order: deterministic without requiring sortable labels.
        return list(dict.fromkeys([*gold, *predicted]))
    if len(labels) == 0:
        raise ValueError("labels: empty (expected at least one label)")
    if len(set(labels)) != len(labels):
        dup = next(x for x, n in Counter(labels).items() if n > 1)
        raise ValueError(f"labels: {dup!r} appears more than once (expected distinct labels)")
    return list(labels)


def accuracy(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    """The fraction of positions where ``predicted`` equals ``gold``.

    Items are compared with ``==``; pass tensors as ``tensor.tolist()``.
    """
    _check_pair("predicted", predicted, "gold", gold)
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def macro_f1(
    predicted: Sequence[Hashable],
    gold: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
) -> float:
    """The unweighted mean over labels of the per-label F1 = 2·TP/(2·TP + FP + FN).

    scikit-learn's convention (``f1_score(average="macro", zero_division=0)``):
    with ``labels=None`` the labels are those seen in ``gold`` or ``predicted``,
    so each has some support. A label passed in ``labels`` that occurs in neither
    has F1 = 0 and still counts in the mean. With ``labels`` given, items whose
    label is not listed add nothing to the listed labels' TP/FP/FN except where
    the other side is listed (a gold ``a`` predicted as an unlisted ``x`` is an
    FN of ``a``), which is how a class such as "other" is left out of the mean.
    """
    _check_pair("predicted", predicted, "gold", gold)
    chosen = _labels(predicted, gold, labels)
    tp = Counter(g for p, g in zip(predicted, gold, strict=True) if p == g)
    n_pred, n_gold = Counter(predicted), Counter(gold)
    f1s = []
    for label in chosen:
        denominator = n_pred[label] + n_gold[label]  # 2·TP + FP + FN
        f1s.append(2 * tp[label] / denominator if denominator else 0.0)
    return math.fsum(f1s) / len(f1s)


def confusion_matrix(
    predicted: Sequence[Hashable], gold: Sequence[Hashable], labels: Sequence[Hashable]
) -> list[list[int]]:
    """Counts ``m[i][j]`` of items with gold ``labels[i]`` predicted as ``labels[j]``.

    Rows are gold, columns predicted (scikit-learn's layout). Every item's gold
    and predicted label must be in ``labels``, so the counts sum to ``len(gold)``.
    """
    _check_pair("predicted", predicted, "gold", gold)
    chosen = _labels(predicted, gold, labels)
    index = {label: i for i, label in enumerate(chosen)}
    matrix = [[0] * len(chosen) for _ in chosen]
    for k, (p, g) in enumerate(zip(predicted, gold, strict=True)):
        for name, value in (("predicted", p), ("gold", g)):
            if value not in index:
                raise ValueError(f"{name}[{k}] = {value!r} is not in labels")
        matrix[index[g]][index[p]] += 1
    return matrix


# ---------------------------------------------------------------------------
# Tagging: conlleval-style spans


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 in [0, 1], and ``support``: the gold spans counted."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class SpanScores:
    """Span scores per entity type (sorted by name) and micro-averaged over all spans.

    A type seen only in the predictions is listed with support 0 and P = R = F1 = 0.
    """

    per_type: dict[str, PRF]
    micro: PRF


_PREFIXES: dict[str, frozenset[str]] = {
    "BIO": frozenset("BI"),
    "BIOES": frozenset("BIES"),
}

Span = tuple[int, int, int]  # (sentence, first token, last token)


def classification_report(
    predicted: Sequence[int], gold: Sequence[int], names: Sequence[str], majority: str | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """A classifier's scores over class ids ``0 … len(names) − 1``.

    Returns:
        ``(metrics, details)``: accuracy, macro-F1 over every class, the example
        count and, with ``majority`` (the training part's commonest label), the
        accuracy of always answering it; the confusion matrix
        ``{"labels": names, "matrix": rows true, columns predicted}``.
    """
    if not gold:
        raise ValueError("no examples to score")
    classes = list(range(len(names)))
    metrics = {"accuracy": accuracy(predicted, gold),
               "macro_f1": macro_f1(predicted, gold, labels=classes)}  # fmt: skip
    details: dict[str, Any] = {}
    if majority is not None:
        metrics["majority_accuracy"] = accuracy([list(names).index(majority)] * len(gold), gold)
        details["majority_label"] = majority
    metrics["examples"] = float(len(gold))
    matrix = confusion_matrix(predicted, gold, labels=classes)
    details = {"confusion_matrix": {"labels": list(names), "matrix": matrix}, **details}
    return metrics, details


def _split_tag(name: str, i: int, j: int, tag: object, prefixes: frozenset[str]) -> tuple[str, str]:
    """``(prefix, type)`` of one tag; ``("O", "")`` outside any entity."""
    if tag == "O":
        return "O", ""
    if not (isinstance(tag, str) and len(tag) > 2 and tag[0] in prefixes and tag[1] == "-"):
        allowed = ", ".join(f"{p}-TYPE" for p in sorted(prefixes))
        raise ValueError(f"{name}[{i}][{j}] = {tag!r} (expected 'O' or {allowed})")
    return tag[0], tag[2:]


def _spans(
    name: str, sentences: Sequence[Sequence[str]], prefixes: frozenset[str]
) -> dict[str, set[Span]]:
    """Every chunk of every sentence, by type, decoded with conlleval's rules."""
    spans: dict[str, set[Span]] = {}
    for i, sentence in enumerate(sentences):
        prev_tag, prev_type, start = "O", "", 0
        # A trailing "O" closes a chunk that runs to the end of the sentence.
        for j, raw in enumerate([*sentence, "O"]):
            tag, type_ = _split_tag(name, i, j, raw, prefixes)
            # Where a chunk ends: after E or S; before B, S or O that follows B or I;
            # and wherever the type changes.
            ends = (
                prev_tag in "ES"
                or (prev_tag in "BI" and tag in "BSO")
                or (prev_tag != "O" and prev_type != type_)
            )
            # Where one starts: at B or S; at I or E that follows O, E or S (so an
            # ill-formed I- or E- opens a chunk instead of being dropped); and
            # wherever the type changes.
            starts = (
                tag in "BS"
                or (prev_tag in "OES" and tag in "IE")
                or (tag != "O" and prev_type != type_)
            )
            if ends:
                spans.setdefault(prev_type, set()).add((i, start, j - 1))
            if starts:
                start = j
            prev_tag, prev_type = tag, type_
    return spans


def _prf(correct: int, found: int, support: int) -> PRF:
    precision = correct / found if found else 0.0
    recall = correct / support if support else 0.0
    # conlleval's formula, from the rounded P and R, for bit-equal results.
    f1 = 2.0 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(precision, recall, f1, support)


def span_scores(
    predicted: Sequence[Sequence[str]],
    gold: Sequence[Sequence[str]],
    scheme: Literal["BIO", "BIOES"] = "BIO",
) -> SpanScores:
    """Strict span precision/recall/F1 per entity type and micro-averaged (conlleval).

    A span counts as correct only if its type, first and last token all match a
    gold span. Spans are read from each sentence with the rules of conlleval,
    which are also seqeval's default mode (not its ``mode="strict"``): an ``I-X``
    or ``E-X`` after ``O``, after another type or after a closed chunk starts a
    new chunk of type X, and a change of type ends a chunk whatever the prefix.
    So ``O I-PER I-PER`` holds one PER span, and ``B-PER I-LOC`` holds two spans.

    Args:
        predicted: one tag sequence per sentence.
        gold: the gold tags, each sentence as long as its prediction.
        scheme: "BIO" allows the prefixes B- and I-; "BIOES" also E- and S-. A tag
            must be ``O`` or ``P-TYPE`` with an allowed prefix P and a non-empty TYPE.
    """
    if scheme not in _PREFIXES:
        raise ValueError(f"scheme: {scheme!r} (expected 'BIO' or 'BIOES')")
    _check_pair("predicted", predicted, "gold", gold)
    for i, (p, g) in enumerate(zip(predicted, gold, strict=True)):
        if len(p) != len(g):
            raise ValueError(
                f"predicted[{i}] has {len(p)} tags but gold[{i}] has {len(g)} "
                "(expected equal lengths)"
            )
    prefixes = _PREFIXES[scheme]
    found = _spans("predicted", predicted, prefixes)
    wanted = _spans("gold", gold, prefixes)
    per_type: dict[str, PRF] = {}
    for type_ in sorted(found.keys() | wanted.keys()):
        spans_p, spans_g = found.get(type_, set()), wanted.get(type_, set())
        per_type[type_] = _prf(len(spans_p & spans_g), len(spans_p), len(spans_g))
    micro = _prf(
        sum(len(found.get(t, set()) & wanted.get(t, set())) for t in per_type),
        sum(len(s) for s in found.values()),
        sum(len(s) for s in wanted.values()),
    )
    return SpanScores(per_type, micro)


# ---------------------------------------------------------------------------
# Language models


def perplexity(total_nll_nats: float, tokens: int) -> float:
    """exp(total NLL / tokens): the total NLL in nats summed over ``tokens`` targets.

    ``inf`` where the mean NLL is too large for a float (above about 709 nats).
    """
    total = _check_nll("total_nll_nats", total_nll_nats)
    _check_count("tokens", tokens)
    try:
        return math.exp(total / tokens)
    except OverflowError:
        return math.inf


def bits_per_character(total_nll_nats: float, characters: int) -> float:
    """Total NLL in nats over ``characters`` targets, as bits per character."""
    total = _check_nll("total_nll_nats", total_nll_nats)
    _check_count("characters", characters)
    return total / (characters * math.log(2))


# ---------------------------------------------------------------------------
# Forecasting. Series are 1-D: lists, numpy arrays or CPU/GPU tensors.


def mae(forecast: ArrayLike, actual: ArrayLike) -> float:
    """Mean absolute error."""
    f, a = _paired_series("forecast", forecast, "actual", actual)
    return float(np.mean(np.abs(f - a)))


def rmse(forecast: ArrayLike, actual: ArrayLike) -> float:
    """Root mean squared error."""
    f, a = _paired_series("forecast", forecast, "actual", actual)
    return float(np.sqrt(np.mean((f - a) ** 2)))


def smape(forecast: ArrayLike, actual: ArrayLike) -> float:
    """Symmetric MAPE in percent, in [0, 200]: the mean of 200·|f − a|/(|f| + |a|).

    Symmetric in its two arguments. A step where both are 0 was forecast exactly
    and counts as 0 (the formula alone would give 0/0).
    """
    f, a = _paired_series("forecast", forecast, "actual", actual)
    scale = np.abs(f) + np.abs(a)
    safe = np.where(scale == 0, 1.0, scale)  # numerator is 0 there too
    # |f − a| ≤ |f| + |a| survives rounding, so dividing first keeps every term ≤ 200.
    return float(np.mean(200.0 * (np.abs(f - a) / safe)))


def mape(forecast: ArrayLike, actual: ArrayLike) -> float:
    """Mean absolute percentage error in percent: the mean of 100·|f − a|/|a|.

    Undefined where an actual value is 0, which raises ``ValueError``; use
    ``smape`` or ``mase`` for series that touch zero.
    """
    f, a = _paired_series("forecast", forecast, "actual", actual)
    zeros = np.flatnonzero(a == 0)
    if zeros.size:
        raise ValueError(f"actual[{zeros[0]}] = 0: MAPE divides by every actual value")
    return float(np.mean(100.0 * np.abs(f - a) / np.abs(a)))


def _naive_scale(name: str, train: FloatArray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast ŷ_t = y_{t−season}."""
    if train.size <= season:
        raise ValueError(
            f"{name}: {train.size} values (expected more than season = {season}, so the "
            "seasonal naive forecast has an in-sample error)"
        )
    return float(np.mean(np.abs(train[season:] - train[:-season])))


def mase(forecast: ArrayLike, actual: ArrayLike, train: ArrayLike, season: int = 1) -> float:
    """Mean absolute scaled error (Hyndman & Koehler 2006).

    The forecast's MAE divided by the in-sample MAE of the seasonal naive forecast
    on ``train``: mean_{t>m} |y_t − y_{t−m}| with m = ``season`` (1: the naive
    forecast). Below 1 beats that baseline's one-step in-sample error. A training
    series that the baseline fits exactly (scale 0) raises ``ValueError``.
    """
    f, a = _paired_series("forecast", forecast, "actual", actual)
    _check_season(season)
    scale = _naive_scale("train", _series("train", train), int(season))
    if scale == 0:
        raise ValueError(
            f"train: the seasonal naive forecast (season {season}) is exact in-sample, "
            "so the MASE scale is 0"
        )
    return float(np.mean(np.abs(f - a))) / scale


def naive_forecast(history: ArrayLike, horizon: int) -> list[float]:
    """The last value of ``history``, repeated ``horizon`` times."""
    h = _series("history", history)
    _check_count("horizon", horizon)
    return [float(h[-1])] * int(horizon)


def seasonal_naive_forecast(history: ArrayLike, horizon: int, season: int) -> list[float]:
    """The last ``season`` values of ``history``, repeated cyclically for ``horizon`` steps.

    Step k (1-based) of the forecast is y_{T+k−m·⌈k/m⌉}, the value one, two, …
    seasons before it; ``season=1`` is the naive forecast.
    """
    h = _series("history", history)
    _check_count("horizon", horizon)
    _check_season(season)
    if h.size < season:
        raise ValueError(f"history: {h.size} values (expected at least season = {season})")
    last = h[h.size - int(season) :]
    return [float(last[k % season]) for k in range(int(horizon))]


def _report_row(f: FloatArray, a: FloatArray, scale: float) -> dict[str, float | None]:
    error = mae(f, a)
    return {
        "mae": error,
        "rmse": rmse(f, a),
        "smape": smape(f, a),
        "mape": None if np.any(a == 0) else mape(f, a),
        "mase": None if scale == 0 else error / scale,
    }


def forecast_report(
    forecast: ArrayLike, actual: ArrayLike, history: ArrayLike, season: int
) -> dict[str, dict[str, float | None]]:
    """Every forecasting metric for the model and for both baselines, on one horizon.

    Returns ``{"model": row, "naive": row, "seasonal_naive": row}``, each row
    ``{"mae", "rmse", "smape", "mape", "mase"}``. The baselines forecast
    ``len(actual)`` steps from ``history``, the series that precedes ``actual``;
    MASE is scaled on ``history`` with period ``season``. A metric that is
    undefined here is ``None`` (JSON null): MAPE when ``actual`` holds a 0, MASE
    when the seasonal naive forecast fits ``history`` exactly.
    """
    f, a = _paired_series("forecast", forecast, "actual", actual)
    h = _series("history", history)
    _check_season(season)
    scale = _naive_scale("history", h, int(season))
    horizon = a.size
    baselines = {
        "naive": np.asarray(naive_forecast(h, horizon)),
        "seasonal_naive": np.asarray(seasonal_naive_forecast(h, horizon, int(season))),
    }
    report = {"model": _report_row(f, a, scale)}
    for name, predicted in baselines.items():
        report[name] = _report_row(predicted, a, scale)
    return report


# ---------------------------------------------------------------------------
# Sequence to sequence


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions
    (each costing 1) that turn token sequence ``a`` into ``b``."""
    if len(a) < len(b):
        a, b = b, a  # the row below is as long as the shorter sequence
    row = list(range(len(b) + 1))  # distances from a[:0] to each prefix of b
    for i, x in enumerate(a, start=1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y)),
            )
    return row[-1]


def token_error_rate(
    predicted: Sequence[Sequence[Hashable]], gold: Sequence[Sequence[Hashable]]
) -> float:
    """Σ edit distances / Σ gold lengths over a corpus (PER for G2P, WER for ASR).

    Can exceed 1 when predictions are longer than the gold sequences.
    """
    _check_pair("predicted", predicted, "gold", gold)
    total = sum(len(g) for g in gold)
    if total == 0:
        raise ValueError("gold: every sequence is empty (the rate divides by their total length)")
    return sum(edit_distance(p, g) for p, g in zip(predicted, gold, strict=True)) / total


def sequence_error_rate(
    predicted: Sequence[Sequence[Hashable]], gold: Sequence[Sequence[Hashable]]
) -> float:
    """The fraction of sequences not exactly equal to their gold (WER for G2P)."""
    _check_pair("predicted", predicted, "gold", gold)
    wrong = sum(tuple(p) != tuple(g) for p, g in zip(predicted, gold, strict=True))
    return wrong / len(gold)


def _ngram_counts(tokens: Sequence[Hashable], n: int) -> Counter[tuple[Hashable, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(
    predicted_tokens: Sequence[Sequence[Hashable]],
    reference_tokens: Sequence[Sequence[Hashable]],
    max_n: int = 4,
) -> float:
    """Corpus BLEU in [0, 1] with one reference per sentence (Papineni et al. 2002).

    BLEU = BP · exp(Σ_{n=1..N} log p_n / N), where p_n is the corpus n-gram
    precision with each n-gram's count clipped to its count in the reference, and
    BP = 1 if c > r else exp(1 − r/c) for c predicted and r reference tokens over
    the corpus. There is no smoothing: a corpus with no matching n-gram of some
    order (or none at all of that order) scores 0, as sacrebleu does with
    ``smooth_method="none"`` (which reports 100 times this value).
    """
    _check_pair("predicted_tokens", predicted_tokens, "reference_tokens", reference_tokens)
    if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"max_n: {max_n!r} (expected an integer ≥ 1)")
    matches, totals = [0] * max_n, [0] * max_n
    for hyp, ref in zip(predicted_tokens, reference_tokens, strict=True):
        for n in range(1, max_n + 1):
            ref_counts = _ngram_counts(ref, n)
            hyp_counts = _ngram_counts(hyp, n)
            matches[n - 1] += sum(min(k, ref_counts[g]) for g, k in hyp_counts.items())
            totals[n - 1] += hyp_counts.total()
    if min(matches) == 0:  # also covers orders with no n-grams at all
        return 0.0
    c = sum(len(h) for h in predicted_tokens)
    r = sum(len(x) for x in reference_tokens)
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(
        math.fsum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / max_n
    )


# ---------------------------------------------------------------------------
# Music


def _roll(name: str, i: int, x: ArrayLike) -> npt.NDArray[np.bool_]:
    try:
        arr = np.asarray(_to_numpy(x))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}[{i}]: not an array ({err})") from None
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name}[{i}]: expected a binary piano roll of 0/1 (threshold first)")
    return arr.astype(np.bool_)


def frame_accuracy(predicted_rolls: Sequence[ArrayLike], gold_rolls: Sequence[ArrayLike]) -> float:
    """ΣTP / (ΣTP + ΣFP + ΣFN) over every frame and pitch (Bay et al. 2009).

    Args:
        predicted_rolls: one binary roll per piece, each ``(T_i, P)`` (bool or
            0/1); the counts are summed, so a single ``(T, P)`` array read as T
            frames gives the same value.
        gold_rolls: the gold rolls, each the shape of its prediction.

    Rolls silent in both (all counts 0) give 1: the prediction was exact.
    """
    _check_pair("predicted_rolls", predicted_rolls, "gold_rolls", gold_rolls)
    tp = fp = fn = 0
    for i, (p_raw, g_raw) in enumerate(zip(predicted_rolls, gold_rolls, strict=True)):
        p, g = _roll("predicted_rolls", i, p_raw), _roll("gold_rolls", i, g_raw)
        if p.shape != g.shape:
            raise ValueError(
                f"predicted_rolls[{i}] has shape {p.shape} but gold_rolls[{i}] has {g.shape} "
                "(expected equal shapes)"
            )
        tp += int(np.sum(p & g))
        fp += int(np.sum(p & ~g))
        fn += int(np.sum(~p & g))
    counted = tp + fp + fn
    return tp / counted if counted else 1.0


def nll_per_frame(total_nll: float, frames: int) -> float:
    """The total NLL (nats, summed over the pitches of each frame) divided by ``frames``."""
    total = _check_nll("total_nll", total_nll)
    _check_count("frames", frames)
    return total / frames


def closest_reference_scores(
    predicted: Sequence[Sequence[Hashable]], references: Sequence[Sequence[Sequence[Hashable]]]
) -> dict[str, float]:
    """Token and sequence error rates and corpus BLEU of each prediction against its
    *closest* reference, where a source has several (CMUdict's ``read``: R EH1 D and
    R IY1 D), as is standard G2P practice.

    The closest is the reference at the least edit distance from the prediction,
    the first in the given order on a tie; a prediction is then correct if it
    equals any reference, its token errors are counted against the nearest one,
    and BLEU uses that reference too. For grapheme-to-phoneme data the token and
    sequence error rates are PER and WER.

    Returns:
        ``token_error_rate``, ``sequence_error_rate`` and ``bleu``.
    """
    _check_pair("predicted", predicted, "references", references)
    chosen = []
    for i, (output, options) in enumerate(zip(predicted, references, strict=True)):
        if not options:
            raise ValueError(f"references[{i}]: expected at least one reference, got none")
        distances = [edit_distance(output, ref) for ref in options]
        chosen.append(options[distances.index(min(distances))])
    return {
        "token_error_rate": token_error_rate(predicted, chosen),
        "sequence_error_rate": sequence_error_rate(predicted, chosen),
        "bleu": bleu(predicted, chosen),
    }
