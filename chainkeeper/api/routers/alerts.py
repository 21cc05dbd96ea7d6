"""Alerts, silences, maintenance tickets and the retraining loop over HTTP. Thin: parse, call, answer.

Reading needs ``monitoring.read``; rules, silences and ticket steps need ``alert.manage``
(operator); the retraining steps need ``maintenance.retrain`` (ml_engineer). The route
only says who calls; every service function decides, in the project of the deployment
its object belongs to, and writes the audit ledger.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from chainkeeper import monitoring
from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id, get_ctx
from chainkeeper.chain import (
    FEEDBACK_TEST_SHARE,
    close_when_served,
    evaluate_retraining,
    hand_to_release_gate,
    start_retraining,
    train_on_released,
)
from chainkeeper.core.db import utcnow
from chainkeeper.governance.actors import Actor
from chainkeeper.monitoring import (
    MAX_SILENCE_S,
    MAX_WINDOW_S,
    AlertRule,
    AlertState,
    Notification,
    Severity,
    TicketState,
)
from chainkeeper.training import parse_train_config

router = APIRouter(tags=["alerts"])


class RuleBody(BaseModel):
    """A rule: alert when ``metric comparator threshold`` over the last ``window_s`` seconds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=128)
    metric: str = Field(..., description="A metric or check name; GET /api/alert-metrics lists them.")
    comparator: Literal[">", ">=", "<", "<="]
    threshold: float
    window_s: int = Field(300, ge=1, le=MAX_WINDOW_S)
    severity: Severity = Severity.WARNING
    deployment: str | None = Field(None, description="Watch this deployment only (default: every deployment).")
    webhook_url: str | None = Field(None, description="Where firing and resolution are posted (http or https).")


class EnabledBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class SilenceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_s: int = Field(..., ge=1, le=MAX_SILENCE_S)
    reason: str = Field(..., min_length=1)
    rule_id: Id | None = None
    deployment: str | None = None


class CommentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(..., min_length=1)


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = ""


class HandoverBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(..., min_length=1)


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: str = Field(..., min_length=1)


class RetrainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_share: float = Field(FEEDBACK_TEST_SHARE, gt=0, lt=1)
    comment: str = Field("", description="What the data steward should know about the new version.")


class TrainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(None, description="Training options; default the serving run's.")


# --- rules and alerts ------------------------------------------------------------------


@router.get("/api/alert-metrics")
def list_metrics(request: Request, actor: Actor = require("monitoring.read")) -> list[dict[str, str]]:
    """Every metric and check a rule may watch."""
    return [{"name": s.name, "description": s.description, "source": s.source}
            for s in monitoring.find_signals(get_ctx(request), actor=actor)]


@router.get("/api/alert-rules")
def list_rules(request: Request, actor: Actor = require("monitoring.read")) -> list[dict[str, Any]]:
    """The rules the caller may read, oldest first (webhook URLs are shown only as present or not)."""
    return [_rule(r) for r in monitoring.find_rules(get_ctx(request), actor=actor)]


@router.post("/api/alert-rules", status_code=201)
def create_rule(body: RuleBody, request: Request, actor: Actor = require("alert.manage")) -> dict[str, Any]:
    """Create a rule; an unknown metric is a 422 that lists the known ones."""
    return _rule(monitoring.create_rule(get_ctx(request), actor=actor, **body.model_dump()))


@router.put("/api/alert-rules/{rule_id}/enabled")
def set_enabled(rule_id: Id, body: EnabledBody, request: Request,
                actor: Actor = require("alert.manage")) -> dict[str, Any]:
    """Turn a rule on or off (off resolves its open alerts)."""
    return _rule(monitoring.set_rule_enabled(get_ctx(request), rule_id, enabled=body.enabled, actor=actor))


@router.post("/api/alert-rules/evaluate")
def evaluate(request: Request, actor: Actor = require("alert.manage")) -> dict[str, Any]:
    """Evaluate every enabled rule now (the periodic job does the same)."""
    return asdict(monitoring.evaluate_rules_now(get_ctx(request), actor=actor))


@router.get("/api/alerts")
def list_alerts(request: Request, state: AlertState | None = None, limit: int = Query(100, ge=1, le=500),
                actor: Actor = require("monitoring.read")) -> list[dict[str, Any]]:
    """The alerts the caller may read, newest first."""
    return [asdict(a) for a in monitoring.find_alerts(get_ctx(request), actor=actor, state=state, limit=limit)]


@router.get("/api/alerts/{alert_id}")
def get_alert(alert_id: Id, request: Request, actor: Actor = require("monitoring.read")) -> dict[str, Any]:
    """One alert with its webhook messages and their attempts."""
    detail = monitoring.show_alert(get_ctx(request), alert_id, actor=actor)
    messages = [{**_message(n), "attempts": [asdict(a) for a in attempts]} for n, attempts in detail.notifications]
    return {**asdict(detail.alert), "notifications": messages}


@router.post("/api/alerts/{alert_id}/resolve")
def resolve(alert_id: Id, body: CommentBody, request: Request, actor: Actor = require("alert.manage")
            ) -> dict[str, Any]:
    """Resolve a firing alert by hand, with why."""
    return asdict(monitoring.resolve_alert(get_ctx(request), alert_id, actor=actor, comment=body.comment))


