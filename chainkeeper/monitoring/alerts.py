"""Alert rules and alerts: evaluation, de-duplication, resolution and silences.

A rule watches one signal (``monitoring.signals``: a metric or a check) for one
deployment or all of them: ``value comparator threshold`` over the last ``window_s``
seconds, with a severity and an optional webhook. ``evaluate_rules`` reads every enabled
rule's signal and moves its alerts:

    (no alert) ──breach──▶ firing ──condition clears──▶ resolved
                              │  ▲
                              └──┘ breach again: the same alert, value refreshed

There is at most one open alert per rule and deployment (a unique key on the store, not
only a check in code), so a rule breached on every evaluation pages once. A firing alert
that no silence covers queues a webhook message (``monitoring.notify``, delivered off the
caller's path by a ``webhook.deliver`` job) and opens a maintenance ticket (``monitoring.tickets``) in the same
transaction; one that fires under a silence is recorded and shown, and notifies once the
silence ends if it still fires. A window without data changes nothing.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.core.outbound import OutboundPolicy, refuse_if_blocked
from chainkeeper.core.scheduler import Schedule, create_schedule
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry, auditor
from chainkeeper.governance.permissions import authorize, projects_allowed
from chainkeeper.monitoring import notify, tickets
from chainkeeper.monitoring.access import (
    authorize_for_deployment,
    authorize_for_object,
    readable_deployment_ids,
)
from chainkeeper.monitoring.signals import Signal, known_signals, read_signal
from chainkeeper.monitoring.signing import rule_secret, signing_key
from chainkeeper.monitoring.tables import SqlAlert, SqlAlertRule, SqlSilence
from chainkeeper.serving import (
    DeploymentState,
    get_deployment_by_name,
    list_deployments,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.core.jobs import JobHandle

__all__ = [
    "COMPARATORS",
    "Alert",
    "AlertRule",
    "AlertState",
    "Evaluation",
    "Severity",
    "Silence",
    "breached",
    "create_rule",
    "create_silence",
    "end_silence",
    "evaluate_rules",
    "get_alert",
    "get_rule",
    "list_alerts",
    "list_rules",
    "list_silences",
    "resolve_alert",
    "run_evaluate_job",
    "set_rule_enabled",
    "webhook_secret",
]

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
MAX_WINDOW_S = 30 * 24 * 3600
MAX_SILENCE_S = 30 * 24 * 3600
EVALUATE_JOB = "alerts.evaluate"
# The system evaluates rules and opens tickets on its own behalf.
ALERTING = Actor("alerting", frozenset({"system"}))


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertRule:
    id: int
    name: str
    metric: str
    comparator: str
    threshold: float
    window_s: int
    severity: Severity
    deployment_id: int | None
    webhook_url: str | None
    enabled: bool
    created_by: str
    created_at: datetime

    @property
    def condition(self) -> str:
        """How people read it: ``mean_confidence < 0.5 over 300 s``."""
        return f"{self.metric} {self.comparator} {self.threshold:g} over {self.window_s} s"


@dataclass(frozen=True)
class Alert:
    id: int
    rule_id: int
    deployment_id: int
    state: AlertState
    severity: Severity
    value: float
    threshold: float
    message: str
    started_at: datetime
    last_seen_at: datetime
    notified_at: datetime | None
    resolved_at: datetime | None

    @property
    def open(self) -> bool:
        return self.state == AlertState.FIRING


@dataclass(frozen=True)
class Silence:
    id: int
    rule_id: int | None
    deployment_id: int | None
    reason: str
    starts_at: datetime
    ends_at: datetime
    created_by: str

    def covers(self, rule_id: int, deployment_id: int, when: datetime) -> bool:
        """Whether this silence mutes ``rule_id`` on ``deployment_id`` at ``when`` (pure)."""
        return (self.starts_at <= when < self.ends_at and self.rule_id in (None, rule_id)
                and self.deployment_id in (None, deployment_id))


@dataclass
class Evaluation:
    """What one evaluation did: alerts fired, still firing, resolved; tickets opened."""

    at: datetime
    rules: int
    fired: list[int] = field(default_factory=list)
    still_firing: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    silenced: list[int] = field(default_factory=list)
    notified: list[int] = field(default_factory=list)
    tickets: list[int] = field(default_factory=list)
    no_data: int = 0


def _to_rule(row: SqlAlertRule) -> AlertRule:
    return AlertRule(id=row.id, name=row.name, metric=row.metric, comparator=row.comparator, threshold=row.threshold,
                     window_s=row.window_s, severity=Severity(row.severity), deployment_id=row.deployment_id,
                     webhook_url=row.webhook_url, enabled=row.enabled, created_by=row.created_by,
                     created_at=row.created_at)


def _to_alert(row: SqlAlert) -> Alert:
    return Alert(id=row.id, rule_id=row.rule_id, deployment_id=row.deployment_id, state=AlertState(row.state),
                 severity=Severity(row.severity), value=row.value, threshold=row.threshold, message=row.message,
                 started_at=row.started_at, last_seen_at=row.last_seen_at, notified_at=row.notified_at,
                 resolved_at=row.resolved_at)


def _to_silence(row: SqlSilence) -> Silence:
    return Silence(id=row.id, rule_id=row.rule_id, deployment_id=row.deployment_id, reason=row.reason,
                   starts_at=row.starts_at, ends_at=row.ends_at, created_by=row.created_by)


def breached(value: float, comparator: str, threshold: float) -> bool:
    """Whether ``value comparator threshold`` holds (pure).

    Raises:
        InvalidInput: an unknown comparator.
    """
    try:
        return COMPARATORS[comparator](value, threshold)
    except KeyError:
        raise InvalidInput(f"Unknown comparator {comparator!r}.",
                           hint=f"Use one of {', '.join(COMPARATORS)}.") from None


# --- rules -----------------------------------------------------------------------------


def check_webhook_url(url: str) -> str:
    """Return ``url`` if a webhook can be sent to it.

    Raises:
        InvalidInput: not an http(s) URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"Webhook URL {url!r} is not an http(s) URL with a host.",
                           hint="Use e.g. https://hooks.example.com/chainkeeper.")
    return url


