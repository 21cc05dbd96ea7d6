"""Feedback, live quality, drift checks and the diagnosis report. Thin: parse, call ``monitoring``, answer.

Feedback is a label, or for a token tagger's prediction the true entity ``spans``
(``[{"type", "start", "end"}]``). It has two doors: ``POST /api/feedback`` for a signed-in reviewer
(``monitoring.feedback``), and ``POST /v1/deployments/{name}/feedback`` beside the
predict endpoint, which also admits an API key of that deployment with the ``feedback``
scope (a downstream system); its dependency carries the ``monitoring.feedback`` marker,
so ``route_decisions`` sees it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from chainkeeper import monitoring
from chainkeeper.api.auth import api_key_of, authenticate, request_id_of, require
from chainkeeper.api.body_limits import body_limit
from chainkeeper.api.deps import get_ctx
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import projects_allowed
from chainkeeper.monitoring import CHECKS, MAX_FEEDBACK_ITEMS, MAX_WINDOW_S, SOURCES, FeedbackOutcome
from chainkeeper.serving import MAX_TEXT_CHARS, DeploymentKey, authenticate_deployment_key

router = APIRouter(tags=["monitoring"])
# A batch of MAX_FEEDBACK_ITEMS, each with a tagger's entities, may pass the default 1 MiB.
FEEDBACK_BODY_LIMIT = body_limit(8 * 1024 * 1024, hint=f"Send at most {MAX_FEEDBACK_ITEMS} items per request.")


class SpanItem(BaseModel):
    """One true entity of a tagger's prediction; offsets into the text as sent to predict."""

    model_config = ConfigDict(extra="ignore")  # a served entity (with text and score) may be sent back as is

    type: str = Field(min_length=1, max_length=64, description="The entity type, e.g. PER.")
    start: int = Field(ge=0, le=MAX_TEXT_CHARS, description="First character (0-based).")
    end: int = Field(ge=1, le=MAX_TEXT_CHARS, description="One past the last character.")


def _one_truth(label: str | None, spans: list[SpanItem] | None) -> bool:
    return (label is None) != (spans is None)


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64, description="The request_id a predict call returned.")
    label: str | None = Field(None, min_length=1, max_length=255,
                              description="The true label, one of the model's labels (a classifier).")
    spans: list[SpanItem] | None = Field(None, max_length=1000,
                                         description="The true entities (a tagger); [] when the text has none.")

    @model_validator(mode="after")
    def _label_or_spans(self) -> FeedbackItem:
        if not _one_truth(self.label, self.spans):
            raise ValueError('send "label" (a classifier\'s prediction) or "spans" (a tagger\'s), not both or neither')
        return self

    def truth(self) -> str | list[dict[str, Any]]:
        return self.label if self.label is not None else [s.model_dump() for s in self.spans or []]


class FeedbackBody(BaseModel):
    """``{"request_id", "label"}`` (or ``"spans"`` for a tagger) for one prediction, or
    ``{"items": [...]}`` for several."""

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(None, min_length=1, max_length=64)
    label: str | None = Field(None, min_length=1, max_length=255)
    spans: list[SpanItem] | None = Field(None, max_length=1000)
    items: list[FeedbackItem] | None = Field(None, max_length=MAX_FEEDBACK_ITEMS)
    source: str | None = Field(None, description=f"Who knows the truth: {', '.join(SOURCES)}.")

    @model_validator(mode="after")
    def _one_form(self) -> FeedbackBody:
        single = self.request_id is not None or self.label is not None or self.spans is not None
        if single == (self.items is not None) or (single and (self.request_id is None
                                                              or not _one_truth(self.label, self.spans))):
            raise ValueError('send "request_id" with "label" (or "spans" for a tagger), or '
                             '"items": [{"request_id", "label" or "spans"}, ...]')
        return self

    def pairs(self) -> list[tuple[str, str | list[dict[str, Any]]]]:
        if self.items is not None:
            return [(i.request_id, i.truth()) for i in self.items]
        truth = self.label if self.label is not None else [s.model_dump() for s in self.spans or []]
        return [(self.request_id or "", truth)]


def _outcomes(outcomes: list[FeedbackOutcome]) -> dict[str, Any]:
    return {"results": [{"status": o.status, **asdict(o.feedback)} for o in outcomes],
            "created": sum(o.status == "created" for o in outcomes),
            "corrected": sum(o.status == "corrected" for o in outcomes),
            "unchanged": sum(o.status == "unchanged" for o in outcomes)}


def feedback_caller() -> Any:
    """The deployment feedback route's caller: a user (the service decides), or a key of the deployment."""

    def dependency(request: Request) -> tuple[Actor, DeploymentKey | None]:
        ctx = get_ctx(request)
        secret = api_key_of(request)
        if secret is None:  # a user: ``submit_feedback`` decides, in each prediction's project
            actor = authenticate(request)
            projects_allowed(ctx.db, actor, "monitoring.feedback")  # as require(): 403 before the body
            request.state.actor = actor
            return actor, None
        key = authenticate_deployment_key(ctx, secret, deployment=request.path_params.get("name", ""),
                                               scope="feedback")
        actor = Actor(f"apikey:{key.id}:{key.name}", frozenset(), request_id=request_id_of(request))
        request.state.actor = actor
        return actor, key

    dependency.chainkeeper_action = "monitoring.feedback"  # type: ignore[attr-defined]
    return Depends(dependency)


