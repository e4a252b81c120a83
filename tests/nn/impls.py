"""The implementations the ported PyTorch tests run against: torch.nn and rnnkit.nn.

A test takes ``impl`` and builds its modules as ``impl.LSTM(...)``, exactly as the
original builds ``nn.LSTM(...)``. The ``torch`` parameter runs the port against
torch.nn itself, which proves the port keeps the original's meaning; the ``rnnkit``
parameters are what must pass. ``rnnkit`` builds with the default backend (``"auto"``);
``rnnkit-<name>`` pins ``backend=<name>``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

import rnnkit.nn

MODULE_NAMES = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")
STACK_NAMES = ("RNN", "LSTM", "GRU")
CELL_NAMES = ("RNNCell", "LSTMCell", "GRUCell")
# "auto" is the default: the plain "rnnkit" parameter builds without backend=.
PINNED_BACKENDS = ("unrolled", "fused", "native")


RNNKIT_NN: ModuleType = rnnkit.nn


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """torch's TestCase seeds every test (set_rng_seed in setUp); so does every port
    (it imports this fixture), restoring the generator afterwards."""
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        yield


def takes_backend(cls: type) -> bool:
    """Whether ``cls(...)`` accepts ``backend=`` (rnnkit's stacks do; its cells may not)."""
    parameters = inspect.signature(cls).parameters.values()
    return any(p.name == "backend" or p.kind is p.VAR_KEYWORD for p in parameters)


class Factory:
    """``impl.LSTM``: calling it builds the class with the impl's backend pinned."""

    def __init__(self, cls: type[nn.Module], backend: str | None) -> None:
        self.cls = cls
        self.backend = backend
        self.__name__ = cls.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.backend is not None and takes_backend(self.cls):
            kwargs.setdefault("backend", self.backend)
        return self.cls(*args, **kwargs)

    def __repr__(self) -> str:
        pinned = f", backend={self.backend!r}" if self.backend else ""
        return f"Factory({self.cls.__module__}.{self.cls.__name__}{pinned})"


@dataclass(frozen=True)
class Impl:
    """A namespace of the six modules, as torch.nn or rnnkit.nn with one backend."""

    name: str
    namespace: ModuleType
    backend: str | None = None

    @property
    def is_torch(self) -> bool:
        return self.namespace is nn

    def factory(self, module_name: str) -> Factory:
        return Factory(getattr(self.namespace, module_name), self.backend)

    def __getattr__(self, module_name: str) -> Factory:
        if module_name not in MODULE_NAMES:
            raise AttributeError(module_name)
        return self.factory(module_name)


TORCH = Impl("torch", nn)
RNNKIT = Impl("rnnkit", RNNKIT_NN)
RNNKIT_PINNED = tuple(Impl(f"rnnkit-{b}", RNNKIT_NN, b) for b in PINNED_BACKENDS)

# Combinations that cannot pass, marked xfail(strict=True) so that they fail loudly
# once they start passing. Each reason is listed in the test files' docstrings.
FUSED_REFUSES_PROJ = (
    "backend 'fused' runs the plain LSTM only: rnnkit.nn.LSTM refuses proj_size > 0 "
    "with it at construction (a documented limitation of the fused backward)"
)


def _param(impl: Impl, *values: Any, xfail: str | None = None) -> Any:
    marks: list[Any] = []
    if xfail:
        # Only the error the reason names counts as the expected failure.
        raises = ValueError if xfail == FUSED_REFUSES_PROJ else None
        marks.append(pytest.mark.xfail(strict=True, reason=xfail, raises=raises))
    suffix = "".join(f"-{_id(value)}" for value in values)
    return pytest.param(impl, *values, id=impl.name + suffix, marks=marks)


def _id(value: Any) -> str:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, bool):
        return "train" if value else "eval"
    return str(value)


def _cells_take_backend() -> bool:
    return any(takes_backend(getattr(RNNKIT_NN, name)) for name in CELL_NAMES)


def _chosen(pinned: bool, cells_only: bool) -> list[Impl]:
    chosen = [TORCH, RNNKIT]
    if pinned and not (cells_only and not _cells_take_backend()):
        chosen += list(RNNKIT_PINNED)
    return chosen


def impls(
    *, pinned: bool = True, cells_only: bool = False, xfail: dict[str, str] | None = None
) -> list[Any]:
    """torch.nn, rnnkit.nn's default, and (``pinned``) each pinned backend.

    A test of cells alone skips the pinned backends when rnnkit's cells take no
    ``backend=`` (they would repeat the default's run). ``xfail`` maps an impl's name
    to the reason it cannot pass.
    """
    xfail = xfail or {}
    return [_param(impl, xfail=xfail.get(impl.name)) for impl in _chosen(pinned, cells_only)]


def impl_cases(
    values: tuple[Any, ...],
    *,
    pinned: bool = True,
    xfail: Callable[[Impl, Any], str | None] = lambda impl, value: None,
) -> list[Any]:
    """(impl, value) for every impl and value; ``xfail(impl, value)`` names a reason."""
    return [
        _param(impl, value, xfail=xfail(impl, value))
        for impl in _chosen(pinned, cells_only=False)
        for value in values
    ]


def fused_refuses(impl: Impl, proj_size: Any) -> str | None:
    """The reason a case cannot pass when it is an LSTM with proj_size > 0 on "fused"."""
    return FUSED_REFUSES_PROJ if impl.backend == "fused" and proj_size else None


ALL = impls()
CELLS = impls(cells_only=True)
DEFAULT_ONLY = impls(pinned=False)
PROJECTED = impls(xfail={"rnnkit-fused": FUSED_REFUSES_PROJ})


# --- torch's assertEqual / assertNotEqual, as these tests use them --------------------


def assert_equal(actual: Any, expected: Any, **tolerances: float) -> None:
    """torch's TestCase.assertEqual for what these tests compare: tensors (dtype-derived
    default tolerances, as torch.testing.assert_close), numbers, and nested tuples/lists
    (PackedSequence, (h, c)) of them, None included."""
    if isinstance(actual, torch.Tensor) or isinstance(expected, torch.Tensor):
        actual_t = torch.as_tensor(actual)
        expected_t = torch.as_tensor(expected, dtype=actual_t.dtype, device=actual_t.device)
        torch.testing.assert_close(actual_t, expected_t, **tolerances)  # type: ignore[arg-type]
        return
    if isinstance(actual, (tuple, list)) and isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected), f"lengths differ: {len(actual)} != {len(expected)}"
        for a, e in zip(actual, expected, strict=True):
            assert_equal(a, e, **tolerances)
        return
    if isinstance(actual, float) or isinstance(expected, float):
        torch.testing.assert_close(float(actual), float(expected), **tolerances)  # type: ignore[arg-type]
        return
    assert actual == expected, f"{actual!r} != {expected!r}"


def assert_not_equal(actual: Any, expected: Any) -> None:
    """torch's TestCase.assertNotEqual: assertEqual (default tolerances) must fail."""
    try:
        assert_equal(actual, expected)
    except AssertionError:
        return
    raise AssertionError("expected the values to differ, but they are equal")


def raises(error: type[BaseException], fn: Callable[..., Any], *args: Any) -> None:
    """unittest's assertRaises(error, fn, *args)."""
    with pytest.raises(error):
        fn(*args)
