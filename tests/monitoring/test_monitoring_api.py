"""The monitoring API as a client meets it: feedback, quality, drift jobs and the report."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.core.jobs import JobState
from chainkeeper.core.worker import Worker
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.feedback import list_feedback
from chainkeeper.serving.keys import create_deployment_key
from tests.model_rows import RELEASER
from tests.monitoring.chain import IN_DISTRIBUTION, Served, classifier_dir, served  # noqa: F401  (fixtures)


@pytest.fixture
def client(served: Served) -> TestClient:
    return TestClient(create_app(served.ctx), raise_server_exceptions=False)


def _token(served: Served, name: str, role: str) -> dict[str, str]:
    create_user(served.ctx.db, name, roles=[role])
    return {"Authorization": f"Bearer {issue_token(served.ctx.db, name, name='api test').secret}"}


def test_feedback_is_stored_and_bad_input_is_a_clear_problem_that_stores_nothing(served: Served,
                                                                                  client: TestClient) -> None:
    ids = served.serve(IN_DISTRIBUTION[:3])
    reviewer = _token(served, "olga", "operator")
    answer = client.post("/api/feedback", json={"request_id": ids[0], "label": "refund"}, headers=reviewer)
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 1 and answer.json()["results"][0]["given_by"] == "olga"
    again = client.post("/api/feedback", json={"items": [{"request_id": ids[0], "label": "refund"}]}, headers=reviewer)
    assert again.json()["unchanged"] == 1

    unknown = client.post("/api/feedback", json={"items": [{"request_id": ids[1], "label": "balance"},
                                                           {"request_id": "nope", "label": "balance"}]},
                          headers=reviewer)
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")
    assert "'nope'" in unknown.json()["detail"] and "no feedback was stored" in unknown.json()["detail"]
    outside = client.post("/api/feedback", json={"request_id": ids[2], "label": "mortgage"}, headers=reviewer)
    assert outside.status_code == 422 and "Allowed labels: balance, card_lost" in outside.json()["hint"]
    malformed = client.post("/api/feedback", json={"request_id": ids[2]}, headers=reviewer)
    assert malformed.status_code == 422 and "Traceback" not in malformed.text
    assert [f.request_id for f in list_feedback(served.ctx.db)] == [ids[0]]
    got = client.get(f"/api/feedback/{ids[0]}", headers=reviewer)
    assert got.status_code == 200 and got.json()["label"] == "refund"

    denied = client.post("/api/feedback", json={"request_id": ids[1], "label": "refund"},
                         headers=_token(served, "ann", "annotator"))
    assert denied.status_code == 403 and "monitoring.feedback" in denied.json()["detail"]


def test_a_downstream_system_sends_feedback_with_a_scoped_deployment_key(served: Served, client: TestClient) -> None:
    [rid] = served.serve(IN_DISTRIBUTION[:1])
    predict_only = create_deployment_key(served.ctx, "support", name="shop", actor=RELEASER, scopes=["predict"])
    refused = client.post("/v1/deployments/support/feedback", json={"request_id": rid, "label": "refund"},
                          headers={"X-API-Key": predict_only.secret})
    assert refused.status_code == 403 and "lacks the 'feedback' scope" in refused.json()["detail"]
    crm = create_deployment_key(served.ctx, "support", name="crm", actor=RELEASER, scopes=["feedback"])
    answer = client.post("/v1/deployments/support/feedback", json={"request_id": rid, "label": "refund"},
                         headers={"Authorization": f"Bearer {crm.secret}"})
    assert answer.status_code == 200, answer.text
    stored = answer.json()["results"][0]
    assert stored["source"] == "system" and stored["given_by"] == f"apikey:{crm.key.id}:crm"


def test_quality_drift_jobs_and_the_report_over_http(served: Served, client: TestClient) -> None:
    ids = served.serve(IN_DISTRIBUTION[40:])
    reviewer = _token(served, "olga", "operator")
    truths = {rid: "balance" if i % 2 else "refund" for i, rid in enumerate(ids[:20])}
    client.post("/api/feedback", json={"items": [{"request_id": r, "label": y} for r, y in truths.items()]},
                headers=reviewer).raise_for_status()

    live = client.get("/api/monitoring/deployments/support/quality?window_s=3600", headers=reviewer).json()
    [window] = [w for w in live["windows"] if w["labelled"]]
    assert window["predictions"] == 40 and window["labelled"] == 20 and 0 <= window["accuracy"] <= 1
    assert live["offline"][str(served.version.id)]["accuracy"] == 0.9

    queued = client.post("/api/monitoring/deployments/support/drift", json={"last": 40}, headers=reviewer)
    assert queued.status_code == 202 and queued.json()["kind"] == "drift"
    done = Worker(served.ctx).run_one()
    assert done is not None and done.state == JobState.SUCCEEDED, done
    drift = client.get("/api/monitoring/deployments/support/drift", headers=reviewer).json()
    assert set(drift["latest"]) == set(drift["checks"]) and drift["results"][0]["window_size"] == 40
    missing = client.post("/api/monitoring/deployments/nope/drift", json={}, headers=reviewer)
    assert missing.status_code == 404 and "no deployment named 'nope'" in missing.json()["detail"]

    report = client.get("/api/monitoring/deployments/support/report", headers=reviewer).json()
    assert report["labelled"] == 20 and report["predictions"] == 40
    assert set(report["slices"]) == {"text length", "script", "predicted label"}
    page = client.get("/api/monitoring/deployments/support/report.html", headers=reviewer)
    assert page.status_code == 200 and "<svg" in page.text and "Where support fails" in page.text


def test_a_recurring_drift_check_is_a_schedule_managed_over_http(served: Served, client: TestClient) -> None:
    operator = _token(served, "olga", "operator")
    created = client.post("/api/monitoring/deployments/support/drift", json={"every_s": 3600}, headers=operator)
    assert created.status_code == 202, created.text
    schedule = created.json()["schedule"]
    assert (schedule["name"], schedule["kind"], schedule["every_s"]) == ("drift:support", "drift", 3600.0)
    again = client.post("/api/monitoring/deployments/support/drift", json={"every_s": 60}, headers=operator)
    assert again.status_code == 409 and "schedules delete" in again.json()["hint"]

    listed = client.get("/api/schedules", headers=operator)
    assert listed.status_code == 200 and [s["id"] for s in listed.json()] == [schedule["id"]]
    one = client.get(f"/api/schedules/{schedule['id']}", headers=operator).json()
    assert one["project"] == schedule["project"] and one["created_by"] == "olga"
    paused = client.post(f"/api/schedules/{schedule['id']}/pause", headers=operator)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert client.post(f"/api/schedules/{schedule['id']}/resume", headers=operator).json()["paused"] is False

    assert client.get("/api/schedules").status_code == 401
    annotator = _token(served, "ann", "annotator")
    denied = client.post(f"/api/schedules/{schedule['id']}/pause", headers=annotator)
    assert denied.status_code == 403 and "job.cancel" in denied.json()["detail"]
    assert client.get("/api/schedules/999", headers=operator).status_code == 404
    deleted = client.delete(f"/api/schedules/{schedule['id']}", headers=operator)
    assert deleted.status_code == 200 and deleted.json()["name"] == "drift:support"
    assert client.get("/api/schedules", headers=operator).json() == []


def test_a_report_window_before_year_one_is_a_clear_problem(served: Served, client: TestClient) -> None:
    """Found by the fuzzing run: an 'until' in year 1 made the default 7-day start overflow (a 500)."""
    reviewer = _token(served, "olga", "operator")
    for path in ("report", "report.html", "quality?window_s=86400"):
        sep = "&" if "?" in path else "?"
        answer = client.get(f"/api/monitoring/deployments/support/{path}{sep}until=0001-01-02T00:00:00Z",
                            headers=reviewer)
        assert answer.status_code == 422, (path, answer.text)
        assert "before year 1" in answer.text and "Give 'since' as well" in answer.text.replace("&#x27;", "'")
