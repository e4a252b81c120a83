"""Generation speed: one recurrent step at B = 1, and ``rnnkit generate`` on the main job's model.

Per step (B = 1, I = 64, H = 256, one layer, float32, no_grad, state carried from
step to step): torch.nn's module on a (1, 1, I) input, torch.nn's cell, rnnkit's
``Recurrent`` at T = 1 (what the decoders called before the stepper), and
:class:`rnnkit.stepping.Stepper` on the compiled step and on its ATen path. Each
candidate runs ``--steps`` steps per round, the rounds interleaved; the table
gives the median µs per step and the stepper's speed over torch.nn's module and
cell (> 1 is faster). Measured at each of ``--threads``: the CLI leaves torch's
default (one thread per core), so both one thread and the core count are shown.

``rnnkit generate``: a run folder of the main job's model (examples/shakespeare.toml:
embedding 64, 2 × 256 LSTM, characters) is trained for one step on the first
300,000 characters of the Shakespeare corpus in a temporary folder (the model's
speed does not depend on its weights). Then, interleaved:

* in this process, ``main(["generate", RUN, "--length", N])``: start-up is the time
  to its first character (loading the run, reading the prompt), generation the time
  from the first character to the last, reported as characters per second;
* as a process, ``python -m rnnkit generate RUN --length 1`` and ``python -m rnnkit
  predict RUN "ROMEO:"``: the wall time of imports, loading and one answer.

    python benchmarks/generation.py                     # print the tables
    python benchmarks/generation.py --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.bptt import compiled
from rnnkit.stepping import Stepper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, publish
from common import machine as describe_machine

ROOT = Path(__file__).resolve().parents[1]
INPUT, HIDDEN = 64, 256
TORCH_TYPES: dict[str, tuple[Callable[..., nn.RNNBase], Callable[..., nn.Module]]] = {
    "rnn": (nn.RNN, nn.RNNCell),
    "lstm": (nn.LSTM, nn.LSTMCell),
    "gru": (nn.GRU, nn.GRUCell),
}
CANDIDATES = ("torch.nn module", "torch.nn cell", "Recurrent T=1", "Stepper", "Stepper (ATen)")


def step_candidates(cell: str, steps: int) -> dict[str, Callable[[], None]]:
    """``steps`` steps of each candidate, every one on the same weights and inputs."""
    torch.manual_seed(0)
    module_type, cell_type = TORCH_TYPES[cell]
    module = module_type(INPUT, HIDDEN, batch_first=True).eval()
    one = cell_type(INPUT, HIDDEN).eval()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(one, name).copy_(getattr(module, f"{name}_l0"))
    rnn = Recurrent.from_torch(module).eval()
    fast = Stepper.from_recurrent(rnn)
    with compiled.enabled(False):
        aten = Stepper.from_recurrent(rnn)
    xs = torch.randn(steps, 1, INPUT)

    def run_module() -> None:
        state = None
        for x in xs:
            _, state = module(x[:, None], state)

    def run_cell() -> None:
        zero = torch.zeros(1, HIDDEN)
        state: object = (zero, zero) if cell == "lstm" else zero
        for x in xs:
            state = one(x, state)

    def run_recurrent() -> None:
        state = None
        for x in xs:
            _, state = rnn(x[:, None], state)

    def run_stepper(stepper: Stepper) -> Callable[[], None]:
        def run() -> None:
            state = rnn.initial_state(1)
            for x in xs:
                _, state = stepper.step(x, state)

        return run

    def no_grad(run: Callable[[], None]) -> Callable[[], None]:
        def call() -> None:
            with torch.no_grad():
                run()

        return call

    runs = (run_module, run_cell, run_recurrent, run_stepper(fast), run_stepper(aten))
    return {name: no_grad(run) for name, run in zip(CANDIDATES, runs, strict=True)}


def time_rounds(candidates: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each candidate over interleaved rounds (one warm-up)."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for round_ in range(repeats + 1):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            if round_:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def step_table(threads: list[int], steps: int, repeats: int) -> list[str]:
    lines = [
        "| cell | threads | " + " | ".join(f"{c} µs" for c in CANDIDATES)
        + " | Stepper vs module | Stepper vs cell |",
        "|---|---:|" + "---:|" * len(CANDIDATES) + "---:|---:|",
    ]  # fmt: skip
    for count in threads:
        torch.set_num_threads(count)
        for cell in TORCH_TYPES:
            medians = time_rounds(step_candidates(cell, steps), repeats)
            us = {name: 1e6 * value / steps for name, value in medians.items()}
            row = (
                f"| {cell} | {count} | "
                + " | ".join(f"{us[name]:.1f}" for name in CANDIDATES)
                + f" | {us['torch.nn module'] / us['Stepper']:.2f}× "
                + f"| {us['torch.nn cell'] / us['Stepper']:.2f}× |"
            )
            print(row, flush=True)
            lines.append(row)
    torch.set_num_threads(max(threads))
    return lines


# --------------------------------------------------------------------------- rnnkit generate


def shakespeare_text(characters: int) -> str:
    """The first characters of the Shakespeare corpus (the main job's data)."""
    from rnnkit.data.forms import TextCorpus
    from rnnkit.data.registry import fetch

    corpus = fetch("shakespeare")
    assert isinstance(corpus, TextCorpus)
    return corpus.splits["train"][:characters]


def make_run(folder: Path) -> Path:
    """The main job's model, trained one step, saved as a run folder."""
    from rnnkit.cli.main import main

    text = folder / "shakespeare.txt"
    text.write_text(shakespeare_text(300_000))
    run = folder / "run"
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        status = main(["train", "lm", "--config", str(ROOT / "examples" / "shakespeare.toml"),
                       "--data", str(text), "--out", str(run), "--max-steps", "1",
                       "--progress", "off", "--no-report"])  # fmt: skip
    if status != 0:
        raise RuntimeError(f"rnnkit train lm exited with {status}")
    return run


class Clock:
    """A stdout that notes when the first and the last character were written."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.characters = 0

    def write(self, text: str) -> int:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.characters += len(text)
        self.last = now
        return len(text)

    def flush(self) -> None:
        pass


def generate_in_process(run: Path, length: int) -> tuple[float, float, int]:
    """(seconds to the first character, seconds from it to the last, characters after it)."""
    from rnnkit.cli.main import main

    clock = Clock()
    start = time.perf_counter()
    with contextlib.redirect_stdout(clock):  # type: ignore[type-var]
        assert main(["generate", str(run), "--length", str(length), "--seed", "0"]) == 0
    assert clock.first is not None
    return clock.first - start, clock.last - clock.first, clock.characters


def process_seconds(*argv: str) -> tuple[float, float]:
    """(seconds from spawning ``python -m rnnkit ARGV`` to its first byte of output,
    seconds to its exit): imports, loading and the first answer, then the rest and
    the interpreter's teardown (torch's takes a few tenths of a second)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "rnnkit", *argv], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert process.stdout is not None
    process.stdout.read(1)
    first = time.perf_counter() - start
    process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rnnkit {argv[0]} exited with {process.returncode}")
    return first, time.perf_counter() - start


