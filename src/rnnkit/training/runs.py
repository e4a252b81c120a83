"""Reading a run folder back: its resolved configuration, its best weights and its assets.

The Trainer writes a run folder (``config.toml``, ``checkpoints/last`` and
``checkpoints/best``); these read it, each refusal one line naming the file.

A run's *assets* (vocabularies, labels, scalers: what a trained model needs besides
its weights) are a frozen dataclass whose fields each write themselves as JSON
(``to_json()``) and read themselves back (``from_json(data, path=...)``); they are
saved with every checkpoint as one file per field, ``FIELD.json``.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from rnnkit.configuration import ConfigError, from_mapping
from rnnkit.training.checkpoint import Checkpoint, check_fits, has_checkpoint, load_checkpoint

R = TypeVar("R")


class RunFolderError(ValueError):
    """A run folder that cannot be read back; one line naming the file (exit status 2)."""

    def __init__(self, message: str, *, path: Path | str) -> None:
        super().__init__(f"{path}: {message}")


def config_file(run_dir: Path | str) -> Path:
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise RunFolderError("not a run folder (config.toml missing)", path=Path(run_dir))
    return path


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RunFolderError(f"not valid TOML: {error}", path=path) from None


def read_config(run_dir: Path | str, cls: type[R]) -> R:
    """The run's resolved configuration, checked key by key."""
    path = config_file(run_dir)
    try:
        return from_mapping(cls, read_toml(path))
    except ConfigError as error:
        raise RunFolderError(str(error), path=path) from None


def load_weights(run_dir: Path | str) -> Checkpoint:
    """The run's ``best`` checkpoint, else its ``last``."""
    folder = Path(run_dir) / "checkpoints"
    for name in ("best", "last"):
        if has_checkpoint(folder / name):
            return load_checkpoint(folder / name)
    raise RunFolderError("no checkpoint yet (checkpoints/best and checkpoints/last missing)",
                    path=folder)  # fmt: skip


def load_into(model: Any, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's weights into ``model``, refused in one line naming the weights
    file unless every name and shape matches: torch's own refusal is many lines."""
    check_fits(checkpoint.weights, model.state_dict(), checkpoint.path_of("weights"))
    model.load_state_dict(checkpoint.weights)


def asset_files(assets: Any) -> dict[str, bytes]:
    """The assets dataclass as checkpoint files, one ``FIELD.json`` per field."""
    files = {}
    for field in dataclasses.fields(assets):
        text = getattr(assets, field.name).to_json()
        files[f"{field.name}.json"] = text.encode() if isinstance(text, str) else text
    return files


def asset_bytes(files: Mapping[str, bytes], name: str, where: Path) -> bytes:
    """The checkpoint's file ``name``, or a one-line error naming the checkpoint."""
    if name not in files:
        raise RunFolderError(f"the checkpoint has no {name} (was it made by another task?)",
                             path=where)  # fmt: skip
    return files[name]


def read_assets(cls: type[R], files: Mapping[str, bytes], where: Path) -> R:
    """The assets dataclass ``cls`` back from :func:`asset_files`'s files, each field read
    by its type's ``from_json`` (``where``: the checkpoint folder, for errors)."""
    types = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{field.name}.json"
        data = asset_bytes(files, name, where)
        values[field.name] = types[field.name].from_json(data, path=where / name)
    return cls(**values)