@router.get("/api/alert-silences")
def list_silences(request: Request, active: bool = False,
                  actor: Actor = require("monitoring.read")) -> list[dict[str, Any]]:
    """The silences the caller may read, newest first (only those in force with ``active=true``)."""
    return [asdict(s) for s in monitoring.find_silences(get_ctx(request), actor=actor,
                                                        active_at=utcnow() if active else None)]


@router.post("/api/alert-silences", status_code=201)
def create_silence(body: SilenceBody, request: Request, actor: Actor = require("alert.manage")) -> dict[str, Any]:
    """Mute a rule, a deployment or both for a while."""
    return asdict(monitoring.create_silence(get_ctx(request), actor=actor, **body.model_dump()))


@router.post("/api/alert-silences/{silence_id}/end")
def end_silence(silence_id: Id, request: Request, actor: Actor = require("alert.manage")) -> dict[str, Any]:
    """End a silence now."""
    return asdict(monitoring.end_silence(get_ctx(request), silence_id, actor=actor))


# --- tickets ---------------------------------------------------------------------------


@router.get("/api/tickets")
def list_tickets(request: Request, state: TicketState | None = None, owner_role: str | None = None,
                 limit: int = Query(100, ge=1, le=500), actor: Actor = require("monitoring.read")) -> dict[str, Any]:
    """The tickets the caller may read, newest first, with counts and time-to-acknowledge."""
    board = monitoring.find_tickets(get_ctx(request), actor=actor, state=state, owner_role=owner_role, limit=limit)
    return {"tickets": [asdict(t) for t in board.tickets], "stats": board.stats}


@router.get("/api/tickets/{ticket_id}")
def get_ticket(ticket_id: Id, request: Request, actor: Actor = require("monitoring.read")) -> dict[str, Any]:
    """One ticket."""
    return asdict(monitoring.show_ticket(get_ctx(request), ticket_id, actor=actor))


@router.post("/api/tickets/{ticket_id}/acknowledge")
def acknowledge(ticket_id: Id, body: AckBody, request: Request, actor: Actor = require("alert.manage")
                ) -> dict[str, Any]:
    """Take the ticket (operator); the time it waited is stored."""
    return asdict(monitoring.acknowledge_ticket(get_ctx(request), ticket_id, actor=actor, comment=body.comment))


@router.post("/api/tickets/{ticket_id}/handover")
def hand_over(ticket_id: Id, body: HandoverBody, request: Request, actor: Actor = require("alert.manage")
              ) -> dict[str, Any]:
    """Hand the ticket over to ml_engineer for retraining."""
    return asdict(monitoring.hand_over_ticket(get_ctx(request), ticket_id, actor=actor, note=body.note))


@router.post("/api/tickets/{ticket_id}/close")
def close(ticket_id: Id, body: CloseBody, request: Request, actor: Actor = require("alert.manage")
          ) -> dict[str, Any]:
    """Close the ticket with what was done."""
    return asdict(monitoring.close_ticket(get_ctx(request), ticket_id, actor=actor, resolution=body.resolution))


@router.post("/api/tickets/{ticket_id}/retrain", status_code=201)
def retrain(ticket_id: Id, body: RetrainBody, request: Request,
            actor: Actor = require("maintenance.retrain")) -> dict[str, Any]:
    """Build the retraining dataset version and ask a data steward to release it."""
    started = start_retraining(get_ctx(request), ticket_id, actor=actor, test_share=body.test_share,
                                           comment=body.comment)
    return asdict(started)


@router.post("/api/tickets/{ticket_id}/train", status_code=202)
def train(ticket_id: Id, body: TrainBody, request: Request,
          actor: Actor = require("maintenance.retrain")) -> dict[str, Any]:
    """Queue the training run (a job) on the retraining version; 409 until a data steward released it."""
    config = parse_train_config(body.config) if body.config is not None else None
    return asdict(train_on_released(get_ctx(request), ticket_id, actor=actor, config=config))


@router.post("/api/tickets/{ticket_id}/evaluate")
def evaluate_candidate(ticket_id: Id, request: Request, actor: Actor = require("maintenance.retrain")
                       ) -> dict[str, Any]:
    """Score the retrained candidate and the serving version on the same test split."""
    return evaluate_retraining(get_ctx(request), ticket_id, actor=actor)


@router.post("/api/tickets/{ticket_id}/release")
def release(ticket_id: Id, request: Request, actor: Actor = require("maintenance.retrain")) -> dict[str, Any]:
    """Register the better candidate and ask a release manager to promote it."""
    version, approval = hand_to_release_gate(get_ctx(request), ticket_id, actor=actor)
    return {"model_version": asdict(version), "approval": asdict(approval)}


@router.post("/api/tickets/{ticket_id}/served")
def close_served(ticket_id: Id, request: Request, actor: Actor = require("alert.manage")) -> dict[str, Any]:
    """Close a ticket once its deployment serves the retrained version."""
    return asdict(close_when_served(get_ctx(request), ticket_id, actor=actor))


def _rule(rule: AlertRule) -> dict[str, Any]:
    out = asdict(rule)
    out["webhook"] = out.pop("webhook_url") is not None  # the URL may hold a secret path
    out["condition"] = rule.condition
    return out


def _message(note: Notification) -> dict[str, Any]:
    out = asdict(note)
    out.pop("url")
    return out
