"""The web pages of the registry and the deployments: a shell over the same services.

- ``/models``: every model version with its stage and latest gate verdict, and per model
  name the production history (which version served when);
- ``/models/{id}``: the model card rendered from its Markdown, the gate results with
  values and thresholds, the export, the lineage (run, dataset version), the approvals
  and the stage history;
- ``/deployments`` and ``/deployments/{name}``: routes, canary share, shadow, the route
  history; for those allowed ``deployment.rollout``, forms to start a canary or a shadow
  and to promote the candidate, and for those allowed ``deployment.rollback``, a rollback
  button. Each form posts to ``/deployments/{name}/{canary,shadow,promote,rollback}``,
  which calls ``serving.rollout`` exactly as the API and the CLI do; a refusal re-renders
  the page with the service's message and its status, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id
from chainkeeper.core.errors import ChainkeeperError, InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import is_allowed
from chainkeeper.registry import (
    GateResult,
    ModelVersion,
    Stage,
    collect_card_facts,
    find_model_versions,
    render_card_html,
    render_model_card,
    show_gates,
    show_model_version,
    show_production,
)
from chainkeeper.serving import (
    RolloutStatus,
    RouteMode,
    find_deployments,
    project_of_deployment,
    promote_rollout,
    rollback_deployment,
    rollout_status,
    start_canary,
    start_shadow,
)
from chainkeeper.web.pages import error_page, templates

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

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
    """Model versions the visitor may read, newest first, grouped by name, with each name's
    production history."""
    ctx = _ctx(request)
    try:
        found = find_model_versions(ctx, actor=actor, limit=500)
        names = sorted({v.name for v in found})
        groups = {name: [_row(v, show_gates(ctx, v.id, actor=actor).results) for v in found if v.name == name]
                  for name in names}
        timelines = {name: show_production(ctx, name, actor=actor).periods for name in names}
    except ChainkeeperError as exc:
        return error_page(request, exc)
    labels = {v.id: v.label for v in found}
    return templates.TemplateResponse(request, "models.html", {"groups": groups, "timelines": timelines,
                                                               "labels": labels, "actor": actor})


@router.get("/models/{model_version_id}", response_class=HTMLResponse, name="model")
def model_page(model_version_id: Id, request: Request, actor: Actor = require("model.read")) -> HTMLResponse:
    """One version: its card, gates, export, lineage, approvals and history."""
    try:
        facts = collect_card_facts(_ctx(request), model_version_id, actor=actor)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    # Safe to mark: render_card_html escapes any raw HTML a stored value might hold.
    card = Markup(render_card_html(render_model_card(facts)))
    return templates.TemplateResponse(request, "model.html", {"facts": facts, "v": facts.version, "card": card,
                                                              "actor": actor})


@router.get("/deployments", response_class=HTMLResponse, name="deployments")
def deployments_page(request: Request, actor: Actor = require("deployment.read")) -> HTMLResponse:
    """Every deployment the visitor may read, with its live route: primary, canary share or shadow."""
    ctx = _ctx(request)
    try:
        statuses = [rollout_status(ctx, d.name, actor=actor) for d in find_deployments(ctx, actor=actor)]
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "deployments.html", {"statuses": statuses, "actor": actor})


@router.get("/deployments/{name}", response_class=HTMLResponse, name="deployment")
def deployment_page(name: str, request: Request, actor: Actor = require("deployment.read")) -> HTMLResponse:
    """One deployment: its route, the route history and, for those allowed, the rollout forms."""
    return _deployment_response(request, name, actor)


def _deployment_response(request: Request, name: str, actor: Actor, *, error: ChainkeeperError | None = None,
                         status: int = 200, form: dict[str, str] | None = None) -> HTMLResponse:
    """The deployment page; ``error`` and ``form`` show a refused change with what was sent."""
    ctx = _ctx(request)
    try:
        state = rollout_status(ctx, name, actor=actor)
        ids = {i for r in state.history for i in (r.primary_version_id, r.candidate_version_id,
                                                  r.previous_version_id) if i}
        labels = {i: show_model_version(ctx, i, actor=actor).label for i in ids}
        siblings = find_model_versions(ctx, actor=actor, name=state.primary.name, limit=500)
        project = project_of_deployment(ctx.db, name)
    except ChainkeeperError as exc:
        # A refused change is the answer even when the page cannot be shown (a made-up name).
        return error_page(request, error or exc)
    # Offered as candidates: every live version of the model but the primary. A candidate
    # still in 'candidate' is listed too, so the service says why it may not take traffic.
    choices = [v for v in siblings if v.id != state.primary.id and v.stage != Stage.ARCHIVED]
    context: dict[str, Any] = {
        "s": state, "labels": labels, "actor": actor, "error": error, "choices": choices,
        "form": {**_rollout_defaults(state, choices), **(form or {})},
        "registry_production": next((v for v in siblings if v.stage == Stage.PRODUCTION), None),
        "may_rollback": is_allowed(ctx.db, actor, "deployment.rollback", project=project),
        "may_rollout": is_allowed(ctx.db, actor, "deployment.rollout", project=project)}
    return templates.TemplateResponse(request, "deployment.html", context, status_code=status)


def _rollout_defaults(state: RolloutStatus, choices: list[ModelVersion]) -> dict[str, str]:
    """What the rollout forms start with: the running candidate and share, so shifting a
    canary is one edit; else the newest version that may take traffic, at 10 %."""
    eligible = [v.id for v in choices if v.stage in (Stage.STAGING, Stage.PRODUCTION)]
    candidate = state.candidate.id if state.candidate else next(iter(eligible), None)
    percent = state.route.percent if state.route.mode == RouteMode.CANARY else 10
    return {"model_version_id": str(candidate or ""), "percent": str(percent)}


def _whole_number(value: str, field: str) -> int:
    """A form field as an int; a form sends text, so a typo is the caller's error, not a 500."""
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidInput(f"The {field} must be a whole number, got {value.strip()!r}.",
                           hint=f"Enter the {field} as digits, e.g. 20.") from None