def _deployment_id(db: Database, name: str | None) -> int | None:
    return get_deployment_by_name(db, name).id if name is not None else None


def create_rule(ctx: Context, *, name: str, metric: str, comparator: str, threshold: float, window_s: int,
                severity: str = Severity.WARNING, deployment: str | None = None, webhook_url: str | None = None,
                actor: Actor) -> AlertRule:
    """Store a rule: alert when ``metric comparator threshold`` over the last ``window_s`` seconds.

    Args:
        name: a unique name for people (1-128 characters).
        metric: a signal name from ``known_signals()`` (a metric or a check).
        comparator: one of ``COMPARATORS``.
        threshold: the value compared with.
        window_s: how far back the signal is read, 1 s to 30 days.
        severity: info, warning or critical.
        deployment: the deployment it watches; None watches every deployment.
        webhook_url: where firing and resolution are posted (http or https), signed with
            the rule's secret (``webhook_secret``); an address the outbound policy refuses
            (private, loopback, link-local unless ``outbound_allow`` names it) is refused here.
        actor: who creates it (``alert.manage`` in the deployment's project; a rule of every
            deployment needs it everywhere).

    Returns:
        The stored rule, enabled.

    Raises:
        Forbidden: the actor may not manage alerts there.
        InvalidInput: an unknown metric (the message lists the known ones), comparator or
            severity; a window out of range; a bad webhook URL. Nothing is stored.
        OutboundRefused: the webhook URL's address is refused by the outbound policy.
        NotFound: no such deployment. Conflict: a rule of that name exists.
    """
    authorize_for_deployment(ctx.db, actor, "alert.manage", deployment)
    name = (name or "").strip()
    if not 1 <= len(name) <= 128:
        raise InvalidInput("A rule needs a name of 1-128 characters.", hint="e.g. --name support-drift.")
    signals = known_signals()
    if metric not in signals:
        raise InvalidInput(f"There is no metric or check named {metric!r}.",
                           hint=f"Known metrics and checks: {', '.join(sorted(signals))}.")
    breached(0.0, comparator, 0.0)  # validates the comparator
    try:
        level = Severity(severity)
    except ValueError:
        raise InvalidInput(f"Unknown severity {severity!r}.",
                           hint=f"Use one of {', '.join(s.value for s in Severity)}.") from None
    if isinstance(window_s, bool) or not isinstance(window_s, int) or not 1 <= window_s <= MAX_WINDOW_S:
        raise InvalidInput(f"A window must be a whole number of seconds from 1 to {MAX_WINDOW_S}, got {window_s!r}.",
                           hint="e.g. 300 for the last five minutes.")
    if webhook_url is not None:
        check_webhook_url(webhook_url)
        refuse_if_blocked(webhook_url, OutboundPolicy.from_settings(ctx.settings))
    deployment_id = _deployment_id(ctx.db, deployment)
    with ctx.db.session() as s:
        if s.scalar(sa.select(SqlAlertRule.id).where(SqlAlertRule.name == name)) is not None:
            raise Conflict(f"An alert rule named {name!r} exists already.", hint="Pick another name.")
        row = SqlAlertRule(name=name, metric=metric, comparator=comparator, threshold=float(threshold),
                           window_s=window_s, severity=level.value, deployment_id=deployment_id,
                           webhook_url=webhook_url, enabled=True, created_by=actor.name, created_at=utcnow())
        s.add(row)
        s.flush()
        rule = _to_rule(row)
        # The URL may carry a secret path: the ledger keeps only whether there is one.
        append_entry(s, actor, "alert.rule.create", "alert_rule", row.id,
                     after={"name": name, "condition": rule.condition, "severity": level.value,
                            "deployment_id": deployment_id, "webhook": webhook_url is not None})
        return rule


