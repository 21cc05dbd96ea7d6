"""Users, their API tokens and their web sessions.

A token's secret is shown once, when issued; the store keeps only its sha256, looked up
by an indexed equality (the secret has 256 bits of entropy, so a hash lookup leaks
nothing useful) and compared again with ``hmac.compare_digest``.

Both kinds of credential are rows of ``tokens``:

- an API token (``kind='token'``), issued by an admin, sent as a bearer header or by
  the CLI; it lives until it expires or is revoked;
- a session (``kind='session'``), started by a password sign-in, accepted only as the
  web UI's cookie; signing out, a password change, disabling or deleting the user, or an
  admin (``end_sessions``) ends it in the store, so a copied cookie stops working too.

Users are disabled (refused at once, sessions ended, tokens kept for when they are
enabled again) or deleted: the row stays, since the ledger names it, without password,
roles or working credentials. The last enabled holder of ``role.manage`` or
``user.manage`` can be neither.
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
TOKEN, SESSION = "token", "session"
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")
# How stale ``last_seen_at`` may get: one write a minute per credential, not one per request.
_LAST_SEEN_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class User:
    id: int
    name: str
    display_name: str
    disabled: bool
    roles: tuple[str, ...]
    created_at: datetime
    deleted_at: datetime | None = None
    state: str = "active"  # 'active', 'disabled' or 'deleted'


@dataclass(frozen=True)
class Credential:
    """Who a token or session stands for, and until when (what a cache may keep)."""

    actor: Actor
    kind: str  # TOKEN or SESSION
    name: str
    expires_at: datetime | None

    def check_usable(self, *, via_cookie: bool, now: datetime) -> None:
        """Refuse a credential past its expiry, or a session sent other than as the cookie.

        Raises:
            Unauthenticated: expired, or a session secret in a bearer header or the CLI.
        """
        if self.expires_at is not None and self.expires_at <= now:
            what = "web session" if self.kind == SESSION else f"API token {self.name!r}"
            raise Unauthenticated(f"The {what} expired at {self.expires_at:%Y-%m-%d %H:%M:%S} UTC.",
                                  hint="Sign in again." if self.kind == SESSION else "Ask an admin for a new token.")
        if self.kind == SESSION and not via_cookie:
            raise Unauthenticated("A web session is accepted only as the web UI's cookie, not as an API token.",
                                  hint="Use an API token ('chainkeeper users token NAME') for the API and the CLI.")


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
                roles=_roles_of(session, row.id), created_at=row.created_at, deleted_at=row.deleted_at,
                state="deleted" if row.deleted_at else "disabled" if row.disabled else "active")


def _find_user(session: sa.orm.Session, name: str, *, live: bool = True) -> SqlUser:
    """The user named ``name``; with ``live``, refuse a deleted one.

    Raises:
        NotFound: no such user. Conflict: deleted (with ``live``).
    """
    row = session.scalar(sa.select(SqlUser).where(SqlUser.name == name))
    if row is None:
        raise NotFound(f"There is no user {name!r}.", hint="List users with 'chainkeeper users list'.")
    if live and row.deleted_at is not None:
        raise Conflict(f"User {name!r} was deleted on {row.deleted_at:%Y-%m-%d %H:%M} UTC.",
                       hint="A deleted user stays deleted (the ledger names them); create a user with another name.")
    return row


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
            raise Conflict(f"A user named {name!r} already exists (or existed: names of deleted users are "
                           "not given out again).")
        row = SqlUser(name=name, display_name=display_name or name)
        s.add(row)
        s.flush()
        for role in dict.fromkeys(roles):
            s.add(SqlUserRole(user_id=row.id, role=role))
        s.flush()
        append_entry(s, actor, "user.create", "user", name, after={"name": name, "roles": sorted(set(roles))})
        return _to_user(s, row)


def get_user(db: Database, name: str) -> User:
    """A user, deleted ones included.

    Raises:
        NotFound: no such user.
    """
    with db.session() as s:
        return _to_user(s, _find_user(s, name, live=False))


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
        Forbidden: the actor may not manage users. NotFound: no such user. Conflict: deleted.
    """
    authorize(db, actor, "user.manage")
    expires_at = utcnow() + expires_in if expires_in is not None else None
    with db.session() as s:
        return add_token(s, _find_user(s, user_name), name=name, expires_at=expires_at, actor=actor)


