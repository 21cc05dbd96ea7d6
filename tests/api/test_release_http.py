"""The release manager's stage over HTTP, on a real uvicorn server on 127.0.0.1.

An engineer registers a finished run (``POST /api/models``), a release manager deploys
the approved version through the deploy gate, and ``GET /api/deployments`` shows which
versions answer: the primary, a canary with its share, a shadow. Bad requests (unknown
run, unfinished run, a run registered twice, an unknown or unapproved version, the wrong
role) get a clear 4xx problem and store nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from chainkeeper.api.app import create_app
from chainkeeper.api.server import start_server_in_thread
from chainkeeper.core.context import Context
from chainkeeper.core.schema import metadata
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.registry.versions import Stage, get_model_version
from tests.model_rows import insert_run

# erin trains and registers; rory and rhea release (one asks, the other approves).
PEOPLE = {"erin": "ml_engineer", "rory": "release_manager", "rhea": "release_manager", "olga": "operator",
          "anna": "annotator"}


@dataclass
class Server:
    """The app on a real server, and a way to call it as each person."""

    ctx: Context
    client: httpx.Client
    tokens: dict[str, str]

    def call(self, who: str, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.client.request(method, path, json=body, headers={"Authorization": f"Bearer {self.tokens[who]}"})

    def ok(self, who: str, method: str, path: str, body: Any = None) -> Any:
        answer = self.call(who, method, path, body)
        assert answer.status_code < 300, f"{method} {path} as {who}: {answer.status_code} {answer.text}"
        return answer.json()

    def approve(self, who: str, approval: dict[str, Any]) -> None:
        decided = self.ok(who, "POST", f"/api/approvals/{approval['id']}/decision",
                          {"approve": True, "comment": "checks reviewed"})
        assert decided["state"] == "executed", decided


@pytest.fixture
def server(any_ctx: Context) -> Iterator[Server]:
    tokens = {}
    for name, role in PEOPLE.items():
        create_user(any_ctx.db, name, roles=[role])
        tokens[name] = issue_token(any_ctx.db, name, name="test").secret
    running = start_server_in_thread(create_app(any_ctx), host="127.0.0.1", port=0)
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            yield Server(any_ctx, client, tokens)
    finally:
        running.stop()


def _counts(ctx: Context) -> dict[str, int]:
    with ctx.db.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables}


def _register_and_promote(srv: Server, name: str) -> dict[str, Any]:
    """Register a fresh run's model over HTTP and take it to production through the gate."""
    version = srv.ok("erin", "POST", "/api/models", {"run_id": insert_run(srv.ctx, model_artifact="a" * 64),
                                                      "name": name})
    srv.approve("rory", srv.ok("erin", "POST", f"/api/models/{version['id']}/promotion-requests", {"comment": "ok"}))
    return version


def test_a_run_is_registered_deployed_and_rolled_out_over_http(server: Server) -> None:
    run_id = insert_run(server.ctx, model_artifact="a" * 64)
    answer = server.call("erin", "POST", "/api/models", {"run_id": run_id, "name": "intents"})
    assert answer.status_code == 201, answer.text
    v1 = answer.json()
    assert (v1["name"], v1["version"], v1["stage"], v1["run_id"], v1["created_by"]) == (
        "intents", 1, "candidate", run_id, "erin")
    assert answer.headers["location"] == f"/api/models/{v1['id']}"
    shown = server.ok("olga", "GET", answer.headers["location"])
    assert [(h["from_stage"], h["to_stage"], h["comment"]) for h in shown["history"]] == [
        ("", "candidate", f"registered from run {run_id}")]

    # Production through the promotion gate, then a deployment through the deploy gate.
    server.approve("rory", server.ok("erin", "POST", f"/api/models/{v1['id']}/promotion-requests", {}))
    request = server.ok("rory", "POST", f"/api/models/{v1['id']}/deployment-requests", {"name": "support"})
    server.approve("rhea", request)
    [listed] = server.ok("olga", "GET", "/api/deployments")
    assert (listed["name"], listed["model_version_id"]) == ("support", v1["id"])
    assert listed["live"] == {"mode": "single", "primary": {"id": v1["id"], "label": "intents v1",
                                                            "stage": "production"},
                              "canary": None, "shadow": None, "previous_version_id": None,
                              "since": listed["live"]["since"]}

    # A second version goes to production and takes 20 % of callers, then all of them.
    v2 = _register_and_promote(server, "intents")
    # Version 1 still answers every caller, so it stays in production (issue 14, item 6).
    assert v2["version"] == 2 and get_model_version(server.ctx.db, v1["id"]).stage == Stage.PRODUCTION
    server.ok("rory", "POST", "/api/deployments/support/canary", {"model_version_id": v2["id"], "percent": 20})
    live = server.ok("olga", "GET", "/api/deployments/support")["live"]
    assert live["mode"] == "canary" and live["primary"]["id"] == v1["id"] and live["shadow"] is None
    assert live["canary"] == {"id": v2["id"], "label": "intents v2", "stage": "production", "percent": 20}

    server.ok("rory", "POST", "/api/deployments/support/shadow", {"model_version_id": v2["id"]})
    [listed] = server.ok("olga", "GET", "/api/deployments")
    assert listed["live"]["mode"] == "shadow" and listed["live"]["canary"] is None
    assert listed["live"]["shadow"] == {"id": v2["id"], "label": "intents v2", "stage": "production"}

    server.ok("rory", "POST", "/api/deployments/support/promote")
    live = server.ok("olga", "GET", "/api/deployments/support")["live"]
    assert (live["mode"], live["primary"]["id"], live["previous_version_id"]) == ("single", v2["id"], v1["id"])
    assert get_model_version(server.ctx.db, v1["id"]).stage == Stage.ARCHIVED  # no caller meets it any more


