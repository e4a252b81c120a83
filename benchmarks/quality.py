"""Quality on real data: each row trains with one `rnnkit train` command and reads
`rnnkit evaluate --json`, then checks the issue's target against the number reached.

Every row is what a user would type: the commands are printed, run as they are
(subprocesses of the installed `rnnkit`), and written with their results into
BENCHMARKS.md. A row reports what was reached even when the target is missed.

    python benchmarks/quality.py --list                  # the rows and their commands
    python benchmarks/quality.py --only adding,airpassengers
    python benchmarks/quality.py --write BENCHMARKS.md   # run all, then write the table
    python benchmarks/quality.py --collect --write BENCHMARKS.md   # the table of stored results

Each row's result is kept in RUNS/NAME/result.json (the latest run wins), so rows can
be run one at a time, or in parallel, and the table written once.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import publish

RNNKIT = str(Path(sys.executable).with_name("rnnkit"))
Report = dict[str, Any]  # `rnnkit evaluate --json` of one run


@dataclass(frozen=True)
class Verdict:
    reached: str  # what was measured, for the table
    met: bool


@dataclass(frozen=True)
class Row:
    """One benchmark: runs trained by `trains` (name → train arguments), then a check.

    Attributes:
        name: the row's name (``--only``).
        target: the issue's target, for the table.
        trains: run name → the arguments after ``rnnkit train``; ``--out`` is added.
        check: the evaluation reports (run name → JSON) → what was reached.
        split: the split evaluated.
        threads: intra-op threads of each run; a row with 2 must run alone.
    """

    name: str
    target: str
    trains: dict[str, list[str]]
    check: Callable[[dict[str, Report]], Verdict]
    split: str = "test"
    threads: int = 1


def metric(report: Report, name: str) -> float:
    return float(report["metrics"][name])


def _at_most(
    run: str, name: str, limit: float, scale: float = 1.0, unit: str = ""
) -> Callable[[dict[str, Report]], Verdict]:
    def check(reports: dict[str, Report]) -> Verdict:
        value = metric(reports[run], name) * scale
        return Verdict(f"{name} {value:.3f}{unit}", value <= limit)

    return check


def _at_least(
    run: str, name: str, limit: float, scale: float = 1.0, unit: str = ""
) -> Callable[[dict[str, Report]], Verdict]:
    def check(reports: dict[str, Report]) -> Verdict:
        value = metric(reports[run], name) * scale
        return Verdict(f"{name} {value:.2f}{unit}", value >= limit)

    return check


def _adding(reports: dict[str, Report]) -> Verdict:
    mse = {cell: metric(reports[cell], "mse") for cell in ("lstm", "gru", "rnn")}
    met = mse["lstm"] <= 0.01 and mse["gru"] <= 0.01 and mse["rnn"] >= 0.1
    shown = ", ".join(
        f"{cell.upper()} {value:.1e}" if value < 0.01 else f"{cell.upper()} {value:.3f}"
        for cell, value in mse.items()
    )
    return Verdict(f"MSE {shown}", met)


def _airpassengers(reports: dict[str, Report]) -> Verdict:
    report = reports["lstm"]
    ours = metric(report, "mape")
    seasonal = metric(report, "seasonal_naive_mape")
    return Verdict(
        f"MAPE {ours:.2f} % (seasonal naive {seasonal:.2f} %)", ours <= 5.0 and ours < seasonal
    )


def _cmudict(reports: dict[str, Report]) -> Verdict:
    # G2P: the token error rate is the phoneme error rate, the sequence error rate the
    # word error rate (a word is wrong unless its whole pronunciation is right).
    report = reports["g2p"]
    per = metric(report, "token_error_rate") * 100
    wer = metric(report, "sequence_error_rate") * 100
    return Verdict(f"PER {per:.1f} %, WER {wer:.1f} %", per <= 7.6 and wer <= 28.6)


def _wnut16(reports: dict[str, Report]) -> Verdict:
    f1 = metric(reports["ner"], "span_f1") * 100
    return Verdict(f"span F1 {f1:.1f} %", f1 >= 40.0)


def _bach(reports: dict[str, Report]) -> Verdict:
    ours = metric(reports["gru"], "nll_per_frame")
    baseline = metric(reports["gru"], "baseline_nll_per_frame")
    return Verdict(f"NLL/frame {ours:.3f} (per-key Bernoulli {baseline:.3f})", ours < baseline)


def _adding_1000(reports: dict[str, Report]) -> Verdict:
    mse = {cell: metric(reports[cell], "mse") for cell in reports}
    shown = ", ".join(f"{cell} {value:.1e}" for cell, value in mse.items())
    return Verdict(f"MSE {shown}", all(value <= 0.01 for value in mse.values()))


def _selective_copying(reports: dict[str, Report]) -> Verdict:
    accuracy = metric(reports["mingru"], "accuracy") * 100
    exact = metric(reports["mingru"], "exact") * 100
    return Verdict(f"token accuracy {accuracy:.1f} % (sequences exact {exact:.1f} %)",
                   accuracy >= 99.0)  # fmt: skip


def _shakespeare_minimal(reports: dict[str, Report]) -> Verdict:
    lstm = metric(reports["lstm"], "bits_per_character")
    mingru = metric(reports["mingru"], "bits_per_character")
    return Verdict(f"bits per character: minGRU {mingru:.3f}, LSTM {lstm:.3f}",
                   mingru <= 1.05 * lstm)  # fmt: skip


# One thread per row unless the row says otherwise, set by the command (and saved in
# each run's config.toml): the thread count changes float rounding, so the numbers,
# and two one-thread rows share 2 cores.
QUIET = ["--progress", "lines"]

# The main job's LSTM (examples/shakespeare.toml, 2 × 256: 0.88 M parameters in all)
# against five minGRU layers of 318 units (0.878 M; chosen by validation loss on
# 2026-12-07 over 4 × 365, 3 × 440, the minGRU paper's depth, and 2 × 620), each with
# the same one epoch of steps (3–5 minutes on one thread), capped at 12.
SHAKESPEARE = ["lm", "--dataset", "shakespeare", "--config", "examples/shakespeare.toml",
               "--max-steps", "100000", "--max-minutes", "12"]  # fmt: skip

ROWS = [
    Row(
        "ptb-char",
        "test ≤ 1.40 bits per character",
        {"lstm": ["lm", "--dataset", "ptb-char", "--config", "benchmarks/configs/ptb_char.toml"]},
        _at_most("lstm", "bits_per_character", 1.40),
    ),
    Row(
        "ptb-word",
        "test perplexity ≤ 100",
        {"lstm": ["lm", "--dataset", "ptb", "--config", "benchmarks/configs/ptb_word.toml"]},
        _at_most("lstm", "perplexity", 100.0),
    ),
    Row(
        "adding",
        "T = 200: LSTM, GRU MSE ≤ 0.01; tanh RNN ≥ 0.1 (same budget)",
        {
            cell: [
                "seqclass",
                "--dataset",
                "adding",
                "--config",
                "benchmarks/configs/adding.toml",
                "--cell",
                cell,
                *(["--gate-bias", "0"] if cell == "rnn" else []),
            ]
            for cell in ("lstm", "gru", "rnn")
        },
        _adding,
    ),
    Row(
        "rotten-tomatoes",
        "test accuracy ≥ 80 %",
        {
            "bilstm": [
                "classify",
                "--dataset",
                "rotten-tomatoes",
                "--config",
                "benchmarks/configs/rotten_tomatoes.toml",
            ]
        },
        _at_least("bilstm", "accuracy", 80.0, scale=100, unit=" %"),
    ),
    Row(
        "japanese-vowels",
        "test accuracy ≥ 97 %",
        {
            "lstm": [
                "seqclass",
                "--dataset",
                "japanese-vowels",
                "--config",
                "benchmarks/configs/japanese_vowels.toml",
            ]
        },
        _at_least("lstm", "accuracy", 97.0, scale=100, unit=" %"),
    ),
    Row(
        "airpassengers",
        "12-month backtest MAPE ≤ 5 % and below seasonal naive",
        {
            "lstm": [
                "forecast",
                "--dataset",
                "airpassengers",
                "--config",
                "benchmarks/configs/airpassengers.toml",
            ]
        },
        _airpassengers,
    ),
    Row(
        "cmudict",
        "held-out PER ≤ 7.6 % and WER ≤ 28.6 % (Yao & Zweig 2015)",
        {"g2p": ["seq2seq", "--dataset", "cmudict", "--config", "benchmarks/configs/cmudict.toml"]},
        _cmudict,
    ),
    Row(
        "wnut16",
        "span F1 ≥ 40 % on the held-out split, no external embeddings",
        {"ner": ["tag", "--dataset", "wnut16", "--config", "benchmarks/configs/wnut16.toml"]},
        _wnut16,
    ),
    Row(
        "bach-chorales",
        "NLL per frame below the per-key Bernoulli baseline",
        {
            "gru": [
                "music",
                "--dataset",
                "bach-chorales",
                "--config",
                "benchmarks/configs/bach_chorales.toml",
            ]
        },
        _bach,
    ),
    Row(
        "adding-1000",
        "T = 1,000: minGRU and minLSTM MSE ≤ 0.01",
        {
            cell: ["seqclass", "--config", "benchmarks/configs/adding_1000.toml", "--cell", cell]
            for cell in ("mingru", "minlstm")
        },
        _adding_1000,
    ),
    Row(
        "selective-copying",
        "3-layer minGRU token accuracy ≥ 99 % (paper: 99.5 %; here T = 256, not 4,096)",
        {"mingru": ["tag", "--config", "benchmarks/configs/selective_copying.toml"]},
        _selective_copying,
        threads=2,
    ),
    Row(
        "shakespeare-minimal",
        "minGRU bits per character within 5 % of the LSTM's, equal parameters and minutes",
        {
            "lstm": SHAKESPEARE,
            "mingru": [*SHAKESPEARE, "--cell", "mingru", "--layers", "5", "--hidden", "318"],
        },
        _shakespeare_minimal,
    ),
]


def command(row: Row, run: str, runs: Path) -> list[str]:
    return [
        RNNKIT,
        "train",
        *row.trains[run],
        *QUIET,
        "--threads",
        str(row.threads),
        "--out",
        str(runs / row.name / run),
    ]


def shown(argv: list[str]) -> str:
    return " ".join(["rnnkit", *argv[1:]])


def training_seconds(run_dir: Path) -> float:
    """The run's training time from its metrics.csv (so a resumed row keeps it)."""
    with (run_dir / "metrics.csv").open() as handle:
        return max(float(line.rsplit(",", 1)[1]) for line in list(handle)[1:])


