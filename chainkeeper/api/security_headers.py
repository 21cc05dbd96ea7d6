"""Security headers on every answer: pages, API, static files and errors (issue 15 item 4).

- ``Content-Security-Policy``: the web UI runs only scripts and styles from ``/static``
  (no inline script, no inline style, no ``eval``), talks only to this origin, and may not
  be framed (``frame-ancestors 'none'``). Two kinds of page get their own policy:

  * the self-contained HTML reports (``/api/.../report.html``, and the diagnosis report
    at ``/monitoring/{name}/report``, the same document), which carry their CSS in a
    ``<style>`` element so that they also work as downloaded files: no script at all,
    inline styles allowed (a style cannot run code), sandboxed, and framable by this
    origin only (the run page shows its report in a frame);
  * the API's interactive docs (``/docs``, ``/redoc``): FastAPI's pages load Swagger UI
    and ReDoc from cdn.jsdelivr.net and start them with an inline script, so these
    pages allow that CDN and exactly their own inline scripts (by hash, computed from
    the page as served). They show no stored data; ``/openapi.json`` works offline.

- ``X-Frame-Options: DENY`` (``SAMEORIGIN`` for reports), for browsers without CSP 3;
- ``X-Content-Type-Options: nosniff``;
- ``Referrer-Policy: same-origin``: other sites never see our URLs (ids, names).

A plain ASGI middleware: it edits the headers of ``http.response.start`` and passes the
body through, except for the docs pages, whose small body it reads to hash their scripts.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["APP_POLICY", "DOCS_PATHS", "REPORT_POLICY", "SecurityHeadersMiddleware", "docs_policy", "policy_for"]

APP_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
              "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
REPORT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
                 "frame-ancestors 'self'; sandbox")
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
_CDN = "https://cdn.jsdelivr.net"
_REPORT_PATH = re.compile(r"^/api/.+/report\.html$|^/monitoring/[^/]+/report$")
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_COMMON = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
_OURS = {b"content-security-policy", b"x-frame-options", b"x-content-type-options", b"referrer-policy"}


def _is_report(path: str) -> bool:
    return _REPORT_PATH.match(path) is not None


def policy_for(path: str) -> str:
    """The Content-Security-Policy of a path (the docs pages: ``docs_policy`` of their body)."""
    return REPORT_POLICY if _is_report(path) else APP_POLICY


def docs_policy(body: bytes) -> str:
    """The policy of an API docs page: the CDN, and the page's own inline scripts by hash."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
                      for m in _INLINE_SCRIPT.findall(body))
    # Swagger UI and ReDoc style their widgets from script with <style> elements: inline
    # styles stay allowed on these two pages (a style cannot run code).
    return (f"default-src 'self'; script-src 'self' {_CDN} {hashes}; "
            f"style-src 'self' 'unsafe-inline' {_CDN} https://fonts.googleapis.com; font-src 'self' "
            "https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "worker-src blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _with_headers(message: Message, policy: str, frame: bytes) -> Message:
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
    headers += [(b"content-security-policy", policy.encode()), (b"x-frame-options", frame), *_COMMON]
    return {**message, "headers": headers}


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP answer (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in DOCS_PATHS:
            await self._docs(scope, receive, send)
            return
        policy, frame = policy_for(path), b"SAMEORIGIN" if _is_report(path) else b"DENY"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_headers(message, policy, frame)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the docs page's answer until its body is complete, then send it with its policy."""
        start: Message | None = None
        body = b""

        async def hold(message: Message) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body" and start is not None:
                body += message.get("body", b"")
                if message.get("more_body", False):
                    return
                await send(_with_headers(start, docs_policy(body), b"DENY"))
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, hold)