def start_session(db: Database, *, actor: Actor, address: str, expires_in: timedelta) -> IssuedToken:
    """Start a web session for the user who just proved their password (``passwords.login``).

    Args:
        actor: the signed-in user.
        address: where they signed in from (kept with the session, shown to admins).
        expires_in: how long the session lasts unless it is ended first.

    Returns:
        The session's secret (for the cookie), shown only here.

    Raises:
        NotFound: the actor is no stored user. Conflict: deleted.
    """
    with db.session() as s:
        return add_token(s, _find_user(s, actor.name), name="web session", expires_at=utcnow() + expires_in,
                         actor=actor, kind=SESSION, address=address)


def add_token(session: sa.orm.Session, user: SqlUser, *, name: str, expires_at: datetime | None,
              actor: Actor, kind: str = TOKEN, address: str | None = None) -> IssuedToken:
    """Store a new token (or session) of ``user`` in the caller's transaction, with its ledger entry.

    For callers that decided already (``issue_token`` authorizes; the host-side admin
    reset needs none). Returns the secret, the only time it exists outside the caller.
    """
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = SqlToken(user_id=user.id, name=name, token_hash=_hash_token(secret), expires_at=expires_at, kind=kind,
                   created_address=address)
    session.add(row)
    session.flush()
    # The ledger gets the token's id and name, never its secret or hash.
    expires = expires_at.isoformat() if expires_at else None
    if kind == SESSION:
        append_entry(session, actor, "session.start", "token", row.id,
                     details={"user": user.name, "address": address, "expires_at": expires})
    else:
        append_entry(session, actor, "token.issue", "token", row.id,
                     details={"user": user.name, "name": name, "expires_at": expires})
    return IssuedToken(id=row.id, user=user.name, name=name, expires_at=expires_at, secret=secret)


def revoke_token(db: Database, token_id: int, *, actor: Actor = SYSTEM) -> None:
    """Revoke a token or end a session, by id (audited); revoking a revoked one changes nothing.

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such token.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        row = s.get(SqlToken, token_id)
        if row is None:
            raise NotFound(f"There is no token {token_id}.",
                           hint="List a user's tokens with 'chainkeeper users tokens NAME'.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            if row.kind == SESSION:
                append_entry(s, actor, "session.end", "token", token_id, details={"reason": "ended by an admin"})
            else:
                append_entry(s, actor, "token.revoke", "token", token_id, details={"name": row.name})


def _credentials(session: sa.orm.Session, user_name: str, kind: str) -> list[SqlToken]:
    user = _find_user(session, user_name, live=False)
    return list(session.scalars(sa.select(SqlToken).where(SqlToken.user_id == user.id, SqlToken.kind == kind)
                                .order_by(SqlToken.id)))


def list_tokens(db: Database, user_name: str, *, actor: Actor = SYSTEM) -> list[dict[str, object]]:
    """A user's API tokens (names, dates, state), never their secrets.

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        return [{"id": t.id, "name": t.name, "created_at": t.created_at, "expires_at": t.expires_at,
                 "last_seen_at": t.last_seen_at, "revoked": t.revoked_at is not None}
                for t in _credentials(s, user_name, TOKEN)]


def list_sessions(db: Database, user_name: str, *, actor: Actor = SYSTEM) -> list[dict[str, object]]:
    """A user's open web sessions: id, when and where they signed in, when last seen,
    when the session expires; never the secrets. Ended and expired ones are left out
    (the ledger keeps every start and end).

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user.
    """
    authorize(db, actor, "user.manage")
    now = utcnow()
    with db.session() as s:
        return [{"id": t.id, "created_at": t.created_at, "address": t.created_address,
                 "last_seen_at": t.last_seen_at, "expires_at": t.expires_at}
                for t in _credentials(s, user_name, SESSION)
                if t.revoked_at is None and (t.expires_at is None or t.expires_at > now)]


