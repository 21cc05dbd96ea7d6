"""Rolling a deployment out from its page, in a real headless Chromium on a real server.

A release manager starts a canary of a staging version at 20 % on /deployments/support,
sees it in the live route, is told why the promotion waits for the registry, and promotes
it once the version is approved for production; a shadow is set the same way. Bad input
(an unapproved version, percent 150, a typo) re-renders the page with the service's
message and changes nothing. An operator sees the route but no rollout forms and gets 403
on a direct POST; an annotator may not even read the page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.api.csrf import CSRF_FIELD
from chainkeeper.core.context import Context
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.registry.versions import transition_stage
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.serving.rollout import Route, RouteMode, current_route
from tests.model_rows import ENGINEER, RELEASER, in_production, registered
from tests.web.conftest import PageProblems, screenshot_dir, with_csrf

pytestmark = pytest.mark.browser


@dataclass
class Release:
    v1: int  # in production, behind 'support'
    v2: int  # in staging: may take a canary, not all traffic
    v3: int  # a candidate: may take no traffic


@pytest.fixture
def release(ctx: Context) -> Release:
    create_user(ctx.db, "rory", roles=["release_manager"])
    create_user(ctx.db, "anna", roles=["annotator"])
    v1 = in_production(ctx, "intents")
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=RELEASER)
    v2 = registered(ctx, "intents")
    transition_stage(ctx, v2.id, "staging", actor=RELEASER, comment="for a canary")
    return Release(v1.id, v2.id, registered(ctx, "intents").id)


@pytest.fixture
def signed_in(browser, ctx: Context, page_problems: PageProblems):  # type: ignore[no-untyped-def]
    """Open a page signed in as a given user; pages close with the test."""
    contexts = []

    def open_page(user: str):  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": SESSION_COOKIE, "value": issue_token(ctx.db, user, name="web test").secret,
                              "domain": "127.0.0.1", "path": "/"}])
        tab = context.new_page()
        tab.on("pageerror", lambda exc: page_problems.console_errors.append(str(exc)))
        tab.on("console", lambda msg: page_problems.console_errors.append(msg.text) if msg.type == "error" else None)
        contexts.append(context)
        return tab

    yield open_page
    for context in contexts:
        context.close()


def _live(page) -> dict[str, str]:  # type: ignore[no-untyped-def]
    fields = ("mode", "primary", "candidate", "percent", "shadow", "registry-production")
    return {f: page.locator(f"[data-field={f}]").inner_text().strip() for f in fields}


def _submit(page, form: str) -> int:  # type: ignore[no-untyped-def]
    """Click a form's button and wait for the page it leads to; return that page's status."""
    with page.expect_navigation() as navigation:
        page.click(f"form.{form} button")
    response = navigation.value
    return 0 if response is None else int(response.status)


def _refused(page, form: str, problems: PageProblems) -> int:  # type: ignore[no-untyped-def]
    """Submit a form the server refuses on purpose; Chromium logs the status, nothing else may be logged."""
    status = _submit(page, form)
    assert problems.console_errors == [f"Failed to load resource: the server responded with a status of {status} "
                                       "(Conflict)"], problems.console_errors
    problems.console_errors.clear()
    return status


def test_a_release_manager_starts_a_canary_at_20_percent_and_promotes_it(
        signed_in: Callable[[str], object], ctx: Context, live_server: str, release: Release,
        page_problems: PageProblems, tmp_path: Path) -> None:
    page = signed_in("rory")
    page.goto(f"{live_server}/deployments/support")
    assert _live(page) == {"mode": "single", "primary": "intents v1 production", "candidate": "—", "percent": "—",
                           "shadow": "no", "registry-production": "intents v1"}
    offered = page.locator("#canary-version option").all_inner_texts()
    assert offered == ["intents v3 (candidate)", "intents v2 (staging)"]
    # The form starts on the newest version that may take traffic.
    assert page.locator("#canary-version").input_value() == str(release.v2)
    assert "X-Caller-Key" in page.locator(".canary-form .sticky-note").inner_text()
    assert page.locator("form.promote-form").count() == 0  # nothing to promote yet

    # An unapproved version: the service's reason on the page, the form as it was sent.
    page.select_option("#canary-version", str(release.v3))
    page.fill("#canary-percent", "20")
    assert _refused(page, "canary-form", page_problems) == 409
    assert "only a staging or production version may take live traffic" in page.locator("[role=alert]").inner_text()
    assert page.locator("#canary-version").input_value() == str(release.v3)
    assert page.locator("#canary-percent").input_value() == "20"
    assert current_route(ctx.db, "support").mode == RouteMode.SINGLE

    page.select_option("#canary-version", str(release.v2))
    assert _submit(page, "canary-form") == 200
    assert page.url == f"{live_server}/deployments/support"
    assert _live(page) == {"mode": "canary", "primary": "intents v1 production", "candidate": "intents v2 staging",
                           "percent": "20 %", "shadow": "no", "registry-production": "intents v1"}
    assert "Canary: 20 % of callers → intents v2" in page.locator(".route-summary").inner_text()
    assert page.locator("#canary-percent").input_value() == "20"  # shifting the split starts from here
    assert page.locator(".route-history tbody tr").first.locator("td").nth(1).inner_text() == "canary"
    canary = current_route(ctx.db, "support")
    assert (canary.mode, canary.candidate_version_id, canary.percent, canary.created_by) == (
        RouteMode.CANARY, release.v2, 20, "rory")
    page.screenshot(path=str((screenshot_dir() or tmp_path) / "deployment-canary.png"), full_page=True)

    # v2 is still staging: promotion waits for the registry's gate, and says so.
    assert "is staging now" in page.locator("form.promote-form").inner_text()
    assert _refused(page, "promote-form", page_problems) == 409
    assert "only a production version may take all traffic" in page.locator("[role=alert]").inner_text()
    assert current_route(ctx.db, "support").id == canary.id

    approval = request_approval(ctx, "model.promote", release.v2, actor=ENGINEER, comment="canary looks good")
    decide(ctx, approval.id, actor=RELEASER, approve=True, comment="canary reviewed")
    page.goto(f"{live_server}/deployments/support")  # not reload(): that would send the refused POST again
    assert _live(page)["registry-production"] == "intents v2"
    assert _submit(page, "promote-form") == 200
    assert _live(page) == {"mode": "single", "primary": "intents v2 production", "candidate": "—", "percent": "—",
                           "shadow": "no", "registry-production": "intents v2"}
    assert "A rollback returns to intents v1" in page.locator(".route-summary").inner_text()
    promoted = current_route(ctx.db, "support")
    assert (promoted.primary_version_id, promoted.previous_version_id, promoted.reason) == (
        release.v2, release.v1, "promote")
    page_problems.assert_clean()


def test_a_release_manager_sets_a_shadow_and_bad_input_changes_nothing(
        signed_in: Callable[[str], object], ctx: Context, live_server: str, release: Release,
        page_problems: PageProblems) -> None:
    page = signed_in("rory")
    page.goto(f"{live_server}/deployments/support")
    before = current_route(ctx.db, "support")
    token = page.get_attribute('meta[name="csrf-token"]', "content") or ""
    # What the browser's own checks would stop, sent anyway: the server answers for itself.
    for form, fragment, status in (
            ({"model_version_id": str(release.v2), "percent": "150"}, "whole number from 1 to 99", 422),
            ({"model_version_id": str(release.v2), "percent": "twenty"}, "must be a whole number, got 'twenty'", 422),
            ({"model_version_id": "987654", "percent": "20"}, "no model version 987654", 404)):
        answer = page.request.post(f"{live_server}/deployments/support/canary", form={**form, CSRF_FIELD: token})
        text = html.unescape(answer.text())
        assert answer.status == status, text
        assert fragment in text and "Traceback" not in text
        assert 'role="alert"' in text and "Live route" in text  # the deployment page, re-rendered
    assert current_route(ctx.db, "support") == before

    page.select_option("#shadow-version", str(release.v2))
    assert _submit(page, "shadow-form") == 200
    live = _live(page)
    assert (live["mode"], live["shadow"], live["percent"]) == ("shadow", "intents v2", "—")
    assert "intents v2 shadows every request" in page.locator(".route-summary").inner_text()
    assert current_route(ctx.db, "support").mode == RouteMode.SHADOW
    page_problems.assert_clean()


def test_an_operator_sees_no_rollout_forms_and_direct_posts_are_refused(
        page, ctx: Context, live_server: str, release: Release,  # type: ignore[no-untyped-def]
        page_problems: PageProblems) -> None:
    page.goto(f"{live_server}/deployments/support")
    assert _live(page)["primary"] == "intents v1 production"
    assert page.locator("form.rollout-form").count() == 0
    assert "deployment.rollout" in page.locator("section[aria-labelledby=rollout-h]").inner_text()
    before: Route = current_route(ctx.db, "support")
    token = page.get_attribute('meta[name="csrf-token"]', "content") or ""
    # The server checks whatever the page shows: the operator's own session, straight POSTs.
    for path, form in (("canary", {"model_version_id": str(release.v2), "percent": "20"}),
                       ("shadow", {"model_version_id": str(release.v2)}), ("promote", {})):
        answer = page.request.post(f"{live_server}/deployments/support/{path}", form={**form, CSRF_FIELD: token})
        assert answer.status == 403 and "deployment.rollout" in answer.text(), (path, answer.status)
    assert current_route(ctx.db, "support") == before
    page_problems.assert_clean()

    annotator = issue_token(ctx.db, "anna", name="web test").secret
    with httpx.Client(base_url=live_server, cookies={SESSION_COOKIE: annotator}, timeout=30) as client:
        assert client.get("/deployments/support").status_code == 403
        answer = client.post("/deployments/support/canary", data=with_csrf(annotator, {
            "model_version_id": str(release.v2), "percent": "20"}))
    assert answer.status_code == 403 and "deployment.rollout" in answer.text
    assert current_route(ctx.db, "support") == before
