"""Training checkpoints that survive a crash at any moment.

A checkpoint is one folder (``runs/NAME/checkpoints/last/``, ``.../best/``) holding::

    manifest.json                     the commit point: what the checkpoint is made of
    model-00000120.safetensors        the weights (safetensors: no pickle on load)
    state-00000120.pt                 the training state (torch.save, loaded weights_only)
    artifact-00000120-vocab.json      one file per artifact, its name prefixed by the step

``manifest.json`` records the format and its version, the step, and for every file
its name, size in bytes and sha256. Artifacts keep their own names in the manifest;
on disk each is ``artifact-{step:08d}-{name}``, so the folder stays flat and every
file of a save carries its step.

The save protocol, in order:

1. Check everything in memory (keys, types, NaN/inf, that the state loads back under
   ``weights_only``) and serialise every file to bytes. A refusal here writes nothing.
2. Write each file under a name no committed file uses: a temporary name in the same
   folder, ``fsync``, then ``os.replace`` to its final name.
3. ``fsync`` the folder, so the new names are on disk before anything points at them.
4. Write ``manifest.json`` the same way (temporary file, ``fsync``, ``os.replace``)
   and ``fsync`` the folder again. That ``os.replace`` is the commit.
5. Remove the files the new manifest does not list: the previous step's files and
   whatever an interrupted save left behind.

Why a kill at any point loses nothing: ``os.replace`` swaps a name atomically, so
``manifest.json`` is at every moment either the old manifest or the new one, never a
mix. Before step 4 it is the old one, and the old one lists only the old files, which
steps 2 and 3 never touch (new files never take a name the old manifest lists; a save
that repeats the committed step writes ``model-00000120r1.safetensors`` and so on
instead). After step 4 it is the new one, and every file it lists was already complete
and fsync'd. A first save killed before step 4 leaves no ``manifest.json``, so
:func:`has_checkpoint` answers False rather than pointing at half a checkpoint. The
hashes in the manifest catch the rest (a disk or a person altering a file later):
:func:`load_checkpoint` checks every file before it parses any.

Files go through memory as bytes (``safetensors.torch.save``/``load``, ``torch.save``
into a buffer) rather than straight to and from paths, so the hash a save records is
the hash of exactly the bytes it wrote, and a load parses exactly the bytes it checked.

One process writes a folder at a time (two concurrent savers would remove each
other's files in step 5): a trainer holds :func:`lock_run_folder` on its run folder.
Loading and saving refuse a checkpoint folder that is a symbolic link, so neither
reads nor writes leave the run folder, and a manifest over :data:`MAX_MANIFEST_BYTES`
is refused unread.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import secrets
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

#: The manifest's name: the one file whose replacement commits a save.
MANIFEST = "manifest.json"
#: Written into every manifest so a stray JSON file is not mistaken for one.
FORMAT = "rnnkit-checkpoint"
#: Bumped whenever the layout changes in a way an older reader would misread.
VERSION = 1

# Every file a save writes, so that step 5 removes only what a save could have
# written and leaves a user's own files in the folder alone. The tag is the step,
# then "r<n>" when a save repeats the committed step.
_TAG = r"\d{8,}(?:r\d+)?"
_DATA_FILE = re.compile(rf"model-{_TAG}\.safetensors|state-{_TAG}\.pt|artifact-{_TAG}-.+")
_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{16}\.tmp")
# torch.load(weights_only=True) names what it refused in a long, multi-line message.
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A manifest is a few hundred bytes; anything past this is not one (and is not read).
MAX_MANIFEST_BYTES = 4 * 2**20


class CheckpointError(Exception):
    """A checkpoint folder cannot be saved or loaded; the message names the file and why."""


class NonFiniteError(CheckpointError):
    """A weight or a state tensor holds NaN or inf; the save wrote nothing."""


@dataclass(frozen=True)
class Checkpoint:
    """One loaded checkpoint, every tensor on the CPU.

    Attributes:
        step: the training step it was saved at.
        weights: the model weights, by name, with the dtypes they were saved with.
        state: the training state (optimizer, scheduler, RNG, counters) as saved.
        artifacts: the files the model needs (e.g. ``"vocab.json"``), by name.
        manifest: ``manifest.json`` as parsed: format, version, step and every file.
        folder: where it was loaded from, so errors about its contents can name a file.
    """

    step: int
    weights: dict[str, Tensor]
    state: dict[str, Any]
    artifacts: dict[str, bytes]
    manifest: dict[str, Any]
    folder: Path = Path()

    def path_of(self, part: str) -> Path:
        """The file holding ``"weights"``, ``"state"`` or the artifact named ``part``."""
        entry = self.manifest[part] if part in ("weights", "state") else None
        if entry is None:
            entry = self.manifest["artifacts"][part]
        return self.folder / str(entry["file"])


@dataclass(frozen=True)
class _FileEntry:
    """One file as the manifest records it."""

    file: str
    size: int
    sha256: str

    @classmethod
    def of(cls, file: str, data: bytes) -> _FileEntry:
        return cls(file, len(data), hashlib.sha256(data).hexdigest())

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class _Layout:
    """What a manifest lists, checked."""

    step: int
    weights: _FileEntry
    state: _FileEntry
    artifacts: dict[str, _FileEntry]

    def entries(self) -> list[_FileEntry]:
        return [self.weights, self.state, *self.artifacts.values()]


def save_checkpoint(
    folder: Path | str,
    weights: Mapping[str, Tensor],
    state: Mapping[str, Any],
    *,
    step: int,
    artifacts: Mapping[str, bytes] | None = None,
) -> Path:
    """Save a checkpoint into ``folder`` (created if missing), replacing the one there.

    The previous checkpoint stays loadable until the new one is complete: see the
    module docstring for the protocol. Returns the folder.

    Args:
        folder: the checkpoint folder, e.g. ``runs/NAME/checkpoints/last``.
        weights: tensors by name, on any device; saved contiguous, on the CPU.
        state: plain training state: tensors, dicts, lists, tuples, numbers, str,
            bool, None (what ``torch.load(weights_only=True)`` accepts).
        step: the training step, ≥ 0.
        artifacts: files the model needs, by plain file name.

    Raises:
        NonFiniteError: a floating tensor in ``weights`` or ``state`` holds NaN or
            inf; nothing was written.
        TypeError, ValueError: an argument is malformed; nothing was written.
    """
    folder = Path(folder)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: expected an int ≥ 0, got {step!r}")
    _refuse_links(folder)
    weights_bytes = safetensors.torch.save(_prepare_weights(weights, folder))
    state_bytes = _serialise_state(state, folder)
    artifact_bytes = _check_artifacts(artifacts)
    # Everything was checked in memory: any refusal above has left the disk untouched.

    _make_folder(folder)
    tag = _free_tag(folder, step, list(artifact_bytes))
    files = {f"model-{tag}.safetensors": weights_bytes, f"state-{tag}.pt": state_bytes}
    files.update({f"artifact-{tag}-{name}": data for name, data in artifact_bytes.items()})
    entries = {file: _FileEntry.of(file, data) for file, data in files.items()}
    for file, data in files.items():
        _write_atomically(folder / file, data)
    # The new names must be durable before the manifest that points at them is.
    _fsync_folder(folder)

    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "weights": entries[f"model-{tag}.safetensors"].as_json(),
        "state": entries[f"state-{tag}.pt"].as_json(),
        "artifacts": {name: entries[f"artifact-{tag}-{name}"].as_json() for name in artifact_bytes},
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    _write_atomically(folder / MANIFEST, text.encode("utf-8"))  # the commit
    _fsync_folder(folder)
    _remove_unlisted(folder, keep={MANIFEST, *files})
    return folder


def load_checkpoint(folder: Path | str) -> Checkpoint:
    """Load the checkpoint in ``folder`` onto the CPU, after verifying every file.

    Raises:
        CheckpointError: there is no checkpoint, the manifest is malformed or of an
            unknown version, a file is missing or changed after it was saved, or the
            state file holds a pickled object that is not plain training state.
    """
    folder = Path(folder)
    _refuse_links(folder)
    manifest, layout = _read_manifest(folder)
    # Verify every file before parsing any, and parse the very bytes verified, so
    # nothing unverified reaches safetensors or the unpickler.
    contents = {entry.file: _read_verified(folder, entry) for entry in layout.entries()}
    weights = _parse_weights(folder / layout.weights.file, contents[layout.weights.file])
    for name, tensor in weights.items():
        # A save never writes NaN or inf, so such weights were put there by hand.
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor.float()).all()):
            raise CheckpointError(
                f"{folder / layout.weights.file}: {name} holds NaN or inf values "
                "(expected finite weights; rnnkit never saves others)"
            )
    state = _parse_state(folder / layout.state.file, contents[layout.state.file])
    artifacts = {name: contents[entry.file] for name, entry in layout.artifacts.items()}
    return Checkpoint(layout.step, weights, state, artifacts, manifest, folder)


def check_fits(weights: Mapping[str, Tensor], expected: Mapping[str, Tensor], path: Path) -> None:
    """Refuse ``weights`` unless they have exactly the names and shapes of ``expected``
    (a model's ``state_dict()``), in one line naming ``path`` and the first difference."""
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        count = len(missing) + len(extra)
        raise CheckpointError(
            f"{path}: the weights do not fit this model ({what}"
            f"{f' and {count - 1} more difference(s)' if count > 1 else ''})"
        )
    for name, tensor in expected.items():
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: the weights do not fit this model ({name}: expected shape "
                f"{tuple(tensor.shape)}, found {tuple(weights[name].shape)})"
            )


def remove_temporaries(folder: Path | str) -> None:
    """Remove what an interrupted save left in ``folder`` (its ``.*.tmp`` files)."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return
    for name in os.listdir(folder):
        if _TEMPORARY.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)


def lock_run_folder(run_dir: Path | str) -> int | None:
    """Create ``run_dir`` and hold an exclusive lock on ``run_dir/.lock``; returns the
    descriptor to ``os.close`` when done (None where ``fcntl`` is missing: Windows).

    Raises:
        CheckpointError: another process holds the lock, or the folder cannot be made.
    """
    try:
        import fcntl
    except ImportError:
        return None
    run_dir = Path(run_dir)
    path = run_dir / ".lock"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            raise CheckpointError(f"{path}: is a symbolic link (expected a plain file)")
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise CheckpointError(f"cannot use {run_dir} as a run folder: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        raise CheckpointError(
            f"{run_dir}: another rnnkit process is training into this run folder "
            f"({path} is locked); wait for it to finish or choose another folder"
        ) from None
    return descriptor


def _refuse_links(folder: Path) -> None:
    """Refuse a checkpoint folder (or its ``checkpoints/`` parent) that is a link:
    a save through it would write, and a load read, outside the run folder."""
    for path in (folder, folder.parent):
        if path.is_symlink():
            raise CheckpointError(
                f"{path}: is a symbolic link (expected a plain folder inside the run folder)"
            )


def has_checkpoint(folder: Path | str) -> bool:
    """Whether a save into ``folder`` has committed (``manifest.json`` exists).

    It does not verify the checkpoint: a damaged one still answers True, so a trainer
    that resumes when this is True fails loudly in :func:`load_checkpoint` instead of
    quietly starting over and overwriting it.
    """
    return (Path(folder) / MANIFEST).is_file()


# --- checks before saving ---------------------------------------------------------


def _prepare_weights(weights: Mapping[str, Tensor], folder: Path) -> dict[str, Tensor]:
    """The weights as safetensors takes them: detached, contiguous, CPU, unshared."""
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"weights: expected a mapping of names to tensors, got {type(weights).__name__}"
        )
    prepared: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, tensor in weights.items():
        if not isinstance(name, str):
            raise TypeError(f"weights: names must be str, got {name!r}")
        where = f"weights[{_key(name)}]"
        if name == "__metadata__":
            raise ValueError(f"{where}: the name is reserved by the safetensors format")
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{where}: expected a tensor, got {type(tensor).__name__}")
        if tensor.layout != torch.strided:
            raise ValueError(f"{where}: expected a dense tensor, got layout {tensor.layout}")
        _check_finite(tensor, where, folder)
        plain = tensor.detach().to("cpu").contiguous()
        storage = plain.untyped_storage()
        if storage.nbytes() > 0:
            # safetensors refuses two names on one storage (tied embeddings, views
            # of a fused matrix); a copy is what loading would give back anyway.
            if storage.data_ptr() in storages:
                plain = plain.clone()
            else:
                storages.add(storage.data_ptr())
        prepared[name] = plain
    return prepared


def _serialise_state(state: Mapping[str, Any], folder: Path) -> bytes:
    """``torch.save`` of the state, proven to load back under ``weights_only``."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a mapping, got {type(state).__name__}")
    plain = dict(state)
    for where, value in _walk(plain, "state"):
        if isinstance(value, Tensor):
            _check_finite(value, where, folder)
    buffer = io.BytesIO()
    try:
        torch.save(plain, buffer)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise TypeError(f"state: cannot be pickled: {_first_line(error)}") from None
    data = buffer.getvalue()
    # A state that torch.save accepts but weights_only refuses would be found out
    # only at resume time, when the work is already lost; load it back now.
    try:
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        name = _refused_name(error)
        where = next((w for w, value in _walk(plain, "state") if _names(value, name)), "state")
        raise TypeError(
            f"{where}: holds a {name}, which torch.load(weights_only=True) refuses; "
            "keep the state to tensors, dicts, lists, tuples, numbers, str, bool and None"
        ) from None
    return data


