"""The web pages of the data stage: a shell over the same services as ``chainkeeper data``.

- ``/data``: imported sources (format, encoding, rows accepted and quarantined, and why)
  and dataset versions (task, rows per split, labels, release state);
- ``/data/versions/{id}``: one version's statistics and splits, its quality report
  embedded (the same inline-SVG plots as the standalone report), its recipe with each
  step's rows in and out and examples, and the diff to the previous version of the
  same dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.data import (
    KINDS,
    DatasetVersion,
    diff_dataset_versions,
    find_dataset_versions,
    find_sources,
    report_sections,
    show_dataset_version,
    show_quality_report,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.web.pages import error_page, templates

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["router", "previous_version"]

router = APIRouter(include_in_schema=False)
# The lists show at most this many sources and versions, newest first.
LIST_LIMIT = 200


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def previous_version(found: list[DatasetVersion], version: DatasetVersion) -> DatasetVersion | None:
    """The version of the same dataset just before ``version`` among ``found`` (pure)."""
    earlier = [v for v in found if v.name == version.name and v.version < version.version]
    return max(earlier, key=lambda v: v.version, default=None)


@router.get("/data", response_class=HTMLResponse, name="data")
def data_page(request: Request, actor: Actor = require("data.read")) -> HTMLResponse:
    """Sources and the dataset versions you may read, newest first."""
    ctx = _ctx(request)
    try:
        sources = find_sources(ctx, actor=actor, limit=LIST_LIMIT)
        versions = find_dataset_versions(ctx, actor=actor, limit=LIST_LIMIT)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "data.html", {"actor": actor, "sources": sources,
                                                             "versions": versions})


@router.get("/data/versions/{version_id}", response_class=HTMLResponse, name="data_version")
def data_version_page(version_id: Id, request: Request, actor: Actor = require("data.read")) -> HTMLResponse:
    """One dataset version: statistics, splits, quality report, recipe and the diff to the previous version."""
    ctx = _ctx(request)
    try:
        version = show_dataset_version(ctx, version_id, actor=actor)
        report = show_quality_report(ctx, version_id, actor=actor)
        previous = previous_version(find_dataset_versions(ctx, actor=actor, name=version.name), version)
        diff = diff_dataset_versions(ctx, previous.id, version.id, actor=actor) if previous else None
    except ChainkeeperError as exc:
        return error_page(request, exc)
    context: dict[str, Any] = {
        "actor": actor, "version": version, "previous": previous, "diff": diff, "kinds": KINDS,
        "steps": [_step_view(step) for step in version.recipe], "report_body": Markup(report_sections(report)),
        "splits": list((version.stats.get("rows_per_split") or {}).items()),
    }
    return templates.TemplateResponse(request, "data_version.html", context)


def _step_view(step: dict[str, Any]) -> dict[str, Any]:
    """A stored step report as the page shows it: counts, parameters, details, examples as text pairs."""
    examples = []
    for example in step.get("examples") or []:
        fields = {k: v for k, v in example.items() if k not in ("before", "after")}
        examples.append({"before": example.get("before"), "after": example.get("after"),
                         "removed": "before" in example and example.get("after") is None,
                         "note": ", ".join(f"{k} {v}" for k, v in fields.items())})
    return {"name": step.get("name"), "rows_in": int(step.get("rows_in", 0)), "rows_out": int(step.get("rows_out", 0)),
            "changed": int(step.get("changed", 0)), "params": step.get("params") or {},
            "details": step.get("details") or {}, "examples": examples}
