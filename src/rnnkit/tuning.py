"""The measured backend choice: time the eligible backends once per shape, keep the winner.

``Recurrent(..., backend="auto")`` asks the :class:`Tuner` which exact backend to run,
as ``torch.backends.cudnn.benchmark`` asks cuDNN which algorithm to run. The first
forward with a new :class:`TuningKey` times every eligible backend on random inputs
of that call's shape, interleaved (``A B, B A, A B`` after one warm-up round each),
and keeps the median's winner:

* **in memory**, for the rest of the process: a key is decided once and never again,
  so noise cannot make the choice flip back and forth within a run;
* **on disk**, one JSON table per machine, torch version and version of the
  backends' code (:func:`cache_path`), so later processes start with the same choice
  and a change to a backend is measured again.

Stability: the static rule's choice (what ``auto`` runs with tuning off, see
``Recurrent.resolve_backend``) is kept unless a challenger's median is more than
:data:`MARGIN` (5 %) faster. A near tie therefore resolves the same way on every
run instead of by the noise of the day. A machine too busy to measure (a candidate's
median call over :data:`NOISY_SPREAD` × its fastest, see :func:`busy`) gets the
static choice too, in memory only, so that a later process measures again.

Measuring needs the memory of one more forward (and backward) of the stack at the
call's shape. Cost: one warm-up and :data:`REPEATS` timed calls per candidate (up
to :data:`MAX_REPEATS` for calls so short that all of them take under
:data:`MIN_TIME_S`, or while the machine is busy), in at most :data:`BUDGET_S`
seconds of timed calls after the first round; a challenger more than :data:`DROP_RATIO` × slower than the best
after its first timed call is not timed again (the static choice always is, so
one burst of noise cannot unseat it).

The measuring's knobs (these constants) are the fields of a frozen
:class:`TuningConfig`, passed to :class:`Tuner` and :func:`measure`.

Switches: ``RNNKIT_TUNE=0`` (also ``false``, ``no``, ``off``) or
:func:`set_enabled` turns the measuring off; ``auto`` then applies the static rule.
``RNNKIT_CACHE_DIR`` moves the cache folder (default ``$XDG_CACHE_HOME/rnnkit``,
else ``~/.cache/rnnkit``); the tables live in its ``backends/`` folder, and
``rnnkit backends`` shows (``--clear`` forgets) them.

The disk cache is advisory and never trusted blindly: a file that is unreadable,
truncated, not JSON, of another schema, torch version, machine or backend code, or whose entry
names a backend that cannot run the stack is ignored and the key re-measured. Writes
go to a temporary file that replaces the table atomically, under an exclusive
``flock`` that also spans the measuring, so two processes on one machine (DDP ranks,
parallel jobs) neither lose each other's entries nor time at the same moment; the
second one finds the first one's choice. An unwritable folder leaves the choices in
memory only, with one warning.

Distributed training: every rank tunes (or reads the machine's table) on its own.
Ranks on different machines may choose different backends; that is exact, since
every backend computes the same function (the tests tie each one to torch.nn), and
only the rounding of the last bits can differ. A rank-0 decision broadcast to all
ranks would need every rank to reach the same key at the same call (a collective
inside ``forward``), which ragged last batches break, so rnnkit does not do it; pin
``backend=`` for bit-identical ranks.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

fcntl: Any
try:  # POSIX; elsewhere writes stay atomic, but a lost race may drop an entry
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

logger = logging.getLogger("rnnkit")

SCHEMA = 1  # bump when the file's layout or the key's meaning changes
MARGIN = 0.05  # a challenger must beat the static choice's median by more than 5 %
WARMUP = 1  # calls per candidate first, not in the median (first-call set-up, caches)
REPEATS = 3  # timed calls per candidate
MAX_REPEATS = 15  # … or up to this many while they take under MIN_TIME_S in all
MIN_TIME_S = 0.05
NOISY_SPREAD = 1.25  # … or while a candidate's median call is this much its fastest
BUDGET_S = 2.0  # seconds of timed calls after the first round, at most
DROP_RATIO = 2.0  # after its first timed call, a candidate this much slower stops


@dataclass(frozen=True)
class TuningConfig:
    """How the tuner measures and decides; the defaults are the documented constants.

    Attributes:
        warmup: calls per candidate first, not in the median (:data:`WARMUP`).
        repeats: timed calls per candidate (:data:`REPEATS`).
        max_repeats: at most this many while all of them take under ``min_time_s``
            or while the machine is busy (:data:`MAX_REPEATS`, :data:`MIN_TIME_S`).
        min_time_s: see ``max_repeats``.
        budget_s: seconds of timed calls after the first round, at most (:data:`BUDGET_S`).
        drop_ratio: after its first timed call, a candidate this much slower than
            the fastest is not timed again (:data:`DROP_RATIO`).
        spread: a median call over this × the fastest means a busy machine
            (:data:`NOISY_SPREAD`, :func:`busy`).
        margin: a challenger must beat the static choice by more than this
            fraction (:data:`MARGIN`).
    """

    warmup: int = WARMUP
    repeats: int = REPEATS
    max_repeats: int = MAX_REPEATS
    min_time_s: float = MIN_TIME_S
    budget_s: float = BUDGET_S
    drop_ratio: float = DROP_RATIO
    spread: float = NOISY_SPREAD
    margin: float = MARGIN

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.max_repeats < self.repeats:
            raise ValueError(
                f"repeats: expected 1 ≤ repeats ≤ max_repeats, got {self.repeats}, "
                f"{self.max_repeats}"
            )


LOCK_WAIT_S = 60.0  # wait this long for another process's measuring, then go on
MAX_FILE_BYTES = 4 * 2**20  # a table is a few KiB; anything larger is not ours
BACKEND_NAMES = ("fused", "native", "unrolled")
_OFF = ("0", "false", "no", "off")

Runs = Mapping[str, Callable[[], object]]
# Builds the candidates' runs for the time they are measured: ``Recurrent``'s forks
# the RNG and sets the grad mode around them.
RunsFactory = Callable[[], AbstractContextManager[Runs]]


@dataclass(frozen=True)
class TuningKey:
    """What a measured choice depends on; calls with equal keys share one decision.

    Attributes:
        cell: the cell name (``"lstm"``); the fused and native kernels differ per cell.
        layers: L.
        directions: D.
        input_size: I.
        hidden_size: H.
        dtype: the parameters' dtype (under autocast nothing is measured).
        device: ``"cpu"``, or the accelerator's type and model (``"cuda:NVIDIA H200"``).
        threads: ``torch.get_num_threads()``: oneDNN and the fused loops scale apart.
        training: a backward will follow (grad enabled and something requires grad);
            the candidates are then timed forward + backward, else forward only.
        batch: B rounded up to a power of two (:func:`bucket`).
        steps: T rounded up to a power of two.
        ragged: the call has lengths below T (packed or masked paths differ).
        loops: ``"compiled"`` or ``"python"``: which loops the fused backend runs.
    """

    cell: str
    layers: int
    directions: int
    input_size: int
    hidden_size: int
    dtype: str
    device: str
    threads: int
    training: bool
    batch: int
    steps: int
    ragged: bool
    loops: str

    def text(self) -> str:
        """One line: ``lstm L2 D1 I64 H256 float32 cpu t2 train B32 T64 full compiled``."""
        return (
            f"{self.cell} L{self.layers} D{self.directions} I{self.input_size} "
            f"H{self.hidden_size} {self.dtype} {self.device} t{self.threads} "
            f"{'train' if self.training else 'no-grad'} B{self.batch} T{self.steps} "
            f"{'ragged' if self.ragged else 'full'} {self.loops}"
        )


def bucket(n: int) -> int:
    """``n`` rounded up to a power of two (1, 2, 4, …): the key's B and T."""
    return 1 << max(0, n - 1).bit_length()


