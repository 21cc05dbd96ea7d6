"""Users and their API tokens.

A token's secret is shown once, when issued; the store keeps only its sha256, looked up
by an indexed equality (the secret has 256 bits of entropy, so a hash lookup leaks
nothing useful) and compared again with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from chainkeeper.governance.actors import SYSTEM, Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import (
    administrators,
    authorize,
    check_administrators_remain,
    projects_allowed,
)
from chainkeeper.governance.tables import SqlRole, SqlToken, SqlUser, SqlUserRole

TOKEN_PREFIX = "ck_"
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    display_name: str
    disabled: bool
    roles: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    id: int
    user: str
    name: str
    expires_at: datetime | None
    secret: str  # shown once; never stored


def _hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _roles_of(session: sa.orm.Session, user_id: int) -> tuple[str, ...]:
    """Role bindings as text: 'data_steward' (everywhere) or 'data_steward@banking'."""
    rows = session.execute(sa.select(SqlUserRole.role, SqlUserRole.project).where(SqlUserRole.user_id == user_id)
                           .order_by(SqlUserRole.role, SqlUserRole.project))
    return tuple(role if project is None else f"{role}@{project}" for role, project in rows)


def actor_for_user(session: sa.orm.Session, user: SqlUser) -> Actor:
    """The actor of a user: global roles, and the roles bound to one project."""
    rows = session.execute(sa.select(SqlUserRole.role, SqlUserRole.project).where(SqlUserRole.user_id == user.id))
    roles, scoped = set(), set()
    for role, project in rows:
        if project is None:
            roles.add(role)
        else:
            scoped.add((role, project))
    return Actor(name=user.name, roles=frozenset(roles), scoped_roles=frozenset(scoped), user_id=user.id)


def _to_user(session: sa.orm.Session, row: SqlUser) -> User:
    return User(id=row.id, name=row.name, display_name=row.display_name, disabled=row.disabled,
                roles=_roles_of(session, row.id), created_at=row.created_at)


def create_user(db: Database, name: str, *, roles: list[str], display_name: str = "",
                actor: Actor = SYSTEM) -> User:
    """Create a user holding the given roles.

    Raises:
        InvalidInput: a malformed name or an unknown role.
        Conflict: the name is taken.
    """
    authorize(db, actor, "user.manage")
    if not _NAME.match(name):
        raise InvalidInput(f"User name {name!r} is not valid.",
                           hint="Use 2-64 lowercase letters, digits, '.', '_' or '-', starting with a letter.")
    with db.session() as s:
        known = set(s.scalars(sa.select(SqlRole.name)))
        unknown = [r for r in roles if r not in known]
        if unknown:
            raise InvalidInput(f"Unknown role(s): {', '.join(unknown)}.",
                               hint=f"Known roles: {', '.join(sorted(known))}.")
        if s.scalar(sa.select(SqlUser.id).where(SqlUser.name == name)) is not None:
            raise Conflict(f"A user named {name!r} already exists.")
        row = SqlUser(name=name, display_name=display_name or name)
        s.add(row)
        s.flush()
        for role in dict.fromkeys(roles):
            s.add(SqlUserRole(user_id=row.id, role=role))
        s.flush()
        append_entry(s, actor, "user.create", "user", name, after={"name": name, "roles": sorted(set(roles))})
        return _to_user(s, row)


def get_user(db: Database, name: str) -> User:
    with db.session() as s:
        row = s.scalar(sa.select(SqlUser).where(SqlUser.name == name))
        if row is None:
            raise NotFound(f"There is no user {name!r}.", hint="List users with 'chainkeeper users list'.")
        return _to_user(s, row)


def list_users(db: Database, *, actor: Actor = SYSTEM) -> list[User]:
    """Every user with their roles.

    Raises:
        Forbidden: the actor may not manage users.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        return [_to_user(s, r) for r in s.scalars(sa.select(SqlUser).order_by(SqlUser.name))]


def issue_token(db: Database, user_name: str, *, name: str, expires_in: timedelta | None = None,
                actor: Actor = SYSTEM) -> IssuedToken:
    """Create an API token for a user and return its secret (the only time it is shown).

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user.
    """
    authorize(db, actor, "user.manage")
    return _issue(db, user_name, name=name, expires_in=expires_in, actor=actor)


def issue_session_token(db: Database, *, actor: Actor, expires_in: timedelta) -> IssuedToken:
    """The token of a sign-in session, for the user who just proved their password.

    Raises:
        NotFound: the actor is no stored user.
    """
    return _issue(db, actor.name, name="web session", expires_in=expires_in, actor=actor)


def _issue(db: Database, user_name: str, *, name: str, expires_in: timedelta | None, actor: Actor) -> IssuedToken:
    expires_at = utcnow() + expires_in if expires_in is not None else None
    with db.session() as s:
        user = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        if user is None:
            raise NotFound(f"There is no user {user_name!r}.")
        return add_token(s, user, name=name, expires_at=expires_at, actor=actor)


