"""What a report page is made of: sections of text, tables and pictures, and the
renderers that several tasks share (a confusion matrix, the most confidently wrong
examples). Each task builds its own sections from these (:meth:`rnnkit.tasks.task.Task.report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rnnkit.report import figures


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    uri: str
    alt: str


@dataclass(frozen=True)
class Section:
    """One part of the page.

    Attributes:
        title: the heading.
        text: paragraphs (plain text, escaped by the template).
        images: pictures as ``data:`` URIs.
        tables: tables of text cells.
        blocks: preformatted text (configuration, samples, tagged sentences).
        missing: why the section could not be made for this run (``None``: it was).
    """

    title: str
    text: list[str] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    missing: str | None = None


def image(png: bytes, alt: str) -> Image:
    return Image(figures.data_uri(png), alt)


def fmt(value: float) -> str:
    if value != value:
        return "–"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    if abs(value) >= 1000 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4f}"


def confusion_section(metrics: dict[str, float], matrix: dict[str, Any], split: str) -> Section:
    """A confusion matrix ``{"labels": [...], "matrix": [[...]]}`` as an annotated heatmap."""
    labels = [str(label) for label in matrix["labels"]]
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
    png = figures.heatmap(matrix["matrix"], xlabel="predicted", ylabel="true",
                          title="confusion matrix", xticks=labels, yticks=labels, cmap="Blues",
                          symmetric=False, annotate=True)  # fmt: skip
    return Section(
        "Confusion matrix",
        text=[f"{split.capitalize()} split: {shown}. Rows: true label; columns: predicted."],
        images=[image(png, "confusion matrix")],
    )


def wrong_section(rows: list[tuple[float, str, str, str]], limit: int = 10) -> Section:
    """The examples a classifier got wrong, ``(P(predicted), example, true, predicted)``,
    surest first."""
    title = "Most confidently wrong"
    rows = sorted(rows, key=lambda r: -r[0])
    if not rows:
        return Section(title, text=["No test example is misclassified."])
    shown = min(limit, len(rows))
    return Section(
        title,
        text=[f"{len(rows)} test examples are wrong; the {shown} the model was surest of:"],
        tables=[
            Table(
                ["P(predicted)", "example", "true", "predicted"],
                [[f"{p:.3f}", s, t, g] for p, s, t, g in rows[:limit]],
            )
        ],
    )
