"""Every protected monitoring function (and the retraining loop above it) refuses an actor
whose roles are bound to another project.

Monitoring's objects belong to their deployment's project: the fixture below gives the
"news" deployment of ``projects`` a rule, a firing alert with its ticket, a silence and a
served prediction with feedback, so each case reaches the object and is refused there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from chainkeeper.chain.maintenance import (
    close_when_served,
    evaluate_retraining,
    hand_to_release_gate,
    start_retraining,
    train_on_released,
)
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Forbidden
from chainkeeper.governance.actors import Actor
from chainkeeper.monitoring import (
    TicketState,
    acknowledge_ticket,
    advance_ticket,
    check_drift,
    close_ticket,
    create_rule,
    create_silence,
    diagnose,
    end_silence,
    evaluate_rules_now,
    find_alerts,
    find_rules,
    find_signals,
    find_silences,
    find_tickets,
    hand_over_ticket,
    live_quality,
    log_predictions,
    metric_names,
    prediction_record,
    read_metric_series,
    render_metrics,
    resolve_alert,
    schedule_drift_checks,
    schedule_rule_evaluation,
    set_rule_enabled,
    show_alert,
    show_drift_results,
    show_feedback,
    show_ticket,
    submit_drift_job,
    submit_feedback,
    webhook_secret,
)
from chainkeeper.monitoring.metrics import ServingMetrics
from chainkeeper.monitoring.tables import SqlAlert, SqlFeedback, SqlTicket
from tests.chain.conftest import Projects, table_counts

OPERATOR = Actor("olga", frozenset({"operator"}))
NAME = "news-sentiment"


@dataclass(frozen=True)
class Watched:
    """The "news" deployment's monitoring objects."""

    p: Projects
    rule_id: int
    alert_id: int
    ticket_id: int
    silence_id: int
    request_id: str


@pytest.fixture
def watched(ctx: Context, projects: Projects) -> Watched:
    rule = create_rule(ctx, name="news-latency", metric="latency_p99_ms", comparator=">", threshold=100.0,
                       window_s=300, deployment=NAME, actor=OPERATOR)
    silence = create_silence(ctx, duration_s=600, reason="load test", deployment=NAME, actor=OPERATOR)
    now = utcnow()
    log_predictions(ctx.db, [prediction_record(
        request_id="r-news-1", deployment_id=projects.deployment.id, model_version_id=projects.model.id, at=now,
        text="acme beat forecasts", label="positive", score=0.9, scores={"positive": 0.9}, latency_ms=5.0)])
    with ctx.db.session() as s:
        alert = SqlAlert(rule_id=rule.id, deployment_id=projects.deployment.id, open_key=f"{rule.id}:x",
                         state="firing", severity="warning", value=150.0, threshold=100.0, message="slow",
                         started_at=now, last_seen_at=now)
        s.add(alert)
        s.flush()
        ticket = SqlTicket(alert_id=alert.id, deployment_id=projects.deployment.id, title="slow", state="open",
                           owner_role="operator", opened_at=now, details={})
        s.add(ticket)
        s.add(SqlFeedback(request_id="r-news-1", label="positive", source="reviewer", given_by="olga",
                          given_at=now, revisions=0))
        s.flush()
        ids = alert.id, ticket.id
    return Watched(projects, rule.id, ids[0], ids[1], silence.id, "r-news-1")


WatchCase = Callable[[Context, Watched], object]

