"""What ``rnnkit predict`` and ``rnnkit generate`` ask a trained run, checked on arrival.

Both are frozen dataclasses the CLI fills in from its flags; :class:`GenerateOptions`
refuses absurd requests before a run is loaded and carries the one generation loop
every generative task uses (:meth:`GenerateOptions.tokens`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rnnkit import decoding
from rnnkit.data.errors import DataError
from rnnkit.data.formats.text import read_lines
from rnnkit.training.budget import available_memory


@dataclass(frozen=True)
class PredictOptions:
    """What ``rnnkit predict`` asks a run.

    Attributes:
        inputs: inputs given on the command line (texts, sentences, source strings).
        file: a file of inputs in the task's format (one per line for text tasks).
        beam: beam width for sequence outputs (1: greedy).
        top: how many alternatives to show (classes, next tokens).
    """

    inputs: tuple[str, ...] = ()
    file: str | None = None
    beam: int = 1
    top: int = 3

    def lines(self, what: str) -> list[str]:
        """The inputs given on the command line, then the non-blank lines of ``--file``;
        none at all is refused (``what``: the inputs in words, e.g. ``texts``)."""
        lines = [*self.inputs, *(read_lines(self.file) if self.file else [])]
        if not lines:
            raise DataError(f"give {what} as arguments or --file (one per line)")
        return lines


@dataclass(frozen=True)
class GenerateOptions:
    """What ``rnnkit generate`` asks a generative run (char-rnn / nanoGPT conventions).

    Attributes:
        start: the prompt.
        length: tokens (or frames) to generate.
        temperature, top_k, top_p: sampling (:func:`rnnkit.decoding.sample`).
        beam: beam search instead of sampling when > 1.
        seed: the sampling seed; the same seed gives the same samples.
        num_samples: how many samples.
        condition: caption runs: the label or vector to generate from.
        out: music runs: the MIDI (``.mid``) or image (``.png``) file to write.
    """

    start: str = ""
    length: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    beam: int = 1
    seed: int = 0
    num_samples: int = 1
    condition: str | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        # Refused here, before a run is loaded: every generation streams with flat
        # memory, so the bounds are what a counter, a wait or beam search can hold.
        if not (isinstance(self.length, int) and 1 <= self.length <= MAX_LENGTH):
            raise DataError(f"--length: expected an integer in 1 … {MAX_LENGTH:.0e}, got "
                            f"{self.length}")  # fmt: skip
        if not (isinstance(self.num_samples, int) and 1 <= self.num_samples <= MAX_SAMPLES):
            raise DataError(f"--num-samples: expected an integer in 1 … {MAX_SAMPLES:,}, got "
                            f"{self.num_samples}")  # fmt: skip
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise DataError(f"--temperature: expected a finite number > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise DataError(f"--top-k: expected an integer ≥ 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:  # NaN fails too
            raise DataError(f"--top-p: expected a number in (0, 1], got {self.top_p}")
        if self.beam < 1:
            raise DataError(f"--beam: expected an integer ≥ 1, got {self.beam}")
        # Beam search holds about eight (beam, length) int64 tensors at once.
        need, have = 64 * self.beam * self.length, available_memory()
        if self.beam > 1 and need > have:
            raise DataError(f"--length: beam search of width {self.beam} over {self.length} "
                            f"tokens needs about {need / 2**30:.1f} GiB, more than the "
                            f"{have / 2**30:.1f} GiB available")  # fmt: skip

    def tokens(self, model: Any, last: torch.Tensor, state: Any, generator: torch.Generator,
               banned: Sequence[int], *, eos_id: int | None = None, pad_id: int = 0,
               length_penalty: float = 1.0) -> Iterator[int]:  # fmt: skip
        """The tokens of one row's generation after its token ``last`` (``(1,)``) and
        ``state``, as they come: the likeliest continuation by beam search when
        ``beam > 1`` (:func:`rnnkit.decoding.beam_search`), else sampled with the
        temperature, top-k and top-p from ``generator`` (:func:`rnnkit.decoding.stream`);
        up to ``length`` tokens, fewer at ``eos_id``."""
        if self.beam > 1:
            best = decoding.beam_search(model, last, state, max_length=self.length,
                                        beam_size=self.beam, length_penalty=length_penalty,
                                        eos_id=eos_id, pad_id=pad_id, banned=banned).best  # fmt: skip
            yield from best.tokens[0, : int(best.lengths[0])].tolist()
            return
        for step in decoding.stream(model, last, state, max_length=self.length,
                                    temperature=self.temperature, top_k=self.top_k,
                                    top_p=self.top_p, eos_id=eos_id, pad_id=pad_id,
                                    generator=generator, banned=banned):  # fmt: skip
            yield int(step.tokens[0])


# A generation ends; 10^12 tokens take years at any speed, and a count beyond int64
# cannot be a tensor size.
MAX_LENGTH = 10**12
# Samples are generated one after another, each printed as it goes; more than this
# is not a request anyone reads.
MAX_SAMPLES = 100_000
