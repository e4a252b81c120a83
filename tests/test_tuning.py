"""The measured backend choice: decisions under a fake clock, the disk table, switches.

Every decision here is driven by a fake clock and fake runs (each call advances the
clock by a scripted time), so the outcomes are exact; one small real run checks the
wiring into ``Recurrent`` against torch.nn. No test asserts a real timing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from rnnkit import Recurrent, tuning
from rnnkit.tuning import Samples, Tuner, TuningConfig, TuningKey
from tests.helpers import TOLERANCES, ConcatCell

KEY = TuningKey(cell="lstm", layers=2, directions=1, input_size=64, hidden_size=256,
                dtype="float32", device="cpu", threads=2, training=True, batch=32,
                steps=64, ragged=False, loops="compiled")  # fmt: skip


class FakeClock:
    """Seconds that move only when a fake run says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeRuns:
    """Runs that take scripted times on a :class:`FakeClock` and log their calls."""

    def __init__(self, clock: FakeClock, times: dict[str, list[float] | float]) -> None:
        self.clock = clock
        self.times = times
        self.calls: list[str] = []
        self.entered = 0

    def _run(self, name: str) -> Callable[[], None]:
        def call() -> None:
            script = self.times[name]
            if isinstance(script, list):
                seconds = script[min(len(self.calls_of(name)), len(script) - 1)]
            else:
                seconds = script
            self.calls.append(name)
            self.clock.now += seconds

        return call

    def calls_of(self, name: str) -> list[str]:
        return [c for c in self.calls if c == name]

    @contextlib.contextmanager
    def __call__(self) -> Iterator[dict[str, Callable[[], object]]]:
        self.entered += 1
        yield {name: self._run(name) for name in self.times}


def fake_tuner(directory: Path, **options: float) -> tuple[Tuner, FakeClock]:
    clock = FakeClock()
    return Tuner(directory, TuningConfig(**options), clock=clock), clock  # type: ignore[arg-type]


@pytest.fixture
def tuned(tmp_path: Path) -> Iterator[Tuner]:
    """Tuning on, with the process's tuner writing into tmp_path (restored after).

    Real timings on a shared machine may be disturbed; an infinite spread keeps
    every measurement in the table (the outcome is tested under a fake clock).
    """
    tuner = Tuner(tmp_path, TuningConfig(spread=float("inf")))
    previous = tuning.set_default_tuner(tuner)
    try:
        with tuning.enabled(True):
            yield tuner
    finally:
        tuning.set_default_tuner(previous)


# ----------------------------------------------------------------- decide and measure


def test_decide_keeps_the_static_choice_within_the_margin() -> None:
    assert tuning.MARGIN == 0.05
    assert tuning.decide("fused", {"fused": 1.0, "native": 0.96}) == "fused"
    assert tuning.decide("fused", {"fused": 1.0, "native": 0.95}) == "fused"  # not *more*
    assert tuning.decide("fused", {"fused": 1.0, "native": 0.94}) == "native"
    assert tuning.decide("native", {"fused": 0.5, "native": 1.0}) == "fused"
    assert tuning.decide("native", {"fused": 1.0, "native": 1.0}) == "native"
    assert tuning.decide("unrolled", {"fused": 2.0, "native": 1.0}) == "native"  # not timed
    with pytest.raises(ValueError, match="no candidate"):
        tuning.decide("fused", {})


def test_measure_interleaves_in_alternating_order_and_takes_the_median() -> None:
    clock = FakeClock()
    runs = FakeRuns(clock, {"fused": [9.0, 1.0, 5.0, 2.0], "native": [9.0, 1.5, 3.0, 4.0]})
    with runs() as built:
        seconds = measured(built, clock=clock, warmup=1, repeats=3, max_repeats=3, budget_s=1e9)
    # one warm-up each, then rounds A B, B A, A B
    assert runs.calls == ["fused", "native", "fused", "native", "native", "fused",
                          "fused", "native"]  # fmt: skip
    assert seconds == {"fused": 2.0, "native": 3.0}  # medians of (1, 5, 2) and (1.5, 3, 4)