CASES: dict[Callable[..., object], WatchCase] = {
    create_rule: lambda ctx, w: create_rule(ctx, name="x", metric="latency_p99_ms", comparator=">", threshold=1.0,
                                            window_s=60, deployment=NAME, actor=w.p.outsider),
    set_rule_enabled: lambda ctx, w: set_rule_enabled(ctx, w.rule_id, enabled=False, actor=w.p.outsider),
    webhook_secret: lambda ctx, w: webhook_secret(ctx, w.rule_id, actor=w.p.outsider),
    evaluate_rules_now: lambda ctx, w: evaluate_rules_now(ctx, actor=w.p.outsider),
    schedule_rule_evaluation: lambda ctx, w: schedule_rule_evaluation(ctx, 60.0, actor=w.p.outsider),
    resolve_alert: lambda ctx, w: resolve_alert(ctx, w.alert_id, actor=w.p.outsider, comment="fixed"),
    show_alert: lambda ctx, w: show_alert(ctx, w.alert_id, actor=w.p.outsider),
    create_silence: lambda ctx, w: create_silence(ctx, duration_s=60, reason="x", deployment=NAME,
                                                  actor=w.p.outsider),
    end_silence: lambda ctx, w: end_silence(ctx, w.silence_id, actor=w.p.outsider),
    acknowledge_ticket: lambda ctx, w: acknowledge_ticket(ctx, w.ticket_id, actor=w.p.outsider),
    hand_over_ticket: lambda ctx, w: hand_over_ticket(ctx, w.ticket_id, actor=w.p.outsider, note="x"),
    close_ticket: lambda ctx, w: close_ticket(ctx, w.ticket_id, actor=w.p.outsider, resolution="x"),
    advance_ticket: lambda ctx, w: advance_ticket(ctx, w.ticket_id, actor=w.p.outsider, to=TicketState.RETRAINING,
                                                  allowed_from=(TicketState.HANDED_OVER,), action="ticket.retrain",
                                                  details={}),
    show_ticket: lambda ctx, w: show_ticket(ctx, w.ticket_id, actor=w.p.outsider),
    submit_feedback: lambda ctx, w: submit_feedback(ctx, [(w.request_id, "negative")], actor=w.p.outsider),
    show_feedback: lambda ctx, w: show_feedback(ctx, w.request_id, actor=w.p.outsider),
    check_drift: lambda ctx, w: check_drift(ctx, NAME, actor=w.p.outsider),
    submit_drift_job: lambda ctx, w: submit_drift_job(ctx, NAME, actor=w.p.outsider, last=50),
    schedule_drift_checks: lambda ctx, w: schedule_drift_checks(ctx, NAME, actor=w.p.outsider, every_s=3600),
    show_drift_results: lambda ctx, w: show_drift_results(ctx, NAME, actor=w.p.outsider),
    live_quality: lambda ctx, w: live_quality(ctx, NAME, actor=w.p.outsider),
    diagnose: lambda ctx, w: diagnose(ctx, NAME, actor=w.p.outsider),
    read_metric_series: lambda ctx, w: read_metric_series(ctx, "requests_per_s", utcnow() - timedelta(hours=1),
                                                          NAME, actor=w.p.outsider),
    render_metrics: lambda ctx, w: render_metrics(ctx, ServingMetrics(), actor=w.p.outsider),
    start_retraining: lambda ctx, w: start_retraining(ctx, w.ticket_id, actor=w.p.outsider),
    train_on_released: lambda ctx, w: train_on_released(ctx, w.ticket_id, actor=w.p.outsider),
    evaluate_retraining: lambda ctx, w: evaluate_retraining(ctx, w.ticket_id, actor=w.p.outsider),
    hand_to_release_gate: lambda ctx, w: hand_to_release_gate(ctx, w.ticket_id, actor=w.p.outsider),
    close_when_served: lambda ctx, w: close_when_served(ctx, w.ticket_id, actor=w.p.outsider),
}

# Readers of monitoring anywhere get these; the lists leave out what the actor may not read.
LISTS: dict[Callable[..., object], Callable[[Context, Actor], list[object]]] = {
    find_rules: lambda ctx, actor: find_rules(ctx, actor=actor),  # type: ignore[dict-item]
    find_alerts: lambda ctx, actor: find_alerts(ctx, actor=actor),  # type: ignore[dict-item]
    find_silences: lambda ctx, actor: find_silences(ctx, actor=actor),  # type: ignore[dict-item]
    find_tickets: lambda ctx, actor: find_tickets(ctx, actor=actor).tickets,  # type: ignore[dict-item]
}
NOT_PROJECT_SCOPED = {find_signals: "the names of the metrics and checks a rule may watch",
                      metric_names: "the names of the stored metric series"}


@pytest.mark.parametrize("function", list(CASES), ids=lambda f: f.__name__)
def test_an_actor_of_another_project_is_refused(ctx: Context, watched: Watched, tmp_path: Path,
                                                function: Callable[..., object]) -> None:
    before = table_counts(ctx)
    with pytest.raises(Forbidden):
        CASES[function](ctx, watched)
    assert table_counts(ctx) == before


@pytest.mark.parametrize("function", list(LISTS), ids=lambda f: f.__name__)
def test_a_list_shows_an_actor_of_another_project_nothing_of_this_one(ctx: Context, watched: Watched,
                                                                       function: Callable[..., object]) -> None:
    assert LISTS[function](ctx, watched.p.outsider) == []
    assert LISTS[function](ctx, watched.p.insider) != []


def test_an_actor_of_the_project_may_read_and_handle_its_alerts(ctx: Context, watched: Watched) -> None:
    insider = watched.p.insider
    assert show_alert(ctx, watched.alert_id, actor=insider).alert.id == watched.alert_id
    assert acknowledge_ticket(ctx, watched.ticket_id, actor=insider).state == TicketState.ACKNOWLEDGED
    assert show_feedback(ctx, watched.request_id, actor=insider).label == "positive"
