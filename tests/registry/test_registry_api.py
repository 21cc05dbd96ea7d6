"""The registry over HTTP: exports as jobs, the point-in-time query, and bad input that
gets a clear 4xx and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import list_jobs
from chainkeeper.core.schema import metadata
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import request_approval
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.registry.gates import set_gate_thresholds
from chainkeeper.registry.versions import Stage, get_model_version, register_model_version
from chainkeeper.serving.export import check_model_files
from tests.model_rows import RELEASER, insert_run, registered
from tests.registry.exportable import classifier_folder, exportable_version


@pytest.fixture
def api(ctx: Context) -> Iterator[tuple[TestClient, dict[str, str]]]:
    tokens = {}
    for user, roles in (("erin", ["ml_engineer"]), ("rory", ["release_manager"]), ("olga", ["operator"])):
        create_user(ctx.db, user, roles=roles)
        tokens[user] = issue_token(ctx.db, user, name="test").secret
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield client, tokens


def _as(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def _counts(ctx: Context) -> dict[str, int]:
    with ctx.db.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables}


def test_an_export_is_a_job_with_progress_and_both_forms_scored(
        ctx: Context, api: tuple[TestClient, dict[str, str]], tiny_model_dir: Path, tmp_path: Path) -> None:
    client, tokens = api
    version = exportable_version(ctx, classifier_folder(tiny_model_dir, tmp_path / "m"), tmp_path)
    assert client.get(f"/api/models/{version.id}/exports", headers=_as(tokens, "olga")).json()["latest"] is None

    answer = client.post(f"/api/models/{version.id}/exports", json={"int8": True}, headers=_as(tokens, "erin"))
    assert answer.status_code == 202 and answer.json()["params"]["quantize"] is True
    job = Worker(ctx).run_one()
    assert job is not None and job.state == "succeeded" and job.progress == 100, job and job.error
    assert set(job.result["forms"]) == {"onnx", "onnx-int8"}  # type: ignore[index]

    latest = client.get(f"/api/models/{version.id}/exports", headers=_as(tokens, "olga")).json()["latest"]
    forms = {f["engine"]: f for f in latest["forms"]}
    assert set(forms) == {"onnx", "onnx-int8"} and latest["max_delta_points"] == 0.5
    for form in forms.values():
        # The delta is recorded against PyTorch on the dataset version's test split, and gated.
        assert form["delta_points"] == pytest.approx((form["accuracy"] - latest["torch_accuracy"]) * 100, abs=1e-3)
        assert form["passed"] == (-form["delta_points"] <= 0.5)
    assert latest["evaluated_rows"] == 12


@pytest.mark.parametrize(
    ("who", "body", "status", "fragment"),
    [
        pytest.param("erin", {"max_delta_points": 500}, 422, "max_delta_points", id="gate-out-of-range"),
        pytest.param("erin", {"int8": True, "fp16": True}, 422, "fp16", id="unknown-field"),
        pytest.param("olga", {}, 403, "model.export", id="operator-may-not-export"),
    ],
)
def test_bad_export_requests_are_refused_and_queue_nothing(
        ctx: Context, api: tuple[TestClient, dict[str, str]], who: str, body: dict[str, object], status: int,
        fragment: str) -> None:
    client, tokens = api
    version = registered(ctx, "intents")
    before = _counts(ctx)
    answer = client.post(f"/api/models/{version.id}/exports", json=body, headers=_as(tokens, who))
    assert answer.status_code == status and fragment in answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert _counts(ctx) == before


def test_exporting_a_model_folder_without_its_tokenizer_is_a_clear_422(
        ctx: Context, api: tuple[TestClient, dict[str, str]], tiny_model_dir: Path, tmp_path: Path) -> None:
    client, tokens = api
    folder = classifier_folder(tiny_model_dir, tmp_path / "broken", without_tokenizer=True)
    version = exportable_version(ctx, folder, tmp_path)
    before = _counts(ctx)
    answer = client.post(f"/api/models/{version.id}/exports", json={}, headers=_as(tokens, "erin"))
    assert answer.status_code == 422
    problem = answer.json()
    assert "missing its tokenizer" in problem["detail"] and "nothing was exported" in problem["hint"]
    assert _counts(ctx) == before and list_jobs(ctx.db) == []


def test_model_files_are_checked_before_anything_loads() -> None:
    complete = ["chainkeeper.json", "config.json", "model.safetensors", "head.safetensors", "vocab.txt"]
    check_model_files(complete, what="v1")
    with pytest.raises(InvalidInput, match=r"missing its encoder weights \(model.safetensors\), tokenizer"):
        check_model_files(["chainkeeper.json", "config.json", "head.safetensors"], what="v1")


def test_unknown_versions_are_404_everywhere(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    for method, path in (("GET", "/api/models/987654"), ("GET", "/api/models/987654/card"),
                         ("GET", "/api/models/987654/gates"), ("GET", "/api/models/987654/exports"),
                         ("POST", "/api/models/987654/exports"), ("POST", "/api/models/987654/promotion-requests")):
        answer = client.request(method, path, json={}, headers=_as(tokens, "erin"))
        assert answer.status_code == 404 and "no model version 987654" in answer.json()["detail"], (method, path)


def test_promoting_a_version_that_fails_its_gates_is_409_and_moves_nothing(
        ctx: Context, api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    version = registered(ctx, "intents")  # test macro-F1 0.88
    set_gate_thresholds(ctx, "intents", actor=RELEASER, min_macro_f1=0.95)
    asked = client.post(f"/api/models/{version.id}/promotion-requests", json={}, headers=_as(tokens, "erin"))
    assert asked.status_code == 201
    gates = client.get(f"/api/models/{version.id}/gates", headers=_as(tokens, "olga")).json()
    assert [(r["gate"], r["passed"], r["value"], r["threshold"]) for r in gates["results"]] == [
        ("min-macro-f1", False, 0.88, 0.95)]
    answer = client.post(f"/api/approvals/{asked.json()['id']}/decision", json={"approve": True, "comment": "ok"},
                         headers=_as(tokens, "rory"))
    assert answer.status_code == 409 and "check release-gates failed" in answer.json()["detail"]
    assert get_model_version(ctx.db, version.id).stage == Stage.CANDIDATE


def test_approving_a_promotion_of_your_own_run_is_403(ctx: Context, api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    create_user(ctx.db, "rita", roles=["ml_engineer", "release_manager"])
    rita = issue_token(ctx.db, "rita", name="test").secret
    run_id = insert_run(ctx, model_artifact="a" * 64, author="rita")
    version = register_model_version(ctx, run_id=run_id, name="intents",
                                     actor=Actor("rita", frozenset({"ml_engineer"})))
    request = request_approval(ctx, "model.promote", version.id, actor=Actor("erin", frozenset({"ml_engineer"})))
    answer = client.post(f"/api/approvals/{request.id}/decision", json={"approve": True, "comment": "mine"},
                         headers={"Authorization": f"Bearer {rita}"})
    assert answer.status_code == 403
    assert "rita is the author of training run" in answer.json()["detail"] and "rory" in answer.json()["hint"]
    assert get_model_version(ctx.db, version.id).stage == Stage.CANDIDATE


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        pytest.param({"name": "intents", "when": "2026-05-03T14:00:00"}, "no time zone", id="naive-time"),
        pytest.param({"name": "intents", "when": "yesterday"}, "when", id="not-a-time"),
        pytest.param({"when": "2026-05-03T14:00:00Z"}, "name", id="no-name"),
    ],
)
def test_the_point_in_time_query_refuses_unclear_times(api: tuple[TestClient, dict[str, str]],
                                                       query: dict[str, str], fragment: str) -> None:
    client, tokens = api
    answer = client.get("/api/models/production-at", params=query, headers=_as(tokens, "olga"))
    assert answer.status_code == 422 and fragment in answer.text


def test_deployment_test_thresholds_are_validated(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    for body, fragment in (({"max_p95_latency_ms": 0}, "max_p95_latency_ms"),
                           ({"latency_batch_size": 0}, "latency_batch_size"),
                           ({"max_export_delta_points": -1}, "max_export_delta_points")):
        answer = client.put("/api/gates/intents", json=body, headers=_as(tokens, "rory"))
        assert answer.status_code == 422 and fragment in answer.text
    answer = client.put("/api/gates/intents", json={"max_p95_latency_ms": 50, "latency_batch_size": 8},
                        headers=_as(tokens, "rory"))
    assert answer.status_code == 200 and answer.json()["max_p95_latency_ms"] == 50
    assert answer.json()["latency_batch_size"] == 8 and answer.json()["max_export_delta_points"] is None
