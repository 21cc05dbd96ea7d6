"""The scheduler: recurring work as short jobs, queued by a loop apart from the workers.

A schedule (``SqlSchedule``) names a job kind, its params and a period. The scheduler
loop wakes every ``tick_s``, finds the schedules whose ``next_run_at`` has come, and for
each queues one ordinary job (one drift check, one rule evaluation) that any worker
runs; nothing sleeps inside a worker, so recurring work never holds the queue up.

Firing is exclusive across processes: a scheduler claims a firing with a compare-and-set
``UPDATE … WHERE id = ? AND next_run_at = <the time it read>`` and queues the job in the
same transaction, so of two ``up`` processes only the one whose update matched queues
it. The times live in the store, so a restart loses nothing. Missed firings coalesce:
after downtime a schedule fires once and its next time is the first point of its grid
(``next_run_at + k * every_s``) after now. A firing whose previous job has not finished
yet queues nothing (counted in ``skipped``), so a busy queue never piles up copies.

Who may create a schedule is decided by the service that creates it (as for the job it
queues); the jobs act as the schedule's creator, in the schedule's project.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import ChainkeeperError, Conflict, InvalidInput, NotFound, StoreError
from chainkeeper.core.jobs import JobState, add_job
from chainkeeper.core.tables import SqlJob, SqlSchedule

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

log = logging.getLogger("chainkeeper.scheduler")

# A shorter period would make the scheduler a busy loop and the queue a flood.
MIN_EVERY_S = 1.0
MAX_EVERY_S = 366 * 24 * 3600.0

# The hook through which the chain layer names the schedules every scheduler keeps in
# place (the prediction log's retention): called as hook(settings) -> list[ScheduleSpec].
SYSTEM_SCHEDULES_HOOK = "core.system_schedules"
# The name system schedules and their jobs are recorded under.
SYSTEM_ACTOR = "system"

# audit(session, before, after) runs in the transaction of the change (governance passes
# ``ledger.auditor``; core knows no ledger). ``after`` is None for a deletion.
Audit = Callable[[Session, Any, Any], None]


@dataclass(frozen=True)
class Schedule:
    id: int
    name: str
    kind: str
    params: dict[str, Any]
    project: str | None
    every_s: float
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: int | None
    runs: int
    skipped: int
    paused: bool
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule the system keeps in place (created by the scheduler when missing)."""

    name: str
    kind: str
    every_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Firing:
    """What one firing did: the job it queued, or the unfinished job it waited for."""

    schedule_id: int
    name: str
    at: datetime
    job_id: int | None
    waiting_for: int | None = None


def _to_schedule(row: SqlSchedule) -> Schedule:
    return Schedule(id=row.id, name=row.name, kind=row.kind, params=dict(row.params or {}), project=row.project,
                    every_s=row.every_s, next_run_at=row.next_run_at, last_run_at=row.last_run_at,
                    last_job_id=row.last_job_id, runs=row.runs, skipped=row.skipped, paused=row.paused,
                    created_by=row.created_by, created_at=row.created_at)


def next_fire_time(due: datetime, every_s: float, now: datetime) -> datetime:
    """The first point of the grid ``due + k * every_s`` (k >= 1) after ``now`` (pure).

    Firings missed while no scheduler ran coalesce into the one being made now.
    """
    behind = max(0.0, (now - due).total_seconds())
    return due + timedelta(seconds=every_s * (math.floor(behind / every_s) + 1))


def check_period(every_s: float) -> float:
    """Return ``every_s`` if a schedule may run that often.

    Raises:
        InvalidInput: shorter than a second or longer than a year.
    """
    if not MIN_EVERY_S <= every_s <= MAX_EVERY_S:
        raise InvalidInput(f"A schedule runs every {MIN_EVERY_S:g} s to {MAX_EVERY_S:g} s, got {every_s:g} s.",
                           hint="e.g. every 15m or 1h.")
    return float(every_s)


# --- creating, reading, changing -----------------------------------------------------


