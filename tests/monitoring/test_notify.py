"""Webhook delivery against a real HTTP receiver on 127.0.0.1: each attempt a job a worker runs,
retried as delayed jobs with back-off, never blocking the evaluation; each message signed with
its rule's secret; an address the outbound policy refuses is never posted to.

Loopback is refused to outbound requests by default (issue 15 item 6): the ``settings``
here allow 127.0.0.1, where the receiver listens; the refusal tests take it away.
"""

from __future__ import annotations

import os
import socket
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, OutboundRefused
from chainkeeper.core.jobs import list_jobs
from chainkeeper.core.settings import Settings, load_settings
from chainkeeper.core.worker import Worker
from chainkeeper.governance.ledger import list_entries
from chainkeeper.monitoring.alerts import create_rule, evaluate_rules, list_rules, webhook_secret
from chainkeeper.monitoring.notify import (
    DEFAULT_POLICY,
    RetryPolicy,
    backoff_s,
    deliver,
    list_attempts,
    list_notifications,
)
from chainkeeper.monitoring.predictions import log_predictions, prediction_record
from chainkeeper.monitoring.signing import KEY_FILE, SIGNATURE_HEADER, verify_signature
from chainkeeper.serving.deployments import deploy_model_version
from tests.governance.conftest import make_actor
from tests.model_rows import RELEASER, in_production
from tests.monitoring.webhooks import Receiver, receiver, signature_ok  # noqa: F401 - the fixture

OLGA = "olga"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, letting webhooks reach the receiver on 127.0.0.1."""
    return settings.model_copy(update={"outbound_allow": ["127.0.0.1"]})


@pytest.fixture
def strict_ctx(settings: Settings) -> Iterator[Context]:
    """The same store with the default outbound policy: loopback refused."""
    context = open_context(settings.model_copy(update={"outbound_allow": []}))
    yield context
    context.close()


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
    olga = make_actor(ctx, OLGA, "operator")
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
               "CHAINKEEPER_WEBHOOK_MAX_DELAY_S": "0.2", "CHAINKEEPER_WEBHOOK_TIMEOUT_S": "1",
               "CHAINKEEPER_OUTBOUND_ALLOW": "127.0.0.1"}
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


# --- the outbound policy (issue 15 item 6) -------------------------------------------------


@pytest.mark.parametrize("url", [
    pytest.param("http://127.0.0.1:{port}/hook", id="loopback"),
    pytest.param("http://localhost:{port}/hook", id="localhost"),
    pytest.param("http://[::1]:{port}/hook", id="ipv6-loopback"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="cloud-metadata"),
    pytest.param("http://10.1.2.3/hook", id="private"),
])
def test_a_rule_with_a_webhook_to_an_internal_address_is_refused_and_not_stored(strict_ctx: Context,
                                                                                  url: str) -> None:
    olga = make_actor(strict_ctx, OLGA, "operator")

    with pytest.raises(OutboundRefused) as refused:
        create_rule(strict_ctx, name="r", metric="mean_confidence", comparator="<", threshold=0.5, window_s=60,
                    webhook_url=url.format(port=_closed_port()), actor=olga)

    assert "Refused to connect to" in refused.value.message and "outbound_allow" in (refused.value.hint or "")
    assert list_rules(strict_ctx.db) == []


def test_a_message_to_an_address_refused_at_delivery_fails_at_once_with_the_reason(
        ctx: Context, strict_ctx: Context, receiver: Receiver) -> None:
    _firing_rule(ctx, receiver.url)  # allowed when the rule was made ...
    evaluate_rules(ctx)

    ran = _deliver(strict_ctx)  # ... refused by the settings of the worker that delivers

    assert ran == 1 and receiver.received == []
    (note,) = list_notifications(ctx.db)
    assert note.state == "failed" and note.attempts == 1  # not retried: the same settings refuse it again
    assert (note.last_error or "").startswith("refused: Refused to connect to 127.0.0.1")
    assert "loopback" in (note.last_error or "") and "outbound_allow" in (note.last_error or "")
    (attempt,) = list_attempts(ctx.db, note.id)
    assert attempt.status_code is None and attempt.error == note.last_error
    (job,) = [j for j in list_jobs(ctx.db) if j.kind == "webhook.deliver"]
    assert job.state == "failed" and "given up" in (job.error or "")


def test_a_message_is_signed_with_its_rules_secret_and_a_tampered_one_is_refused(ctx: Context,
                                                                                 receiver: Receiver) -> None:
    _firing_rule(ctx, receiver.url)
    (rule,) = list_rules(ctx.db)
    receiver.secret = webhook_secret(ctx, rule.id, actor=make_actor(ctx, "omar", "operator"))

    evaluate_rules(ctx)
    assert _deliver(ctx) == 1

    assert receiver.verified == [True]  # the receiver's own check accepted it (and answered 200)
    (note,) = list_notifications(ctx.db)
    assert note.state == "delivered"
    body, header = receiver.bodies[0], receiver.headers[0][SIGNATURE_HEADER]
    now = time.time()
    assert verify_signature(receiver.secret, header, body, now)  # the reference check agrees
    tampered = body.replace(b'"severity":"warning"', b'"severity":"info"')
    assert tampered != body and not signature_ok(receiver.secret, header, tampered, now)
    assert not signature_ok("0" * 64, header, body, now)  # another rule's secret
    assert not signature_ok(receiver.secret, header, body, now + 301)  # replayed after the window
    # Posted to the receiver as is, the tampered message is turned away.
    answer = httpx.post(receiver.url, content=tampered, headers={SIGNATURE_HEADER: header})
    assert answer.status_code == 401 and receiver.verified == [True, False]


def test_each_rule_has_its_own_secret_kept_off_the_database_and_reading_it_is_audited(
        ctx: Context, settings: Settings, receiver: Receiver) -> None:
    _firing_rule(ctx, receiver.url)
    olga = make_actor(ctx, "omar", "operator")
    other = create_rule(ctx, name="latency", metric="mean_confidence", comparator="<", threshold=0.1, window_s=60,
                        webhook_url=receiver.url, actor=olga)
    quiet = create_rule(ctx, name="no-hook", metric="mean_confidence", comparator="<", threshold=0.1, window_s=60,
                        actor=olga)
    first = list_rules(ctx.db)[0]

    secret = webhook_secret(ctx, first.id, actor=olga)

    assert len(secret) == 64 and secret == webhook_secret(ctx, first.id, actor=olga)
    assert webhook_secret(ctx, other.id, actor=olga) != secret
    key_file = settings.home / KEY_FILE
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert secret not in (settings.home / "chainkeeper.db").read_bytes().decode("latin-1")
    with pytest.raises(Conflict, match="no webhook"):
        webhook_secret(ctx, quiet.id, actor=olga)
    reads = [e for e in list_entries(ctx.db) if e.action == "alert.rule.webhook_secret"]
    assert [(e.actor, e.object_id) for e in reads] == [("omar", str(first.id))] * 2 + [("omar", str(other.id))]
    # A key in the settings replaces the file's (every host of a deployment sets the same).
    keyed = open_context(settings.model_copy(update={"webhook_signing_key": SecretStr("k" * 40)}))
    try:
        assert webhook_secret(keyed, first.id, actor=olga) not in (secret, webhook_secret(ctx, other.id, actor=olga))
    finally:
        keyed.close()
