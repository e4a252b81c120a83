"""What rnnkit's ``torch.library`` custom ops share, and the one a stack's forward adds.

The fused and scan backends register their time loops as custom ops, so that
``torch.compile(model, fullgraph=True)`` sees each layer and direction as one opaque
node with a fake (meta) kernel for its shapes and a registered autograd formula:
``rnnkit::fused_rnn``, ``rnnkit::fused_lstm``, ``rnnkit::fused_gru`` and their
``*_backward`` ops in :mod:`rnnkit.bptt.fused`; ``rnnkit::minimal_layer`` and its
backward in :mod:`rnnkit.bptt.scan`. Eager calls go through the same ops: there is
one implementation of each forward and backward.

An op returns tensors only, never ``None``, and no output may be another output or
an input. A backward op therefore takes ``needs`` (which gradients are wanted) and
returns an empty tensor for each of the others (:func:`or_empty`); its fake kernel
gives the same shapes (:func:`fake_grads`), and the autograd formula turns the
empty ones back into ``None`` (:func:`asked`).

One check of a stack's forward needs the values of a tensor: that every length is
in ``1 … T``. Python cannot look at a value while dynamo traces (that breaks the
graph), so under ``torch.compile`` :class:`~rnnkit.Recurrent` checks the lengths
with :func:`checked_lengths`, an op that runs :func:`~rnnkit.unrolling.check_lengths`
when the compiled graph runs and raises the same ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rnnkit.unrolling import check_lengths


class _Eager(torch.autograd.Function):
    """An op's kernel and autograd formula as a plain autograd Function (see :class:`Op`).

    ``apply(*args, op)``: the forward runs ``op.kernel`` and ``op.setup``, the
    backward ``op.backward``, exactly as the registered op does, with
    ``ctx.needs_input_grad`` the op's own (the trailing ``op`` argument dropped).
    """

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Any:
        *inputs, op = args
        output = op.kernel(*inputs)
        op.setup(ctx, tuple(inputs), output)
        ctx.op = op
        return output

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        needs = ctx.needs_input_grad
        try:
            ctx.needs_input_grad = needs[:-1]
            result = ctx.op.backward(ctx, *grads)
        finally:
            ctx.needs_input_grad = needs
        return (*result, None)


@dataclass(frozen=True)
class Op:
    """How the backends call one of their custom ops: the op under ``torch.compile``,
    its parts (the same functions) through an autograd Function in eager mode.

    Both are the same kernel, ``setup_context`` and backward formula; eager mode
    skips only the dispatcher's Python path for custom ops, which costs about 50 µs
    a forward call and as much again in its backward on the CPU (a fused GRU layer
    at B = 8, T = 1, H = 32: 141 µs per no-grad call through the op, 93 µs through
    its kernel), a third of a small layer's time.
    """

    op: Any  # the torch.library custom op (a CustomOpDef)
    kernel: Callable[..., Any]  # the function the op wraps
    setup: Callable[[Any, tuple[Any, ...], Any], None]  # its setup_context
    backward: Callable[..., tuple[Any, ...]]  # its formula, calling the backward's kernel

    def __call__(self, *args: Any) -> Any:
        if torch.compiler.is_compiling():
            return self.op(*args)
        return _Eager.apply(*args, self)  # type: ignore[no-untyped-call]


def or_empty(like: Tensor, grads: Sequence[Tensor | None], needs: Sequence[bool]) -> list[Tensor]:
    """A backward op's outputs: each gradient asked for, a new empty tensor for the others."""
    result = []
    for grad, need in zip(grads, needs, strict=True):
        if need and grad is None:
            raise RuntimeError("rnnkit: a backward op lost a gradient it was asked for")
        result.append(grad if need and grad is not None else like.new_empty(0))
    return result


def fake_grads(
    like: Tensor, shapes: Sequence[Sequence[Any]], needs: Sequence[bool]
) -> list[Tensor]:
    """A backward op's fake kernel: :func:`or_empty`'s outputs, ``shapes`` where asked for."""
    return [
        like.new_empty(shape if need else (0,)) for shape, need in zip(shapes, needs, strict=True)
    ]


def asked(grads: Sequence[Tensor], needs: Sequence[bool]) -> tuple[Tensor | None, ...]:
    """A backward op's outputs as autograd takes them: ``None`` where not asked for."""
    return tuple(grad if need else None for grad, need in zip(grads, needs, strict=True))


@torch.library.custom_op("rnnkit::checked_lengths", mutates_args=())
def checked_lengths(lengths: Tensor, batch: int, steps: int) -> Tensor:
    """``lengths`` ``(B,)`` checked against a ``(B, T, ·)`` batch: a new CPU int64 tensor.

    Raises:
        ValueError: as :func:`~rnnkit.unrolling.check_lengths` (not an integer
            tensor, not ``(B,)``, a length outside ``1 … T``).
    """
    return check_lengths(lengths, batch, steps).clone()  # never the input itself


@checked_lengths.register_fake
def _(lengths: Tensor, batch: int, steps: int) -> Tensor:
    return torch.empty(batch, dtype=torch.int64, device="cpu")
