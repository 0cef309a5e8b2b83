"""Browser tests: a live gateway on 127.0.0.1 and Debian's Chromium driven by Playwright.

``live`` serves a real app (SQLite store, bundled mappings) from a thread; ``page`` is a fresh
headless Chromium tab. ``shoot`` keeps a screenshot under test-artifacts/screenshots/ and
``assert_accessible`` runs axe-core in the page and fails on any serious or critical violation.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright
from support import Gateway, build_gateway
from werkzeug.serving import BaseWSGIServer, make_server

from gateway.config import ROOT
from gateway.services import services

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


def chromium_path() -> str:
    """Debian's Chromium (apt install chromium); a missing browser fails, never skips."""
    found = os.environ.get("GATEWAY_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is not installed (apt-get install chromium) or GATEWAY_CHROMIUM")
    return found


@dataclass
class Live:
    """A gateway serving HTTP on 127.0.0.1 from a thread."""

    gateway: Gateway
    url: str

    @property
    def app(self) -> Flask:
        """The served application."""
        return self.gateway.app


@pytest.fixture
def live_config() -> dict[str, Any]:
    """Extra configuration for the live gateway (override in a test module)."""
    return {}


@pytest.fixture
def live(sqlite_url: str, live_config: dict[str, Any]) -> Iterator[Live]:
    """A real gateway on a fresh SQLite store, served on a free 127.0.0.1 port."""
    gateway = build_gateway(sqlite_url, **live_config)
    gateway.app.testing = False
    server: BaseWSGIServer = make_server("127.0.0.1", 0, gateway.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(gateway, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(timeout=5)
        services(gateway.app).db.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the session."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own cookies); JavaScript on unless a test opens its own context."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    context.close()


@pytest.fixture
def no_script_page(browser: Browser) -> Iterator[Page]:
    """A fresh tab with JavaScript off: pages must work without it."""
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    context.close()


@pytest.fixture
def shoot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Keep a full-page screenshot named after the test and the step."""

    def take(tab: Page, step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}-{step}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take
