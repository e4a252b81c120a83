"""The browser set-up: it never skips silently, and under CI it never skips."""

from __future__ import annotations

import shutil

import pytest

from tests.report import browser


@pytest.fixture
def no_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(browser, "_install", lambda: "apt-get: no network")


def test_skips_saying_why(no_chromium: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="could not be installed: apt-get: no network"):
        browser.ensure_chromium()


def test_fails_under_ci(no_chromium: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="could not be installed: apt-get: no network"):
        browser.ensure_chromium()
