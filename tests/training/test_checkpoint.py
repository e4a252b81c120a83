"""Checkpoints: round trips, and that no crash, corruption or pickle loses or fakes work."""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnkit.training import checkpoint
from rnnkit.training.checkpoint import (
    MANIFEST,
    Checkpoint,
    CheckpointError,
    NonFiniteError,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def bits(tensor: Tensor) -> Tensor:
    """The tensor's raw bytes, so -0.0 ≠ 0.0 and dtypes are compared exactly."""
    return tensor.reshape(-1).view(torch.uint8)


def assert_same_tensors(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    assert set(actual) == set(expected)
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert actual[name].shape == tensor.shape, name
        assert actual[name].device.type == "cpu", name
        assert torch.equal(bits(actual[name]), bits(tensor)), name


def snapshot(step: int) -> dict[str, Any]:
    """A small checkpoint whose every value says which step it belongs to."""
    return {
        "weights": {
            "rnn.weight_ih": torch.full((4, 3), float(step)),
            "rnn.weight_hh": torch.full((4, 4), float(step), dtype=torch.float64),
        },
        "state": {"step": step, "optimizer": {"state": {0: {"exp_avg": torch.full((4,), step)}}}},
        "artifacts": {"vocab.json": json.dumps({"step": step}).encode()},
    }


def save_snapshot(folder: Path, step: int, content: int | None = None) -> None:
    """Save ``snapshot(content)`` (default: ``step``) at ``step``."""
    parts = snapshot(step if content is None else content)
    save_checkpoint(
        folder, parts["weights"], parts["state"], step=step, artifacts=parts["artifacts"]
    )


def assert_is_snapshot(loaded: Checkpoint, step: int, content: int | None = None) -> None:
    parts = snapshot(step if content is None else content)
    assert loaded.step == step
    assert_same_tensors(loaded.weights, parts["weights"])
    assert loaded.state["step"] == parts["state"]["step"]
    moments = loaded.state["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(moments, parts["state"]["optimizer"]["state"][0]["exp_avg"])
    assert loaded.artifacts == parts["artifacts"]


def files_of(step: int, artifacts: tuple[str, ...] = ("vocab.json",), tag: str = "") -> list[str]:
    """The folder's listing after a committed save at ``step``."""
    prefix = f"{step:08d}{tag}"
    names = [MANIFEST, f"model-{prefix}.safetensors", f"state-{prefix}.pt"]
    return sorted(names + [f"artifact-{prefix}-{name}" for name in artifacts])


# --- round trips --------------------------------------------------------------------


def test_round_trip_keeps_step_weights_state_and_artifacts_exactly(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "lm" / "checkpoints" / "last"
    generator = torch.Generator().manual_seed(0)
    embedding = torch.randn(5, 3, generator=generator)
    fused = torch.randn(6, 4, generator=generator)
    weights = {
        "embedding.weight": embedding,
        "decoder.weight": embedding,  # tied: one storage under two names
        "f32": torch.tensor([-0.0, 1.5, -2.25]),
        "f64": torch.randn(2, 3, generator=generator, dtype=torch.float64),
        "bf16": torch.randn(3, 2, generator=generator).to(torch.bfloat16),
        "i64": torch.tensor([[-(2**62), 7], [0, 2**62]]),
        "transposed": torch.randn(3, 4, generator=generator).t(),  # not contiguous
        "gate_i": fused[:2],  # views of one fused matrix
        "gate_f": fused[2:4],
        "scalar": torch.tensor(3.0),
        "empty": torch.zeros(0, 3),
        "param": nn.Parameter(torch.randn(2, generator=generator)),
    }
    state = {
        "epoch": 3,
        "best_loss": math.inf,  # a plain float may be inf: only tensors must be finite
        "schedule": {"milestones": (10, 20), "gamma": 0.5, "name": "step", "warm": True},
        "sampler": [1, None, "x", torch.arange(4)],
    }
    artifacts = {"vocab.json": b'{"<pad>": 0}', "config.toml": b"hidden = 32\n", "empty.bin": b""}
    assert not has_checkpoint(folder)

    assert save_checkpoint(folder, weights, state, step=120, artifacts=artifacts) == folder

    assert has_checkpoint(folder)
    loaded = load_checkpoint(str(folder))
    assert loaded.step == 120
    assert_same_tensors(loaded.weights, {name: t.detach() for name, t in weights.items()})
    assert loaded.state["sampler"][:3] == [1, None, "x"]
    assert torch.equal(loaded.state["sampler"][3], torch.arange(4))
    assert {k: v for k, v in loaded.state.items() if k != "sampler"} == {
        k: v for k, v in state.items() if k != "sampler"
    }
    assert loaded.artifacts == artifacts
    assert sorted(os.listdir(folder)) == files_of(120, tuple(artifacts))


def test_manifest_records_every_file_with_its_size_and_sha256(tmp_path: Path) -> None:
    save_snapshot(tmp_path, 7)
    manifest = load_checkpoint(tmp_path).manifest
    assert json.loads((tmp_path / MANIFEST).read_text()) == manifest
    assert (manifest["format"], manifest["version"], manifest["step"]) == (
        "rnnkit-checkpoint",
        1,
        7,
    )
    entries = [manifest["weights"], manifest["state"], manifest["artifacts"]["vocab.json"]]
    assert [entry["file"] for entry in entries] == [
        "model-00000007.safetensors",
        "state-00000007.pt",
        "artifact-00000007-vocab.json",
    ]
    for entry in entries:
        data = (tmp_path / entry["file"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_adam_state_and_rng_state_load_back_into_fresh_objects(tmp_path: Path) -> None:
    torch.manual_seed(0)
    inputs = torch.randn(5, 2, 3)  # (T, B, I)

    def train_step(model: nn.LSTM, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        model(inputs)[0].pow(2).sum().backward()
        optimizer.step()

    model = nn.LSTM(3, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        train_step(model, optimizer)
    rng = torch.Generator().manual_seed(5)
    torch.rand(3, generator=rng)  # a generator part-way through its stream
    state: dict[str, Any] = {
        "optimizer": optimizer.state_dict(),
        "rng": rng.get_state(),
        "cpu_rng": torch.get_rng_state(),
    }
    save_checkpoint(tmp_path, model.state_dict(), state, step=2)

    loaded = load_checkpoint(tmp_path)
    fresh = nn.LSTM(3, 4)
    fresh.load_state_dict(loaded.weights)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.01)
    fresh_optimizer.load_state_dict(loaded.state["optimizer"])
    train_step(model, optimizer)
    train_step(fresh, fresh_optimizer)
    for original, resumed in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(original, resumed)
    assert torch.equal(loaded.state["cpu_rng"], state["cpu_rng"])
    resumed_rng = torch.Generator()
    resumed_rng.set_state(loaded.state["rng"])
    assert torch.equal(torch.rand(4, generator=resumed_rng), torch.rand(4, generator=rng))


DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.complex64,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
]


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))  # () is a 0-d tensor
    dtype = draw(st.sampled_from(DTYPES))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**32)))
    if dtype.is_floating_point:
        tensor = (torch.randn(shape, generator=generator, dtype=torch.float64) * 10).to(dtype)
    elif dtype.is_complex:
        tensor = torch.randn(shape, generator=generator, dtype=torch.complex128).to(dtype)
    elif dtype == torch.bool:
        tensor = torch.randint(0, 2, shape, generator=generator).bool()
    else:
        info = torch.iinfo(dtype)
        tensor = torch.randint(info.min, info.max, shape, generator=generator).to(dtype)
    return tensor.t() if tensor.dim() == 2 and draw(st.booleans()) else tensor


@given(st.dictionaries(st.text("ab._0", min_size=1, max_size=6), tensors(), max_size=5))
def test_any_dict_of_tensors_round_trips_bitwise(weights: dict[str, Tensor]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(folder, weights, {}, step=0)
        assert_same_tensors(load_checkpoint(folder).weights, weights)


# --- replacing a checkpoint ---------------------------------------------------------


def test_second_save_replaces_the_first_and_removes_its_files(tmp_path: Path) -> None:
    save_snapshot(tmp_path, 1)
    assert sorted(os.listdir(tmp_path)) == files_of(1)
    parts = snapshot(2)
    artifacts = {**parts["artifacts"], "config.toml": b"layers = 2\n"}
    save_checkpoint(tmp_path, parts["weights"], parts["state"], step=2, artifacts=artifacts)
    assert sorted(os.listdir(tmp_path)) == files_of(2, ("config.toml", "vocab.json"))
    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 2 and loaded.artifacts == artifacts


def test_saving_the_committed_step_again_uses_new_names(tmp_path: Path) -> None:
    # Overwriting the committed files in place would leave a window with no loadable checkpoint.
    save_snapshot(tmp_path, 4)
    save_snapshot(tmp_path, 4, content=40)
    assert sorted(os.listdir(tmp_path)) == files_of(4, tag="r1")
    assert_is_snapshot(load_checkpoint(tmp_path), 4, content=40)
    save_snapshot(tmp_path, 4, content=400)
    assert sorted(os.listdir(tmp_path)) == files_of(4)
    assert_is_snapshot(load_checkpoint(tmp_path), 4, content=400)


def test_cleanup_leaves_files_it_did_not_write_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("lr was too high")
    (tmp_path / "model-final.safetensors").write_bytes(b"exported by hand")
    save_snapshot(tmp_path, 1)
    save_snapshot(tmp_path, 2)
    assert sorted(os.listdir(tmp_path)) == sorted(
        [*files_of(2), "notes.txt", "model-final.safetensors"]
    )


# --- crashes ------------------------------------------------------------------------


class InjectedCrashError(OSError):
    """The injected failure."""


class DyingOs:
    """The checkpoint module's view of ``os``, dying at its ``fail_at``-th file operation.

    From that call on every file operation fails, as in a killed process: nothing an
    error handler tries afterwards reaches the disk, so leftovers stay as a kill leaves
    them. ``committed`` records whether ``manifest.json`` had been replaced by then.
    """

    OPERATIONS = frozenset({"open", "write", "fsync", "replace", "unlink"})

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.calls = 0
        self.dead = False
        self.committed = False

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.OPERATIONS:
            return real

        def operation(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.dead or self.calls == self.fail_at:
                self.dead = True
                raise InjectedCrashError(f"injected failure at call {self.calls}: os.{name}")
            result = real(*args, **kwargs)
            if name == "replace" and Path(args[1]).name == MANIFEST:
                self.committed = True
            return result

        return operation


def save_dying_at(
    monkeypatch: pytest.MonkeyPatch, fail_at: int, save: Callable[[], None]
) -> DyingOs | None:
    """Run ``save`` dying at ``fail_at``; None when it finished before reaching it."""
    dying = DyingOs(fail_at)
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "os", dying)
        try:
            save()
        except InjectedCrashError:
            return dying
    assert not dying.dead
    return None


@pytest.mark.parametrize("next_step", [2, 1], ids=["next-step", "same-step-again"])
def test_a_crash_at_any_file_operation_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, next_step: int
) -> None:
    outcomes = set()
    for fail_at in itertools.count(1):
        folder = tmp_path / str(fail_at)
        save_snapshot(folder, 1)
        dying = save_dying_at(
            monkeypatch, fail_at, functools.partial(save_snapshot, folder, next_step, 99)
        )
        if dying is None:
            assert_is_snapshot(load_checkpoint(folder), next_step, content=99)
            break
        loaded = load_checkpoint(folder)
        # Before the manifest is replaced the old checkpoint stands; after, the new one.
        if dying.committed:
            assert_is_snapshot(loaded, next_step, content=99)
        else:
            assert_is_snapshot(loaded, 1)
        outcomes.add(dying.committed)
        # The next save clears whatever the crash left behind.
        save_snapshot(folder, 3)
        assert sorted(os.listdir(folder)) == files_of(3)
        assert_is_snapshot(load_checkpoint(folder), 3)
    assert fail_at > 20 and outcomes == {False, True}


def test_a_crash_during_the_first_save_leaves_no_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for fail_at in itertools.count(1):
        folder = tmp_path / str(fail_at) / "checkpoints" / "last"
        dying = save_dying_at(monkeypatch, fail_at, functools.partial(save_snapshot, folder, 1))
        if dying is None:
            break
        if dying.committed:
            assert_is_snapshot(load_checkpoint(folder), 1)
        else:
            assert not has_checkpoint(folder)
            with pytest.raises(
                CheckpointError, match=r"no checkpoint in .* \(manifest.json missing\)"
            ):
                load_checkpoint(folder)
    assert fail_at > 20


SAVER = """
import sys

import torch

from rnnkit.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint

sys.stdin.readline()  # started early, so torch is imported by the time its turn comes
folder = sys.argv[1]
step = load_checkpoint(folder).step + 1 if has_checkpoint(folder) else 1
while True:
    # 5 × 4 MiB of weights, each filled with the step it is saved at.
    weights = {f"layer{i}.weight": torch.full((1024, 1024), float(step)) for i in range(5)}
    state = {"step": step, "moments": [torch.full((1000,), float(step))]}
    artifacts = {"step.txt": str(step).encode()}
    save_checkpoint(folder, weights, state, step=step, artifacts=artifacts)
    step += 1
"""


def committed_step(folder: Path) -> int:
    try:
        return int(json.loads((folder / MANIFEST).read_text())["step"])
    except FileNotFoundError:
        return 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")
def test_sigkill_during_saves_always_leaves_a_consistent_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "last"
    pythonpath = [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    savers: list[subprocess.Popen[bytes]] = []

    def start_saver() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-c", SAVER, str(folder)]
        process = subprocess.Popen(
            command,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        savers.append(process)
        return process

    moments = random.Random(0)
    last = 0
    try:
        saver = start_saver()
        for kill in range(5):
            # The next saver imports torch while this one works: restarts cost no start-up.
            spare = start_saver() if kill < 4 else None
            assert saver.stdin is not None
            saver.stdin.write(b"go\n")
            saver.stdin.flush()
            deadline = time.monotonic() + 120
            # Two saves in all, one in this run: the next save replaces a committed one,
            # so the kill may land anywhere in it.
            target = max(2, last + 1)
            while committed_step(folder) < target:
                assert saver.poll() is None, saver.communicate()[1].decode()
                assert time.monotonic() < deadline, "the saver made no progress"
                time.sleep(0.01)
            time.sleep(moments.uniform(0, 0.4))
            saver.send_signal(signal.SIGKILL)
            saver.communicate()
            assert saver.returncode == -signal.SIGKILL

            loaded = load_checkpoint(folder)
            assert loaded.step >= target
            for tensor in loaded.weights.values():
                assert torch.equal(tensor, torch.full((1024, 1024), float(loaded.step)))
            assert loaded.state["step"] == loaded.step
            assert torch.equal(loaded.state["moments"][0], torch.full((1000,), float(loaded.step)))
            assert loaded.artifacts == {"step.txt": str(loaded.step).encode()}
            last = loaded.step
            if spare is not None:
                saver = spare
    finally:
        for process in savers:
            if process.poll() is None:
                process.kill()
            process.communicate()


# --- refusing to save ---------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_non_finite_weights_are_refused_and_nothing_is_written(
    tmp_path: Path, bad: float, dtype: torch.dtype
) -> None:
    save_snapshot(tmp_path, 1)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    weights = {"rnn.weight_ih": torch.zeros(4, 3), "rnn.weight_hh": torch.zeros(4, 4, dtype=dtype)}
    weights["rnn.weight_hh"][1, 2] = bad
    with pytest.raises(
        NonFiniteError, match=re.escape('weights["rnn.weight_hh"] holds 1 NaN or inf')
    ):
        save_checkpoint(tmp_path, weights, {}, step=2)
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before
    assert_is_snapshot(load_checkpoint(tmp_path), 1)


def test_non_finite_optimizer_moments_are_refused_naming_their_path(tmp_path: Path) -> None:
    save_snapshot(tmp_path, 1)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict()}
    state["optimizer"]["state"][0]["exp_avg"][0, 1] = math.inf
    path = 'state["optimizer"]["state"][0]["exp_avg"]'
    with pytest.raises(NonFiniteError, match=re.escape(f"{path} holds 1 NaN or inf")):
        save_checkpoint(tmp_path, model.state_dict(), state, step=2)
    assert sorted(os.listdir(tmp_path)) == files_of(1)
    assert_is_snapshot(load_checkpoint(tmp_path), 1)


def test_a_refused_first_save_creates_no_folder(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints" / "last"
    with pytest.raises(NonFiniteError, match=r'state\["h"\]\[1\]'):
        save_checkpoint(folder, {}, {"h": [torch.zeros(2), torch.tensor([math.nan])]}, step=0)
    assert not (tmp_path / "checkpoints").exists()


def test_state_that_weights_only_cannot_load_is_refused_at_save(tmp_path: Path) -> None:
    # Saving it would lose the run at resume time, when torch.load refuses it.
    state: dict[str, Any] = {"sampler": {"counts": collections.defaultdict(int)}}
    with pytest.raises(
        TypeError, match=re.escape('state["sampler"]["counts"]: holds a collections.defaultdict')
    ):
        save_checkpoint(tmp_path, {}, state, step=0)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda f: save_checkpoint(f, {}, {}, step=-1),
            ValueError,
            "step: expected an int ≥ 0, got -1",
        ),
        (
            lambda f: save_checkpoint(f, {}, {}, step=True),
            ValueError,
            "step: expected an int ≥ 0, got True",
        ),
        (
            lambda f: save_checkpoint(f, {}, {}, step=0, artifacts={"../vocab.json": b""}),
            ValueError,
            "artifacts: expected a plain file name, got '../vocab.json'",
        ),
        (
            lambda f: save_checkpoint(f, {}, {}, step=0, artifacts={"vocab.json": "text"}),  # type: ignore[dict-item]
            TypeError,
            'artifacts["vocab.json"]: expected bytes, got str',
        ),
        (
            lambda f: save_checkpoint(f, {1: torch.ones(1)}, {}, step=0),  # type: ignore[dict-item]
            TypeError,
            "names must be str, got 1",
        ),
        (
            lambda f: save_checkpoint(f, {"w": [1.0]}, {}, step=0),  # type: ignore[dict-item]
            TypeError,
            'weights["w"]: expected a tensor, got list',
        ),
        (
            lambda f: save_checkpoint(f, {"__metadata__": torch.ones(1)}, {}, step=0),
            ValueError,
            "the name is reserved by the safetensors format",
        ),
    ],
)
def test_malformed_arguments_are_refused_before_writing(
    tmp_path: Path, call: Callable[[Path], None], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call(tmp_path / "last")
    assert not (tmp_path / "last").exists()


# --- refusing to load ---------------------------------------------------------------


def leave_a_mark(path: str) -> None:
    Path(path).write_text("executed")


class Trojan:
    """Unpickles by calling :func:`leave_a_mark`: proof of whether unpickling ran code."""

    def __init__(self, mark: Path) -> None:
        self.mark = str(mark)

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return leave_a_mark, (self.mark,)


class Opaque:
    """A plain class instance: torch.save pickles it, weights_only must not build it."""


def rehash(folder: Path, key: str) -> None:
    """Record the file at ``manifest[key]`` as it is now, so only the content check fires."""
    manifest = json.loads((folder / MANIFEST).read_text())
    data = (folder / manifest[key]["file"]).read_bytes()
    manifest[key].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("payload", "named"), [("trojan", "leave_a_mark"), ("opaque", "test_checkpoint.Opaque")]
)
def test_a_pickled_object_in_the_state_file_is_refused_and_never_run(
    tmp_path: Path, payload: str, named: str
) -> None:
    save_snapshot(tmp_path, 1)
    mark = tmp_path.parent / f"{tmp_path.name}-mark"
    state_file = tmp_path / "state-00000001.pt"
    torch.save({"step": 1, "extra": Trojan(mark) if payload == "trojan" else Opaque()}, state_file)
    rehash(tmp_path, "state")
    with pytest.raises(
        CheckpointError, match=rf"state-00000001\.pt: refused: holds a pickled \S*{named}"
    ):
        load_checkpoint(tmp_path)
    assert not mark.exists()
    if payload == "trojan":
        # The file is live: an unrestricted unpickler would have run it.
        torch.load(state_file, weights_only=False)
        assert mark.read_text() == "executed"