@dataclass(frozen=True)
class Samples:
    """One candidate's call times, in seconds: the warm-up calls, then the timed ones."""

    warmup: tuple[float, ...]
    timed: tuple[float, ...]


@dataclass(frozen=True)
class Decision:
    """A measured choice.

    Attributes:
        backend: the winner.
        static: the static rule's choice, kept unless beaten by more than the margin.
        seconds: each candidate's median seconds per call.
        source: ``"measured"`` in this process, ``"cache"`` (read from disk),
            ``"busy"`` (timings disturbed throughout, see :func:`busy`) or
            ``"failed"`` (measuring raised); the last two keep the static choice,
            in memory only.
    """

    backend: str
    static: str
    seconds: Mapping[str, float]
    source: str


# ------------------------------------------------------------------------- the switch

_enabled_override: bool | None = None


def is_enabled() -> bool:
    """Whether ``auto`` measures: :func:`set_enabled`'s value, else ``RNNKIT_TUNE``
    (on unless it is ``0``, ``false``, ``no`` or ``off``)."""
    if _enabled_override is not None:
        return _enabled_override
    return os.environ.get("RNNKIT_TUNE", "1").strip().lower() not in _OFF


def set_enabled(flag: bool | None) -> None:
    """Turn measuring on or off for this process; ``None`` follows ``RNNKIT_TUNE`` again."""
    global _enabled_override
    if flag is not None and not isinstance(flag, bool):
        raise ValueError(f"set_enabled: expected True, False or None, got {flag!r}")
    _enabled_override = flag


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Within the block, measure (True) or apply the static rule (False)."""
    global _enabled_override
    previous = _enabled_override
    set_enabled(flag)
    try:
        yield
    finally:
        _enabled_override = previous


# ------------------------------------------------------------------ where and for whom


def cache_dir() -> Path:
    """The tables' folder: ``$RNNKIT_CACHE_DIR/backends``, else
    ``$XDG_CACHE_HOME/rnnkit/backends``, else ``~/.cache/rnnkit/backends``."""
    root = os.environ.get("RNNKIT_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "backends"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rnnkit" / "backends"


@functools.cache
def machine() -> str:
    """This machine as the cache knows it: CPU model, logical cores, architecture, OS."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or "unknown CPU"
    return f"{model}; {os.cpu_count()} cores; {platform.machine()}; {platform.system()}"


