"""Liveness and readiness: what a load balancer or an orchestrator asks."""

from __future__ import annotations

from fastapi import APIRouter, Request

from chainkeeper.api.auth import public
from chainkeeper.api.deps import get_ctx

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[public()])
def healthz() -> dict[str, str]:
    """The process is alive (touches nothing else)."""
    return {"status": "ok"}


@router.get("/readyz", dependencies=[public()])
def readyz(request: Request) -> dict[str, str]:
    """The process can serve: the metadata store answers. 503 problem+json otherwise."""
    ctx = get_ctx(request)
    ctx.db.ping()  # raises StoreError (503) with the reason and the next step
    return {"status": "ready", "store": ctx.db.dialect}
