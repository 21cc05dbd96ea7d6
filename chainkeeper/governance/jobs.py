"""Jobs as people see them: read, follow, cancel and retry, each decided for the actor.

The job queue itself is core (``core.jobs``: claims, heartbeats, the reaper) and knows no
users; this module puts the permission matrix in front of it. A job is authorised in the
project it was queued for (``Job.project``); a job of no project only with a global role.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from chainkeeper.core.jobs import (
    Job,
    JobState,
    get_job,
    job_logs,
    list_jobs,
    request_cancel,
    retry_job,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import auditor, record
from chainkeeper.governance.permissions import authorize_object, projects_allowed

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["cancel_job", "find_jobs", "read_job_logs", "requeue_job", "show_job"]


def _authorized_job(ctx: Context, job_id: int, actor: Actor, action: str) -> Job:
    found: list[Job] = []

    def project_of() -> str | None:
        found.append(get_job(ctx.db, job_id))
        return found[0].project

    authorize_object(ctx.db, actor, action, project_of)
    return found[0]


def find_jobs(ctx: Context, *, actor: Actor, state: JobState | None = None, limit: int = 50) -> list[Job]:
    """The jobs the actor may read, newest first.

    Raises:
        Forbidden: the actor may read jobs nowhere.
    """
    return list_jobs(ctx.db, limit=limit, state=state, projects=projects_allowed(ctx.db, actor, "job.read"))


def show_job(ctx: Context, job_id: int, *, actor: Actor) -> Job:
    """One job.

    Raises:
        Forbidden: not in the job's project. NotFound: no such job.
    """
    return _authorized_job(ctx, job_id, actor, "job.read")


def read_job_logs(ctx: Context, job_id: int, *, actor: Actor, after_id: int = 0) -> list[tuple[int, datetime, str]]:
    """A job's log lines newer than ``after_id`` as (id, time, line).

    Raises:
        Forbidden: not in the job's project. NotFound: no such job.
    """
    _authorized_job(ctx, job_id, actor, "job.read")
    return job_logs(ctx.db, job_id, after_id=after_id)


def cancel_job(ctx: Context, job_id: int, *, actor: Actor) -> Job:
    """Ask a job to stop (at once if queued, at its next check if running); audited.

    Raises:
        Forbidden: not in the job's project. NotFound: no such job. Conflict: it has finished.
    """
    _authorized_job(ctx, job_id, actor, "job.cancel")
    return request_cancel(ctx.db, job_id, audit=auditor(actor, "job.cancel", "job"))


def requeue_job(ctx: Context, job_id: int, *, actor: Actor) -> Job:
    """Queue a failed or cancelled job once more; audited.

    Raises:
        Forbidden: not in the job's project. NotFound: no such job. Conflict: it is not failed or cancelled.
    """
    _authorized_job(ctx, job_id, actor, "job.cancel")
    job = retry_job(ctx.db, job_id)
    record(ctx.db, actor, "job.retry", "job", job_id, after={"state": job.state})
    return job