def _switch(request: Request, name: str, actor: Actor, change: Callable[[], object],
            form: dict[str, str] | None = None) -> Response:
    """Run one rollout change; show the deployment again, or the refusal with what was sent."""
    try:
        change()
    except ChainkeeperError as exc:
        # Shown on the deployment's page, with its status: nothing changed.
        return _deployment_response(request, name, actor, error=exc, status=exc.status, form=form)
    return RedirectResponse(f"/deployments/{name}", status_code=303)


@router.post("/deployments/{name}/canary", name="deployment_canary")
def canary_submit(name: str, request: Request, model_version_id: str = Form(""), percent: str = Form(""),
                  actor: Actor = require("deployment.rollout")) -> Response:
    """Send a share of callers to a candidate (``serving.rollout.start_canary``)."""
    def change() -> None:
        start_canary(_ctx(request), name, _whole_number(model_version_id, "model version"),
                     percent=_whole_number(percent, "percentage"), actor=actor)

    return _switch(request, name, actor, change, {"model_version_id": model_version_id, "percent": percent})


@router.post("/deployments/{name}/shadow", name="deployment_shadow")
def shadow_submit(name: str, request: Request, model_version_id: str = Form(""),
                  actor: Actor = require("deployment.rollout")) -> Response:
    """Let a candidate shadow every request (``serving.rollout.start_shadow``)."""
    def change() -> None:
        start_shadow(_ctx(request), name, _whole_number(model_version_id, "model version"), actor=actor)

    return _switch(request, name, actor, change, {"model_version_id": model_version_id})


@router.post("/deployments/{name}/promote", name="deployment_promote")
def promote_submit(name: str, request: Request,
                   actor: Actor = require("deployment.rollout")) -> Response:
    """Make the canary or shadow candidate answer all traffic (``serving.rollout.promote_rollout``)."""
    return _switch(request, name, actor, lambda: promote_rollout(_ctx(request), name, actor=actor))


@router.post("/deployments/{name}/rollback", name="deployment_rollback")
def rollback_submit(name: str, request: Request, comment: str = Form(""),
                    actor: Actor = require("deployment.rollback")) -> Response:
    """Roll the deployment back (``serving.rollout.rollback_deployment``), then show it again."""
    return _switch(request, name, actor,
                   lambda: rollback_deployment(_ctx(request), name, actor=actor, comment=comment.strip()[:2000]))
