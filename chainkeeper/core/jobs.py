"""Jobs: long work recorded in the metadata store.

A job is submitted as ``queued``; a worker claims it (``running``), reports progress,
log lines and heartbeats, and ends it ``succeeded``, ``failed`` or ``cancelled``. Claims
are exclusive: on PostgreSQL the candidate row is locked with ``FOR UPDATE SKIP LOCKED``;
on SQLite the claim runs in a ``BEGIN IMMEDIATE`` transaction, the single writer. A
running job whose heartbeat is older than ``stale_after_s`` lost its worker: the reaper
puts it back in the queue while attempts remain, else marks it failed. An attempt that
fails with an error that may pass (a full disk, a locked store: ``core.storage_errors``)
is queued again after a back-off (``retry_job_later``) while attempts remain. A job queued with
``not_before`` (a webhook's retry after its back-off) waits in the queue until that time
without holding up the jobs behind it. Recurring work is not a job that sleeps: the
scheduler (``core.scheduler``) queues one short job per firing.

What a job *does* is a handler, registered by kind by the layer that owns it on the
context's wiring (``core.wiring``; the chain layer builds the table).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, NotFound
from chainkeeper.core.tables import SqlJob, SqlJobLog, SqlWorker

if TYPE_CHECKING:
    from chainkeeper.core.context import Context


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
# A worker row in one of these states counts as alive while its heartbeat is recent; 'stopped'
# is a worker that ended itself, 'lost' one whose process ended under 'up' without stopping.
LIVE_WORKER_STATES = ("idle", "busy")

@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    params: dict[str, Any]
    project: str | None
    state: JobState
    progress: float
    message: str
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    worker_id: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def _to_job(row: SqlJob) -> Job:
    return Job(
        id=row.id, kind=row.kind, params=dict(row.params or {}), project=row.project, state=JobState(row.state),
        progress=row.progress, message=row.message, result=row.result, error=row.error,
        attempts=row.attempts, max_attempts=row.max_attempts, cancel_requested=row.cancel_requested,
        worker_id=row.worker_id, created_by=row.created_by, created_at=row.created_at,
        started_at=row.started_at, heartbeat_at=row.heartbeat_at, finished_at=row.finished_at,
        not_before=row.not_before,
    )


# --- submitting and reading ------------------------------------------------------------


def submit_job(ctx: Context, kind: str, params: dict[str, Any], *, actor: str, project: str | None = None,
               max_attempts: int = 3, not_before: datetime | None = None) -> Job:
    """Queue a job.

    Args:
        project: the project of the object the job works on; who may read or cancel the
            job is decided there (None: global roles only).
        not_before: no worker claims it before this time (None: at once).

    Raises:
        InvalidInput: no layer registered a handler for the kind.
    """
    ctx.wiring.job_handler(kind)
    with ctx.db.session() as s:
        return add_job(s, kind, params, actor=actor, project=project, max_attempts=max_attempts,
                       not_before=not_before)


def add_job(s: Session, kind: str, params: dict[str, Any], *, actor: str, project: str | None = None,
            max_attempts: int = 3, not_before: datetime | None = None) -> Job:
    """Queue a job inside the caller's transaction, so it commits with the write that asks
    for it (a webhook message and its delivery job; a schedule's firing and its job).

    The caller vouches for ``kind`` (``submit_job`` checks it against the wiring).

    Returns:
        The queued job, with its id.
    """
    row = SqlJob(kind=kind, params=params, project=project, state=JobState.QUEUED, created_by=actor,
                 max_attempts=max_attempts, not_before=not_before)
    s.add(row)
    s.flush()
    return _to_job(row)


def get_job(db: Database, job_id: int) -> Job:
    """Raises NotFound when there is no such job."""
    with db.session() as s:
        row = s.get(SqlJob, job_id)
        if row is None:
            raise NotFound(f"There is no job {job_id}.", hint="List jobs with 'chainkeeper jobs list'.")
        return _to_job(row)


def list_jobs(db: Database, *, limit: int = 50, state: JobState | None = None,
              projects: frozenset[str] | None = None) -> list[Job]:
    """Jobs, newest first.

    Args:
        projects: only jobs of these projects (None: every job, those of no project too).
    """
    with db.session() as s:
        query = sa.select(SqlJob).order_by(SqlJob.id.desc()).limit(limit)
        if state is not None:
            query = query.where(SqlJob.state == state)
        if projects is not None:
            query = query.where(SqlJob.project.in_(sorted(projects)))
        return [_to_job(r) for r in s.scalars(query)]


def job_logs(db: Database, job_id: int, *, after_id: int = 0) -> list[tuple[int, datetime, str]]:
    """Log lines of a job newer than ``after_id``, oldest first, as (id, time, line)."""
    with db.session() as s:
        rows = s.execute(
            sa.select(SqlJobLog.id, SqlJobLog.at, SqlJobLog.line)
            .where(SqlJobLog.job_id == job_id, SqlJobLog.id > after_id)
            .order_by(SqlJobLog.id)
        )
        return [(r.id, r.at, r.line) for r in rows]


def count_jobs_by_state(db: Database) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(sa.select(SqlJob.state, sa.func.count()).group_by(SqlJob.state))
        return {state: n for state, n in rows}


# --- the worker's side -----------------------------------------------------------------


def claim_next_job(db: Database, worker_id: str, *, kinds: list[str] | None = None) -> Job | None:
    """Atomically take the oldest queued job that is due, or return None when none is.

    Two workers calling this at once never get the same job. A job whose ``not_before``
    lies ahead is passed over (the jobs behind it run meanwhile).
    """
    with db.session() as s:
        now = utcnow()
        query = (sa.select(SqlJob)
                 .where(SqlJob.state == JobState.QUEUED,
                        sa.or_(SqlJob.not_before.is_(None), SqlJob.not_before <= now))
                 .order_by(SqlJob.id).limit(1))
        if kinds:
            query = query.where(SqlJob.kind.in_(kinds))
        if db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = s.scalars(query).first()
        if row is None:
            return None
        # The conditional UPDATE is a second guard: it only succeeds if the row is still
        # queued, whatever the isolation level.
        # An UPDATE answers a CursorResult (its rowcount); Session.execute is typed as the generic Result.
        claimed = cast(CursorResult[Any], s.execute(
            sa.update(SqlJob)
            .where(SqlJob.id == row.id, SqlJob.state == JobState.QUEUED)
            .values(state=JobState.RUNNING, worker_id=worker_id, started_at=now, heartbeat_at=now,
                    attempts=SqlJob.attempts + 1, message="started")
        ))
        if claimed.rowcount != 1:  # pragma: no cover - excluded by the lock
            return None
        s.refresh(row)
        return _to_job(row)


def heartbeat(db: Database, job_id: int, worker_id: str) -> bool:
    """Prove the worker is alive; return whether a cancel was requested.

    Raises:
        Conflict: the job is no longer this worker's (it was reaped and reassigned).
    """
    with db.session() as s:
        row = s.get(SqlJob, job_id)
        if row is None or row.worker_id != worker_id or row.state != JobState.RUNNING:
            raise Conflict(f"Job {job_id} is no longer held by worker {worker_id}.")
        row.heartbeat_at = utcnow()
        return row.cancel_requested


def report_progress(db: Database, job_id: int, progress: float, message: str) -> None:
    with db.session() as s:
        s.execute(
            sa.update(SqlJob).where(SqlJob.id == job_id)
            .values(progress=max(0.0, min(100.0, progress)), message=message[:2000])
        )


def append_log(db: Database, job_id: int, line: str) -> None:
    with db.session() as s:
        s.add(SqlJobLog(job_id=job_id, line=line))


def finish_job(
    db: Database, job_id: int, worker_id: str, state: JobState, *,
    result: dict[str, Any] | None = None, error: str | None = None,
) -> Job:
    """End a job the worker holds. A job reaped meanwhile is left to its new owner."""
    with db.session() as s:
        row = s.get(SqlJob, job_id)
        if row is None:
            raise NotFound(f"There is no job {job_id}.")
        if row.worker_id != worker_id or row.state != JobState.RUNNING:
            raise Conflict(f"Job {job_id} is no longer held by worker {worker_id}; its result was dropped.")
        row.state = state
        row.result = result
        row.error = error
        row.finished_at = utcnow()
        if state == JobState.SUCCEEDED:
            row.progress = 100.0
            row.message = "done"
        elif state == JobState.CANCELLED:
            row.message = "cancelled"
        return _to_job(row)


def request_cancel(db: Database, job_id: int, *, audit: Callable[[Session, Job, Job], None] | None = None) -> Job:
    """Ask for a job to stop. A queued job is cancelled at once; a running one at its
    next check.

    Args:
        audit: called as ``audit(session, before, after)`` inside the same transaction,
            so the record of who cancelled commits with the change (the shells pass
            ``governance.ledger.auditor(...)``; core knows no ledger).

    Raises:
        NotFound: no such job.
        Conflict: the job has already finished.
    """
    with db.session() as s:
        row = s.get(SqlJob, job_id)
        if row is None:
            raise NotFound(f"There is no job {job_id}.")
        if row.state in FINISHED:
            raise Conflict(f"Job {job_id} has already {row.state}; there is nothing to cancel.")
        before = _to_job(row)
        row.cancel_requested = True
        if row.state == JobState.QUEUED:
            row.state = JobState.CANCELLED
            row.finished_at = utcnow()
            row.message = "cancelled before it started"
        after = _to_job(row)
        if audit is not None:
            audit(s, before, after)
        return after


def retry_job(db: Database, job_id: int) -> Job:
    """Put a failed or cancelled job back in the queue for one more attempt."""
    with db.session() as s:
        row = s.get(SqlJob, job_id)
        if row is None:
            raise NotFound(f"There is no job {job_id}.")
        if row.state not in (JobState.FAILED, JobState.CANCELLED):
            raise Conflict(f"Job {job_id} is {row.state}; only failed or cancelled jobs can be retried.")
        row.state = JobState.QUEUED
        row.cancel_requested = False
        row.error = None
        row.worker_id = None
        row.finished_at = None
        row.max_attempts = row.attempts + 1
        row.not_before = None
        row.message = "queued for retry"
        return _to_job(row)


def retry_delay(attempt: int, *, base_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): ``base_s``,
    doubling after each, never more than ``max_s``."""
    return float(min(max_s, base_s * 2 ** max(0, min(attempt - 1, 32))))


def retry_job_later(db: Database, job_id: int, worker_id: str, *, error: str, delay: timedelta) -> Job:
    """End this attempt of a job the worker holds with an error that may pass, and queue
    it again, due after ``delay``; with no attempts left it fails with ``error``.

    Raises:
        NotFound: no such job.
        Conflict: the job is no longer this worker's (it was reaped meanwhile).
    """
    with db.session() as s:
        row = s.get(SqlJob, job_id)
        if row is None:
            raise NotFound(f"There is no job {job_id}.")
        if row.worker_id != worker_id or row.state != JobState.RUNNING:
            raise Conflict(f"Job {job_id} is no longer held by worker {worker_id}; its result was dropped.")
        now = utcnow()
        if row.cancel_requested:
            row.state, row.message, row.finished_at = JobState.CANCELLED, "cancelled", now
            return _to_job(row)
        said = f"attempt {row.attempts} failed: {error}".rstrip(". ")
        if row.attempts >= row.max_attempts:
            row.state, row.error, row.finished_at = JobState.FAILED, error, now
            row.message = f"failed after {row.attempts} attempt(s)"
            s.add(SqlJobLog(job_id=row.id, line=f"{said}. No attempts left."))
            return _to_job(row)
        due = now + delay
        row.state, row.worker_id, row.not_before = JobState.QUEUED, None, due
        row.message = (f"{said[:1800]}. Retrying after {due:%H:%M:%S} UTC "
                       f"(attempt {row.attempts + 1} of {row.max_attempts}).")
        s.add(SqlJobLog(job_id=row.id, line=f"{said}. Retrying in {delay.total_seconds():.0f} s."))
        return _to_job(row)


def reap_stale_jobs(db: Database, *, stale_after: timedelta, now: datetime | None = None) -> list[Job]:
    """Find running jobs whose worker stopped sending heartbeats.

    Each goes back to ``queued`` while it has attempts left (a resumable job continues
    from its last checkpoint), else to ``failed`` with the reason.

    Returns:
        The jobs that were reaped, in their new state.
    """
    cutoff = (now or utcnow()) - stale_after
    reaped = []
    with db.session() as s:
        query = sa.select(SqlJob).where(SqlJob.state == JobState.RUNNING, SqlJob.heartbeat_at < cutoff)
        if db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for row in s.scalars(query):
            lost = row.worker_id
            reason = f"worker {lost} stopped sending heartbeats (last at {row.heartbeat_at:%H:%M:%S} UTC)"
            if row.cancel_requested:
                row.state, row.message = JobState.CANCELLED, "cancelled (its worker was lost)"
                row.finished_at = utcnow()
            elif row.attempts < row.max_attempts:
                row.state = JobState.QUEUED
                row.message = f"{reason}; queued again (attempt {row.attempts + 1} of {row.max_attempts})"
            else:
                row.state, row.error = JobState.FAILED, f"{reason}; gave up after {row.attempts} attempts"
                row.message = "failed: worker lost"
                row.finished_at = utcnow()
            row.worker_id = None
            s.add(SqlJobLog(job_id=row.id, line=f"reaper: {reason}"))
            reaped.append(_to_job(row))
    return reaped


def register_worker(db: Database, worker_id: str, hostname: str, pid: int) -> None:
    with db.session() as s:
        s.merge(SqlWorker(id=worker_id, hostname=hostname, pid=pid, state="idle",
                          started_at=utcnow(), heartbeat_at=utcnow()))


def worker_heartbeat(db: Database, worker_id: str, state: str) -> None:
    with db.session() as s:
        s.execute(sa.update(SqlWorker).where(SqlWorker.id == worker_id).values(heartbeat_at=utcnow(), state=state))


def mark_worker_lost(db: Database, hostname: str, pid: int) -> int:
    """Record that the worker process ``pid`` on ``hostname`` ended without stopping (killed,
    crashed): it no longer counts as alive. Its job, if it held one, is left to the reaper
    (after ``stale_after_s``, as for a worker lost on another machine).

    Returns:
        How many worker rows were marked (0 when it had not registered yet).
    """
    with db.session() as s:
        marked = cast(CursorResult[Any], s.execute(
            sa.update(SqlWorker)
            .where(SqlWorker.hostname == hostname, SqlWorker.pid == pid, SqlWorker.state.in_(LIVE_WORKER_STATES))
            .values(state="lost")
        ))
        return int(marked.rowcount)


def count_live_workers(db: Database, *, alive_within: timedelta) -> int:
    """Workers that sent a heartbeat within ``alive_within`` and have not stopped (one
    small query: readiness asks it on every probe)."""
    cutoff = utcnow() - alive_within
    with db.session(readonly=True) as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(SqlWorker).where(
            SqlWorker.heartbeat_at >= cutoff, SqlWorker.state.in_(LIVE_WORKER_STATES))) or 0)