def set_rule_enabled(ctx: Context, rule_id: int, *, enabled: bool, actor: Actor) -> AlertRule:
    """Turn a rule on or off; turning it off resolves its open alerts.

    Raises:
        Forbidden: may not manage alerts in the rule's deployment's project. NotFound: no such rule.
    """
    authorize_for_object(ctx.db, actor, "alert.manage", lambda: get_rule(ctx.db, rule_id).deployment_id)
    now = utcnow()
    with ctx.db.session() as s:
        row = _rule_row(s, rule_id)
        if row.enabled == enabled:
            return _to_rule(row)
        row.enabled = enabled
        append_entry(s, actor, "alert.rule.enable" if enabled else "alert.rule.disable", "alert_rule", row.id,
                     before={"enabled": not enabled}, after={"enabled": enabled})
        if not enabled:
            for alert in s.scalars(sa.select(SqlAlert).where(SqlAlert.rule_id == rule_id,
                                                            SqlAlert.state == AlertState.FIRING)):
                _resolve(s, alert, row, now, actor, f"rule {row.name} was disabled")
        return _to_rule(row)


def webhook_secret(ctx: Context, rule_id: int, *, actor: Actor) -> str:
    """The secret a rule's webhook messages are signed with, for its receiver (see
    ``monitoring.signing``); reading it is written to the ledger.

    Args:
        rule_id: the rule.
        actor: who asks (``alert.manage`` in the rule's deployment's project).

    Returns:
        The secret (64 hex characters), derived from the signing key held outside the
        database, so only a host with that key can answer.

    Raises:
        Forbidden: may not manage alerts there. NotFound: no such rule.
        Conflict: the rule has no webhook. ConfigError: the signing key cannot be read.
    """
    authorize_for_object(ctx.db, actor, "alert.manage", lambda: get_rule(ctx.db, rule_id).deployment_id)
    key = signing_key(ctx.settings)
    with ctx.db.session() as s:
        row = _rule_row(s, rule_id)
        if not row.webhook_url:
            raise Conflict(f"Alert rule {rule_id} ({row.name}) has no webhook, so nothing is signed.",
                           hint="Create a rule with --webhook to have messages posted and signed.")
        append_entry(s, actor, "alert.rule.webhook_secret", "alert_rule", row.id)
        return rule_secret(key, row.id, row.created_at)


def _rule_row(s: Session, rule_id: int) -> SqlAlertRule:
    row = s.get(SqlAlertRule, rule_id)
    if row is None:
        raise NotFound(f"There is no alert rule {rule_id}.", hint="List them with 'chainkeeper monitor alerts rules'.")
    return row


