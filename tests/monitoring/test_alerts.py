"""Alert rules: evaluation on real logged traffic, de-duplication, resolution, silences, bad input."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.core.scheduler import Scheduler
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.monitoring.alerts import (
    breached,
    create_rule,
    create_silence,
    end_silence,
    evaluate_rules,
    get_alert,
    list_alerts,
    resolve_alert,
    schedule_rule_evaluation,
    set_rule_enabled,
)
from chainkeeper.monitoring.predictions import log_predictions, prediction_record
from chainkeeper.monitoring.signals import known_signals, percentile
from chainkeeper.monitoring.tables import SqlAlert
from chainkeeper.monitoring.tickets import list_tickets
from chainkeeper.serving.deployments import deploy_model_version
from tests.governance.conftest import make_actor
from tests.model_rows import RELEASER, in_production


def _deployment(ctx: Context, name: str = "support") -> int:
    version = in_production(ctx, f"m-{name}")
    return deploy_model_version(ctx, name=name, model_version_id=version.id, actor=RELEASER).id


def _serve(ctx: Context, deployment_id: int, latencies: list[float], *, score: float = 0.9,
           ago: timedelta = timedelta(seconds=1)) -> None:
    """Log one prediction per latency, as serving does."""
    from chainkeeper.serving.deployments import get_deployment

    version_id = get_deployment(ctx.db, deployment_id).model_version_id
    at = utcnow() - ago
    log_predictions(ctx.db, [
        prediction_record(request_id=str(uuid.uuid4()), deployment_id=deployment_id, model_version_id=version_id,
                          at=at, text=f"text {i}", label="balance", score=score, latency_ms=ms)
        for i, ms in enumerate(latencies)])


@pytest.fixture
def olga(ctx: Context) -> Actor:
    return make_actor(ctx, "olga", "operator")


def test_percentile_matches_linear_interpolation() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile([], 99) is None
    assert breached(3.0, ">", 2.0) and not breached(2.0, ">", 2.0) and breached(2.0, ">=", 2.0)


def test_a_breach_fires_once_then_resolves_when_it_clears(ctx: Context, olga: Actor) -> None:
    dep = _deployment(ctx)
    rule = create_rule(ctx, name="slow", metric="prediction_latency_p99_ms", comparator=">", threshold=200,
                       window_s=60, severity="critical", deployment="support", actor=olga)
    assert evaluate_rules(ctx).no_data == 1  # no traffic: nothing fires, nothing resolves

    _serve(ctx, dep, [20.0] * 95 + [900.0] * 5)
    first = evaluate_rules(ctx)
    assert len(first.fired) == 1 and first.tickets
    alert = get_alert(ctx.db, first.fired[0])
    assert alert.open and alert.value > 200 and alert.severity == "critical"

    # Breached again: the same alert, refreshed; no second alert, no second ticket.
    _serve(ctx, dep, [1000.0] * 5)
    again = evaluate_rules(ctx)
    assert again.fired == [] and again.still_firing == [alert.id] and again.tickets == []
    assert len(list_alerts(ctx.db)) == 1 and len(list_tickets(ctx.db)) == 1

    # The slow requests leave the window: the condition clears and the alert resolves.
    later = evaluate_rules(ctx, now=utcnow() + timedelta(seconds=120))
    assert later.no_data == 1 and later.resolved == []  # an empty window resolves nothing
    _serve(ctx, dep, [15.0] * 50, ago=timedelta(0))
    cleared = evaluate_rules(ctx, now=utcnow() + timedelta(seconds=59))
    assert cleared.resolved == [alert.id]
    resolved = get_alert(ctx.db, alert.id)
    assert resolved.state == "resolved" and resolved.resolved_at is not None

    # A new breach after resolution is a new alert.
    _serve(ctx, dep, [800.0] * 50, ago=timedelta(0))
    assert len(evaluate_rules(ctx).fired) == 1
    actions = [e.action for e in list_entries(ctx.db, limit=500)]
    assert actions.count("alert.fire") == 2 and actions.count("alert.resolve") == 1
    assert actions.count("ticket.open") == 2 and "alert.rule.create" in actions
    assert rule.condition == "prediction_latency_p99_ms > 200 over 60 s"
    assert verify_ledger(ctx.db).ok


def test_the_store_itself_refuses_a_second_open_alert(ctx: Context, olga: Actor) -> None:
    dep = _deployment(ctx)
    create_rule(ctx, name="conf", metric="mean_confidence", comparator="<", threshold=0.5, window_s=60, actor=olga)
    _serve(ctx, dep, [10.0] * 10, score=0.3)
    fired = evaluate_rules(ctx).fired
    with pytest.raises(Exception, match="refused|UNIQUE|unique"):
        with ctx.db.session() as s:
            s.add(SqlAlert(rule_id=get_alert(ctx.db, fired[0]).rule_id, deployment_id=dep,
                           open_key=f"{get_alert(ctx.db, fired[0]).rule_id}:{dep}", state="firing",
                           severity="warning", value=0.1, threshold=0.5, message="dup"))
    with ctx.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(SqlAlert)) == 1


def test_a_rule_without_a_deployment_watches_each_one(ctx: Context, olga: Actor) -> None:
    a, b = _deployment(ctx, "alpha"), _deployment(ctx, "beta")
    create_rule(ctx, name="busy", metric="prediction_count", comparator=">=", threshold=3, window_s=60, actor=olga)
    _serve(ctx, a, [5.0] * 3)
    _serve(ctx, b, [5.0] * 1)
    result = evaluate_rules(ctx)
    assert [get_alert(ctx.db, i).deployment_id for i in result.fired] == [a]


def test_a_silence_mutes_tickets_until_it_ends(ctx: Context, olga: Actor) -> None:
    dep = _deployment(ctx)
    rule = create_rule(ctx, name="conf", metric="mean_confidence", comparator="<", threshold=0.5, window_s=600,
                       actor=olga)
    silence = create_silence(ctx, rule_id=rule.id, duration_s=3600, reason="load test", actor=olga)
    _serve(ctx, dep, [10.0] * 5, score=0.2)
    muted = evaluate_rules(ctx)
    assert muted.fired and muted.silenced == muted.fired and muted.tickets == []
    assert get_alert(ctx.db, muted.fired[0]).notified_at is None

    # Still firing past the silence's end: it notifies then, once.
    after = evaluate_rules(ctx, now=utcnow() + timedelta(hours=1, seconds=1))
    assert after.no_data == 1  # the window moved past the traffic
    end_silence(ctx, silence.id, actor=olga)
    ended = evaluate_rules(ctx)
    assert ended.still_firing == muted.fired and len(ended.tickets) == 1
    assert evaluate_rules(ctx).tickets == []
    with pytest.raises(Conflict, match="ended"):
        end_silence(ctx, silence.id, actor=olga)


def test_disabling_a_rule_or_resolving_by_hand_closes_its_alert(ctx: Context, olga: Actor) -> None:
    dep = _deployment(ctx)
    rule = create_rule(ctx, name="conf", metric="mean_confidence", comparator="<", threshold=0.5, window_s=600,
                       actor=olga)
    _serve(ctx, dep, [10.0] * 5, score=0.2)
    first = evaluate_rules(ctx).fired[0]
    resolve_alert(ctx, first, actor=olga, comment="false alarm: test traffic")
    with pytest.raises(Conflict, match="already resolved"):
        resolve_alert(ctx, first, actor=olga, comment="again")
    second = evaluate_rules(ctx).fired[0]
    set_rule_enabled(ctx, rule.id, enabled=False, actor=olga)
    assert get_alert(ctx.db, second).state == "resolved"
    assert evaluate_rules(ctx).rules == 0


def test_the_evaluate_job_evaluates_once_and_a_schedule_queues_it(ctx: Context, olga: Actor) -> None:
    dep = _deployment(ctx)
    create_rule(ctx, name="conf", metric="mean_confidence", comparator="<", threshold=0.5, window_s=600, actor=olga)
    _serve(ctx, dep, [10.0] * 5, score=0.2)
    schedule = schedule_rule_evaluation(ctx, 30, actor=olga)
    assert (schedule.name, schedule.kind, schedule.every_s) == ("alerts:evaluate", "alerts.evaluate", 30.0)
    (firing,) = Scheduler(ctx).run_once()
    done = Worker(ctx).run_one()
    assert done is not None and done.id == firing.job_id and done.state == "succeeded", done
    assert done.result == {"rules": 1, "fired": 1, "still_firing": 0, "resolved": 0, "tickets": 1}
    assert Worker(ctx).run_one() is None  # it ended: the worker is free for other jobs
    with pytest.raises(Conflict, match="alerts:evaluate"):
        schedule_rule_evaluation(ctx, 60, actor=olga)


@pytest.mark.parametrize(
    ("changes", "error", "fragment"),
    [
        pytest.param({"metric": "p99_latncy"}, InvalidInput, "Known metrics and checks", id="unknown-metric"),
        pytest.param({"comparator": "=="}, InvalidInput, "Unknown comparator", id="bad-comparator"),
        pytest.param({"severity": "doom"}, InvalidInput, "Unknown severity", id="bad-severity"),
        pytest.param({"window_s": 0}, InvalidInput, "window", id="zero-window"),
        pytest.param({"webhook_url": "ftp://x/y"}, InvalidInput, "http", id="bad-webhook"),
        pytest.param({"deployment": "nowhere"}, NotFound, "nowhere", id="unknown-deployment"),
        pytest.param({"name": " "}, InvalidInput, "name", id="blank-name"),
    ],
)
def test_bad_rules_are_refused_and_store_nothing(ctx: Context, olga: Actor, changes: dict[str, object],
                                                 error: type[Exception], fragment: str) -> None:
    args: dict[str, object] = {"name": "r", "metric": "mean_confidence", "comparator": "<", "threshold": 0.5,
                               "window_s": 60, **changes}
    with pytest.raises(error, match=fragment) as info:
        create_rule(ctx, actor=olga, **args)  # type: ignore[arg-type]
    if changes.get("metric"):
        assert "prediction_latency_p99_ms" in str(info.value)
    assert list_entries(ctx.db, object_kind="alert_rule") == []


def test_only_alert_managers_change_rules(ctx: Context) -> None:
    erin = make_actor(ctx, "erin", "ml_engineer")
    with pytest.raises(Forbidden, match="alert.manage"):
        create_rule(ctx, name="r", metric="mean_confidence", comparator="<", threshold=0.5, window_s=60, actor=erin)
    assert "prediction_latency_p99_ms" in known_signals()


def test_the_api_answers_an_unknown_metric_with_a_422_naming_the_known_ones(ctx: Context) -> None:
    from fastapi.testclient import TestClient

    from chainkeeper.api.app import create_app
    from chainkeeper.governance.users import create_user, issue_token

    _deployment(ctx)
    create_user(ctx.db, "olga", roles=["operator"])
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {issue_token(ctx.db, 'olga', name='t').secret}"
    body = {"name": "r", "metric": "p99_latncy", "comparator": ">", "threshold": 1, "window_s": 60}
    answer = client.post("/api/alert-rules", json=body)
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert "'p99_latncy'" in problem["detail"] and "prediction_latency_p99_ms" in problem["hint"]
    assert client.get("/api/alert-rules").json() == []

    made = client.post("/api/alert-rules", json={**body, "metric": "mean_confidence", "comparator": "<",
                                                 "threshold": 0.5, "webhook_url": "http://hooks.invalid/secret"})
    assert made.status_code == 201 and made.json()["webhook"] is True and "secret" not in made.text
    metrics = {m["name"] for m in client.get("/api/alert-metrics").json()}
    assert {"mean_confidence", "prediction_latency_p99_ms"} <= metrics
    assert client.post("/api/alert-rules/evaluate").json()["rules"] == 1


def test_a_rule_on_a_stored_metric_series_fires_on_the_error_rate(ctx: Context, olga: Actor) -> None:
    from chainkeeper.monitoring.metrics import MetricPoint, store_points

    _deployment(ctx)
    create_rule(ctx, name="errors", metric="error_rate", comparator=">", threshold=0.05, window_s=300,
                deployment="support", actor=olga)
    now = utcnow()
    store_points(ctx.db, [MetricPoint("error_rate", {"deployment": "support"}, v, now - timedelta(seconds=s))
                          for v, s in ((0.0, 200), (0.12, 100), (0.15, 10))])
    store_points(ctx.db, [MetricPoint("error_rate", {"deployment": "other"}, 0.9, now)])
    fired = evaluate_rules(ctx, now=now)
    assert len(fired.fired) == 1 and get_alert(ctx.db, fired.fired[0]).value == pytest.approx(0.09)


def test_a_rule_on_live_accuracy_fires_from_feedback_labels(ctx: Context, olga: Actor, tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    from chainkeeper.monitoring.feedback import submit_feedback
    from tests.model_rows import save_tiny_classifier

    artifact = ctx.artifacts.put_tree(save_tiny_classifier(tiny_model_dir, tmp_path / "model"))
    version = in_production(ctx, "intents", model_artifact=artifact)
    dep = deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    create_rule(ctx, name="accuracy", metric="live_accuracy", comparator="<", threshold=0.8, window_s=600,
                deployment="support", actor=olga)
    ids = [str(uuid.uuid4()) for _ in range(10)]
    log_predictions(ctx.db, [prediction_record(request_id=rid, deployment_id=dep.id, model_version_id=version.id,
                                               at=utcnow(), text=f"t{i}", label="balance", score=0.9, latency_ms=5.0)
                             for i, rid in enumerate(ids)])
    assert evaluate_rules(ctx).no_data == 1  # no feedback yet: live accuracy is unknown, nothing fires
    # 6 of 10 were right: live accuracy 0.6 < 0.8.
    submit_feedback(ctx, [(rid, "balance" if i < 6 else "refund") for i, rid in enumerate(ids)], actor=olga)
    fired = evaluate_rules(ctx).fired
    assert len(fired) == 1 and get_alert(ctx.db, fired[0]).value == pytest.approx(0.6)
