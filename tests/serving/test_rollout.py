"""Rollout: candidate → gates → approval → production → canary → rollback, shadow, promotion."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.api.server import start_server_in_thread
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.governance.users import issue_token
from chainkeeper.registry.gates import latest_gate_results, set_gate_thresholds
from chainkeeper.registry.versions import (
    get_model_version,
    production_version_at,
    register_model_version,
    stage_history,
    transition_stage,
)
from chainkeeper.serving.deployments import (
    deploy_model_version,
    get_deployment_by_name,
    list_shadow_predictions,
    serve_predictions,
    wait_for_shadows,
)
from chainkeeper.serving.keys import create_deployment_key
from chainkeeper.serving.rollout import (
    RouteMode,
    bucket_of,
    current_route,
    promote_rollout,
    rollback_deployment,
    rollout_status,
    start_canary,
    start_shadow,
)
from chainkeeper.serving.runtime import PredictorCache
from tests.governance.conftest import make_actor
from tests.model_rows import in_production, insert_run, registered, save_tiny_classifier

METRICS = {"test": {"accuracy": 0.9, "macro_f1": 0.88}}


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


def _promoted(ctx: Context, artifact: str, author: Actor, approver: Actor) -> int:
    """A version trained by ``author``, through the gates and ``approver``'s approval into production."""
    run_id = insert_run(ctx, model_artifact=artifact, metrics=METRICS, author=author.name)
    version = register_model_version(ctx, run_id=run_id, name="intents", actor=author)
    request = request_approval(ctx, "model.promote", version.id, actor=author, comment="ready")
    decide(ctx, request.id, actor=approver, approve=True, comment="gates and card reviewed")
    return version.id


def test_candidate_gates_approval_production_canary_rollback(any_ctx: Context, classifier_dir: Path) -> None:
    ctx = any_ctx
    emil = make_actor(ctx, "emil", "ml_engineer")
    rhea = make_actor(ctx, "rhea", "release_manager")
    remy = make_actor(ctx, "remy", "release_manager")
    artifact = ctx.artifacts.put_tree(classifier_dir)
    set_gate_thresholds(ctx, "intents", actor=rhea, min_macro_f1=0.8)

    v1 = _promoted(ctx, artifact, emil, rhea)
    assert latest_gate_results(ctx.db, v1)[0].passed
    deploy = request_approval(ctx, "deployment.create", v1, actor=rhea, payload={"name": "support"})
    decide(ctx, deploy.id, actor=remy, approve=True, comment="deploy v1")
    served_before = utcnow()

    run_id = insert_run(ctx, model_artifact=artifact, metrics=METRICS, author="emil")
    v2 = register_model_version(ctx, run_id=run_id, name="intents", actor=emil).id
    transition_stage(ctx, v2, "staging", actor=rhea, comment="canary candidate")
    route = start_canary(ctx, "support", v2, percent=10, actor=rhea)
    assert (route.mode, route.primary_version_id, route.candidate_version_id, route.percent) == ("canary", v1, v2, 10)

    predictors = PredictorCache(ctx)
    answered = {}
    for i in range(200):
        served = serve_predictions(ctx, predictors, "support", ["where is my card?"], caller_key=f"caller-{i}")
        answered[f"caller-{i}"] = served.model_version.id
    share = Counter(answered.values())[v2] / 200
    assert 0.04 <= share <= 0.18, share  # 10 % of callers, give or take the hash's spread
    for key in list(answered)[:20]:  # sticky: the same caller meets the same version again
        again = serve_predictions(ctx, predictors, "support", ["hello"], caller_key=key)
        assert again.model_version.id == answered[key]

    back = rollback_deployment(ctx, "support", actor=rhea, comment="canary errors")
    assert (back.mode, back.primary_version_id, back.candidate_version_id) == ("single", v1, None)
    assert {serve_predictions(ctx, predictors, "support", ["hi"], caller_key=k).model_version.id
            for k in list(answered)[:30]} == {v1}

    # The registry never moved: v1 served throughout, v2 is still only a staging version.
    assert get_model_version(ctx.db, v1).stage == "production"
    assert get_model_version(ctx.db, v2).stage == "staging"
    assert production_version_at(ctx.db, "intents", served_before).id == v1  # type: ignore[union-attr]
    assert production_version_at(ctx.db, "intents", utcnow()).id == v1  # type: ignore[union-attr]
    assert [t.to_stage for t in stage_history(ctx.db, v1)] == ["candidate", "staging", "production"]
    assert get_deployment_by_name(ctx.db, "support").model_version_id == v1
    deployment_actions = [e.action for e in list_entries(ctx.db, object_kind="deployment")]
    assert deployment_actions == ["deployment.create", "deployment.rollout", "deployment.rollback"]
    assert [r.reason for r in rollout_status(ctx, "support", actor=rhea).history] == ["rollback", "canary", "deploy"]
    assert verify_ledger(ctx.db).ok


