"""Liveness and readiness: what a load balancer or an orchestrator asks."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request

from chainkeeper.api.auth import public
from chainkeeper.api.deps import get_ctx
from chainkeeper.core.errors import ServiceUnavailable
from chainkeeper.core.jobs import count_live_workers

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[public()])
def healthz() -> dict[str, str]:
    """The process is alive (touches nothing else)."""
    return {"status": "ok"}


@router.get("/readyz", dependencies=[public()])
def readyz(request: Request) -> dict[str, str | int]:
    """The process can serve: the metadata store answers and, with ``ready_needs_worker``
    (``up`` with workers), a worker is alive to run queued jobs. 503 problem+json otherwise.

    One small query either way: probes call this every few seconds.
    """
    ctx = get_ctx(request)
    if not ctx.settings.ready_needs_worker:
        ctx.db.ping()  # raises StoreError (503) with the reason and the next step
        return {"status": "ready", "store": ctx.db.dialect}
    stale_after = ctx.settings.stale_after_s
    workers = count_live_workers(ctx.db, alive_within=timedelta(seconds=stale_after))  # also proves the store answers
    if workers == 0:
        raise ServiceUnavailable(
            f"No worker is alive: none has sent a heartbeat in the last {stale_after:g} s, so queued jobs would "
            "not run.",
            hint="'chainkeeper up' restarts its workers by itself (its log says why one ended); elsewhere start one "
            "with 'chainkeeper worker'.", transient=True)
    return {"status": "ready", "store": ctx.db.dialect, "workers": workers}