def _check_artifacts(artifacts: Mapping[str, bytes] | None) -> dict[str, bytes]:
    """The artifacts by name, each name a plain file name and each value bytes."""
    checked: dict[str, bytes] = {}
    for name, data in (artifacts or {}).items():
        if not isinstance(name, str) or not _is_plain_name(name):
            raise ValueError(f"artifacts: expected a plain file name, got {name!r}")
        if not isinstance(data, bytes):
            raise TypeError(f"artifacts[{_key(name)}]: expected bytes, got {type(data).__name__}")
        checked[name] = data
    return checked


def _check_finite(tensor: Tensor, where: str, folder: Path) -> None:
    """Refuse NaN and inf: a diverged model must never replace a good checkpoint."""
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return
    # isfinite has no kernel for some 1-byte floats (float8_e4m3fn); float32 holds them exactly.
    values = tensor.float() if tensor.dtype.itemsize == 1 else tensor
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        count = int((~finite).sum())
        raise NonFiniteError(
            f"cannot save a checkpoint to {folder}: {where} holds {count} NaN or inf "
            "value(s); nothing was written"
        )


def _walk(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every value inside nested dicts, lists and tuples, with its path from the root."""
    yield where, value
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{where}[{_key(key)}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{where}[{index}]")


def _key(key: object) -> str:
    """A key as Python would subscript it, str keys in double quotes: ``["exp_avg"]``, ``[0]``."""
    return json.dumps(key, ensure_ascii=False) if isinstance(key, str) else repr(key)


def _refused_name(error: pickle.UnpicklingError) -> str:
    match = _REFUSED_GLOBAL.search(str(error))
    return match.group(1) if match else "object that is not plain data"


def _first_line(error: BaseException) -> str:
    """A third-party message cut to its first non-empty line, for one-line errors."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _names(value: Any, name: str) -> bool:
    """Whether ``value`` (or its class) is what the unpickler called ``name``."""
    for thing in (value, type(value)):
        qualname = getattr(thing, "__qualname__", None)
        module = getattr(thing, "__module__", None)
        if isinstance(qualname, str) and name in (qualname, f"{module}.{qualname}"):
            return True
    return False


def _is_plain_name(name: str) -> bool:
    """A name that stays inside the folder it is joined to."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


# --- writing ----------------------------------------------------------------------


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each durably (its parent fsync'd)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        _fsync_folder(directory.parent)
    if not folder.is_dir():
        raise CheckpointError(f"cannot save a checkpoint to {folder}: it is not a folder")


def _free_tag(folder: Path, step: int, artifact_names: list[str]) -> str:
    """The step as file names carry it, clear of every file the committed manifest lists.

    Saving the committed step again (a resumed run, ``best/`` at an unchanged step)
    must not overwrite the files that are still the only loadable checkpoint.
    """
    listed = _committed_files(folder)
    revision = 0
    while True:
        tag = f"{step:08d}" if revision == 0 else f"{step:08d}r{revision}"
        names = [f"model-{tag}.safetensors", f"state-{tag}.pt"]
        names += [f"artifact-{tag}-{name}" for name in artifact_names]
        if listed.isdisjoint(names):
            return tag
        revision += 1


def _committed_files(folder: Path) -> set[str]:
    """The files the committed manifest lists; none if it is missing or unreadable."""
    try:
        _, layout = _read_manifest(folder)
    except CheckpointError:
        # Nothing loadable is there to protect, so any name will do.
        return set()
    return {entry.file for entry in layout.entries()}


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen partly written."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_BINARY (Windows only) stops newline translation of the bytes written.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                # os.write may write less than asked (large buffers, signals).
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        # Best effort: the next save removes whatever is left, as it does after a kill.
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _fsync_folder(folder: Path) -> None:
    """Make the folder's entries (creations, renames) durable."""
    if os.name != "posix":
        return  # Windows cannot open a folder to fsync it
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_unlisted(folder: Path, keep: set[str]) -> None:
    """Remove the files of older saves and the leftovers of interrupted ones."""
    for name in os.listdir(folder):
        temporary = _TEMPORARY.fullmatch(name)
        ours = temporary.group(1) if temporary else name
        if name not in keep and (ours == MANIFEST or _DATA_FILE.fullmatch(ours)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)


# --- reading ----------------------------------------------------------------------


def _read_manifest(folder: Path) -> tuple[dict[str, Any], _Layout]:
    """The parsed manifest and the files it lists, every field checked."""
    path = folder / MANIFEST
    try:
        if path.is_symlink():
            raise CheckpointError(f"{path}: is a symbolic link (expected a plain file)")
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise CheckpointError(
                f"{path}: {size} bytes, over {MAX_MANIFEST_BYTES // 2**20} MiB "
                "(expected a checkpoint manifest of a few hundred bytes)"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {folder} ({MANIFEST} missing)") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        manifest = json.loads(raw)
    except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8
        raise CheckpointError(f"{path}: not valid JSON ({_first_line(error)})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: expected format {FORMAT!r}, got {manifest.get('format')!r}")
    version = manifest.get("version")
    if version != VERSION or isinstance(version, bool):
        raise CheckpointError(
            f"{path}: format version {version!r} is not supported (this rnnkit reads version {VERSION})"
        )
    step = manifest.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: malformed: step: expected an int ≥ 0, got {step!r}")
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, dict):
        raise CheckpointError(
            f"{path}: malformed: artifacts: expected an object, got {artifacts!r}"
        )
    layout = _Layout(
        step=step,
        weights=_file_entry(manifest.get("weights"), "weights", path),
        state=_file_entry(manifest.get("state"), "state", path),
        artifacts={
            name: _file_entry(entry, f"artifacts[{_key(name)}]", path)
            for name, entry in artifacts.items()
        },
    )
    return manifest, layout


def _file_entry(raw: object, where: str, path: Path) -> _FileEntry:
    """One file's record from the manifest, refusing anything that leaves the folder."""
    expected = "expected {'file': plain name, 'size': int ≥ 0, 'sha256': 64 hex digits}"
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: malformed: {where}: {expected}, got {raw!r}")
    file, size, sha256 = raw.get("file"), raw.get("size"), raw.get("sha256")
    if (
        not isinstance(file, str)
        or not _is_plain_name(file)
        or file == MANIFEST
        or isinstance(size, bool)
        or not isinstance(size, int)
        or size < 0
        or not isinstance(sha256, str)
        or not _SHA256.fullmatch(sha256)
    ):
        raise CheckpointError(f"{path}: malformed: {where}: {expected}, got {raw!r}")
    return _FileEntry(file, size, sha256)


def _read_verified(folder: Path, entry: _FileEntry) -> bytes:
    """A listed file's bytes, refused unless they are exactly what was saved."""
    path = folder / entry.file
    try:
        if path.is_symlink():
            raise CheckpointError(f"{path}: is a symbolic link (expected a plain file)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing ({MANIFEST} lists it)") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror})") from None
    if len(data) != entry.size:
        raise CheckpointError(
            f"{path} changed after it was saved: expected {entry.size} bytes, found {len(data)}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise CheckpointError(
            f"{path} changed after it was saved: sha256 {digest[:16]}…, expected {entry.sha256[:16]}…"
        )
    return data


def _parse_weights(path: Path, data: bytes) -> dict[str, Tensor]:
    try:
        return safetensors.torch.load(data)
    except Exception as error:  # safetensors raises its own SafetensorError
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({_first_line(error)})"
        ) from error


def _parse_state(path: Path, data: bytes) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of a refused payload before refusing
            # it; the refusal below says all there is to say, in one line.
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        # weights_only refuses before constructing anything: the object never ran.
        raise CheckpointError(
            f"{path}: refused: holds a pickled {_refused_name(error)}, not plain training "
            "state (it was not executed)"
        ) from None
    except Exception as error:  # a damaged zip archive, a truncated pickle stream, ...
        raise CheckpointError(
            f"{path}: not a readable state file ({_first_line(error)})"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: expected a dict of training state, got {type(state).__name__}"
        )
    return state
