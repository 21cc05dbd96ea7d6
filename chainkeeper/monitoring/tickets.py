"""Maintenance tickets: the work an alert opens, with an owner role at every step.

    open ──acknowledge──▶ acknowledged ──hand over──▶ handed_over ──retrain──▶ retraining
     │   (operator)            │        (to ml_engineer)                         │
     │                         │                   data version released by a data_steward,
     │                         │                   then train, evaluate, candidate to the gate
     │                         │                                                 ▼
     └─────────────────────────┴────────────── close ◀──────────────────── in_release

An alert that fires (and is not silenced) opens a ticket owned by the ``operator`` role.
An operator acknowledges it (the time from opening to acknowledgement is stored) and
either closes it or hands it over to ``ml_engineer`` for retraining; the retraining loop
(``chain.maintenance``) moves it on and records what it produced in ``details``.
Every step is an audit-ledger entry in the same transaction as the change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.roles import BuiltinRole
from chainkeeper.monitoring.access import authorize_for_object, readable_deployment_ids
from chainkeeper.monitoring.tables import SqlAlert, SqlAlertRule, SqlTicket

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = [
    "Ticket",
    "TicketState",
    "acknowledge_ticket",
    "advance_ticket",
    "close_ticket",
    "get_ticket",
    "hand_over_ticket",
    "list_tickets",
    "open_ticket_for_alert",
    "ticket_stats",
]


class TicketState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    HANDED_OVER = "handed_over"
    RETRAINING = "retraining"
    IN_RELEASE = "in_release"
    CLOSED = "closed"


@dataclass(frozen=True)
class Ticket:
    id: int
    alert_id: int | None
    deployment_id: int | None
    title: str
    state: TicketState
    owner_role: str
    opened_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    time_to_acknowledge_s: float | None
    handed_over_by: str | None
    handed_over_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None
    resolution: str | None
    details: dict[str, Any]


def _to_ticket(row: SqlTicket) -> Ticket:
    return Ticket(id=row.id, alert_id=row.alert_id, deployment_id=row.deployment_id, title=row.title,
                  state=TicketState(row.state), owner_role=row.owner_role, opened_at=row.opened_at,
                  acknowledged_by=row.acknowledged_by, acknowledged_at=row.acknowledged_at,
                  time_to_acknowledge_s=row.time_to_acknowledge_s, handed_over_by=row.handed_over_by,
                  handed_over_at=row.handed_over_at, closed_by=row.closed_by, closed_at=row.closed_at,
                  resolution=row.resolution, details=dict(row.details or {}))


def _snapshot(row: SqlTicket) -> dict[str, Any]:
    return {"state": row.state, "owner_role": row.owner_role, "details": dict(row.details or {})}


def open_ticket_for_alert(s: Session, alert: SqlAlert, rule: SqlAlertRule, *, now: datetime, actor: Actor) -> int:
    """Open a ticket for a firing alert in the caller's transaction; owner role operator.

    Returns:
        The ticket's id.
    """
    row = SqlTicket(alert_id=alert.id, deployment_id=alert.deployment_id, title=alert.message,
                    state=TicketState.OPEN.value, owner_role=BuiltinRole.OPERATOR.value, opened_at=now, details={})
    s.add(row)
    s.flush()
    append_entry(s, actor, "ticket.open", "ticket", row.id, after=_snapshot(row),
                 details={"alert_id": alert.id, "rule": rule.name, "severity": alert.severity,
                          "owner_role": row.owner_role})
    return row.id


def _ticket_row(s: Session, ticket_id: int) -> SqlTicket:
    row = s.get(SqlTicket, ticket_id)
    if row is None:
        raise NotFound(f"There is no maintenance ticket {ticket_id}.",
                       hint="List them with 'chainkeeper monitor tickets list'.")
    return row


def _require_state(row: SqlTicket, allowed: tuple[TicketState, ...], doing: str, hint: str) -> None:
    if row.state not in allowed:
        raise Conflict(f"Ticket {row.id} is {row.state}; only a ticket that is "
                       f"{' or '.join(s.value for s in allowed)} can be {doing}.", hint=hint)


def _authorize(ctx: Context, actor: Actor, action: str, ticket_id: int) -> None:
    """``action`` on a ticket, in its deployment's project (a ticket of no deployment: everywhere)."""
    authorize_for_object(ctx.db, actor, action, lambda: get_ticket(ctx.db, ticket_id).deployment_id)