def test_promoting_a_canary_then_rolling_back_restores_the_previous_version(ctx: Context) -> None:
    emil = make_actor(ctx, "emil", "ml_engineer")
    rhea = make_actor(ctx, "rhea", "release_manager")
    v1 = _promoted(ctx, "a" * 64, emil, rhea)
    deploy_model_version(ctx, name="support", model_version_id=v1, actor=rhea)
    run_id = insert_run(ctx, model_artifact="b" * 64, metrics=METRICS, author="emil")
    v2 = register_model_version(ctx, run_id=run_id, name="intents", actor=emil).id
    transition_stage(ctx, v2, "staging", actor=rhea)
    start_canary(ctx, "support", v2, percent=50, actor=rhea)
    with pytest.raises(Conflict, match="only a production version may take all traffic"):
        promote_rollout(ctx, "support", actor=rhea)

    request = request_approval(ctx, "model.promote", v2, actor=emil)
    decide(ctx, request.id, actor=rhea, approve=True, comment="canary looked good")
    assert get_model_version(ctx.db, v1).stage == "production"  # half the callers still meet it
    promoted = promote_rollout(ctx, "support", actor=rhea)
    assert (promoted.primary_version_id, promoted.previous_version_id, promoted.mode) == (v2, v1, "single")
    assert get_model_version(ctx.db, v1).stage == "archived"
    v2_in_production = utcnow()

    back = rollback_deployment(ctx, "support", actor=rhea, comment="latency regression")
    assert (back.primary_version_id, back.previous_version_id) == (v1, None)
    assert get_model_version(ctx.db, v1).stage == "production"
    assert get_model_version(ctx.db, v2).stage == "archived"
    assert production_version_at(ctx.db, "intents", v2_in_production).id == v2  # type: ignore[union-attr]
    assert production_version_at(ctx.db, "intents", utcnow()).id == v1  # type: ignore[union-attr]
    assert [t.to_stage for t in stage_history(ctx.db, v1)][-3:] == ["archived", "staging", "production"]
    assert stage_history(ctx.db, v1)[-1].comment == "latency regression"
    with pytest.raises(Conflict, match="no previous version to roll back to"):
        rollback_deployment(ctx, "support", actor=rhea)


def test_a_version_answering_traffic_is_never_archived(ctx: Context) -> None:
    """Issue 14, item 6: deploy v1, canary v2, approve v2, roll the canary back. The
    approval used to archive v1 while it answered half the callers, and the rollback left
    it "archived" while it answered all of them."""
    emil = make_actor(ctx, "emil", "ml_engineer")
    rhea = make_actor(ctx, "rhea", "release_manager")
    v1 = _promoted(ctx, "a" * 64, emil, rhea)
    deploy_model_version(ctx, name="support", model_version_id=v1, actor=rhea)
    run_id = insert_run(ctx, model_artifact="b" * 64, metrics=METRICS, author="emil")
    v2 = register_model_version(ctx, run_id=run_id, name="intents", actor=emil).id
    transition_stage(ctx, v2, "staging", actor=rhea)
    start_canary(ctx, "support", v2, percent=50, actor=rhea)

    request = request_approval(ctx, "model.promote", v2, actor=emil)
    decide(ctx, request.id, actor=rhea, approve=True, comment="canary looked good")
    assert get_model_version(ctx.db, v2).stage == "production"
    assert get_model_version(ctx.db, v1).stage == "production"  # still answers the other half
    assert [t.to_stage for t in stage_history(ctx.db, v1)] == ["candidate", "staging", "production"]
    with pytest.raises(Conflict, match=r"serves traffic: deployment support \(50 % of callers\)"):
        transition_stage(ctx, v1, "archived", actor=rhea)

    back = rollback_deployment(ctx, "support", actor=rhea, comment="canary errors")
    assert (back.mode, back.primary_version_id, back.candidate_version_id) == ("single", v1, None)
    assert get_model_version(ctx.db, v1).stage == "production"  # it answers every request
    assert get_model_version(ctx.db, v2).stage == "archived"  # it answers none
    assert production_version_at(ctx.db, "intents", utcnow()).id == v1  # type: ignore[union-attr]
    last = stage_history(ctx.db, v2)[-1]
    assert (last.from_stage, last.to_stage, last.actor) == ("production", "archived", "rhea")
    assert last.comment == "rolled back from deployment support: canary errors"
    assert [e.details["to"] for e in list_entries(ctx.db, object_kind="model_version")
            if e.object_id == str(v2) and e.action == "model.stage"] == ["staging", "production", "archived"]
    assert verify_ledger(ctx.db).ok


