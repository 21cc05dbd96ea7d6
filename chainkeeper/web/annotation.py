"""The annotation pages: projects, the keyboard-first labelling page, and the steward's review.

A shell like the rest of the web UI:

- ``/annotate``: your projects (an annotator's queues, or every project for a data
  steward, with a form to start one from a dataset version);
- ``/annotate/{id}``: one item at a time; ``static/annotate.js`` drives it from the
  keyboard and saves through the JSON API (``/api/annotation/...``) with the session
  cookie, so the page and the API share one set of rules;
- ``/annotate/{id}/review``: the steward's page: agreement figures, the adjudication
  queue, consensus by majority or Dawid-Skene, and the export to a dataset version.
  Its forms post here and redirect back (post/redirect/get).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chainkeeper.annotation import (
    adjudicate_item,
    adjudication_queue,
    annotator_queue,
    assign_batches,
    create_project,
    export_project,
    find_projects,
    find_schemas,
    list_decisions,
    project_figures,
    resolve_disputes,
    show_project,
)
from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id
from chainkeeper.core.context import Context
from chainkeeper.core.errors import ChainkeeperError, InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import is_allowed
from chainkeeper.web.pages import error_page, templates

__all__ = ["router", "DIGIT_KEYS"]

router = APIRouter(include_in_schema=False)

# Digit keys choose labels in this order: 1-9, then 0 for the tenth.
DIGIT_KEYS = [str(n) for n in range(1, 10)] + ["0"]


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _error(request: Request, exc: ChainkeeperError) -> HTMLResponse:
    return error_page(request, exc)


@router.get("/annotate", response_class=HTMLResponse, name="annotate_index")
def annotate_index(request: Request, actor: Actor = require("system.read")) -> HTMLResponse:
    """Your projects; a data steward sees all and may start one."""
    ctx = _ctx(request)
    # Whether to show the steward's form: schemas are shared, so it takes a global role.
    steward = is_allowed(ctx.db, actor, "annotation.manage")
    try:
        projects = find_projects(ctx, actor=actor)
        rows = []
        for p in projects:
            queue = [] if steward else annotator_queue(ctx, p.id, actor)
            done = sum(1 for t in queue if t.answer is not None and t.answer.status == "labelled")
            rows.append({"project": p, "total": len(queue), "done": done})
        schemas = find_schemas(ctx.db, actor=actor) if steward else []
    except ChainkeeperError as exc:
        return _error(request, exc)
    return _render(request, "annotate_index.html", {"actor": actor, "rows": rows, "steward": steward,
                                                    "schemas": schemas,
                                                    "error": request.query_params.get("error")})


@router.post("/annotate/projects", name="annotate_create")
def annotate_create(request: Request, name: str = Form(..., max_length=128), dataset_version_id: int = Form(...),
                    schema_id: int = Form(...), annotators: str = Form(..., max_length=2000),
                    overlap_k: int = Form(1), overlap_fraction: float = Form(0.0), queue_order: str = Form("random"),
                    order_key: str = Form(""), batch_size: int = Form(50),
                    actor: Actor = require("annotation.manage")) -> Response:
    """Start a project from a dataset version and deal its items to annotators."""
    names = [n.strip() for n in annotators.replace(";", ",").split(",") if n.strip()]
    try:
        if not names:
            raise InvalidInput("Name at least one annotator.", hint="Separate user names with commas.")
        project = create_project(_ctx(request), name=name, dataset_version_id=dataset_version_id,
                                 schema_id=schema_id, actor=actor, overlap_k=overlap_k,
                                 overlap_fraction=overlap_fraction, queue_order=queue_order,
                                 order_key=order_key or None)
        assign_batches(_ctx(request), project.id, annotators=names, actor=actor, batch_size=batch_size)
    except ChainkeeperError as exc:
        return _error(request, exc)
    return RedirectResponse(f"/annotate/{project.id}/review", status_code=303)


@router.get("/annotate/{project_id}", response_class=HTMLResponse, name="annotate_label")
def annotate_label(project_id: Id, request: Request, actor: Actor = require("system.read")) -> HTMLResponse:
    """The labelling page: one item of your queue at a time, keyboard first.

    Anyone who may read the project opens it; the queue service shows an annotator their
    own queue (annotation.label) and refuses the others.
    """
    try:
        project, schema = show_project(_ctx(request), project_id, actor=actor)
        queue = annotator_queue(_ctx(request), project_id, actor)
    except ChainkeeperError as exc:
        return _error(request, exc)
    # jsonable_encoder: answers carry datetimes, which the template's tojson cannot write.
    data = jsonable_encoder({"project_id": project.id, "kind": str(schema.kind), "labels": schema.label_names,
                             "keys": DIGIT_KEYS, "items": [asdict(t) for t in queue]})
    return _render(request, "annotate_label.html", {"actor": actor, "project": project, "schema": schema,
                                                    "keys": DIGIT_KEYS, "data": data, "total": len(queue)})


@router.get("/annotate/{project_id}/review", response_class=HTMLResponse, name="annotate_review")
def annotate_review(project_id: Id, request: Request,
                    actor: Actor = require("annotation.adjudicate")) -> HTMLResponse:
    """The steward's page: figures, disputes, consensus and export."""
    ctx = _ctx(request)
    try:
        disputes = adjudication_queue(ctx, project_id, actor)
        project, schema = show_project(ctx, project_id, actor=actor)
        figures = project_figures(ctx, project_id, actor)
        decisions = list_decisions(ctx, project_id, actor)
    except ChainkeeperError as exc:
        return _error(request, exc)
    return _render(request, "annotate_review.html", {
        "actor": actor, "project": project, "schema": schema, "disputes": disputes, "figures": figures,
        "decisions": decisions, "message": request.query_params.get("message")})


def _back(project_id: int, message: str) -> Response:
    return RedirectResponse(f"/annotate/{project_id}/review?message={quote(message)}", status_code=303)


@router.post("/annotate/{project_id}/review/decide", name="annotate_decide")
def annotate_decide(project_id: Id, request: Request, item_id: int = Form(...), label: str = Form(...),
                    expected_version: int = Form(...), note: str = Form("", max_length=2000),
                    actor: Actor = require("annotation.adjudicate")) -> Response:
    """Decide one disputed item (single-label projects; other kinds use the API)."""
    try:
        adjudicate_item(_ctx(request), project_id, item_id, actor, value={"label": label},
                        expected_version=expected_version, note=note)
    except ChainkeeperError as exc:
        return _error(request, exc)
    return _back(project_id, f"Item {item_id} decided: {label}.")


@router.post("/annotate/{project_id}/review/resolve", name="annotate_resolve")
def annotate_resolve(project_id: Id, request: Request, method: str = Form(...),
                     actor: Actor = require("annotation.adjudicate")) -> Response:
    """Decide every disputed item by majority vote or Dawid-Skene."""
    try:
        result = resolve_disputes(_ctx(request), project_id, actor, method=method)
    except ChainkeeperError as exc:
        return _error(request, exc)
    return _back(project_id, f"{method}: {len(result['decided'])} decided, {len(result['left'])} left.")


@router.post("/annotate/{project_id}/review/export", name="annotate_export")
def annotate_export(project_id: Id, request: Request, name: str = Form("", max_length=128),
                    actor: Actor = require("annotation.manage")) -> Response:
    """Freeze the settled labels as a new dataset version."""
    try:
        version = export_project(_ctx(request), project_id, actor, name=name or None)
    except ChainkeeperError as exc:
        return _error(request, exc)
    return _back(project_id, f"Exported as dataset version {version.name} v{version.version} (id {version.id}).")
