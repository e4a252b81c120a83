"""The browser set-up: it never skips silently, under CI it never skips, and no test installs."""

from __future__ import annotations

import inspect
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.report import browser


@pytest.fixture
def no_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(shutil, "which", lambda name: None)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the helper must not run programs (no apt-get from a test)")

    monkeypatch.setattr(subprocess, "run", refuse)


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "off"])
def test_skips_saying_why_and_how_to_install(
    no_chromium: None, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    message = r"chromium and chromedriver not found\); install it with `make browser`"
    with pytest.raises(pytest.skip.Exception, match=message):
        browser.ensure_chromium()


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "on", " true "])
def test_fails_under_any_truthy_ci(
    no_chromium: None, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="headless Chromium is not available"):
        browser.ensure_chromium()


def test_names_only_the_missing_program(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("")
    monkeypatch.setattr(browser, "CHROMIUM", str(fake))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"\(chromedriver not found\)"):
        browser.ensure_chromium()


def test_the_helper_installs_nothing() -> None:
    source = inspect.getsource(browser)
    assert "apt-get install" not in source and "sudo" not in source


def test_artifacts_go_to_tmp_path_unless_a_folder_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RNNKIT_TEST_ARTIFACTS", raising=False)
    assert browser.artifacts(tmp_path / "a") == tmp_path / "a"
    monkeypatch.setenv("RNNKIT_TEST_ARTIFACTS", str(tmp_path / "named"))
    assert browser.artifacts(tmp_path / "a") == tmp_path / "named"
    assert (tmp_path / "named").is_dir()