def add_token(session: sa.orm.Session, user: SqlUser, *, name: str, expires_at: datetime | None,
              actor: Actor) -> IssuedToken:
    """Store a new token of ``user`` in the caller's transaction, with its ledger entry.

    For callers that decided already (``issue_token`` authorizes; the host-side admin
    reset needs none). Returns the secret, the only time it exists outside the caller.
    """
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = SqlToken(user_id=user.id, name=name, token_hash=_hash_token(secret), expires_at=expires_at)
    session.add(row)
    session.flush()
    # The ledger gets the token's id and name, never its secret or hash.
    append_entry(session, actor, "token.issue", "token", row.id, details={"user": user.name, "name": name,
                 "expires_at": expires_at.isoformat() if expires_at else None})
    return IssuedToken(id=row.id, user=user.name, name=name, expires_at=expires_at, secret=secret)


def revoke_token(db: Database, token_id: int, *, actor: Actor = SYSTEM) -> None:
    """Revoke a token (audited); revoking a revoked token changes nothing.

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such token.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        row = s.get(SqlToken, token_id)
        if row is None:
            raise NotFound(f"There is no token {token_id}.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            append_entry(s, actor, "token.revoke", "token", token_id, details={"name": row.name})


def list_tokens(db: Database, user_name: str, *, actor: Actor = SYSTEM) -> list[dict[str, object]]:
    """A user's tokens (names, dates, state), never their secrets.

    Raises:
        Forbidden: the actor may not manage users.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        rows = s.scalars(sa.select(SqlToken).join(SqlUser, SqlUser.id == SqlToken.user_id)
                         .where(SqlUser.name == user_name).order_by(SqlToken.id))
        return [{"id": t.id, "name": t.name, "created_at": t.created_at, "expires_at": t.expires_at,
                 "revoked": t.revoked_at is not None} for t in rows]


def authenticate_token(db: Database, secret: str) -> Actor:
    """The actor a bearer token stands for.

    Raises:
        Unauthenticated: unknown, revoked or expired token, or a disabled user. The
            message never repeats the token.
    """
    digest = _hash_token(secret)
    with db.session() as s:
        row = s.scalar(sa.select(SqlToken).where(SqlToken.token_hash == digest))
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise Unauthenticated("The API token is not valid.", hint="Ask an admin for a new token.")
        if row.revoked_at is not None:
            raise Unauthenticated(f"The API token {row.name!r} was revoked.", hint="Ask an admin for a new token.")
        if row.expires_at is not None and row.expires_at <= utcnow():
            raise Unauthenticated(f"The API token {row.name!r} expired at {row.expires_at:%Y-%m-%d %H:%M} UTC.",
                                  hint="Ask an admin for a new token.")
        user = s.get(SqlUser, row.user_id)
        assert user is not None  # foreign key
        if user.disabled:
            raise Unauthenticated(f"User {user.name!r} is disabled.")
        return actor_for_user(s, user)


def grant_role(db: Database, user_name: str, role: str, *, project: str | None = None,
               actor: Actor = SYSTEM) -> User:
    """Bind a role to a user, everywhere or inside one project.

    Raises:
        NotFound: no such user or role.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        user = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        if user is None:
            raise NotFound(f"There is no user {user_name!r}.")
        if s.get(SqlRole, role) is None:
            known = ", ".join(s.scalars(sa.select(SqlRole.name).order_by(SqlRole.name)))
            raise NotFound(f"There is no role {role!r}.", hint=f"Known roles: {known}.")
        exists = s.scalar(sa.select(SqlUserRole.id).where(SqlUserRole.user_id == user.id, SqlUserRole.role == role,
                                                          SqlUserRole.project.is_(None) if project is None
                                                          else SqlUserRole.project == project))
        if exists is None:
            s.add(SqlUserRole(user_id=user.id, role=role, project=project))
            s.flush()
            append_entry(s, actor, "role.grant", "user", user_name, details={"role": role, "project": project})
        return _to_user(s, user)


def revoke_role(db: Database, user_name: str, role: str, *, project: str | None = None,
                actor: Actor = SYSTEM) -> User:
    """Remove a role binding (everywhere, or inside one project).

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        user = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        if user is None:
            raise NotFound(f"There is no user {user_name!r}.")
        before = administrators(s)
        s.execute(sa.delete(SqlUserRole).where(SqlUserRole.user_id == user.id, SqlUserRole.role == role,
                                               SqlUserRole.project.is_(None) if project is None
                                               else SqlUserRole.project == project))
        check_administrators_remain(s, before)
        append_entry(s, actor, "role.revoke", "user", user_name, details={"role": role, "project": project})
        return _to_user(s, user)


def describe_actor(db: Database, *, actor: Actor) -> dict[str, object]:
    """Who the actor is, with their global and project roles (``owner.read`` anywhere).

    Raises:
        Forbidden: the actor holds no role that may ask who is responsible for things.
    """
    projects_allowed(db, actor, "owner.read")
    return {"user": actor.name, "roles": sorted(actor.roles),
            "project_roles": sorted(f"{r}@{p}" for r, p in actor.scoped_roles)}
