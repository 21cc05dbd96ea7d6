"""Webhook notifications: queued in the store, each delivered by its own job, retried with back-off.

``enqueue`` writes a pending message and the ``webhook.deliver`` job that sends it inside
the caller's transaction (the alert, its message and the job commit together or not at
all). Delivery never runs on the caller's path: a worker runs the job, which POSTs the
message as JSON once and records the attempt (status code or network error, duration).
Each POST is signed (``monitoring.signing``: ``X-Chainkeeper-Signature``, an HMAC of the
timestamp and body with the rule's secret) and goes through the outbound policy
(``core.outbound``): a URL whose address the policy refuses (private, loopback,
link-local unless ``outbound_allow`` names it) is not sent, and the message is marked
failed at once with the reason; redirects are not followed.
A failed attempt queues the next job, delayed by ``base_delay_s * 2**(attempt-1)``
seconds (capped at ``max_delay_s``, the job's ``not_before``); after ``max_attempts`` the
message is marked failed, and stays in the store for the UI. The policy comes from the
settings (``CHAINKEEPER_WEBHOOK_MAX_ATTEMPTS``, ``…_BASE_DELAY_S``, ``…_MAX_DELAY_S``,
``…_TIMEOUT_S``) of the worker that delivers (``ctx.settings``).

Two jobs of one message (a retried job beside its follow-up) never post the same attempt
twice: each claims the message by moving its ``next_attempt_at`` forward with a
conditional UPDATE, and only the one whose update matched sends. A worker that dies with
a claim lets it lapse after ``CLAIM_LEASE_S``; a job that finds the message claimed
queues a follow-up for when the claim lapses, so a pending message always has a job.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import OutboundRefused, ServiceUnavailable
from chainkeeper.core.jobs import JobHandle, JobState, add_job
from chainkeeper.core.outbound import OutboundClient, OutboundPolicy
from chainkeeper.core.tables import SqlJob
from chainkeeper.monitoring.signing import SIGNATURE_HEADER, rule_secret, signature_header, signing_key
from chainkeeper.monitoring.tables import (
    SqlAlert,
    SqlAlertRule,
    SqlDeliveryAttempt,
    SqlNotification,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.core.settings import Settings

__all__ = [
    "DEFAULT_POLICY",
    "Delivery",
    "DeliveryAttempt",
    "Notification",
    "NotificationState",
    "RetryPolicy",
    "JOB_KIND",
    "backoff_s",
    "deliver",
    "enqueue",
    "list_attempts",
    "list_notifications",
    "run_delivery_job",
]

_log = logging.getLogger(__name__)

JOB_KIND = "webhook.deliver"
# A claimed message is someone's for this long; longer than any timeout below.
CLAIM_LEASE_S = 120.0
# Alerts belong to the system, not to a user: their delivery jobs are queued under this name.
SENDER = "alerting"
# The most of a receiver's answer read (only its first 200 characters are kept).
MAX_ANSWER_BYTES = 64 * 1024


class NotificationState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard delivery tries: attempts, back-off and the timeout of one POST."""

    max_attempts: int = 6
    base_delay_s: float = 5.0
    max_delay_s: float = 300.0
    timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the ``webhook_*`` settings describe."""
        return cls(max_attempts=settings.webhook_max_attempts, base_delay_s=settings.webhook_base_delay_s,
                   max_delay_s=settings.webhook_max_delay_s, timeout_s=settings.webhook_timeout_s)


# The settings' defaults; tests/monitoring/test_notify.py checks that the two agree.
DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Notification:
    id: int
    alert_id: int
    url: str
    event: str
    payload: dict[str, Any]
    state: NotificationState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class DeliveryAttempt:
    id: int
    notification_id: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class Delivery:
    """The outcome of one attempt made by ``deliver``: and the job that retries it, if any."""

    notification_id: int
    attempt: int
    delivered: bool
    status_code: int | None
    error: str | None
    state: NotificationState
    retry_job_id: int | None = None
    retry_at: datetime | None = None


def _to_notification(row: SqlNotification) -> Notification:
    return Notification(id=row.id, alert_id=row.alert_id, url=row.url, event=row.event, payload=dict(row.payload),
                        state=NotificationState(row.state), attempts=row.attempts,
                        next_attempt_at=row.next_attempt_at, last_error=row.last_error, created_at=row.created_at,
                        delivered_at=row.delivered_at)


def backoff_s(attempt: int, policy: RetryPolicy = DEFAULT_POLICY) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) (pure)."""
    return float(min(policy.max_delay_s, policy.base_delay_s * 2 ** max(0, attempt - 1)))


