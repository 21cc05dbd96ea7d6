"""The support assistant's pages as people meet them: a support agent in headless Chromium on a
real server (the queue, taking a conversation, answering it), and who may see and do what."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.apps.support import handle_message, handoff_queue, show_conversation, show_support_app
from chainkeeper.apps.support.index import open_knowledge_index
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.serving.runtime import PredictorCache
from tests.support_world import AGENT, APP, OPERATOR, build_support_world
from tests.web.conftest import PageProblems, screenshot_dir, with_csrf

if TYPE_CHECKING:
    from playwright.sync_api import Page

CUSTOMER = Actor("cora", frozenset({"release_manager"}))  # may predict in every project
HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def world_home(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path,
               support_classifier_dir: Path) -> Path:
    """The chain behind the assistant ``helpdesk``, built once per module (~8 s) in a home of its own."""
    folder = tmp_path_factory.mktemp("support-pages")
    home = folder / "home"
    home.mkdir()
    shutil.copy(migrated_template, home / "chainkeeper.db")
    ctx = open_context(load_settings({}, home=home))
    try:
        build_support_world(ctx, support_classifier_dir, folder).predictors.close()
    finally:
        ctx.close()
    return home


@pytest.fixture
def ctx(world_home: Path, tmp_path: Path) -> Iterator[Context]:
    """A copy of the world's home per test (store, artefacts, index pointers): the server's ``ctx``."""
    home = tmp_path / "home"
    shutil.copytree(world_home, home)
    context = open_context(load_settings({}, home=home, heartbeat_s=0.2, stale_after_s=2.0, worker_poll_s=0.1))
    yield context
    context.close()


def _hand_over(ctx: Context, first: str, then: str) -> int:
    """A customer writes ``first``, then ``then`` (asking for a person); the conversation's id."""
    predictors = PredictorCache(ctx, batching=False)
    try:
        opened = handle_message(ctx, predictors, APP, first, actor=CUSTOMER)
        reply = handle_message(ctx, predictors, APP, then, actor=CUSTOMER, conversation_id=opened.conversation_id)
    finally:
        predictors.close()
    assert reply.decision == "handoff"
    (waiting,) = handoff_queue(ctx, actor=AGENT)
    return waiting.id


def test_an_agent_takes_a_handed_over_conversation_from_the_queue_and_answers_it(
        ctx: Context, live_server: str, page: Page, page_problems: PageProblems) -> None:
    page.context.clear_cookies()  # the agent signs in, not the page fixture's operator
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": issue_token(ctx.db, AGENT.name, name="web").secret,
                               "domain": "127.0.0.1", "path": "/"}])
    page.goto(f"{live_server}/")
    page.locator(".topnav").get_by_role("link", name="Support").click()
    page.wait_for_url(f"{live_server}/apps/support")
    assert "helpdesk-kb v1" in page.locator(f'[data-app="{APP}"]').inner_text()
    page.get_by_role("link", name="The hand-off queue").click()
    page.wait_for_url(f"{live_server}/support/queue")
    expect(page.locator(".empty-queue")).to_be_visible()

    # While the agent watches, a customer asks for a person: the queue refreshes itself (htmx).
    conversation_id = _hand_over(ctx, "我的卡丢了，怎么办？", "I want to speak to a real person")
    row = page.locator(f'tr[data-conversation="{conversation_id}"]')
    expect(row).to_be_visible(timeout=15_000)
    assert "real person" in row.inner_text() and row.locator(".queue-state").inner_text() == "waiting"
    shots = screenshot_dir()
    if shots:
        page.screenshot(path=str(shots / "support-queue.png"), full_page=True)

    row.get_by_role("button", name="Take").click()
    page.wait_for_url(f"{live_server}/support/conversations/{conversation_id}")
    expect(page.locator('[data-field="state"]')).to_have_text("claimed")
    expect(page.locator(".bubble-customer").first).to_contain_text("我的卡丢了，怎么办？")
    assistant = page.locator(".bubble-assistant").first
    assert assistant.locator('[data-field="intent"]').inner_text() and "confidence" in assistant.inner_text()

    app = show_support_app(ctx, APP, actor=AGENT)
    index, _ = open_knowledge_index(ctx, app.knowledge_version_id)
    article = next(a for a in index.articles if a.language == "zh")
    page.select_option("#answer-intent", article.intent)
    page.select_option("#answer-article", article.article_id)
    page.fill("#answer-reply", "您好，我们已为您冻结这张卡，请在应用里申请新卡。")
    if shots:
        page.screenshot(path=str(shots / "support-conversation.png"), full_page=True)
    page.get_by_role("button", name="Send the answer").click()

    expect(page.locator('[data-field="state"]')).to_have_text("resolved")
    agent = page.locator(".bubble-agent")
    expect(agent).to_contain_text("我们已为您冻结这张卡")
    assert agent.locator('[data-field="intent"]').inner_text() == article.intent
    expect(page.locator('[data-field="resolved-intent"]')).to_have_text(article.intent)
    page.goto(f"{live_server}/support/queue")
    expect(page.locator(".empty-queue")).to_be_visible()
    page_problems.assert_clean()

    stored = show_conversation(ctx, conversation_id, actor=AGENT)
    assert (stored.summary.state, stored.summary.resolved_by) == ("resolved", AGENT.name)
    assert stored.resolution is not None and stored.resolution["article_id"] == article.article_id
    assert stored.messages[-1]["sender"] == "agent" and stored.messages[-1]["intent"] == article.intent


