"""The chain overview page, as a user meets it: over HTTP in-process, and in headless Chromium."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.jobs import submit_job
from chainkeeper.core.settings import load_settings
from chainkeeper.core.worker import Worker
from chainkeeper.web.pages import JOBS_REFRESH_S, STATIC_DIR
from tests.web.conftest import PageProblems, screenshot_dir

if TYPE_CHECKING:
    from playwright.sync_api import Page

STAGE_TITLES = ["Collect & clean", "Annotate", "Train", "Release model", "Deploy & serve", "Monitor", "Audit"]
ROLES = ["data_steward", "annotator", "ml_engineer", "release_manager", "operator", "auditor"]


def get(app: FastAPI, path: str, token: str = "ck_none") -> httpx.Response:
    # In-process: the network is not the point here. raise_server_exceptions=False makes
    # the client see what a browser would, never a re-raised traceback. Like a browser,
    # it asks for HTML and sends its session cookie.
    with TestClient(app, raise_server_exceptions=False, cookies={SESSION_COOKIE: token}) as client:
        return client.get(path, headers={"accept": "text/html"})


# --- in-process ------------------------------------------------------------------------


def test_overview_lists_the_stage_cards_in_chain_order_with_their_roles(web_app: FastAPI, session_token: str) -> None:
    page = get(web_app, "/", session_token)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    titles = re.findall(r'<h2 class="stage-title">(.*?)</h2>', page.text)
    assert titles == [t.replace("&", "&amp;") for t in STAGE_TITLES]
    for role in ROLES:
        assert f">{role}</span>" in page.text
    assert "No jobs yet — run <code>chainkeeper quickstart</code>" in page.text


def test_jobs_fragment_polls_itself_and_lists_a_submitted_job(web_app: FastAPI, ctx: Context,
                                                             session_token: str) -> None:
    job = submit_job(ctx, "sleep", {"steps": 1}, actor="alice")

    fragment = get(web_app, "/fragments/jobs", session_token)

    assert fragment.status_code == 200
    assert "<html" not in fragment.text  # a fragment, not a page
    assert 'hx-get="/fragments/jobs"' in fragment.text
    assert f'hx-trigger="every {JOBS_REFRESH_S}s"' in fragment.text
    row = re.search(rf'<tr data-job-id="{job.id}" data-state="queued">(.*?)</tr>', fragment.text, re.S)
    assert row is not None, fragment.text
    assert "badge-queued" in row.group(1) and "alice" in row.group(1) and "0%" in row.group(1)
    assert "No worker is running, so 1 queued job(s) wait" in fragment.text


def test_the_page_loads_htmx_from_our_own_static_folder(web_app: FastAPI, session_token: str) -> None:
    page = get(web_app, "/", session_token)
    script = get(web_app, "/static/htmx.min.js")

    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/htmx.min.js" in sources and "/static/app.css" in sources
    # Offline: nothing is fetched from another host.
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))]
    assert script.status_code == 200 and "htmx" in script.text[:200]
    assert "Zero-Clause BSD" in (STATIC_DIR / "htmx-LICENSE").read_text()


def test_an_unreachable_store_renders_an_error_page_not_a_traceback(tmp_path: Path) -> None:
    # Port 9 (discard) refuses connections at once: the store is down, not slow.
    settings = load_settings({}, home=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    broken = open_context(settings, check_schema=False)
    try:
        page = get(create_app(broken), "/")
        fragment = get(create_app(broken), "/fragments/jobs")
    finally:
        broken.close()

    assert page.status_code == 503
    assert "Metadata store unavailable" in page.text and "127.0.0.1:9" in page.text
    assert "Check that the database server is running" in page.text
    assert "Traceback" not in page.text
    assert fragment.status_code == 503 and "<html" not in fragment.text


# --- in the browser -------------------------------------------------------------------


@pytest.mark.browser
def test_a_submitted_job_appears_and_succeeds_without_a_reload(
    page: Page, live_server: str, ctx: Context, page_problems: PageProblems, tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    page.goto(live_server + "/")
    expect(page).to_have_title(re.compile("Chain overview"))
    cards = page.locator("ol.chain > li.stage")
    expect(cards).to_have_count(len(STAGE_TITLES))
    expect(cards.locator(".stage-title")).to_have_text(STAGE_TITLES)
    for role in ROLES:
        expect(page.locator(".role-chip", has_text=role).first).to_be_visible()
    expect(page.get_by_text("No jobs yet")).to_be_visible()

    # A marker on the window survives polling but not a reload: it proves the table
    # changed in place.
    page.evaluate("window.__notReloaded = true")
    job = submit_job(ctx, "sleep", {"steps": 5, "step_s": 0.2}, actor="alice")
    row = page.locator(f'tr[data-job-id="{job.id}"]')
    expect(row).to_be_visible(timeout=JOBS_REFRESH_S * 3000)
    expect(row.locator(".badge")).to_have_text("queued")

    worker = threading.Thread(target=Worker(ctx, worker_id="browser-test-worker").run_one)
    worker.start()
    worker.join(timeout=30)
    expect(row.locator(".badge")).to_have_text("succeeded", timeout=JOBS_REFRESH_S * 3000)
    expect(row.locator(".progress-label")).to_have_text("100%")
    expect(page.locator('[data-worker-id="browser-test-worker"]')).to_be_visible()
    assert page.evaluate("window.__notReloaded") is True

    # The README's picture: set CHAINKEEPER_TEST_SCREENSHOT_DIR=docs/images to refresh it.
    page.screenshot(path=str((screenshot_dir() or tmp_path) / "overview.png"), full_page=True)
    page_problems.assert_clean()


@pytest.mark.browser
def test_the_overview_is_usable_at_phone_width(page: Page, live_server: str, page_problems: PageProblems) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server + "/")

    # Nothing pushes the page sideways: its content fits the phone's width.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"page is {width}px wide on a 390px screen"
    from playwright.sync_api import expect

    expect(page.locator(".stage-title", has_text="Audit")).to_be_visible()
    page_problems.assert_clean()


def test_a_signed_out_browser_is_sent_to_sign_in_and_back(web_app: FastAPI, ctx: Context) -> None:
    from chainkeeper.governance.passwords import set_password
    from chainkeeper.governance.users import create_user

    create_user(ctx.db, "sofia", roles=["data_steward"])
    set_password(ctx.db, "sofia", "a long enough password")
    with TestClient(web_app, raise_server_exceptions=False, follow_redirects=False) as client:
        first = client.get("/", headers={"accept": "text/html"})
        assert first.status_code == 303 and first.headers["location"] == "/login?next=/"
        wrong = client.post("/login", data={"user": "sofia", "password": "nope", "next": "/"})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        signed_in = client.post("/login", data={"user": "sofia", "password": "a long enough password", "next": "/"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        page = client.get("/", headers={"accept": "text/html"})
        assert page.status_code == 200 and "sofia" in page.text and "Chain overview" in page.text
        evil = client.post("/login", data={"user": "sofia", "password": "a long enough password",
                                           "next": "//evil.example/"})
        assert evil.headers["location"] == "/"
    # An API client without credentials still gets problem+json, not a redirect.
    with TestClient(web_app, raise_server_exceptions=False, follow_redirects=False) as anonymous:
        api = anonymous.get("/api/jobs")
    assert api.status_code == 401 and api.headers["content-type"].startswith("application/problem+json")