def test_a_redeploy_archives_the_version_it_replaced_once_nothing_serves_it(ctx: Context) -> None:
    rhea = Actor("rhea", frozenset({"release_manager"}))
    v1 = in_production(ctx, "intents")
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=rhea)
    deploy_model_version(ctx, name="billing", model_version_id=v1.id, actor=rhea)
    v2 = in_production(ctx, "intents")
    assert get_model_version(ctx.db, v1.id).stage == "production"  # two deployments answer with it
    deploy_model_version(ctx, name="support", model_version_id=v2.id, actor=rhea)
    assert get_model_version(ctx.db, v1.id).stage == "production"  # billing still does
    deploy_model_version(ctx, name="billing", model_version_id=v2.id, actor=rhea)
    assert get_model_version(ctx.db, v1.id).stage == "archived"
    assert stage_history(ctx.db, v1.id)[-1].comment == "replaced by v2 in deployment billing"


def test_a_shadow_sees_traffic_but_never_answers(ctx: Context, classifier_dir: Path) -> None:
    artifact = ctx.artifacts.put_tree(classifier_dir)
    rhea = Actor("rhea", frozenset({"release_manager"}))
    v1 = in_production(ctx, "intents", model_artifact=artifact)
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=rhea)
    v2 = registered(ctx, "intents", model_artifact=artifact)
    transition_stage(ctx, v2.id, "staging", actor=rhea)
    assert start_shadow(ctx, "support", v2.id, actor=rhea).mode == RouteMode.SHADOW
    served = serve_predictions(ctx, PredictorCache(ctx), "support", ["card lost", "hello"], caller_key="k")
    assert served.model_version.id == v1.id
    assert wait_for_shadows(ctx)  # the shadow answers off the caller's path
    shadows = list_shadow_predictions(ctx, "support", actor=rhea)
    assert {s.model_version_id for s in shadows} == {v2.id} and len(shadows) == 2
    by_request = {s.request_id: s for s in shadows}
    for p in served.predictions:  # the same weights answer the same label, logged next to the served one
        assert by_request[p.request_id].served_label == p.label == by_request[p.request_id].label


@pytest.mark.parametrize("percent", [pytest.param(0, id="zero"), pytest.param(100, id="hundred"),
                                     pytest.param(-5, id="negative")])
def test_canary_percentages_outside_1_to_99_are_refused(ctx: Context, percent: int) -> None:
    rhea = Actor("rhea", frozenset({"release_manager"}))
    v1 = in_production(ctx, "intents")
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=rhea)
    v2 = registered(ctx, "intents")
    transition_stage(ctx, v2.id, "staging", actor=rhea)
    with pytest.raises(InvalidInput, match="from 1 to 99"):
        start_canary(ctx, "support", v2.id, percent=percent, actor=rhea)
    assert current_route(ctx.db, "support").mode == "single"


def test_candidates_must_be_staged_versions_of_the_same_model(ctx: Context) -> None:
    rhea = Actor("rhea", frozenset({"release_manager"}))
    v1 = in_production(ctx, "intents")
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=rhea)
    with pytest.raises(Conflict, match="already serves"):
        start_canary(ctx, "support", v1.id, percent=10, actor=rhea)
    with pytest.raises(Conflict, match="only a staging or production version"):
        start_canary(ctx, "support", registered(ctx, "intents").id, percent=10, actor=rhea)
    with pytest.raises(Conflict, match="a version of the same model"):
        start_shadow(ctx, "support", in_production(ctx, "sentiment").id, actor=rhea)
    with pytest.raises(Conflict, match="runs no canary or shadow"):
        promote_rollout(ctx, "support", actor=rhea)
    assert current_route(ctx.db, "support").id > 0 and current_route(ctx.db, "support").reason == "deploy"


