"""A real browser for the UI tests: Debian's Chromium driven by Playwright for Python (its own browser
downloads are never used), one fresh profile per page, and what went wrong on each page."""

from __future__ import annotations

import os
import shutil
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
    429 or 5xx, a script the browser would not run) and WebSocket frames received."""

    def __init__(self, browser, name: str, **context):
        self.name = name
        self.context = browser.new_context(ignore_https_errors=True, **context)
        self.page = self.context.new_page()
        self.broken: list[str] = []
        self.frames: list[str] = []
        self.page.on("response", self._response)
        self.page.on("console", self._console)
        self.page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: self.frames.append(str(frame))))

    def _response(self, response) -> None:
        if response.status == 429 or response.status >= 500:
            self.broken.append(f"{response.status} {response.url}")

    def _console(self, message) -> None:
        if message.type == "error" and ("Refused to execute" in message.text or "ChunkLoadError" in message.text):
            self.broken.append(message.text[:300])

    def screenshot(self) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    def close(self) -> None:
        self.context.close()
