"""The API in-process (httpx over ASGI): answers, error formats, request ids, the log."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.api.auth import public
from chainkeeper.api.problems import PROBLEM_JSON
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.jobs import submit_job
from chainkeeper.core.settings import load_settings
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.predictions import count_predictions, get_prediction, hash_input
from chainkeeper.serving.deployments import deploy_model_version
from tests.model_rows import LABELS, RELEASER, in_production, registered, save_tiny_classifier


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


@pytest.fixture
def app(ctx: Context) -> FastAPI:
    return create_app(ctx)


@pytest.fixture
def client(app: FastAPI, ctx: Context) -> Iterator[TestClient]:
    """A client signed in as an operator (may read, cancel jobs and predict)."""
    create_user(ctx.db, "olive", roles=["operator"])
    token = issue_token(ctx.db, "olive", name="test").secret
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


@pytest.fixture
def deployed(ctx: Context, classifier_dir: Path) -> int:
    """A deployment 'support' of a production version of the tiny classifier; its version id."""
    version = in_production(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    return version.id


def assert_problem(answer: Any, status: int) -> dict[str, Any]:
    """Check the problem+json shape of an answer; return its body."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    body = answer.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("urn:")
    assert body["request_id"] == answer.headers["x-request-id"]
    return body  # type: ignore[no-any-return]


# --- health ----------------------------------------------------------------------------


def test_healthz_and_readyz_answer_without_credentials(app: FastAPI) -> None:
    with TestClient(app) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").json() == {"status": "ready", "store": "sqlite"}


def test_readyz_is_a_503_problem_when_the_store_is_gone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings({}, home=home, database_url=f"sqlite:///{tmp_path / 'gone' / 'ck.db'}")
    ctx = open_context(settings, check_schema=False)  # connects lazily: nothing opened yet
    shutil.rmtree(tmp_path / "gone")
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as anonymous:
            assert anonymous.get("/healthz").status_code == 200  # alive, just not ready
            body = assert_problem(anonymous.get("/readyz"), 503)
        assert "cannot be used" in str(body["detail"]) and "CHAINKEEPER_DATABASE_URL" in str(body["hint"])
    finally:
        ctx.close()


def test_readyz_is_a_503_problem_when_postgres_does_not_answer(tmp_path: Path) -> None:
    settings = load_settings({}, home=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    ctx = open_context(settings, check_schema=False)
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as anonymous:
            body = assert_problem(anonymous.get("/readyz"), 503)
        assert "127.0.0.1:1" in str(body["detail"])
    finally:
        ctx.close()


# --- error formats ---------------------------------------------------------------------


def test_unknown_routes_are_404_problems(client: TestClient) -> None:
    body = assert_problem(client.get("/no/such/route"), 404)
    assert body["detail"] == "There is no route GET /no/such/route."


def test_a_wrong_method_is_a_405_problem(client: TestClient) -> None:
    body = assert_problem(client.delete("/healthz"), 405)
    assert "does not accept DELETE" in str(body["detail"])


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({}, "body", id="neither"),
        pytest.param({"text": "a", "texts": ["b"]}, "body", id="both"),
        pytest.param({"text": 5}, "body.text", id="number"),
        pytest.param({"texts": "not a list"}, "body.texts", id="texts-not-a-list"),
        pytest.param({"text": "a", "extra": 1}, "body.extra", id="unknown-field"),
    ],
)
def test_a_malformed_predict_body_is_a_422_listing_the_fields(
    client: TestClient, deployed: int, ctx: Context, payload: dict[str, object], field: str
) -> None:
    body = assert_problem(client.post("/v1/deployments/support/predict", json=payload), 422)
    fields = [e["field"] for e in body["errors"]]  # type: ignore[attr-defined]
    assert field in fields
    assert count_predictions(ctx.db) == 0


def test_bad_texts_are_a_422_with_a_hint_and_log_nothing(client: TestClient, deployed: int, ctx: Context) -> None:
    body = assert_problem(client.post("/v1/deployments/support/predict", json={"texts": ["fine", " "]}), 422)
    assert body["detail"] == "Text 1 is empty." and body["hint"]
    body = assert_problem(client.post("/v1/deployments/support/predict", json={"texts": []}), 422)
    assert "no texts" in str(body["detail"])
    assert count_predictions(ctx.db) == 0


def test_an_unknown_deployment_is_a_404_problem(client: TestClient) -> None:
    body = assert_problem(client.post("/v1/deployments/ghost/predict", json={"text": "hello"}), 404)
    assert body["detail"] == "There is no deployment named 'ghost'."
    assert "GET /api/deployments" in str(body["hint"])


