"""Webhook delivery against a real HTTP receiver on 127.0.0.1: each attempt a job a worker runs,
retried as delayed jobs with back-off, never blocking the evaluation."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.jobs import list_jobs
from chainkeeper.core.settings import Settings, load_settings
from chainkeeper.core.worker import Worker
from chainkeeper.monitoring.alerts import create_rule, evaluate_rules
from chainkeeper.monitoring.notify import (
    DEFAULT_POLICY,
    RetryPolicy,
    backoff_s,
    deliver,
    list_attempts,
    list_notifications,
)
from chainkeeper.monitoring.predictions import log_predictions, prediction_record
from chainkeeper.serving.deployments import deploy_model_version
from tests.governance.conftest import make_actor
from tests.model_rows import RELEASER, in_production
from tests.monitoring.webhooks import Receiver, receiver  # noqa: F401 - the fixture


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _deliver(ctx: Context) -> int:
    """Run the jobs that are due now (webhook deliveries) on a worker; return how many ran."""
    return Worker(ctx).run_forever(exit_when_idle=True)


def _work_until(ctx: Context, done: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Run a worker (delayed jobs included, as they come due) until ``done()``."""
    worker, deadline = Worker(ctx), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        if worker.run_one() is None:
            time.sleep(0.05)
    return done()


