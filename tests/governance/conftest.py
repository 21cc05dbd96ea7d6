from __future__ import annotations

from chainkeeper.core.context import Context
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.users import authenticate_token, create_user, issue_token


def make_actor(ctx: Context, name: str, *roles: str) -> Actor:
    """A real user with these roles, resolved through a real token."""
    create_user(ctx.db, name, roles=list(roles))
    return authenticate_token(ctx.db, issue_token(ctx.db, name, name="test").secret)
