"""The explain walk-through: hand-derived BPTT equals autograd, and every number adds up."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnkit.diagnostics.explain import (
    CELLS,
    GRADIENT_SYMBOLS,
    LOSSES,
    MINIMAL,
    ExplainConfig,
    Explanation,
    explain,
    render_markdown,
    render_text,
    to_dict,
)

F64 = torch.float64
TORCH = tuple(c for c in CELLS if c not in MINIMAL)  # the cells torch.nn has, its oracle
GATES = {"rnn": (), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("cell", TORCH)
def test_hand_derived_sums_equal_autograd(cell: str, loss: str, seed: int) -> None:
    ex = explain(ExplainConfig(cell=cell, loss=loss, seed=seed, outputs=3, steps=5))
    assert set(ex.differences) == {
        "weight_ih", "weight_hh", "bias_ih", "bias_hh", "output.weight", "output.bias"
    }  # fmt: skip
    assert ex.max_difference < 1e-10, ex.differences
    assert ex.forward_difference < 1e-10
    assert ex.agrees
    for name, grad in ex.autograd.items():
        assert grad.abs().max() > 0, f"{name}: a zero gradient checks nothing"
        torch.testing.assert_close(ex.hand[name], grad, rtol=0, atol=1e-10)


@given(
    cell=st.sampled_from(TORCH),
    loss=st.sampled_from(LOSSES),
    input_size=st.integers(1, 5),
    hidden_size=st.integers(1, 6),
    outputs=st.integers(2, 4),
    steps=st.integers(1, 7),
    seed=st.integers(0, 2**31),
)
def test_hand_derived_equals_autograd_for_any_size(
    cell: str, loss: str, input_size: int, hidden_size: int, outputs: int, steps: int, seed: int
) -> None:
    config = ExplainConfig(cell, input_size, hidden_size, outputs, steps, loss, seed)
    ex = explain(config)
    assert ex.max_difference < 1e-10, (config, ex.differences)
    assert ex.forward_difference < 1e-10
    check_sums(ex)


def check_sums(ex: Explanation) -> None:
    """Per-step terms sum to the totals; the totals map onto torch.nn's names."""
    T, H = ex.config.steps, ex.config.hidden_size
    assert len(ex.forward) == len(ex.backward) == T
    for key, total in ex.totals.items():
        torch.testing.assert_close(
            sum(step[key] for step in ex.backward), total, rtol=0, atol=1e-12
        )
    assert ex.hand["weight_ih"] is ex.totals["dU"]
    assert ex.hand["weight_hh"] is ex.totals["dW"]
    assert ex.hand["output.weight"] is ex.totals["dV"]
    assert ex.hand["output.bias"] is ex.totals["dc"]
    torch.testing.assert_close(ex.hand["bias_ih"], ex.totals["db"], rtol=0, atol=0)
    if ex.config.cell == "gru":
        # b_r, b_z are sums of the two biases; b_hn stays inside the reset.
        torch.testing.assert_close(ex.hand["bias_hh"][: 2 * H], ex.totals["db"][: 2 * H])
        torch.testing.assert_close(ex.hand["bias_hh"][2 * H :], ex.totals["db_hn"])
    else:
        torch.testing.assert_close(ex.hand["bias_hh"], ex.hand["bias_ih"], rtol=0, atol=0)
    assert math.isclose(ex.loss, sum(float(s["L"]) for s in ex.forward), rel_tol=1e-14)


@pytest.mark.parametrize("cell", TORCH)
def test_per_step_terms_sum_to_the_totals(cell: str) -> None:
    ex = explain(ExplainConfig(cell=cell, hidden_size=4, steps=6, seed=3))
    check_sums(ex)
    assert set(ex.totals) == {k for k in GRADIENT_SYMBOLS if cell == "gru" or k != "db_hn"}
    # The first step sees h_0 = 0, so it adds nothing to ∂L/∂W.
    assert torch.count_nonzero(ex.backward[0]["dW"]) == 0


