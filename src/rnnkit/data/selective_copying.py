"""The selective-copying task of Mamba (Gu & Dao 2023), generated from a seed.

A sequence has ``length`` + ``tokens`` steps. Among the first ``length`` steps,
``tokens`` distinct positions, drawn uniformly and kept in order, hold data symbols
drawn uniformly from 1 … V; every other one of them holds noise (0). Then come
``tokens`` markers (V + 1), and at the j-th marker the target is the j-th data
symbol. Unlike the copy-memory task (:mod:`rnnkit.data.copy_memory`) the spacing is
random, so counting steps does not solve it: a model has to decide, token by token,
what to keep. For V = 3, 2 tokens and length 6 (``.`` noise, ``?`` the marker;
``selective_copying(1, 6, 2, 3, seed=202)``)::

    inputs   .  2  .  .  3  .  ?  ?
    targets                    2  3

The defaults are the paper's setting. Gu & Dao, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces" (arXiv:2312.00752), appendix E.1 "Selective
Copying": "sequences of length 4096, with a vocab size of 16 possible tokens
(including the white 'noise' token from Figure 2) and requiring models to memorize
16 'data' tokens"; 2-layer models of width D = 64, trained for 400K steps at a
constant learning rate of 0.0001 with a batch size of 64. Their Table 1 reports
accuracy 18.3 % for S4, 57.0 % for H3, 30.1 % for Hyena, 97.0 % for S6 without a
gate and 99.8 % for Mamba (S6). Feng et al., "Were RNNs All We Needed?"
(arXiv:2410.01201) train minGRU and minLSTM on this task with 1 to 3 layers
(their setting was not checked here; see the registry entry).

Where the paper is silent, this follows the copying generator of the S4 repository
(state-spaces/s4, ``src/dataloaders/datasets/copying.py`` with ``variable=True``),
which public reproductions of the paper use: the 16 tokens are the noise, V = 14
data symbols and the marker; the markers come after the scattered stretch. Here
``length`` counts the whole stretch the data tokens are scattered in (4096 steps,
then 16 markers: 4112 in all); S4's ``l_noise`` counts its noise steps alone.

A model that copies nothing is right on 1/V of the copied tokens (7.1 % for
V = 14, :func:`selective_copying_chance`) and on a whole sequence with probability
V^−k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import torch
from torch import Tensor

from rnnkit.data.tags import UNSCORED
from rnnkit.data.vocab import SPECIAL_TOKENS, Vocabulary

NOISE = 0
"""Symbol 0 is noise; 1 … V are the data symbols; V + 1 is the marker."""
LENGTH = 4096
"""The paper's sequence length: the steps the data tokens are scattered in."""
TOKENS = 16
"""The paper's number of data tokens to copy."""
SYMBOLS = 14
"""Data symbols V: the paper's 16-token vocabulary less the noise and the marker."""
NOISE_NAME = "."
MARKER_NAME = "?"
_CHUNK = 1024  # rows drawn at once: the positions' float64 scores stay 1024 × length


@dataclass(frozen=True)
class SelectiveCopyingBatch:
    """One batch of the selective-copying task.

    Attributes:
        inputs: ``(B, L + k)`` symbols: k data symbols (1 … V) among noise (0) in the
            first L steps, then k markers (V + 1).
        targets: ``(B, k)`` int64, the data symbols in order: what each marker asks for.
        positions: ``(B, k)`` int64, the increasing steps the data symbols sit at.
    """

    inputs: Tensor
    targets: Tensor
    positions: Tensor


