"""Who is calling, and may they: the API's side of the one authorisation point.

Every route declares its decision with exactly one dependency:

- ``require("action")``: authenticate the caller (``Authorization: Bearer <token>`` or
  the web UI's session cookie), refuse a caller who holds the action nowhere, and hand
  the Actor to the route. The service the route calls decides, in the project of the
  object it touches (so the CLI, the API and the web answer alike);
- ``public()``: no identity needed (health checks, the login page, static files).

``route_decisions(app)`` lists every route with its decision; a test walks it against
every role, so a route added without a decision fails the suite.

Token lookups are cached per store (``token_cache``) for ``TOKEN_CACHE_TTL_S`` seconds (the hot path
must not read the store per request). A token revoked, a session ended, a user disabled
or a role granted through the ORM in this process clears the cache when that transaction
commits, so it takes effect at once here (and in the other processes of a
``serve --processes`` group, which share the change counter); a change made by any other
process (the CLI, another server) takes effect within ``TOKEN_CACHE_TTL_S`` seconds. A
cached credential carries its expiry and is refused from that instant, cached or not.

Two kinds of credential (``governance.users``): API tokens, sent as a bearer header
(or, for tests and scripts, as the cookie), and web sessions, accepted only as the
``SESSION_COOKIE``; a session's secret in a bearer header is refused.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import event
from sqlalchemy.orm import Session, object_session

from chainkeeper.core.context import Context
from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Unauthenticated
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import ACTIONS, projects_allowed
from chainkeeper.governance.tables import SqlToken, SqlUser, SqlUserRole
from chainkeeper.governance.users import Credential, authenticate_credential
from chainkeeper.serving import KEY_PREFIX, TtlCache

SESSION_COOKIE = "ck_session"
# How long a web sign-in lasts unless it is ended first.
SESSION_LIFETIME = timedelta(hours=12)
PUBLIC = "public"
# The longest another process's revocation of a token may go unseen here (seconds).
TOKEN_CACHE_TTL_S = 2.0
_watch_lock = threading.Lock()
_watching = False


def _watch_credential_changes() -> None:
    """Clear the token cache after any commit that changed a token, a user or a role binding."""
    global _watching
    if _watching:  # the common case, without the lock
        return
    with _watch_lock:
        if _watching:
            return
        def changed(mapper: Any, connection: Any, target: Any) -> None:
            session = object_session(target)
            if session is not None:
                session.info["ck_credentials_changed"] = True

        def committed(session: Session) -> None:
            if session.info.pop("ck_credentials_changed", False) and "database" in session.info:
                token_cache(session.info["database"]).invalidate()

        for cls, what in ((SqlToken, "after_update"), (SqlUser, "after_update"), (SqlUserRole, "after_insert"),
                          (SqlUserRole, "after_delete")):
            event.listen(cls, what, changed)
        event.listen(Session, "after_commit", committed)
        event.listen(Session, "after_rollback", lambda session: session.info.pop("ck_credentials_changed", None))
        _watching = True


def token_cache(db: Database) -> TtlCache[str, Credential]:
    """sha256 of a token -> its credential (actor without a request id, kind, expiry), for one store."""
    return db.state("api.token_cache", lambda: TtlCache(TOKEN_CACHE_TTL_S))


def set_session_cookie(response: Response, request: Request, secret: str) -> None:
    """Put a session's secret in the cookie: HttpOnly, SameSite=Strict, and Secure when the
    request came over https (directly, or through a proxy named in ``trusted_proxies``)."""
    response.set_cookie(SESSION_COOKIE, secret, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")


def clear_session_cookie(response: Response, request: Request) -> None:
    """Tell the browser to drop the session cookie (same attributes as when it was set)."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def _token_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_of(request: Request) -> str | None:
    """The deployment API key a request carries, if any (user tokens are not keys).

    Sent as ``X-API-Key`` or as a bearer token with the keys' prefix.
    """
    if request.headers.get("x-api-key"):
        return request.headers["x-api-key"].strip()
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip().startswith(KEY_PREFIX):
        return token.strip()
    return None


