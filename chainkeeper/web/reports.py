"""The web page of a dataset version's quality report.

A shell: it reads the stored report (``chainkeeper.data.quality``) and renders
``dataset_report.html``, which embeds the same inline-SVG plots as the standalone HTML
report, inside the site's layout. ``/reports/latest`` goes to the newest version's
report (the overview's collect & clean card links there).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from chainkeeper.api.auth import require
from chainkeeper.core.context import Context
from chainkeeper.core.errors import ChainkeeperError, NotFound
from chainkeeper.governance.actors import Actor

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


@router.get("/datasets/{version_id}/report", response_class=HTMLResponse, name="dataset_report")
def dataset_report_page(version_id: int, request: Request, actor: Actor = require("data.read")) -> HTMLResponse:
    """A version's quality report inside the web UI."""
    from chainkeeper.data.quality import get_quality_report, report_sections
    from chainkeeper.web.pages import error_page, templates

    try:
        report = get_quality_report(_ctx(request), version_id)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "dataset_report.html", {
        "report": report, "version_id": version_id, "actor": actor, "body": Markup(report_sections(report))})


@router.get("/reports/latest", name="latest_dataset_report", dependencies=[require("data.read")])
def latest_report(request: Request) -> Response:
    """Redirect to the newest dataset version's report."""
    from chainkeeper.data.versions import list_dataset_versions
    from chainkeeper.web.pages import error_page

    versions = list_dataset_versions(_ctx(request).db, limit=1)
    if not versions:
        return error_page(request, NotFound("There are no dataset versions yet.",
                                            hint="Import a file and create a version: chainkeeper data import PATH, then "
                                            "chainkeeper data create NAME --source ID."))
    return RedirectResponse(f"/datasets/{versions[0].id}/report", status_code=303)
