"""The CSRF finding and the Content-Security-Policy in real headless Chromium (issue 15 item 4).

The probe's attack, reproduced: a page served from another port of the same host (same
site, so the SameSite=Strict cookie goes along) auto-posts ``/annotate/projects`` while
the data steward is signed in. Before the fix the project was created; now it is refused
and nothing is stored, while the same form submitted from the app's own page works.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chainkeeper.annotation.projects import list_projects
from chainkeeper.annotation.schemas import define_schema
from chainkeeper.api.security_headers import APP_POLICY
from chainkeeper.core.context import Context
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.passwords import set_password
from tests.annotation.conftest import STEWARD, make_users, make_version
from tests.web.conftest import PageProblems

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

PASSWORD = "violet kestrel above the quarry"


def _attacker_page(target: str, version_id: int, schema_id: int) -> bytes:
    """What the other port serves: a form to the app that submits itself on load."""
    fields = {"name": "forged", "dataset_version_id": version_id, "schema_id": schema_id, "annotators": "ana, ben",
              "overlap_k": 1, "overlap_fraction": 0, "queue_order": "random", "batch_size": 50}
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    return (f'<!doctype html><html><body><form id="f" method="post" action="{target}/annotate/projects">'
            f'{inputs}</form><script>document.getElementById("f").submit()</script></body></html>').encode()


@pytest.fixture
def attacker(live_server: str, ctx: Context, tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    """The sample dataset version and schema, and a server on another port serving the forging page."""
    make_users(ctx)
    set_password(ctx.db, STEWARD.name, PASSWORD)
    version = make_version(ctx, tmp_path / "sample")
    schema = define_schema(ctx.db, name="intents", kind="single", labels=["a", "b"], actor=STEWARD)
    body = _attacker_page(live_server, version.id, schema.id)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", version.id, schema.id
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _sign_in(page: Page, live_server: str) -> None:
    page.goto(f"{live_server}/login")
    page.fill("input[name=user]", STEWARD.name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/")


def test_a_page_on_another_port_cannot_post_as_the_signed_in_steward(
        browser: Browser, live_server: str, ctx: Context, attacker: tuple[str, int, int]) -> None:
    url, version_id, _schema_id = attacker
    context = browser.new_context()
    page = context.new_page()
    try:
        _sign_in(page, live_server)
        with page.expect_response(lambda r: r.url == f"{live_server}/annotate/projects") as posted:
            page.goto(url)
        answer = posted.value
        assert answer.status == 403
        assert "Cross-origin request refused" in answer.text()
        assert list_projects(ctx.db) == []
        assert not [e for e in list_entries(ctx.db, limit=10_000) if e.action.startswith("annotation.project")]

        # The same form from the app's own page works.
        page.goto(f"{live_server}/annotate")
        page.fill("input[name=name]", "genuine")
        page.fill("input[name=dataset_version_id]", str(version_id))
        page.fill("input[name=annotators]", "ana, ben")
        page.click("text=Create and assign")
        page.wait_for_url(f"{live_server}/annotate/*/review")
        assert [p.name for p in list_projects(ctx.db)] == ["genuine"]
    finally:
        context.close()


def test_the_policy_blocks_inline_script_and_the_pages_run_clean(page: Page, live_server: str,
                                                                page_problems: PageProblems) -> None:
    response = page.goto(f"{live_server}/")
    assert response is not None and response.headers["content-security-policy"] == APP_POLICY
    # A script injected into the page's markup would not run: no 'unsafe-inline'.
    ran = page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__injected = 1'; document.body.append(s); return window.__injected === 1; }""")
    assert ran is False
    assert any("Content Security Policy" in e for e in page_problems.console_errors)
    page_problems.console_errors.clear()
    page.goto(f"{live_server}/monitoring")
    page_problems.assert_clean()


def test_the_api_docs_page_runs_under_its_own_policy(browser: Browser, live_server: str) -> None:
    """/docs loads Swagger UI from its CDN; offline here, a stand-in answers for the CDN, so
    the test sees that the page's policy lets the CDN script and the page's own start-up run."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    stand_in = "window.SwaggerUIBundle = function (config) { document.body.dataset.swagger = config.url; };" \
               "SwaggerUIBundle.presets = {apis: 1}; SwaggerUIBundle.SwaggerUIStandalonePreset = 1;"
    page.route("https://cdn.jsdelivr.net/**", lambda route: route.fulfill(
        status=200, body=stand_in if route.request.url.endswith(".js") else "",
        content_type="application/javascript" if route.request.url.endswith(".js") else "text/css"))
    try:
        page.goto(f"{live_server}/docs")
        page.wait_for_function("document.body.dataset.swagger !== undefined")
        assert page.evaluate("document.body.dataset.swagger") == "/openapi.json"
        assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        context.close()
