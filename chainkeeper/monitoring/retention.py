"""The prediction log's retention as a job: the scheduler queues it (``predictions.purge``).

``prediction_log_retention_days`` (settings) says how long records are kept; the
``prediction-log-retention`` schedule, kept in place by every scheduler, deletes older
ones every ``RETENTION_EVERY_S`` (``predictions.purge_predictions`` keeps those that
feedback points at).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.scheduler import ScheduleSpec
from chainkeeper.monitoring.predictions import purge_predictions

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.core.jobs import JobHandle
    from chainkeeper.core.settings import Settings

__all__ = ["RETENTION_JOB", "retention_schedules", "run_retention_job"]

RETENTION_JOB = "predictions.purge"
RETENTION_EVERY_S = 3600.0


def retention_schedules(settings: Settings) -> list[ScheduleSpec]:
    """The retention schedule, when the settings keep records for a limited time (pure)."""
    if settings.prediction_log_retention_days is None:
        return []
    return [ScheduleSpec("prediction-log-retention", RETENTION_JOB, RETENTION_EVERY_S)]


def run_retention_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Delete prediction-log records older than ``days`` (param; default the setting).

    Returns:
        ``{"deleted", "before"}``, or ``{"deleted": 0, "before": None}`` when the log is kept whole.

    Raises:
        InvalidInput: a non-positive ``days``.
    """
    days = job.params.get("days", ctx.settings.prediction_log_retention_days)
    if days is None:
        job.log("the prediction log is kept whole (prediction_log_retention_days is unset)")
        return {"deleted": 0, "before": None}
    if float(days) <= 0:
        raise InvalidInput(f"A retention of {days} days keeps nothing.", hint="Use a positive number of days.")
    before = utcnow() - timedelta(days=float(days))
    deleted = purge_predictions(ctx.db, before)
    job.log(f"deleted {deleted} record(s) served before {before:%Y-%m-%d %H:%M:%S} UTC")
    return {"deleted": deleted, "before": before.isoformat()}
