"""The run report: every task's sections, a self-contained page, and the page as a
person sees it in headless Chromium."""

from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rnnkit.report import INSTALL_HINT, MissingExtraError, write_report
from rnnkit.report import sections as report_sections
from rnnkit.report.html import report_sections as sections_of
from tests.report.browser import Browser, artifacts, ensure_chromium
from tests.report.runs import RUNS

# Sections every run's page has, then each task's own.
COMMON = [
    "Configuration",
    "Loss and metrics",
    "Gradient norms",
    "Gradient flow through time",
    "Hidden states",
]
PER_TASK = {
    "classify": ["Confusion matrix", "Most confidently wrong"],
    "seqclass": ["Confusion matrix", "Most confidently wrong"],
    "tag": ["Tagged sentences"],
    "forecast": ["Forecast"],
    "lm": ["Bits per character", "Generated samples"],
    "music": ["Generated piece"],
    "seq2seq": ["Attention", "Decoded examples"],
    "caption": ["Generated captions"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained run of each task (seconds each)."""
    folder = tmp_path_factory.mktemp("runs")
    return {name: make(folder) for name, make in RUNS.items()}


@pytest.mark.parametrize("kind", sorted(PER_TASK))
def test_every_section_is_made_for_every_task(runs: dict[str, Path], kind: str) -> None:
    sections = sections_of(runs[kind])
    assert [s.title for s in sections] == COMMON + PER_TASK[kind]
    for section in sections:
        assert section.missing is None, f"{section.title}: {section.missing}"
        assert section.images or section.tables or section.blocks or section.text


def test_sections_hold_the_runs_numbers(runs: dict[str, Path]) -> None:
    by_title = {s.title: s for s in sections_of(runs["classify"])}
    # 12 steps with the gradient clipped at 0.3: the history counts what metrics.csv says.
    rows = (runs["classify"] / "metrics.csv").read_text().splitlines()
    clipped = sum(1 for row in rows if ",train,clipped,1," in row)
    assert f"12 steps; {clipped} clipped (clip norm 0.3)" in by_title["Gradient norms"].text[0]
    assert 'kind = "classify"' in by_title["Configuration"].blocks[0]
    flow_table = by_title["Gradient flow through time"].tables[0]
    assert flow_table.headers[-1] == "first / last"
    tagged = {s.title: s for s in sections_of(runs["tag"])}["Tagged sentences"]
    assert all(b.startswith("true:") and "\npredicted:" in b for b in tagged.blocks)
    assert any("]" in b for b in tagged.blocks)  # the true spans are marked


class _Page(HTMLParser):
    """Every URL the page refers to, and whether it has scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.images: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.scripts += tag == "script"
        for name in ("src", "href"):
            value = values.get(name)
            if value is not None and not value.startswith("#"):
                self.urls.append(value)
        if tag == "img":
            self.images.append(values.get("src") or "")


def test_the_page_is_self_contained(runs: dict[str, Path]) -> None:
    page = write_report(runs["seq2seq"]).read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(page)
    assert parser.scripts == 0
    assert len(parser.images) == 5  # curves, norms, gradient flow, hidden states, attention
    assert all(url.startswith("data:") for url in parser.urls), parser.urls
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert not re.search(r"url\((?!data:)", page) and "@import" not in page


def test_a_section_that_fails_says_why(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: report_sections.Context) -> report_sections.Section:
        raise RuntimeError("the disk is on fire")

    common = tuple(
        (title, broken if title == "Hidden states" else build)
        for title, build in report_sections.COMMON
    )
    monkeypatch.setattr(report_sections, "COMMON", common)
    page = write_report(runs["lm"]).read_text(encoding="utf-8")
    assert "could not be made: RuntimeError: the disk is on fire" in page
    assert "Generated samples" in page


def test_without_the_extra_the_error_names_the_install_command(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jinja2" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=re.escape(INSTALL_HINT)):
        write_report(runs["lm"])


@pytest.mark.parametrize("kind", ["classify", "seq2seq", "forecast"])
def test_the_page_in_headless_chromium(runs: dict[str, Path], kind: str, tmp_path: Path) -> None:
    """Loads with no console error, every image decoded, nothing fetched; a screenshot."""
    browser, driver = ensure_chromium()
    path = write_report(runs[kind])
    with Browser(browser, driver) as page:
        page.open(path)
        assert page.script("return document.readyState;") == "complete"
        assert page.script("return document.title;") == f"rnnkit report: {kind}"
        images = page.script(
            "return Array.from(document.images, i => [i.alt, i.complete, i.naturalWidth]);"
        )
        assert len(images) >= 4
        for alt, complete, width in images:
            assert complete and width > 0, f"image {alt!r} did not decode"
        fetched = page.script("return performance.getEntriesByType('resource').length;")
        assert fetched == 0
        shot = page.screenshot(artifacts(tmp_path) / f"report-{kind}.png")
        errors = [e for e in page.console() if e.get("level") == "SEVERE"]
        assert errors == [], errors
    assert shot.stat().st_size > 10_000


def test_every_task_has_its_own_section_and_a_tiny_run() -> None:
    from rnnkit.tasks import NAMES

    assert set(NAMES) == set(PER_TASK) == set(RUNS)
