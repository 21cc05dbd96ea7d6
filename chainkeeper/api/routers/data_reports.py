"""A dataset version's quality report (JSON and HTML) and the diff between two versions.

Thin: parse, call ``chainkeeper.data.quality`` / ``chainkeeper.data.diff``, answer.
Reading a report or a diff changes nothing, so it needs ``data.read`` (in the versions'
projects: the services decide).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id, get_ctx
from chainkeeper.data import (
    diff_dataset_versions,
    render_quality_html,
    show_quality_report,
)
from chainkeeper.governance.actors import Actor

router = APIRouter(tags=["data"])


@router.get("/api/datasets/{version_id}/report")
def api_quality_report(version_id: Id, request: Request, actor: Actor = require("data.read")) -> dict[str, Any]:
    """The version's quality report: per-step row counts, removals, PII per type, labels, lengths."""
    return show_quality_report(get_ctx(request), version_id, actor=actor)


@router.get("/api/datasets/{version_id}/report.html", response_class=HTMLResponse)
def api_quality_report_html(version_id: Id, request: Request, actor: Actor = require("data.read")) -> HTMLResponse:
    """The same report as one self-contained HTML page (inline SVG plots, no script)."""
    return HTMLResponse(render_quality_html(show_quality_report(get_ctx(request), version_id, actor=actor)))


@router.get("/api/datasets/{a}/diff/{b}")
async def api_diff_versions(a: int, b: int, request: Request, actor: Actor = require("data.read")) -> dict[str, Any]:
    """Rows added, removed, changed, moved between splits, and label changes from version a to b."""
    # Reads two snapshots: off the event loop, so other requests are not held up.
    diff = await run_in_threadpool(diff_dataset_versions, get_ctx(request), a, b, actor=actor)
    return diff.to_dict()
