"""The Trainer's own work per optimizer step, against the step (issue 15: ≤ 5 %).

``rnnkit train`` runs the three end-to-end cases of ``end_to_end.py`` in a child
process under py-spy, a sampling profiler (200 stack samples a second, without
stopping the process to take them; nothing is wrapped or timed inside the process).
Stopping it at 500 a second had py-spy take most of a core from the two the run
needs. Of the samples inside ``Trainer.fit``, not counting evaluation,
checkpoints and restoring the best weights (they are not per step), the shared part
is what any training loop does, hand-written ones included: the model's forward,
``Tensor.backward``, ``optimizer.step``, ``zero_grad``, the gradient norm and
clipping. The Trainer's own work is the rest: batching (the task's ``collate`` and
the move to the device), the undo's copy or proof and its check, the generators'
snapshot, the gradient scaling by the target count, the metrics row, the sampler.

Each case runs ``--repeats`` times for ``--steps`` steps; the table gives the median
share over the repeats and the functions that took most of the own part.

    python benchmarks/trainer_overhead.py                        # all three cases
    python benchmarks/trainer_overhead.py --cases classify --repeats 1
    python benchmarks/trainer_overhead.py --write BENCHMARKS.md  # also replace the table

Needs ``py-spy`` (in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, publish
from common import machine as describe_machine
from end_to_end import CASES, Case

# Called from Trainer._step: what a hand-written loop does too.
SHARED = {
    "Module._wrapped_call_impl",  # the forward
    "Tensor.backward",
    "Optimizer.profile_hook_step.<locals>.wrapper",  # optimizer.step
    "_disable_dynamo.<locals>.inner",  # optimizer.zero_grad
    "_no_grad.<locals>._no_grad_wrapper",  # get_total_norm, clip_grads_with_norm_
}
# Inside Trainer.fit but not per step.
NOT_STEPS = ("Trainer._evaluate", "Trainer._save", "Trainer._restore_best", "Trainer._track_best")


def spy() -> str:
    """py-spy: beside this interpreter (a virtual environment's), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        sys.exit("trainer_overhead.py: needs py-spy (pip install py-spy; in the dev extra)")
    return found


def measure(case: Case, steps: int, folder: Path) -> tuple[float, collections.Counter[str]]:
    """(the own share of the training samples, the own samples by function)."""
    argv = [*case.argv]
    if case.config is not None:
        extra = folder / f"{case.name}.toml"
        extra.write_text(case.config)
        argv += ["--config", str(extra)]
    out = folder / "run"
    shutil.rmtree(out, ignore_errors=True)
    raw = folder / "samples.txt"
    command = [
        spy(), "record", "--nonblocking", "--rate", "200", "--format", "raw", "--output", str(raw), "--",
        sys.executable, "-m", "rnnkit.cli.main", *argv, "--max-steps", str(steps),
        "--progress", "off", "--no-report", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    total = 0
    own: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        frames = [frame.split(" (")[0] for frame in stack.split(";")]
        if "Trainer.fit" not in frames or any(name in frames for name in NOT_STEPS):
            continue
        total += int(count)
        if "Trainer._step" in frames:
            below = frames[frames.index("Trainer._step") + 1 :]
            if below and below[0] in SHARED:
                continue
            where = below[0] if below else "Trainer._step"
        else:
            below = frames[frames.index("Trainer.fit") + 1 :]
            where = below[1] if len(below) > 1 else below[0] if below else "Trainer.fit"
        own[where] += int(count)
    return sum(own.values()) / max(total, 1), own


def table(rows: dict[str, tuple[str, str]]) -> str:
    lines = [
        "The Trainer's own work (`benchmarks/trainer_overhead.py`, py-spy samples of",
        "`rnnkit train`): the share of the training samples outside the forward,",
        "backward, optimizer step, `zero_grad`, gradient norm and clipping that any loop",
        "does; median over the repeats. Target (issue 15): ≤ 5 % of a step.",
        "",
        "| case | what | own share (repeats) | most of it |",
        "|---|---|---:|---|",
        *(row for row, _ in rows.values()),
        "",
        "Commands, one run per case, and the machine of each:",
        "",
        *(line for _, line in rows.values()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--steps", type=int, default=400, help="steps a run (seq2seq: a quarter)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None, help="replace the table there")
    args = parser.parse_args(argv)
    spy()
    machine = describe_machine()
    print(machine)
    rows: dict[str, tuple[str, str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases:
            case = CASES[name]
            steps = args.steps if name != "seq2seq" else max(args.steps // 4, 1)  # 10× a step
            results = [measure(case, steps, Path(folder)) for _ in range(args.repeats)]
            shares = [share for share, _ in results]
            for k, (share, own) in enumerate(results, 1):
                print(f"  {name} repeat {k}: own {share:.1%}; {dict(own.most_common(4))}")
            merged: collections.Counter[str] = sum(
                (own for _, own in results), collections.Counter()
            )
            spent = sum(merged.values()) or 1
            most = ", ".join(f"{where} {n / spent:.0%}" for where, n in merged.most_common(4))
            listed = " / ".join(f"{s:.1%}" for s in shares)
            row = f"| {name} | {case.what} | **{statistics.median(shares):.1%}** ({listed}) | {most} |"
            print(row)
            rows[name] = (
                row,
                f"- {name}: {command_line('trainer_overhead.py', argv)[9:]} on {machine}",
            )
    publish(args.write, "trainer_overhead", table(rows))


if __name__ == "__main__":
    main()