def create_schedule(ctx: Context, name: str, kind: str, params: dict[str, Any], *, every_s: float, actor: str,
                    project: str | None = None, first_at: datetime | None = None,
                    audit: Audit | None = None) -> Schedule:
    """Store a schedule; its first firing is at ``first_at`` (default: now).

    Args:
        name: unique, for people (``drift:support``).
        kind: a job kind registered on the wiring.
        actor: the name the jobs are queued under (the caller has authorised them).
        project: the project of the object the jobs work on.
        audit: called as ``audit(session, None, schedule)`` in the same transaction.

    Raises:
        InvalidInput: an unknown kind, a period out of range. Conflict: the name is taken.
    """
    ctx.wiring.job_handler(kind)
    check_period(every_s)
    with ctx.db.session() as s:
        taken = s.scalar(sa.select(SqlSchedule.id).where(SqlSchedule.name == name))
        if taken is not None:
            raise Conflict(f"A schedule named {name!r} exists already (id {taken}).",
                           hint=f"Change it by deleting it first: 'chainkeeper schedules delete {taken}'.")
        row = SqlSchedule(name=name, kind=kind, params=params, project=project, every_s=float(every_s),
                          next_run_at=first_at or utcnow(), runs=0, skipped=0, paused=False, created_by=actor,
                          created_at=utcnow())
        s.add(row)
        s.flush()
        schedule = _to_schedule(row)
        if audit is not None:
            audit(s, None, schedule)
        return schedule


def ensure_schedule(ctx: Context, spec: ScheduleSpec) -> Schedule:
    """The schedule named ``spec.name``, created (as the system's, due now) when missing.

    An existing one is left as it is: a person may have paused it or changed its period.
    """
    for _ in range(2):
        with ctx.db.session(readonly=True) as s:
            row = s.scalars(sa.select(SqlSchedule).where(SqlSchedule.name == spec.name)).one_or_none()
            if row is not None:
                return _to_schedule(row)
        try:
            return create_schedule(ctx, spec.name, spec.kind, dict(spec.params), every_s=spec.every_s,
                                   actor=SYSTEM_ACTOR)
        except (Conflict, StoreError):  # another scheduler created it at the same moment
            continue
    raise Conflict(f"Schedule {spec.name!r} could not be created.")  # pragma: no cover - needs two failed races


def _row(s: Session, schedule_id: int) -> SqlSchedule:
    row = s.get(SqlSchedule, schedule_id)
    if row is None:
        raise NotFound(f"There is no schedule {schedule_id}.", hint="List them with 'chainkeeper schedules list'.")
    return row


def get_schedule(db: Database, schedule_id: int) -> Schedule:
    """Raises NotFound when there is no such schedule."""
    with db.session(readonly=True) as s:
        return _to_schedule(_row(s, schedule_id))


def list_schedules(db: Database, *, projects: frozenset[str] | None = None, kind: str | None = None) -> list[Schedule]:
    """Schedules, oldest first.

    Args:
        projects: only schedules of these projects (None: every one, those of no project too).
        kind: only schedules of this job kind.
    """
    query = sa.select(SqlSchedule).order_by(SqlSchedule.id)
    if projects is not None:
        query = query.where(SqlSchedule.project.in_(sorted(projects)))
    if kind is not None:
        query = query.where(SqlSchedule.kind == kind)
    with db.session(readonly=True) as s:
        return [_to_schedule(r) for r in s.scalars(query)]


def set_paused(db: Database, schedule_id: int, *, paused: bool, audit: Audit | None = None) -> Schedule:
    """Pause or resume a schedule. A resumed schedule whose time has passed fires once, at
    the scheduler's next tick (its missed firings coalesce).

    Raises:
        NotFound: no such schedule.
    """
    with db.session() as s:
        row = _row(s, schedule_id)
        if row.paused == paused:
            return _to_schedule(row)
        before = _to_schedule(row)
        row.paused = paused
        after = _to_schedule(row)
        if audit is not None:
            audit(s, before, after)
        return after


def delete_schedule(db: Database, schedule_id: int, *, audit: Audit | None = None) -> Schedule:
    """Delete a schedule; the jobs it queued stay (and a queued one still runs).

    Returns:
        The schedule as it was.

    Raises:
        NotFound: no such schedule.
    """
    with db.session() as s:
        row = _row(s, schedule_id)
        gone = _to_schedule(row)
        s.delete(row)
        if audit is not None:
            audit(s, gone, gone)
        return gone


