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

The choices live in the process only (so do the compiled loops' own, in
``loops.cpp``). A later process measures again, and where the two libraries are
within noise of each other it may choose the other one: its float32 results then
differ in their last bits. A run resumed in a new process therefore continues to
float32 rounding, not bit for bit, as with any change of threads; pin
``RNNKIT_PROJECTION`` where bit-identical reruns matter: it pins the compiled loops'
choices too (``rnnkit.bptt.compiled``). float64 never takes oneDNN.

The weight gradients ∂L/∂U = ∂L/∂Aᵀ·x (:func:`weight_grad`) reduce over all T·B
rows, with both operands transposed in linear form. oneDNN runs them through its
inner product's backward-for-weights kernel, after copying both operands into its
own tensors. Whether that pays depends on the shape as much as on the CPU: on the
machine above, at one thread, a minGRU layer's 730 × 365 gradient over 1,600 rows
took 9.6 ms through MKL and 4.9 through oneDNN, copies included, while the minGRU
benchmark's 256 × 32 over 65,536 rows took 16.6 and 45.3 ms. So it is measured per
shape too (on the first :data:`TRIAL_ROWS` rows), and gradients narrower than
:data:`MIN_GRAD_WIDTH` stay on BLAS untimed. The compiled fused loops add their
weight gradients chunk by chunk in C++ (256 rows a chunk at (a), where oneDNN was
no faster) and keep ``at::addmm``.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rnnkit.stamps import Stamp, stamp
from rnnkit.timing import time_interleaved

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
TRIAL_ROWS = 4096  # a weight gradient's trial: the first rows of both operands
MIN_GRAD_WIDTH = 64  # a weight gradient narrower than this stays on BLAS


def mode() -> str:
    """``RNNKIT_PROJECTION``, checked: ``auto``, ``blas`` or ``onednn``.

    Raises:
        ValueError: another value.
    """
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}: expected one of {', '.join(MODES)}, got {value!r}")
    return value


@functools.cache
def _onednn_available() -> bool:
    available = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    return bool(available) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


Library = Callable[..., Tensor]