def get_rule(db: Database, rule_id: int) -> AlertRule:
    """Raises NotFound when there is no such rule."""
    with db.session(readonly=True) as s:
        return _to_rule(_rule_row(s, rule_id))


def list_rules(db: Database) -> list[AlertRule]:
    """Every rule, oldest first."""
    with db.session(readonly=True) as s:
        return [_to_rule(r) for r in s.scalars(sa.select(SqlAlertRule).order_by(SqlAlertRule.id))]


def find_signals(ctx: Context, *, actor: Actor) -> list[Signal]:
    """Every metric and check a rule may watch, by name, for a reader of monitoring anywhere.

    Raises:
        Forbidden: the actor may read monitoring nowhere.
    """
    projects_allowed(ctx.db, actor, "monitoring.read")
    return sorted(known_signals().values(), key=lambda signal: signal.name)


def find_rules(ctx: Context, *, actor: Actor) -> list[AlertRule]:
    """The rules the actor may read (``monitoring.read``), oldest first; a rule of every
    deployment only for a reader of every project.

    Raises:
        Forbidden: the actor may read monitoring nowhere.
    """
    readable = readable_deployment_ids(ctx.db, actor)
    return [r for r in list_rules(ctx.db) if readable is None or r.deployment_id in readable]


# --- evaluation ------------------------------------------------------------------------


def _targets(db: Database, rule: SqlAlertRule) -> list[int]:
    """The deployments a rule watches now."""
    if rule.deployment_id is not None:
        return [rule.deployment_id]
    return sorted(d.id for d in list_deployments(db, limit=100_000) if d.state == DeploymentState.ACTIVE)


def _open_key(rule_id: int, deployment_id: int) -> str:
    return f"{rule_id}:{deployment_id}"


def evaluate_rules(ctx: Context, *, now: datetime | None = None, rule_ids: list[int] | None = None) -> Evaluation:
    """Read every enabled rule's signal and fire, refresh or resolve its alerts.

    A new alert that no silence covers queues its webhook message (with the job that
    delivers it) and opens a ticket in the same transaction; a worker delivers it, so this
    returns as soon as the store is written, however slow the webhook is.

    Args:
        now: the evaluation time (default: now).
        rule_ids: only these rules.

    Returns:
        What changed, by alert id; every change is recorded as the alerting system's.
    """
    actor = ALERTING
    now = now or utcnow()
    with ctx.db.session(readonly=True) as s:
        query = sa.select(SqlAlertRule).where(SqlAlertRule.enabled.is_(True)).order_by(SqlAlertRule.id)
        if rule_ids is not None:
            query = query.where(SqlAlertRule.id.in_(rule_ids))
        found = list(s.scalars(query))
        rules = [(_to_rule(r), _targets(ctx.db, r)) for r in found]
    silences = list_silences(ctx.db, active_at=now)
    result = Evaluation(at=now, rules=len(rules))
    for rule, deployment_ids in rules:
        since = now - timedelta(seconds=rule.window_s)
        for deployment_id in deployment_ids:
            # Read outside the write transaction: a slow signal never holds the store's lock.
            value = read_signal(ctx, rule.metric, deployment_id, since, now)
            if value is None:
                result.no_data += 1
                continue
            firing = breached(value, rule.comparator, rule.threshold)
            muted = any(x.covers(rule.id, deployment_id, now) for x in silences)
            with ctx.db.session() as s:
                row = s.get(SqlAlertRule, rule.id)
                assert row is not None  # rules are never deleted
                alert = s.scalars(sa.select(SqlAlert).where(
                    SqlAlert.open_key == _open_key(rule.id, deployment_id))).one_or_none()
                if firing and alert is None:
                    alert = _fire(s, row, deployment_id, value, now, actor)
                    result.fired.append(alert.id)
                elif firing and alert is not None:
                    alert.value, alert.last_seen_at = value, now
                    result.still_firing.append(alert.id)
                elif alert is not None:
                    _resolve(s, alert, row, now, actor, f"{rule.metric} = {value:.4g}, no longer "
                             f"{rule.comparator} {rule.threshold:g}", value=value)
                    result.resolved.append(alert.id)
                    continue
                else:
                    continue
                if muted:
                    result.silenced.append(alert.id)
                elif alert.notified_at is None:
                    alert.notified_at = now
                    if row.webhook_url:
                        notify.enqueue(s, alert, row, "firing")
                        result.notified.append(alert.id)
                    result.tickets.append(tickets.open_ticket_for_alert(s, alert, row, now=now, actor=actor))
    return result


