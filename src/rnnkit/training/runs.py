"""Reading a run folder back: its resolved configuration and its best weights.

The Trainer writes a run folder (``config.toml``, ``checkpoints/last`` and
``checkpoints/best``); these read it, each refusal one line naming the file.
"""

from __future__ import annotations

import tomllib
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
