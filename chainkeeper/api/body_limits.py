"""Authentication and size limits before a request body is read: ``BodyLimitMiddleware``.

FastAPI reads and parses a route's whole body before it solves the route's dependencies,
so a caller without a token could make the server hold a 200 MiB JSON body in memory, or
write a 300 MiB chunked upload to disk, before being answered 401 (issue 15, item 1).
This middleware stands in front of every route. For a request that carries a body (a
``Content-Length`` above 0, or ``Transfer-Encoding: chunked``) it:

1. admits the caller from the headers alone, by running the route's own decision
   dependency (``require(...)``, or a route's own door such as the feedback route's API
   keys) before any body byte is read: a caller the route would refuse gets the same
   401/403 at once (problem+json, or the web UI's sign-in redirect and error page);
2. answers a ``Content-Length`` over the route's limit with 413 at once, and counts the
   bytes of a body sent without one (chunked), cutting it off with 413 as soon as it
   passes the limit: nothing more is read, and the route stores nothing;
3. closes the connection after such an answer, so the rest of the body is never read.

Limits are declared where the route is declared, with ``body_limit(...)`` in its
``dependencies``; a route without one gets ``DEFAULT_BODY_BYTES`` (``PUBLIC_BODY_BYTES``
for a public route, which anyone may call). ``route_body_limits(app)`` lists every route's
limit, and a test checks each is known. The predict route declares that it admits its
caller and checks the size itself before it reads (its hot path): it is passed through.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainkeeper.api.auth import PUBLIC
from chainkeeper.api.problems import problem_response
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.core.settings import Settings
from chainkeeper.serving import PayloadTooLarge

__all__ = ["DEFAULT_BODY_BYTES", "PUBLIC_BODY_BYTES", "BodyLimit", "BodyLimitMiddleware", "body_limit",
           "route_body_limits"]

MIB = 1024 * 1024
# A JSON or form body of a signed-in caller: ample for a form or a JSON object; routes
# that take files or large batches declare more.
DEFAULT_BODY_BYTES = 1 * MIB
# Anyone may call a public route (the sign-in forms): keep what a stranger can send small.
PUBLIC_BODY_BYTES = 64 * 1024
_DEFAULT_HINT = "Send a smaller body: split a batch into several requests."
_PUBLIC_HINT = "Send only the fields of the form (a name and a password take well under 1 KiB)."


@dataclass(frozen=True)
class BodyLimit:
    """How large one route's request body may be.

    Attributes:
        max_bytes: the limit in bytes, or the name of the ``Settings`` field holding it.
        hint: what to do with a larger body (the 413's hint).
        declared: whether the route declared it with ``body_limit`` (else it is a default).
        admits_before_reading: the route itself admits the caller and checks the size
            before it reads the body (predict); the middleware leaves it alone.
    """

    max_bytes: int | str
    hint: str = _DEFAULT_HINT
    declared: bool = True
    admits_before_reading: bool = False

    def resolve(self, settings: Settings) -> int:
        """The limit in bytes under ``settings``."""
        if isinstance(self.max_bytes, int):
            return self.max_bytes
        return int(getattr(settings, self.max_bytes))


def body_limit(max_bytes: int | str, *, hint: str | None = None, admits_before_reading: bool = False) -> Any:
    """A dependency that declares how large the route's body may be (it does nothing per request).

    Put it in the route's ``dependencies``:
    ``@router.post("/api/sources", dependencies=[body_limit("max_upload_bytes", hint=...)])``.

    Args:
        max_bytes: the limit in bytes, or the name of the ``Settings`` field that holds it.
        hint: what a caller with a larger body should do instead.
        admits_before_reading: the route authenticates and checks the size itself before
            reading (for the predict hot path, which also takes deployment API keys).

    Raises:
        ValueError: an unknown setting or a limit below one byte (a programming error, at import).
    """
    if isinstance(max_bytes, str) and max_bytes not in Settings.model_fields:
        raise ValueError(f"no setting named {max_bytes!r}")
    if isinstance(max_bytes, int) and max_bytes < 1:
        raise ValueError(f"a body limit must be at least one byte, got {max_bytes}")

    # async: FastAPI would run a plain function on a worker thread, for nothing.
    async def dependency() -> None:
        return None

    dependency.chainkeeper_body_limit = BodyLimit(  # type: ignore[attr-defined]
        max_bytes, hint or _DEFAULT_HINT, admits_before_reading=admits_before_reading)
    return Depends(dependency)


@dataclass(frozen=True)
class _Entry:
    """One route as the middleware sees it: where it matches, its limit and its door."""

    method: str
    path: str
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    limit: BodyLimit
    # The route's decision dependency, run before the body; None for a public route.
    admit: Callable[..., Any] | None


def _declared_limit(route: Any) -> BodyLimit | None:
    for dependency in route.dependant.dependencies:
        limit = getattr(dependency.call, "chainkeeper_body_limit", None)
        if isinstance(limit, BodyLimit):
            return limit
    return None


def _decision_call(route: Any) -> tuple[str | None, Callable[..., Any] | None]:
    """The route's one decision (action or 'public') and the dependency that makes it."""
    found = [(getattr(d.call, "chainkeeper_action", None), d.call) for d in route.dependant.dependencies]
    found = [(action, call) for action, call in found if action]
    return found[0] if len(found) == 1 else (None, None)


def _takes_only_the_request(call: Callable[..., Any]) -> bool:
    return list(inspect.signature(call).parameters) == ["request"]


def _api_entries(app: FastAPI) -> dict[tuple[str, str], _Entry]:
    """(method, path) -> entry, for every FastAPI route of ``app``."""
    out: dict[tuple[str, str], _Entry] = {}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        action, call = _decision_call(route)
        limit = _declared_limit(route) or (BodyLimit(PUBLIC_BODY_BYTES, _PUBLIC_HINT, declared=False)
                                           if action == PUBLIC else BodyLimit(DEFAULT_BODY_BYTES, declared=False))
        admit = call if action not in (None, PUBLIC) and call is not None and _takes_only_the_request(call) else None
        regex, _, convertors = compile_path(str(route.path))
        for method in sorted(route.methods or ()):
            out[(method, str(route.path))] = _Entry(method, str(route.path), regex, convertors, limit, admit)
    return out


def route_body_limits(app: FastAPI) -> dict[tuple[str, str], BodyLimit]:
    """(method, path) -> the body limit of every API and web route of ``app``."""
    return {key: entry.limit for key, entry in _api_entries(app).items()}


class _RouteTable:
    """The app's routes in the order the router tries them, by method."""

    def __init__(self, app: FastAPI) -> None:
        api = _api_entries(app)
        self.by_method: dict[str, list[_Entry]] = {}
        for route in iter_route_contexts(app.routes):
            original = route.original_route
            if not isinstance(original, APIRoute | Route):
                continue  # mounts (static files) take no bodies
            for method in sorted(route.methods or ()):
                # A plain route in front of a FastAPI one (predict's fast path) shares its declaration.
                entry = api.get((method, str(route.path)))
                if entry is not None:
                    self.by_method.setdefault(method, []).append(entry)

    def match(self, method: str, path: str) -> tuple[_Entry, dict[str, Any]] | None:
        for entry in self.by_method.get(method, ()):
            found = entry.regex.match(path)
            if found:
                params = {key: entry.convertors[key].convert(value) for key, value in found.groupdict().items()}
                return entry, params
        return None


def _announced_body(scope: Scope) -> tuple[bool, int | None]:
    """Whether the request carries a body, and its declared length if any."""
    length: int | None = None
    has_body = False
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            length = int(value) if value.isdigit() else None
            has_body = has_body or length is None or length > 0
        elif key == b"transfer-encoding":
            has_body = True
    return has_body, length


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the app's ``root_path``, as Starlette does."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _too_large(entry: _Entry | None, limit: int, hint: str, size: int | None) -> PayloadTooLarge:
    where = f"{entry.method} {entry.path}" if entry is not None else "this server"
    most = f"{limit / MIB:g} MiB ({limit:,} bytes)" if limit >= MIB else f"{limit:,} bytes"
    if size is None:
        return PayloadTooLarge(f"The request body passed {most}, the most {where} accepts; it was not read "
                               "further and nothing was stored.", hint=hint)
    return PayloadTooLarge(f"The request body has {size:,} bytes; {where} accepts at most {most}.", hint=hint)


_UNMATCHED = BodyLimit(DEFAULT_BODY_BYTES, declared=False)


class _BodyCutOff(Exception):
    """Raised from ``receive`` once a body passes its limit; the middleware answers 413."""


class BodyLimitMiddleware:
    """Admit the caller and bound the body before a route reads it (see the module docstring).

    Register it inside ``RequestContextMiddleware`` (add it first), so its answers carry
    the request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._table: _RouteTable | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body, length = _announced_body(scope)
        if not has_body:
            await self.app(scope, receive, send)
            return
        app: FastAPI = scope["app"]
        if self._table is None:
            self._table = _RouteTable(app)  # on the first body: every router is included by now
        found = self._table.match(scope["method"], _route_path(scope))
        entry, params = found if found is not None else (None, {})
        if entry is not None and entry.limit.admits_before_reading:
            await self.app(scope, receive, send)
            return
        # A copy, so the router still sets the path parameters itself; ``state`` is shared.
        request = Request({**scope, "path_params": params}, receive)
        limit = entry.limit if entry is not None else _UNMATCHED  # the router answers 404/405 unread
        max_bytes = limit.resolve(app.state.ctx.settings)
        try:
            if entry is not None and entry.admit is not None:
                await _run(entry.admit, request)
            if length is not None and length > max_bytes:
                raise _too_large(entry, max_bytes, limit.hint, length)
        except ChainkeeperError as refused:
            await _refuse(request, refused, send)
            return
        await self._read_within(scope, receive, send, request, entry, max_bytes, limit.hint)

    async def _read_within(self, scope: Scope, receive: Receive, send: Send, request: Request,
                           entry: _Entry | None, max_bytes: int, hint: str) -> None:
        """Run the route with a ``receive`` that counts the body and cuts it off past ``max_bytes``."""
        received = 0
        cut = started = False

        async def counted_receive() -> Message:
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}  # for a route that catches the cut and reads on
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    cut = True
                    raise _BodyCutOff
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if cut and not started:
                return  # whatever the route answers to a body cut short, the 413 below replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not cut or started:
                raise
            # The route's parser passed the cut on (as an error of its own, or ours): answered below.
        if cut and not started:
            await _refuse(request, _too_large(entry, max_bytes, hint, None), send)


async def _run(call: Callable[..., Any], request: Request) -> None:
    """Run a route's decision dependency (sync ones on a worker thread: they may read the store)."""
    if inspect.iscoroutinefunction(call):
        await call(request)
    else:
        await run_in_threadpool(call, request)


async def _refuse(request: Request, error: ChainkeeperError, send: Send) -> None:
    """Answer ``error`` as the app's own handler would, and close the connection (the body stays unread)."""
    handler = _handler(request.app, error)
    if handler is not None:
        response: Response = await handler(request, error) if inspect.iscoroutinefunction(handler) \
            else await run_in_threadpool(handler, request, error)
    else:
        rid = (request.scope.get("state") or {}).get("request_id")
        response = problem_response(error.status, error.title, error.message, hint=error.hint, request_id=rid)
    response.headers["connection"] = "close"
    await response(request.scope, request.receive, send)


def _handler(app: FastAPI, error: Exception) -> Callable[..., Any] | None:
    handlers: dict[Any, Callable[..., Any]] = getattr(app, "exception_handlers", {})
    return next((handlers[cls] for cls in type(error).__mro__ if cls in handlers), None)