def torch_nn_cell(ex: Explanation) -> Any:
    """torch.nn's cell holding the explanation's U, W, b (all of b in bias_ih)."""
    I, H = ex.config.input_size, ex.config.hidden_size
    kind = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[ex.config.cell]
    cell = kind(I, H).to(F64)
    p = ex.parameters
    with torch.no_grad():
        cell.weight_ih.copy_(p["U"])
        cell.weight_hh.copy_(p["W"])
        cell.bias_ih.copy_(p["b"])
        cell.bias_hh.zero_()
        if ex.config.cell == "gru":
            cell.bias_hh[2 * H :] = p["b_hn"]
    return cell


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("cell", TORCH)
def test_forward_values_equal_torch_nn_and_the_equations(cell: str, loss: str) -> None:
    ex = explain(ExplainConfig(cell=cell, loss=loss, hidden_size=4, outputs=3, steps=5, seed=11))
    reference = torch_nn_cell(ex)
    p, H = ex.parameters, ex.config.hidden_size
    h = torch.zeros(1, H, dtype=F64)
    c = torch.zeros(1, H, dtype=F64)
    with torch.no_grad():
        for t, step in enumerate(ex.forward):
            torch.testing.assert_close(step["x"], ex.inputs[t], rtol=0, atol=0)
            torch.testing.assert_close(step["Ux"], p["U"] @ step["x"])
            torch.testing.assert_close(step["Wh"], p["W"] @ h[0])
            if cell == "lstm":
                h, c = reference(ex.inputs[t : t + 1], (h, c))
                torch.testing.assert_close(step["c_t"], c[0], rtol=0, atol=1e-12)
            else:
                h = reference(ex.inputs[t : t + 1], h)
            torch.testing.assert_close(step["h"], h[0], rtol=0, atol=1e-12)
            if cell != "gru":
                torch.testing.assert_close(step["a"], step["Ux"] + step["Wh"] + p["b"])
            assert all(step[gate].shape == (H,) for gate in GATES[cell])
            out = p["V"] @ h[0] + p["c"]
            torch.testing.assert_close(step["out"], out, rtol=0, atol=1e-12)
            if loss == "mse":
                expected = F.mse_loss(out, step["y"], reduction="sum") / 2
            else:
                expected = F.cross_entropy(out[None], step["y"].argmax()[None])
                torch.testing.assert_close(step["y_hat"], out.softmax(0))
            torch.testing.assert_close(step["L"], expected, rtol=0, atol=1e-12)


def test_the_gates_are_what_the_equations_say() -> None:
    ex = explain(ExplainConfig(cell="lstm", steps=3, seed=5))
    for step in ex.forward:
        a_i, a_f, a_g, a_o = step["a"].chunk(4)
        torch.testing.assert_close(step["i"], a_i.sigmoid())
        torch.testing.assert_close(step["f"], a_f.sigmoid())
        torch.testing.assert_close(step["g"], a_g.tanh())
        torch.testing.assert_close(step["o"], a_o.sigmoid())
        torch.testing.assert_close(step["h"], step["o"] * step["c_t"].tanh())
    ex = explain(ExplainConfig(cell="gru", steps=3, seed=5))
    for step in ex.forward:
        a_r, a_z, a_n = step["a"].chunk(3)
        torch.testing.assert_close(step["r"], a_r.sigmoid())
        torch.testing.assert_close(step["z"], a_z.sigmoid())
        torch.testing.assert_close(step["n"], a_n.tanh())


def test_one_unit_tanh_rnn_two_steps_by_hand() -> None:
    """Every number of a 1-unit RNN over two steps, in plain arithmetic."""
    ex = explain(ExplainConfig(cell="rnn", input_size=1, hidden_size=1, outputs=1, steps=2))
    p = {k: float(v.reshape(())) for k, v in ex.parameters.items()}
    u, w, b, v, c = p["U"], p["W"], p["b"], p["V"], p["c"]
    x1, x2 = float(ex.inputs[0, 0]), float(ex.inputs[1, 0])
    y1, y2 = float(ex.targets[0, 0]), float(ex.targets[1, 0])

    h1 = math.tanh(u * x1 + b)  # h_0 = 0
    h2 = math.tanh(u * x2 + w * h1 + b)
    e1, e2 = v * h1 + c - y1, v * h2 + c - y2
    loss = 0.5 * e1**2 + 0.5 * e2**2
    delta2 = v * e2  # nothing comes back from step 3
    dA2 = delta2 * (1 - h2**2)
    delta1 = v * e1 + w * dA2
    dA1 = delta1 * (1 - h1**2)
    expected = {
        "dU": dA1 * x1 + dA2 * x2,
        "dW": dA2 * h1,  # step 1's term is dA1 · h_0 = 0
        "db": dA1 + dA2,
        "dV": e1 * h1 + e2 * h2,
        "dc": e1 + e2,
    }

    def close(tensor: Tensor, value: float) -> None:
        assert math.isclose(float(tensor.reshape(())), value, rel_tol=1e-12, abs_tol=1e-15)

    close(ex.forward[0]["h"], h1)
    close(ex.forward[1]["h"], h2)
    close(ex.forward[1]["Wh"], w * h1)
    assert math.isclose(ex.loss, loss, rel_tol=1e-12)
    close(ex.backward[1]["delta"], delta2)
    close(ex.backward[0]["delta"], delta1)
    close(ex.backward[1]["dU"], dA2 * x2)
    close(ex.backward[0]["dU"], dA1 * x1)
    for key, value in expected.items():
        close(ex.totals[key], value)
    close(ex.autograd["weight_hh"], expected["dW"])
    close(ex.autograd["bias_ih"], expected["db"])


