"""``chainkeeper init``: migrate the store, seed the built-in roles and the first admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from chainkeeper.core import migrations
from chainkeeper.core.db import Database
from chainkeeper.core.settings import Settings, mask_url
from chainkeeper.governance.passwords import set_password
from chainkeeper.governance.permissions import seed_permissions
from chainkeeper.governance.roles import ROLE_DESCRIPTIONS
from chainkeeper.governance.tables import SqlRole, SqlUser
from chainkeeper.governance.users import create_user, issue_token


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
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
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