@dataclass
class Setting:
    """What the refused requests refer to: a deployment on v1, a registered run, a candidate."""

    registered_run: int
    queued_run: int
    candidate: int


@pytest.fixture
def setting(server: Server) -> Setting:
    v1 = _register_and_promote(server, "intents")
    server.approve("rhea", server.ok("rory", "POST", f"/api/models/{v1['id']}/deployment-requests",
                                     {"name": "support"}))
    candidate = server.ok("erin", "POST", "/api/models",
                          {"run_id": insert_run(server.ctx, model_artifact="b" * 64), "name": "intents"})
    return Setting(v1["run_id"], insert_run(server.ctx, model_artifact=None, succeeded=False), candidate["id"])


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "status", "fragment"),
    [
        pytest.param("erin", "POST", "/api/models", {"run_id": 987654, "name": "intents"}, 404, "987654",
                     id="unknown-run"),
        pytest.param("erin", "POST", "/api/models", {"run_id": "{queued_run}", "name": "intents"}, 409,
                     "is queued", id="run-not-finished"),
        pytest.param("erin", "POST", "/api/models", {"run_id": "{registered_run}", "name": "intents"}, 409,
                     "already registered as intents v1", id="run-already-registered"),
        pytest.param("erin", "POST", "/api/models", {"run_id": "{registered_run}", "name": "other-model"}, 409,
                     "already registered as intents v1", id="run-already-registered-under-another-name"),
        pytest.param("erin", "POST", "/api/models", {"run_id": "{queued_run}", "name": "Bad Name!"}, 422,
                     "is not valid", id="malformed-name"),
        pytest.param("erin", "POST", "/api/models", {"name": "intents"}, 422, "run_id", id="no-run"),
        pytest.param("erin", "POST", "/api/models", {"run_id": "{queued_run}", "name": "intents", "stage": "x"},
                     422, "stage", id="unknown-field"),
        pytest.param("olga", "POST", "/api/models", {"run_id": "{queued_run}", "name": "intents"}, 403,
                     "model.register", id="operator-may-not-register"),
        pytest.param("anna", "POST", "/api/models", {"run_id": "{queued_run}", "name": "intents"}, 403,
                     "model.register", id="annotator-may-not-register"),
        pytest.param("rory", "POST", "/api/models/987654/deployment-requests", {"name": "other"}, 404,
                     "no model version 987654", id="deploy-unknown-version"),
        pytest.param("rory", "POST", "/api/models/{candidate}/deployment-requests", {"name": "Bad Name"}, 422,
                     "name", id="deploy-malformed-name"),
        pytest.param("olga", "POST", "/api/models/{candidate}/deployment-requests", {"name": "other"}, 403,
                     "deployment.create", id="operator-may-not-deploy"),
        pytest.param("rory", "POST", "/api/deployments/support/canary", {"model_version_id": 987654, "percent": 20},
                     404, "no model version 987654", id="canary-unknown-version"),
        pytest.param("rory", "POST", "/api/deployments/support/canary",
                     {"model_version_id": "{candidate}", "percent": 20}, 409, "only a staging or production",
                     id="canary-unapproved-version"),
        pytest.param("rory", "POST", "/api/deployments/support/canary",
                     {"model_version_id": "{candidate}", "percent": 150}, 422, "percent", id="canary-percent-150"),
        pytest.param("rory", "POST", "/api/deployments/ghost/canary", {"model_version_id": "{candidate}",
                                                                        "percent": 20},
                     404, "no deployment named 'ghost'", id="canary-unknown-deployment"),
        pytest.param("olga", "POST", "/api/deployments/support/canary",
                     {"model_version_id": "{candidate}", "percent": 20}, 403, "deployment.rollout",
                     id="operator-may-not-roll-out"),
        pytest.param("rory", "POST", "/api/deployments/support/promote", None, 409, "nothing to promote",
                     id="promote-without-canary"),
        pytest.param("anna", "GET", "/api/deployments", None, 403, "deployment.read",
                     id="annotator-may-not-list-deployments"),
    ],
)
def test_bad_release_requests_get_a_clear_4xx_and_store_nothing(
        server: Server, setting: Setting, who: str, method: str, path: str, body: dict[str, Any] | None,
        status: int, fragment: str) -> None:
    ids = {"registered_run": setting.registered_run, "queued_run": setting.queued_run,
           "candidate": setting.candidate}
    if body is not None:
        body = {k: ids[v[1:-1]] if isinstance(v, str) and v[1:-1] in ids else v for k, v in body.items()}
    before = _counts(server.ctx)
    answer = server.call(who, method, path.format(**ids), body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert fragment in problem["detail"] and problem["hint"], problem
    assert "Traceback" not in answer.text
    assert _counts(server.ctx) == before


def test_register_and_deployment_routes_have_openapi_summaries(server: Server) -> None:
    paths = server.client.get("/openapi.json").json()["paths"]
    assert paths["/api/models"]["post"]["summary"] == "Register a run's model as a new version"
    assert paths["/api/deployments"]["get"]["summary"] == "List deployments with the versions answering their traffic"
    one = paths["/api/deployments/{name}"]["get"]["summary"]
    assert one == "One deployment with the versions answering its traffic"
    body = paths["/api/models"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/RegisterBody")