def evaluate_rules_now(ctx: Context, *, actor: Actor) -> Evaluation:
    """``evaluate_rules`` at a person's request (the periodic job does the same).

    Evaluating reads every deployment's signals and may open tickets in every project,
    so it needs ``alert.manage`` everywhere.

    Raises:
        Forbidden: the actor may not manage alerts in every project.
    """
    authorize(ctx.db, actor, "alert.manage")
    return evaluate_rules(ctx)


def schedule_rule_evaluation(ctx: Context, every_s: float, *, actor: Actor) -> Schedule:
    """Evaluate every rule every ``every_s`` seconds: a schedule (``alerts:evaluate``) from
    which the scheduler queues one short ``alerts.evaluate`` job per period (a worker runs
    it; the first is due now). Needs ``alert.manage`` everywhere, as ``evaluate_rules_now``.

    Raises:
        Forbidden: the actor may not manage alerts in every project.
        InvalidInput: a period under a second. Conflict: the rules are scheduled already.
    """
    authorize(ctx.db, actor, "alert.manage")
    if every_s <= 0:
        raise InvalidInput(f"--every-s must be positive, got {every_s:g}.", hint="e.g. --every-s 60.")
    return create_schedule(ctx, "alerts:evaluate", EVALUATE_JOB, {}, every_s=every_s, actor=actor.name,
                           audit=auditor(actor, "alert.schedule", "schedule"))


def _fire(s: Session, rule: SqlAlertRule, deployment_id: int, value: float, now: datetime,
          actor: Actor) -> SqlAlert:
    message = (f"{rule.name}: {rule.metric} = {value:.4g} {rule.comparator} {rule.threshold:g} "
               f"over the last {rule.window_s} s")
    alert = SqlAlert(rule_id=rule.id, deployment_id=deployment_id, open_key=_open_key(rule.id, deployment_id),
                     state=AlertState.FIRING.value, severity=rule.severity, value=value, threshold=rule.threshold,
                     message=message, started_at=now, last_seen_at=now)
    s.add(alert)
    s.flush()
    append_entry(s, actor, "alert.fire", "alert", alert.id,
                 after={"rule_id": rule.id, "deployment_id": deployment_id, "value": value, "state": "firing"},
                 details={"rule": rule.name, "metric": rule.metric, "severity": rule.severity})
    return alert


def _resolve(s: Session, alert: SqlAlert, rule: SqlAlertRule, now: datetime, actor: Actor, why: str, *,
             value: float | None = None) -> None:
    alert.state, alert.open_key, alert.resolved_at = AlertState.RESOLVED.value, None, now
    if value is not None:
        alert.value = value
    s.flush()
    append_entry(s, actor, "alert.resolve", "alert", alert.id, before={"state": "firing"},
                 after={"state": "resolved", "value": alert.value}, details={"rule": rule.name, "why": why})
    if rule.webhook_url and alert.notified_at is not None:  # only those told it fired hear it ended
        notify.enqueue(s, alert, rule, "resolved")


def resolve_alert(ctx: Context, alert_id: int, *, actor: Actor, comment: str) -> Alert:
    """Resolve a firing alert by hand (e.g. the cause was fixed before the window cleared).

    Raises:
        Forbidden: may not manage alerts in the alert's deployment's project. InvalidInput: no comment.
        NotFound: no such alert. Conflict: already resolved.
    """
    authorize_for_object(ctx.db, actor, "alert.manage", lambda: get_alert(ctx.db, alert_id).deployment_id)
    if not comment.strip():
        raise InvalidInput("Resolving an alert by hand needs a comment.", hint="Say why, e.g. 'cache fixed'.")
    with ctx.db.session() as s:
        alert = _alert_row(s, alert_id)
        if alert.state != AlertState.FIRING:
            raise Conflict(f"Alert {alert_id} is already {alert.state}.")
        rule = _rule_row(s, alert.rule_id)
        _resolve(s, alert, rule, utcnow(), actor, comment)
        return _to_alert(alert)