def test_buckets_are_stable_and_salted_by_deployment() -> None:
    assert bucket_of("support", "alice") == bucket_of("support", "alice")
    assert 0 <= bucket_of("support", "alice") < 100
    keys = [f"k{i}" for i in range(500)]
    assert [bucket_of("support", k) for k in keys] != [bucket_of("billing", k) for k in keys]


def test_rollout_over_the_api_is_sticky_by_caller_key_and_guarded(ctx: Context, classifier_dir: Path) -> None:
    artifact = ctx.artifacts.put_tree(classifier_dir)
    make_actor(ctx, "rhea", "release_manager")
    make_actor(ctx, "emil", "ml_engineer")
    rhea = Actor("rhea", frozenset({"release_manager"}))
    v1 = in_production(ctx, "intents", model_artifact=artifact)
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=rhea)
    v2 = registered(ctx, "intents", model_artifact=artifact)
    transition_stage(ctx, v2.id, "staging", actor=rhea)
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    as_rhea = {"Authorization": f"Bearer {issue_token(ctx.db, 'rhea', name='t').secret}"}
    as_emil = {"Authorization": f"Bearer {issue_token(ctx.db, 'emil', name='t').secret}"}

    refused = client.post("/api/deployments/support/canary", json={"model_version_id": v2.id, "percent": 50},
                          headers=as_emil)
    assert refused.status_code == 403 and "deployment.rollout" in refused.json()["detail"]
    bad = client.post("/api/deployments/support/canary", json={"model_version_id": v2.id, "percent": 0},
                      headers=as_rhea)
    assert bad.status_code == 422
    started = client.post("/api/deployments/support/canary", json={"model_version_id": v2.id, "percent": 50},
                          headers=as_rhea)
    assert started.status_code == 200 and started.json()["mode"] == "canary"
    seen = {}
    for caller in ("alice", "bob", "carol", "dave", "erin", "frank"):
        versions = {client.post("/v1/deployments/support/predict", json={"text": "hi"},
                                headers={**as_emil, "X-Caller-Key": caller}).json()["model_version"]["id"]
                    for _ in range(3)}
        assert len(versions) == 1  # sticky
        seen[caller] = versions.pop()
    status = client.get("/api/deployments/support/rollout", headers=as_emil).json()
    assert status["candidate"]["id"] == v2.id and status["route"]["percent"] == 50
    assert client.post("/api/deployments/support/rollback", headers=as_emil).status_code == 403
    rolled = client.post("/api/deployments/support/rollback", json={"comment": "test"}, headers=as_rhea)
    assert rolled.status_code == 200 and rolled.json()["primary_version_id"] == v1.id
    assert client.get("/api/deployments/support/rollout", headers=as_rhea).json()["candidate"] is None


def test_switching_routes_under_load_drops_no_request(ctx: Context, classifier_dir: Path) -> None:
    artifact = ctx.artifacts.put_tree(classifier_dir)
    rhea = Actor("rhea", frozenset({"release_manager"}))
    v1 = in_production(ctx, "intents", model_artifact=artifact)
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=rhea)
    v2 = registered(ctx, "intents", model_artifact=artifact)
    transition_stage(ctx, v2.id, "staging", actor=rhea)
    secret = create_deployment_key(ctx, "support", name="load", actor=rhea, scopes=["predict"]).secret
    server = start_server_in_thread(create_app(ctx))
    stop, lock = threading.Event(), threading.Lock()
    failures: list[str] = []
    served: Counter[int] = Counter()

    def client(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                answer = http.post("/v1/deployments/support/predict", json={"text": "card lost"},
                                   headers={"X-API-Key": secret, "X-Caller-Key": f"c{worker}-{n}"})
                with lock:
                    if answer.status_code == 200:
                        served[answer.json()["model_version"]["id"]] += 1
                    else:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for switch in (lambda: start_canary(ctx, "support", v2.id, percent=50, actor=rhea),
                       lambda: start_shadow(ctx, "support", v2.id, actor=rhea),
                       lambda: start_canary(ctx, "support", v2.id, percent=30, actor=rhea),
                       lambda: rollback_deployment(ctx, "support", actor=rhea)):
            stop.wait(0.4)
            switch()
        stop.wait(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.stop()
        wait_for_shadows(ctx)
    assert failures == []
    assert served[v1.id] > 0 and served[v2.id] > 0  # both answered while the canary ran
    assert current_route(ctx.db, "support").primary_version_id == v1.id
