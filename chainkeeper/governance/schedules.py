"""Schedules as people see them: list, show, pause, resume and delete, each decided for the actor.

The scheduler itself is core (``core.scheduler``: the table, the loop, the firing); this
module puts the permission matrix in front of it, as ``governance.jobs`` does for jobs. A
schedule is authorised like the jobs it queues, in its project: reading needs
``job.read``, pausing, resuming and deleting need ``job.cancel``; a schedule of no project
(rule evaluation, the log's retention) only with a global role. Creating one is the
service's that owns its kind (``monitoring.schedule_drift_checks`` …), which decides as
for one job of that kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.scheduler import Schedule, delete_schedule, get_schedule, list_schedules, set_paused
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import auditor
from chainkeeper.governance.permissions import authorize_object, projects_allowed

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["find_schedules", "pause_schedule", "remove_schedule", "resume_schedule", "show_schedule"]


def _authorize(ctx: Context, schedule_id: int, actor: Actor, action: str) -> Schedule:
    found: list[Schedule] = []

    def project_of() -> str | None:
        found.append(get_schedule(ctx.db, schedule_id))
        return found[0].project

    authorize_object(ctx.db, actor, action, project_of)
    return found[0]


def find_schedules(ctx: Context, *, actor: Actor, kind: str | None = None) -> list[Schedule]:
    """The schedules the actor may read, oldest first.

    Raises:
        Forbidden: the actor may read jobs nowhere.
    """
    return list_schedules(ctx.db, projects=projects_allowed(ctx.db, actor, "job.read"), kind=kind)


def show_schedule(ctx: Context, schedule_id: int, *, actor: Actor) -> Schedule:
    """One schedule.

    Raises:
        Forbidden: not in the schedule's project. NotFound: no such schedule.
    """
    return _authorize(ctx, schedule_id, actor, "job.read")


def pause_schedule(ctx: Context, schedule_id: int, *, actor: Actor) -> Schedule:
    """Stop a schedule from firing (its queued job, if any, still runs); audited.

    Raises:
        Forbidden: not in the schedule's project. NotFound: no such schedule.
    """
    _authorize(ctx, schedule_id, actor, "job.cancel")
    return set_paused(ctx.db, schedule_id, paused=True, audit=auditor(actor, "schedule.pause", "schedule"))


def resume_schedule(ctx: Context, schedule_id: int, *, actor: Actor) -> Schedule:
    """Let a paused schedule fire again; if its time has passed it fires once, at once; audited.

    Raises:
        Forbidden: not in the schedule's project. NotFound: no such schedule.
    """
    _authorize(ctx, schedule_id, actor, "job.cancel")
    return set_paused(ctx.db, schedule_id, paused=False, audit=auditor(actor, "schedule.resume", "schedule"))


def remove_schedule(ctx: Context, schedule_id: int, *, actor: Actor) -> Schedule:
    """Delete a schedule (the jobs it queued stay); audited.

    Returns:
        The schedule as it was.

    Raises:
        Forbidden: not in the schedule's project. NotFound: no such schedule.
    """
    _authorize(ctx, schedule_id, actor, "job.cancel")
    return delete_schedule(ctx.db, schedule_id, audit=auditor(actor, "schedule.delete", "schedule"))
