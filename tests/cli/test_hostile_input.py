"""Hostile input through the whole CLI: every refusal is exit 2, one line, no leftovers.

Each case feeds one hostile thing (a file, a flag, a TOML, a damaged run folder, a
generation option) to ``rnnkit.cli.main.main(argv)`` and asserts what the README
promises for bad input: exit status 2; exactly one line on stderr, ``rnnkit CMD: error:
…``, naming the file, line, flag or key; no traceback; and the folder the case works in
(``tmp_path``, the working directory) left exactly as it was: no run folder, output
file or ``.tmp`` file created, nothing rewritten. A few go through a real subprocess
(``python -m rnnkit``) for the real exit status, what reaches stderr (library warnings
included) and a timeout against hangs.

The tables live in ``hostile_cases.py``; the readers' own tests (tests/data/formats)
cover each reader's messages in depth.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from tests.cli import hostile_cases as hc

Snapshot = dict[str, tuple[object, ...]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root``: files with size and mtime, links with their target."""
    entries: Snapshot = {}
    for folder, dirs, files in os.walk(root):  # links to folders are not followed
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            key = str(path.relative_to(root))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = ("dir",)
            else:
                entries[key] = ("file", info.st_size, info.st_mtime_ns)
    return entries


def status_of(argv: Sequence[str]) -> int:
    try:
        return main(list(argv))
    except SystemExit as stop:  # argparse refuses a flag by exiting
        return stop.code if isinstance(stop.code, int) else 1


def assert_one_line(err: str, expect: str) -> None:
    lines = err.removesuffix("\n").split("\n")
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("rnnkit ") and ": error: " in lines[0], lines[0]
    assert expect in lines[0], f"{expect!r} not in {lines[0]!r}"