def test_measure_stops_timing_a_candidate_twice_slower_after_its_first_timing() -> None:
    clock = FakeClock()
    runs = FakeRuns(clock, {"fused": 1.0, "native": 2.5})
    with runs() as built:
        seconds = measured(built, clock=clock, warmup=1, repeats=3, max_repeats=3, budget_s=1e9)
    assert runs.calls_of("native") == ["native"] * 2  # warm-up + one timed call
    assert seconds == {"fused": 1.0, "native": 2.5}
    runs = FakeRuns(clock, {"fused": 1.0, "native": 1.9})  # under 2x: timed throughout
    with runs() as built:
        tuning.measure(
            built, TuningConfig(warmup=1, repeats=3, max_repeats=3, budget_s=1e9), clock=clock
        )
    assert runs.calls_of("native") == ["native"] * 4
    # One slow call alone (here the first timed one) does not drop a candidate.
    runs = FakeRuns(clock, {"fused": 1.0, "native": [1.1, 5.0, 1.1, 1.1]})
    with runs() as built:
        seconds = measured(built, clock=clock, warmup=1, repeats=3, max_repeats=3, budget_s=1e9)
    assert runs.calls_of("native") == ["native"] * 4
    assert seconds == pytest.approx({"fused": 1.0, "native": 1.1})
    # The static choice is never dropped: a challenger must beat it in every round.
    runs = FakeRuns(clock, {"fused": 1.0, "native": [2.5, 2.5, 0.5, 0.5]})
    with runs() as built:
        seconds = measured(built, clock=clock, repeats=3, max_repeats=3, budget_s=1e9,
                                 keep="native")  # fmt: skip
    assert runs.calls_of("native") == ["native"] * 4
    assert seconds == pytest.approx({"fused": 1.0, "native": 0.5})


def test_measure_stops_when_its_budget_is_spent() -> None:
    clock = FakeClock()
    runs = FakeRuns(clock, {"fused": 1.0, "native": 1.2})
    with runs() as built:
        tuning.measure(built, TuningConfig(warmup=1, repeats=3, budget_s=2.0), clock=clock)
    assert runs.calls == ["fused", "native", "fused", "native"]  # the first round spent 2.2 s
    with pytest.raises(ValueError, match="repeats"):
        TuningConfig(repeats=0)


def test_measure_takes_more_samples_of_tiny_calls() -> None:
    clock = FakeClock()
    runs = FakeRuns(clock, {"fused": 0.001, "native": 0.002})
    with runs() as built:
        tuning.measure(built, TuningConfig(repeats=3, max_repeats=15, min_time_s=0.05), clock=clock)
    assert runs.calls_of("fused") == ["fused"] * 16  # 15 rounds took 45 ms < 50 ms
    runs = FakeRuns(clock, {"fused": 0.01, "native": 0.01})
    with runs() as built:
        tuning.measure(built, TuningConfig(repeats=3, max_repeats=15, min_time_s=0.05), clock=clock)
    assert runs.calls_of("fused") == ["fused"] * 4  # three rounds took 60 ms


def test_measure_takes_more_samples_while_the_machine_is_busy() -> None:
    clock = FakeClock()
    # Rounds 2 and 3 are slowed down (another job): the medians after three rounds
    # are 1.4 × the fastest calls, so another round is taken.
    runs = FakeRuns(clock, {"fused": [1.0, 1.0, 1.4, 1.4, 1.0, 1.0],
                            "native": [1.2, 1.2, 1.68, 1.68, 1.2, 1.2]})  # fmt: skip
    with runs() as built:
        samples = tuning.measure(
            built, TuningConfig(repeats=3, max_repeats=9, budget_s=1e9), clock=clock
        )
    assert samples["fused"].timed == pytest.approx((1.0, 1.4, 1.4, 1.0))  # one more round
    assert samples["native"].timed == pytest.approx((1.2, 1.68, 1.68, 1.2))
    assert samples["fused"].warmup == (1.0,)
    assert not tuning.busy(samples)  # medians 1.2 × the fastest
    # One slow call among three leaves the median alone: not busy, no more rounds.
    assert not tuning.busy({"fused": Samples((1.0,), (1.0, 5.0, 1.0))})
    assert tuning.busy({"fused": Samples((1.0,), (1.0, 5.0, 5.0))})
    assert not tuning.busy({"fused": Samples((), (9.0,))})  # nothing to compare with
    assert not tuning.busy({"fused": Samples((12.0,), (9.0,))})  # warm-up is set-up
    assert tuning.busy({"fused": Samples((1.0,), (9.0,))})  # one call, 9 × its warm-up
    runs = FakeRuns(clock, {"fused": [1.0, 1.0, 1.5], "native": 1.2})
    with runs() as built:
        tuning.measure(built, TuningConfig(repeats=3, max_repeats=15, budget_s=4.0), clock=clock)
    assert runs.calls_of("fused") == ["fused"] * 3  # the budget still caps it


