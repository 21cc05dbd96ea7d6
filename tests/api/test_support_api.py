"""The support assistant over HTTP, on a real uvicorn server (issue 16), as its users meet it.

One world per module (``tests/support_world.py``: the tiny intent classifier deployed as
``support``, the sample's knowledge base released, the assistant ``helpdesk``), served on a
free loopback port. A customer talks to it with an API key of its deployment; a support
agent takes the conversation it handed over and answers it; a data steward turns the answer
into a labelled row; the answer's lineage names the model version and the knowledge base's
release approver. Then bad input, each refused with a clear problem and nothing stored.
Every answer is checked: below 500, and a ``application/problem+json`` problem when it is an error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from chainkeeper.api.app import create_app
from chainkeeper.api.server import start_server_in_thread
from chainkeeper.apps.customer_service.knowledge import write_knowledge_base
from chainkeeper.apps.support.knowledge import import_knowledge_base
from chainkeeper.apps.support.tables import SqlSupportConversation, SqlSupportMessage
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.registry.versions import Stage, register_model_version, transition_stage
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.training.runs import finish_run
from chainkeeper.training.tables import SqlRun
from tests.support_world import APP, DEPLOYMENT, ENGINEER, RELEASER, STEWARD, SupportWorld, build_support_world
from tests.training.test_tasks import conll_version

PROBLEM_JSON = "application/problem+json"
MESSAGES = f"/v1/apps/{APP}/messages"
PERSON = "I want to speak to a real person, please write to jane.doe@example.com"


@dataclass
class Api:
    client: httpx.Client
    ctx: Context
    world: SupportWorld
    tokens: dict[str, str]  # user name -> API token
    keys: dict[str, str]  # "main", "second" (deployment support), "limited" (2/min), "foreign" (deployment other)
    draft_kb_id: int  # a knowledge-base version imported, never released

    def call(self, method: str, path: str, *, who: str | None = None, key: str | None = None, body: Any = None,
             params: dict[str, Any] | None = None, content: bytes | None = None) -> httpx.Response:
        """One request as a user (``who``) or with an API key (``key``); never a 500, errors as problems."""
        headers = {}
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        if key is not None:
            headers["X-API-Key"] = self.keys.get(key, key)
        if content is not None:
            headers["Content-Type"] = "application/json"
        answer = self.client.request(method, path, json=body if content is None else None, content=content,
                                     params=params, headers=headers)
        assert answer.status_code < 500, f"{method} {path}: {answer.status_code} {answer.text[:300]}"
        if answer.status_code >= 400:
            assert answer.headers["content-type"].startswith(PROBLEM_JSON), answer.headers
            problem = answer.json()
            assert problem["status"] == answer.status_code and problem["detail"], problem
        else:
            assert answer.headers["content-type"].startswith("application/json")
        return answer

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.call(method, path, **kwargs)
        assert answer.status_code in (200, 201), f"{method} {path}: {answer.status_code} {answer.text[:300]}"
        return answer.json()

    def problem(self, status: int, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = self.call(method, path, **kwargs)
        assert answer.status_code == status, f"{method} {path}: {answer.status_code} {answer.text[:300]}"
        problem: dict[str, Any] = answer.json()
        return problem

    def send(self, text: str, conversation_id: str | None = None, key: str = "main") -> dict[str, Any]:
        reply: dict[str, Any] = self.ok("POST", MESSAGES, key=key,
                                        body={"text": text, "conversation_id": conversation_id})
        return reply

    def stored(self) -> tuple[int, int]:
        """(conversations, messages) in the store."""
        with self.ctx.db.session(readonly=True) as s:
            return (s.scalar(sa.select(sa.func.count()).select_from(SqlSupportConversation)) or 0,
                    s.scalar(sa.select(sa.func.count()).select_from(SqlSupportMessage)) or 0)


def _tagger_deployment(ctx: Context, tiny_model_dir: Path, folder: Path) -> None:
    """A token tagger (tiny, random) in production and deployed as ``ner``: not an intent classifier."""
    import torch

    from chainkeeper.training.tokens import TokenTagger

    torch.manual_seed(0)
    model, tokenizer = TokenTagger.from_base(tiny_model_dir, ["B-LOC", "B-PER", "I-PER", "O"], max_length=32)
    tagger_dir = model.save(folder / "tagger", tokenizer)
    dataset_id = conll_version(ctx, folder, n=20)
    with ctx.db.session() as s:
        run = SqlRun(task="token-classification", dataset_version_id=dataset_id, base_model="tiny", state="queued",
                     created_by=ENGINEER.name)
        s.add(run)
        s.flush()
        run_id = run.id
    finish_run(ctx.db, run_id, metrics={"test": {"precision": 0.8, "recall": 0.7, "f1": 0.75}},
               model_artifact=ctx.artifacts.put_tree(tagger_dir))
    version = register_model_version(ctx, run_id=run_id, name="ner", actor=ENGINEER)
    transition_stage(ctx, version.id, Stage.STAGING, actor=RELEASER)
    transition_stage(ctx, version.id, Stage.PRODUCTION, actor=RELEASER)
    deploy_model_version(ctx, name="ner", model_version_id=version.id, actor=RELEASER)


@pytest.fixture(scope="module")
def api(migrated_template: Path, support_classifier_dir: Path, tiny_model_dir: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("support-api")
    home = folder / "home"
    home.mkdir()
    shutil.copy(migrated_template, home / "chainkeeper.db")
    with pytest.MonkeyPatch.context() as env:  # as the function-scoped clean_environ does
        for name in list(os.environ):
            if name.startswith("CHAINKEEPER_") and not name.startswith("CHAINKEEPER_TEST_"):
                env.delenv(name)
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("TRANSFORMERS_OFFLINE", "1")
        ctx = open_context(load_settings({}, home=home))
        try:
            world = build_support_world(ctx, support_classifier_dir, folder)
            world.predictors.close()
            deploy_model_version(ctx, name="other", model_version_id=world.version.id, actor=RELEASER)
            _tagger_deployment(ctx, tiny_model_dir, folder)
            kb = write_knowledge_base(folder / "kb-next")
            kb.write_text(kb.read_text(encoding="utf-8").replace("card", "Card", 1), encoding="utf-8")
            _, draft = import_knowledge_base(ctx, kb, name="helpdesk-kb", actor=STEWARD)
            create_user(ctx.db, "sam", roles=["support_agent"])
            tokens = {name: issue_token(ctx.db, name, name="test").secret
                      for name in ("dana", "eli", "erin", "rory", "agnes", "otto", "sam")}
            running = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
            try:
                with httpx.Client(base_url=running.url, timeout=120) as client:
                    api = Api(client, ctx, world, tokens, {}, draft.id)
                    for name, deployment, rate, burst in (
                            ("main", DEPLOYMENT, None, None), ("second", DEPLOYMENT, None, None),
                            ("limited", DEPLOYMENT, "2/min", 2), ("foreign", "other", None, None)):
                        issued = api.ok("POST", f"/api/deployments/{deployment}/keys", who="rory",
                                        body={"name": f"{name} web chat", "scopes": ["predict"], "rate": rate,
                                              "burst": burst})
                        api.keys[name] = issued["secret"]
                    yield api
            finally:
                running.stop()
        finally:
            ctx.close()


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node["children"]:
        yield from _walk(child)


# --- the whole path --------------------------------------------------------------------------


def test_a_conversation_is_answered_handed_over_resolved_exported_and_traced(api: Api) -> None:
    # A customer with the web chat's API key: the first test message the assistant answers.
    first = None
    for text, _ in api.world.test_rows[:30]:
        reply = api.send(text)
        if reply["decision"] == "answer":
            first = reply
            break
    assert first is not None, "none of 30 test messages was answered"
    labels = set(first["alternatives"])
    assert first["intent"] in labels and 0 < first["confidence"] <= 1 and not first["out_of_scope"]
    assert first["state"] == "open" and first["deployment"] == DEPLOYMENT and first["request_id"]
    assert first["model_version"]["id"] == api.world.version.id
    assert first["knowledge_version_id"] == api.world.knowledge_version_id
    assert first["articles"] and all(a["intent"] == first["intent"] for a in first["articles"])
    assert first["reply"] == first["articles"][0]["text"]
    conversation = first["conversation_id"]

    # A follow-up in the same conversation, then the customer asks for a person.
    follow = api.send(api.world.test_rows[31][0], conversation)
    assert follow["conversation_id"] == conversation and follow["message_id"] > first["message_id"]
    assert follow["decision"] in ("answer", "clarify", "handoff")
    if follow["decision"] == "answer":
        assert all(a["intent"] == follow["intent"] for a in follow["articles"])
    handoff = api.send(PERSON, conversation)
    assert handoff["decision"] == "handoff" and handoff["state"] == "handed_over"
    assert handoff["handoff_reason"] == "the customer asked for a person" and handoff["articles"] == []
    # Until a person answers, the customer's messages wait for them.
    waiting = api.send("hello? is anyone there", conversation)
    assert waiting["decision"] == "handoff" and waiting["state"] == "handed_over"
    assert waiting["model_version"] is None and "colleague" in waiting["reply"]

    # The agent sees it in the queue, takes it and answers it with the intent the customer had.
    queue = api.ok("GET", "/api/support/queue", who="agnes", params={"app": APP})
    (entry,) = [c for c in queue if c["public_id"] == conversation]
    assert entry["state"] == "handed_over" and entry["app"] == APP
    assert "jane.doe@example.com" not in entry["last_customer_text"]  # stored redacted
    staff = f"/api/support/conversations/{entry['id']}"
    claimed = api.ok("POST", staff + "/claim", who="agnes")
    assert claimed["state"] == "claimed" and claimed["claimed_by"] == "agnes"
    assert "agnes" in api.problem(409, "POST", staff + "/claim", who="sam")["detail"]  # taken
    intent = first["intent"]
    resolved = api.ok("POST", staff + "/resolve", who="agnes",
                      body={"intent": intent, "reply": "I have blocked your card; a new one is on its way.",
                            "article_id": first["articles"][0]["article_id"],
                            "new_article": {"title": "Talking to a person", "text": "Ask for a person at any time."}})
    assert resolved["state"] == "resolved" and resolved["resolved_intent"] == intent
    shown = api.ok("GET", staff, who="otto")
    assert [m["sender"] for m in shown["messages"]][-1] == "agent"
    assert shown["resolution"]["intent"] == intent and shown["resolution"]["new_article"]["title"]
    assert not any("jane.doe@example.com" in m["text"] for m in shown["messages"])
    assert api.problem(409, "POST", staff + "/resolve", who="agnes", body={"intent": intent, "reply": "again"})

    # The data steward turns the answer into a labelled row of a draft version with an annotation project.
    export = api.ok("POST", f"/api/apps/support/{APP}/export", who="dana")
    assert export["rows"] >= 1 and entry["id"] in export["conversations"]
    version = api.ok("GET", f"/api/datasets/{export['dataset_version_id']}", who="dana")
    assert version["name"] == f"{APP}-handoffs" and version["state"] == "draft"
    rows = api.ok("GET", f"/api/datasets/{export['dataset_version_id']}/rows", who="dana")
    row_list = rows["rows"] if isinstance(rows, dict) else rows
    assert any(r["label"] == intent and "real person" in r["text"] and "jane.doe" not in r["text"]
               for r in row_list), row_list
    project = api.ok("GET", f"/api/annotation/projects/{export['annotation_project_id']}", who="dana")
    assert project["dataset_version_id"] == export["dataset_version_id"]
    assert api.ok("POST", f"/api/apps/support/{APP}/export", who="dana")["rows"] == 0  # each answer once

    # The first answer's lineage: its prediction, the model version, the knowledge base and who released it.
    lineage = api.ok("GET", f"/api/support/messages/{first['message_id']}/lineage", who="rory")
    nodes = list(_walk(lineage))
    assert any(n["kind"] == "prediction" and n["id"] == first["request_id"] for n in nodes)
    assert any(n["kind"] == "model_version" and n["id"] == str(api.world.version.id) for n in nodes)
    (kb,) = [n for n in lineage["children"] if n["kind"] == "dataset_version"]
    assert kb["id"] == str(api.world.knowledge_version_id) and kb["attrs"]["released_by"] == "eli"
    assert api.problem(403, "GET", f"/api/support/messages/{first['message_id']}/lineage", who="erin")


def test_staff_read_change_calibrate_and_create_assistants(api: Api) -> None:
    listed = api.ok("GET", "/api/apps/support", who="otto")
    assert APP in [a["name"] for a in listed]
    shown = api.ok("GET", f"/api/apps/support/{APP}", who="agnes")
    assert shown["deployment"] == DEPLOYMENT and shown["knowledge_version_id"] == api.world.knowledge_version_id
    assert str(api.world.version.id) in shown["scope"]

    changed = api.ok("PATCH", f"/api/apps/support/{APP}", who="rory", body={"settings": {"top_k": 2}})
    assert changed["settings"]["top_k"] == 2
    assert api.ok("PATCH", f"/api/apps/support/{APP}", who="rory", body={"settings": {"top_k": 3}})
    assert "app.manage" in api.problem(403, "PATCH", f"/api/apps/support/{APP}", who="otto",
                                       body={"settings": {"top_k": 2}})["detail"]
    assert "Nothing to change" in api.problem(422, "PATCH", f"/api/apps/support/{APP}", who="rory", body={})["detail"]
    assert "top_k" in api.problem(422, "PATCH", f"/api/apps/support/{APP}", who="rory",
                                  body={"settings": {"top_k": 99}})["detail"]
    assert "Unknown assistant setting" in api.problem(422, "PATCH", f"/api/apps/support/{APP}", who="rory",
                                                      body={"settings": {"temperature": 1}})["detail"]

    calibrated = api.ok("POST", f"/api/apps/support/{APP}/calibrate", who="rory")
    assert calibrated["app"] == APP and str(api.world.version.id) in calibrated["scope"]

    api.send(PERSON)
    handed = api.ok("GET", f"/api/apps/support/{APP}/conversations", who="otto",
                    params={"state": "handed_over", "limit": 5})
    assert handed and all(c["state"] == "handed_over" for c in handed) and len(handed) <= 5
    assert api.problem(422, "GET", f"/api/apps/support/{APP}/conversations", who="otto", params={"state": "lost"})

    created = api.call("POST", "/api/apps/support", who="rory",
                       body={"name": "helpdesk-two", "deployment": DEPLOYMENT,
                             "knowledge_version_id": api.world.knowledge_version_id, "settings": {"top_k": 1}})
    assert created.status_code == 201, created.text
    assert created.json()["owner"] == "rory" and created.json()["settings"] == {"top_k": 1}
    assert "exists already" in api.problem(409, "POST", "/api/apps/support", who="rory", body={
        "name": "helpdesk-two", "deployment": DEPLOYMENT,
        "knowledge_version_id": api.world.knowledge_version_id})["detail"]


@pytest.mark.parametrize(("body", "status", "fragment"), [
    pytest.param({"deployment": "ner"}, 422, "token tagger", id="a-tagger"),
    pytest.param({"knowledge_version_id": "draft"}, 409, "release", id="an-unreleased-knowledge-base"),
    pytest.param({"deployment": "no-such-deployment"}, 404, "no-such-deployment", id="an-unknown-deployment"),
    pytest.param({"name": "Help Desk"}, 422, "not valid", id="a-bad-name"),
    pytest.param({"settings": {"top_k": 0}}, 422, "top_k", id="a-bad-setting"),
    pytest.param({"surprise": 1}, 422, "surprise", id="an-unknown-field"),
])
def test_an_assistant_that_cannot_work_is_not_created(api: Api, body: dict[str, Any], status: int,
                                                      fragment: str) -> None:
    full = {"name": "helpdesk-bad", "deployment": DEPLOYMENT, "knowledge_version_id": api.world.knowledge_version_id,
            **body}
    if full["knowledge_version_id"] == "draft":
        full["knowledge_version_id"] = api.draft_kb_id
    problem = api.problem(status, "POST", "/api/apps/support", who="rory", body=full)
    assert fragment in str(problem), problem
    assert "helpdesk-bad" not in [a["name"] for a in api.ok("GET", "/api/apps/support", who="rory")]


# --- bad messages ------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "content", "status", "fragment"), [
    pytest.param({"text": ""}, None, 422, "The message is empty", id="empty"),
    pytest.param({"text": " \n\t "}, None, 422, "The message is empty", id="blank"),
    pytest.param({"text": "x" * 2001}, None, 422, "2,001 characters; at most 2,000", id="too-long"),
    pytest.param({"text": "x" * 100_000}, None, 413, "accepts at most 32,768 bytes", id="100-kB"),
    pytest.param({"text": 42}, None, 422, "text", id="not-a-string"),
    pytest.param({}, None, 422, "text", id="no-text"),
    pytest.param({"text": "hi", "channel": "web"}, None, 422, "channel", id="an-unknown-field"),
    pytest.param(None, b'{"text": "hi"', 422, "JSON", id="broken-json"),
    pytest.param({"text": "hi", "conversation_id": "no-such-conversation"}, None, 404,
                 "has no conversation 'no-such-conversation'", id="unknown-conversation"),
])
def test_a_bad_message_is_refused_clearly_and_nothing_is_stored(api: Api, body: Any, content: bytes | None,
                                                                status: int, fragment: str) -> None:
    before = api.stored()
    problem = api.problem(status, "POST", MESSAGES, key="main", body=body, content=content)
    assert fragment in str(problem), problem
    assert api.stored() == before


def test_callers_reach_only_their_own_conversations_and_assistants(api: Api) -> None:
    mine = api.send("I lost my card")
    conversation = {"text": "and what now?", "conversation_id": mine["conversation_id"]}
    before = api.stored()

    # Another key of the same deployment, or a user, cannot continue (or learn of) the conversation.
    other = api.problem(404, "POST", MESSAGES, key="second", body=conversation)
    unknown = api.problem(404, "POST", MESSAGES, key="second",
                          body={**conversation, "conversation_id": "4f1c7a9e-0000-4000-8000-000000000000"})
    assert other["detail"].replace(mine["conversation_id"], "X") == \
        unknown["detail"].replace("4f1c7a9e-0000-4000-8000-000000000000", "X")
    assert api.problem(404, "POST", MESSAGES, who="rory", body=conversation)
    # A key of another deployment, a made-up key, no credentials, a user without predict.
    assert "other" in api.problem(403, "POST", MESSAGES, key="foreign", body={"text": "hi"})["detail"]
    assert api.problem(401, "POST", MESSAGES, key="ckd_forged", body={"text": "hi"})
    assert "signed-in user" in api.problem(401, "POST", MESSAGES, body={"text": "hi"})["detail"]
    assert "predict" in api.problem(403, "POST", MESSAGES, who="agnes", body={"text": "hi"})["detail"]
    # An unknown assistant, with a key and as a user.
    for caller in ({"key": "main"}, {"who": "rory"}):
        problem = api.problem(404, "POST", "/v1/apps/no-such-app/messages", body={"text": "hi"}, **caller)
        assert "no support assistant named 'no-such-app'" in problem["detail"]
    assert api.stored() == before

    # A user allowed to predict talks to it too, in a conversation of their own.
    own = api.ok("POST", MESSAGES, who="otto", body={"text": "I lost my card"})
    assert own["conversation_id"] != mine["conversation_id"]
    assert api.ok("POST", MESSAGES, who="otto", body={"text": "thanks",
                                                     "conversation_id": own["conversation_id"]})


def test_a_key_is_rate_limited_once_per_message(api: Api) -> None:
    """2 messages a minute, both at once: the body-limit middleware admits the caller before
    reading, and the route does not count the same request again."""
    for _ in range(2):
        api.send("I lost my card", key="limited")
    before = api.stored()
    answer = api.call("POST", MESSAGES, key="limited", body={"text": "I lost my card"})
    assert answer.status_code == 429 and "over its limit" in answer.json()["detail"]
    assert "Retry in" in answer.json()["hint"]
    assert api.stored() == before


def test_an_agent_answer_is_checked_before_anything_is_stored(api: Api) -> None:
    handed = api.send(PERSON)
    (entry,) = [c for c in api.ok("GET", "/api/support/queue", who="agnes")
                if c["public_id"] == handed["conversation_id"]]
    staff = f"/api/support/conversations/{entry['id']}"
    assert "support.answer" in api.problem(403, "POST", staff + "/claim", who="otto")["detail"]
    api.ok("POST", staff + "/claim", who="agnes")
    before = api.stored()

    unknown = api.problem(422, "POST", staff + "/resolve", who="agnes",
                          body={"intent": "astrology", "reply": "Try the stars."})
    assert "Unknown intent 'astrology'" in unknown["detail"]
    assert "out_of_scope" in unknown["hint"] and all(label in unknown["hint"] for label in handed["alternatives"])
    assert "empty" in api.problem(422, "POST", staff + "/resolve", who="agnes",
                                  body={"intent": "out_of_scope", "reply": "  "})["detail"]
    assert api.problem(422, "POST", staff + "/resolve", who="agnes",
                       body={"intent": "out_of_scope", "reply": "ok", "new_article": {"title": "t"}})
    assert api.problem(404, "POST", staff + "/resolve", who="agnes",
                       body={"intent": "out_of_scope", "reply": "ok", "article_id": "no-such-article"})
    assert api.stored() == before
    assert api.ok("GET", staff, who="agnes")["state"] == "claimed"

    assert api.problem(404, "GET", "/api/support/conversations/987654", who="agnes")
    assert api.problem(404, "POST", "/api/support/conversations/987654/claim", who="agnes")
    assert api.problem(404, "GET", "/api/support/messages/987654/lineage", who="agnes")
    assert api.problem(422, "GET", "/api/support/conversations/not-a-number", who="agnes")
    assert "no support assistant" in api.problem(404, "GET", "/api/support/queue", who="agnes",
                                                 params={"app": "no-such-app"})["detail"]
    assert api.ok("POST", staff + "/resolve", who="agnes",
                  body={"intent": "out_of_scope", "reply": "We will call you back."})["state"] == "resolved"


def test_the_routes_are_in_the_openapi_document(api: Api) -> None:
    paths = api.ok("GET", "/openapi.json")["paths"]
    expected = {MESSAGES.replace(APP, "{name}"): {"post"}, "/api/apps/support": {"get", "post"},
                "/api/apps/support/{name}": {"get", "patch"}, "/api/apps/support/{name}/calibrate": {"post"},
                "/api/apps/support/{name}/conversations": {"get"}, "/api/apps/support/{name}/export": {"post"},
                "/api/support/queue": {"get"}, "/api/support/conversations/{conversation_id}": {"get"},
                "/api/support/conversations/{conversation_id}/claim": {"post"},
                "/api/support/conversations/{conversation_id}/resolve": {"post"},
                "/api/support/messages/{message_id}/lineage": {"get"}}
    for path, methods in expected.items():
        assert set(paths[path]) >= methods, path
        for method in methods:
            assert paths[path][method]["summary"] and "support" in paths[path][method]["tags"], (path, method)
    message = paths["/v1/apps/{name}/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert message["$ref"].endswith("/MessageBody")
    assert "201" in paths["/api/apps/support"]["post"]["responses"]