def assert_refused(
    argv: Sequence[str], expect: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``argv`` exits 2 with one line naming ``expect`` and leaves ``root`` untouched."""
    capsys.readouterr()
    before = snapshot(root)
    status = status_of(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert status == 2, f"exit {status}\nstdout: {captured.out[-2000:]}\nstderr: {captured.err}"
    assert_one_line(captured.err, expect)
    assert snapshot(root) == before, "the refused command changed the folder"


def good_data(task: str, root: Path) -> tuple[str, ...]:
    """Write the task's valid file into ``root``; the flags that keep it small."""
    name, content, flags = hc.GOOD[task]
    (root / name).write_text(content)
    return ("--data", name, *flags)


# --- data files: rnnkit train TASK --data FILE --dry-run ---------------------------


@pytest.mark.parametrize("case", hc.DATA_CASES, ids=[c.id for c in hc.DATA_CASES])
def test_a_hostile_data_file_is_refused_in_one_line(
    case: hc.DataCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    case.make(tmp_path / case.name)
    extra = list(case.extra)
    if extra and not extra[0].startswith("--"):  # more files: TRAIN VALID [TEST]
        files = [case.name, *extra]
        data = files + ["gone" + Path(case.name).suffix] * (3 - len(files))
        extra = []
    else:
        data = [case.name]
    flags = hc.GOOD[case.task][2]
    small = list(flags) if flags and flags[0].startswith("--") else []  # not music's files
    argv = ["train", case.task, "--data", *data, "--dry-run", *small, *extra]
    assert_refused(argv, case.expect, tmp_path, capsys)


# --- flags -------------------------------------------------------------------------


@pytest.mark.parametrize("case", hc.FLAG_CASES, ids=[c.id for c in hc.FLAG_CASES])
def test_a_hostile_flag_is_refused_before_anything_is_allocated_or_written(
    case: hc.FlagCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNKIT_DATA_DIR", str(tmp_path / "cache"))  # never the user's cache
    data = good_data(case.task, tmp_path)
    if "--data" in case.flags or "--dataset" in case.flags:
        data = ()
    # A dry run checks the configuration; training cases must refuse before OUT exists.
    run = ("--out", "run", "--max-steps", "1", "--no-report", "--progress", "off")
    argv = ["train", case.task, *data, *case.flags, *(run if case.train else ("--dry-run",))]
    assert_refused(argv, case.expect, tmp_path, capsys)


@pytest.mark.parametrize("case", hc.CONFIG_CASES, ids=[c.id for c in hc.CONFIG_CASES])
def test_a_hostile_config_file_is_refused_in_one_line(
    case: hc.ConfigCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    case.make(tmp_path / case.name)
    argv = ["train", "classify", *good_data("classify", tmp_path), "--config", case.name,
            "--dry-run"]  # fmt: skip
    assert_refused(argv, case.expect, tmp_path, capsys)


def _leftover_of_a_failed_run(path: Path) -> None:
    path.mkdir()
    (path / "config.toml").write_text('kind = "classify"\n')
    (path / "metrics.csv").write_text("step,loss\n1,0.7\n")


def _someone_elses_folder(path: Path) -> None:
    path.mkdir()
    (path / "thesis.tex").write_text("\\section{Results}\n")


OUT_CASES: list[tuple[str, hc.Make, tuple[str, ...], str]] = [
    ("existing-file", hc.text("my notes\n"), (), "--out"),
    ("failed-run-leftover", _leftover_of_a_failed_run, (), "--out"),
    ("non-run-folder-with-files", _someone_elses_folder, (), "--out"),
    ("resume-missing-folder", hc.nothing, ("--resume",), "--resume"),
    ("resume-non-run-folder", _someone_elses_folder, ("--resume",), "--resume"),
]


@pytest.mark.parametrize(("make", "flags", "expect"), [c[1:] for c in OUT_CASES],
                         ids=[c[0] for c in OUT_CASES])  # fmt: skip
def test_an_out_that_is_not_a_fresh_or_resumable_run_is_refused(
    make: hc.Make,
    flags: tuple[str, ...],
    expect: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path / "out")
    argv = ["train", "classify", *good_data("classify", tmp_path), "--out", "out", *flags,
            "--max-steps", "1", "--no-report", "--progress", "off"]  # fmt: skip
    assert_refused(argv, expect, tmp_path, capsys)


@pytest.mark.parametrize("out", ["/proc/rnnkit-hostile", "/proc/self/rnnkit-hostile"])
def test_an_out_under_proc_is_one_line(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["train", "classify", *good_data("classify", tmp_path), "--out", out,
            "--max-steps", "1", "--no-report", "--progress", "off"]  # fmt: skip
    assert_refused(argv, "/proc", tmp_path, capsys)
    assert not Path(out).exists()


# --- run folders: evaluate, predict, generate, report, gradflow, --resume -----------


def _train(task: str, root: Path) -> Path:
    """A tiny trained run: two steps, a few units."""
    out = root / f"{task}-run"
    os.chdir(root)
    sizes = {"classify": ("--embed", "4", "--hidden", "4", "--batch-size", "4"),
             "lm": ("--embed", "4", "--hidden", "4"),
             "music": ("--embed", "4", "--hidden", "4", "--batch-size", "1")}[task]  # fmt: skip
    argv = ["train", task, *good_data(task, root), *sizes, "--out", str(out), "--max-steps", "2",
            "--no-report", "--progress", "off"]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One trained run per generative and non-generative kind, shared by the module;
    every case works on its own copy."""
    root = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    try:
        yield {task: _train(task, root) for task in ("classify", "lm", "music")}
    finally:
        os.chdir(cwd)


def copy_run(runs: dict[str, Path], task: str, into: Path) -> Path:
    run = into / "run"
    shutil.copytree(runs[task], run, symlinks=True)
    # The saved config names the data by absolute path; the copy brings its own.
    name = hc.GOOD[task][0]
    shutil.copy(runs[task].parent / name, into / name)
    return run


RESUME = ("--resume", "--max-steps", "4", "--no-report", "--progress", "off")
COMMANDS: dict[str, tuple[str, Callable[[str], list[str]]]] = {
    # name → (the task of the run it needs, the command line for RUN)
    "evaluate": ("classify", lambda run: ["evaluate", run]),
    "predict": ("classify", lambda run: ["predict", run, "a witty film"]),
    "generate": ("lm", lambda run: ["generate", run, "--length", "5"]),
    "report": ("classify", lambda run: ["report", run]),
    "gradflow": ("classify", lambda run: ["gradflow", run]),
    "resume": ("classify", lambda run: ["train", "classify", "--out", run, *RESUME]),
}

FOLDERS: dict[str, tuple[hc.Make, str]] = {
    "missing": (hc.nothing, "run"),
    "empty": (hc.folder, "config.toml"),
    "file": (hc.text("not a folder\n"), "run"),
}

EVERY_COMMAND = ("invalid-config", "manifest-deeply-nested", "weights-wrong-shape",
                 "state-pickled-object")  # fmt: skip
MATRIX = {
    "predict": [d for d in hc.DAMAGES if d not in ("state-empty-dict", "last-symlinked-out")],
    # A resumed run rebuilds its vocabulary from the data: a damaged saved one is unused.
    "resume": [d for d in hc.DAMAGES if d not in ("weights-nan", "vocab-not-json",
                                                  "vocab-deeply-nested")],
    "evaluate": [*EVERY_COMMAND, "config-wrong-type", "manifest-not-json", "manifest-huge",
                 "weights-truncated", "weights-missing-key", "vocab-not-json"],
    "generate": [*EVERY_COMMAND, "weights-missing-key", "vocab-not-json", "manifest-missing"],
    # A report degrades section by section (a section says why it is missing), so a
    # damaged checkpoint is not a refusal there; an unreadable config is.
    "report": ["invalid-config"],
    "gradflow": [*EVERY_COMMAND],
}  # fmt: skip
RUN_CASES = [(command, damage) for command, damages in MATRIX.items() for damage in damages]


@pytest.mark.parametrize(("command", "folder"),
                         [(c, f) for c in COMMANDS for f in FOLDERS],
                         ids=[f"{c}-{f}-folder" for c in COMMANDS for f in FOLDERS])  # fmt: skip
def test_a_folder_that_is_not_a_run_is_refused(
    command: str,
    folder: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    make, expect = FOLDERS[folder]
    make(tmp_path / "run")
    assert_refused(COMMANDS[command][1]("run"), expect, tmp_path, capsys)


@pytest.mark.parametrize(("command", "damage"), RUN_CASES,
                         ids=[f"{c}-{d}" for c, d in RUN_CASES])  # fmt: skip
def test_a_damaged_run_folder_is_refused_in_one_line(
    command: str,
    damage: str,
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    task, argv = COMMANDS[command]
    run = copy_run(runs, task, tmp_path)
    make, expect = hc.DAMAGES[damage]
    make(run)
    assert_refused(argv("run"), expect, tmp_path, capsys)
    assert not (tmp_path / "PWNED").exists()


# --- generation and prediction options ----------------------------------------------

OPTION_CASES: list[tuple[str, str, tuple[str, ...], str]] = [
    ("temperature-0", "lm", ("--temperature", "0"), "temperature"),
    ("temperature-negative", "lm", ("--temperature", "-1"), "temperature"),
    ("temperature-nan", "lm", ("--temperature", "nan"), "temperature"),
    ("temperature-inf", "lm", ("--temperature", "inf"), "temperature"),
    ("top-k-0", "lm", ("--top-k", "0"), "--top-k"),
    ("top-k-negative", "lm", ("--top-k", "-1"), "--top-k"),
    ("top-p-0", "lm", ("--top-p", "0"), "--top-p"),
    ("top-p-1.5", "lm", ("--top-p", "1.5"), "--top-p"),
    ("top-p-nan", "lm", ("--top-p", "nan"), "--top-p"),
    ("num-samples-0", "lm", ("--num-samples", "0"), "--num-samples"),
    ("length-0", "lm", ("--length", "0"), "--length"),
    ("length-negative", "lm", ("--length", "-1"), "--length"),
    ("length-beyond-int64", "lm", ("--length", hc.HUGE_INT), "--length"),
    ("beam-0", "lm", ("--beam", "0"), "--beam"),
    ("seed-not-int", "lm", ("--seed", "x"), "--seed"),
    ("seed-beyond-int64", "lm", ("--seed", hc.HUGE_INT), "--seed"),
    ("music-start-missing", "music", ("--start", "nowhere.txt", "--out", "x.mid"), "nowhere.txt"),
    ("music-out-not-midi", "music", ("--out", "song.txt"), "--out"),
    ("music-out-is-folder", "music", ("--out", "."), "--out"),
]


@pytest.mark.parametrize(("task", "flags", "expect"), [c[1:] for c in OPTION_CASES],
                         ids=[c[0] for c in OPTION_CASES])  # fmt: skip
def test_a_hostile_generation_option_is_refused(
    task: str,
    flags: tuple[str, ...],
    expect: str,
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    copy_run(runs, task, tmp_path)
    assert_refused(["generate", "run", *flags], expect, tmp_path, capsys)


def assert_works_or_refused(
    argv: Sequence[str], expect: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> int:
    """A request that may be served or refused, but never crash: 0, or 2 in one line."""
    capsys.readouterr()
    before = snapshot(root)
    status = status_of(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert status in (0, 2), f"exit {status}\nstderr: {captured.err}"
    if status == 2:
        assert_one_line(captured.err, expect)
        assert snapshot(root) == before
    return status


def test_a_vanishing_temperature_works_or_is_refused(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    copy_run(runs, "lm", tmp_path)
    argv = ["generate", "run", "--length", "5", "--temperature", "1e-300"]
    if assert_works_or_refused(argv, "--temperature", tmp_path, capsys) == 0:
        # As good as greedy: the same text for every seed (assert_works_or_refused
        # has read the first output, so it is made again).
        assert status_of(argv) == 0
        first = capsys.readouterr().out
        assert first.strip()
        assert status_of([*argv, "--seed", "1"]) == 0
        assert capsys.readouterr().out == first


def test_music_out_into_a_missing_folder_does_what_help_says(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    copy_run(runs, "music", tmp_path)
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    creates = "creat" in " ".join(capsys.readouterr().out.split())  # "created", "creates"
    argv = ["generate", "run", "--length", "8", "--out", "missing/x.mid"]
    if creates:
        assert status_of(argv) == 0
        assert (tmp_path / "missing" / "x.mid").stat().st_size > 0
    else:
        assert_refused(argv, "missing", tmp_path, capsys)


PREDICT_CASES: list[tuple[str, tuple[str, ...], hc.Make, str]] = [
    ("empty-input", ("fine", "  "), hc.nothing, "INPUT 2 is empty"),
    ("file-missing", ("--file", "nowhere.txt"), hc.nothing, "nowhere.txt"),
    ("file-empty", ("--file", "in.txt"), hc.text(""), "in.txt"),
    ("file-blank-lines", ("--file", "in.txt"), hc.text("\n \n\n"), "--file"),
    ("file-garbage", ("--file", "in.txt"), hc.text(hc.GARBAGE), "in.txt:1:"),
    ("file-folder", ("--file", "in.txt"), hc.folder, "in.txt"),
    ("inputs-and-file", ("fine", "--file", "in.txt"), hc.text("ok\n"), "--file"),
    ("top-0", ("fine", "--top", "0"), hc.nothing, "--top"),
    ("beam-0", ("fine", "--beam", "0"), hc.nothing, "--beam"),
]


@pytest.mark.parametrize(("flags", "make", "expect"), [c[1:] for c in PREDICT_CASES],
                         ids=[c[0] for c in PREDICT_CASES])  # fmt: skip
def test_a_hostile_predict_input_is_refused(
    flags: tuple[str, ...],
    make: hc.Make,
    expect: str,
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    copy_run(runs, "classify", tmp_path)
    make(tmp_path / "in.txt")
    assert_refused(["predict", "run", *flags], expect, tmp_path, capsys)


EVALUATE_CASES: list[tuple[str, hc.Make, str]] = [
    ("missing", hc.nothing, "in.csv"),
    ("garbage", hc.text(hc.GARBAGE), "in.csv:1:"),
    ("unseen-label", hc.text("text,label\nfine film,zzz\n"), "zzz"),
    ("header-only", hc.text("text,label\n"), "in.csv"),
]


@pytest.mark.parametrize(("make", "expect"), [c[1:] for c in EVALUATE_CASES],
                         ids=[c[0] for c in EVALUATE_CASES])  # fmt: skip
def test_a_hostile_evaluate_file_is_refused(
    make: hc.Make,
    expect: str,
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    copy_run(runs, "classify", tmp_path)
    make(tmp_path / "in.csv")
    assert_refused(["evaluate", "run", "--data", "in.csv"], expect, tmp_path, capsys)


# --- diagnostics, datasets, bench ----------------------------------------------------

TOOL_CASES: list[tuple[str, tuple[str, ...], str]] = [
    ("explain-hidden-over-cap", ("explain", "--hidden", "1000"), "--hidden"),
    ("explain-steps-over-cap", ("explain", "--steps", "100000"), "--steps"),
    ("explain-input-size-0", ("explain", "--input-size", "0"), "--input-size"),
    ("explain-outputs-0", ("explain", "--outputs", "0"), "--outputs"),
    ("explain-hidden-nan", ("explain", "--hidden", "nan"), "--hidden"),
    ("explain-bad-cell", ("explain", "--cell", "transformer"), "--cell"),
    ("explain-bad-format", ("explain", "--format", "xml"), "--format"),
    ("explain-bad-loss", ("explain", "--loss", "hinge"), "--loss"),
    ("explain-ce-one-output", ("explain", "--loss", "ce", "--outputs", "1"), "--outputs"),
    ("explain-seed-beyond-int64", ("explain", "--seed", hc.HUGE_INT), "--seed"),
    ("gradflow-T-1", ("gradflow", "--T", "1"), "--T"),
    ("gradflow-T-words", ("gradflow", "--T", "a,b"), "--T"),
    ("gradflow-hidden-over-cap", ("gradflow", "--hidden", "100000"), "--hidden"),
    ("gradflow-batch-over-cap", ("gradflow", "--batch", "1000000000"), "--batch"),
    ("gradflow-bad-cell", ("gradflow", "--cells", "transformer"), "--cells"),
    ("gradflow-no-cells", ("gradflow", "--cells", ","), "--cells"),
    ("gradflow-gate-bias-nan", ("gradflow", "--gate-bias", "nan"), "--gate-bias"),
    ("gradflow-seed-beyond-int64", ("gradflow", "--seed", hc.HUGE_INT), "--seed"),
    ("datasets-info-unknown", ("datasets", "info", "nosuch"), "nosuch"),
    ("datasets-fetch-unknown", ("datasets", "fetch", "nosuch"), "nosuch"),
    ("datasets-fetch-path", ("datasets", "fetch", "../../etc/passwd"), "../../etc/passwd"),
    ("datasets-bad-action", ("datasets", "delete"), "delete"),
    ("bench-unknown", ("bench", "nosuch"), "nosuch"),
]


@pytest.mark.parametrize(("argv", "expect"), [c[1:] for c in TOOL_CASES],
                         ids=[c[0] for c in TOOL_CASES])  # fmt: skip
def test_a_hostile_tool_option_is_refused(
    argv: tuple[str, ...],
    expect: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNKIT_DATA_DIR", str(tmp_path / "cache"))  # never the user's cache
    assert_refused(argv, expect, tmp_path, capsys)


def test_gradflow_out_onto_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("mine\n")
    argv = ["gradflow", "--cells", "rnn", "--T", "4", "--hidden", "2", "--batch", "2",
            "--out", "taken"]  # fmt: skip
    assert_refused(argv, "taken", tmp_path, capsys)


def test_gradflow_of_a_run_refuses_fresh_cell_flags(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    copy_run(runs, "classify", tmp_path)
    assert_refused(["gradflow", "run", "--hidden", "8"], "--hidden", tmp_path, capsys)


# --- through a real process ---------------------------------------------------------


def rnnkit(argv: Sequence[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "rnnkit", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def assert_process_refused(
    argv: Sequence[str], expect: str, root: Path, timeout: float = 60
) -> None:
    before = snapshot(root)
    try:
        done = rnnkit(argv, root, timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rnnkit {' '.join(argv)[:80]} still running after {timeout} s")
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode == 2, f"exit {done.returncode}\nstderr: {done.stderr}"
    assert_one_line(done.stderr, expect)
    assert snapshot(root) == before


def test_a_fifo_as_data_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.csv")  # opening it for reading would block for ever
    assert_process_refused(["train", "classify", "--data", "pipe.csv", "--dry-run"],
                           "pipe.csv", tmp_path, timeout=15)  # fmt: skip


def test_a_bad_flag_is_one_line_from_a_process(tmp_path: Path) -> None:
    argv = ["train", "classify", *good_data("classify", tmp_path), "--hidden", "0", "--dry-run"]
    assert_process_refused(argv, "--hidden", tmp_path)


def test_an_unusable_device_is_one_line_from_a_process(tmp_path: Path) -> None:
    argv = ["train", "classify", *good_data("classify", tmp_path), "--device", "mps",
            "--out", "run", "--max-steps", "1", "--no-report", "--progress", "off"]  # fmt: skip
    assert_process_refused(argv, "device", tmp_path)


@pytest.mark.parametrize("damage", ["state-pickled-object", "manifest-deeply-nested"])
def test_a_damaged_run_is_exit_2_from_a_process(
    damage: str, runs: dict[str, Path], tmp_path: Path
) -> None:
    copy_run(runs, "classify", tmp_path)
    make, expect = hc.DAMAGES[damage]
    make(tmp_path / "run")
    assert_process_refused(["predict", "run", "a witty film"], expect, tmp_path)
    assert not (tmp_path / "PWNED").exists()


# Requests that would run for hours or exhaust memory when not refused up front:
# in a process, so a missing check is a timeout here rather than a stuck suite.
IMPOSSIBLE = [
    ("generate-length-beyond-int64", "lm", ("--length", hc.HUGE_INT), "--length"),
    ("generate-num-samples-1e7", "lm", ("--num-samples", "10000000", "--length", "5"),
     "--num-samples"),
    ("gradflow-T-over-cap", "", ("--T", "100000000"), "--T"),
]  # fmt: skip


@pytest.mark.parametrize(("task", "flags", "expect"), [c[1:] for c in IMPOSSIBLE],
                         ids=[c[0] for c in IMPOSSIBLE])  # fmt: skip
def test_an_impossible_request_is_refused_up_front(
    task: str, flags: tuple[str, ...], expect: str, runs: dict[str, Path], tmp_path: Path
) -> None:
    if task:
        copy_run(runs, task, tmp_path)
    argv = ["generate", "run", *flags] if task else ["gradflow", *flags]
    assert_process_refused(argv, expect, tmp_path, timeout=15)


def test_the_suite_is_as_large_as_promised() -> None:
    # Issue 14 asks for at least 150 hostile cases across every format and command.
    counted = (len(hc.DATA_CASES) + len(hc.FLAG_CASES) + len(hc.CONFIG_CASES) + len(OUT_CASES)
               + 2 + len(COMMANDS) * len(FOLDERS) + len(RUN_CASES) + len(OPTION_CASES) + 2
               + len(PREDICT_CASES) + len(EVALUATE_CASES) + len(TOOL_CASES) + 2 + 5
               + len(IMPOSSIBLE))  # fmt: skip
    assert counted >= 170
    tasks = {c.task for c in hc.DATA_CASES} | {c.task for c in hc.FLAG_CASES}
    assert tasks == set(hc.GOOD)
