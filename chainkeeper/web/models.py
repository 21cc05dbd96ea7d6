"""The web pages of the registry and the deployments: a shell over the same services.

- ``/models``: every model version with its stage and latest gate verdict, and per model
  name the production history (which version served when);
- ``/models/{id}``: the model card rendered from its Markdown, the gate results with
  values and thresholds, the export, the lineage (run, dataset version), the approvals
  and the stage history;
- ``/deployments`` and ``/deployments/{name}``: routes, canary share, shadow, the route
  history, and a rollback button for those allowed ``deployment.rollback``. The button
  posts to ``/deployments/{name}/rollback``, which calls ``serving.rollout`` exactly as
  the API and the CLI do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from chainkeeper.api.auth import require
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import is_allowed

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.registry.gates import GateResult
    from chainkeeper.registry.versions import ModelVersion

__all__ = ["ModelRow", "router"]

router = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


@dataclass(frozen=True)
class ModelRow:
    """One version as the list shows it: the version and its latest gate verdict."""

    version: ModelVersion
    macro_f1: float | None
    gates_passed: int
    gates_failed: int

    @property
    def verdict(self) -> str:
        """The latest gate evaluation in a word: passed, failed or not evaluated."""
        if self.gates_failed:
            return "failed"
        return "passed" if self.gates_passed else "not evaluated"


def _row(version: ModelVersion, results: list[GateResult]) -> ModelRow:
    f1 = (version.metrics.get("test") or {}).get("macro_f1")
    passed = sum(r.passed for r in results)
    return ModelRow(version, float(f1) if f1 is not None else None, passed, len(results) - passed)


@router.get("/models", response_class=HTMLResponse, name="models")
def models_page(request: Request, actor: Actor = require("model.read")) -> HTMLResponse:
    """Model versions, newest first, grouped by name, with each name's production history."""
    from chainkeeper.registry.gates import latest_gate_results
    from chainkeeper.registry.versions import list_model_versions, production_timeline
    from chainkeeper.web.pages import error_page, templates

    db = _ctx(request).db
    try:
        found = list_model_versions(db, limit=500)
        names = sorted({v.name for v in found})
        groups = {name: [_row(v, latest_gate_results(db, v.id)) for v in found if v.name == name] for name in names}
        timelines = {name: production_timeline(db, name) for name in names}
    except ChainkeeperError as exc:
        return error_page(request, exc)
    labels = {v.id: v.label for v in found}
    return templates.TemplateResponse(request, "models.html", {"groups": groups, "timelines": timelines,
                                                               "labels": labels, "actor": actor})


@router.get("/models/{model_version_id}", response_class=HTMLResponse, name="model")
def model_page(model_version_id: int, request: Request, actor: Actor = require("model.read")) -> HTMLResponse:
    """One version: its card, gates, export, lineage, approvals and history."""
    from chainkeeper.registry.cards import collect_card_facts, render_card_html, render_model_card
    from chainkeeper.web.pages import error_page, templates

    try:
        facts = collect_card_facts(_ctx(request), model_version_id)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    # Safe to mark: render_card_html escapes any raw HTML a stored value might hold.
    card = Markup(render_card_html(render_model_card(facts)))
    return templates.TemplateResponse(request, "model.html", {"facts": facts, "v": facts.version, "card": card,
                                                              "actor": actor})


@router.get("/deployments", response_class=HTMLResponse, name="deployments")
def deployments_page(request: Request, actor: Actor = require("deployment.read")) -> HTMLResponse:
    """Every deployment with its live route: primary, canary share or shadow."""
    from chainkeeper.serving.deployments import list_deployments
    from chainkeeper.serving.rollout import rollout_status
    from chainkeeper.web.pages import error_page, templates

    db = _ctx(request).db
    try:
        statuses = [rollout_status(db, d.name) for d in list_deployments(db)]
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "deployments.html", {"statuses": statuses, "actor": actor})


@router.get("/deployments/{name}", response_class=HTMLResponse, name="deployment")
def deployment_page(name: str, request: Request, actor: Actor = require("deployment.read")) -> HTMLResponse:
    """One deployment: its route, the route history and, for those allowed, a rollback button."""
    return _deployment_response(request, name, actor)


def _deployment_response(request: Request, name: str, actor: Actor, *, error: ChainkeeperError | None = None,
                         status: int = 200) -> HTMLResponse:
    from chainkeeper.registry.versions import get_model_version
    from chainkeeper.serving.rollout import rollout_status
    from chainkeeper.web.pages import error_page, templates

    db = _ctx(request).db
    try:
        state = rollout_status(db, name)
        ids = {i for r in state.history for i in (r.primary_version_id, r.candidate_version_id,
                                                  r.previous_version_id) if i}
        labels = {i: get_model_version(db, i).label for i in ids}
    except ChainkeeperError as exc:
        return error_page(request, exc)
    context: dict[str, Any] = {"s": state, "labels": labels, "actor": actor, "error": error,
                               "may_rollback": is_allowed(db, actor, "deployment.rollback", project=name)}
    return templates.TemplateResponse(request, "deployment.html", context, status_code=status)


@router.post("/deployments/{name}/rollback", name="deployment_rollback")
def rollback_submit(name: str, request: Request, comment: str = Form(""),
                    actor: Actor = require("deployment.rollback", project_from="name")) -> Response:
    """Roll the deployment back (``serving.rollout.rollback_deployment``), then show it again."""
    from chainkeeper.serving.rollout import rollback_deployment

    try:
        rollback_deployment(_ctx(request), name, actor=actor, comment=comment.strip()[:2000])
    except ChainkeeperError as exc:
        # Shown on the deployment's page, with its status: nothing changed.
        return _deployment_response(request, name, actor, error=exc, status=exc.status)
    return RedirectResponse(f"/deployments/{name}", status_code=303)
