"""Jobs: list, show, read logs, cancel. Thin: parse, call ``core.jobs``, answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request

from chainkeeper.api.auth import require
from chainkeeper.api.deps import get_ctx
from chainkeeper.core import jobs
from chainkeeper.governance.ledger import auditor
from chainkeeper.core.jobs import JobState
from chainkeeper.governance.actors import Actor

router = APIRouter(tags=["jobs"])


def _job(job: jobs.Job) -> dict[str, Any]:
    return {**asdict(job), "finished": job.finished}


@router.get("/api/jobs", dependencies=[require("job.read")])
def list_jobs(request: Request, state: JobState | None = None,
              limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    """Jobs, newest first."""
    return [_job(j) for j in jobs.list_jobs(get_ctx(request).db, limit=limit, state=state)]


@router.get("/api/jobs/{job_id}", dependencies=[require("job.read")])
def get_job(job_id: int, request: Request) -> dict[str, Any]:
    """One job with its progress, result or error."""
    return _job(jobs.get_job(get_ctx(request).db, job_id))


@router.get("/api/jobs/{job_id}/logs", dependencies=[require("job.read")])
def job_logs(job_id: int, request: Request, after_id: int = Query(0, ge=0)) -> dict[str, Any]:
    """Log lines newer than ``after_id`` (poll with the last id seen)."""
    db = get_ctx(request).db
    jobs.get_job(db, job_id)  # 404 for an unknown job rather than an empty list
    lines = [{"id": i, "at": at, "line": line} for i, at, line in jobs.job_logs(db, job_id, after_id=after_id)]
    return {"job_id": job_id, "lines": lines, "last_id": lines[-1]["id"] if lines else after_id}


@router.post("/api/jobs/{job_id}/cancel")
def cancel_job(job_id: int, request: Request, actor: Actor = require("job.cancel")) -> dict[str, Any]:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next check."""
    return _job(jobs.request_cancel(get_ctx(request).db, job_id, audit=auditor(actor, "job.cancel", "job")))
