"""``rnnkit gradflow``: fresh cells on the adding problem, and a trained run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rnnkit import tasks
from rnnkit.cells import cell_factory
from rnnkit.cells.init import gate_bias_
from rnnkit.cli.main import main
from rnnkit.data.synthetic import adding_problem
from rnnkit.diagnostics import gradient_flow
from rnnkit.report.probe import capture, probe_loss, sample_inputs
from rnnkit.tasks.task import run_kind
from tests.report.runs import classify


def imread(path: Path) -> Any:
    from matplotlib.image import imread as read  # decodes with PIL underneath

    return read(path)


def expected_flow(
    cell: str, steps: int, hidden: int, seed: int, gate_bias: float | None = 1.0
) -> tuple[float, float, float]:
    """‖∂L/∂h_0‖, ‖∂L/∂h_{T−1}‖ and their ratio, computed here from gradient_flow itself,
    the gated cells with ``gate_bias`` added (None: torch.nn's initialisation as it is)."""
    data = adding_problem(16, steps, seed=seed, dtype=torch.float64)
    torch.manual_seed(seed)
    model = cell_factory(cell)(2, hidden).double()
    if gate_bias is not None and cell in ("lstm", "gru"):
        gate_bias_(model, gate_bias)
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
    assert printed.splitlines()[0] == "# adding problem, untrained, H = 8, gate bias +1"
    assert (
        "gate bias: +1 on the lstm's forget gate and the gru's update gate; rnn: no gate. "
        "--gate-bias 0 shows the unbiased cells\n"
    ) in printed
    for steps in (12, 30):
        image = imread(out / f"gradflow-T{steps}.png")
        assert image.shape[0] > 100 and image.shape[1] > 300
        assert f"wrote {out / f'gradflow-T{steps}.png'}" in printed


def summary(out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["cell"], r["T"]): r for r in json.loads((out / "summary.json").read_text())}


def test_the_default_shows_the_gated_cells_keeping_their_gradient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's claim, at the default H = 64, batch 16 and seed 0 (T = 100 only, to
    # keep the test short): with the +1 gate bias, the LSTM and the GRU keep more than
    # ten orders of magnitude more of the last step's gradient than the tanh RNN.
    assert main(["gradflow", "--T", "100", "--out", str(tmp_path / "on")]) == 0
    rows = summary(tmp_path / "on")
    rnn, lstm, gru = (rows[(cell, 100)]["first_over_last"] for cell in ("rnn", "lstm", "gru"))
    assert rnn < 1e-18
    assert lstm > 1e12 * rnn and gru > 1e10 * rnn
    assert lstm > 1e-9 and gru > 1e-11
    # --gate-bias 0 is torch.nn's initialisation exactly, and there all three vanish alike.
    assert main(["gradflow", "--T", "100", "--gate-bias", "0", "--out", str(tmp_path / "off")]) == 0
    printed = capsys.readouterr().out
    assert "gate bias: 0 (torch.nn's initialisation) on the lstm's forget gate" in printed
    off = summary(tmp_path / "off")
    for cell in ("lstm", "gru"):
        first, last, ratio = expected_flow(cell, 100, 64, 0, gate_bias=None)
        assert (off[(cell, 100)]["first"], off[(cell, 100)]["last"]) == (first, last)
        assert off[(cell, 100)]["first_over_last"] == ratio < 1e-18
    assert off[("rnn", 100)] == rows[("rnn", 100)]  # the bias leaves the tanh RNN alone
    # The README states these numbers (two significant digits), measured by this command.
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())

    def figure(table: dict[tuple[str, int], dict[str, Any]], cell: str) -> str:
        return f"{table[(cell, 100)]['first_over_last']:.1e}".replace("e-0", "e-")

    assert f"receives {figure(rows, 'rnn')} of the last step's gradient" in readme
    assert f"receive {figure(rows, 'lstm')} and {figure(rows, 'gru')}," in readme
    off_figures = [figure(off, cell) for cell in ("rnn", "lstm", "gru")]
    assert "vanish alike: {}, {} and {}.".format(*off_figures) in readme


def test_a_trained_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = classify(tmp_path)
    assert main(["gradflow", str(run)]) == 0
    out = run / "gradflow"
    (row,) = json.loads((out / "summary.json").read_text())
    task = tasks.get(run_kind(run))
    captured = capture(task, task.load(run))
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


def test_the_minimal_cells_flow_and_their_gate_bias_raises_retention(tmp_path: Path) -> None:
    # Fresh minGRU / minLSTM cells on the adding problem: with the default +1 (minGRU:
    # z's bias −1, so a_t = 1 − z_t starts near σ(1)) more of the gradient reaches t = 0
    # than with the unbiased cells.
    ratios = {}
    for bias in ("1", "0"):
        out = tmp_path / bias
        argv = ["gradflow", "--cells", "mingru,minlstm", "--T", "40", "--hidden", "8",
                "--gate-bias", bias, "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        rows = json.loads((out / "summary.json").read_text())
        ratios[bias] = {row["cell"]: row["first_over_last"] for row in rows}
        assert (out / "gradflow-T40.png").exists()
    for cell in ("mingru", "minlstm"):
        assert ratios["1"][cell] > 10 * ratios["0"][cell]
