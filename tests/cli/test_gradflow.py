"""``rnnkit gradflow``: fresh cells on the adding problem, and a trained run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rnnkit.cells import cell_factory
from rnnkit.cli.main import main
from rnnkit.data.synthetic import adding_problem
from rnnkit.diagnostics import gradient_flow
from rnnkit.report.probe import capture, probe_loss, sample_inputs
from tests.report.runs import classify


def imread(path: Path) -> Any:
    from matplotlib.image import imread as read  # decodes with PIL underneath

    return read(path)


def expected_flow(cell: str, steps: int, hidden: int, seed: int) -> tuple[float, float, float]:
    """‖∂L/∂h_0‖, ‖∂L/∂h_{T−1}‖ and their ratio, computed here from gradient_flow itself."""
    data = adding_problem(16, steps, seed=seed, dtype=torch.float64)
    torch.manual_seed(seed)
    model = cell_factory(cell)(2, hidden).double()
    head = nn.Linear(hidden, 1).double()

    def loss(outputs: Tensor) -> Tensor:
        return (head(outputs[:, -1]).squeeze(1) - data.targets).square().mean()

    flow = gradient_flow(model, data.inputs, loss)
    norms = flow.state_grad_norms
    return float(norms[0]), float(norms[-1]), flow.decay()


def test_fresh_cells_summary_equals_gradient_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "flow"
    argv = ["gradflow", "--cells", "rnn,lstm,gru", "--T", "12,30", "--hidden", "8",
            "--seed", "3", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "summary.json").read_text())
    assert [(r["cell"], r["T"]) for r in rows] == [
        (cell, steps) for steps in (12, 30) for cell in ("rnn", "lstm", "gru")
    ]
    for row in rows:
        first, last, ratio = expected_flow(str(row["cell"]), int(row["T"]), 8, 3)
        assert row["first"] == first and row["last"] == last
        assert row["first_over_last"] == ratio == pytest.approx(first / last)
        # The printed table shows the same numbers.
        line = f"{row['cell']:<4}  {row['T']:>5}  {first:>11.4e}  {last:>11.4e}  {ratio:>11.4e}"
        assert line in printed
    assert (out / "summary.txt").read_text() in printed
    for steps in (12, 30):
        image = imread(out / f"gradflow-T{steps}.png")
        assert image.shape[0] > 100 and image.shape[1] > 300
        assert f"wrote {out / f'gradflow-T{steps}.png'}" in printed


def test_the_tanh_rnn_vanishes_faster_than_the_lstm(tmp_path: Path) -> None:
    assert main(["gradflow", "--cells", "rnn,lstm", "--T", "60", "--hidden", "16",
                 "--gate-bias", "1", "--out", str(tmp_path)]) == 0  # fmt: skip
    rows = {r["cell"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    assert rows["rnn"]["first_over_last"] < rows["lstm"]["first_over_last"]


def test_a_trained_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = classify(tmp_path)
    assert main(["gradflow", str(run)]) == 0
    out = run / "gradflow"
    (row,) = json.loads((out / "summary.json").read_text())
    captured = capture(run)
    cell = copy.deepcopy(captured.module.cells[0]).double()
    flow = gradient_flow(cell, sample_inputs(captured).double(), probe_loss)
    assert row["T"] == flow.steps
    assert row["first"] == float(flow.state_grad_norms[0])
    assert row["last"] == float(flow.state_grad_norms[-1])
    assert row["first_over_last"] == flow.decay()
    assert row["cell"] == "lstm (valid batch)"
    assert imread(out / f"gradflow-T{flow.steps}.png").ndim == 3
    assert "lstm (valid batch)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--cells", "rnn,transformer", "--cells: expected names among"),
     ("--T", "50,1", "--T: expected up to 16 comma-separated lengths in [2, 10000]")],
)  # fmt: skip
def test_bad_flags_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    assert main(["gradflow", flag, value, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_not_a_run_folder_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradflow", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_fresh_cell_flags_with_a_run_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gradflow", str(tmp_path), "--T", "10"]) == 2
    assert "--T: only for fresh cells; leave out RUN to use it" in capsys.readouterr().err
