"""The registry and deployment pages in a real headless Chromium on a real server.

/models lists versions with their stage, gate verdict and production history;
/models/{id} renders the card from its Markdown next to the gate results (values and
thresholds), the lineage, the approvals and the stage history; /deployments and
/deployments/{name} show routes, canary share and history, and a release manager's
rollback button goes through the same service as the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.core.context import Context
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.registry.cards import render_card_html
from chainkeeper.registry.gates import run_gates, set_gate_thresholds
from chainkeeper.registry.versions import register_model_version, transition_stage
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.serving.rollout import RouteMode, current_route, start_canary
from tests.model_rows import ENGINEER, RELEASER, in_production, insert_run, registered
from tests.web.conftest import PageProblems, with_csrf

pytestmark = pytest.mark.browser


@dataclass
class Registry:
    v1: int
    v2: int
    v3: int


@pytest.fixture
def registry(ctx: Context) -> Registry:
    """intents v1 in production behind 'support', v2 in staging on a 20 % canary, v3 a
    candidate that failed its gates; v1's promotion went through an approval."""
    create_user(ctx.db, "rory", roles=["release_manager"])
    set_gate_thresholds(ctx, "intents", actor=RELEASER, min_macro_f1=0.8)
    v1 = registered(ctx, "intents")
    request = request_approval(ctx, "model.promote", v1.id, actor=ENGINEER, comment="ready")
    decide(ctx, request.id, actor=RELEASER, approve=True, comment="<b>metrics</b> reviewed")
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=RELEASER)
    v2 = registered(ctx, "intents")
    transition_stage(ctx, v2.id, "staging", actor=RELEASER, comment="for a canary")
    start_canary(ctx, "support", v2.id, percent=20, actor=RELEASER)
    weak = insert_run(ctx, model_artifact="b" * 64, metrics={"test": {"accuracy": 0.7, "macro_f1": 0.61}})
    v3 = register_model_version(ctx, run_id=weak, name="intents", actor=ENGINEER)
    run_gates(ctx, v3.id, actor=ENGINEER)
    in_production(ctx, "sentiment")
    return Registry(v1.id, v2.id, v3.id)


@pytest.fixture
def manager_page(browser, ctx: Context, live_server: str, registry: Registry,  # type: ignore[no-untyped-def]
                 page_problems: PageProblems) -> Iterator[object]:
    """A page signed in as rory, a release manager."""
    token = issue_token(ctx.db, "rory", name="web test").secret
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": SESSION_COOKIE, "value": token, "domain": "127.0.0.1", "path": "/"}])
    tab = context.new_page()
    tab.on("pageerror", lambda exc: page_problems.console_errors.append(str(exc)))
    tab.on("response", lambda resp: page_problems.error_responses.append(f"{resp.status} {resp.url}")
           if resp.status >= 400 else None)
    yield tab
    context.close()


def test_models_page_lists_versions_with_stage_gates_and_production_history(
        page, live_server: str, registry: Registry, page_problems: PageProblems) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server}/models")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Models"
    intents = page.locator("section[data-model=intents]")
    rows = intents.locator(".versions-table tbody tr")
    assert rows.count() == 3
    v1 = intents.locator(f"tr[data-version-id='{registry.v1}']")
    assert "production" in v1.inner_text() and "passed" in v1.inner_text() and "0.8800" in v1.inner_text()
    assert "staging" in intents.locator(f"tr[data-version-id='{registry.v2}']").inner_text()
    v3 = intents.locator(f"tr[data-version-id='{registry.v3}'] td.gates")
    assert "failed" in v3.inner_text() and "verdict-failed" in (v3.get_attribute("class") or "")
    history = intents.locator(".production-history tbody tr")
    assert history.count() == 1 and "intents v1" in history.inner_text() and "now" in history.inner_text()
    assert page.locator("section[data-model=sentiment]").count() == 1

    page.click(f"a[href='/models/{registry.v1}']")
    page.wait_for_url(f"**/models/{registry.v1}")
    page_problems.assert_clean()