def end_session(db: Database, secret: str) -> str | None:
    """Sign out: end the session whose secret this is (audited as its user's act).

    Holding the secret is the authority; an unknown or ended session, or an API token
    sent as the cookie, changes nothing.

    Returns:
        The name of the user signed out, or None when there was no open session.
    """
    digest = _hash_token(secret)
    with db.session() as s:
        row = s.scalar(sa.select(SqlToken).where(SqlToken.token_hash == digest))
        if row is None or row.kind != SESSION or row.revoked_at is not None:
            return None
        user = s.get(SqlUser, row.user_id)
        assert user is not None  # foreign key
        row.revoked_at = utcnow()
        append_entry(s, actor_for_user(s, user), "session.end", "token", row.id, details={"reason": "signed out"})
        return user.name


def end_sessions(db: Database, user_name: str, *, actor: Actor = SYSTEM) -> int:
    """End every open web session of a user at once (audited); their API tokens stay.

    Returns:
        How many sessions were ended.

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        return end_user_sessions(s, _find_user(s, user_name, live=False), actor=actor, reason="ended by an admin")


def end_user_sessions(session: sa.orm.Session, user: SqlUser, *, actor: Actor, reason: str) -> int:
    """End ``user``'s open sessions in the caller's transaction, with one ledger entry.

    For services that decided already (a password change, disabling or deleting a user).
    Revoked through the ORM, so this process's token cache drops them when the
    transaction commits (``api.auth``).

    Returns:
        How many sessions were ended.
    """
    now = utcnow()
    rows = list(session.scalars(sa.select(SqlToken).where(SqlToken.user_id == user.id, SqlToken.kind == SESSION,
                                                          SqlToken.revoked_at.is_(None))))
    for row in rows:
        row.revoked_at = now
    if rows:
        append_entry(session, actor, "session.end_all", "user", user.name,
                     details={"reason": reason, "sessions": [r.id for r in rows]})
    return len(rows)


def authenticate_credential(db: Database, secret: str) -> Credential:
    """Who a token or session secret stands for, its kind and its expiry.

    Does not judge the channel: ``Credential.check_usable`` refuses a session sent as a
    bearer token (``authenticate_token`` does so for the API and the CLI).

    Raises:
        Unauthenticated: unknown, revoked or expired, or a disabled or deleted user. The
            message never repeats the secret.
    """
    digest = _hash_token(secret)
    now = utcnow()
    with db.session() as s:
        row = s.scalar(sa.select(SqlToken).where(SqlToken.token_hash == digest))
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise Unauthenticated("The API token is not valid.", hint="Ask an admin for a new token.")
        session = row.kind == SESSION
        user = s.get(SqlUser, row.user_id)
        assert user is not None  # foreign key
        if user.deleted_at is not None:
            raise Unauthenticated(f"User {user.name!r} was deleted.", hint="Ask an admin for an account.")
        if row.revoked_at is not None:
            if session:
                raise Unauthenticated("This web session has ended (signed out, or ended by a password change or "
                                      "an admin).", hint="Sign in again.")
            raise Unauthenticated(f"The API token {row.name!r} was revoked.", hint="Ask an admin for a new token.")
        if user.disabled:
            raise Unauthenticated(f"User {user.name!r} is disabled.", hint="Ask an admin to enable the user.")
        credential = Credential(actor_for_user(s, user), row.kind, row.name, row.expires_at)
        credential.check_usable(via_cookie=True, now=now)  # expiry; the channel is the caller's to judge
        if row.last_seen_at is None or now - row.last_seen_at >= _LAST_SEEN_EVERY:
            # A Core update: not an ORM change of the row, so it does not clear the token cache.
            s.execute(sa.update(SqlToken).where(SqlToken.id == row.id).values(last_seen_at=now)
                      .execution_options(synchronize_session=False))
        return credential


def authenticate_token(db: Database, secret: str) -> Actor:
    """The actor an API token stands for (a bearer header, the CLI's --token).

    Raises:
        Unauthenticated: unknown, revoked or expired token, a web session's secret, or a
            disabled or deleted user. The message never repeats the token.
    """
    credential = authenticate_credential(db, secret)
    credential.check_usable(via_cookie=False, now=utcnow())
    return credential.actor


def grant_role(db: Database, user_name: str, role: str, *, project: str | None = None,
               actor: Actor = SYSTEM) -> User:
    """Bind a role to a user, everywhere or inside one project.

    Raises:
        NotFound: no such user or role.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        user = _find_user(s, user_name)
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
        user = _find_user(s, user_name, live=False)
        before = administrators(s)
        s.execute(sa.delete(SqlUserRole).where(SqlUserRole.user_id == user.id, SqlUserRole.role == role,
                                               SqlUserRole.project.is_(None) if project is None
                                               else SqlUserRole.project == project))
        check_administrators_remain(s, before)
        append_entry(s, actor, "role.revoke", "user", user_name, details={"role": role, "project": project})
        return _to_user(s, user)


def disable_user(db: Database, user_name: str, *, actor: Actor = SYSTEM) -> User:
    """Disable a user: their tokens and sessions are refused at once and their sessions
    end; their API tokens work again if the user is enabled. Disabling a disabled user
    changes nothing.

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user. Conflict:
            deleted, or the last enabled holder of role.manage or user.manage.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        user = _find_user(s, user_name)
        if not user.disabled:
            before = administrators(s)
            user.disabled = True
            s.flush()
            check_administrators_remain(s, before)
            ended = end_user_sessions(s, user, actor=actor, reason="user disabled")
            append_entry(s, actor, "user.disable", "user", user_name, details={"sessions_ended": ended})
        return _to_user(s, user)


def enable_user(db: Database, user_name: str, *, actor: Actor = SYSTEM) -> User:
    """Enable a disabled user again (their unexpired, unrevoked API tokens work again).

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user. Conflict: deleted.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        user = _find_user(s, user_name)
        if user.disabled:
            user.disabled = False
            append_entry(s, actor, "user.enable", "user", user_name)
        return _to_user(s, user)


def delete_user(db: Database, user_name: str, *, actor: Actor = SYSTEM) -> User:
    """Delete a user: disabled for good, password, role bindings and credentials removed.

    The row stays (marked deleted) because the ledger, approvals and ownership records
    name the user; the name is not given out again.

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user. Conflict:
            deleted already, or the last enabled holder of role.manage or user.manage.
    """
    authorize(db, actor, "user.manage")
    with db.session() as s:
        user = _find_user(s, user_name)
        before = administrators(s)
        roles = list(_roles_of(s, user.id))
        now = utcnow()
        user.disabled, user.deleted_at, user.password_hash = True, now, None
        s.execute(sa.delete(SqlUserRole).where(SqlUserRole.user_id == user.id))
        s.flush()
        check_administrators_remain(s, before)
        sessions = end_user_sessions(s, user, actor=actor, reason="user deleted")
        tokens = list(s.scalars(sa.select(SqlToken).where(SqlToken.user_id == user.id, SqlToken.kind == TOKEN,
                                                          SqlToken.revoked_at.is_(None))))
        for token in tokens:
            token.revoked_at = now
        append_entry(s, actor, "user.delete", "user", user_name,
                     details={"roles": roles, "tokens_revoked": [t.id for t in tokens], "sessions_ended": sessions})
        return _to_user(s, user)


def describe_actor(db: Database, *, actor: Actor) -> dict[str, object]:
    """Who the actor is, with their global and project roles (``owner.read`` anywhere).

    Raises:
        Forbidden: the actor holds no role that may ask who is responsible for things.
    """
    projects_allowed(db, actor, "owner.read")
    return {"user": actor.name, "roles": sorted(actor.roles),
            "project_roles": sorted(f"{r}@{p}" for r, p in actor.scoped_roles)}
