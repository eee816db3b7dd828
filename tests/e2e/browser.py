"""What the browser tests of the hub's pages (the dashboard, the cardholders' app) share: Debian's
headless chromium driven by Playwright (``executable_path``: it never downloads a browser of its
own), a hub to serve the page, the tills that sell to it, the artifacts folder for screenshots,
and a watch on the page's console and Content-Security-Policy."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, Error, Page, async_playwright

from device_sim.device import SimDevice
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
WAIT_S = 20.0
WAIT_MS = WAIT_S * 1000  # Playwright counts its timeouts in milliseconds

# Before any script of the page: every CSP violation the page meets is kept where the test reads it.
CSP_WATCH = """window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__cspViolations.push(`${e.effectiveDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));"""


@pytest.fixture
async def hub(database: Database, tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub that signs its growing audit tree every half second, so a page has a checkpoint."""
    h = await start_hub(database, tmp_path / "hub", checkpoint_seconds=0.5)
    yield h
    await h.client.close()


@pytest.fixture(autouse=True)
def chromium() -> Path:
    """Debian's chromium, before any hub is started: CI fails without it, elsewhere the test skips."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"chromium not installed at {CHROMIUM}: CI must run the browser test"
                        " (apt-get install chromium)")
        pytest.skip("chromium not installed: apt-get install chromium")
    return CHROMIUM


@asynccontextmanager
async def browser_page(chromium: Path, width: int, height: int) -> AsyncIterator[Page]:
    """One page of a fresh headless chromium with a viewport of WIDTH × HEIGHT CSS pixels."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.add_init_script(CSP_WATCH)
            yield page
        finally:
            await browser.close()


PHONE_WIDTH, PHONE_HEIGHT = 360, 740  # a small phone, as the app's tests see it


@pytest.fixture(name="page")
async def phone_page(chromium: Path) -> AsyncIterator[Page]:
    """A page of a phone's size (the app's tests import it as their ``page``)."""
    async with browser_page(chromium, PHONE_WIDTH, PHONE_HEIGHT) as page:
        yield page


async def wait_for(page: Page, expression: str, timeout_s: float = WAIT_S) -> object:
    """Polls a JavaScript expression until it is truthy; returns its value.

    It is polled as the body of a function: Playwright compiles a function once, from DevTools,
    where the pages' Content-Security-Policy (no 'unsafe-eval') does not apply, but it would
    ``eval`` a bare expression again on every animation frame, which that policy refuses."""
    handle = await page.wait_for_function(f"() => {expression}", timeout=timeout_s * 1000)
    return await handle.json_value()


@dataclass
class Console:
    """What a page said on its console (errors only) and which scripts failed, as it ran."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Console:
        page.on("console", self._message)
        page.on("pageerror", self._failure)
        return self

    def _message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")

    def _failure(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")

    def unexpected(self, answered: Iterable[int] = ()) -> list[str]:
        """The errors, but for the browser's own line about a request the hub answered with one of
        the ``answered`` statuses on purpose (a wrong PIN's 401): that is the page working."""
        expected = tuple(f"the server responded with a status of {status} " for status in answered)
        return [e for e in self.errors if not any(x in e for x in expected)]


async def csp_violations(page: Page) -> list[str]:
    return await page.evaluate("window.__cspViolations")


async def add_merchants(hub: Hub, rows: Iterable[tuple[str, str, str]]) -> None:
    """Registers merchants ``(merchant_id, name, category)``."""
    for merchant_id, name, category in rows:
        await hub.post("/v1/merchants", {"merchant_id": merchant_id, "name": name, "category": category})


async def add_tills(hub: Hub, rows: Iterable[tuple[str, str, str]]) -> list[SimDevice]:
    """Registers POS devices ``(device_id, merchant_id, location)``; answers their simulators."""
    devices = []
    for device_id, merchant_id, location in rows:
        till = SimDevice(device_id, "pos")
        await hub.post("/v1/devices", {"device_id": device_id, "kind": "pos", "public_key": till.public_key,
                                       "merchant_id": merchant_id, "location": location})
        devices.append(till)
    return devices
