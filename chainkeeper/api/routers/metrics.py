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
from chainkeeper.monitoring.metrics import CONTENT_TYPE, METRIC_NAMES, metric_series

__all__ = ["router"]

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", dependencies=[require("monitoring.read")], response_class=Response)
def prometheus_metrics(request: Request) -> Response:
    """Every serving metric of this process, in Prometheus text format."""
    return Response(serving_state(request.app).metrics.render(), media_type=CONTENT_TYPE)


@router.get("/api/metrics", dependencies=[require("monitoring.read")])
def list_metric_names() -> dict[str, str]:
    """The stored series that charts and alert rules may ask for, with their meaning."""
    return dict(METRIC_NAMES)


@router.get("/api/metrics/{name}", dependencies=[require("monitoring.read")])
def stored_series(name: str, request: Request, minutes: float = Query(60.0, gt=0, le=60 * 24 * 90),
                  deployment: str | None = Query(None, max_length=128)) -> list[dict[str, Any]]:
    """One stored series over the last ``minutes``, oldest first (see ``metric_series``)."""
    since = datetime.now(UTC) - timedelta(minutes=minutes)
    return [{"at": p.at.isoformat(), "value": p.value, "labels": p.labels}
            for p in metric_series(get_ctx(request).db, name, since, deployment)]