def alert_payload(alert: SqlAlert, rule: SqlAlertRule, event: str) -> dict[str, Any]:
    """The JSON body a webhook receives (pure)."""
    return {
        "event": event, "alert_id": alert.id, "rule": rule.name, "rule_id": rule.id, "metric": rule.metric,
        "condition": f"{rule.metric} {rule.comparator} {rule.threshold:g}", "window_s": rule.window_s,
        "severity": alert.severity, "deployment_id": alert.deployment_id, "value": alert.value,
        "threshold": alert.threshold, "message": alert.message, "started_at": alert.started_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def enqueue(s: Session, alert: SqlAlert, rule: SqlAlertRule, event: str) -> int:
    """Queue a message about ``alert`` to the rule's webhook, and the job that delivers it,
    in the caller's transaction.

    It is due at once (wall-clock time, whatever time the evaluation was asked for).

    Returns:
        The id of the delivery job.
    """
    assert rule.webhook_url, "only rules with a webhook enqueue"
    now = utcnow()
    row = SqlNotification(alert_id=alert.id, url=rule.webhook_url, event=event,
                          payload=alert_payload(alert, rule, event), state=NotificationState.PENDING.value,
                          attempts=0, next_attempt_at=now, created_at=now)
    s.add(row)
    s.flush()
    return _queue_delivery(s, row.id, None)


def _queue_delivery(s: Session, notification_id: int, at: datetime | None) -> int:
    return add_job(s, JOB_KIND, {"notification_id": notification_id}, actor=SENDER, not_before=at).id


def _delivery_queued(s: Session, notification_id: int) -> bool:
    """Whether a delivery job of this message waits in the queue (few ever do: a filter in Python
    keeps the JSON lookup dialect-free)."""
    params = s.scalars(sa.select(SqlJob.params).where(SqlJob.kind == JOB_KIND, SqlJob.state == JobState.QUEUED))
    return any(p.get("notification_id") == notification_id for p in params)


# --- delivering ------------------------------------------------------------------------


def _claim(db: Database, notification_id: int, now: datetime) -> SqlNotification | str:
    """Take the message if it is due: ours if our conditional update moved its lease.

    Returns:
        The claimed row, or why it was not sent now ("delivered", "failed", "not due").
    """
    with db.session() as s:
        # An UPDATE answers a CursorResult (its rowcount); Session.execute is typed as the generic Result.
        moved = cast(CursorResult[Any], s.execute(sa.update(SqlNotification).where(
            SqlNotification.id == notification_id, SqlNotification.state == NotificationState.PENDING,
            SqlNotification.next_attempt_at <= now).values(
            next_attempt_at=now + timedelta(seconds=CLAIM_LEASE_S))))
        row = s.get(SqlNotification, notification_id, populate_existing=True)
        if row is None:
            return "gone"
        if moved.rowcount != 1:
            if row.state == NotificationState.PENDING:
                # Claimed by a job whose worker was lost (the reaper re-ran this one), or not
                # due yet: make sure one job comes back for it when it is due.
                if not _delivery_queued(s, row.id):
                    _queue_delivery(s, row.id, row.next_attempt_at)
                return "not due"
            return str(row.state)
        s.expunge(row)
        return row


def message_body(payload: dict[str, Any]) -> bytes:
    """The bytes a message's body is: compact JSON, the bytes the signature covers (pure)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _post(client: OutboundClient, row: SqlNotification, secret: str) -> tuple[int | None, str | None, float]:
    start = time.perf_counter()
    body = message_body(row.payload)
    headers = {"Content-Type": "application/json", "X-Chainkeeper-Event": row.event,
               "X-Chainkeeper-Alert": str(row.alert_id), "X-Chainkeeper-Delivery": str(row.id),
               SIGNATURE_HEADER: signature_header(secret, body, int(time.time()))}
    try:
        answer = client.post(row.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__, (time.perf_counter() - start) * 1000
    duration = (time.perf_counter() - start) * 1000
    if 200 <= answer.status_code < 300:
        return answer.status_code, None, duration
    return answer.status_code, f"HTTP {answer.status_code}: {answer.text[:200]}", duration


def deliver(ctx: Context, notification_id: int, *, now: datetime | None = None) -> Delivery | str:
    """POST one message once if it is due, and record the attempt (blocking: a worker's work).

    A failed attempt with attempts left queues the next delivery job after its back-off.
    A URL whose address the outbound policy refuses is not sent: the attempt is recorded
    with the reason and the message is marked failed at once (the same settings would
    refuse it again).

    Args:
        now: the time that decides whether it is due (default: now).

    Returns:
        The attempt made, or why none was ("delivered", "failed", "not due", "gone").
    """
    policy = RetryPolicy.from_settings(ctx.settings)
    claimed = _claim(ctx.db, notification_id, now or utcnow())
    if isinstance(claimed, str):
        return claimed
    secret = rule_secret(signing_key(ctx.settings), *_rule_identity(ctx.db, claimed.alert_id))
    with OutboundClient(OutboundPolicy.from_settings(ctx.settings), timeout_s=policy.timeout_s,
                        max_bytes=MAX_ANSWER_BYTES, user_agent="chainkeeper-webhook/1") as client:
        try:
            status, error, duration = _post(client, claimed, secret)
        except OutboundRefused as exc:
            # The settings refuse this address: trying again would be refused again.
            return _record(ctx.db, claimed.id, None, f"refused: {exc}"[:500], 0.0, policy, final=True)
    return _record(ctx.db, claimed.id, status, error, duration, policy)


def _rule_identity(db: Database, alert_id: int) -> tuple[int, datetime]:
    """The id and creation time of the rule an alert belongs to (its webhook secret derives from them)."""
    with db.session(readonly=True) as s:
        rule = s.execute(sa.select(SqlAlertRule.id, SqlAlertRule.created_at)
                         .join(SqlAlert, SqlAlert.rule_id == SqlAlertRule.id).where(SqlAlert.id == alert_id)).one()
        return rule.id, rule.created_at


def _record(db: Database, notification_id: int, status: int | None, error: str | None, duration: float,
            policy: RetryPolicy, *, final: bool = False) -> Delivery:
    at = utcnow()
    retry_job = None
    with db.session() as s:
        row = s.get(SqlNotification, notification_id)
        assert row is not None
        row.attempts += 1
        s.add(SqlDeliveryAttempt(notification_id=row.id, at=at, status_code=status, error=error,
                                 duration_ms=round(duration, 3)))
        if error is None:
            row.state, row.delivered_at, row.last_error = NotificationState.DELIVERED.value, at, None
        else:
            row.last_error = error
            if final or row.attempts >= policy.max_attempts:
                row.state = NotificationState.FAILED.value
                _log.warning("webhook %s for alert %s failed %d times, giving up: %s", row.url, row.alert_id,
                             row.attempts, error)
            else:
                row.next_attempt_at = at + timedelta(seconds=backoff_s(row.attempts, policy))
                retry_job = _queue_delivery(s, row.id, row.next_attempt_at)
        return Delivery(notification_id=row.id, attempt=row.attempts, delivered=error is None, status_code=status,
                        error=error, state=NotificationState(row.state), retry_job_id=retry_job,
                        retry_at=row.next_attempt_at if retry_job is not None else None)


def run_delivery_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """The ``webhook.deliver`` handler: one attempt at one message.

    A failed attempt fails the job, with the reason and the job that tries next (if any),
    so ``chainkeeper jobs list`` shows each attempt; the message's own record is in
    ``list_attempts``.

    Returns:
        ``{"notification_id", "attempt", "status_code"}``, or ``{"notification_id", "skipped"}``
        when there was nothing to send (delivered already, given up, claimed by another job).

    Raises:
        ServiceUnavailable: the receiver failed this attempt.
    """
    notification_id = int(job.params["notification_id"])
    outcome = deliver(ctx, notification_id)
    if isinstance(outcome, str):
        job.log(f"message {notification_id}: nothing sent ({outcome})")
        return {"notification_id": notification_id, "skipped": outcome}
    if outcome.delivered:
        return {"notification_id": notification_id, "attempt": outcome.attempt, "status_code": outcome.status_code}
    then = (f"job {outcome.retry_job_id} tries again at {outcome.retry_at:%H:%M:%S} UTC"
            if outcome.retry_at is not None else "given up")
    raise ServiceUnavailable(f"Webhook attempt {outcome.attempt} for message {notification_id} failed: "
                             f"{outcome.error}; {then}.")


# --- reading ---------------------------------------------------------------------------


def list_notifications(db: Database, *, alert_id: int | None = None, state: str | None = None,
                       limit: int = 100) -> list[Notification]:
    """Webhook messages, newest first."""
    query = sa.select(SqlNotification).order_by(SqlNotification.id.desc()).limit(limit)
    if alert_id is not None:
        query = query.where(SqlNotification.alert_id == alert_id)
    if state is not None:
        query = query.where(SqlNotification.state == state)
    with db.session(readonly=True) as s:
        return [_to_notification(r) for r in s.scalars(query)]


def list_attempts(db: Database, notification_id: int) -> list[DeliveryAttempt]:
    """Every attempt of one message, oldest first."""
    with db.session(readonly=True) as s:
        rows = s.scalars(sa.select(SqlDeliveryAttempt).where(SqlDeliveryAttempt.notification_id == notification_id)
                         .order_by(SqlDeliveryAttempt.id))
        return [DeliveryAttempt(r.id, r.notification_id, r.at, r.status_code, r.error, r.duration_ms) for r in rows]
