"""``chainkeeper init``: migrate the store, seed the built-in roles and the first admin;
``chainkeeper users reset-admin``: give that admin new secrets from the host."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from chainkeeper.core import migrations
from chainkeeper.core.db import Database, verify_schema
from chainkeeper.core.errors import Conflict, NotFound
from chainkeeper.core.file_modes import keep_files_private
from chainkeeper.core.settings import Settings, mask_url
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.ledger_keys import use_ledger_keys
from chainkeeper.governance.passwords import hash_password, set_password
from chainkeeper.governance.permissions import seed_permissions
from chainkeeper.governance.roles import ROLE_DESCRIPTIONS
from chainkeeper.governance.tables import SqlRole, SqlUser
from chainkeeper.governance.users import add_token, create_user, issue_token


@dataclass(frozen=True)
class InitResult:
    database: str
    revision: str
    admin_token: str | None  # only when the admin was created by this call
    admin_password: str | None = None  # likewise: for the web UI's sign-in page


def seed_roles(db: Database) -> None:
    """Insert the built-in roles that are missing; never touches edited ones."""
    with db.session() as s:
        present = set(s.scalars(sa.select(SqlRole.name)))
        for name, description in ROLE_DESCRIPTIONS.items():
            if name not in present:
                s.add(SqlRole(name=name, description=description, builtin=True))


def initialise(settings: Settings) -> InitResult:
    """Bring the store to the current schema and seed it. Safe to run again.

    Returns:
        Where the store is, its revision, and the admin's token if this call created
        the admin (the only time it is shown).
    """
    keep_files_private(settings)  # the store's files are owner-only (issue 15, item 7)
    db = Database(settings.resolved_database_url)
    use_ledger_keys(db, settings)
    try:
        migrations.upgrade(db)
        seed_roles(db)
        seed_permissions(db)
        token = password = None
        with db.session() as s:
            has_admin = s.scalar(sa.select(SqlUser.id).where(SqlUser.name == "admin")) is not None
        if not has_admin:
            create_user(db, "admin", roles=["admin"], display_name="Administrator")
            token = issue_token(db, "admin", name="bootstrap").secret
            password = secrets.token_urlsafe(12)
            set_password(db, "admin", password)
        return InitResult(database=mask_url(db.url), revision=migrations.current_revision(db) or "",
                          admin_token=token, admin_password=password)
    finally:
        db.dispose()


@dataclass(frozen=True)
class AdminReset:
    user: str
    token_id: int
    token: str  # shown once: only its digest is stored
    password: str  # likewise


def reset_admin(settings: Settings, *, host_user: str) -> AdminReset:
    """Give the user 'admin' a new web password and a new API token, for someone who lost
    them and has access to the store from the host (``chainkeeper users reset-admin``).

    It opens the store directly and asks for no token: whoever can open the store can
    change it anyway. The admin's earlier tokens stay valid (revoke them with ``chainkeeper
    users revoke-token``); a disabled admin is enabled again. The ledger records it as a
    host-side recovery by ``host:<host_user>``, in the same transaction as the change.

    Args:
        settings: where the store is.
        host_user: who ran it on the host (the operating-system user name).

    Returns:
        The new token and password (the only time they are shown).

    Raises:
        SchemaError: the store was never initialised, or is at another schema revision.
        NotFound: the store holds no user 'admin'. Conflict: 'admin' was deleted.
        StoreError: the database cannot be reached.
    """
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///").split("?")[0]).exists():
        raise NotFound(f"There is no store at {mask_url(url)}.",
                       hint="Pass the store's folder with --home (or CHAINKEEPER_HOME), or create one with "
                       "'chainkeeper init'.")
    db = Database(url)
    use_ledger_keys(db, settings)
    try:
        verify_schema(db)
        actor = Actor(name=f"host:{host_user}", roles=frozenset({"admin"}))
        password = secrets.token_urlsafe(12)
        with db.session() as s:
            user = s.scalar(sa.select(SqlUser).where(SqlUser.name == "admin"))
            if user is None:
                raise NotFound(f"The store at {mask_url(url)} has no user 'admin'.",
                               hint="Run 'chainkeeper init' to create it.")
            if user.deleted_at is not None:
                # Deleting the last administrator is refused, so another one exists to act.
                raise Conflict(f"The user 'admin' was deleted on {user.deleted_at:%Y-%m-%d}; reset-admin does not "
                               "bring a deleted user back.",
                               hint="Ask another administrator (a user with the admin role) to act, or create a "
                               "new administrator with 'chainkeeper users create NAME --role admin' as them.")
            was_disabled = user.disabled
            user.password_hash = hash_password(password)
            user.disabled = False
            append_entry(s, actor, "user.reset_admin", "user", user.name,
                         details={"recovery": "host", "host_user": host_user, "was_disabled": was_disabled})
            issued = add_token(s, user, name="host recovery", expires_at=None, actor=actor)
        return AdminReset(user=user.name, token_id=issued.id, token=issued.secret, password=password)
    finally:
        db.dispose()