def _firing_rule(ctx: Context, url: str) -> tuple[int, int]:
    """A deployment with one low-confidence prediction and a rule that fires on it; (deployment, version) ids."""
    olga = make_actor(ctx, "olga", "operator")
    version = in_production(ctx, "intents")
    dep = deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    create_rule(ctx, name="low-confidence", metric="mean_confidence", comparator="<", threshold=0.5, window_s=600,
                deployment="support", webhook_url=url, actor=olga)
    log_predictions(ctx.db, [prediction_record(request_id=str(uuid.uuid4()), deployment_id=dep.id,
                                               model_version_id=version.id, at=utcnow(), text="hello", label="balance",
                                               score=0.2, latency_ms=5.0)])
    return dep.id, version.id


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0)
    assert [backoff_s(n, policy) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_firing_alert_reaches_the_receiver_and_so_does_its_resolution(ctx: Context, receiver: Receiver) -> None:
    dep_id, version_id = _firing_rule(ctx, receiver.url)
    fired = evaluate_rules(ctx)
    assert fired.notified == fired.fired
    assert receiver.received == []  # queued as a job; a worker sends it
    assert _deliver(ctx) == 1
    assert [m["event"] for m in receiver.received] == ["firing"]
    message = receiver.received[0]
    assert message["rule"] == "low-confidence" and message["value"] == pytest.approx(0.2)
    assert message["condition"] == "mean_confidence < 0.5" and message["alert_id"] == fired.fired[0]
    assert receiver.headers[0]["X-Chainkeeper-Event"] == "firing"
    (note,) = list_notifications(ctx.db)
    assert note.state == "delivered" and note.attempts == 1
    assert [a.status_code for a in list_attempts(ctx.db, note.id)] == [200]

    assert evaluate_rules(ctx, now=utcnow() + timedelta(seconds=601)).no_data == 1  # an empty window resolves nothing
    log_predictions(ctx.db, [prediction_record(request_id=str(uuid.uuid4()), deployment_id=dep_id,
                                               model_version_id=version_id, at=utcnow(), text="hi", label="balance",
                                               score=0.95, latency_ms=3.0)])
    cleared = evaluate_rules(ctx, now=utcnow() + timedelta(seconds=1))
    assert cleared.resolved == fired.fired
    assert _deliver(ctx) == 1
    assert [m["event"] for m in receiver.received] == ["firing", "resolved"]


def test_a_webhook_that_fails_twice_is_retried_as_delayed_jobs_until_delivered(
        settings: Settings, receiver: Receiver) -> None:
    receiver.fail_first = 2
    ctx = open_context(settings.model_copy(update={"webhook_base_delay_s": 0.2, "webhook_max_delay_s": 1.0}))
    try:
        _firing_rule(ctx, receiver.url)
        evaluate_rules(ctx)
        assert _work_until(ctx, lambda: list_notifications(ctx.db)[0].state != "pending")
        (note,) = list_notifications(ctx.db)
        assert note.state == "delivered" and note.attempts == 3 and note.last_error is None
        attempts = list_attempts(ctx.db, note.id)
        assert [a.status_code for a in attempts] == [503, 503, 200]
        gaps = [(b.at - a.at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # 0.2 s, then doubled
        # Each attempt was its own job; the two retries waited for their back-off.
        jobs = sorted((j for j in list_jobs(ctx.db) if j.kind == "webhook.deliver"), key=lambda j: j.id)
        assert [j.state for j in jobs] == ["failed", "failed", "succeeded"]
        assert jobs[0].not_before is None and all(j.not_before is not None for j in jobs[1:])
        assert "HTTP 503" in (jobs[0].error or "") and f"job {jobs[1].id} tries again" in (jobs[0].error or "")
        assert jobs[2].result == {"notification_id": note.id, "attempt": 3, "status_code": 200}
        assert len(receiver.received) == 3
    finally:
        ctx.close()


def test_an_unreachable_webhook_is_given_up_after_its_attempts_and_never_blocks(settings: Settings) -> None:
    ctx = open_context(settings.model_copy(update={"webhook_max_attempts": 3, "webhook_base_delay_s": 0.3,
                                                   "webhook_max_delay_s": 1.0, "webhook_timeout_s": 0.5}))
    try:
        _firing_rule(ctx, f"http://127.0.0.1:{_closed_port()}/hook")
        start = time.perf_counter()
        fired = evaluate_rules(ctx)
        assert time.perf_counter() - start < 2.0 and fired.fired  # returned without waiting for delivery
        assert _work_until(ctx, lambda: list_notifications(ctx.db)[0].state != "pending")
        (note,) = list_notifications(ctx.db)
        assert note.state == "failed" and note.attempts == 3 and "Connect" in (note.last_error or "")
        attempts = list_attempts(ctx.db, note.id)
        assert [a.status_code for a in attempts] == [None, None, None]
        assert all(a.error and "Connect" in a.error for a in attempts)
        gaps = [(b.at - a.at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)]
        assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # 0.3 s, then doubled
        assert "given up" in (list_jobs(ctx.db)[0].error or "")
        assert _deliver(ctx) == 0  # nothing left queued
        # The alert itself was stored and opened its ticket regardless.
        assert fired.tickets
    finally:
        ctx.close()


def test_a_slow_receiver_does_not_hold_up_evaluation(ctx: Context, receiver: Receiver) -> None:
    receiver.delay_s = 1.5
    _firing_rule(ctx, receiver.url)
    start = time.perf_counter()
    evaluate_rules(ctx)
    assert time.perf_counter() - start < 1.0  # nothing is sent on the evaluation's path
    assert _deliver(ctx) == 1
    assert len(receiver.received) == 1


def test_a_message_is_posted_once_however_many_jobs_try(ctx: Context, receiver: Receiver) -> None:
    _firing_rule(ctx, receiver.url)
    evaluate_rules(ctx)
    (note,) = list_notifications(ctx.db)
    first = deliver(ctx, note.id)
    assert not isinstance(first, str) and first.delivered and first.attempt == 1
    assert deliver(ctx, note.id) == "delivered"  # a second job (its own, retried by hand) sends nothing
    assert _deliver(ctx) == 1  # the queued job finds it delivered
    assert len(receiver.received) == 1


def test_the_default_policy_is_the_settings_default() -> None:
    assert RetryPolicy.from_settings(load_settings({})) == DEFAULT_POLICY


def test_the_retry_settings_decide_when_a_dead_receiver_is_given_up(settings: Settings, receiver: Receiver) -> None:
    receiver.status = 503  # answers, but never takes the message
    environ = {"CHAINKEEPER_WEBHOOK_MAX_ATTEMPTS": "2", "CHAINKEEPER_WEBHOOK_BASE_DELAY_S": "0.2",
               "CHAINKEEPER_WEBHOOK_MAX_DELAY_S": "0.2", "CHAINKEEPER_WEBHOOK_TIMEOUT_S": "1"}
    ctx = open_context(load_settings(environ, home=settings.home, worker_poll_s=0.05))
    try:
        _firing_rule(ctx, receiver.url)
        evaluate_rules(ctx)
        assert _work_until(ctx, lambda: list_notifications(ctx.db)[0].state != "pending")
        (note,) = list_notifications(ctx.db)
        assert note.state == "failed" and note.attempts == 2 and note.last_error == "HTTP 503: ok"
        assert [a.status_code for a in list_attempts(ctx.db, note.id)] == [503, 503]
        assert _deliver(ctx) == 0 and len(receiver.received) == 2  # no third attempt is queued
    finally:
        ctx.close()