# --- reading alerts --------------------------------------------------------------------


def _alert_row(s: Session, alert_id: int) -> SqlAlert:
    row = s.get(SqlAlert, alert_id)
    if row is None:
        raise NotFound(f"There is no alert {alert_id}.", hint="List them with 'chainkeeper monitor alerts list'.")
    return row


def get_alert(db: Database, alert_id: int) -> Alert:
    """Raises NotFound when there is no such alert."""
    with db.session(readonly=True) as s:
        return _to_alert(_alert_row(s, alert_id))


def list_alerts(db: Database, *, state: str | None = None, deployment_id: int | None = None,
                limit: int = 100) -> list[Alert]:
    """Alerts, newest first.

    Raises:
        InvalidInput: an unknown state.
    """
    query = sa.select(SqlAlert).order_by(SqlAlert.id.desc()).limit(limit)
    if state is not None:
        try:
            query = query.where(SqlAlert.state == AlertState(state).value)
        except ValueError:
            raise InvalidInput(f"Unknown alert state {state!r}.",
                               hint=f"Use one of {', '.join(s.value for s in AlertState)}.") from None
    if deployment_id is not None:
        query = query.where(SqlAlert.deployment_id == deployment_id)
    with db.session(readonly=True) as s:
        return [_to_alert(r) for r in s.scalars(query)]


def find_alerts(ctx: Context, *, actor: Actor, state: str | None = None, limit: int = 100) -> list[Alert]:
    """The alerts the actor may read (``monitoring.read`` in their deployment's project), newest first.

    Raises:
        Forbidden: the actor may read monitoring nowhere. InvalidInput: an unknown state.
    """
    readable = readable_deployment_ids(ctx.db, actor)
    if readable is None:
        return list_alerts(ctx.db, state=state, limit=limit)
    found: list[Alert] = []
    for deployment_id in sorted(readable):
        found += list_alerts(ctx.db, state=state, deployment_id=deployment_id, limit=limit)
    return sorted(found, key=lambda a: a.id, reverse=True)[:limit]


@dataclass(frozen=True)
class AlertDetail:
    """One alert with its webhook messages and each message's delivery attempts."""

    alert: Alert
    notifications: list[tuple[notify.Notification, list[notify.DeliveryAttempt]]]


def show_alert(ctx: Context, alert_id: int, *, actor: Actor) -> AlertDetail:
    """One alert with its webhook messages, for a reader (``monitoring.read`` in its deployment's project).

    Raises:
        Forbidden: the actor may not read it. NotFound: no such alert.
    """
    authorize_for_object(ctx.db, actor, "monitoring.read", lambda: get_alert(ctx.db, alert_id).deployment_id)
    return AlertDetail(get_alert(ctx.db, alert_id),
                       [(n, notify.list_attempts(ctx.db, n.id))
                        for n in notify.list_notifications(ctx.db, alert_id=alert_id)])


# --- silences --------------------------------------------------------------------------


def create_silence(ctx: Context, *, duration_s: int, reason: str, actor: Actor, rule_id: int | None = None,
                   deployment: str | None = None) -> Silence:
    """Mute notifications and tickets of one rule, one deployment, or both, for a while.

    Alerts still fire and are shown while muted; one still firing when the silence ends
    notifies then.

    Args:
        duration_s: how long, 1 s to 30 days; the silence expires by itself.
        reason: why (kept in the ledger).
        rule_id: only this rule (None: every rule).
        deployment: only this deployment (None: every deployment).

    A silence of a deployment, or of a rule that watches one, is ``alert.manage`` in that
    deployment's project; one of every deployment needs it everywhere.

    Raises:
        Forbidden: may not manage alerts there. InvalidInput: no reason, a bad duration.
        NotFound: no such rule or deployment.
    """
    authorize_for_object(ctx.db, actor, "alert.manage", lambda: (
        deployment if deployment is not None else get_rule(ctx.db, rule_id).deployment_id if rule_id is not None
        else None))
    if not reason.strip():
        raise InvalidInput("A silence needs a reason.", hint="e.g. --reason 'planned load test until 18:00'.")
    if isinstance(duration_s, bool) or not isinstance(duration_s, int) or not 1 <= duration_s <= MAX_SILENCE_S:
        raise InvalidInput(f"A silence lasts 1 s to {MAX_SILENCE_S} s (30 days), got {duration_s!r}.",
                           hint="e.g. --minutes 60.")
    deployment_id = _deployment_id(ctx.db, deployment)
    now = utcnow()
    with ctx.db.session() as s:
        if rule_id is not None:
            _rule_row(s, rule_id)
        row = SqlSilence(rule_id=rule_id, deployment_id=deployment_id, reason=reason.strip(), starts_at=now,
                         ends_at=now + timedelta(seconds=duration_s), created_by=actor.name)
        s.add(row)
        s.flush()
        append_entry(s, actor, "alert.silence", "alert_silence", row.id,
                     after={"rule_id": rule_id, "deployment_id": deployment_id, "ends_at": row.ends_at},
                     details={"reason": row.reason, "duration_s": duration_s})
        return _to_silence(row)


