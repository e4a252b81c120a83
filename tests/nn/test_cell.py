"""rnnkit.nn.RNNCell / LSTMCell / GRUCell against torch.nn's cells, on both of their paths."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import rnnkit.nn as rnn
from rnnkit.nn.cell import STEPPED_ROWS
from tests.nn.errors import error_of

CELLS: dict[str, tuple[type[nn.RNNCellBase], type[nn.RNNCellBase], dict[str, Any]]] = {
    "rnn": (nn.RNNCell, rnn.RNNCell, {}),
    "rnn_relu": (nn.RNNCell, rnn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTMCell, rnn.LSTMCell, {}),
    "gru": (nn.GRUCell, rnn.GRUCell, {}),
}
I, H = 3, 5


def pair(kind: str, bias: bool = True) -> tuple[nn.Module, nn.Module]:
    torch_type, ours_type, extra = CELLS[kind]
    reference = torch_type(I, H, bias=bias, dtype=torch.float64, **extra)
    ours = ours_type(I, H, bias=bias, dtype=torch.float64, **extra)
    ours.load_state_dict(reference.state_dict())
    assert list(ours.state_dict()) == list(reference.state_dict())
    return reference, ours


def fields(result: Any) -> list[Tensor]:
    return list(result) if isinstance(result, tuple) else [result]


def hidden(kind: str, rows: tuple[int, ...]) -> Any:
    h = torch.randn(*rows, H, dtype=torch.float64, requires_grad=True)
    return (
        (h, torch.randn(*rows, H, dtype=torch.float64, requires_grad=True)) if kind == "lstm" else h
    )


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [(), (1,), (STEPPED_ROWS + 3,)])
def test_a_step_with_autograd_matches_torch(kind: str, bias: bool, rows: tuple[int, ...]) -> None:
    reference, ours = pair(kind, bias)
    x = torch.randn(*rows, I, dtype=torch.float64, requires_grad=True)
    hx = hidden(kind, rows)
    leaves = [x, *fields(hx)]
    for args in ((x, hx), (x,)):
        expected, got = fields(reference(*args)), fields(ours(*args))
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        loss = sum((f * (i + 1)).sum() for i, f in enumerate(got))
        ref_loss = sum((f * (i + 1)).sum() for i, f in enumerate(expected))
        wanted = leaves[: 1 if len(args) == 1 else None]
        our_grads = torch.autograd.grad(loss, [*wanted, *ours.parameters()])  # type: ignore[arg-type]
        ref_grads = torch.autograd.grad(ref_loss, [*wanted, *reference.parameters()])  # type: ignore[arg-type]
        for a, b in zip(our_grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("rows", [(), (1,), (STEPPED_ROWS,), (STEPPED_ROWS + 1,)])
def test_a_step_without_autograd_matches_torch_and_sees_updated_weights(
    kind: str, rows: tuple[int, ...]
) -> None:
    """Up to STEPPED_ROWS rows this is the packed stepper, which must repack after an update."""
    reference, ours = pair(kind)
    x = torch.randn(*rows, I, dtype=torch.float64)
    hx = hidden(kind, rows)
    with torch.no_grad():
        for _ in range(2):
            for a, b in zip(fields(ours(x, hx)), fields(reference(x, hx)), strict=True):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
            for module in (ours, reference):
                module.weight_hh.mul_(-0.5)  # an optimizer step, in place


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_misuse_raises_torch_s_error(kind: str) -> None:
    torch_type, ours_type, _ = CELLS[kind]
    lstm = kind == "lstm"

    def state(*shape: int) -> Any:
        return (torch.zeros(shape), torch.zeros(shape)) if lstm else torch.zeros(shape)

    cases = [
        lambda m: m(torch.randn(2, 2, I)),  # 3-D input
        lambda m: m(torch.randn(2, I), state(1, 2, H)),  # 3-D state
        lambda m: m(torch.randn(2, I + 1)),  # feature size
        lambda m: m(torch.randn(2, I), state(3, H)),  # batch size of the state
        lambda m: m(torch.randn(2, I), state(2, H + 1)),  # width of the state
    ]
    for case in cases:
        expected = error_of(lambda: case(torch_type(I, H)))  # noqa: B023
        got = error_of(lambda: case(ours_type(I, H)))  # noqa: B023
        assert (type(got), str(got)) == (type(expected), str(expected))


def test_an_unknown_nonlinearity_fails_at_the_step_as_in_torch() -> None:
    with pytest.raises(RuntimeError, match="Unknown nonlinearity: cube"):
        nn.RNNCell(I, H, nonlinearity="cube")(torch.randn(2, I))
    with pytest.raises(RuntimeError, match="Unknown nonlinearity: cube"):
        rnn.RNNCell(I, H, nonlinearity="cube")(torch.randn(2, I))
