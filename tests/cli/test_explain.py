"""``rnnkit explain`` through ``main(argv)``: the three formats, the check, and bad values."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from rnnkit.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(["explain", *argv])
    except SystemExit as exit:  # argparse refuses a flag's value itself
        status = int(exit.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def tensor(value: Any) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_json_sums_equal_the_per_step_terms_and_autograd(
    capsys: pytest.CaptureFixture[str], cell: str, loss: str
) -> None:
    args = ["--cell", cell, "--loss", loss, "--outputs", "3", "--steps", "5", "--seed", "2"]
    status, out, err = run(capsys, *args, "--format", "json")
    assert (status, err) == (0, "")
    report = json.loads(out)
    assert report["config"] == {
        "cell": cell, "input_size": 2, "hidden_size": 3, "outputs": 3, "steps": 5,
        "loss": loss, "seed": 2,
    }  # fmt: skip
    assert [step["t"] for step in report["forward"]] == [1, 2, 3, 4, 5]
    assert [step["t"] for step in report["backward"]] == [1, 2, 3, 4, 5]
    for key, total in report["totals"].items():
        summed = sum(tensor(step[key]) for step in report["backward"])
        torch.testing.assert_close(summed, tensor(total), rtol=0, atol=1e-12)
    check = report["check"]
    assert check["agrees"] is True
    assert check["largest_difference"] < 1e-10
    assert check["largest_difference"] == max(check["max_abs_difference"].values())
    for name, grad in check["autograd"].items():
        torch.testing.assert_close(tensor(check["hand"][name]), tensor(grad), rtol=0, atol=1e-10)
    torch.testing.assert_close(tensor(check["hand"]["weight_ih"]), tensor(report["totals"]["dU"]))
    loss_sum = sum(step["L"] for step in report["forward"])
    assert report["loss"] == pytest.approx(loss_sum, rel=1e-14)
    assert set(report["parameter_names"]) >= {"U", "W", "b", "V", "c"}
    assert report["labels"]["Wh"] == "W·h_{t−1}"


def test_text_walks_through_forward_backward_and_the_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("rnnkit explain: tanh RNN cell (I = 2, H = 3, K = 2), T = 4 steps")
    for expected in [
        "U    = weight_ih (H×I)",
        "b    = bias_ih + bias_hh (H)",
        "Forward pass",
        "U·x_1",
        "W·h_3",
        "L_4",
        "Backward pass (BPTT by hand, t = T … 1)",
        "δ_4 = ∂L/∂h_4",
        "(∂L/∂U)_1",
        "(∂L/∂c)_4",
        "Sums over t",
        "Check against autograd",
    ]:
        assert expected in out, expected
    assert lines[-1].startswith("largest difference: ")
    assert lines[-1].endswith("tolerance 1e-10: agrees")
    # Vectors are rounded to 4 decimals, in brackets.
    row = next(line for line in lines if line.strip().startswith("x_1 "))
    numbers = row.split("[")[1].removesuffix("]").split()
    assert len(numbers) == 2
    assert all(len(number.split(".")[1]) == 4 for number in numbers)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_show_their_gates(capsys: pytest.CaptureFixture[str], cell: str) -> None:
    status, out, _ = run(capsys, "--cell", cell, "--steps", "2")
    assert status == 0
    gates = ["i_1", "f_1", "g_1", "o_1", "c_1", "ε_2 = ∂L/∂c_2"] if cell == "lstm" else []
    gates = gates or ["r_1", "z_1", "n_2", "dS_2", "(∂L/∂b_hn)_1", "b_hn = bias_hh[2H:]"]
    for gate in gates:
        assert gate in out, gate


def test_markdown_has_headers_and_tables(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--cell", "gru", "--loss", "ce", "--format", "markdown")
    assert status == 0
    assert out.startswith("# rnnkit explain\n")
    for header in [
        "## The network",
        "## Parameters",
        "## Forward pass",
        "### t = 4",
        "## Sums over t",
    ]:
        assert f"\n{header}\n" in out
    assert "| ŷ_2 | `[" in out
    assert "| bias_hh | " in out
    assert "**agrees**" in out


def test_output_is_deterministic_for_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    first = run(capsys, "--cell", "lstm", "--seed", "9")[1]
    second = run(capsys, "--cell", "lstm", "--seed", "9")[1]
    other = run(capsys, "--cell", "lstm", "--seed", "10")[1]
    assert first == second
    assert first != other


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps must be an integer from 1 to 256, got 0"),
        (["--hidden", "0"], "--hidden must be an integer from 1 to 64, got 0"),
        (["--input-size", "-3"], "--input-size must be an integer from 1 to 64, got -3"),
        (["--outputs", "100"], "--outputs must be an integer from 1 to 64, got 100"),
        (["--loss", "ce", "--outputs", "1"], "--outputs must be at least 2 for loss ce, got 1"),
        (
            ["--cell", "transformer"],
            "--cell must be one of rnn, lstm, gru, mingru, minlstm, got 'transformer'",
        ),
        (["--loss", "hinge"], "--loss must be one of mse, ce, got 'hinge'"),
        (["--format", "html"], "--format must be one of text, markdown, json, got 'html'"),
        (["--seed", "-1"], "argument --seed: expected an int in [0, 2**63), got -1"),
    ],
)
def test_bad_values_are_one_line_and_exit_two(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"rnnkit explain: error: {message}")


def test_a_wrong_cell_forward_is_caught_and_exits_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Break the library GRU; the hand-derived walk no longer matches its autograd.
    from rnnkit.cells import gru

    original = gru.GRUCell.forward

    def broken(self, x_t, state):  # type: ignore[no-untyped-def]
        output, new_state = original(self, x_t, state)
        return output * 1.001, type(new_state)(new_state.h * 1.001)

    monkeypatch.setattr(gru.GRUCell, "forward", broken)
    status, out, _ = run(capsys, "--cell", "gru")
    assert status == 1
    assert out.rstrip().endswith("MISMATCH")
