"""``rnnkit evaluate``'s text: every kind of detail the tasks return, readable and rounded.

Hand-made :class:`Evaluation` objects shaped as each task's ``evaluate`` returns them;
no training.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from rnnkit.cli.evaluate import format_evaluation, number
from rnnkit.cli.main import main
from rnnkit.tasks.task import Evaluation

CLASSIFY = Evaluation(
    "test",
    {"accuracy": 0.8123456789, "macro_f1": 0.79, "loss": 0.43219876, "examples": 2066.0},
    {"confusion_matrix": {"labels": ["negative", "positive"], "matrix": [[420, 113], [87, 1446]]},
     "majority_label": "positive"},
)  # fmt: skip
TAG = Evaluation(
    "test",
    {"span_f1": 0.41234567, "accuracy": 0.9012345, "spans": 3850.0, "tokens": 61908.0},
    {"per_type": {"person": {"precision": 0.512345, "recall": 0.4, "f1": 0.45, "support": 1200},
                  "geo-loc": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 7}}},
)  # fmt: skip
SEQ2SEQ = Evaluation(
    "test",
    {"token_error_rate": 0.123456, "bleu": 0.6123456, "perplexity": 2.4612345, "pairs": 13000.0},
    {"decoding": "beam 4", "scoring": "each distinct source against its closest reference",
     "mistakes": [{"source": "abandon", "output": "AH B AE N D AH N",
                   "references": ["AH B AE N D IH N"]},
                  {"source": "read", "output": "R EH D", "references": ["R IY D", "R EH D Z"]}]},
)  # fmt: skip
FORECAST = Evaluation(
    "test",
    {"mae": 23.456789, "smape": 4.5678912, "mase": 0.812345, "naive_mase": 1.5, "horizon": 12.0},
    {"metrics": {"model": {"mae": 23.456789, "mape": None, "mase": 0.812345},
                 "naive": {"mae": 50.0, "mape": 8.9123456, "mase": 1.5},
                 "seasonal_naive": {"mae": 40.0, "mape": 7.0, "mase": 1.2}},
     "backtest": {"times": ["1960-01", "1960-02", "1960-03"], "actual": [417.0, 391.0, 419.0],
                  "forecast": [410.12345, 400.56789, 1430.0], "origin": "1959-12", "season": 12}},
)  # fmt: skip
MUSIC = Evaluation(
    "test",
    {"nll_per_frame": 7.123456, "baseline_nll_per_frame": 8.5, "frame_accuracy": 0.1234567},
    {"below_baseline": True, "nats_per_frame_below_baseline": 1.376544},
)  # fmt: skip
CAPTION = Evaluation(
    "valid",
    {"loss": 1.1, "label_preference": 0.7, "texts": 500.0, "tokens": 123456.0},
    {"chance_preference": 1 / 3,
     "confusion_matrix": {"labels": ["a", "bb"], "matrix": [[1, 22], [333, 4444]]}},
)  # fmt: skip
ADDING = Evaluation(
    "test", {"mse": 0.000123456, "baseline_mse": 0.16666, "examples": 1000.0}, {"length": 100}
)
LM = Evaluation("valid", {"loss": 1.4561234, "bits_per_character": 2.1012345, "tokens": 1234567.0})
EVERY = {"classify": CLASSIFY, "tag": TAG, "seq2seq": SEQ2SEQ, "forecast": FORECAST,
         "music": MUSIC, "caption": CAPTION, "seqclass": ADDING, "lm": LM}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "name", "shown"),
    [(0.8123456, "accuracy", "0.8123"), (1.0, "accuracy", "1.0000"), (0.0, "loss", "0.0000"),
     (5.0, "examples", "5"), (2066.0, "examples", "2,066"), (1200, "support", "1,200"),
     (12.345678, "mae", "12.35"), (123.45678, "perplexity", "123.5"),
     (12345.678, "perplexity", "12,346"), (3.14159e-5, "mse", "3.142e-05"),
     (-0.5, "gain", "-0.5000"), (None, "mape", "–"), (True, "below_baseline", "yes"),
     (False, "below_baseline", "no"), (float("nan"), "loss", "nan"), (math.inf, "x", "inf"),
     ("beam 4", "decoding", "beam 4")],
)  # fmt: skip
def test_numbers_are_rounded_and_counts_separated(value: object, name: str, shown: str) -> None:
    assert number(value, name) == shown


def test_a_classifier_shows_a_grid_and_its_scalars() -> None:
    assert format_evaluation("classify", "runs/c", CLASSIFY) == (
        "classify run runs/c, split test\n"
        "  accuracy  0.8123\n"
        "  macro_f1  0.7900\n"
        "  loss      0.4322\n"
        "  examples   2,066\n"
        "\n"
        "  majority_label  positive\n"
        "\n"
        "confusion_matrix (rows: true, columns: predicted)\n"
        "            negative  positive\n"
        "  negative       420       113\n"
        "  positive        87     1,446\n"
    )


def test_per_type_scores_are_a_table() -> None:
    text = format_evaluation("tag", "runs/t", TAG)
    assert text.endswith(
        "per_type\n"
        "           precision  recall      f1  support\n"
        "  person      0.5123  0.4000  0.4500    1,200\n"
        "  geo-loc     0.0000  0.0000  0.0000        7\n"
    )
    assert "  spans      3,850\n" in text and "  tokens    61,908\n" in text


def test_mistakes_are_aligned_rows_and_long_ones_blocks() -> None:
    text = format_evaluation("seq2seq", "runs/s", SEQ2SEQ)
    assert "  decoding  beam 4\n" in text
    assert "  scoring   each distinct source against its closest reference\n" in text
    assert text.endswith(
        "mistakes (2)\n"
        "  source   output            references\n"
        "  abandon  AH B AE N D AH N  AH B AE N D IH N\n"
        "  read     R EH D            R IY D | R EH D Z\n"
    )
    long = "a source sentence that goes on and on " * 3  # rows wider than 100 columns
    wide = Evaluation(
        "test", {}, {"mistakes": [{"source": long, "output": "x", "references": ["y", "z"]}]}
    )
    assert format_evaluation("seq2seq", "r", wide).endswith(
        f"mistakes (1)\n  1.\n    source      {long}\n    output      x\n    references  y | z\n"
    )
    none = Evaluation("test", {}, {"mistakes": []})
    assert format_evaluation("seq2seq", "r", none).endswith("\nmistakes  none\n")


def test_forecasting_baselines_and_the_backtest() -> None:
    text = format_evaluation("forecast", "runs/f", FORECAST)
    assert (
        "metrics\n"
        "                    mae    mape    mase\n"
        "  model           23.46       –  0.8123\n"
        "  naive           50.00  8.9123  1.5000\n"
        "  seasonal_naive  40.00  7.0000  1.2000\n"
    ) in text
    assert text.endswith(
        "backtest\n"
        "  origin  1959-12\n"
        "  season  12\n"
        "  times    actual  forecast\n"
        "  1960-01   417.0     410.1\n"
        "  1960-02   391.0     400.6\n"
        "  1960-03   419.0     1,430\n"
    )
    assert "  horizon         12\n" in text


def test_booleans_and_plain_scalars() -> None:
    text = format_evaluation("music", "runs/m", MUSIC)
    assert text.endswith(
        "\n  below_baseline                 yes\n  nats_per_frame_below_baseline  1.3765\n"
    )
    assert "  length  100\n" in format_evaluation("seqclass", "runs/a", ADDING)
    assert "  mse           1.235e-04\n" in format_evaluation("seqclass", "runs/a", ADDING)


def test_other_shapes_are_indented_lines() -> None:
    # What a new task might return: a list of numbers, a bare matrix, nested tables.
    nested = {"name": "x", "inner": {"count": 3, "rate": 0.333333}, "ragged": [[1], [2, 3]]}
    details = {
        "values": [0.123456, 2.0, 12345.678],
        "grid": [[1, 22], [333, 4.5]],
        "nested": nested,
    }
    text = format_evaluation("new", "r", Evaluation("test", {}, details))
    assert text == (
        "new run r, split test\n"
        "\n"
        "values  0.1235, 2.0000, 12,346\n"
        "\n"
        "grid\n"
        "    1      22\n"
        "  333  4.5000\n"
        "\n"
        "nested\n"
        "  name  x\n"
        "  inner\n"
        "    count       3\n"
        "    rate   0.3333\n"
        "  ragged\n"
        "    1  1\n"
        "    2  2, 3\n"
    )


@pytest.mark.parametrize("kind", sorted(EVERY))
def test_no_raw_json_and_no_unrounded_float(kind: str) -> None:
    text = format_evaluation(kind, "runs/x", EVERY[kind])
    assert text.startswith(f"{kind} run runs/x, split {EVERY[kind].split}\n")
    assert not re.search(r"[{}\[\]\"]", text), text  # no dict, list or quote shown raw
    assert not re.search(r"\d\.\d{5,}", text), text  # at most 4 decimals
    assert "None" not in text and "True" not in text and "False" not in text
    for name in EVERY[kind].metrics:
        assert f"\n  {name} " in text


def test_json_stays_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rnnkit.tasks
    import rnnkit.tasks.task

    class Task:  # what the command asks of a task: its run loaded, then evaluated
        def load(self, run_dir: object) -> str:
            return "loaded"

        def evaluate(self, loaded: object, split: str, data: object) -> Evaluation:
            assert (loaded, split, data) == ("loaded", "test", None)
            return FORECAST

    monkeypatch.setattr(rnnkit.tasks.task, "run_kind", lambda run_dir: "forecast")
    monkeypatch.setattr(rnnkit.tasks, "get", lambda kind: Task())
    assert main(["evaluate", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"task": "forecast", "split": "test", "metrics": FORECAST.metrics,
                      "details": FORECAST.details}  # fmt: skip
    assert main(["evaluate", str(tmp_path)]) == 0
    assert capsys.readouterr().out == format_evaluation("forecast", str(tmp_path), FORECAST)