def test_lstm_cell_state_gradient_flows_along_the_forget_gate() -> None:
    ex = explain(ExplainConfig(cell="lstm", hidden_size=2, steps=4, seed=2))
    for t in range(3):  # ε_t = δ_t ⊙ o_t ⊙ (1 − tanh² c_t) + ε_{t+1} ⊙ f_{t+1}
        fwd, later = ex.forward[t], ex.forward[t + 1]
        direct = ex.backward[t]["delta"] * fwd["o"] * (1 - fwd["c_t"].tanh() ** 2)
        expected = direct + ex.backward[t + 1]["eps"] * later["f"]
        torch.testing.assert_close(ex.backward[t]["eps"], expected)


def test_deterministic_for_a_seed_and_leaves_the_global_rng_alone() -> None:
    before = torch.get_rng_state()
    first = to_dict(explain(ExplainConfig(cell="gru", loss="ce", seed=4)))
    second = to_dict(explain(ExplainConfig(cell="gru", loss="ce", seed=4)))
    other = to_dict(explain(ExplainConfig(cell="gru", loss="ce", seed=5)))
    assert torch.equal(torch.get_rng_state(), before)
    assert first == second
    assert first["parameters"] != other["parameters"]


def test_ce_targets_are_one_hot_classes() -> None:
    ex = explain(ExplainConfig(loss="ce", outputs=4, steps=6, seed=1))
    assert ex.targets.shape == (6, 4)
    assert torch.equal(ex.targets.sum(1), torch.ones(6, dtype=F64))
    for step in ex.forward:
        assert math.isclose(float(step["y_hat"].sum()), 1.0, rel_tol=1e-14)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps must be an integer from 1 to 256, got 0"),
        ({"hidden_size": 0}, "hidden_size must be an integer from 1 to 64"),
        ({"input_size": 65}, "input_size must be an integer from 1 to 64"),
        ({"outputs": True}, "outputs must be an integer"),
        ({"cell": "rnn_relu"}, "cell must be one of rnn, lstm, gru"),
        ({"loss": "nll"}, "loss must be one of mse, ce"),
        ({"loss": "ce", "outputs": 1}, "outputs must be at least 2 for loss ce"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_configs_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExplainConfig(**changes)  # type: ignore[arg-type]


def test_mse_allows_a_single_output() -> None:
    ex = explain(ExplainConfig(outputs=1, hidden_size=1, input_size=1, steps=1))
    assert ex.agrees


@pytest.mark.parametrize("cell", TORCH)
def test_renderings_show_every_step(cell: str) -> None:
    ex = explain(ExplainConfig(cell=cell, steps=3))
    text = render_text(ex)
    assert text.splitlines()[0].startswith("rnnkit explain: ")
    for t in (1, 2, 3):
        assert f"  t = {t}" in text
        assert f"δ_{t} = ∂L/∂h_{t}" in text
    assert "W·h_0" in text and "W·h_2" in text
    assert "agrees" in text
    assert "nan" not in text.lower()
    # Vectors line up: every row of a block opens its bracket at the same column.
    block = [line for line in text.splitlines() if line.startswith("    ") and "[" in line]
    assert len({line.index("[") for line in block[:5]}) == 1
    markdown = render_markdown(ex)
    assert "## Forward pass" in markdown and "## Backward pass (t = T … 1)" in markdown
    assert markdown.count("| quantity | value |") == 2 * 3 + 1
    assert "| weight_ih |" in markdown


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("cell", MINIMAL)
def test_the_minimal_cells_walk_shows_a_b_and_the_scan(cell: str, loss: str) -> None:
    ex = explain(ExplainConfig(cell=cell, loss=loss, hidden_size=4, outputs=3, steps=6, seed=2))
    assert set(ex.differences) == {"weight_ih", "bias_ih", "output.weight", "output.bias"}
    assert ex.agrees and ex.max_difference < 1e-10 and ex.forward_difference < 1e-10
    for name, grad in ex.autograd.items():
        assert grad.abs().max() > 0, f"{name}: a zero gradient checks nothing"
    h = torch.zeros(4, dtype=F64)
    for step in ex.forward:  # h_t = a_t ⊙ h_{t−1} + b_t, the linear recurrence
        h = step["ret"] * h + step["add"]
        torch.testing.assert_close(step["h"], h, rtol=0, atol=1e-14)
    for key, total in ex.totals.items():
        torch.testing.assert_close(sum(s[key] for s in ex.backward), total, rtol=0, atol=1e-12)
    text = render_text(ex)
    assert "a_1 (kept of h_0)" in text and "b_1 (added)" in text and "the scan" in text
    assert "W" not in ex.parameters and "weight_hh" not in text
