"""The run report: one self-contained HTML page (``RUN/report.html``), rendered with Jinja2.

Pictures are PNG ``data:`` URIs and the styles are inline, so the page loads
nothing from anywhere: it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path

from rnnkit.report.page import Section
from rnnkit.report.sections import Context, build
from rnnkit.tasks.task import run_kind
from rnnkit.training.runs import config_file

TEMPLATE = "template.html.j2"


def render(run_dir: Path, sections: list[Section], kind: str) -> str:
    """The page for ``sections`` (the template lives beside this module)."""
    import jinja2

    from rnnkit.version import __version__

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template(TEMPLATE).render(
        name=run_dir.resolve().name,
        kind=kind,
        run_dir=str(run_dir),
        written=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        version=__version__,
        sections=sections,
    )


def report_sections(run_dir: Path | str) -> list[Section]:
    """Every section of the run's report (see :mod:`rnnkit.report.sections`)."""
    run_dir = Path(run_dir)
    config = tomllib.loads(config_file(run_dir).read_text(encoding="utf-8"))
    return build(Context(run_dir, run_kind(run_dir), config))
