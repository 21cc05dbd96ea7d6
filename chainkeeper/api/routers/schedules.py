"""Schedules of recurring jobs: list, show, pause, resume, delete. Thin: parse, call
``governance.schedules``, answer. They are created where their work is asked for
(``POST /api/monitoring/deployments/{name}/drift`` with ``every_s`` …)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request

from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id, get_ctx
from chainkeeper.governance import schedules
from chainkeeper.governance.actors import Actor

router = APIRouter(tags=["schedules"])


@router.get("/api/schedules")
def list_schedules(request: Request, kind: str | None = Query(None, max_length=64),
                   actor: Actor = require("job.read")) -> list[dict[str, Any]]:
    """The schedules the caller may read, oldest first."""
    return [asdict(s) for s in schedules.find_schedules(get_ctx(request), actor=actor, kind=kind)]


@router.get("/api/schedules/{schedule_id}")
def get_schedule(schedule_id: Id, request: Request, actor: Actor = require("job.read")) -> dict[str, Any]:
    """One schedule: its job kind, params, period, next and last firing."""
    return asdict(schedules.show_schedule(get_ctx(request), schedule_id, actor=actor))


@router.post("/api/schedules/{schedule_id}/pause")
def pause_schedule(schedule_id: Id, request: Request, actor: Actor = require("job.cancel")) -> dict[str, Any]:
    """Stop it from firing (a job it queued still runs)."""
    return asdict(schedules.pause_schedule(get_ctx(request), schedule_id, actor=actor))


@router.post("/api/schedules/{schedule_id}/resume")
def resume_schedule(schedule_id: Id, request: Request, actor: Actor = require("job.cancel")) -> dict[str, Any]:
    """Let it fire again (once at once if its time has passed)."""
    return asdict(schedules.resume_schedule(get_ctx(request), schedule_id, actor=actor))


@router.delete("/api/schedules/{schedule_id}")
def delete_schedule(schedule_id: Id, request: Request, actor: Actor = require("job.cancel")) -> dict[str, Any]:
    """Delete it (the jobs it queued stay); answers the schedule as it was."""
    return asdict(schedules.remove_schedule(get_ctx(request), schedule_id, actor=actor))
