"""The sections of every run's report, then the task's own (:meth:`Task.report`).

A section is data for the template (:class:`Section`): text, tables, pictures. A
builder that cannot make its section for a run returns one with ``missing`` set,
saying why, so the page never drops a section silently.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit import tasks
from rnnkit.report import figures
from rnnkit.report.page import Section, Table, fmt, image
from rnnkit.report.probe import (
    JACOBIAN_MAX_HIDDEN,
    Captured,
    capture,
    cell_name,
    run_gradient_flow,
    sample_inputs,
)
from rnnkit.tasks.task import Loaded, Task
from rnnkit.training.progress import read_metrics

# Per-step training values that are not curves of the model's quality.
NOT_CURVES = frozenset({"grad_norm", "clipped", "skipped", "tokens_per_s", "lr"})


@dataclass
class Context:
    """What several sections share, computed once: the run read back, its probe."""

    run_dir: Path
    kind: str
    config: dict[str, Any]
    _loaded: Loaded[Any, Any, Any] | None = None
    _captured: Captured | Exception | None = None

    @property
    def task(self) -> Task[Any, Any, Any, Any, Any, Any]:
        return tasks.get(self.kind)

    def loaded(self) -> Loaded[Any, Any, Any]:
        if self._loaded is None:
            self._loaded = self.task.load(self.run_dir)
        return self._loaded

    def captured(self) -> Captured:
        if self._captured is None:
            try:
                self._captured = capture(self.task, self.loaded())
            except Exception as error:
                self._captured = error
        if isinstance(self._captured, Exception):
            raise self._captured
        return self._captured


def configuration(ctx: Context) -> Section:
    text = (ctx.run_dir / "config.toml").read_text(encoding="utf-8")
    return Section(
        "Configuration",
        text=["config.toml, as resolved and saved by training."],
        blocks=[text.strip()],
    )


def _metrics(ctx: Context) -> list[dict[str, Any]]:
    path = ctx.run_dir / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (was the run trained with progress off?)")
    return read_metrics(path)


def training_curves(ctx: Context) -> Section:
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = defaultdict(dict)
    for row in _metrics(ctx):
        if row["split"] == "train" and row["metric"] in NOT_CURVES:
            continue
        steps, values = series[row["metric"]].setdefault(row["split"], ([], []))
        steps.append(row["step"])
        values.append(row["value"])
    if not series:
        return Section("Loss and metrics", missing="metrics.csv has no loss or metric rows")
    order = sorted(series, key=lambda name: (name != "loss", name))
    rows = []
    for name in order:
        for split, (_, values) in series[name].items():
            rows.append(
                [name, split, str(len(values)), fmt(values[-1]), fmt(min(values)), fmt(max(values))]
            )
    return Section(
        "Loss and metrics",
        text=["Training values per optimizer step, validation values at each evaluation."],
        images=[
            image(figures.curves({name: series[name] for name in order}), "loss and metric curves")
        ],
        tables=[Table(["metric", "split", "points", "last", "min", "max"], rows)],
    )


@dataclass(frozen=True)
class Attempt:
    """One optimizer step, taken or skipped, as metrics.csv records it.

    ``step`` is the step it made (a skipped attempt is drawn at the step it failed to
    make: one past the last step taken); ``norm`` is ``None`` when not recorded.
    """

    step: int
    norm: float | None
    clipped: bool
    skipped: bool


def attempts(rows: list[dict[str, Any]]) -> list[Attempt]:
    """The training rows as attempts: each starts with its ``loss`` row (the trainer
    writes ``loss`` first), so a skipped attempt, which repeats the step number of the
    last step taken, stays apart from it."""
    groups: list[tuple[int, dict[str, float]]] = []
    for row in rows:
        if row["split"] != "train":
            continue
        if row["metric"] == "loss" or not groups or groups[-1][0] != row["step"]:
            groups.append((row["step"], {}))
        groups[-1][1][row["metric"]] = row["value"]
    out = []
    for step, values in groups:
        if "grad_norm" not in values and "skipped" not in values:
            continue  # not an optimizer step (an older file, an epoch summary)
        skipped = values.get("skipped", 0.0) > 0
        out.append(
            Attempt(
                step + 1 if skipped else step,
                values.get("grad_norm"),
                values.get("clipped", 0.0) > 0,
                skipped,
            )
        )
    return out


def gradient_norms(ctx: Context) -> Section:
    found = attempts(_metrics(ctx))
    if not found:
        return Section("Gradient norms", missing="metrics.csv has no grad_norm rows")
    clip_norm = ctx.config.get("trainer", {}).get("clip_norm")
    taken = [a for a in found if not a.skipped]
    clipped = [a for a in taken if a.clipped]
    skipped = [a for a in found if a.skipped]
    clipping = f" (clip norm {clip_norm:g})" if clip_norm is not None else " (no clipping)"
    text = [
        f"{len(taken)} steps; {len(clipped)} clipped{clipping}; {len(skipped)} skipped "
        "(a non-finite gradient norm or no targets: no update)."
    ]
    finite = sorted(a.norm for a in taken if a.norm is not None and math.isfinite(a.norm))
    if finite:
        text.append(f"Norm: median {finite[len(finite) // 2]:.3g}, largest {finite[-1]:.3g}.")
    png = figures.gradient_norms(
        [(a.step, a.norm) for a in taken],
        [(a.step, a.norm) for a in clipped],
        [(a.step, a.norm) for a in skipped],
        clip_norm,
    )
    return Section("Gradient norms", text=text, images=[image(png, "gradient norm per step")])


def gradient_flow(ctx: Context) -> Section:
    captured = ctx.captured()
    flow = run_gradient_flow(captured)
    steps = flow.steps
    name = f"{cell_name(captured)}, H = {captured.module.hidden_size}"
    title = f"trained {name}, {ctx.kind} run, {captured.split} batch, T = {steps}"
    first, last = float(flow.state_grad_norms[0]), float(flow.state_grad_norms[-1])
    rows = [[name, str(steps), f"{first:.3e}", f"{last:.3e}", f"{flow.decay():.3e}"]]
    rows_used = int(sample_inputs(captured).shape[0])
    notes = []
    if flow.jacobian_norms is None:
        notes.append(
            f"‖∂h_T/∂h_t‖₂ is left out for H > {JACOBIAN_MAX_HIDDEN} (it costs H "
            "vector-Jacobian products per step)."
        )
    return Section(
        "Gradient flow through time",
        text=[
            f"The trained first recurrent layer (left to right) on {rows_used} sequence"
            f"{'s' if rows_used > 1 else ''} of the {captured.split} split, as the model embeds "
            f"them, cut to T = {steps} steps; probe loss L = ½·mean ‖h_T‖² on the last step, "
            "measured step by step with rnnkit.diagnostics.gradient_flow.",
            *notes,
        ],
        images=[image(figures.gradient_flow({name: flow}, title), "gradient flow through time")],
        tables=[Table(["cell", "T", "‖∂L/∂h_0‖", "‖∂L/∂h_T‖", "first / last"], rows)],
    )


def hidden_states(ctx: Context) -> Section:
    captured = ctx.captured()
    names = captured.step_names
    # Tokens label every step up to this many; a longer sequence is cut there so
    # that each column still reads as one token.
    steps = min(captured.length(0), 80 if names else 400)
    states = captured.outputs[0, :steps].T  # (D·H, T)
    directions = captured.module.num_directions
    ticks = names[:steps] if names and len(names) >= steps else None
    return Section(
        "Hidden states",
        text=[
            f"The recurrent stack's outputs (last layer, {directions} direction"
            f"{'s' if directions > 1 else ''}) over the first sequence of the "
            f"{captured.split} batch: units down, steps across ({steps} steps"
            f"{', each labelled with its input token' if ticks else ''})."
        ],
        images=[
            image(
                figures.heatmap(
                    states.numpy(),
                    xlabel="input token" if ticks else "step t",
                    ylabel="unit",
                    title="h_t (units × time)",
                    xticks=ticks,
                ),
                "hidden-state heatmap",
            )
        ],
    )


COMMON: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("Configuration", configuration),
    ("Loss and metrics", training_curves),
    ("Gradient norms", gradient_norms),
    ("Gradient flow through time", gradient_flow),
    ("Hidden states", hidden_states),
)


def build(ctx: Context) -> list[Section]:
    """Every section for the run, then the task's own; a builder that fails leaves a
    section saying why, so the page never drops one silently."""
    out = []
    for title, builder in COMMON:
        try:
            out.append(builder(ctx))
        except Exception as error:
            out.append(Section(title, missing=_why(error)))
    try:
        own = ctx.task.report(ctx.loaded())
    except Exception as error:
        own = [Section(f"{ctx.kind} results", missing=_why(error))]
    return out + (own or [Section("Task", missing=f"no section of its own for {ctx.kind} runs")])


def _why(error: Exception) -> str:
    return f"could not be made: {type(error).__name__}: {error}"
