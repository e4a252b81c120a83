"""x·Wᵀ (+ b) for every step at once: the backends' large products, on the faster library here.

Before and after their loops over time, the backends multiply all T·B rows at once:
the input projection U·x of every step (:mod:`rnnkit.bptt.fused`, and P = U·x of
:mod:`rnnkit.bptt.scan`), and in the backward ∂L/∂x = ∂L/∂A·U. Both have the form
of a linear layer, ``(N, K) · (M, K)ᵀ → (N, M)``.

torch runs ``torch.mm`` and ``F.linear`` on float32 CPU tensors through its BLAS
(MKL in the pip wheels), and oneDNN's inner product through
``torch.ops.mkldnn._linear_pointwise`` (what ``torch.compile``'s CPU backend calls
for a linear layer). Which is faster depends on the CPU: on the project's 2-core AMD
EPYC (AVX-512), MKL's kernels reach 188 GFLOP/s on a 1024² product and oneDNN's
443; the minGRU's projection at B = 16, T = 4,096, I = 32, H = 128 took 7.5 ms
through ``torch.mm`` and 2.9 ms through oneDNN, its ∂L/∂x 9.0 and 3.9 ms (two
threads, 2026-12-07). On Intel CPUs MKL is usually the faster one. So the choice is
measured where it runs, not assumed (:class:`Chooser`): the first product of a new
shape key times both on the first rows of the call's own operands, interleaved after
warm-up rounds, and oneDNN is kept only when its median beats BLAS's by more than
:data:`MARGIN`. The choice stays for the rest of the process; it never flips on
noise.

The key is (N and M rounded up to powers of two, K exactly, threads). Products below
:data:`MIN_WORK` multiply-adds, float64 (oneDNN has no float64 inner product),
other devices and a torch without the op stay on ``torch.mm``. The two libraries
round differently (their sums run in other orders), so a float32 result may differ
in its last bits between them; rnnkit's oracle tests run in float64, which never
takes this path.

``RNNKIT_PROJECTION``: ``auto`` (the default, measured), ``blas`` (always
``torch.mm``) or ``onednn`` (oneDNN wherever it applies, unmeasured).

The weight gradients ∂L/∂U = ∂L/∂Aᵀ·x reduce over all T·B rows (K = T·B in linear
form, with both operands transposed); oneDNN's inner product copies such operands
first, and its own backward-weights kernel was no faster on the machine above (6.5
ms against MKL's 8.3, before the copies into its layout), so they stay ``torch.mm``.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

ENV = "RNNKIT_PROJECTION"
MODES = ("auto", "blas", "onednn")
MARGIN = 0.05  # oneDNN must beat BLAS's median by more than 5 % to be chosen
MIN_WORK = 1 << 22  # N·K·M below this: oneDNN's per-call cost is not earned back
# The first calls of a new large product fault in fresh heap pages for its output:
# measured here at B = 16, T = 4,096, oneDNN's first two or three calls took 17–21
# ms and the next ones 3.5–4.4, so a single warm-up call left oneDNN looking slower.
WARMUP = 3  # untimed rounds of both libraries first
REPEATS = 5  # timed rounds, interleaved
# The timing runs on the first rows of the call's x only, at most this many output
# elements (8 MiB in float32; at least 256 rows): per row, both libraries cost the
# same at any row count this large, and a full-size trial would add a whole extra
# output to the first step's peak memory (100 MB for the GRU's U·x at B = 16,
# T = 4,096, H = 128) and time to its first call.
TRIAL_ELEMENTS = 1 << 21


def mode() -> str:
    """``RNNKIT_PROJECTION``, checked: ``auto``, ``blas`` or ``onednn``.

    Raises:
        ValueError: another value.
    """
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}: expected one of {', '.join(MODES)}, got {value!r}")
    return value


def _onednn_available() -> bool:
    available = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    return bool(available) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def blas(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x·weightᵀ (+ bias) through ``torch.mm``/``torch.addmm`` (torch's BLAS)."""
    return torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())


def onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x·weightᵀ (+ bias) through oneDNN's inner product (float32 CPU tensors)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")  # type: ignore[no-any-return]


_LIBRARIES: dict[str, Callable[[Tensor, Tensor, Tensor | None], Tensor]] = {
    "blas": blas,
    "onednn": onednn,
}


@dataclass(frozen=True)
class Key:
    """What a choice is kept for: rows and outputs rounded up to powers of two."""

    rows: int
    inner: int
    outputs: int
    threads: int


def key_of(x: Tensor, weight: Tensor) -> Key:
    rows, outputs = x.shape[0], weight.shape[0]
    return Key(
        1 << max(rows - 1, 0).bit_length(),
        x.shape[1],
        1 << max(outputs - 1, 0).bit_length(),
        torch.get_num_threads(),
    )


def decide(seconds: Mapping[str, float], margin: float = MARGIN) -> str:
    """``"onednn"`` when its median beats BLAS's by more than ``margin``, else ``"blas"``."""
    if seconds["onednn"] < (1 - margin) * seconds["blas"]:
        return "onednn"
    return "blas"


class Chooser:
    """The measured choice of library per :class:`Key`, kept for the process.

    ``clock`` is the timer (a fake one in the tests); ``run`` the libraries by name.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        run: Mapping[str, Callable[[Tensor, Tensor, Tensor | None], Tensor]] = _LIBRARIES,
    ) -> None:
        self.clock = clock
        self.run = run
        self.choices: dict[Key, str] = {}
        self._lock = threading.Lock()

    def choose(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> str:
        """The library for this product: measured on these operands at a key's first call."""
        key = key_of(x, weight)
        found = self.choices.get(key)
        if found is not None:
            return found
        with self._lock:
            if key not in self.choices:
                self.choices[key] = decide(self._measure(x, weight, bias))
            return self.choices[key]

    def _measure(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> dict[str, float]:
        """Median seconds per call of each library, interleaved after :data:`WARMUP` rounds,
        on at most :data:`TRIAL_ELEMENTS` output elements' rows of ``x``."""
        rows = max(256, TRIAL_ELEMENTS // max(weight.shape[0], 1))
        x = x[:rows]
        samples: dict[str, list[float]] = {name: [] for name in self.run}
        for _ in range(WARMUP):
            for library in self.run.values():
                library(x, weight, bias)
        for _ in range(REPEATS):
            for name, library in self.run.items():
                start = self.clock()
                library(x, weight, bias)
                samples[name].append(self.clock() - start)
        return {name: statistics.median(values) for name, values in samples.items()}


_CHOOSER = Chooser()


def default_chooser() -> Chooser:
    """The process's :class:`Chooser` (its ``choices`` show what was measured)."""
    return _CHOOSER


def eligible(x: Tensor, weight: Tensor) -> bool:
    """Whether oneDNN can run this product and is worth timing: float32 CPU, large enough."""
    return (
        x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.shape[0] * x.shape[1] * weight.shape[0] >= MIN_WORK
        and _onednn_available()
    )


def project(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x·weightᵀ (+ bias): ``x (N, K)``, ``weight (M, K)``, ``bias (M,)`` → ``(N, M)``.

    Not differentiable by autograd on the oneDNN path: the backends call it inside
    their ops' kernels and formulas, where autograd does not record.
    """
    chosen = mode()
    if chosen == "blas" or not eligible(x, weight):
        return blas(x, weight, bias)
    if chosen == "auto":
        chosen = _CHOOSER.choose(x, weight, bias)
    return _LIBRARIES[chosen](x, weight, bias)


def project_back(grad: Tensor, weight: Tensor) -> Tensor:
    """grad·weight, the input gradient of :func:`project`: ``(N, M)``, ``(M, K)`` → ``(N, K)``."""
    if mode() == "blas" or not eligible(grad, weight.t()):
        return torch.mm(grad, weight)
    return project(grad, weight.t().contiguous())
