"""The alerts page: what fires now, the rules, the silences and the maintenance tickets.

``/monitoring/alerts`` (``monitoring.read``) lists firing and recent alerts with their
webhook delivery state, every rule, the silences in force and the tickets with their
owner role and time-to-acknowledge; the live part refreshes itself with htmx
(``/fragments/alerts``). An operator (``alert.manage``) acknowledges a ticket or hands it
over to ml_engineer from the page; the forms post to the same service functions as the
API and CLI, and a refused step is shown on the page with its reason, nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import is_allowed
from chainkeeper.monitoring import (
    Alert,
    AlertRule,
    Silence,
    Ticket,
    acknowledge_ticket,
    find_alerts,
    find_rules,
    find_silences,
    find_tickets,
    hand_over_ticket,
    show_alert,
)
from chainkeeper.serving import find_deployments

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["AlertsView", "alerts_view", "router"]

router = APIRouter(include_in_schema=False)
# How often the live part of the page asks for a fresh copy of itself.
REFRESH_S = 5


@dataclass
class AlertsView:
    """What the page shows."""

    firing: list[Alert]
    recent: list[Alert]
    rules: dict[int, AlertRule]
    deployments: dict[int, str]
    delivery: dict[int, str]
    silences: list[Silence]
    tickets: list[Ticket]
    stats: dict[str, Any]


def alerts_view(ctx: Context, actor: Actor) -> AlertsView:
    """Gather the page's tables from the monitoring services: what ``actor`` may read."""
    found = find_alerts(ctx, actor=actor, limit=50)
    delivery: dict[int, str] = {}
    for alert in found:
        notes = show_alert(ctx, alert.id, actor=actor).notifications
        if notes:  # the newest message's state
            note = max((n for n, _ in notes), key=lambda n: n.id)
            delivery[alert.id] = f"{note.event}: {note.state} after {note.attempts} attempt(s)"
    board = find_tickets(ctx, actor=actor, limit=50)
    return AlertsView(firing=[a for a in found if a.open], recent=[a for a in found if not a.open],
                      rules={r.id: r for r in find_rules(ctx, actor=actor)},
                      deployments={d.id: d.name for d in find_deployments(ctx, actor=actor)}, delivery=delivery,
                      silences=find_silences(ctx, actor=actor, active_at=utcnow()), tickets=board.tickets,
                      stats=board.stats)


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _page(request: Request, actor: Actor, *, fragment: bool = False, error: ChainkeeperError | None = None,
          status: int = 200) -> HTMLResponse:
    from chainkeeper.web.pages import error_page, templates

    try:
        view = alerts_view(_ctx(request), actor)
    except ChainkeeperError as exc:
        return error_page(request, exc, fragment=fragment)
    context = {"view": view, "actor": actor, "error": error, "refresh_s": REFRESH_S,
               "may_manage": is_allowed(_ctx(request).db, actor, "alert.manage")}
    return templates.TemplateResponse(request, "_alerts_live.html" if fragment else "alerts.html", context,
                                      status_code=status)


@router.get("/monitoring/alerts", response_class=HTMLResponse, name="alerts")
def alerts_page(request: Request, actor: Actor = require("monitoring.read")) -> HTMLResponse:
    """Alerts, rules, silences and tickets."""
    return _page(request, actor)


@router.get("/fragments/alerts", response_class=HTMLResponse, name="alerts_fragment")
def alerts_fragment(request: Request, actor: Actor = require("monitoring.read")) -> HTMLResponse:
    """The live part alone (firing alerts and tickets), swapped in every ``REFRESH_S``."""
    return _page(request, actor, fragment=True)


@router.post("/monitoring/tickets/{ticket_id}/acknowledge", name="ticket_acknowledge")
def acknowledge_submit(ticket_id: Id, request: Request, actor: Actor = require("alert.manage")) -> Response:
    """Acknowledge a ticket, then show the page again."""
    try:
        acknowledge_ticket(_ctx(request), ticket_id, actor=actor, comment="from the web page")
    except ChainkeeperError as exc:
        return _page(request, actor, error=exc, status=exc.status)
    return RedirectResponse("/monitoring/alerts", status_code=303)


@router.post("/monitoring/tickets/{ticket_id}/handover", name="ticket_handover")
def handover_submit(ticket_id: Id, request: Request, note: str = Form(""),
                    actor: Actor = require("alert.manage")) -> Response:
    """Hand a ticket over to ml_engineer, then show the page again."""
    try:
        hand_over_ticket(_ctx(request), ticket_id, actor=actor, note=note[:2000])
    except ChainkeeperError as exc:
        return _page(request, actor, error=exc, status=exc.status)
    return RedirectResponse("/monitoring/alerts", status_code=303)
