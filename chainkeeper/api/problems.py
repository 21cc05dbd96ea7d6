"""Errors as ``application/problem+json`` (RFC 9457), and a request id on every answer.

Every error a client meets has the same shape::

    {"type": "urn:chainkeeper:problem:not-found", "title": "Not found", "status": 404,
     "detail": "There is no deployment named 'x'.", "hint": "List them with ...",
     "request_id": "3f2a..."}

- a ``ChainkeeperError`` keeps its own status, message and hint;
- a request that fails validation is a 422 listing each field and what is wrong;
- an unknown route or method is a 404/405 in the same shape;
- anything else is a 500 that says only where the details are (the server log, under
  the request id): no exception text or traceback reaches the client.

``RequestContextMiddleware`` gives each request an id (the caller's ``X-Request-ID``
when it is a sane token, else a new one), returns it in ``X-Request-ID`` and turns an
unhandled exception into that 500.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainkeeper.core.errors import ChainkeeperError, RateLimited

__all__ = [
    "PROBLEM_JSON",
    "REQUEST_ID_HEADER",
    "RequestContextMiddleware",
    "install_problem_handlers",
    "problem_response",
]

log = logging.getLogger("chainkeeper.api")

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is echoed into logs and headers: accept only a plain token.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Retry-After (seconds) of a 503/507 that may pass: a full disk, a locked store, no live worker.
_RETRY_TRANSIENT_S = 30
_TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 413: "Request too large",
           415: "Unsupported media type", 422: "Invalid input", 500: "Internal error"}


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _request_id(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    value = state.get("request_id")
    return str(value) if value is not None else None


def problem_response(status: int, title: str, detail: str, *, hint: str | None = None,
                     request_id: str | None = None, extra: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem+json response.

    Args:
        status: the HTTP status.
        title: short, the same for every problem of this kind.
        detail: what went wrong this time, with the value.
        hint: what to do next.
        request_id: echoed in the body and the ``X-Request-ID`` header.
        extra: further members (e.g. ``errors`` of a validation problem).
    """
    body: dict[str, Any] = {"type": f"urn:chainkeeper:problem:{_slug(title)}", "title": title, "status": status,
                            "detail": detail}
    if hint:
        body["hint"] = hint
    if request_id:
        body["request_id"] = request_id
    body.update(extra or {})
    out_headers = dict(headers or {})
    if request_id:
        out_headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=out_headers)


def _internal_error(request_id: str | None) -> JSONResponse:
    return problem_response(
        500, "Internal error", f"Internal error; the server log has the details (request id {request_id}).",
        hint="Retry later; if it persists, give the request id to the operator.", request_id=request_id,
    )


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


# Paths served to programs; everything else is a page a person opens in a browser.
_API_PREFIXES = ("/api/", "/v1/", "/healthz", "/readyz", "/openapi.json", "/static/")


def _is_page_request(request: Request) -> bool:
    return not request.url.path.startswith(_API_PREFIXES) and "text/html" in request.headers.get("accept", "")


async def _on_chainkeeper_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChainkeeperError)
    if exc.status == 401 and _is_page_request(request):
        # A person opening a page without a session is sent to sign in, then back.
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    render_page = getattr(request.app.state, "error_page", None)
    if render_page is not None and _is_page_request(request):
        # The web UI renders the same message and hint as an HTML page.
        return render_page(request, exc)  # type: ignore[no-any-return]
    if exc.status >= 500:
        # Our own errors say what is wrong and are safe to show; still log them, since
        # an operator (not the caller) has to act on a store or artefact failure.
        log.warning("request %s: %s", _request_id(request.scope), exc)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        headers = {"Retry-After": str(math.ceil(exc.retry_after_s))}
    elif exc.transient and exc.status >= 500:
        # A full disk, a locked store, no live worker: it may pass (issue 15 item 8).
        headers = {"Retry-After": str(_RETRY_TRANSIENT_S)}
    return problem_response(exc.status, exc.title, exc.message, hint=exc.hint,
                            request_id=_request_id(request.scope), headers=headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The offending input is left out on purpose: it may be a long text or a secret.
    errors = [{"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors()]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return problem_response(422, "Invalid input", f"The request is not valid: {summary}{more}.",
                            hint="Fix the fields listed in 'errors'; the API is described at /docs.",
                            request_id=_request_id(request.scope), extra={"errors": errors})


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    rid = _request_id(request.scope)
    if exc.status_code == 404 and exc.detail == "Not Found":
        return problem_response(404, "Not found", f"There is no route {request.method} {request.url.path}.",
                                hint="See the API's routes at /docs.", request_id=rid)
    if exc.status_code == 405:
        return problem_response(405, "Method not allowed",
                                f"{request.url.path} does not accept {request.method}.",
                                hint="See the API's routes at /docs.", request_id=rid,
                                headers=dict(exc.headers or {}))
    title = _TITLES.get(exc.status_code, "Error")
    return problem_response(exc.status_code, title, str(exc.detail), request_id=rid,
                            headers=dict(exc.headers or {}))


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json (see the module docstring)."""
    app.add_exception_handler(ChainkeeperError, _on_chainkeeper_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)


class RequestContextMiddleware:
    """Give each HTTP request an id, echo it in ``X-Request-ID``, and turn an unhandled
    exception into a 500 problem (logged here with the traceback and the id).

    A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it does not buffer
    streaming responses and sees the exceptions the routers let through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), "")
        rid = given if _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex
        # request.state reads scope["state"]: routes, auth and handlers all see this id.
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s %s %s failed", rid, scope.get("method"), scope.get("path"))
            if started:
                raise  # the answer is half sent; the server closes the connection
            await _internal_error(rid)(scope, receive, send)
