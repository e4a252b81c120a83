"""The CLI through ``main(argv)``: help everywhere, exit codes, and the selfcheck job."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import pytest

from rnnkit.bptt import compiled
from rnnkit.cli.main import build_parser, main


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


def test_every_command_and_option_has_help_text() -> None:
    parser = build_parser()
    commands = subcommand_parsers()
    assert commands, "no subcommands registered"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{choice.dest} has no one-line help in `rnnkit --help`"
    for name, sub in commands.items():
        assert sub.description, f"{name} has no description"
        assert "example:" in sub.description, f"{name} has no example"
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help text"


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert "selfcheck" in capsys.readouterr().out


def test_unknown_flag_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["selfcheck", "--repeats", "0"])
    assert stop.value.code == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err


def test_selfcheck_reports_agreement_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["selfcheck", "--no-timing", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["agree"] is True
    rows = report["agreement"]
    backends = ["unrolled", "native", "fused"]
    if compiled.load() is not None:
        backends.append("fused-py")  # the fused Functions' Python loops, checked too
        assert report["fused_loops"] == "compiled loops (torch.ops.rnnkit_loops)"
    minimal = ("mingru", "mingru_log", "minlstm", "minlstm_log")  # against the unrolled loop
    assert {(r["cell"], r["backend"]) for r in rows} == {
        (c, b) for c in ("rnn", "rnn_relu", "lstm", "gru") for b in backends
    } | {(c, b) for c in minimal for b in ("scan", "scan-py")}
    assert all(r["outputs"] <= 1e-10 and r["gradients"] <= 1e-10 for r in rows)


def test_selfcheck_table_with_timing(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["selfcheck", "--batch", "2", "--steps", "3", "--hidden", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert "all cells and backends agree with torch.nn" in out
    for cell in ("rnn", "lstm", "gru"):
        for backend in ("torch.nn", "native", "unrolled", "fused"):
            assert any(line.split()[:2] == [cell, backend] for line in out.splitlines())


def test_selfcheck_fails_loudly_on_a_mismatch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Break the GRU's equations; the check must notice and exit 1.
    from rnnkit.cells import gru

    original = gru.GRUCell.forward

    def broken(self, x_t, state):  # type: ignore[no-untyped-def]
        output, new_state = original(self, x_t, state)
        return output * 1.001, type(new_state)(new_state.h * 1.001)

    monkeypatch.setattr(gru.GRUCell, "forward", broken)
    status = main(["selfcheck", "--no-timing"])
    out = capsys.readouterr().out
    assert status == 1
    assert "MISMATCH" in out
    verdicts = {tuple(line.split()[:2]): line.split()[-1] for line in out.splitlines() if line}
    assert verdicts[("gru", "unrolled")] == "MISMATCH"
    assert verdicts[("lstm", "unrolled")] == "ok"


def test_selfcheck_treats_nan_as_a_mismatch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnnkit.cells import gru

    original = gru.GRUCell.forward

    def poisoned(self, x_t, state):  # type: ignore[no-untyped-def]
        output, new_state = original(self, x_t, state)
        return output * float("nan"), new_state

    monkeypatch.setattr(gru.GRUCell, "forward", poisoned)
    assert main(["selfcheck", "--no-timing", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    row = next(r for r in report["agreement"] if (r["cell"], r["backend"]) == ("gru", "unrolled"))
    assert row["outputs"] == float("inf")


def test_library_value_errors_become_one_line_exit_two(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rnnkit.selfcheck

    def bad(config: object) -> None:
        raise ValueError("hidden_size: expected a positive int, got 0")

    monkeypatch.setattr(rnnkit.selfcheck, "check_agreement", bad)
    status = main(["selfcheck", "--no-timing"])
    err = capsys.readouterr().err
    assert status == 2
    assert err == "rnnkit selfcheck: error: hidden_size: expected a positive int, got 0\n"


def test_an_interrupted_run_does_not_wait_for_a_reader_that_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C while the reader of stdout's pipe has stopped reading (the pipe is full):
    # the exit's flush must not block forever on it.
    import io
    import os
    import threading

    from rnnkit.cli import main as cli_main

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 65536)  # fill the pipe to capacity
    os.set_blocking(write_end, True)
    stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(write_end, "w")), write_through=False)
    stdout.write("pending text that the full pipe cannot take\n")
    monkeypatch.setattr(sys, "stdout", stdout)
    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (cli_main._flush_without_waiting(), done.set()), daemon=True
    )
    worker.start()
    worker.join(timeout=10)
    try:
        assert done.is_set(), "the flush after an interrupt waited for a full pipe"
        stdout.flush()  # what exit does: stdout now points at devnull
    finally:
        monkeypatch.undo()
        os.close(read_end)  # a blocked writer now fails (EPIPE) instead of waiting
        with contextlib.suppress(OSError):
            stdout.close()


def error_paths(root: Path) -> list[list[str]]:
    """Bad input the CLI refuses before any training: argv lists (folders under root)."""
    empty, missing, a_file = root / "empty", root / "missing", root / "a-file"
    empty.mkdir()
    a_file.write_text("not a folder\n")
    return [
        [], ["nosuch"], ["train"], ["train", "nosuch"], ["train", "classify", "--lr", "x"],
        ["train", "classify", "--config", str(root / "missing.toml")],
        ["train", "classify", "--out", str(a_file)],
        ["predict", str(missing), "a text"], ["predict", str(empty), "a text"],
        ["predict", str(empty), "a text", "--file", str(a_file)],
        ["predict", str(empty), "a text", " "], ["predict", str(empty), "--beam", "0"],
        ["evaluate", str(empty)], ["evaluate", str(a_file)], ["evaluate", str(empty), "--split", "x"],
        ["generate", str(empty)], ["report", str(missing)], ["gradflow", str(empty)],
        ["gradflow", str(empty), "--T", "10"], ["gradflow", "--cells", "rnn,transformer"],
        ["gradflow", "--T", "1"], ["gradflow", "--hidden", "0"],
        ["gradflow", "--cells", "rnn", "--T", "5", "--out", str(a_file)],
        ["explain", "--format", "bad"], ["bench", "nosuch"], ["datasets", "info", "nosuch"],
        ["selfcheck", "--repeats", "0"], ["backends", "--nosuch"],
    ]  # fmt: skip


def test_every_cheap_error_says_error_once_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in error_paths(tmp_path):
        try:
            status = main(argv)
        except SystemExit as stop:  # argparse's refusal of a flag
            status = stop.code  # type: ignore[assignment]
        err = capsys.readouterr().err
        assert status == 2, (argv, err)
        assert err.count("error:") == 1 and err.count("\n") == 1, (argv, err)
        assert err.startswith("rnnkit") and ": error: " in err, (argv, err)
        command = argv[0] if argv else "rnnkit"
        assert f"{command}: {command}:" not in err and f"error: {command}:" not in err, err


@pytest.mark.parametrize(
    "message",
    ["selfcheck: hidden_size: expected a positive int, got 0",
     "selfcheck: error: selfcheck: hidden_size: expected a positive int, got 0",
     "rnnkit selfcheck: error: hidden_size: expected a positive int, got 0",
     "error: hidden_size: expected a positive int, got 0"],
)  # fmt: skip
def test_a_message_that_names_the_command_is_not_prefixed_twice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], message: str
) -> None:
    import rnnkit.selfcheck

    def bad(config: object) -> None:
        raise ValueError(message)

    monkeypatch.setattr(rnnkit.selfcheck, "check_agreement", bad)
    assert main(["selfcheck", "--no-timing"]) == 2
    assert capsys.readouterr().err == (
        "rnnkit selfcheck: error: hidden_size: expected a positive int, got 0\n"
    )


def test_a_split_named_like_the_command_keeps_its_name() -> None:
    from rnnkit.cli.main import error_line

    assert error_line("train", "train: no texts") == "rnnkit train: error: train: no texts"
    assert error_line("train", "rnnkit train: error: --lr: x") == "rnnkit train: error: --lr: x"
    assert error_line("generate", "generate: a classify run") == (
        "rnnkit generate: error: a classify run"
    )