@router.post("/api/feedback", dependencies=[FEEDBACK_BODY_LIMIT])
def post_feedback(body: FeedbackBody, request: Request,
                  actor: Actor = require("monitoring.feedback")) -> dict[str, Any]:
    """Attach true labels to served predictions (all or nothing); re-sending is safe, a new label corrects."""
    return _outcomes(monitoring.submit_feedback(get_ctx(request), body.pairs(), actor=actor, source=body.source))


@router.post("/v1/deployments/{name}/feedback", dependencies=[FEEDBACK_BODY_LIMIT])
def post_deployment_feedback(name: str, body: FeedbackBody, request: Request,
                             caller: tuple[Actor, DeploymentKey | None] = feedback_caller()) -> dict[str, Any]:
    """Feedback on the predictions of one deployment, from a user or the deployment's API key."""
    actor, key = caller
    return _outcomes(monitoring.submit_feedback(get_ctx(request), body.pairs(), actor=actor, source=body.source,
                                              key=key, deployment=name))


@router.get("/api/feedback/{request_id}")
def get_feedback(request_id: str, request: Request, actor: Actor = require("monitoring.read")) -> dict[str, Any]:
    """The true label stored for a request id, next to the prediction."""
    return asdict(monitoring.show_feedback(get_ctx(request), request_id, actor=actor))


@router.get("/api/monitoring/deployments/{name}/quality")
def get_quality(name: str, request: Request, window_s: float = Query(3600, gt=0, le=30 * 86400),
                since: datetime | None = None, until: datetime | None = None,
                actor: Actor = require("monitoring.read")) -> dict[str, Any]:
    """Live accuracy, macro-F1 and ECE per window, with each version's offline numbers."""
    live = monitoring.live_quality(get_ctx(request), name, actor=actor, window=timedelta(seconds=window_s),
                                   since=since, until=until)
    return asdict(live)


@router.get("/api/monitoring/deployments/{name}/drift")
def get_drift(name: str, request: Request, check: str | None = Query(None, max_length=32),
              limit: int = Query(200, ge=1, le=2000), actor: Actor = require("monitoring.read")) -> dict[str, Any]:
    """Stored drift results, newest window first, and the latest of each check."""
    results, latest = monitoring.show_drift_results(get_ctx(request), name, actor=actor, check=check, limit=limit)
    return {"deployment": name, "checks": list(CHECKS), "results": [asdict(r) for r in results],
            "latest": {k: asdict(v) for k, v in latest.items()}}


class DriftJobBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    last: int | None = Field(None, ge=1, le=100_000, description="Check the latest N predictions.")
    window_s: float | None = Field(None, gt=0, le=MAX_WINDOW_S,
                                   description="Check the predictions of the last N seconds (at most 30 days).")
    every_s: float | None = Field(None, ge=1, le=MAX_WINDOW_S, description="Check every N seconds: creates a schedule "
                                  "(/api/schedules) instead of one job.")
    checks: list[str] | None = Field(None, description=f"Any of: {', '.join(CHECKS)} (default: all).")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="Significance level of every test.")


@router.post("/api/monitoring/deployments/{name}/drift", status_code=202)
def post_drift(name: str, body: DriftJobBody, request: Request,
               actor: Actor = require("monitoring.check")) -> dict[str, Any]:
    """Queue a drift job (follow it under /api/jobs/{id}); with ``every_s``, create the
    deployment's drift schedule and answer ``{"schedule": …}`` (manage it under /api/schedules/{id})."""
    if body.every_s is not None:
        schedule = monitoring.schedule_drift_checks(get_ctx(request), name, actor=actor, every_s=body.every_s,
                                                    last=body.last, window_s=body.window_s, checks=body.checks,
                                                    alpha=body.alpha)
        return {"schedule": asdict(schedule)}
    job = monitoring.submit_drift_job(get_ctx(request), name, actor=actor, last=body.last, window_s=body.window_s,
                                      checks=body.checks, alpha=body.alpha)
    return {**asdict(job), "finished": job.finished}


@router.get("/api/monitoring/deployments/{name}/report")
async def get_report(name: str, request: Request, since: datetime | None = None,
                     until: datetime | None = None, actor: Actor = require("monitoring.read")) -> dict[str, Any]:
    """The diagnosis report as JSON: slices, confused pairs, low-confidence, wrong and slow examples."""
    return await run_in_threadpool(
        lambda: monitoring.diagnose(get_ctx(request), name, actor=actor, since=since, until=until))


@router.get("/api/monitoring/deployments/{name}/report.html", response_class=HTMLResponse)
async def get_report_html(name: str, request: Request, since: datetime | None = None,
                          until: datetime | None = None, actor: Actor = require("monitoring.read")) -> HTMLResponse:
    """The diagnosis report as a self-contained HTML page with plots."""
    report = await run_in_threadpool(
        lambda: monitoring.diagnose(get_ctx(request), name, actor=actor, since=since, until=until))
    return HTMLResponse(monitoring.render_diagnosis_html(report))
