"""The alerts and tickets page, as an operator meets it: in headless Chromium on a real server."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.alerts import create_rule, evaluate_rules
from chainkeeper.monitoring.predictions import log_predictions, prediction_record
from chainkeeper.monitoring.tickets import get_ticket
from chainkeeper.serving.deployments import deploy_model_version
from tests.model_rows import RELEASER, in_production
from tests.web.conftest import PageProblems, with_csrf

if TYPE_CHECKING:
    from playwright.sync_api import Page


def _firing(ctx: Context) -> int:
    """A deployment whose traffic breaches a rule; returns the ticket the alert opened."""
    version = in_production(ctx, "intents")
    dep = deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    create_rule(ctx, name="low-confidence", metric="mean_confidence", comparator="<", threshold=0.5, window_s=600,
                severity="critical", deployment="support", actor=Actor("ops", frozenset({"operator"})))
    log_predictions(ctx.db, [prediction_record(request_id=str(uuid.uuid4()), deployment_id=dep.id,
                                               model_version_id=version.id, at=utcnow(), text="???",
                                               label="balance", score=0.2, latency_ms=5.0)])
    (ticket_id,) = evaluate_rules(ctx).tickets
    return ticket_id


def test_an_operator_sees_the_alert_acknowledges_and_hands_over(ctx: Context, live_server: str, page: Page,
                                                                page_problems: PageProblems) -> None:
    ticket_id = _firing(ctx)
    page.goto(f"{live_server}/monitoring")
    page.click("text=Alerts and maintenance tickets")
    page.wait_for_url(f"{live_server}/monitoring/alerts")
    firing = page.locator(".firing-table tbody tr")
    expect(firing).to_have_count(1)  # waits for the page, unlike count()
    assert "low-confidence" in firing.inner_text() and "critical" in firing.inner_text()
    row = page.locator(f'tr[data-ticket="{ticket_id}"]')
    assert row.locator(".ticket-state").inner_text() == "open" and "operator" in row.inner_text()

    row.locator("button", has_text="Acknowledge").click()
    page.wait_for_url(f"{live_server}/monitoring/alerts")
    row = page.locator(f'tr[data-ticket="{ticket_id}"]')
    assert row.locator(".ticket-state").inner_text() == "acknowledged"
    assert "olga after" in row.inner_text()

    row.locator("input[name=note]").fill("confidence collapsed; please retrain")
    row.locator("button", has_text="Hand over").click()
    page.wait_for_url(f"{live_server}/monitoring/alerts")
    row = page.locator(f'tr[data-ticket="{ticket_id}"]')
    assert row.locator(".ticket-state").inner_text() == "handed_over" and "ml_engineer" in row.inner_text()
    assert "Mean time to acknowledge" in page.inner_text("body")

    # The live part refreshes itself with htmx, without a full reload.
    with page.expect_response(lambda r: r.url.endswith("/fragments/alerts"), timeout=15_000):
        pass
    page_problems.assert_clean()
    ticket = get_ticket(ctx.db, ticket_id)
    assert (ticket.acknowledged_by, ticket.handed_over_by) == ("olga", "olga")
    assert [e.action for e in list_entries(ctx.db, object_kind="ticket")] == [
        "ticket.open", "ticket.acknowledge", "ticket.handover"]


def test_a_reader_sees_no_buttons_and_a_refused_step_changes_nothing(ctx: Context, web_app: FastAPI) -> None:
    ticket_id = _firing(ctx)
    create_user(ctx.db, "audrey", roles=["auditor"])
    create_user(ctx.db, "omar", roles=["operator"])
    auditor = issue_token(ctx.db, "audrey", name="web").secret
    operator = issue_token(ctx.db, "omar", name="web").secret

    def client(token: str) -> TestClient:
        return TestClient(web_app, raise_server_exceptions=False, cookies={SESSION_COOKIE: token},
                          follow_redirects=False)

    with client(auditor) as c:
        page = c.get("/monitoring/alerts", headers={"accept": "text/html"})
        assert page.status_code == 200 and "low-confidence" in page.text and "Acknowledge</button>" not in page.text
        refused = c.post(f"/monitoring/tickets/{ticket_id}/acknowledge", data=with_csrf(auditor))
        assert refused.status_code == 403
    with client(operator) as c:
        early = c.post(f"/monitoring/tickets/{ticket_id}/handover", data=with_csrf(operator, {"note": "retrain"}))
        assert early.status_code == 409 and "Acknowledge it first" in early.text
        done = c.post(f"/monitoring/tickets/{ticket_id}/acknowledge", data=with_csrf(operator))
        assert done.status_code == 303
        again: httpx.Response = c.post(f"/monitoring/tickets/{ticket_id}/acknowledge", data=with_csrf(operator))
        assert again.status_code == 409 and "acknowledged by omar" in again.text
    assert get_ticket(ctx.db, ticket_id).state == "acknowledged"
