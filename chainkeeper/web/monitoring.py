"""The monitoring page: live quality, drift against thresholds and serving metrics of a deployment.

``/monitoring`` (``monitoring.read``) shows one deployment at a time (``?deployment=``,
default the most recently changed) with inline SVG charts drawn by
``monitoring.charts``: live accuracy and macro-F1 per window against the version's
offline test numbers, the newest statistic of each drift check as a share of its
threshold (a bar past the dashed line fired), each check's history, and the stored
serving metrics (requests per second, p99 latency). ``/monitoring/{name}/report`` is
the diagnosis report inside the site. A shell: every number comes from a service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from chainkeeper.api.auth import require
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.governance.actors import Actor
from chainkeeper.monitoring import (
    bar_chart_svg,
    diagnose,
    live_quality,
    parse_window,
    read_metric_series,
    render_diagnosis_html,
    series_svg,
    show_drift_results,
)
from chainkeeper.serving import find_deployments

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["MonitoringView", "monitoring_view", "router"]

router = APIRouter(include_in_schema=False)
# The serving metrics charted, with their axis titles.
CHARTED_METRICS = {"requests_per_s": "requests per second", "latency_p99_ms": "p99 latency (ms)"}


@dataclass
class MonitoringView:
    """What the page shows for one deployment."""

    deployments: list[str]
    deployment: str | None
    window: str
    charts: dict[str, Markup] = field(default_factory=dict)
    latest: list[Any] = field(default_factory=list)
    quality_rows: list[Any] = field(default_factory=list)
    offline: dict[str, float | None] = field(default_factory=dict)


def monitoring_view(ctx: Context, deployment: str | None, window: str, *, actor: Actor) -> MonitoringView:
    """Gather the charts and tables of the page for ``actor`` (raises NotFound for an unknown
    deployment, Forbidden for one they may not read)."""
    found = find_deployments(ctx, actor=actor)
    names = [d.name for d in found]
    view = MonitoringView(deployments=names, deployment=deployment or (names[0] if names else None), window=window)
    if view.deployment is None:
        return view
    live = live_quality(ctx, view.deployment, actor=actor, window=parse_window(window))
    results, latest = show_drift_results(ctx, view.deployment, actor=actor, limit=500)
    dep = next(d for d in found if d.name == view.deployment)
    current = [w for w in live.windows if w.model_version_id == dep.model_version_id and w.accuracy is not None]
    view.offline = live.offline.get(dep.model_version_id, {})
    references = {f"offline {k}": v for k, v in view.offline.items() if k != "ece" and v is not None}
    view.charts["quality"] = Markup(series_svg(
        {"live accuracy": [(w.end, w.accuracy) for w in current if w.accuracy is not None],
         "live macro-F1": [(w.end, w.macro_f1) for w in current if w.macro_f1 is not None]},
        title=f"live quality per {window} (version {dep.model_version_id})", references=references, low=0.0,
        high=1.0))
    view.quality_rows = list(reversed(live.windows))[:24]

    view.latest = [latest[name] for name in sorted(latest)]
    view.charts["drift"] = Markup(bar_chart_svg(
        [(r.check, r.statistic / r.threshold if r.threshold else 0.0) for r in view.latest],
        title="newest drift check: statistic / threshold (past the line = fired)", marker=1.0,
        highlight=[r.drifted for r in view.latest]))
    history: dict[str, list[Any]] = {}
    for r in reversed(results):
        if r.threshold:
            history.setdefault(r.check, []).append((r.window_end, r.statistic / r.threshold))
    view.charts["drift_history"] = Markup(series_svg(history, title="drift statistic / threshold over time",
                                                     references={"threshold": 1.0}, low=0.0))
    view.charts.update(_metric_charts(ctx, dep.name, actor))
    return view


def _metric_charts(ctx: Context, deployment: str, actor: Actor) -> dict[str, Markup]:
    since = utcnow() - timedelta(hours=24)
    charts = {}
    for name, title in CHARTED_METRICS.items():
        by_version: dict[str, list[Any]] = {}
        for point in read_metric_series(ctx, name, since, deployment, actor=actor):
            by_version.setdefault(f"version {point.labels.get('model_version', '?')}", []).append(
                (point.at, point.value))
        charts[name] = Markup(series_svg(by_version, title=f"{title}, last 24 h", low=0.0))
    return charts


@router.get("/monitoring", response_class=HTMLResponse, name="monitoring")
def monitoring_page(request: Request, deployment: str | None = None, window: str = "1h",
                    actor: Actor = require("monitoring.read")) -> HTMLResponse:
    """Live quality, drift and serving metrics of one deployment."""
    from chainkeeper.web.pages import error_page, templates

    try:
        view = monitoring_view(request.app.state.ctx, deployment, window, actor=actor)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "monitoring.html", {"view": view, "actor": actor})


@router.get("/monitoring/{name}/report", response_class=HTMLResponse, name="monitoring_report")
def monitoring_report_page(name: str, request: Request, actor: Actor = require("monitoring.read")) -> HTMLResponse:
    """The diagnosis report of a deployment (the same page as the API's report.html)."""
    from chainkeeper.web.pages import error_page

    try:
        report = diagnose(request.app.state.ctx, name, actor=actor)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return HTMLResponse(render_diagnosis_html(report))
