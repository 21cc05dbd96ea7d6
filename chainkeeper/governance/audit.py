"""The ledger as people read it: entries, verification and export, each decided for the actor.

``governance.ledger`` writes and checks the chain of entries and knows no permissions
(the permission module itself writes to it); this module puts ``audit.read`` and
``audit.verify`` in front of its readers. The ledger spans every project, so both are
global permissions.
"""

from __future__ import annotations

from collections.abc import Iterator

from chainkeeper.core.db import Database
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import (
    AuditEntry,
    LedgerVerdict,
    export_entries,
    list_entries,
    verify_ledger,
)
from chainkeeper.governance.permissions import authorize

__all__ = ["export_ledger", "read_entries", "verify_ledger_as"]



def read_entries(db: Database, *, actor: Actor, object_kind: str | None = None, object_id: str | None = None,
                 limit: int = 100, after_seq: int = 0) -> list[AuditEntry]:
    """``list_entries`` for someone who may read the ledger (``audit.read``, global).

    Raises:
        Forbidden: not allowed.
    """
    authorize(db, actor, "audit.read")
    return list_entries(db, object_kind=object_kind, object_id=object_id, limit=limit, after_seq=after_seq)


def verify_ledger_as(db: Database, *, actor: Actor) -> LedgerVerdict:
    """``verify_ledger`` for someone who may verify it (``audit.verify``, global).

    Raises:
        Forbidden: not allowed.
    """
    authorize(db, actor, "audit.verify")
    return verify_ledger(db)


def export_ledger(db: Database, *, actor: Actor) -> Iterator[str]:
    """``export_entries`` for someone who may read the ledger; decided before the first line.

    Raises:
        Forbidden: not allowed.
    """
    authorize(db, actor, "audit.read")
    return export_entries(db)
