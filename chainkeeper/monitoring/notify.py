"""Webhook notifications: queued in the store, delivered by a background sender with back-off.

``enqueue`` writes a pending message inside the caller's transaction (the alert and its
message commit together or not at all). Delivery never runs on the caller's path:
``wake`` nudges one daemon thread per store, which POSTs every due message as JSON and
records each attempt (status code or network error, duration). A failed attempt is
retried after ``base_delay_s * 2**(attempt-1)`` seconds, capped at ``max_delay_s``; after
``max_attempts`` the message is marked failed, and stays in the store for the UI. The
policy comes from the settings (``CHAINKEEPER_WEBHOOK_MAX_ATTEMPTS``, ``…_BASE_DELAY_S``,
``…_MAX_DELAY_S``, ``…_TIMEOUT_S``) of the process that delivers (``ctx.settings``).

Two senders (the API process and a worker running the evaluate job) never post the same
attempt twice: each claims a message by moving its ``next_attempt_at`` forward with a
conditional UPDATE, and only the one whose update matched sends. A sender that dies with
a claim lets it lapse after ``CLAIM_LEASE_S``; the message is then sent again.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
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
    "backoff_s",
    "deliver_due",
    "enqueue",
    "list_attempts",
    "list_notifications",
    "set_retry_policy",
    "wait_until_idle",
    "wake",
]

_log = logging.getLogger(__name__)

# A claimed message is someone's for this long; longer than any timeout below.
CLAIM_LEASE_S = 120.0
# An idle sender thread exits after this long without work (a wake starts a new one).
IDLE_EXIT_S = 2.0


class NotificationState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the sender tries: attempts, back-off and the timeout of one POST."""

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
    """The outcome of one attempt made by ``deliver_due``."""

    notification_id: int
    attempt: int
    delivered: bool
    status_code: int | None
    error: str | None
    state: NotificationState


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


def enqueue(s: Session, alert: SqlAlert, rule: SqlAlertRule, event: str) -> None:
    """Queue a message about ``alert`` to the rule's webhook, in the caller's transaction.

    It is due at once (wall-clock time, whatever time the evaluation was asked for).
    """
    assert rule.webhook_url, "only rules with a webhook enqueue"
    now = utcnow()
    s.add(SqlNotification(alert_id=alert.id, url=rule.webhook_url, event=event,
                          payload=alert_payload(alert, rule, event), state=NotificationState.PENDING.value,
                          attempts=0, next_attempt_at=now, created_at=now))


# --- delivering ------------------------------------------------------------------------


def _claim(db: Database, now: datetime, limit: int) -> list[SqlNotification]:
    """Take the due messages: each is ours if our conditional update moved its lease."""
    with db.session(readonly=True) as s:
        due = list(s.execute(sa.select(SqlNotification.id, SqlNotification.next_attempt_at).where(
            SqlNotification.state == NotificationState.PENDING, SqlNotification.next_attempt_at <= now)
            .order_by(SqlNotification.next_attempt_at, SqlNotification.id).limit(limit)))
    claimed = []
    for notification_id, seen in due:
        with db.session() as s:
            # An UPDATE answers a CursorResult (its rowcount); Session.execute is typed as the generic Result.
            moved = cast(CursorResult[Any], s.execute(sa.update(SqlNotification).where(
                SqlNotification.id == notification_id, SqlNotification.state == NotificationState.PENDING,
                SqlNotification.next_attempt_at == seen).values(
                next_attempt_at=now + timedelta(seconds=CLAIM_LEASE_S))))
            if moved.rowcount == 1:
                row = s.get(SqlNotification, notification_id)
                assert row is not None
                s.expunge(row)
                claimed.append(row)
    return claimed


def _post(client: httpx.Client, row: SqlNotification, timeout_s: float) -> tuple[int | None, str | None, float]:
    start = time.perf_counter()
    try:
        answer = client.post(row.url, json=row.payload, timeout=timeout_s,
                             headers={"X-Chainkeeper-Event": row.event, "X-Chainkeeper-Alert": str(row.alert_id)})
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__, (time.perf_counter() - start) * 1000
    duration = (time.perf_counter() - start) * 1000
    if 200 <= answer.status_code < 300:
        return answer.status_code, None, duration
    return answer.status_code, f"HTTP {answer.status_code}: {answer.text[:200]}", duration


