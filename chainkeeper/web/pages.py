"""The web UI's pages: server-rendered Jinja2 templates, refreshed in place with htmx.

A shell like the CLI and the API: each route reads the request, calls a service function
and renders a template. The API app factory includes ``router`` and mounts
``STATIC_DIR`` at ``/static``; the open stores come from ``request.app.state.ctx``.

htmx (``static/htmx.min.js``, from the npm package ``htmx.org``, 0BSD licence in
``static/htmx-LICENSE``) is shipped with the package, so the UI works offline.

Pages run under a Content-Security-Policy without inline script or style
(``api.security_headers``): scripts and styles live in ``static/``. Every form that
changes something includes ``_csrf.html``, the session's CSRF token that
``api.csrf.CsrfMiddleware`` checks; ``base.html`` also puts it in a ``<meta>`` for scripts.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context as TemplateContext

from chainkeeper.api.auth import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    clear_session_cookie,
    public,
    require,
    set_session_cookie,
)
from chainkeeper.api.csrf import CSRF_FIELD, csrf_token
from chainkeeper.chain import chain_overview, jobs_panel
from chainkeeper.core.context import Context
from chainkeeper.core.errors import ChainkeeperError, RateLimited
from chainkeeper.core.jobs import JobState
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.passwords import login
from chainkeeper.governance.permissions import is_allowed_somewhere
from chainkeeper.governance.users import end_session, start_session
from chainkeeper.web.overview import format_age, format_count, state_totals

__all__ = ["router", "error_page", "STATIC_DIR", "TEMPLATES_DIR", "JOBS_REFRESH_S"]

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
# How often the jobs panel asks for a fresh copy of itself (htmx polling).
JOBS_REFRESH_S = 2
# Job states in the order the page lists their totals.
_STATE_ORDER = [s.value for s in (JobState.RUNNING, JobState.QUEUED, JobState.SUCCEEDED,
                                  JobState.FAILED, JobState.CANCELLED)]



def _age(then: datetime | None, now: datetime) -> str:
    return "—" if then is None else format_age(then, now)


def _csrf_token(request: Request) -> str:
    """The CSRF token of the request's session cookie ('' without one: nothing to protect)."""
    secret = request.cookies.get(SESSION_COOKIE)
    return csrf_token(secret) if secret else ""


@pass_context
def _allowed_somewhere(context: TemplateContext, action: str) -> bool:
    """Whether the page's actor holds ``action`` anywhere: for showing a nav link (base.html);
    deciding is the services'."""
    request, actor = context.get("request"), context.get("actor")
    if request is None or not isinstance(actor, Actor):
        return False
    return is_allowed_somewhere(request.app.state.ctx.db, actor, action)


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters["count"] = format_count
templates.env.globals.update(age=_age, state_totals=state_totals, state_order=_STATE_ORDER,
                             jobs_refresh_s=JOBS_REFRESH_S, csrf_token=_csrf_token, csrf_field=CSRF_FIELD,
                             allowed_somewhere=_allowed_somewhere)

router = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


@router.get("/login", response_class=HTMLResponse, name="login", dependencies=[public()])
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form."""
    return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse, dependencies=[public()])
def login_submit(request: Request, user: str = Form(...), password: str = Form(...), next: str = Form("/")) -> Response:
    """Check the password, start a server-side session (12 hours) in the cookie and go on."""
    address = request.client.host if request.client else "unknown"
    try:
        actor = login(_ctx(request).db, user, password, address=address)
        session = start_session(_ctx(request).db, actor=actor, address=address, expires_in=SESSION_LIFETIME)
    except ChainkeeperError as exc:
        # A throttled sign-in says when to try again, as the API's 429 does.
        wait = exc.retry_after_s if isinstance(exc, RateLimited) else None
        return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "error": exc,
                                                                  "user": user}, status_code=exc.status,
                                          headers={"Retry-After": str(math.ceil(wait))} if wait else None)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookie(response, request, session.secret)
    return response


@router.post("/logout", dependencies=[public()])
def logout(request: Request) -> Response:
    """End the session in the store (a copy of the cookie stops working too) and drop the cookie."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        end_session(_ctx(request).db, secret)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return response


def _safe_next(target: str) -> str:
    # Only paths on this site: never an open redirect to another host.
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/", response_class=HTMLResponse, name="overview")
def overview_page(request: Request, actor: Actor = require("system.read")) -> HTMLResponse:
    """The chain overview: a card per stage with its owner and counts, then the jobs."""
    try:
        overview = chain_overview(_ctx(request), actor=actor)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "overview.html", {"overview": overview, "panel": overview.jobs,
                                                                 "actor": actor})


@router.get("/fragments/jobs", response_class=HTMLResponse, name="jobs_fragment")
def jobs_fragment(request: Request, actor: Actor = require("job.read")) -> HTMLResponse:
    """The jobs panel alone: the overview page swaps it in every ``JOBS_REFRESH_S``."""
    try:
        panel = jobs_panel(_ctx(request), actor=actor)
    except ChainkeeperError as exc:
        # htmx leaves the last good panel in place on an error status, so a store blip
        # never blanks the page; the message is there for anyone who fetches it directly.
        return error_page(request, exc, fragment=True)
    return templates.TemplateResponse(request, "_jobs.html", {"panel": panel})


def error_page(request: Request, exc: ChainkeeperError, *, fragment: bool | None = None) -> HTMLResponse:
    """An error as an HTML page (or, for htmx and fragment requests, a fragment): its
    status, message and hint, no traceback."""
    if fragment is None:
        fragment = request.headers.get("hx-request") == "true" or request.url.path.startswith("/fragments/")
    context: dict[str, Any] = {"error": exc}
    name = "_error.html" if fragment else "error.html"
    return templates.TemplateResponse(request, name, context, status_code=exc.status)
