"""A real browser for the UI tests: Debian's Chromium driven by Playwright for Python (its own browser
downloads are never used), one fresh profile per page, and what went wrong on each page."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
# Headless, with no calls to Google's services (this machine's network refuses them, many at a time).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(os.environ.get("AI_PLATFORM_TEST_ARTIFACTS", "/tmp/ai-platform-test-artifacts")) / "screenshots"


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    """Debian's Chromium driven by Playwright; CI installs both, so there it is never skipped."""
    if CHROMIUM is None and os.environ.get("CI") != "true":
        pytest.skip("needs Debian's chromium (scripts/system-packages.txt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A fresh browser profile's page, with what went wrong on it: failed or refused responses (any
    429 or 5xx, a script the browser would not run), the WebSockets it opened and their frames."""

    def __init__(self, browser, name: str, **context):
        self.name = name
        self.context = browser.new_context(ignore_https_errors=True, **context)
        self.page = self.context.new_page()
        self.broken: list[str] = []
        self.frames: list[str] = []
        self.sockets: list = []  # Playwright WebSockets: .url, .is_closed()
        self.errors: list[str] = []  # the console's errors and uncaught exceptions, for a failure's report
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"[:500]))
        self.page.on("response", self._response)
        self.page.on("console", self._console)
        self.page.on("websocket", self._websocket)

    def _websocket(self, socket) -> None:
        self.sockets.append(socket)
        socket.on("framereceived", lambda frame: self.frames.append(str(frame)))

    def _response(self, response) -> None:
        if response.status == 429 or response.status >= 500:
            self.broken.append(f"{response.status} {response.url}")

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text[:500])
        if message.type == "error" and ("Refused to execute" in message.text or "ChunkLoadError" in message.text):
            self.broken.append(message.text[:300])

    def wait_for(self, probe, timeout: float, what: str):
        """Poll `probe` until it returns something true. The page's events reach Python only while
        Playwright runs, so this waits in the page (time.sleep would hold them back)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            self.page.wait_for_timeout(500)
        raise AssertionError(f"no {what} within {timeout:g} s")

    def screenshot(self) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    def close(self) -> None:
        self.context.close()
