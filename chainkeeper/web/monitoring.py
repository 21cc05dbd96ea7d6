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


def monitoring_view(ctx: Context, deployment: str | None, window: str) -> MonitoringView:
    """Gather the charts and tables of the page (raises NotFound for an unknown deployment)."""
    from chainkeeper.monitoring.charts import bar_chart_svg, series_svg
    from chainkeeper.monitoring.drift_jobs import latest_drift_results, list_drift_results
    from chainkeeper.monitoring.quality import live_quality, parse_window
    from chainkeeper.serving.deployments import get_deployment_by_name, list_deployments

    names = [d.name for d in list_deployments(ctx.db)]
    view = MonitoringView(deployments=names, deployment=deployment or (names[0] if names else None), window=window)
    if view.deployment is None:
        return view
    dep = get_deployment_by_name(ctx.db, view.deployment)
    live = live_quality(ctx.db, dep.name, window=parse_window(window))
    current = [w for w in live.windows if w.model_version_id == dep.model_version_id and w.accuracy is not None]
    view.offline = live.offline.get(dep.model_version_id, {})
    references = {f"offline {k}": v for k, v in view.offline.items() if k != "ece" and v is not None}
    view.charts["quality"] = Markup(series_svg(
        {"live accuracy": [(w.end, w.accuracy) for w in current],
         "live macro-F1": [(w.end, w.macro_f1) for w in current]},  # type: ignore[misc]
        title=f"live quality per {window} (version {dep.model_version_id})", references=references, low=0.0,
        high=1.0))
    view.quality_rows = list(reversed(live.windows))[:24]

    latest = latest_drift_results(ctx.db, dep.name)
    view.latest = [latest[name] for name in sorted(latest)]
    view.charts["drift"] = Markup(bar_chart_svg(
        [(r.check, r.statistic / r.threshold if r.threshold else 0.0) for r in view.latest],
        title="newest drift check: statistic / threshold (past the line = fired)", marker=1.0,
        highlight=[r.drifted for r in view.latest]))
    history: dict[str, list[Any]] = {}
    for r in reversed(list_drift_results(ctx.db, dep.name, limit=500)):
        if r.threshold:
            history.setdefault(r.check, []).append((r.window_end, r.statistic / r.threshold))
    view.charts["drift_history"] = Markup(series_svg(history, title="drift statistic / threshold over time",
                                                     references={"threshold": 1.0}, low=0.0))
    view.charts.update(_metric_charts(ctx, dep.name))
    return view


def _metric_charts(ctx: Context, deployment: str) -> dict[str, Markup]:
    from chainkeeper.monitoring.charts import series_svg
    from chainkeeper.monitoring.metrics import metric_series

    since = utcnow() - timedelta(hours=24)
    charts = {}
    for name, title in CHARTED_METRICS.items():
        by_version: dict[str, list[Any]] = {}
        for point in metric_series(ctx.db, name, since, deployment):
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
        view = monitoring_view(request.app.state.ctx, deployment, window)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "monitoring.html", {"view": view, "actor": actor})


@router.get("/monitoring/{name}/report", response_class=HTMLResponse, name="monitoring_report",
            dependencies=[require("monitoring.read", project_from="name")])
def monitoring_report_page(name: str, request: Request) -> HTMLResponse:
    """The diagnosis report of a deployment (the same page as the API's report.html)."""
    from chainkeeper.monitoring.diagnosis import diagnose, render_diagnosis_html
    from chainkeeper.web.pages import error_page

    try:
        report = diagnose(request.app.state.ctx.db, name)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return HTMLResponse(render_diagnosis_html(report))
