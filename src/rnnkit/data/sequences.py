"""Labelled real-valued sequences (``T × C`` floats and a label) for many-to-one tasks.

:func:`scaled_examples` turns a dataset's train, valid and test parts into tensors,
with the labels and the per-channel :class:`Scaler` made from the training part
alone, so no statistic of valid or test reaches training.
:class:`SequenceAssets` are saved with a run's checkpoints as ``labels.json`` and
``scaler.json``; :func:`read_unlabelled` reads the sequences ``rnnkit predict`` is
given; :func:`adding_examples` generates the adding problem's parts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.data.batching import Scaler
from rnnkit.data.errors import DataError
from rnnkit.data.formats.ts import parse_json_sequence, read_sequences
from rnnkit.data.labels import LABELS_FILE, Labels
from rnnkit.data.splits import SPLITS

SCALER_FILE = "scaler.json"
Labelled = list[tuple[list[list[float]], str]]
# One sequence (T, C) and its target: a class id (0-dim int64), or a regression
# target (K,).
Example = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class SequenceAssets:
    """What a trained run keeps: its labels (none for a regression) and its scaler."""

    labels: Labels
    scaler: Scaler | None

    def files(self) -> dict[str, bytes]:
        """``labels.json``, and ``scaler.json`` when the channels are scaled."""
        files = {LABELS_FILE: self.labels.to_json()}
        if self.scaler is not None:
            files[SCALER_FILE] = json.dumps(self.scaler.state_dict()).encode()
        return files

    @staticmethod
    def from_files(files: Mapping[str, bytes], where: Path) -> SequenceAssets:
        """The assets back from :meth:`files` (``where``: the checkpoint, for errors)."""
        if LABELS_FILE not in files:
            raise DataError(f"the checkpoint has no {LABELS_FILE} (was it made by another "
                            "task?)", path=where)  # fmt: skip
        labels = Labels.from_json(files[LABELS_FILE], path=where / LABELS_FILE)
        if SCALER_FILE not in files:
            return SequenceAssets(labels, None)
        try:
            state = json.loads(files[SCALER_FILE].decode("utf-8"))
        except (ValueError, RecursionError):
            raise DataError(f"{SCALER_FILE}: not valid JSON", path=where) from None
        scaler = Scaler()
        scaler.load_state_dict(state)
        return SequenceAssets(labels, scaler)

    def scale(self, xs: list[Tensor], channels: int | None, where: str) -> list[Tensor]:
        """New ``(T, C)`` sequences scaled as in training, refused unless ``C = channels``."""
        for i, x in enumerate(xs):
            if x.shape[1] != channels:
                raise DataError(f"{where}: sequence {i + 1} has {x.shape[1]} channels (expected "
                                f"{channels}, as the run was trained on)")  # fmt: skip
        return xs if self.scaler is None else [self.scaler.transform(x) for x in xs]


def to_examples(rows: Labelled, assets: SequenceAssets) -> list[Example]:
    """Labelled sequences as scaled ``(T, C)`` float32 tensors and class ids."""
    ids = assets.labels.ids([label for _, label in rows])
    xs = [torch.tensor(steps, dtype=torch.float32) for steps, _ in rows]
    if assets.scaler is not None:
        xs = [assets.scaler.transform(x) for x in xs]
    return [(x, torch.tensor(y)) for x, y in zip(xs, ids, strict=True)]


def scaled_examples(parts: dict[str, Labelled], *,
                    standardize: bool) -> tuple[SequenceAssets, dict[str, list[Example]]]:  # fmt: skip
    """Each part's examples, and the assets made from the training part: its labels
    (sorted, the commonest as the majority baseline) and, with ``standardize``, each
    channel's mean and standard deviation over every training step."""
    for name, rows in parts.items():
        if not rows:
            raise DataError(f"data: the {name} part is empty (expected some sequences)")
    channels = {len(steps[0]) for rows in parts.values() for steps, _ in rows}
    if len(channels) != 1:
        raise DataError(f"data: the parts' sequences have {sorted(channels)} channels (expected "
                        "one number of channels throughout)")  # fmt: skip
    train = [label for _, label in parts["train"]]
    labels = replace(Labels.of(train), majority=Counter(train).most_common(1)[0][0])
    if len(labels) < 2:
        raise DataError(f"data: the training part has one label ({labels.names[0]!r}); a "
                        "classifier needs at least two")  # fmt: skip
    labels.check({name: [y for _, y in rows] for name, rows in parts.items()}, "data")
    scaler = None
    if standardize:
        steps = [torch.tensor(s, dtype=torch.float32) for s, _ in parts["train"]]
        scaler = Scaler().fit(torch.cat(steps))  # every training step: (ΣT, C)
    assets = SequenceAssets(labels, scaler)
    return assets, {name: to_examples(rows, assets) for name, rows in parts.items()}


def read_unlabelled(inputs: tuple[str, ...], file: str | None,
                    max_length: int | None) -> list[tuple[Tensor, str]]:  # fmt: skip
    """Sequences to answer, each with how it is shown: JSON ``inputs`` (input 1, 2, …)
    and the sequences of a ``.ts``/``.npz`` ``file`` (``FILE#1``, …; labels ignored),
    each cut at ``max_length`` steps."""
    named = [(parse_json_sequence(text, f"input {i}")[:max_length],
              text if len(text) <= 40 else text[:39] + "…")
             for i, text in enumerate(inputs, start=1)]  # fmt: skip
    if file is not None:
        rows = read_sequences(file, max_length=max_length)
        named += [(steps, f"{file}#{i}") for i, (steps, _) in enumerate(rows, start=1)]
    if not named:
        raise DataError("give --file (a .ts or .npz file) or sequences as JSON arguments "
                        "([[x, y, …], …], one list per step)")  # fmt: skip
    return [(torch.tensor(steps, dtype=torch.float32), name) for steps, name in named]


def adding_examples(sizes: tuple[int, int, int], length: int,
                    seed: int) -> dict[str, list[Example]]:  # fmt: skip
    """The adding problem's train, valid and test examples (``(T, 2)`` inputs, ``(1,)``
    sums; :func:`rnnkit.data.synthetic.adding_problem`), from seeds ``seed``, +1, +2."""
    from rnnkit.data.synthetic import adding_problem

    parts = {}
    for offset, (name, size) in enumerate(zip(SPLITS, sizes, strict=True)):
        batch = adding_problem(size, length, seed=seed + offset)
        parts[name] = list(zip(batch.inputs.unbind(0), batch.targets.unsqueeze(-1), strict=True))
    return parts
