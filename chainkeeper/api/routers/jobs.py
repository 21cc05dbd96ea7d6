"""Jobs: list, show, read logs, cancel. Thin: parse, call ``governance.jobs``, answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request

from chainkeeper.api.auth import require
from chainkeeper.api.deps import MAX_INT64, Id, get_ctx
from chainkeeper.core.jobs import Job, JobState
from chainkeeper.governance import jobs
from chainkeeper.governance.actors import Actor

router = APIRouter(tags=["jobs"])


def _job(job: Job) -> dict[str, Any]:
    return {**asdict(job), "finished": job.finished}


@router.get("/api/jobs")
def list_jobs(request: Request, state: JobState | None = None, limit: int = Query(50, ge=1, le=500),
              actor: Actor = require("job.read")) -> list[dict[str, Any]]:
    """Jobs the caller may read, newest first."""
    return [_job(j) for j in jobs.find_jobs(get_ctx(request), actor=actor, limit=limit, state=state)]


@router.get("/api/jobs/{job_id}")
def get_job(job_id: Id, request: Request, actor: Actor = require("job.read")) -> dict[str, Any]:
    """One job with its progress, result or error."""
    return _job(jobs.show_job(get_ctx(request), job_id, actor=actor))


@router.get("/api/jobs/{job_id}/logs")
def job_logs(job_id: Id, request: Request, after_id: int = Query(0, ge=0, le=MAX_INT64),
             actor: Actor = require("job.read")) -> dict[str, Any]:
    """Log lines newer than ``after_id`` (poll with the last id seen)."""
    found = jobs.read_job_logs(get_ctx(request), job_id, actor=actor, after_id=after_id)
    lines = [{"id": i, "at": at, "line": line} for i, at, line in found]
    return {"job_id": job_id, "lines": lines, "last_id": lines[-1]["id"] if lines else after_id}


@router.post("/api/jobs/{job_id}/cancel")
def cancel_job(job_id: Id, request: Request, actor: Actor = require("job.cancel")) -> dict[str, Any]:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next check."""
    return _job(jobs.cancel_job(get_ctx(request), job_id, actor=actor))
