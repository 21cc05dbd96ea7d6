"""The monitoring page in headless Chromium: charts of live quality, drift and serving, and its guard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.core.context import Context
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.drift_jobs import check_drift
from chainkeeper.monitoring.feedback import submit_feedback
from tests.monitoring.chain import IN_DISTRIBUTION, OPERATOR, Served, classifier_dir, served  # noqa: F401  (fixtures)
from tests.web.conftest import PageProblems, screenshot_dir

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_the_page_charts_quality_drift_and_serving(served: Served, live_server: str, page: Page,  # noqa: F811
                                                   page_problems: PageProblems) -> None:
    ids = served.serve(IN_DISTRIBUTION[40:])
    submit_feedback(served.ctx, [(r, "balance") for r in ids[:10]], actor=OPERATOR)
    results = check_drift(served.ctx, "support", actor=OPERATOR, last=40)

    page.goto(f"{live_server}/monitoring")
    assert page.title().startswith("Monitoring · support")
    for label in ("live quality per 1h (version", "newest drift check: statistic / threshold",
                  "drift statistic / threshold over time", "requests per second, last 24 h",
                  "p99 latency (ms), last 24 h"):
        assert page.locator(f'svg[aria-label^="{label}"]').count() == 1, label
    assert page.locator('svg[aria-label^="live quality"] circle').count() >= 2  # accuracy and macro-F1 points
    rows = page.locator(".drift-table tbody tr")
    assert rows.count() == len(results)
    fired = {r.check for r in results if r.drifted}
    assert page.locator(".drift-table .fired").count() == len(fired)
    assert "Offline test: accuracy 0.900" in page.locator("section[aria-label='Live quality']").inner_text()
    if screenshot_dir():
        page.screenshot(path=str(screenshot_dir() / "monitoring.png"), full_page=True)

    page.click("text=diagnosis report")
    expect(page.locator("h1")).to_have_text("Where support fails")  # waits for the new page
    page_problems.assert_clean()


def test_the_page_needs_monitoring_read_and_names_unknown_deployments(served: Served, web_app: FastAPI,  # noqa: F811
                                                                      ctx: Context) -> None:
    create_user(ctx.db, "ann", roles=["annotator"])
    create_user(ctx.db, "aud", roles=["auditor"])
    with TestClient(web_app, raise_server_exceptions=False) as client:
        client.cookies.set(SESSION_COOKIE, issue_token(ctx.db, "ann", name="t").secret)
        denied = client.get("/monitoring", headers={"accept": "text/html"})
        assert denied.status_code == 403 and "monitoring.read" in denied.text
        client.cookies.set(SESSION_COOKIE, issue_token(ctx.db, "aud", name="t").secret)
        missing = client.get("/monitoring?deployment=nope", headers={"accept": "text/html"})
        assert missing.status_code == 404 and "no deployment named" in missing.text
        fine = client.get("/monitoring?deployment=support&window=30m", headers={"accept": "text/html"})
        assert fine.status_code == 200 and "No drift checks yet" in fine.text
