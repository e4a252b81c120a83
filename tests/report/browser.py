"""Open a page in headless Chromium the way a person would, through chromedriver.

A stdlib-only W3C WebDriver client (``urllib`` + JSON): start ``chromedriver``, open
one headless Chromium session with the browser's console log enabled, load a file,
run a script in the page, take a screenshot. Debian's ``chromium`` and
``chromium-driver`` packages provide the two programs. Installing them is a set-up
step (``make browser``, which ``.ci/run`` runs), never something a test does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
PROGRAMS = ("chromium", "chromedriver")
# The values CI services set (GitHub, GitLab and others use "true"); any of them
# makes a missing browser a failure, so the page test cannot skip silently there.
TRUTHY = {"1", "true", "yes", "on"}


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in TRUTHY


def ensure_chromium() -> tuple[str, str]:
    """The paths of chromium and chromedriver.

    When either is missing the test is skipped, saying why and how to install them;
    under a truthy ``CI`` that is a failure instead.
    """
    browser = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    missing = " and ".join(
        name for name, path in zip(PROGRAMS, (browser, driver), strict=True) if not path
    )
    message = (
        f"headless Chromium is not available ({missing} not found); install it with "
        "`make browser` (Debian's chromium and chromium-driver)"
    )
    if under_ci():
        pytest.fail(message)
    pytest.skip(message)


def artifacts(tmp_path: Path) -> Path:
    """Where tests leave files for people to look at: ``$RNNKIT_TEST_ARTIFACTS``, else
    the test's ``tmp_path`` (never the source tree)."""
    folder = Path(os.environ.get("RNNKIT_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Browser:
    """One chromedriver process and one headless Chromium session."""

    browser: str
    driver: str
    width: int = 1200
    height: int = 900
    _process: subprocess.Popen[bytes] | None = None
    _url: str = ""
    _session: str = ""
    log: list[dict[str, Any]] = field(default_factory=list)

    def __enter__(self) -> Browser:
        port = _free_port()
        self._process = subprocess.Popen(
            [self.driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not start within 30 s")
            time.sleep(0.1)
        options = {
            "binary": self.browser,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                # No name resolves: anything the page fetched from the network would
                # fail and show up as a console error.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--window-size={self.width},{self.height}",
            ],
        }
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        answer = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self._session = answer["sessionId"]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._session:
                self._call("DELETE", f"/session/{self._session}")
        finally:
            if self._process is not None:
                self._process.terminate()
                self._process.wait(timeout=10)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self._url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"webdriver {method} {path}: {error.read().decode()}") from None

    def _in_session(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"/session/{self._session}{path}", body)

    def open(self, path: Path) -> None:
        self._in_session("POST", "/url", {"url": path.resolve().as_uri()})

    def script(self, source: str) -> Any:
        """Run ``source`` (a function body; ``return`` its answer) in the page."""
        return self._in_session("POST", "/execute/sync", {"script": source, "args": []})

    def console(self) -> list[dict[str, Any]]:
        """The browser console's entries since the last call (level, message)."""
        entries: list[dict[str, Any]] = self._in_session("POST", "/se/log", {"type": "browser"})
        self.log += entries
        return entries

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        if full_page:  # grow the window to the page's height so the shot holds all of it
            height = int(self.script("return document.documentElement.scrollHeight;"))
            self._in_session(
                "POST", "/window/rect", {"width": self.width, "height": min(height + 120, 16000)}
            )
        png = base64.b64decode(self._in_session("GET", "/screenshot"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path
