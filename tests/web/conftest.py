"""Fixtures of the web UI tests: the app on a real uvicorn server, and headless Chromium.

- ``web_app``: the app a user meets, built around the test's ``ctx``.
- ``live_server``: that app on a real uvicorn server in a thread, on a free port of
  127.0.0.1 (``chainkeeper.api.server.start_server_in_thread``); yields the base URL.
- ``browser``: the system Chromium (/usr/bin/chromium) driven by Playwright, once per
  session. We never run ``playwright install``: it would download a browser.
- ``page``: a fresh browser page that records console errors and failed requests, so a
  test can assert the page ran clean.
- ``with_csrf`` / ``csrf_headers``: the session's CSRF token for tests that post forms
  directly (the pages' own forms carry it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI

from chainkeeper.api.app import create_app
from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.api.csrf import CSRF_FIELD, CSRF_HEADER, csrf_token
from chainkeeper.api.server import start_server_in_thread
from chainkeeper.core.context import Context
from chainkeeper.governance.users import create_user, issue_token

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that phones home: the tests run offline.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
INSTALL_HINT = "run `apt-get install -y chromium` (or `bash scripts/install-chromium.sh`)"


def with_csrf(secret: str, form: dict[str, str] | None = None) -> dict[str, str]:
    """A form's fields plus the CSRF token of the session ``secret``, as this site's pages
    add it (``templates/_csrf.html``): what a test posting a form directly must send."""
    return {**(form or {}), CSRF_FIELD: csrf_token(secret)}


def csrf_headers(secret: str) -> dict[str, str]:
    """The header a script sends with a cookie-borne write (``static/annotate.js``)."""
    return {CSRF_HEADER: csrf_token(secret)}


@pytest.fixture
def session_token(ctx: Context) -> str:
    """A signed-in operator's session token (system.read and job.read)."""
    create_user(ctx.db, "olga", roles=["operator"])
    return issue_token(ctx.db, "olga", name="web test").secret


@pytest.fixture
def web_app(ctx: Context) -> FastAPI:
    """The app with the web router, as ``chainkeeper serve`` builds it."""
    return create_app(ctx)


@pytest.fixture
def live_server(web_app: FastAPI) -> Iterator[str]:
    """The app on a real HTTP server; yields its base URL, e.g. ``http://127.0.0.1:41234``."""
    server = start_server_in_thread(web_app, host="127.0.0.1", port=0)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless system Chromium; fails on CI when it is missing, skips elsewhere."""
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: {INSTALL_HINT}."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageProblems:
    """What went wrong in the page while a test drove it."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    error_responses: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.console_errors, f"console errors: {self.console_errors}"
        assert not self.failed_requests, f"failed requests: {self.failed_requests}"
        assert not self.error_responses, f"HTTP error responses: {self.error_responses}"


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(browser: Browser, page_problems: PageProblems, session_token: str) -> Iterator[Page]:
    """A fresh page at a desktop width (1280 px), signed in as an operator, recording
    console errors and failed requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": SESSION_COOKIE, "value": session_token, "domain": "127.0.0.1", "path": "/"}])
    tab = context.new_page()
    tab.on("console", lambda msg: page_problems.console_errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: page_problems.console_errors.append(str(exc)))
    tab.on("requestfailed", lambda req: page_problems.failed_requests.append(f"{req.method} {req.url}: {req.failure}"))
    tab.on("response", lambda resp: page_problems.error_responses.append(f"{resp.status} {resp.url}")
           if resp.status >= 400 else None)
    yield tab
    context.close()


def screenshot_dir() -> Path | None:
    """Where browser tests save the docs' screenshots (CHAINKEEPER_TEST_SCREENSHOT_DIR), if anywhere."""
    configured = os.environ.get("CHAINKEEPER_TEST_SCREENSHOT_DIR")
    return Path(configured) if configured else None