def end_silence(ctx: Context, silence_id: int, *, actor: Actor) -> Silence:
    """End a silence now.

    Raises:
        Forbidden: may not manage alerts in the silence's deployment's project.
        NotFound: no such silence. Conflict: already over.
    """
    authorize_for_object(ctx.db, actor, "alert.manage", lambda: _silence(ctx.db, silence_id).deployment_id)
    now = utcnow()
    with ctx.db.session() as s:
        row = s.get(SqlSilence, silence_id)
        if row is None:
            raise NotFound(f"There is no silence {silence_id}.", hint="List them with "
                           "'chainkeeper monitor alerts silences'.")
        if row.ends_at <= now:
            raise Conflict(f"Silence {silence_id} ended at {row.ends_at:%Y-%m-%d %H:%M:%S} UTC already.")
        before = {"ends_at": row.ends_at}
        row.ends_at = now
        append_entry(s, actor, "alert.unsilence", "alert_silence", row.id, before=before, after={"ends_at": now})
        return _to_silence(row)


def _silence(db: Database, silence_id: int) -> Silence:
    with db.session(readonly=True) as s:
        row = s.get(SqlSilence, silence_id)
        if row is None:
            raise NotFound(f"There is no silence {silence_id}.", hint="List them with "
                           "'chainkeeper monitor alerts silences'.")
        return _to_silence(row)


def find_silences(ctx: Context, *, actor: Actor, active_at: datetime | None = None,
                  limit: int = 100) -> list[Silence]:
    """The silences the actor may read, newest first; a silence of every deployment only for
    a reader of every project.

    Raises:
        Forbidden: the actor may read monitoring nowhere.
    """
    readable = readable_deployment_ids(ctx.db, actor)
    found = list_silences(ctx.db, active_at=active_at, limit=limit if readable is None else 10_000)
    return [x for x in found if readable is None or x.deployment_id in readable][:limit]


def list_silences(db: Database, *, active_at: datetime | None = None, limit: int = 100) -> list[Silence]:
    """Silences, newest first; only those in force at ``active_at`` when given."""
    query = sa.select(SqlSilence).order_by(SqlSilence.id.desc()).limit(limit)
    if active_at is not None:
        query = query.where(SqlSilence.starts_at <= active_at, SqlSilence.ends_at > active_at)
    with db.session(readonly=True) as s:
        return [_to_silence(r) for r in s.scalars(query)]


# --- the job ----------------------------------------------------------------------


def run_evaluate_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """The ``alerts.evaluate`` job: evaluate the rules once (a schedule queues it periodically).

    The webhook messages it queues are delivered by their own ``webhook.deliver`` jobs.

    Returns:
        ``{"rules", "fired", "still_firing", "resolved", "tickets"}`` counts.
    """
    job.check_cancelled()
    evaluation = evaluate_rules(ctx)
    line = (f"{evaluation.rules} rules, {len(evaluation.fired)} fired, {len(evaluation.still_firing)} still firing, "
            f"{len(evaluation.resolved)} resolved")
    job.log(line)
    return {"rules": evaluation.rules, "fired": len(evaluation.fired), "still_firing": len(evaluation.still_firing),
            "resolved": len(evaluation.resolved), "tickets": len(evaluation.tickets)}
