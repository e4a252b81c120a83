"""The report's pictures: matplotlib figures as PNG ``data:`` URIs, so the page needs no files.

Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot state, no
display); matplotlib comes with the ``report`` extra.
"""

from __future__ import annotations

import base64
import io
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnkit.diagnostics import GradientFlow, plot_gradient_flow


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:image/png;base64,…`` URI for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_of(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def curves(series: Mapping[str, Mapping[str, tuple[list[int], list[float]]]]) -> bytes:
    """One panel per metric, one line per split: ``series[metric][split] = (steps, values)``."""
    names = list(series)
    columns = min(3, len(names))
    rows = (len(names) + columns - 1) // columns
    fig = figure(4.2 * columns, 3.0 * rows)
    for index, name in enumerate(names):
        axes = fig.add_subplot(rows, columns, index + 1)
        for split, (steps, values) in series[name].items():
            many = len(steps) > 1
            axes.plot(
                steps,
                values,
                label=split,
                marker=None if many else "o",
                linewidth=1.0 if split == "train" else 1.8,
            )
        axes.set_title(name)
        axes.set_xlabel("step")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    return png_of(fig)


Point = tuple[int, float | None]  # (step, gradient norm; None when not recorded)


def gradient_norms(
    taken: Sequence[Point],
    clipped: Sequence[Point],
    skipped: Sequence[Point],
    clip_norm: float | None,
) -> bytes:
    """The gradient norm per step, with clipped steps and skipped steps marked.

    A skipped step's norm is often inf or NaN: its mark then sits at the top edge.
    """
    import math

    finite = [n for _, n in taken if n is not None and math.isfinite(n)]
    top = max(finite, default=1.0) * 1.5
    fig = figure(9.0, 3.4)
    axes = fig.add_subplot()
    axes.plot(
        [s for s, _ in taken],
        [math.nan if n is None else n for _, n in taken],
        color="tab:blue",
        linewidth=1.0,
        label="‖g‖ before clipping",
    )
    if clipped:
        axes.scatter(
            [s for s, _ in clipped],
            [n for _, n in clipped],
            color="tab:orange",
            s=14,
            zorder=3,
            label=f"clipped ({len(clipped)})",
        )
    if skipped:
        heights = [n if n is not None and math.isfinite(n) else top for _, n in skipped]
        axes.scatter(
            [s for s, _ in skipped],
            heights,
            color="tab:red",
            marker="x",
            s=30,
            zorder=4,
            label=f"skipped ({len(skipped)})",
        )
    if clip_norm is not None:
        axes.axhline(
            clip_norm,
            color="tab:orange",
            linestyle="--",
            linewidth=0.8,
            label=f"clip norm {clip_norm:g}",
        )
    if finite and min(finite) > 0:
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("global gradient norm")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return png_of(fig)


def gradient_flow(flows: Mapping[str, GradientFlow], title: str) -> bytes:
    """:func:`rnnkit.diagnostics.plot_gradient_flow`'s figure, as PNG bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = plot_gradient_flow(flows, Path(folder) / "flow.png", title=title)
        return path.read_bytes()


def heatmap(
    values: Any,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    xticks: Sequence[str] | None = None,
    yticks: Sequence[str] | None = None,
    cmap: str = "RdBu_r",
    symmetric: bool = True,
    annotate: bool = False,
) -> bytes:
    """A matrix as an image, rows up the y axis' labels (``values``: 2-D array-like)."""
    import numpy as np

    matrix = np.asarray(values, dtype=float)
    rows, columns = matrix.shape
    width = min(14.0, max(4.0, 0.22 * columns + 2.5)) if xticks else min(14.0, 4 + columns / 25)
    height = min(9.0, max(2.8, 0.22 * rows + 1.5))
    fig = figure(width, height)
    axes = fig.add_subplot()
    limit = float(np.abs(matrix).max()) if matrix.size else 1.0
    options: dict[str, Any] = {"vmin": -limit, "vmax": limit} if symmetric else {}
    image = axes.imshow(matrix, aspect="auto", cmap=cmap, interpolation="nearest", **options)
    fig.colorbar(image, ax=axes, shrink=0.9)
    if xticks is not None:
        axes.set_xticks(range(columns), list(xticks), rotation=90, fontsize=7)
    if yticks is not None:
        axes.set_yticks(range(rows), list(yticks), fontsize=7)
    if annotate:
        for i in range(rows):
            for j in range(columns):
                axes.text(j, i, f"{matrix[i, j]:g}", ha="center", va="center", fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    return png_of(fig)


def forecast(
    times: Sequence[str],
    history: Sequence[float],
    lines: Mapping[str, Sequence[float]],
) -> bytes:
    """The history's tail, then the actual values and each forecast over the horizon."""
    fig = figure(9.0, 3.6)
    axes = fig.add_subplot()
    start = len(history)
    axes.plot(range(start), history, color="0.4", linewidth=1.0, label="history")
    for name, values in lines.items():
        style = {"color": "black", "linewidth": 2.0} if name == "actual" else {"linestyle": "--"}
        axes.plot(range(start, start + len(values)), values, label=name, marker=".", **style)
    ticks = list(range(0, len(times), max(1, len(times) // 10)))
    axes.set_xticks(ticks, [times[i] for i in ticks], rotation=30, fontsize=7)
    axes.axvline(start - 0.5, color="0.6", linewidth=0.8)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return png_of(fig)