def test_readers_see_no_answer_form_and_refused_requests_change_nothing(ctx: Context, web_app: FastAPI) -> None:
    conversation_id = _hand_over(ctx, "How do I get my money back? <script>alert(1)</script>",
                                 "I want to speak to a real person")
    create_user(ctx.db, "anna", roles=["annotator"])  # no support.read
    tokens = {name: issue_token(ctx.db, name, name="web").secret for name in (OPERATOR.name, AGENT.name, "anna")}

    def client(name: str) -> TestClient:
        return TestClient(web_app, raise_server_exceptions=False, cookies={SESSION_COOKIE: tokens[name]},
                          follow_redirects=False, headers=HTML)

    conversation = f"/support/conversations/{conversation_id}"
    with client(OPERATOR.name) as c:
        apps = c.get("/apps/support")
        assert apps.status_code == 200 and 'href="/apps/support"' in apps.text  # the nav link
        assert all(word in apps.text for word in ("helpdesk-kb v1", "energy", "handoff 1", "1 conversation"))
        assert c.get(f"/apps/support/{APP}").status_code == 200
        queue = c.get("/support/queue")
        assert queue.status_code == 200 and f'data-conversation="{conversation_id}"' in queue.text
        assert "Take</button>" not in queue.text
        page = c.get(conversation)
        assert page.status_code == 200 and 'name="intent"' not in page.text and "support.answer" in page.text
        # Stored text is shown, never run.
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert" not in page.text
        refused = c.post(f"{conversation}/take", data=with_csrf(tokens[OPERATOR.name]))
        assert refused.status_code == 403
        missing = c.get("/support/conversations/987654")
        assert missing.status_code == 404 and "There is no conversation 987654" in missing.text
        assert missing.headers["content-type"].startswith("text/html") and "Traceback" not in missing.text
    with client("anna") as c:
        assert 'href="/apps/support"' not in c.get("/").text
        forbidden = c.get("/support/queue")
        assert forbidden.status_code == 403 and "support.read" in forbidden.text
        assert forbidden.headers["content-type"].startswith("text/html")
    with client(AGENT.name) as c:
        assert c.post(f"{conversation}/take").status_code == 403  # a forged post: no CSRF token
        wrong = c.post(f"{conversation}/answer", data=with_csrf(tokens[AGENT.name], {
            "intent": "no_such_intent", "reply": "We will refund you <b>today</b>"}))
        assert wrong.status_code == 422 and "Unknown intent" in wrong.text
        assert "We will refund you &lt;b&gt;today&lt;/b&gt;</textarea>" in wrong.text  # what was typed, kept
        half = c.post(f"{conversation}/answer", data=with_csrf(tokens[AGENT.name], {
            "intent": "out_of_scope", "reply": "Sorry", "new_title": "Refunds by post"}))
        assert half.status_code == 422 and "needs a title" in half.text
    assert show_conversation(ctx, conversation_id, actor=AGENT).summary.state == "handed_over"
