"""The run report: ``RUN/report.html``, one self-contained page of what a run did.

It shows the configuration, loss and metric curves, the gradient-norm history (with
clipped and skipped steps), gradient flow through time, a hidden-state heatmap,
attention for encoder–decoder runs, and each task's own pictures and tables. It
needs Jinja2 and matplotlib: ``pip install 'rnnkit[report]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPORT_FILE = "report.html"
INSTALL_HINT = "pip install 'rnnkit[report]'"


class MissingExtraError(RuntimeError):
    """The report's optional dependencies (Jinja2, matplotlib) are not installed."""


def check_extra() -> None:
    """Raise :class:`MissingExtraError`, naming the install command, unless both are importable."""
    missing = [name for name in ("jinja2", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"the run report needs {' and '.join(missing)}: {INSTALL_HINT}")


def write_report(run_dir: Path | str) -> Path:
    """Write ``RUN/report.html`` for the run folder ``run_dir`` and return its path.

    Raises:
        MissingExtraError: Jinja2 or matplotlib is not installed.
        rnnkit.data.errors.DataError: ``run_dir`` is not a run folder.
    """
    check_extra()
    from rnnkit.report.html import render, report_sections
    from rnnkit.tasks.task import run_kind

    run_dir = Path(run_dir)
    kind = run_kind(run_dir)
    page = render(run_dir, report_sections(run_dir), kind)
    path = run_dir / REPORT_FILE
    temporary = path.with_suffix(".html.tmp")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(path)
    return path


__all__ = ["INSTALL_HINT", "REPORT_FILE", "MissingExtraError", "check_extra", "write_report"]
