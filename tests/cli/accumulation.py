"""Gradient accumulation through the command users type: ``--batch-size b --accumulate k``
must end with the weights of ``--batch-size b·k`` (dropout off, the same seed)."""

from __future__ import annotations

from pathlib import Path

import torch

from rnnkit.cli.main import main
from rnnkit.training.checkpoint import load_checkpoint

# Float32 sums in another order, through a few optimizer steps: a few ulps of the
# weights' scale, far below any difference a wrong split of the batch makes (1e-3).
TOLERANCE = 1e-6


def weights_after(
    out: Path, command: list[str], batch_size: int, accumulate: int
) -> dict[str, torch.Tensor]:
    """Train ``command`` (``["train", TASK, ...]``, without ``--out``) into ``out``, by SGD.

    SGD, whatever the task's default: its update is linear in the gradient, so two
    runs whose gradients differ by float32 rounding end within lr times that rounding.
    Adam divides each entry by its own running scale, so an entry whose true gradient
    is 0 moves by up to lr in the direction of its rounding noise (a fused BiLSTM's
    W_hh entry moved 4.4e-6 apart in three steps at lr 0.02, the Python loops' 8.6e-7),
    which says nothing about how the batch was split.
    """
    argv = [*command, "--optimizer", "sgd", "--out", str(out), "--no-report", "--progress",
            "off", "--batch-size", str(batch_size), "--accumulate", str(accumulate)]  # fmt: skip
    assert main(argv) == 0
    return load_checkpoint(out / "checkpoints" / "last").weights


def assert_accumulation_is_exact(tmp_path: Path, command: list[str], *, batch_size: int = 4,
                                 accumulate: int = 4) -> None:  # fmt: skip
    """``--batch-size b --accumulate k`` and ``--batch-size b·k`` give the same weights,
    and both differ from the start (the steps did train)."""
    split = weights_after(tmp_path / "split", command, batch_size, accumulate)
    whole = weights_after(tmp_path / "whole", command, batch_size * accumulate, 1)
    assert split.keys() == whole.keys()
    worst = max(float((split[k].double() - whole[k].double()).abs().max()) for k in split)
    assert worst <= TOLERANCE, f"the weights differ by {worst:.3g}"
    # A control: one micro-batch of b alone is a different update.
    small = weights_after(tmp_path / "small", command, batch_size, 1)
    moved = max(float((small[k].double() - whole[k].double()).abs().max()) for k in whole)
    assert moved > 100 * TOLERANCE, f"the control differs by only {moved:.3g}"


def with_cell(command: list[str], cell: str) -> list[str]:
    """``command`` with ``--backend fused`` swapped for ``--cell CELL`` (auto: the scan)."""
    at = command.index("--backend")
    return [*command[:at], "--cell", cell, *command[at + 2 :]]


def assert_minimal_cells_train(tmp_path: Path, command: list[str], **sizes: int) -> None:
    """The task trains ``--cell mingru`` and ``--cell minlstm`` (by scan), and their
    accumulation is exact too: the scan backend through the task's whole path."""
    for cell in ("mingru", "minlstm"):
        folder = tmp_path / cell
        assert_accumulation_is_exact(folder, with_cell(command, cell), **sizes)
        assert f'cell = "{cell}"' in (folder / "whole" / "config.toml").read_text()
