"""Taking back an optimizer step whose update made a weight non-finite.

A finite gradient can still make an infinite update: a huge rate, a weight decay
whose factor ``1 − lr·λ`` overflows a weight, Adam dividing by a vanishing second
moment with a tiny ε. The Trainer handles such a step like a non-finite gradient:
it is undone, counted and reported. :class:`Undo` keeps what undoing needs.

The plain way is a copy of every weight and every tensor of the optimizer's state
before each step, and a finiteness check after it: one pass over all of that memory
per step (on the classifier of rotten-tomatoes, 0.45 ms of a 10 ms step, the
embedding table and its two Adam moments). Most steps cannot go wrong, and for the
optimizers rnnkit builds that can be *proved* before the step from four numbers it
already has or keeps:

* ``G``, a bound on every gradient element: the gradient's 2-norm after clipping
  (``clip_norm`` and ``clip_value`` lower it);
* ``P``, a bound on every weight element: the largest weight 2-norm at the last
  check, plus the largest possible movement of every step since;
* the optimizer's state bounds, carried by the same recurrences as the state:
  Adam's moments ``M ≥ |m|`` and ``V ≥ v``, SGD's momentum buffer ``B ≥ |buf|``.

For one group with rate η, decay λ, ε and betas (β₁, β₂), writing Ĝ for the bound on
the gradient the update uses (``G + λP`` where the decay is added to the gradient):

* Adam (torch's form, ``amsgrad`` too): m' ≤ β₁M + (1−β₁)Ĝ, v' ≤ β₂V + (1−β₂)Ĝ², and
  the update ``η·m̂'/(√v̂' + ε)`` is at most ``η·M'/((1−β₁)·ε)``, since the bias
  correction of m divides by ``1 − β₁^t ≥ 1 − β₁`` and the denominator is at least
  ε. AdamW first scales the weights by ``1 − ηλ``: P becomes ``P·|1 − ηλ|``.
* SGD (and NT-ASGD, which is SGD plus an average of the iterates): buf' ≤ μB +
  |1−d|·Ĝ; the step is at most ``η·(Ĝ + μ·B')`` with Nesterov, ``η·B'`` with
  momentum, ``η·Ĝ`` without.

When every bound after the step (weights, moments, Ĝ² as squared in Adam's second
moment) stays below a thousandth of the weights' dtype's largest value, no element
can overflow, rounding included, so the step needs no copy and no check. Otherwise,
and for the optimizers without a proof here (RMSprop, Adagrad, any other), the
copy is taken and the check made, and both re-measure the bounds exactly (norms
taken twice over, for the rounding of a norm of millions of elements). An in-place
change to a weight or the state between steps (a loaded checkpoint, a callback) moves
its version counter, and the bounds are measured again too. So do the
first step and every ``REMEASURE``-th: float rounding can raise a carried bound's
true value by a few units in the last place per step, and the bounds are inflated by
``1 + 1e-5`` a step to stay above that, which a re-measure resets.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rnnkit.training.averaging import NTASGD

# A thousandth of the largest value: the margin for rounding on top of the bounds.
HEADROOM = 1e-3
# A step whose bounds are exact (measured) at least every this many steps.
REMEASURE = 1000
# Per step, the carried bounds grow by this factor: above float rounding's drift.
DRIFT = 1.0 + 1e-5
# Measured norms (of the gradient, weights and state) are taken this many times over:
# a float32 norm of millions of elements can be off by more than its last place.
SLACK = 2.0


class Undo:
    """The weights and optimizer state from before a step, so that a step whose update
    made a weight non-finite can be taken back exactly (see the module docstring).

    Each step: :meth:`prepare` (before ``optimizer.step()``, with the gradient bound),
    then :meth:`finite` (after it), then :meth:`restore` if that said False.
    ``prove=False`` copies and checks at every step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, prove: bool = True) -> None:
        self.optimizer = optimizer
        self.prove = prove and _kind(optimizer) is not None
        self.params: list[Tensor] = [p for g in optimizer.param_groups for p in g["params"]]
        self.buffers: list[Tensor] = []
        self.keys: list[tuple[Tensor, str]] = []
        self.plain: dict[Tensor, dict[str, Any]] = {}  # non-tensor state values, as they were
        self.limit = HEADROOM * min(
            (torch.finfo(p.dtype).max for p in self.params if p.is_floating_point()),
            default=float(torch.finfo(torch.float32).max),
        )
        self.bounds: dict[str, float] | None = None  # None: to be measured
        self.since = 0  # steps since the bounds were measured
        self.stamp: list[tuple[int, int]] = []  # the tensors' versions after the last step
        self.proved = False  # the step in progress was proved finite (no copy taken)
        self.copies = 0  # steps that took the copy (for tests and profiles)

    # ------------------------------------------------------------------ per step

    def prepare(self, grad_bound: float) -> None:
        """Before ``optimizer.step()``: copy the weights and state unless the step is
        proved finite. ``grad_bound`` bounds every gradient element (inf: unknown)."""
        self.proved = False
        if self.bounds is not None and self.stamp != self._stamp():
            self.bounds = None  # changed since the last step by something else: measure
        if self.prove and self.bounds is not None and self.since < REMEASURE:
            after = _step_bounds(self.optimizer, self.bounds, SLACK * grad_bound)
            if after is not None and all(
                math.isfinite(v) and v < self.limit for v in after.values()
            ):
                self.bounds = {k: v * DRIFT for k, v in after.items() if k in self.bounds}
                self.since += 1
                self.proved = True
                return
        self._copy()

    def finite(self) -> bool:
        """After ``optimizer.step()``: every weight is finite (proved, or checked)."""
        if self.proved or not self.params:
            self.stamp = self._stamp()
            return True
        largest = _largest_norm(self.params)  # a NaN or ±inf anywhere makes it non-finite
        if math.isfinite(largest):
            self._measure(largest)
            self.stamp = self._stamp()
            return True
        with torch.no_grad():
            # The 2-norm also overflows for finite weights past ~1e19: decide exactly.
            ok = all(bool(p.isfinite().all()) for p in self.params)
        if ok:
            self.bounds = None  # finite, but too large for the norms to bound it
        return ok

    def restore(self) -> None:
        """Put back the weights and state :meth:`prepare` copied (it did: a proved step
        is finite, so :meth:`finite` never asks for this after one)."""
        assert not self.proved, "a proved step has no copy to restore"
        state = self.optimizer.state
        saved = self.buffers[len(self.params) :]
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.buffers[: len(self.params)])
            for (p, key), buffer in zip(self.keys, saved, strict=True):
                state[p][key].copy_(buffer)
        kept = {id(p) for p, _ in self.keys}
        for p in self.params:
            if id(p) not in kept and not self.plain.get(p):
                state.pop(p, None)  # the step created this state: it had none before
            elif p in state:
                state[p].update(self.plain.get(p, {}))
        self.bounds = None  # measured again at the next checked step

    # ------------------------------------------------------------------ inside

    def _copy(self) -> None:
        """Copy every parameter and every tensor of the optimizer's state into buffers
        allocated once (again only when the state's shapes change), in one fused copy."""
        state = self.optimizer.state
        self.keys = []
        self.plain = {}
        sources = list(self.params)
        for p in self.params:
            entries = state.get(p, {})
            self.plain[p] = {k: v for k, v in entries.items() if not isinstance(v, Tensor)}
            for key, value in entries.items():
                if isinstance(value, Tensor):
                    self.keys.append((p, key))
                    sources.append(value)
        if [b.shape for b in self.buffers] != [t.shape for t in sources]:
            self.buffers = [torch.empty_like(t) for t in sources]
        with torch.no_grad():
            torch._foreach_copy_(self.buffers, sources)
        self.copies += 1

    def _stamp(self) -> list[tuple[int, int]]:
        """Each weight's and state tensor's version counter and storage: any in-place
        change (``load_state_dict``, a callback's ``mul_`` under ``no_grad``) or
        replacement between steps shows here, and the bounds are measured again. (A
        write through ``.data`` bypasses the counter: nothing can see it.)"""
        if not self.prove:
            return []
        tensors = list(self.params)
        for p in self.params:
            tensors.extend(v for v in self.optimizer.state.get(p, {}).values()
                           if isinstance(v, Tensor))  # fmt: skip
        return [(t._version, t.data_ptr()) for t in tensors]

    def _measure(self, weights: float) -> None:
        """The bounds, exactly, from the tensors after a checked step."""
        if not self.prove:
            return
        bounds = {"weights": weights}
        for name, keys in _STATE_KEYS[_kind(self.optimizer) or ""].items():
            values = [
                v
                for p in self.params
                for k, v in self.optimizer.state.get(p, {}).items()
                if k in keys and isinstance(v, Tensor) and v.numel()
            ]
            bounds[name] = _largest_norm(values)
        bounds = {k: SLACK * v for k, v in bounds.items()}
        self.bounds = bounds if all(math.isfinite(v) for v in bounds.values()) else None
        self.since = 0