def selective_copying(
    batch: int,
    length: int = LENGTH,
    tokens: int = TOKENS,
    symbols: int = SYMBOLS,
    seed: int = 0,
    dtype: torch.dtype = torch.int64,
) -> SelectiveCopyingBatch:
    """A reproducible batch: ``tokens`` data symbols from 1 … ``symbols`` scattered in
    ``length`` steps, then ``tokens`` markers; ``dtype`` is the inputs' integer type
    (``torch.uint8`` stores a large split in a byte per step)."""
    _at_least("batch", batch, 1)
    _at_least("tokens", tokens, 1)
    _at_least("length", length, tokens, f"tokens ({tokens})")
    _at_least("symbols", symbols, 2)
    is_integer = dtype != torch.bool and not dtype.is_floating_point and not dtype.is_complex
    if not is_integer or torch.iinfo(dtype).max < symbols + 1:
        raise ValueError(f"dtype: expected an integer dtype that holds the marker "
                         f"{symbols + 1}, got {dtype}")  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.full((batch, length + tokens), NOISE, dtype=dtype)  # (B, L + k)
    inputs[:, length:] = symbols + 1
    targets = torch.empty(batch, tokens, dtype=torch.int64)  # (B, k)
    positions = torch.empty(batch, tokens, dtype=torch.int64)  # (B, k)
    for start in range(0, batch, _CHUNK):
        rows = slice(start, min(start + _CHUNK, batch))
        count = rows.stop - start
        # The k largest of L i.i.d. scores are a uniformly drawn k-subset (float64: no ties).
        scores = torch.rand(count, length, generator=generator, dtype=torch.float64)
        where = scores.topk(tokens, dim=1).indices.sort(dim=1).values  # (R, k)
        drawn = torch.randint(1, symbols + 1, (count, tokens), generator=generator)  # (R, k)
        positions[rows], targets[rows] = where, drawn
        inputs[rows].scatter_(1, where, drawn.to(dtype))
    return SelectiveCopyingBatch(inputs, targets, positions)


def selective_copying_chance(symbols: int) -> float:
    """The accuracy on copied tokens of a model that copies nothing, 1/``symbols``."""
    _at_least("symbols", symbols, 2)
    return 1.0 / symbols


def symbol_names(symbols: int) -> tuple[str, ...]:
    """The symbols as text, in symbol order: ``.`` (noise), ``1`` … ``V``, ``?`` (marker)."""
    _at_least("symbols", symbols, 2)
    return (NOISE_NAME, *(str(s) for s in range(1, symbols + 1)), MARKER_NAME)


def tag_names(symbols: int) -> tuple[str, ...]:
    """What a marker can ask for, in tag-id order: the data symbols ``1`` … ``V``."""
    return symbol_names(symbols)[1:-1]


def vocabulary(symbols: int) -> Vocabulary:
    """The symbols' vocabulary: symbol s has id s + 4 (the special tokens come first)."""
    return Vocabulary(symbol_names(symbols))


Example = tuple[list[int], list[int]]  # token ids, tag ids (the tagging task's example)


class CopyingExamples(Sequence[Example]):
    """A generated split as the tagging task's examples, made row by row on access.

    Example i is ``(token ids, tag ids)`` over its L + k steps: the ids of
    :func:`vocabulary` (symbol + 4), and as tags the data symbol − 1 at each marker
    (the ids of :func:`tag_names`) and :data:`~rnnkit.data.tags.UNSCORED` at every
    other step, which is read but neither trained on nor scored. The split is held
    as one byte per step.
    """

    def __init__(self, batch: SelectiveCopyingBatch) -> None:
        self.batch = batch
        self.length = batch.inputs.shape[1] - batch.targets.shape[1]  # L

    @staticmethod
    def generate(size: int, length: int, tokens: int, symbols: int, seed: int) -> CopyingExamples:
        """``size`` examples of :func:`selective_copying` from ``seed``."""
        dtype = torch.uint8 if symbols + 1 <= torch.iinfo(torch.uint8).max else torch.int32
        return CopyingExamples(selective_copying(size, length, tokens, symbols, seed, dtype))

    def __len__(self) -> int:
        return self.batch.inputs.shape[0]

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...

    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        ids = (self.batch.inputs[index].to(torch.int64) + len(SPECIAL_TOKENS)).tolist()
        tags = [UNSCORED] * self.length + (self.batch.targets[index] - 1).tolist()
        return ids, tags


def _at_least(name: str, value: object, least: int, shown: str | None = None) -> None:
    """``value`` is an int ≥ ``least`` (``shown``: how the bound is named), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        expected = (
            "a positive int" if least == 1 and shown is None else f"an int ≥ {shown or least}"
        )
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
