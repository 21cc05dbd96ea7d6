"""The web page of a dataset version's quality report.

A shell: it reads the stored report (``chainkeeper.data.show_quality_report``) and renders
``dataset_report.html``, which embeds the same inline-SVG plots as the standalone HTML
report, inside the site's layout. ``/reports/latest`` goes to the newest version's
report (the overview's collect & clean card links there).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id
from chainkeeper.core.context import Context
from chainkeeper.core.errors import ChainkeeperError, NotFound
from chainkeeper.data import find_dataset_versions, report_sections, show_quality_report
from chainkeeper.governance.actors import Actor
from chainkeeper.web.pages import error_page, templates

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


@router.get("/datasets/{version_id}/report", response_class=HTMLResponse, name="dataset_report")
def dataset_report_page(version_id: Id, request: Request, actor: Actor = require("data.read")) -> HTMLResponse:
    """A version's quality report inside the web UI."""
    try:
        report = show_quality_report(_ctx(request), version_id, actor=actor)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "dataset_report.html", {
        "report": report, "version_id": version_id, "actor": actor, "body": Markup(report_sections(report))})


@router.get("/reports/latest", name="latest_dataset_report")
def latest_report(request: Request, actor: Actor = require("data.read")) -> Response:
    """Redirect to the report of the newest dataset version you may read."""
    try:
        versions = find_dataset_versions(_ctx(request), actor=actor, limit=1)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    if not versions:
        return error_page(request, NotFound(
            "There are no dataset versions yet.",
            hint="Import a file and create a version: chainkeeper data import PATH, then "
                 "chainkeeper data create NAME --source ID."))
    return RedirectResponse(f"/datasets/{versions[0].id}/report", status_code=303)
