"""``GET /metrics`` (Prometheus text format) and the stored series behind the UI's charts.

Thin: the registry is the app's ``ServingState.metrics`` (``routers.serving``); the
stored series come from ``monitoring.metrics.metric_series``. Both need
``monitoring.read``: a Prometheus scraper sends a token (``authorization`` /
``bearer_token`` in its scrape config).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from chainkeeper.api.auth import require
from chainkeeper.api.deps import get_ctx
from chainkeeper.api.routers.serving import serving_state
from chainkeeper.governance.actors import Actor
from chainkeeper.monitoring import (
    CONTENT_TYPE,
    metric_names,
    read_metric_series,
    render_metrics,
)

__all__ = ["router"]

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", response_class=Response)
def prometheus_metrics(request: Request, actor: Actor = require("monitoring.read")) -> Response:
    """Every serving metric of this process, in Prometheus text format."""
    return Response(render_metrics(get_ctx(request), serving_state(request.app).metrics, actor=actor),
                    media_type=CONTENT_TYPE)


@router.get("/api/metrics")
def list_metric_names(request: Request, actor: Actor = require("monitoring.read")) -> dict[str, str]:
    """The stored series that charts and alert rules may ask for, with their meaning."""
    return metric_names(get_ctx(request), actor=actor)


@router.get("/api/metrics/{name}")
def stored_series(name: str, request: Request, minutes: float = Query(60.0, gt=0, le=60 * 24 * 90),
                  deployment: str | None = Query(None, max_length=128),
                  actor: Actor = require("monitoring.read")) -> list[dict[str, Any]]:
    """One stored series over the last ``minutes``, oldest first (see ``metric_series``): the
    points of the deployments the caller may read."""
    since = datetime.now(UTC) - timedelta(minutes=minutes)
    return [{"at": p.at.isoformat(), "value": p.value, "labels": p.labels}
            for p in read_metric_series(get_ctx(request), name, since, deployment, actor=actor)]
