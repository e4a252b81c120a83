"""``rnnkit generate``: streamed output, Ctrl-C, a closed pipe, impossible requests, ``--out``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.data.corpus import detokenize, never_targets, prompt_ids
from rnnkit.data.formats.midi import write_atomically
from rnnkit.decoding import sample
from rnnkit.models.language_model import LanguageModel
from rnnkit.tasks import language_model as lm
from tests.models.fixtures import lines


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny character LM, trained as tests/cli/test_language_model_task.py does."""
    root = tmp_path_factory.mktemp("generate")
    text = root / "song.txt"
    text.write_text("\n".join(lines("models_tempest_song.txt") * 12) + "\n")
    out = root / "run"
    assert main([
        "train", "lm", "--data", str(text), "--out", str(out), "--batch-size", "2",
        "--steps", "12", "--embed", "8", "--hidden", "24", "--layers", "1",
        "--progress", "off", "--lr", "0.01", "--max-steps", "6", "--no-report",
    ]) == 0  # fmt: skip
    return out


def rnnkit(*argv: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "rnnkit", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_interruptible)  # fmt: skip


def _interruptible() -> None:
    """In the child: Ctrl-C's default action, as for a command typed at a terminal.

    A suite started in the background (``make test &``) inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler: Ctrl-C could not be tested.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Recorder:
    """A stdout that notes how many decoding steps had run at each write."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = steps
        self.writes: list[tuple[str, int]] = []

    def write(self, text: str) -> int:
        self.writes.append((text, self.steps[0]))
        return len(text)

    def flush(self) -> None:
        pass


def test_the_first_piece_is_written_before_generation_ends(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [0]
    decode_step = LanguageModel.decode_step

    def counted(self: LanguageModel, tokens: torch.Tensor, state: object) -> object:
        steps[0] += 1
        return decode_step(self, tokens, state)

    monkeypatch.setattr(LanguageModel, "decode_step", counted)
    recorder = Recorder(steps)
    monkeypatch.setattr(sys, "stdout", recorder)
    assert main(["generate", str(run), "--length", "50", "--start", "Full"]) == 0
    assert steps[0] == 50
    # The prompt and the first character go out after one step, one piece a step after.
    assert recorder.writes[0][0].startswith("Full") and recorder.writes[0][1] == 1
    assert [at for _, at in recorder.writes[:50]] == list(range(1, 51))
    assert recorder.writes[-1] == ("\n", 50)


def old_generate(run: Path, start: str, length: int, seed: int, num_samples: int) -> list[str]:
    """The batched, non-streamed generation ``generate`` did before it streamed."""
    loaded = lm.TASK.load(run)
    model, vocab, level = loaded.model, loaded.assets.vocab, loaded.run.task.level
    prompt = torch.tensor([prompt_ids(start, vocab, level)] * num_samples)
    last, state = model.prime(prompt)
    tokens = sample(model, last, state, max_length=length, temperature=0.8, top_k=5,
                    generator=torch.Generator().manual_seed(seed),
                    banned=never_targets(vocab, level, cut=False)).tokens  # fmt: skip
    return [start + detokenize(vocab.decode(row), level) for row in tokens.tolist()]


def test_the_streamed_sample_has_the_tokens_of_the_batched_one(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for seed in (3, 4):
        argv = ["generate", str(run), "--start", "Full", "--length", "80", "--seed", str(seed),
                "--temperature", "0.8", "--top-k", "5"]  # fmt: skip
        assert main(argv) == 0
        (expected,) = old_generate(run, "Full", 80, seed, 1)
        assert capsys.readouterr().out == expected + "\n"
    # Several samples come one after another from one generator: the first is the
    # sample alone, and each is printed whole under its header.
    assert main([*argv, "--num-samples", "3"]) == 0
    printed = capsys.readouterr().out
    parts = printed.split("--- sample ")
    assert parts[0] == "" and [p[:4] for p in parts[1:]] == ["1 --", "2 --", "3 --"]
    assert parts[1] == f"1 ---\n{expected}\n"
    assert len({p.split("\n", 1)[1] for p in parts[1:]}) == 3
    options = lm.GenerateOptions(start="Full", length=80, seed=4, temperature=0.8, top_k=5,
                                 num_samples=3)  # fmt: skip
    samples = ["".join(pieces) for pieces in lm.TASK.stream(lm.TASK.load(run), options)]
    assert samples == [p.split("\n", 1)[1][:-1] for p in parts[1:]]


def test_ctrl_c_stops_a_long_generation_with_status_130(run: Path) -> None:
    with rnnkit("generate", str(run), "--length", "1000000000") as process:
        assert process.stdout is not None and process.stderr is not None
        # Output arrives while it runs: streamed, not held back until the end.
        assert len(process.stdout.read(64)) == 64
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        err = process.stderr.read().decode()
    assert "Traceback" not in err and err.strip() == "rnnkit generate: interrupted"


@pytest.mark.parametrize(
    "argv",
    [("generate", "RUN", "--length", "100000"), ("explain", "--cell", "gru", "--format", "json")],
    ids=["generate", "explain"],
)
def test_a_closed_pipe_is_a_quiet_exit(run: Path, argv: tuple[str, ...]) -> None:
    for read in (100, 0):  # the reader goes after 100 bytes, or before the first
        with rnnkit(*[str(run) if a == "RUN" else a for a in argv]) as process:
            assert process.stdout is not None and process.stderr is not None
            if read:
                assert len(process.stdout.read(read)) == read, process.stderr.read().decode()
            process.stdout.close()
            assert process.wait(timeout=60) == 0
            assert process.stderr.read().decode() == ""


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (("--num-samples", "10000000", "--length", "5"), "--num-samples: expected an integer in 1"),
        (("--length", "10000000000000"), "--length: expected an integer in 1"),
        (("--length", "99999999999999999999999999"), "--length"),
        (("--beam", "100000", "--length", "100000000000"), "--length: beam search of width"),
        (("--temperature", "1e400"), "--temperature: expected a finite number > 0, got inf"),
        (("--top-p", "nan"), "--top-p"),
    ],
)
def test_an_impossible_request_is_refused_at_once(
    run: Path, flags: tuple[str, ...], expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.perf_counter()
    assert main(["generate", str(run), *flags]) == 2
    assert time.perf_counter() - began < 5
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and expect in captured.err


def test_a_vanishing_temperature_is_greedy(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for seed in ("1", "2"):
        argv = ["generate", str(run), "--length", "40", "--temperature", "1e-300", "--seed", seed]
        assert main(argv) == 0
        outputs.append(capsys.readouterr().out)
    loaded = lm.TASK.load(run)
    model, vocab = loaded.model, loaded.assets.vocab
    from rnnkit.decoding import greedy

    last, state = model.prime(torch.tensor([prompt_ids("\n", vocab, "char")]))
    best = greedy(model, last, state, max_length=40, banned=never_targets(vocab, "char", False))
    assert outputs == ["\n" + "".join(vocab.decode(best.tokens[0])) + "\n"] * 2


def test_out_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "x.mid"
    write_atomically(path, lambda partial: partial.write_bytes(b"MThd"))
    assert path.read_bytes() == b"MThd"  # the missing folders were created

    def interrupted(partial: Path) -> None:
        partial.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, interrupted)
    assert path.read_bytes() == b"MThd" and os.listdir(path.parent) == ["x.mid"]
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"^--out: cannot create the folder .*file"):
        write_atomically(tmp_path / "file" / "x.mid", lambda partial: None)