# The state tensors each carried bound covers, by optimizer kind.
_STATE_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "adam": {"first": ("exp_avg",), "second": ("exp_avg_sq", "max_exp_avg_sq")},
    "sgd": {"momentum": ("momentum_buffer",)},
    "": {},
}


def _kind(optimizer: torch.optim.Optimizer) -> str | None:
    """The optimizers with a proof here (exact types: a subclass may step otherwise)."""
    if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        return "adam"
    if type(optimizer) in (torch.optim.SGD, NTASGD):
        return "sgd"
    return None


def _largest_norm(tensors: list[Tensor]) -> float:
    """The largest 2-norm of ``tensors``: one fused pass (~20× faster than ord=inf on CPU)."""
    if not tensors:
        return 0.0
    with torch.no_grad():
        norms = torch._foreach_norm(tensors)
        return float(torch.stack([n.to(norms[0].device) for n in norms]).max())


def _step_bounds(
    optimizer: torch.optim.Optimizer, bounds: dict[str, float], grad: float
) -> dict[str, float] | None:
    """The bounds after one ``optimizer.step()`` (see the module docstring), plus
    ``square`` and ``ratio``, the largest ĝ² and m̂/(√v̂ + ε) Adam forms on the way
    (checked, not carried); None where no bound is known."""
    kind = _kind(optimizer)
    if kind is None or not math.isfinite(grad):
        return None
    weights = bounds["weights"]
    after: dict[str, float] = {"weights": 0.0}
    for group in optimizer.param_groups:
        lr, decay = float(group["lr"]), float(group["weight_decay"])
        if kind == "adam":
            beta1, beta2 = (float(b) for b in group["betas"])
            eps = float(group["eps"])
            if eps <= 0.0:
                return None
            decoupled = type(optimizer) is torch.optim.AdamW or group.get(
                "decoupled_weight_decay", False
            )
            g = grad if decoupled else grad + decay * weights
            scaled = weights * abs(1.0 - lr * decay) if decoupled else weights
            first = beta1 * bounds["first"] + (1.0 - beta1) * g
            # max: amsgrad's running maximum keeps the largest second moment so far.
            second = max(bounds["second"], beta2 * bounds["second"] + (1.0 - beta2) * g * g)
            ratio = first / ((1.0 - beta1 if beta1 > 0.0 else 1.0) * eps)  # m̂'/(√v̂' + ε)
            update = lr * ratio
            after["first"] = max(after.get("first", 0.0), first)
            after["second"] = max(after.get("second", 0.0), second)
            # Not carried, but formed on the way: ĝ², and the ratio before the rate.
            after["square"] = max(after.get("square", 0.0), g * g)
            after["ratio"] = max(after.get("ratio", 0.0), ratio)
            after["weights"] = max(after["weights"], scaled + update)
        else:
            momentum, dampening = float(group["momentum"]), float(group["dampening"])
            g = grad + decay * weights
            if momentum > 0.0:
                buffer = momentum * bounds["momentum"] + abs(1.0 - dampening) * g
                buffer = max(buffer, g)  # the first step's buffer is the gradient itself
                step = g + momentum * buffer if group["nesterov"] else buffer
                after["momentum"] = max(after.get("momentum", 0.0), buffer)
            else:
                step = g
                after.setdefault("momentum", bounds["momentum"])
            after["weights"] = max(after["weights"], weights + lr * step)
    return after