def deliver_due(ctx: Context, *, policy: RetryPolicy | None = None, now: datetime | None = None,
                limit: int = 50) -> list[Delivery]:
    """POST every due message once and record the attempt (blocking: the sender's work).

    Args:
        policy: retries and timeout; default the one set for this store (``set_retry_policy``),
            else the one of ``ctx.settings``.
        now: the time that decides what is due (default: now).
        limit: at most this many messages.

    Returns:
        One ``Delivery`` per attempt made.
    """
    policy = policy or _policy_of(ctx)
    now = now or utcnow()
    claimed = _claim(ctx.db, now, limit)
    out: list[Delivery] = []
    if not claimed:
        return out
    with httpx.Client(follow_redirects=False) as client:
        for row in claimed:
            status, error, duration = _post(client, row, policy.timeout_s)
            out.append(_record(ctx.db, row.id, status, error, duration, policy))
    return out


def _record(db: Database, notification_id: int, status: int | None, error: str | None, duration: float,
            policy: RetryPolicy) -> Delivery:
    at = utcnow()
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
            if row.attempts >= policy.max_attempts:
                row.state = NotificationState.FAILED.value
                _log.warning("webhook %s for alert %s failed %d times, giving up: %s", row.url, row.alert_id,
                             row.attempts, error)
            else:
                row.next_attempt_at = at + timedelta(seconds=backoff_s(row.attempts, policy))
        return Delivery(notification_id=row.id, attempt=row.attempts, delivered=error is None, status_code=status,
                        error=error, state=NotificationState(row.state))


def _next_due(db: Database) -> datetime | None:
    with db.session(readonly=True) as s:
        return s.scalar(sa.select(sa.func.min(SqlNotification.next_attempt_at)).where(
            SqlNotification.state == NotificationState.PENDING))


# --- the background sender -------------------------------------------------------------


class _Sender:
    """One daemon thread per store that delivers due messages, sleeping until the next is due."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.event = threading.Event()
        self.thread: threading.Thread | None = None
        self.busy = False

    def run(self) -> None:
        idle_since = time.monotonic()
        while True:
            self.busy = True
            try:
                done = deliver_due(self.ctx)
                next_due = _next_due(self.ctx.db)
            except Exception:  # noqa: BLE001 - a store blip must not kill the thread with a traceback
                _log.exception("the webhook sender stopped after an error; the next alert wakes it again")
                with _lock:
                    self.thread = None
                return
            finally:
                self.busy = False
            if done:
                idle_since = time.monotonic()
            wait = IDLE_EXIT_S if next_due is None else max(0.0, (next_due - utcnow()).total_seconds())
            if self.event.wait(min(wait, IDLE_EXIT_S)):
                self.event.clear()
                idle_since = time.monotonic()
                continue
            with _lock:
                if next_due is None and time.monotonic() - idle_since >= IDLE_EXIT_S and not self.event.is_set():
                    self.thread = None
                    return


_lock = threading.Lock()
_senders: dict[str, _Sender] = {}
_policies: dict[str, RetryPolicy] = {}


def _policy_of(ctx: Context) -> RetryPolicy:
    return _policies.get(ctx.db.url) or RetryPolicy.from_settings(ctx.settings)


def set_retry_policy(ctx: Context, policy: RetryPolicy) -> None:
    """Use ``policy`` for this store's messages in this process instead of the settings' (tests)."""
    _policies[ctx.db.url] = policy


def wake(ctx: Context) -> None:
    """Make sure this store's sender runs and looks for due messages now; returns at once."""
    with _lock:
        sender = _senders.get(ctx.db.url)
        if sender is None or sender.ctx is not ctx:
            sender = _senders[ctx.db.url] = _Sender(ctx)
        sender.event.set()
        if sender.thread is None or not sender.thread.is_alive():
            sender.event.clear()
            sender.thread = threading.Thread(target=sender.run, name="chainkeeper-webhooks", daemon=True)
            sender.thread.start()


def wait_until_idle(ctx: Context, timeout: float = 10.0) -> bool:
    """Wait until nothing is due now and the sender is not sending (tests, shutdown).

    Returns:
        True when idle before the timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sender = _senders.get(ctx.db.url)
        next_due = _next_due(ctx.db)
        if (sender is None or not sender.busy) and (next_due is None or next_due > utcnow()):
            return True
        time.sleep(0.05)
    return False


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