def bearer_secret(request: Request) -> str:
    """The token a request carries (bearer header or session cookie).

    Raises:
        Unauthenticated: no credentials, or a malformed header.
    """
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
            raise Unauthenticated("Malformed Authorization header.", hint="Send 'Authorization: Bearer <token>'.")
        return token.strip()
    if request.cookies.get(SESSION_COOKIE):
        return request.cookies[SESSION_COOKIE]
    raise Unauthenticated("This needs a signed-in user.",
                          hint="Send 'Authorization: Bearer <token>' (see 'chainkeeper users token') or sign in "
                          "at /login.")


def _via_cookie(request: Request) -> bool:
    """Whether ``bearer_secret`` took the request's secret from the cookie (no header sent)."""
    return request.headers.get("authorization") is None


def cached_actor(request: Request, secret: str) -> Actor | None:
    """The actor of ``secret`` from the token cache, with the request's id; None on a miss.

    Raises:
        Unauthenticated: the cached credential expired, or is a session sent as a bearer token.
    """
    credential = token_cache(request.app.state.ctx.db).get(_token_key(secret))
    if credential is None:
        return None
    credential.check_usable(via_cookie=_via_cookie(request), now=utcnow())
    actor = credential.actor
    return Actor(actor.name, actor.roles, actor.scoped_roles, actor.user_id, request_id=request_id_of(request))


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
    return str(rid)


def authenticate(request: Request) -> Actor:
    """The actor behind a request's bearer token or session cookie.

    Raises:
        Unauthenticated: no credentials, a malformed header, or a bad token.
    """
    ctx: Context = request.app.state.ctx
    secret = bearer_secret(request)
    _watch_credential_changes()
    credential = token_cache(ctx.db).get_or_load(_token_key(secret), lambda: authenticate_credential(ctx.db, secret))
    # Judged on every use, cached or not: an entry must not outlive the token's expiry
    # (issue 15 item 9: tokens were accepted up to the cache's TTL late).
    credential.check_usable(via_cookie=_via_cookie(request), now=utcnow())
    actor = credential.actor
    return Actor(actor.name, actor.roles, actor.scoped_roles, actor.user_id, request_id=request_id_of(request))


def require(action: str) -> Any:
    """A dependency that authenticates the caller and returns their Actor.

    The decision is the service's: it authorises ``action`` in the project of the object
    it touches, as it does for the CLI and the web. Here the caller must only hold
    ``action`` somewhere (in a global role or in some project) — the first step of every
    service's own check, taken before FastAPI reads and validates the body, so a caller
    who may never do this is answered 403 at once, not 422 about a body they may not send.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")  # a programming error, at import

    def dependency(request: Request) -> Actor:
        actor = authenticate(request)
        projects_allowed(request.app.state.ctx.db, actor, action)
        request.state.actor = actor
        return actor

    dependency.chainkeeper_action = action  # type: ignore[attr-defined]
    return Depends(dependency)


def public() -> Any:
    """A dependency that marks a route as open to anyone."""

    def dependency() -> None:
        return None

    dependency.chainkeeper_action = PUBLIC  # type: ignore[attr-defined]
    return Depends(dependency)


def _decision(call: Callable[..., Any] | None) -> str | None:
    return getattr(call, "chainkeeper_action", None)


def route_decisions(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """(method, path) -> the route's action, 'public', or None when it declares none."""
    out: dict[tuple[str, str], str | None] = {}
    # FastAPI >= 0.137 keeps included routers as nodes of a tree in app.routes;
    # iter_route_contexts flattens it into one context per route, with its full path.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        decisions = [d for d in (_decision(dep.call) for dep in route.dependant.dependencies) if d]
        for method in sorted(route.methods or ()):
            out[(method, str(route.path))] = decisions[0] if len(decisions) == 1 else None
    return out