# --- firing ----------------------------------------------------------------------------


_UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


def fire_due_schedules(db: Database, *, now: datetime | None = None, limit: int = 100) -> list[Firing]:
    """Queue the job of every schedule that is due, each at most once across all schedulers.

    Args:
        now: the time that decides what is due (default: now).
        limit: at most this many schedules.

    Returns:
        One ``Firing`` per firing this call won (none for those another scheduler took).
    """
    now = now or utcnow()
    with db.session(readonly=True) as s:
        due = list(s.execute(
            sa.select(SqlSchedule.id, SqlSchedule.next_run_at, SqlSchedule.every_s)
            .where(SqlSchedule.paused.is_(False), SqlSchedule.next_run_at <= now)
            .order_by(SqlSchedule.next_run_at, SqlSchedule.id).limit(limit)))
    fired = []
    for schedule_id, seen, every_s in due:
        with db.session() as s:
            # The compare-and-set: only the scheduler whose update still finds the time it
            # read wins this firing; on SQLite the session also holds the write lock.
            # An UPDATE answers a CursorResult (its rowcount); Session.execute is typed as the generic Result.
            won = cast(CursorResult[Any], s.execute(
                sa.update(SqlSchedule)
                .where(SqlSchedule.id == schedule_id, SqlSchedule.next_run_at == seen,
                       SqlSchedule.paused.is_(False))
                .values(next_run_at=next_fire_time(seen, every_s, now), last_run_at=now)))
            if won.rowcount != 1:
                continue
            row = s.get(SqlSchedule, schedule_id, populate_existing=True)
            assert row is not None
            previous = s.get(SqlJob, row.last_job_id) if row.last_job_id is not None else None
            if previous is not None and previous.state in _UNFINISHED:
                row.skipped += 1
                fired.append(Firing(row.id, row.name, now, None, waiting_for=previous.id))
                continue
            job = add_job(s, row.kind, dict(row.params), actor=row.created_by, project=row.project)
            row.last_job_id, row.runs = job.id, row.runs + 1
            fired.append(Firing(row.id, row.name, now, job.id))
    return fired


def next_due_at(db: Database) -> datetime | None:
    """When the next unpaused schedule is due (None: no schedule)."""
    with db.session(readonly=True) as s:
        return s.scalar(sa.select(sa.func.min(SqlSchedule.next_run_at)).where(SqlSchedule.paused.is_(False)))


class Scheduler:
    """The loop: fire what is due, then sleep until the next tick (or the next due time)."""

    def __init__(self, ctx: Context, *, tick_s: float = 1.0) -> None:
        self.ctx = ctx
        self.tick_s = tick_s
        self.stopping = threading.Event()

    def run_once(self, now: datetime | None = None) -> list[Firing]:
        """Fire every due schedule once; log what was queued."""
        fired = fire_due_schedules(self.ctx.db, now=now)
        for f in fired:
            if f.job_id is not None:
                log.info("schedule %s (%s) queued job %s", f.schedule_id, f.name, f.job_id)
            else:
                log.info("schedule %s (%s) skipped: job %s has not finished", f.schedule_id, f.name, f.waiting_for)
        return fired

    def ensure_system_schedules(self) -> list[Schedule]:
        """Create the system's schedules that are missing (those the wiring names)."""
        hook = self.ctx.wiring.hooks.get(SYSTEM_SCHEDULES_HOOK)
        specs: list[ScheduleSpec] = hook(self.ctx.settings) if hook is not None else []
        return [ensure_schedule(self.ctx, spec) for spec in specs]

    def run_forever(self) -> int:
        """Keep the system's schedules, then loop until ``stopping`` is set; return the number
        of firings made."""
        self.ensure_system_schedules()
        done = 0
        while not self.stopping.is_set():
            try:
                done += len(self.run_once())
                upcoming = next_due_at(self.ctx.db)
            except ChainkeeperError as exc:  # a store blip: try again next tick
                log.warning("scheduler tick failed: %s", exc)
                upcoming = None
            wait = self.tick_s
            if upcoming is not None:
                wait = min(wait, max(0.0, (upcoming - utcnow()).total_seconds()))
            self.stopping.wait(wait)
        return done