# The files whose code the candidates run: a table measured on other code is stale
# (a faster compiled loop must not lose to the slower one's recorded time).
_BACKEND_CODE = ("bptt", "native.py", "projection.py", "recurrent.py", "unrolling.py")


@functools.cache
def code() -> str:
    """A digest of the backends' code (:data:`_BACKEND_CODE`, read from the package)."""
    return code_digest(Path(__file__).parent)


def code_digest(package: Path) -> str:
    """The digest of :data:`_BACKEND_CODE` under ``package``; missing files count as empty."""
    digest = hashlib.sha256()
    for name in _BACKEND_CODE:
        path = package / name
        files = sorted(path.glob("*.[cph]*")) if path.is_dir() else [path]
        for file in files:
            with contextlib.suppress(OSError):
                digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def identity() -> dict[str, Any]:
    """What a table must match to be used: schema, torch version, machine, backend code."""
    return {"schema": SCHEMA, "torch": torch.__version__, "machine": machine(), "code": code()}


def cache_path(directory: Path | None = None) -> Path:
    """The table of this machine, torch version and backend code in ``directory``
    (default :func:`cache_dir`)."""
    digest = hashlib.sha256(json.dumps(identity(), sort_keys=True).encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"v{SCHEMA}-{digest}.json"


@functools.cache
def device_name(device: torch.device) -> str:
    """``"cpu"``, or an accelerator's type and model: a table entry must not cross GPUs."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


# ------------------------------------------------------------------------ the decision


def decide(static: str, seconds: Mapping[str, float], margin: float = MARGIN) -> str:
    """The winner: the fastest median, unless the static choice is within ``margin``.

    ``static`` wins ties and near ties: a challenger must take less than
    ``(1 − margin)`` of the static choice's time.
    """
    if not seconds:
        raise ValueError("decide: no candidate was timed")
    fastest = min(seconds, key=lambda name: (seconds[name], name != static))
    if static in seconds and seconds[fastest] >= (1.0 - margin) * seconds[static]:
        return static
    return fastest


def measure(
    runs: Runs,
    config: TuningConfig = TuningConfig(),
    *,
    clock: Callable[[], float] = time.perf_counter,
    keep: str | None = None,
) -> dict[str, Samples]:
    """Each run's call times: interleaved, capped, slow ones dropped early.

    ``config``'s fields, named alone below, set the counts and limits. Every run is
    called ``warmup`` times (first-call set-up: not in the median), then in
    rounds of one timed call each, the order reversed every other round so no
    candidate always runs first (warm caches) or last. After the first round, a
    run whose fastest call so far (warm-up included) is over ``drop_ratio`` × the
    fastest run's is not timed again; one slow call alone (a context switch,
    another job) cannot drop it, and ``keep`` (the static choice, which a
    challenger must beat over every round) is never dropped. There are
    ``repeats`` rounds, more (up to ``max_repeats``) while the timed calls have
    taken under ``min_time_s`` (for tiny calls more samples cost nothing) or
    while the machine is :func:`busy` (by ``spread``), and none once they have
    taken ``budget_s``.
    """
    c = config

    def timed(run: Callable[[], object]) -> float:
        start = clock()
        run()
        return clock() - start

    seen: dict[str, list[float]] = {name: [] for name in runs}  # warm-up calls too
    for _ in range(c.warmup):
        for name, run in runs.items():
            seen[name].append(timed(run))
    samples: dict[str, list[float]] = {name: [] for name in runs}
    live = list(runs)
    spent = 0.0
    for done in range(1, c.max_repeats + 1):
        for name in live if done % 2 else live[::-1]:
            samples[name].append(timed(runs[name]))
            spent += samples[name][-1]
        if done == 1:
            best = {name: min(seen[name] + samples[name]) for name in live}
            fastest = min(best.values())
            live = [n for n in live if n == keep or best[n] <= c.drop_ratio * fastest]
        if len(live) < 2 or spent >= c.budget_s:
            break
        so_far = {n: Samples(tuple(seen[n]), tuple(samples[n])) for n in live}
        if done >= c.repeats and spent >= c.min_time_s and not busy(so_far, c.spread):
            break
    return {name: Samples(tuple(seen[name]), tuple(samples[name])) for name in runs}


def medians(samples: Mapping[str, Samples]) -> dict[str, float]:
    """Each candidate's median seconds per timed call."""
    return {name: statistics.median(sample.timed) for name, sample in samples.items()}


