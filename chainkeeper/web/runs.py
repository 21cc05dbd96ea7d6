"""The web pages of training runs: a shell over ``chainkeeper.training``'s run services.

- ``/runs``: every run, newest first, with its task, state, steps and headline test
  numbers (``?search=JOB``: the trials and best run of one search);
- ``/runs/{id}``: one run: state, the search it belongs to and any override to train on
  unreleased data, the live loss curve, the reproducibility record, the config and,
  once it has finished, its self-contained HTML evaluation report;
- ``/runs/{id}/curve``: the curve fragment the run page polls with htmx while the run
  is queued or running (an inline SVG drawn from the stored run points). When the run
  has finished, the fragment answers ``HX-Refresh`` so the page reloads once with the
  report, and stops polling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.governance.actors import Actor
from chainkeeper.training import (
    Run,
    find_runs,
    line_plot_svg,
    run_points,
    run_report_html,
    show_run,
)
from chainkeeper.web.pages import error_page, templates

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["CURVE_REFRESH_S", "headline", "router"]

router = APIRouter(include_in_schema=False)
# How often a live run page asks for new curve points.
CURVE_REFRESH_S = 1


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def headline(run: Run) -> str:
    """The run's test (else dev) numbers in a few words, whichever the task."""
    m: dict[str, Any] = run.metrics.get("test") or run.metrics.get("dev") or {}
    if "macro_f1" in m:
        return f"accuracy {m['accuracy']:.4f} · macro-F1 {m['macro_f1']:.4f}"
    if "f1" in m:
        return f"entity F1 {m['f1']:.4f}"
    if "perplexity" in m:
        return f"perplexity {m['perplexity']:.2f}"
    return "—"


def _curve(request: Request, run_id: int, actor: Actor) -> dict[str, Any]:
    """The loss curve of a run as an SVG, with its latest point and state."""
    ctx = _ctx(request)
    run = show_run(ctx, run_id, actor=actor)
    points = [(p["step"], p["value"]) for p in run_points(ctx, run_id, actor=actor, name="loss")]
    # Safe to mark: line_plot_svg escapes its title, and the rest is numbers.
    svg = Markup(line_plot_svg(points, title="training loss by step", width=640, height=240))
    return {"run": run, "svg": svg, "points": len(points), "last": points[-1] if points else None,
            "refresh_s": CURVE_REFRESH_S}


@router.get("/runs", response_class=HTMLResponse, name="runs")
def runs_page(request: Request, search: int | None = None, actor: Actor = require("run.read")) -> HTMLResponse:
    """Training runs the visitor may read, newest first (``?search=JOB``: one search's runs)."""
    try:
        runs = find_runs(_ctx(request), actor=actor, limit=200, search_job_id=search)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "runs.html", {"runs": runs, "headline": headline, "actor": actor})


@router.get("/runs/{run_id}", response_class=HTMLResponse, name="run")
def run_page(run_id: Id, request: Request, actor: Actor = require("run.read")) -> HTMLResponse:
    """One run: live curve while it trains, then the evaluation report."""
    try:
        curve = _curve(request, run_id, actor)
        report = run_report_html(_ctx(request), run_id, actor=actor) if curve["run"].finished else None
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "run.html", {**curve, "report": report, "headline": headline,
                                                            "actor": actor})


@router.get("/runs/{run_id}/curve", response_class=HTMLResponse, name="run_curve")
def run_curve(run_id: Id, request: Request, actor: Actor = require("run.read")) -> Response:
    """The live curve fragment (polled by the run page until the run ends)."""
    try:
        curve = _curve(request, run_id, actor)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    response = templates.TemplateResponse(request, "run_curve.html", curve)
    if curve["run"].finished and request.headers.get("HX-Request"):
        response.headers["HX-Refresh"] = "true"  # reload once: the finished page shows the report
    return response