def acknowledge_ticket(ctx: Context, ticket_id: int, *, actor: Actor, comment: str = "") -> Ticket:
    """An operator takes the ticket: who and when, and the time it waited, are stored.

    Raises:
        Forbidden: may not manage alerts in the ticket's deployment's project. NotFound: no such ticket.
        Conflict: it was acknowledged (or closed) already.
    """
    _authorize(ctx, actor, "alert.manage", ticket_id)
    now = utcnow()
    with ctx.db.session() as s:
        row = _ticket_row(s, ticket_id)
        _require_state(row, (TicketState.OPEN,), "acknowledged",
                       f"It was acknowledged by {row.acknowledged_by}." if row.acknowledged_by else "")
        before = _snapshot(row)
        row.state, row.acknowledged_by, row.acknowledged_at = TicketState.ACKNOWLEDGED.value, actor.name, now
        row.time_to_acknowledge_s = round((now - row.opened_at).total_seconds(), 3)
        append_entry(s, actor, "ticket.acknowledge", "ticket", row.id, before=before, after=_snapshot(row),
                     details={"time_to_acknowledge_s": row.time_to_acknowledge_s, "comment": comment})
        return _to_ticket(row)


def hand_over_ticket(ctx: Context, ticket_id: int, *, actor: Actor, note: str) -> Ticket:
    """Hand an acknowledged ticket over to ``ml_engineer`` for retraining.

    Raises:
        Forbidden: may not manage alerts in the ticket's deployment's project.
        InvalidInput: no note for the engineer.
        NotFound: no such ticket. Conflict: not acknowledged yet, or past that.
    """
    _authorize(ctx, actor, "alert.manage", ticket_id)
    if not note.strip():
        raise InvalidInput("A hand-over needs a note for the ML engineer.",
                           hint="Say what you saw, e.g. 'drift on Chinese traffic since 09:00'.")
    now = utcnow()
    with ctx.db.session() as s:
        row = _ticket_row(s, ticket_id)
        _require_state(row, (TicketState.ACKNOWLEDGED,), "handed over",
                       "Acknowledge it first: 'chainkeeper monitor tickets ack ID'.")
        before = _snapshot(row)
        row.state, row.owner_role = TicketState.HANDED_OVER.value, BuiltinRole.ML_ENGINEER.value
        row.handed_over_by, row.handed_over_at = actor.name, now
        row.details = {**(row.details or {}), "handover_note": note.strip()}
        append_entry(s, actor, "ticket.handover", "ticket", row.id, before=before, after=_snapshot(row),
                     details={"to_role": row.owner_role, "note": note.strip()})
        return _to_ticket(row)


def advance_ticket(ctx: Context, ticket_id: int, *, actor: Actor, to: TicketState,
                   allowed_from: tuple[TicketState, ...], action: str, details: dict[str, Any],
                   hint: str = "") -> Ticket:
    """Move a ticket on for the retraining loop and merge ``details`` into it, audited.

    The steps of the loop (``chain.maintenance``) are ``maintenance.retrain`` in the
    ticket's deployment's project.

    Args:
        action: the ledger action recorded, e.g. ``ticket.retrain``.

    Raises:
        Forbidden: the actor may not retrain there.
        NotFound: no such ticket. Conflict: the ticket is not in one of ``allowed_from``.
    """
    _authorize(ctx, actor, "maintenance.retrain", ticket_id)
    with ctx.db.session() as s:
        row = _ticket_row(s, ticket_id)
        _require_state(row, allowed_from, f"moved to {to.value}", hint)
        before = _snapshot(row)
        row.state = to.value
        row.details = {**(row.details or {}), **details}
        append_entry(s, actor, action, "ticket", row.id, before=before, after=_snapshot(row), details=details)
        return _to_ticket(row)