def test_a_busy_machine_keeps_the_static_choice_in_memory_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tuner, clock = fake_tuner(tmp_path, max_repeats=4, budget_s=1e9)
    runs = FakeRuns(clock, {"fused": [1.0, 1.0, 3.0, 3.0, 3.0], "native": [2.0, 2.0, 6.0]})
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        assert tuner.choose(KEY, "native", ("fused", "native"), runs) == "native"
        assert tuner.choose(KEY, "native", ("fused", "native"), runs) == "native"
    assert runs.entered == 1 and not tuner.path.exists()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("rnnkit: backend native for lstm L2")
    assert "(the machine was too busy to tell, not cached: fused 3e+03 ms, native 6e+03 ms" in line


def measured(
    runs: dict[str, Callable[[], object]],
    clock: Callable[[], float],
    keep: str | None = None,
    **options: Any,
) -> dict[str, float]:
    return tuning.medians(tuning.measure(runs, TuningConfig(**options), clock=clock, keep=keep))


def test_bucket_rounds_up_to_powers_of_two() -> None:
    assert [tuning.bucket(n) for n in (1, 2, 3, 4, 5, 64, 65, 1000)] == [
        1, 2, 4, 4, 8, 64, 128, 1024,
    ]  # fmt: skip


# ----------------------------------------------------------------------- the tuner


def test_a_key_is_measured_once_and_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tuner, clock = fake_tuner(tmp_path)
    runs = FakeRuns(clock, {"fused": 2.0, "native": 1.0})
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        for _ in range(3):
            assert tuner.choose(KEY, "fused", ("fused", "native"), runs) == "native"
        other = replace(KEY, training=False)
        assert tuner.choose(other, "fused", ("fused", "native"), runs) == "native"
    assert runs.entered == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "rnnkit"]
    assert len(lines) == 2
    assert lines[0] == (
        "rnnkit: backend native for lstm L2 D1 I64 H256 float32 cpu t2 train B32 T64 full "
        "compiled (measured: fused 2e+03 ms, native 1e+03 ms; static rule: fused)"
    )
    assert " no-grad " in lines[1]


def test_a_decision_never_flips_within_a_process(tmp_path: Path) -> None:
    tuner, clock = fake_tuner(tmp_path)
    slow_native = FakeRuns(clock, {"fused": 1.0, "native": 1.5})
    assert tuner.choose(KEY, "native", ("fused", "native"), slow_native) == "fused"
    # The machine changes its mind (noise, another job) and the table on disk too:
    fast_native = FakeRuns(clock, {"fused": 1.0, "native": 0.1})
    entries = tuning.read_table(tuner.path)
    entries[KEY.text()]["backend"] = "native"
    tuning.write_table(tuner.path, entries)
    for _ in range(5):
        assert tuner.choose(KEY, "native", ("fused", "native"), fast_native) == "fused"
    assert fast_native.entered == 0


def test_a_single_candidate_is_neither_timed_nor_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tuner, clock = fake_tuner(tmp_path)
    runs = FakeRuns(clock, {"native": 1.0})
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        assert tuner.choose(KEY, "native", ("native",), runs) == "native"
    assert runs.entered == 0 and not caplog.records
    assert not tuner.path.exists()


def test_cache_round_trip_between_processes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, clock = fake_tuner(tmp_path)
    first.choose(KEY, "fused", ("fused", "native"), FakeRuns(clock, {"fused": 3.0, "native": 1.0}))
    data = json.loads(first.path.read_text())
    assert {k: data[k] for k in ("schema", "torch", "machine", "code")} == tuning.identity()
    entry = data["entries"][KEY.text()]
    assert entry["backend"] == "native" and entry["static"] == "fused"
    assert entry["seconds"] == {"fused": 3.0, "native": 1.0}
    assert tuning.key_of(entry) == KEY

    second, clock = fake_tuner(tmp_path)  # a new process: empty memory, same machine
    runs = FakeRuns(clock, {"fused": 0.1, "native": 1.0})
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        assert second.choose(KEY, "fused", ("fused", "native"), runs) == "native"
    assert runs.entered == 0
    assert "(cached: fused 3e+03 ms, native 1e+03 ms; static rule: fused)" in caplog.text
    # A cached backend that cannot run this stack is not trusted: measured again.
    third, clock = fake_tuner(tmp_path)
    runs = FakeRuns(clock, {"fused": 1.0})
    assert third.choose(KEY, "fused", ("fused",), runs) == "fused"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b'{"schema": 1, "entries": {"a": ',
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        b"null",
        b"[" * 100_000,
        b" " * (tuning.MAX_FILE_BYTES + 1),
    ],
    ids=["empty", "brace", "truncated", "bytes", "list", "null", "deep", "huge"],
)
def test_a_corrupt_table_is_remeasured_and_rewritten(tmp_path: Path, content: bytes) -> None:
    tuner, clock = fake_tuner(tmp_path)
    tuner.path.parent.mkdir(parents=True, exist_ok=True)
    tuner.path.write_bytes(content)
    runs = FakeRuns(clock, {"fused": 1.0, "native": 2.0})
    assert tuner.choose(KEY, "native", ("fused", "native"), runs) == "fused"
    assert runs.entered == 1
    assert tuning.read_table(tuner.path)[KEY.text()]["backend"] == "fused"