def blas(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x·weightᵀ (+ bias) through ``torch.mm``/``torch.addmm`` (torch's BLAS)."""
    return torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())


def onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x·weightᵀ (+ bias) through oneDNN's inner product (float32 CPU tensors)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")  # type: ignore[no-any-return]


def blas_grad(grad: Tensor, x: Tensor) -> Tensor:
    """gradᵀ·x through ``torch.mm`` (torch's BLAS)."""
    return torch.mm(grad.t(), x)


def onednn_grad(grad: Tensor, x: Tensor) -> Tensor:
    """gradᵀ·x through oneDNN's inner-product backward for weights.

    Its operands are copied into oneDNN's own tensors first (``to_mkldnn``: a pass
    over each, and memory for the copies while it runs).
    """
    shape = torch.empty(grad.shape[1], x.shape[1]).to_mkldnn()  # read for its sizes only
    weights, _ = torch.ops.aten.mkldnn_linear_backward_weights(
        grad.contiguous().to_mkldnn(), x.contiguous().to_mkldnn(), shape, False
    )
    return weights.to_dense()  # type: ignore[no-any-return]


_LIBRARIES: dict[str, Library] = {"blas": blas, "onednn": onednn}
_GRADS: dict[str, Library] = {"blas": blas_grad, "onednn": onednn_grad}


@dataclass(frozen=True)
class Key:
    """What a choice is kept for: which product, its sizes rounded up to powers of two
    (``inner`` exactly, for a projection), and the thread count."""

    product: str
    rows: int
    inner: int
    outputs: int
    threads: int


def _power(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def key_of(x: Tensor, weight: Tensor) -> Key:
    """The key of the projection x·weightᵀ."""
    return Key("project", _power(x.shape[0]), x.shape[1], _power(weight.shape[0]),
               torch.get_num_threads())  # fmt: skip


def grad_key_of(grad: Tensor, x: Tensor) -> Key:
    """The key of the weight gradient gradᵀ·x."""
    return Key("weight_grad", _power(grad.shape[0]), _power(grad.shape[1]), _power(x.shape[1]),
               torch.get_num_threads())  # fmt: skip


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
        run: Mapping[str, Library] = _LIBRARIES,
    ) -> None:
        self.clock = clock
        self.run = run
        self.choices: dict[Key, str] = {}
        self._lock = threading.Lock()

    def choose(self, key: Key, trial: tuple[Tensor | None, ...]) -> str:
        """The library for ``key``: measured on the ``trial`` operands at its first call."""
        found = self.choices.get(key)
        if found is not None:
            return found
        with self._lock:
            if key not in self.choices:
                self.choices[key] = decide(self.measure(trial))
            return self.choices[key]

    def measure(self, trial: tuple[Tensor | None, ...]) -> dict[str, float]:
        """Median seconds per call of each library, interleaved after :data:`WARMUP` rounds."""
        runs = {name: functools.partial(library, *trial) for name, library in self.run.items()}
        timings = time_interleaved(runs, REPEATS, warmup=WARMUP, clock=self.clock)
        return {name: timing.median for name, timing in timings.items()}


_CHOOSER = Chooser()
_GRAD_CHOOSER = Chooser(run=_GRADS)


def default_chooser() -> Chooser:
    """The process's :class:`Chooser` of projections (its ``choices``: what was measured)."""
    return _CHOOSER


def default_grad_chooser() -> Chooser:
    """The process's :class:`Chooser` of weight gradients."""
    return _GRAD_CHOOSER


def _float32_cpu(*tensors: Tensor) -> bool:
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


def eligible(x: Tensor, weight: Tensor) -> bool:
    """Whether oneDNN can run this projection and it is worth timing: float32 CPU, large."""
    return (
        _float32_cpu(x, weight)
        and x.shape[0] * x.shape[1] * weight.shape[0] >= MIN_WORK
        and _onednn_available()
    )


def grad_eligible(grad: Tensor, x: Tensor) -> bool:
    """Whether oneDNN can run this weight gradient and it is worth timing.

    A gradient with fewer than :data:`MIN_GRAD_WIDTH` rows or columns (the minGRU
    benchmark's 256 × 32 over 65,536 rows) stays on BLAS untimed: oneDNN ran that one
    4–5× slower, and its trial would copy both operands.
    """
    return (
        _float32_cpu(grad, x)
        and min(grad.shape[1], x.shape[1]) >= MIN_GRAD_WIDTH
        and grad.shape[0] * grad.shape[1] * x.shape[1] >= MIN_WORK
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
        rows = max(256, TRIAL_ELEMENTS // max(weight.shape[0], 1))
        chosen = _CHOOSER.choose(key_of(x, weight), (x[:rows], weight, bias))
    return _LIBRARIES[chosen](x, weight, bias)


def project_back(grad: Tensor, weight: Tensor) -> Tensor:
    """grad·weight, the input gradient of :func:`project`: ``(N, M)``, ``(M, K)`` → ``(N, K)``."""
    if mode() == "blas" or not eligible(grad, weight.t()):
        return torch.mm(grad, weight)
    return project(grad, transposed(weight))


# id(weight) → (a weak reference to it, its stamp, its transpose).
_TRANSPOSED: dict[int, tuple[weakref.ref[Tensor], Stamp, Tensor]] = {}


def _forget(key: int, _: object) -> None:
    _TRANSPOSED.pop(key, None)


def transposed(weight: Tensor) -> Tensor:
    """``weight.t().contiguous()``, kept while ``weight`` is unchanged.

    oneDNN's inner product takes its weight as ``(out, in)`` rows, so ∂L/∂x = grad·W
    needs Wᵀ laid out. A cell stepped through time (a decoder with input feeding)
    asks for it once per step of every backward pass; copying it each time cost a
    seq2seq step 5 ms (the 1024 × 320 decoder weight, 128 rows a step). The copy is
    made again when the weight may have changed: after any optimizer step (fused ones
    write without moving the version counter), an in-place change or a new storage
    (:mod:`rnnkit.stamps`); it lives as long as the weight, one copy per weight.
    """
    key = id(weight)
    now = stamp(weight)
    entry = _TRANSPOSED.get(key)
    if entry is not None and entry[0]() is weight and entry[1] == now:
        return entry[2]
    copy = weight.detach().t().contiguous()
    _TRANSPOSED[key] = (weakref.ref(weight, functools.partial(_forget, key)), now, copy)
    return copy


def weight_grad(grad: Tensor, x: Tensor) -> Tensor:
    """gradᵀ·x, the weight gradient of :func:`project`: ``(N, M)``, ``(N, K)`` → ``(M, K)``.

    Timed on the first :data:`TRIAL_ROWS` rows of both (the sum's terms).
    """
    chosen = mode()
    if chosen == "blas" or not grad_eligible(grad, x):
        return blas_grad(grad, x)
    if chosen == "auto":
        trial = (grad[:TRIAL_ROWS], x[:TRIAL_ROWS])
        chosen = _GRAD_CHOOSER.choose(grad_key_of(grad, x), trial)
    return _GRADS[chosen](grad, x)


class _Linear(torch.autograd.Function):
    """x·weightᵀ (+ bias) for 2-D x by :func:`project`, with its backward by
    :func:`project_back` and :func:`weight_grad`.

    A backward asked to build a graph (``create_graph=True``) computes the same
    gradients in autograd ops (``torch.mm``), which autograd differentiates again.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return project(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad = grad.contiguous()
        if torch.is_grad_enabled():  # create_graph=True: differentiable ops
            dx = torch.mm(grad, weight) if need_x else None
            dw = torch.mm(grad.t(), x) if need_w else None
        else:
            dx = project_back(grad, weight) if need_x else None
            dw = weight_grad(grad, x) if need_w else None
        db = grad.sum(0) if need_b and ctx.has_bias else None
        return dx, dw, db


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``, its products on the library measured faster here.

    ``x (..., K)``, ``weight (M, K)``, ``bias (M,)`` → ``(..., M)``; differentiable
    (twice, too). Where oneDNN does not apply (float64, another device, a product
    below :data:`MIN_WORK`, ``RNNKIT_PROJECTION=blas``) and while ``torch.compile``,
    ``torch.jit`` or the ONNX exporter traces, it is ``F.linear`` itself, so traced
    graphs hold the standard op.
    """
    flat = x.reshape(-1, x.shape[-1]) if x.dim() >= 2 else x
    if (
        x.dim() < 2
        or mode() == "blas"
        or torch.compiler.is_compiling()
        or torch._C._get_tracing_state() is not None  # torch.jit.trace (and its ONNX export)
        or torch.onnx.is_in_onnx_export()
        or not eligible(flat, weight)
    ):
        return torch.nn.functional.linear(x, weight, bias)
    out: Tensor = _Linear.apply(flat, weight, bias)  # type: ignore[no-untyped-call]
    return out.view(*x.shape[:-1], weight.shape[0])