def close_ticket(ctx: Context, ticket_id: int, *, actor: Actor, resolution: str) -> Ticket:
    """Close a ticket with what was done.

    Raises:
        Forbidden: may not manage alerts in the ticket's deployment's project. InvalidInput: no resolution.
        NotFound: no such ticket. Conflict: already closed.
    """
    _authorize(ctx, actor, "alert.manage", ticket_id)
    if not resolution.strip():
        raise InvalidInput("Closing a ticket needs a resolution.", hint="e.g. --resolution 'v2 serves since 14:05'.")
    now = utcnow()
    with ctx.db.session() as s:
        row = _ticket_row(s, ticket_id)
        if row.state == TicketState.CLOSED:
            raise Conflict(f"Ticket {ticket_id} was closed by {row.closed_by} already.")
        before = _snapshot(row)
        row.state, row.closed_by, row.closed_at, row.resolution = TicketState.CLOSED.value, actor.name, now, \
            resolution.strip()
        append_entry(s, actor, "ticket.close", "ticket", row.id, before=before, after=_snapshot(row),
                     details={"resolution": row.resolution})
        return _to_ticket(row)


def get_ticket(db: Database, ticket_id: int) -> Ticket:
    """Raises NotFound when there is no such ticket."""
    with db.session(readonly=True) as s:
        return _to_ticket(_ticket_row(s, ticket_id))


def show_ticket(ctx: Context, ticket_id: int, *, actor: Actor) -> Ticket:
    """One ticket, for a reader (``monitoring.read`` in its deployment's project).

    Raises:
        Forbidden: the actor may not read it. NotFound: no such ticket.
    """
    _authorize(ctx, actor, "monitoring.read", ticket_id)
    return get_ticket(ctx.db, ticket_id)


@dataclass(frozen=True)
class TicketBoard:
    """The tickets a reader may see, newest first, with their counts and time-to-acknowledge."""

    tickets: list[Ticket]
    stats: dict[str, Any]


def find_tickets(ctx: Context, *, actor: Actor, state: str | None = None, owner_role: str | None = None,
                 limit: int = 100) -> TicketBoard:
    """The tickets the actor may read (``monitoring.read`` in their deployment's project) and their stats.

    Raises:
        Forbidden: the actor may read monitoring nowhere. InvalidInput: an unknown state.
    """
    readable = readable_deployment_ids(ctx.db, actor)
    found = list_tickets(ctx.db, state=state, owner_role=owner_role, limit=limit,
                         deployment_ids=readable)
    return TicketBoard(found[:limit], ticket_stats(ctx.db, deployment_ids=readable))


def list_tickets(db: Database, *, state: str | None = None, owner_role: str | None = None,
                 alert_id: int | None = None, deployment_ids: set[int] | None = None,
                 limit: int = 100) -> list[Ticket]:
    """Tickets, newest first.

    Raises:
        InvalidInput: an unknown state.
    """
    query = sa.select(SqlTicket).order_by(SqlTicket.id.desc()).limit(limit)
    if state is not None:
        try:
            query = query.where(SqlTicket.state == TicketState(state).value)
        except ValueError:
            raise InvalidInput(f"Unknown ticket state {state!r}.",
                               hint=f"Use one of {', '.join(s.value for s in TicketState)}.") from None
    if owner_role is not None:
        query = query.where(SqlTicket.owner_role == owner_role)
    if alert_id is not None:
        query = query.where(SqlTicket.alert_id == alert_id)
    if deployment_ids is not None:
        query = query.where(SqlTicket.deployment_id.in_(deployment_ids))
    with db.session(readonly=True) as s:
        return [_to_ticket(r) for r in s.scalars(query)]


def ticket_stats(db: Database, *, deployment_ids: set[int] | None = None) -> dict[str, Any]:
    """Counts by state and the mean and worst time-to-acknowledge (seconds).

    Args:
        deployment_ids: only tickets of these deployments (None: every ticket).
    """
    where = [] if deployment_ids is None else [SqlTicket.deployment_id.in_(deployment_ids)]
    with db.session(readonly=True) as s:
        counts = dict(s.execute(sa.select(SqlTicket.state, sa.func.count()).where(*where)
                                .group_by(SqlTicket.state)).all())
        mean, worst = s.execute(sa.select(sa.func.avg(SqlTicket.time_to_acknowledge_s),
                                          sa.func.max(SqlTicket.time_to_acknowledge_s)).where(*where)).one()
    return {"by_state": {str(k): int(v) for k, v in counts.items()},
            "mean_time_to_acknowledge_s": float(mean) if mean is not None else None,
            "max_time_to_acknowledge_s": float(worst) if worst is not None else None}