def _entry(**changes: object) -> dict[str, object]:
    return {"backend": "native", "static": "fused", "seconds": {"fused": 2.0, "native": 1.0},
            "key": KEY.__dict__.copy(), **changes}  # fmt: skip


def _table(**changes: object) -> dict[str, object]:
    return {**tuning.identity(), "entries": {KEY.text(): _entry()}, **changes}


FOREIGN = {
    "schema": _table(schema=tuning.SCHEMA + 1),
    "torch": _table(torch="0.0.1"),
    "machine": _table(machine="some other machine"),
    "code": _table(code="0123456789abcdef"),
    "entries": _table(entries=[]),
    "backend": _table(entries={KEY.text(): _entry(backend="cudnn-magic")}),
    "seconds": _table(entries={KEY.text(): _entry(seconds={"native": "fast"})}),
    "key": _table(entries={KEY.text(): _entry(key={"cell": "lstm"})}),
    "key-type": _table(entries={KEY.text(): _entry(key={**KEY.__dict__, "layers": "2"})}),
}


@pytest.mark.parametrize("table", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_foreign_table_or_entry_is_ignored(tmp_path: Path, table: dict[str, object]) -> None:
    tuner, clock = fake_tuner(tmp_path)
    tuner.path.parent.mkdir(parents=True, exist_ok=True)
    tuner.path.write_text(json.dumps(table))
    runs = FakeRuns(clock, {"fused": 1.0, "native": 2.0})
    assert tuner.choose(KEY, "fused", ("fused", "native"), runs) == "fused"
    assert runs.entered == 1
    # The same table, ours in every field, is used as it is.
    tuner, clock = fake_tuner(tmp_path)
    tuner.path.write_text(json.dumps(_table()))
    runs = FakeRuns(clock, {"fused": 1.0, "native": 2.0})
    assert tuner.choose(KEY, "fused", ("fused", "native"), runs) == "native"
    assert runs.entered == 0


def test_an_unwritable_folder_keeps_choices_in_memory_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    tuner, clock = fake_tuner(blocked / "cache")
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        for training in (True, False):
            key = replace(KEY, training=training)
            runs = FakeRuns(clock, {"fused": 1.0, "native": 2.0})
            assert tuner.choose(key, "native", ("fused", "native"), runs) == "fused"
            assert tuner.choose(key, "native", ("fused", "native"), runs) == "fused"
            assert runs.entered == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "in memory only" in warnings[0].getMessage()


def test_a_failing_measurement_falls_back_to_the_static_choice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tuner, _ = fake_tuner(tmp_path)

    @contextlib.contextmanager
    def runs() -> Iterator[dict[str, Callable[[], object]]]:
        def out_of_memory() -> None:
            raise RuntimeError("DefaultCPUAllocator: not enough memory\nmore detail")

        yield {"fused": out_of_memory, "native": lambda: None}

    with caplog.at_level(logging.INFO, logger="rnnkit"):
        assert tuner.choose(KEY, "native", ("fused", "native"), runs) == "native"
        assert tuner.choose(KEY, "native", ("fused", "native"), runs) == "native"
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"rnnkit: measuring the backends for {KEY.text()} failed (RuntimeError: "
        "DefaultCPUAllocator: not enough memory); using native"
    )
    assert tuner.table() == {}  # nothing measured, nothing stored