def list_workers(db: Database, *, alive_within: timedelta) -> list[dict[str, Any]]:
    cutoff = utcnow() - alive_within
    with db.session() as s:
        rows = s.scalars(sa.select(SqlWorker).where(SqlWorker.heartbeat_at >= cutoff,
                                                    SqlWorker.state.in_(LIVE_WORKER_STATES)))
        return [{"id": r.id, "hostname": r.hostname, "pid": r.pid, "state": r.state,
                 "heartbeat_at": r.heartbeat_at} for r in rows]


# --- the handle a running job sees ----------------------------------------------------


class JobHandle:
    """What a handler may do with its job: read params, report, check for cancel."""

    def __init__(self, db: Database, job: Job, worker_id: str) -> None:
        self._db = db
        self.job = job
        self.worker_id = worker_id
        self.cancel_requested = job.cancel_requested  # refreshed by the worker's heartbeat

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    def progress(self, percent: float, message: str) -> None:
        report_progress(self._db, self.job.id, percent, message)

    def log(self, line: str) -> None:
        append_log(self._db, self.job.id, line)

    def check_cancelled(self) -> None:
        """Raise JobCancelled if a cancel was requested; call it between units of work."""
        from chainkeeper.core.errors import JobCancelled

        if self.cancel_requested:
            raise JobCancelled(f"Job {self.job.id} was cancelled.")


def sleep_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """A job that sleeps in small steps: for trying a worker and in tests."""
    import time

    steps = int(job.params.get("steps", 10))
    seconds = float(job.params.get("step_s", 0.1))
    for i in range(steps):
        job.check_cancelled()
        time.sleep(seconds)
        job.progress(100.0 * (i + 1) / steps, f"step {i + 1}/{steps}")
    return {"slept_s": steps * seconds, "attempt": job.job.attempts}