def generate_table(length: int, repeats: int) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        run = make_run(Path(folder))
        generate_in_process(run, 5)  # warm: the compiled library loaded, caches filled
        rows: dict[str, list[float]] = {}
        for _ in range(repeats):
            startup, seconds, characters = generate_in_process(run, length)
            first, total = process_seconds("generate", str(run), "--length", "1")
            answer, exited = process_seconds("predict", str(run), "ROMEO:")
            measured = {"startup": startup, "generation": seconds, "cps": characters / seconds,
                        "generate": first, "generate exit": total, "predict": answer,
                        "predict exit": exited}  # fmt: skip
            for name, value in measured.items():
                rows.setdefault(name, []).append(value)
    median = {name: statistics.median(values) for name, values in rows.items()}
    return [
        "| measure | median | target |",
        "|---|---:|---:|",
        f"| `main(['generate', RUN, '--length', '{length}'])`: load to first character "
        f"| {median['startup']:.3f} s | |",
        f"| … then {length - 1} characters | {median['generation']:.3f} s "
        f"({median['cps']:,.0f} characters/s) | ≤ {0.5 * (length - 1) / 1000:.3f} s |",
        f"| `python -m rnnkit generate RUN --length 1`: process start to its first character "
        f"(imports, load) | {median['generate']:.2f} s | ≤ 2 s |",
        f"| … to its exit | {median['generate exit']:.2f} s | |",
        f"| `python -m rnnkit predict RUN 'ROMEO:'`: process start to its answer "
        f"| {median['predict']:.2f} s | ≤ 2 s |",
        f"| … to its exit | {median['predict exit']:.2f} s | |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default=f"1,{os.cpu_count() or 1}",
                        help="comma-separated torch thread counts for the step table "
                        "(1 and the core count)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=200, help="steps per round (200)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (7)")
    parser.add_argument("--length", type=int, default=1000, help="characters generated (1000)")
    parser.add_argument("--no-generate", action="store_true",
                        help="skip the `rnnkit generate` table")  # fmt: skip
    parser.add_argument("--write", type=Path, help="replace the generation tables in this file")
    args = parser.parse_args(argv)
    threads = sorted({int(t) for t in args.threads.split(",")})
    lines = [
        f"Measured on {describe_machine()} (the step table sets its own thread counts); "
        f"float32, "
        f"median of {args.repeats} interleaved rounds of {args.steps} steps after one warm-up; "
        f"the compiled step: {compiled.status()}.",
        "",
        command_line("generation.py", argv),
        "",
        f"One step at B = 1, I = {INPUT}, H = {HIDDEN}, one layer, state carried:",
        "",
        *step_table(threads, args.steps, args.repeats),
    ]
    if not args.no_generate:
        lines += [
            "",
            f"`rnnkit generate` on the main job's model (2 × 256 LSTM, characters), "
            f"torch's default {torch.get_num_threads()} threads:",
            "",
        ]
        table = generate_table(args.length, max(1, args.repeats // 2))
        for row in table:
            print(row, flush=True)
        lines += table
    publish(args.write, "generation", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