def busy(samples: Mapping[str, Samples], spread: float = NOISY_SPREAD) -> bool:
    """Whether the timings were disturbed throughout, not by a burst: some candidate's
    median timed call is over ``spread`` × its fastest call, warm-up included (one
    slow call among three leaves the median alone; a machine shared with other work,
    or one timed call far slower than the warm-up, does not)."""
    return any(
        len(sample.warmup) + len(sample.timed) > 1
        and statistics.median(sample.timed) > spread * min(sample.warmup + sample.timed)
        for sample in samples.values()
    )


# ------------------------------------------------------------------------- the table


def read_table(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of the table at ``path``; ``{}`` for a missing, unreadable, corrupt
    or foreign file (it is then re-measured and rewritten, never trusted)."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            return {}
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or any(data.get(k) != v for k, v in identity().items()):
        return {}
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {text: entry for text, entry in entries.items() if _valid_entry(entry)}


def _valid_entry(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    seconds = entry.get("seconds")
    return (
        entry.get("backend") in BACKEND_NAMES
        and entry.get("static") in BACKEND_NAMES
        and isinstance(entry.get("key"), dict)
        and isinstance(seconds, dict)
        and all(
            name in BACKEND_NAMES and isinstance(value, int | float) and not isinstance(value, bool)
            for name, value in seconds.items()
        )
    )


def key_of(entry: Mapping[str, Any]) -> TuningKey | None:
    """The key a table entry was measured for, or ``None`` when it does not parse."""
    raw = entry.get("key")
    kinds = {f.name: _KINDS[str(f.type)] for f in fields(TuningKey)}
    if not isinstance(raw, dict) or set(raw) != set(kinds):
        return None
    if any(type(raw[name]) is not kind for name, kind in kinds.items()):
        return None  # exact types: a bool is no int here, nor "2" a layer count
    return TuningKey(**raw)


_KINDS: dict[str, type] = {"str": str, "int": int, "bool": bool}


def write_table(path: Path, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace the table at ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**identity(), "entries": entries}, indent=1, sort_keys=True) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def locked(path: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path``'s lock file; yields whether it is held.

    Waits up to ``wait_s`` for another holder (a process measuring), then goes on
    unlocked: a lost race then costs at most an entry, never a corrupt file.
    """
    if fcntl is None:
        yield False
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + wait_s
        held = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except OSError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
        yield held
    finally:
        os.close(handle)  # closing releases the lock


# ------------------------------------------------------------------------- the tuner


class Tuner:
    """Measured choices: in memory for the process, on disk per machine and torch.

    Args:
        directory: the tables' folder; ``None`` reads :func:`cache_dir` at each use.
        clock: seconds as a float (``time.perf_counter``); tests inject a fake one.
        margin, warmup, repeats, max_repeats, min_time_s, budget_s, drop_ratio,
            spread: see :func:`decide`, :func:`measure` and :func:`busy`.
    """

    def __init__(
        self,
        directory: Path | None = None,
        config: TuningConfig = TuningConfig(),
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.directory = directory
        self.config = config
        self.clock = clock
        self.decisions: dict[TuningKey, Decision] = {}  # never re-made in this process
        self._lock = threading.RLock()
        self._warned = False

    @property
    def path(self) -> Path:
        return cache_path(self.directory)

    def remembered(self, key: TuningKey) -> str | None:
        """The backend already chosen for ``key`` in this process, else ``None``."""
        decision = self.decisions.get(key)
        return None if decision is None else decision.backend

    def choose(
        self,
        key: TuningKey,
        static: str,
        candidates: Sequence[str],
        runs: RunsFactory,
    ) -> str:
        """The backend for ``key``: remembered, else read from disk, else measured.

        Args:
            key: the call's key.
            static: the static rule's choice, preferred within the margin.
            candidates: the backends that can run the stack; a cached entry naming
                another is ignored.
            runs: a context in which each candidate has a callable (a forward, or a
                forward and backward, on random inputs of the call's shape); entered
                only when measuring.
        """
        decision = self.decisions.get(key)
        if decision is not None:
            return decision.backend
        if len(candidates) == 1:
            return candidates[0]  # nothing to choose between, nothing to time or report
        with self._lock:
            decision = self.decisions.get(key)
            if decision is None:
                decision = self._decide(key, static, candidates, runs)
                self.decisions[key] = decision
                _report(key, decision)
        return decision.backend

    def _decide(
        self, key: TuningKey, static: str, candidates: Sequence[str], runs: RunsFactory
    ) -> Decision:
        path = self.path
        text = key.text()
        with locked(path):
            cached = read_table(path).get(text)
            if cached is not None and cached["backend"] in candidates and key_of(cached) == key:
                return Decision(cached["backend"], cached["static"], cached["seconds"], "cache")
            try:
                with runs() as built:
                    samples = measure(
                        {name: built[name] for name in candidates},
                        self.config,
                        clock=self.clock,
                        keep=static,
                    )
            except Exception as error:
                # A candidate that cannot run this call (out of memory, say) must not
                # fail the user's forward: the static choice runs, as with tuning off;
                # if that one fails too, the forward itself says why.
                logger.warning(
                    "rnnkit: measuring the backends for %s failed (%s: %s); using %s",
                    text,
                    type(error).__name__,
                    str(error).strip().split("\n")[0],
                    static,
                )
                return Decision(static, static, {}, "failed")
            seconds = medians(samples)
            if busy(samples, self.config.spread):
                # Too disturbed to tell: the static choice runs, and the next process
                # measures again rather than inherit a guess.
                return Decision(static, static, seconds, "busy")
            backend = decide(static, seconds, self.config.margin)
            entry = {"backend": backend, "static": static, "seconds": seconds, "key": asdict(key)}
            try:
                # Merge with what other processes wrote since: read again under the lock.
                entries = read_table(path)
                entries[text] = entry
                write_table(path, entries)
            except OSError as error:
                self._warn(path, error)
        return Decision(backend, static, seconds, "measured")

    def _warn(self, path: Path, error: OSError) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "rnnkit: cannot write the backend table %s (%s); "
                "measured choices are kept in memory only",
                path,
                error.strerror or error,
            )

    def table(self) -> dict[str, dict[str, Any]]:
        """This machine's table as stored on disk (``{}`` when absent or unusable)."""
        return read_table(self.path)

    def clear(self) -> list[Path]:
        """Delete every table in the folder (all machines and torch versions); the
        choices already made in this process stand. Returns the files removed."""
        folder = self.path.parent
        removed = []
        with locked(self.path):
            for path in sorted(folder.glob("v*-*.json")):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def _report(key: TuningKey, decision: Decision) -> None:
    if decision.source == "failed":
        return  # already said, as a warning
    times = ", ".join(f"{name} {s * 1e3:.3g} ms" for name, s in sorted(decision.seconds.items()))
    how = {"measured": "measured", "cache": "cached"}.get(
        decision.source, "the machine was too busy to tell, not cached"
    )
    logger.info(
        "rnnkit: backend %s for %s (%s: %s; static rule: %s)",
        decision.backend,
        key.text(),
        how,
        times,
        decision.static,
    )


_default: Tuner | None = None


def default_tuner() -> Tuner:
    """The process's tuner, which ``Recurrent`` asks (created at first use)."""
    global _default
    if _default is None:
        _default = Tuner()
    return _default


def set_default_tuner(tuner: Tuner | None) -> Tuner | None:
    """Replace the process's tuner (``None``: a fresh one at next use); returns the old one."""
    global _default
    previous, _default = _default, tuner
    return previous