def test_model_page_renders_the_card_gates_lineage_and_approvals(
        page, live_server: str, registry: Registry, page_problems: PageProblems) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server}/models/{registry.v1}")
    card = page.locator("section.model-card")
    # Rendered from Markdown: real headings and tables, not the raw text.
    assert card.locator("h1").inner_text() == "Model card: intents v1"
    headings = card.locator("h2").all_inner_texts()
    for section in ("Intended use", "Data", "Training", "Metrics", "Limitations", "Exports", "Release"):
        assert section in headings
    assert card.locator("table").count() >= 2 and "##" not in card.inner_text()

    gate = page.locator(".gate-results tr[data-gate='min-macro-f1']")
    cells = gate.locator("td").all_inner_texts()
    assert cells[:4] == ["min-macro-f1", "passed", "0.88", "0.8"]
    lineage = page.locator(".lineage").inner_text()
    assert "run " in lineage and "erin" in lineage and "dataset version" in lineage
    approvals = page.locator(".approvals").inner_text()
    assert "model.promote" in approvals and "executed" in approvals and "rory" in approvals
    # A comment holding markup is shown as text, never as markup.
    assert "<b>metrics</b> reviewed" in approvals and page.locator(".approvals b").count() == 0
    assert page.locator(".stage-history tbody tr").count() == 3  # candidate, staging, production
    assert "Not exported" in page.locator("section[aria-labelledby=exports-h]").inner_text()
    page_problems.assert_clean()


def test_deployment_pages_show_the_canary_and_a_release_manager_rolls_it_back(
        page, manager_page, ctx: Context, live_server: str, registry: Registry,  # type: ignore[no-untyped-def]
        page_problems: PageProblems) -> None:
    page.goto(f"{live_server}/deployments")
    row = page.locator("tr[data-deployment=support]")
    assert "canary" in row.inner_text() and "20 %" in row.inner_text() and "intents v2" in row.inner_text()

    page.goto(f"{live_server}/deployments/support")
    assert page.locator("[data-field=percent]").inner_text() == "20 %"
    assert page.locator("[data-field=shadow]").inner_text() == "no"
    # An operator sees the route but no rollback button.
    assert page.locator("form.rollback-form").count() == 0
    assert "deployment.rollback" in page.locator("section[aria-labelledby=route-h]").inner_text()

    manager_page.goto(f"{live_server}/deployments/support")
    manager_page.fill("#rollback-comment", "canary answers look off")
    manager_page.click("form.rollback-form button")
    manager_page.wait_for_load_state()
    assert "All traffic → intents v1" in manager_page.locator(".route-summary").inner_text()
    assert manager_page.locator("[data-field=mode]").inner_text() == "single"
    reasons = manager_page.locator(".route-history tbody tr td:nth-child(2)").all_inner_texts()
    assert reasons[0] == "rollback" and "canary" in reasons
    route = current_route(ctx.db, "support")
    assert route.mode == RouteMode.SINGLE and route.primary_version_id == registry.v1
    assert route.created_by == "rory"

    # Nothing left to roll back to: the page says so with the service's message, changes nothing.
    manager_page.click("form.rollback-form button")
    manager_page.wait_for_load_state()
    assert "no previous version to roll back to" in manager_page.locator("[role=alert]").inner_text()
    assert current_route(ctx.db, "support").id == route.id
    page_problems.error_responses.clear()  # the refused rollback answered 409 on purpose
    page_problems.assert_clean()


def test_pages_answer_unknown_ids_and_forbidden_actions_clearly(ctx: Context, registry: Registry,
                                                                 session_token: str) -> None:
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    client.cookies.set(SESSION_COOKIE, session_token)
    answer = client.get("/models/987654")
    assert answer.status_code == 404 and "no model version 987654" in answer.text and "Traceback" not in answer.text
    assert client.get("/deployments/ghost").status_code == 404
    refused = client.post("/deployments/support/rollback", data=with_csrf(session_token, {"comment": "operator tries"}))
    assert refused.status_code == 403 and "deployment.rollback" in refused.text
    assert current_route(ctx.db, "support").mode == RouteMode.CANARY


def test_card_html_escapes_markup_held_in_stored_values() -> None:
    html = render_card_html("# Card\n\n| label | note |\n| --- | --- |\n| <script>x()</script> | a |\n")
    assert "<script>" not in html and "&lt;script&gt;" in html and "<table>" in html