def _write_keys(directory: str, first: int, count: int, start: Any) -> None:
    """One racing process: ``count`` keys of its own, each measured and written."""
    clock = FakeClock()
    tuner = Tuner(Path(directory), clock=clock)
    start.wait()  # both processes begin together, after their imports
    for hidden in range(first, first + count):
        runs = FakeRuns(clock, {"fused": 1.0, "native": 2.0})
        tuner.choose(replace(KEY, hidden_size=hidden), "native", ("fused", "native"), runs)


def test_racing_writers_lose_nothing_and_leave_a_valid_table(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch
    start = context.Barrier(2)
    workers = [context.Process(target=_write_keys, args=(str(tmp_path), first, 25, start))
               for first in (1000, 2000)]  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    entries = tuning.read_table(tuning.cache_path(tmp_path))
    hidden = sorted(entry["key"]["hidden_size"] for entry in entries.values())
    assert hidden == list(range(1000, 1025)) + list(range(2000, 2025))
    assert not list(tmp_path.glob("*.tmp"))  # every temporary file was renamed or removed


def test_clear_removes_every_table_but_not_this_process_choices(tmp_path: Path) -> None:
    tuner, clock = fake_tuner(tmp_path)
    tuner.choose(KEY, "fused", ("fused", "native"), FakeRuns(clock, {"fused": 1, "native": 3}))
    foreign = tmp_path / "v1-0123456789abcdef.json"
    foreign.write_text("{}")
    assert sorted(tuner.clear()) == sorted([tuner.path, foreign])
    assert tuner.table() == {} and not foreign.exists()
    runs = FakeRuns(clock, {"fused": 3.0, "native": 1.0})
    assert tuner.choose(KEY, "fused", ("fused", "native"), runs) == "fused"
    assert runs.entered == 0


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNKIT_CACHE_DIR", "/somewhere/rnnkit")
    assert tuning.cache_dir() == Path("/somewhere/rnnkit/backends")
    monkeypatch.delenv("RNNKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert tuning.cache_dir() == Path("/xdg/rnnkit/backends")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tuning.cache_dir() == Path.home() / ".cache" / "rnnkit" / "backends"
    path = tuning.cache_path()
    assert path.name.startswith(f"v{tuning.SCHEMA}-") and path.suffix == ".json"


# ------------------------------------------------------------------ switches and pins


def test_tuning_is_on_by_default_outside_the_test_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RNNKIT_TUNE", raising=False)  # conftest sets 0 for the suite
    assert tuning.is_enabled()
    for off in ("0", "false", "No", "OFF"):
        monkeypatch.setenv("RNNKIT_TUNE", off)
        assert not tuning.is_enabled()
    monkeypatch.setenv("RNNKIT_TUNE", "1")
    assert tuning.is_enabled()
    with tuning.enabled(False):
        assert not tuning.is_enabled()  # the Python switch wins over the environment
        tuning.set_enabled(True)
        assert tuning.is_enabled()
    assert tuning.is_enabled()  # restored: following RNNKIT_TUNE again
    monkeypatch.setenv("RNNKIT_TUNE", "0")
    assert not tuning.is_enabled()
    with pytest.raises(ValueError, match="set_enabled"):
        tuning.set_enabled("yes")  # type: ignore[arg-type]


def test_disabled_tuning_applies_the_static_rule(tuned: Tuner) -> None:
    x = torch.randn(2, 5, 3)
    for name in ("lstm", "gru"):
        stack = Recurrent(name, 3, 4)
        with tuning.enabled(False):
            assert stack.resolve_backend(inputs=x) == stack.resolve_backend()
            stack(x)
    assert tuned.decisions == {}


def test_autocast_applies_the_static_rule(tuned: Tuner) -> None:
    # Under autocast fused runs float32 and torch.nn's LSTM kernel bfloat16: a choice
    # between them would be one of precision, so nothing is measured.
    stack = Recurrent("lstm", 3, 4)
    x = torch.randn(2, 5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert stack.resolve_backend(inputs=x) == stack.resolve_backend()
        stack(x)
    assert tuned.decisions == {}
    stack(x)
    assert len(tuned.decisions) == 1  # the same call without autocast is measured


def test_deterministic_algorithms_apply_the_static_rule(tuned: Tuner) -> None:
    # A seeded run must not depend on which backend won a timing on the day.
    stack = Recurrent("gru", 3, 4)
    x = torch.randn(2, 5, 3)
    torch.use_deterministic_algorithms(True)
    try:
        assert stack.resolve_backend(inputs=x) == stack.resolve_backend()
        stack(x)
    finally:
        torch.use_deterministic_algorithms(False)
    assert tuned.decisions == {}


def test_a_pinned_backend_is_never_measured(tuned: Tuner) -> None:
    x = torch.randn(2, 5, 3)
    for backend in ("fused", "native", "unrolled"):
        stack = Recurrent("gru", 3, 4, backend=backend)
        assert stack.resolve_backend(inputs=x) == backend
        stack(x)[0].sum().backward()
    assert tuned.decisions == {}


def test_a_custom_cell_runs_unrolled_without_measuring(tuned: Tuner) -> None:

    stack = Recurrent(ConcatCell, 3, 4)
    assert stack.resolve_backend(inputs=torch.randn(2, 5, 3)) == "unrolled"
    assert tuned.decisions == {}


def test_the_key_records_what_the_choice_depends_on(tuned: Tuner) -> None:
    stack = Recurrent("gru", 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 9, 3, dtype=torch.float64)
    stack(x)
    with torch.no_grad():
        stack(x)
    stack(x, lengths=torch.tensor([9, 2, 3, 4, 5]))
    stack.requires_grad_(False)
    stack(x)  # nothing requires grad: no backward can follow
    keys = sorted(tuned.decisions, key=lambda k: (k.training, k.ragged))
    assert [(k.training, k.ragged) for k in keys] == [(False, False), (True, False), (True, True)]
    first = keys[0]
    assert (first.cell, first.layers, first.directions, first.input_size, first.hidden_size) == (
        "gru", 2, 2, 3, 4,
    )  # fmt: skip
    assert (first.dtype, first.device, first.threads) == ("float64", "cpu", torch.get_num_threads())
    assert (first.batch, first.steps) == (8, 16)
    assert tuning.read_table(tuned.path).keys() == {k.text() for k in keys}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_a_real_measured_choice_computes_what_torch_nn_computes(
    tuned: Tuner, dtype: torch.dtype
) -> None:
    torch.manual_seed(0)
    ours = Recurrent("lstm", 3, 4, num_layers=2, bidirectional=True, dropout=0.5, dtype=dtype)
    theirs = ours.to_torch()
    ours.eval()
    theirs.eval()
    x = torch.randn(3, 6, 3, dtype=dtype)
    tol = TOLERANCES[dtype]
    rng = torch.get_rng_state()
    outputs, state = ours(x)
    assert torch.equal(torch.get_rng_state(), rng)  # the timing drew from a forked stream
    (key,) = tuned.decisions
    assert key.training and tuned.decisions[key].backend in ("fused", "native")
    assert tuned.decisions[key].seconds.keys() == {"fused", "native"}
    assert all(p.grad is None for p in ours.parameters())  # timing's backward left no .grad
    expected, (h, c) = theirs(x)
    torch.testing.assert_close(outputs, expected, rtol=tol["rtol"], atol=tol["atol"])
    torch.testing.assert_close(state.h, h, rtol=tol["rtol"], atol=tol["atol"])
    torch.testing.assert_close(state.c, c, rtol=tol["rtol"], atol=tol["atol"])
    outputs.square().sum().backward()
    expected.square().sum().backward()
    for (name, mine), theirs_parameter in zip(
        ours._torch_names(), [getattr(theirs, n) for n, _ in ours._torch_names()], strict=True
    ):
        assert mine.grad is not None, name
        torch.testing.assert_close(
            mine.grad, theirs_parameter.grad, rtol=tol["rtol"], atol=tol["atol"]
        )


def test_the_table_belongs_to_the_backends_code(tmp_path: Path) -> None:
    """A change to a backend's source (here a copy of the package's) gives another
    digest, so a table measured on the old code is not read."""
    package = Path(tuning.__file__).parent
    copy = tmp_path / "rnnkit"
    (copy / "bptt").mkdir(parents=True)
    for name in ("native.py", "projection.py", "recurrent.py", "unrolling.py"):
        (copy / name).write_bytes((package / name).read_bytes())
    for source in (package / "bptt").glob("*.cpp"):
        (copy / "bptt" / source.name).write_bytes(source.read_bytes())
    before = tuning.code_digest(copy)
    assert tuning.code_digest(copy) == before
    loops = copy / "bptt" / "loops.cpp"
    loops.write_bytes(loops.read_bytes() + b"// a faster loop\n")
    assert tuning.code_digest(copy) != before
    assert len(tuning.code()) == 16 and tuning.identity()["code"] == tuning.code()
