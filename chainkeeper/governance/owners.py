"""Stored owner reassignments, and who holds a role: governance's side of ownership.

Who owns an object is its creator until someone reassigns it; the reassignments are kept
here, audited. The chain layer (``chain.ownership``), which knows every stage's objects,
combines them with the creators; ORM rows stay in this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.tables import SqlOwnership, SqlUser, SqlUserRole


@dataclass(frozen=True)
class OwnerRecord:
    """A stored reassignment: the owner and the role responsible for the object."""

    owner: str
    responsible_role: str


def stored_owner(db: Database, kind: str, object_id: str) -> OwnerRecord | None:
    """The reassignment of an object, or None while its creator owns it."""
    with db.session(readonly=True) as s:
        row = s.get(SqlOwnership, (kind, object_id))
        return OwnerRecord(row.owner, row.responsible_role) if row else None


def role_holders(db: Database, role: str) -> tuple[str, ...]:
    """The users holding ``role`` (anywhere), sorted."""
    with db.session(readonly=True) as s:
        return tuple(sorted(set(s.scalars(
            sa.select(SqlUser.name).join(SqlUserRole, SqlUserRole.user_id == SqlUser.id)
            .where(SqlUserRole.role == role)))))


def store_owner(db: Database, kind: str, object_id: str, *, owner: str, responsible_role: str, previous: str,
                actor: Actor) -> None:
    """Record a reassignment and its ledger entry in one transaction (the caller authorised it)."""
    with db.session() as s:
        s.merge(SqlOwnership(object_kind=kind, object_id=object_id, owner=owner, responsible_role=responsible_role,
                             updated_at=utcnow()))
        append_entry(s, actor, "owner.assign", kind, object_id, before={"owner": previous},
                     after={"owner": owner}, details={"from": previous, "to": owner})