def test_a_weight_altered_after_saving_is_refused(tmp_path: Path) -> None:
    save_snapshot(tmp_path, 1)
    path = tmp_path / "model-00000001.safetensors"
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + 5] ^= 0x01  # one bit of one tensor's data
    # safetensors alone would load it without complaint, silently changed.
    altered = safetensors.torch.load(bytes(data))
    assert not all(torch.equal(altered[k], v) for k, v in snapshot(1)["weights"].items())
    path.write_bytes(data)
    with pytest.raises(
        CheckpointError, match=r"model-00000001\.safetensors changed after it was saved: sha256"
    ):
        load_checkpoint(tmp_path)


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    save_snapshot(tmp_path, 1)
    path = tmp_path / "state-00000001.pt"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    message = (
        f"state-00000001.pt changed after it was saved: expected {size} bytes, found {size // 2}"
    )
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(tmp_path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    save_snapshot(tmp_path, 1)
    (tmp_path / "artifact-00000001-vocab.json").unlink()
    with pytest.raises(
        CheckpointError,
        match=r"artifact-00000001-vocab\.json is missing \(manifest\.json lists it\)",
    ):
        load_checkpoint(tmp_path)


def _edit_manifest(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / MANIFEST).read_text())
        change(manifest)
        (folder / MANIFEST).write_text(json.dumps(manifest))

    return edit


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / MANIFEST).unlink(), r"no checkpoint in .* \(manifest\.json missing\)"),
        (lambda f: (f / MANIFEST).write_text('{"step": 1'), r"manifest\.json: not valid JSON"),
        (
            lambda f: (f / MANIFEST).write_text("[]"),
            r"manifest\.json: expected a JSON object, got list",
        ),
        (
            _edit_manifest(lambda m: m.update(version=2)),
            r"manifest\.json: format version 2 is not supported \(this rnnkit reads version 1\)",
        ),
        (
            _edit_manifest(lambda m: m.update(format="other")),
            r"manifest\.json: expected format 'rnnkit-checkpoint', got 'other'",
        ),
        (
            _edit_manifest(lambda m: m.update(step="1")),
            r"manifest\.json: malformed: step: expected an int ≥ 0, got '1'",
        ),
        (
            _edit_manifest(lambda m: m["weights"].update(file="../model.safetensors")),
            r"manifest\.json: malformed: weights: expected \{'file': plain name",
        ),
        (
            _edit_manifest(lambda m: m["artifacts"]["vocab.json"].pop("sha256")),
            r'manifest\.json: malformed: artifacts\["vocab\.json"\]',
        ),
    ],
)
def test_a_missing_or_malformed_manifest_is_refused(
    tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    save_snapshot(tmp_path, 1)
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path)


def test_has_checkpoint_is_false_for_a_missing_or_empty_folder(tmp_path: Path) -> None:
    assert not has_checkpoint(tmp_path / "nowhere")
    assert not has_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"no checkpoint in .* \(manifest\.json missing\)"):
        load_checkpoint(tmp_path / "nowhere")
