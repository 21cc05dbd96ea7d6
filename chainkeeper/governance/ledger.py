"""The audit ledger: an append-only, hash-chained record of every state change.

Each entry's ``hash`` is the sha256 of the previous entry's hash and the canonical JSON
of the entry itself (who, role, action, object, digests of before/after, time, request
id, details). Editing an entry breaks its own hash; deleting or reordering entries breaks
the chain of ``prev_hash``. ``verify_ledger`` walks the chain and names the first entry
that does not fit. (An attacker who rewrites the whole chain after a point is caught only
against a head hash kept elsewhere: ``verify_ledger`` returns the head for that.)

Appends are serialised: on SQLite the caller's session holds the write lock
(``db.session()``); on PostgreSQL a transaction-scoped advisory lock. A
unique ``prev_hash`` turns any fork that slipped through into an error, not a silent
branch. Secrets never enter the ledger: callers pass digests and identifiers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.tables import SqlAuditEntry

GENESIS = "0" * 64
_PG_LEDGER_LOCK = 0x636B6C67  # "cklg": the advisory lock key of the ledger
_VERIFY_BATCH = 20_000


def digest_of(value: Any) -> str:
    """sha256 of a value's canonical JSON: how before/after states enter the ledger."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    role: str | None
    action: str
    object_kind: str
    object_id: str
    before_digest: str | None
    after_digest: str | None
    request_id: str | None
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""


class _EntryFields(TypedDict):
    """What ``entry_hash`` hashes of an entry (all but the chain links)."""

    seq: int
    at: datetime
    actor: str
    role: str | None
    action: str
    object_kind: str
    object_id: str
    before_digest: str | None
    after_digest: str | None
    request_id: str | None
    details: dict[str, Any]


def entry_hash(prev_hash: str, *, seq: int, at: datetime, actor: str, role: str | None, action: str,
               object_kind: str, object_id: str, before_digest: str | None, after_digest: str | None,
               request_id: str | None, details: dict[str, Any]) -> str:
    """The hash that links an entry to its predecessor (pure)."""
    body = canonical_json({
        "seq": seq, "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "actor": actor, "role": role, "action": action,
        "object_kind": object_kind, "object_id": object_id, "before": before_digest, "after": after_digest,
        "request_id": request_id, "details": details,
    })
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _to_entry(row: SqlAuditEntry) -> AuditEntry:
    return AuditEntry(seq=row.seq, at=row.at, actor=row.actor, role=row.role, action=row.action,
                      object_kind=row.object_kind, object_id=row.object_id, before_digest=row.before_digest,
                      after_digest=row.after_digest, request_id=row.request_id, details=dict(row.details or {}),
                      prev_hash=row.prev_hash, hash=row.hash)


def append_entry(session: Session, actor: Actor, action: str, object_kind: str, object_id: str | int, *,
                 before: Any = None, after: Any = None, details: dict[str, Any] | None = None,
                 role: str | None = None) -> AuditEntry:
    """Append one entry inside the caller's transaction (so the change and its record
    commit together). On SQLite the session must come from ``db.session()``.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LEDGER_LOCK})
    last = session.execute(
        sa.select(SqlAuditEntry.seq, SqlAuditEntry.hash).order_by(SqlAuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    at = utcnow()
    row_role = role if role is not None else (",".join(sorted(actor.roles)) or None)
    fields: _EntryFields = {
        "seq": seq, "at": at, "actor": actor.name, "role": row_role, "action": action, "object_kind": object_kind,
        "object_id": str(object_id), "before_digest": digest_of(before) if before is not None else None,
        "after_digest": digest_of(after) if after is not None else None, "request_id": actor.request_id,
        "details": details or {},
    }
    row = SqlAuditEntry(**fields, prev_hash=prev, hash=entry_hash(prev, **fields))
    session.add(row)
    session.flush()
    return _to_entry(row)


def auditor(actor: Actor, action: str, object_kind: str) -> Callable[[Session, Any, Any], None]:
    """A hook for services outside governance: ``audit(session, before, after)`` appends
    an entry for the object in the caller's transaction (the objects need an ``id``)."""
    def audit(session: Session, before: Any, after: Any) -> None:
        append_entry(session, actor, action, object_kind, after.id, before=_plain(before), after=_plain(after))

    return audit


def _plain(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def record(
    db: Database, actor: Actor, action: str, object_kind: str, object_id: str | int, **kwargs: Any
) -> AuditEntry:
    """Append one entry in a transaction of its own (for events with no other write)."""
    with db.session() as s:
        return append_entry(s, actor, action, object_kind, object_id, **kwargs)


def list_entries(db: Database, *, object_kind: str | None = None, object_id: str | None = None,
                 limit: int = 100, after_seq: int = 0) -> list[AuditEntry]:
    with db.session() as s:
        query = sa.select(SqlAuditEntry).where(SqlAuditEntry.seq > after_seq).order_by(SqlAuditEntry.seq).limit(limit)
        if object_kind is not None:
            query = query.where(SqlAuditEntry.object_kind == object_kind)
        if object_id is not None:
            query = query.where(SqlAuditEntry.object_id == str(object_id))
        return [_to_entry(r) for r in s.scalars(query)]


def count_entries(db: Database) -> int:
    with db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(SqlAuditEntry)) or 0


def iter_entries(db: Database, *, batch: int = _VERIFY_BATCH) -> Iterator[AuditEntry]:
    """Every entry in ledger order, read in batches (keyset pagination)."""
    after = 0
    while True:
        with db.session() as s:
            rows = s.execute(
                sa.select(SqlAuditEntry.__table__)
                .where(SqlAuditEntry.seq > after)
                .order_by(SqlAuditEntry.seq)
                .limit(batch)
            ).mappings().all()
        if not rows:
            return
        for r in rows:
            values: dict[str, Any] = {k: (dict(v or {}) if k == "details" else v) for k, v in r.items()}
            yield AuditEntry(**values)
        after = rows[-1]["seq"]


@dataclass(frozen=True)
class LedgerVerdict:
    ok: bool
    entries: int
    head: str
    problem: str | None = None
    first_bad_seq: int | None = None


def verify_ledger(db: Database) -> LedgerVerdict:
    """Walk the chain; return the first entry that was edited, deleted or reordered."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for e in iter_entries(db):
        if e.seq != expected_seq:
            return LedgerVerdict(False, count, prev_hash,
                                 f"entry {expected_seq} is missing (the next entry is {e.seq}): "
                                 "an entry was deleted", expected_seq)
        if e.prev_hash != prev_hash:
            return LedgerVerdict(False, count, prev_hash, f"entry {e.seq} does not follow entry {e.seq - 1}: "
                                 "entries were reordered or one was replaced", e.seq)
        recomputed = entry_hash(e.prev_hash, seq=e.seq, at=e.at, actor=e.actor, role=e.role, action=e.action,
                                object_kind=e.object_kind, object_id=e.object_id, before_digest=e.before_digest,
                                after_digest=e.after_digest, request_id=e.request_id, details=e.details)
        if recomputed != e.hash:
            return LedgerVerdict(False, count, prev_hash, f"entry {e.seq} was edited: its content no longer matches "
                                 "its hash", e.seq)
        prev_hash, expected_seq, count = e.hash, expected_seq + 1, count + 1
    return LedgerVerdict(True, count, prev_hash)


def export_entries(db: Database) -> Iterator[str]:
    """The ledger as JSON Lines, one entry a line, in order."""
    for e in iter_entries(db):
        yield canonical_json({**e.__dict__, "at": e.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})

