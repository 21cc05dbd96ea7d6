"""Cross-site request forgery: a request that rides on the session cookie must prove it
came from this site's own pages (issue 15 item 4).

The session cookie is SameSite=Strict, but "site" ignores the port: a page served from
another port of the same host (or a sibling subdomain) is same-site, so the browser sends
the cookie with its forms. ``CsrfMiddleware`` therefore checks every unsafe request
(POST, PUT, PATCH, DELETE) that carries no credential header:

1. **Origin**: a request whose ``Origin`` (or, without one, ``Referer``) names another
   host or port than its ``Host`` is refused, as is ``Origin: null``. The scheme is not
   compared, so a TLS proxy that is not in ``trusted_proxies`` does not break forms.
2. **Token**: when the session cookie is there, the request must carry
   ``csrf_token(cookie)`` — an HMAC of the session's secret, so it is tied to the session,
   needs no server state and says nothing about the secret — as the form field
   ``csrf_token`` (every form of the web UI has it, from ``templates/_csrf.html``) or the
   ``X-CSRF-Token`` header (the page's ``<meta name="csrf-token">``, for scripts). Missing
   or wrong: 403 with the reason. The sign-in routes take no token (the cookie is not a
   credential there; the Origin check guards them).

Requests with ``Authorization`` or ``X-API-Key`` pass: a browser adds such a header to a
cross-origin request only after a CORS preflight this server never grants, and the
cookie is then not what authenticates them. Form bodies are read here (up to
``FORM_LIMIT`` bytes) only when the token is not in the header, and handed on unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.api.problems import problem_response
from chainkeeper.core.errors import ChainkeeperError, Forbidden

__all__ = ["CSRF_FIELD", "CSRF_HEADER", "CsrfMiddleware", "FORM_LIMIT", "csrf_token"]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# The largest form body read here to find the token (the web UI's forms are a few KiB).
FORM_LIMIT = 1024 * 1024
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Where the cookie is no credential: signing in (a stale cookie must not stop it).
_NO_TOKEN_PATHS = frozenset({"/login", "/api/login"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def csrf_token(session_secret: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 keyed by its secret (one-way, so a page
    that shows the token does not show the secret)."""
    return hmac.new(session_secret.encode(), b"chainkeeper csrf v1", hashlib.sha256).hexdigest()


def _netloc(url: str) -> str | None:
    """``host[:port]`` of an absolute URL, without the scheme's default port; None if malformed."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.scheme not in _DEFAULT_PORTS:
        return None
    host = f"[{host}]" if ":" in host else host
    return host if port is None or str(port) == _DEFAULT_PORTS[parts.scheme] else f"{host}:{port}"


def _request_netloc(scope: Scope, headers: Headers) -> str | None:
    host = headers.get("host")
    if not host:
        return None
    return _netloc(f"{scope.get('scheme', 'http')}://{host}")


def cross_origin_problem(scope: Scope, headers: Headers) -> Forbidden | None:
    """Why the request comes from another origin than its Host, or None when it does not
    (or the browser did not say: then the token decides)."""
    origin = headers.get("origin")
    source, value = ("Origin", origin) if origin is not None else ("Referer", headers.get("referer"))
    if value is None:
        return None
    target = _request_netloc(scope, headers)
    if value.strip() == "null" or _netloc(value) is None or _netloc(value) != target:
        return Forbidden(f"Cross-origin request refused: {source} {value!r} is not this server ({target}).",
                         hint="Submit forms from this server's own pages; programs send 'Authorization: Bearer "
                         "<token>' instead of the session cookie.")
    return None


class CsrfMiddleware:
    """Refuse cookie-authenticated unsafe requests from other origins or without the
    session's CSRF token (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "authorization" in headers or "x-api-key" in headers:
            await self.app(scope, receive, send)
            return
        problem = cross_origin_problem(scope, headers)
        secret = Request(scope).cookies.get(SESSION_COOKIE)
        if problem is None and secret and scope["path"] not in _NO_TOKEN_PATHS:
            given = headers.get(CSRF_HEADER)
            if given is None and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                body = await _read_body(receive, FORM_LIMIT)
                if body is None:
                    problem = Forbidden(f"The form is larger than {FORM_LIMIT} bytes and carries no {CSRF_HEADER} "
                                        "header.", hint=f"Send the CSRF token in the {CSRF_HEADER} header.")
                else:
                    values = parse_qs(body.decode("latin-1")).get(CSRF_FIELD)
                    given = values[0] if values else None
                    receive = _replay(body, receive)
            if problem is None:
                problem = _token_problem(secret, given)
        if problem is not None:
            await _refuse(scope, problem, receive, send)
            return
        await self.app(scope, receive, send)


def _token_problem(secret: str, given: str | None) -> Forbidden | None:
    if not given:
        return Forbidden("The request has no CSRF token: a form or script riding on the session cookie must "
                         "prove it comes from this site's pages.",
                         hint=f"Reload the page and submit the form again; scripts send the {CSRF_HEADER} header "
                         "(the page's <meta name=\"csrf-token\">), programs use a bearer token instead of the cookie.")
    if not hmac.compare_digest(given.encode(), csrf_token(secret).encode()):
        return Forbidden("The CSRF token does not belong to this session.",
                         hint="Reload the page (you may have signed in again since it was loaded) and submit again.")
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None past ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the body read here to the app once, then waits on the client."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, problem: ChainkeeperError, receive: Receive, send: Send) -> None:
    """Answer 403: the web UI's error page to a browser's page request, else problem+json."""
    request = Request(scope, receive)
    render_page = getattr(request.app.state, "error_page", None)
    page = "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(("/api/", "/v1/"))
    if render_page is not None and page:
        response = render_page(request, problem)
    else:
        state = scope.get("state") or {}
        request_id = state.get("request_id")
        response = problem_response(problem.status, problem.title, problem.message, hint=problem.hint,
                                    request_id=str(request_id) if request_id else None)
    await response(scope, receive, send)
