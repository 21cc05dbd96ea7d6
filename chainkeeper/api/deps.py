"""What a route needs from the request: the open stores and the caller.

``get_ctx`` is the one way a route reaches the ``Context`` the app was built with
(``create_app(ctx)`` stores it on ``app.state``; there are no globals).
``current_actor`` is the hook the foundation issue left for identity: the governance
issue filled it in, so it now returns the actor that ``chainkeeper.api.auth.require``
authenticated and authorised for the route. A route still declares its decision with
``require(action)``/``public()``; use ``current_actor`` only in code that runs after it
(the permission test walks every route for that decision).
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Interval
from fastapi import Request

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Unauthenticated
from chainkeeper.governance.actors import Actor

__all__ = ["MAX_INT64", "Id", "current_actor", "get_ctx"]

MAX_INT64 = 2**63 - 1
# Every id in a path, query or body: what the store can hold, declared in the OpenAPI
# document (so a client, and the fuzzer, see the bound) and checked before a route runs.
Id = Annotated[int, Interval(ge=0, le=MAX_INT64)]


def get_ctx(request: Request) -> Context:
    """The ``Context`` of the app serving ``request``."""
    ctx: Context = request.app.state.ctx
    return ctx


def current_actor(request: Request) -> Actor:
    """The caller, as authenticated by the route's ``require(...)`` dependency.

    Raises:
        Unauthenticated: the route declared no ``require(...)``, so nobody was authenticated.
    """
    actor = getattr(request.state, "actor", None)
    if not isinstance(actor, Actor):
        raise Unauthenticated("This route has no authenticated caller.",
                              hint="Declare the route with require('<action>') from chainkeeper.api.auth.")
    return actor