def run_row(row: Row, runs: Path, fresh: bool, train: bool = True) -> dict[str, Any]:
    reports: dict[str, Report] = {}
    seconds: dict[str, float] = {}
    for run in row.trains:
        out = runs / row.name / run
        if fresh and out.exists():
            shutil.rmtree(out)
        argv = command(row, run, runs)
        print(f"$ {shown(argv)}", flush=True)
        if train:
            # Continue a run that was stopped; `--resume` of nothing is refused.
            resumable = (out / "checkpoints" / "last" / "manifest.json").exists()
            subprocess.run([*argv, *(["--resume"] if resumable else [])], check=True)
        seconds[run] = training_seconds(out)
        evaluation = [RNNKIT, "evaluate", str(out), "--split", row.split, "--json"]
        print(f"$ {shown(evaluation)}", flush=True)
        result = subprocess.run(evaluation, check=True, capture_output=True, text=True)
        reports[run] = json.loads(result.stdout)
        print(json.dumps(reports[run]["metrics"]), flush=True)
    verdict = row.check(reports)
    return {
        "row": row.name,
        "target": row.target,
        "reached": verdict.reached,
        "met": verdict.met,
        "minutes": {run: round(s / 60, 1) for run, s in seconds.items()},
        "commands": [shown(command(row, run, runs)) for run in row.trains],
        "date": datetime.date.today().isoformat(),
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| benchmark | target | reached | met | train minutes |",
        "|---|---|---|---|---|",
    ]
    for row in ROWS:
        r = results.get(row.name)
        if r is None:
            lines.append(f"| {row.name} | {row.target} | not run | — | — |")
            continue
        minutes = ", ".join(f"{run} {m}" for run, m in r["minutes"].items())
        met = "yes" if r["met"] else "**no**"
        lines.append(f"| {row.name} | {r['target']} | {r['reached']} | {met} | {minutes} |")
    lines += ["", "Commands (each followed by `rnnkit evaluate RUN --split test --json`):", ""]
    for row in ROWS:
        r = results.get(row.name)
        for line in r["commands"] if r else [shown(command(row, run, Path("runs/quality")))
                                              for run in row.trains]:  # fmt: skip
            lines.append(f"- `{line}`")
    dates = sorted({r["date"] for r in results.values()})
    hosts = sorted({r["host"] for r in results.values()})
    if dates:
        lines += ["", f"Run on {', '.join(dates)}; {', '.join(hosts)}; CPU only."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated row names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the rows and commands")
    parser.add_argument("--runs", type=Path, default=Path("runs/quality"), help="run folders")
    parser.add_argument("--resume", action="store_true", help="continue existing run folders")
    parser.add_argument("--write", type=Path, help="write the table into this markdown file")
    parser.add_argument("--no-train", action="store_true",
                        help="evaluate the existing run folders without training")  # fmt: skip
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: build the table from the stored results")  # fmt: skip
    args = parser.parse_args(argv)
    names = [row.name for row in ROWS]
    chosen = names if not args.only else args.only.split(",")
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"--only: unknown rows {', '.join(unknown)} (expected some of {names})")
    if args.list:
        for row in ROWS:
            print(f"{row.name}: {row.target}")
            for run in row.trains:
                print(f"  {shown(command(row, run, args.runs))}")
        return 0
    for row in ROWS:
        if row.name in chosen and not args.collect:
            result = run_row(row, args.runs, fresh=not (args.resume or args.no_train),
                             train=not args.no_train)  # fmt: skip
            # One file per row: rows run by separate invocations (in parallel) all count.
            (args.runs / row.name / "result.json").write_text(json.dumps(result, indent=1))
            print(f"{row.name}: {result['reached']} "
                  f"({'met' if result['met'] else 'NOT met'})", flush=True)  # fmt: skip
    results = {
        row.name: json.loads((args.runs / row.name / "result.json").read_text())
        for row in ROWS
        if (args.runs / row.name / "result.json").exists()
    }
    text = table(results)
    print(text)
    publish(args.write, "quality", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