def test_an_unexpected_error_is_a_500_without_its_text_or_traceback(app: FastAPI, ctx: Context,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    def explode() -> None:
        raise RuntimeError("secret-internal-detail at /srv/db password=hunter2")

    app.add_api_route("/boom", explode, dependencies=[public()])
    with TestClient(app, raise_server_exceptions=False) as anonymous:
        answer = anonymous.get("/boom")
    body = assert_problem(answer, 500)
    rid = answer.headers["x-request-id"]
    assert body["detail"] == f"Internal error; the server log has the details (request id {rid})."
    for leak in ("secret-internal-detail", "hunter2", "RuntimeError", "Traceback", "File \""):
        assert leak not in answer.text
    # The details are in the server log, under the same request id.
    logged = [r for r in caplog.records if rid in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert client.get("/healthz", headers={"X-Request-ID": "trace-42"}).headers["x-request-id"] == "trace-42"
    forged = client.get("/healthz", headers={"X-Request-ID": "a\tb" * 40}).headers["x-request-id"]
    assert forged != "a\tb" * 40 and len(forged) == 32  # unsafe ids are replaced, not echoed
    assert client.get("/nope").headers["x-request-id"]


def test_no_credentials_is_a_401_problem(app: FastAPI) -> None:
    with TestClient(app, raise_server_exceptions=False) as anonymous:
        answer = anonymous.post("/v1/deployments/support/predict", json={"text": "hi"})
    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"] == "Bearer"


# --- predict ---------------------------------------------------------------------------


def test_predict_one_text_answers_and_logs_it(client: TestClient, deployed: int, ctx: Context) -> None:
    answer = client.post("/v1/deployments/support/predict", json={"text": "I lost my card"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["deployment"] == "support"
    assert body["model_version"] == {"id": deployed, "name": "intents", "version": 1}
    [prediction] = body["predictions"]
    assert prediction["label"] in LABELS and 0 < prediction["score"] <= 1
    assert len(prediction["scores"]) == 5 and prediction["label"] in prediction["scores"]
    record = get_prediction(ctx.db, prediction["request_id"])
    assert record.input_text == "I lost my card" and record.input_hash == hash_input("I lost my card")
    assert record.label == prediction["label"] and record.model_version_id == deployed


def test_predict_a_batch_answers_in_order_with_one_request_id_each(client: TestClient, deployed: int,
                                                                   ctx: Context) -> None:
    texts = ["refund please", "hello", "move money to savings", "bye"]
    body = client.post("/v1/deployments/support/predict", json={"texts": texts}).json()
    ids = [p["request_id"] for p in body["predictions"]]
    assert len(set(ids)) == len(texts)
    assert [get_prediction(ctx.db, i).input_text for i in ids] == texts
    assert count_predictions(ctx.db) == len(texts)


# --- jobs, models, deployments ---------------------------------------------------------


def test_jobs_can_be_listed_read_and_cancelled(client: TestClient, ctx: Context) -> None:
    job = submit_job(ctx, "sleep", {"seconds": 60}, actor="olive")
    assert [j["id"] for j in client.get("/api/jobs").json()] == [job.id]
    assert client.get("/api/jobs", params={"state": "running"}).json() == []
    shown = client.get(f"/api/jobs/{job.id}").json()
    assert (shown["kind"], shown["state"], shown["finished"]) == ("sleep", "queued", False)
    assert client.get(f"/api/jobs/{job.id}/logs").json() == {"job_id": job.id, "lines": [], "last_id": 0}
    cancelled = client.post(f"/api/jobs/{job.id}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["cancel_requested"] is True
    body = assert_problem(client.post(f"/api/jobs/{job.id}/cancel"), 409)
    assert "nothing to cancel" in str(body["detail"])
    assert_problem(client.get("/api/jobs/987654"), 404)
    assert_problem(client.get("/api/jobs/987654/logs"), 404)
    assert_problem(client.get("/api/jobs", params={"state": "sleeping"}), 422)


def test_models_are_listed_and_shown_with_their_history(client: TestClient, ctx: Context) -> None:
    candidate = registered(ctx, "intents")
    live = in_production(ctx, "sentiment")
    listed = client.get("/api/models").json()
    assert [m["id"] for m in listed] == [live.id, candidate.id]
    assert [m["id"] for m in client.get("/api/models", params={"stage": "production"}).json()] == [live.id]
    assert [m["id"] for m in client.get("/api/models", params={"name": "intents"}).json()] == [candidate.id]
    shown = client.get(f"/api/models/{live.id}").json()
    assert shown["stage"] == "production" and shown["metrics"]["test"]["accuracy"] == 0.91
    assert [(h["from_stage"], h["to_stage"]) for h in shown["history"]] == [
        ("", "candidate"), ("candidate", "staging"), ("staging", "production")]
    assert_problem(client.get("/api/models/987654"), 404)
    assert_problem(client.get("/api/models/not-a-number"), 422)


def test_deployments_are_listed_and_shown(client: TestClient, deployed: int) -> None:
    [listed] = client.get("/api/deployments").json()
    assert (listed["name"], listed["model_version_id"], listed["state"]) == ("support", deployed, "active")
    assert client.get("/api/deployments/support").json()["id"] == listed["id"]
    assert_problem(client.get("/api/deployments/ghost"), 404)
