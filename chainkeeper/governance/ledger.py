"""The audit ledger: an append-only, keyed hash chain of every state change.

Each entry's ``hash`` is HMAC-SHA256, under the ledger key named by its ``key_id``, of
the previous entry's hash and the canonical JSON of the entry itself (who, role, action,
object, digests of before/after, time, request id, details, key id). The key is held
outside the database (``ledger_keys``). Editing an entry breaks its own hash; deleting or
reordering entries breaks the chain of ``prev_hash``; forging, appending or rehashing
entries needs the key. Entries written before the ledger had a key (no ``key_id``) keep
their plain sha256 and verify as before, but an unkeyed entry after a keyed one is
tampering. Cutting off the end leaves a valid, shorter chain: ``verify_ledger`` catches
that, and a rewrite by a key holder, against anchors of the head kept elsewhere
(``anchors``). It names the first entry that does not fit, why, and what to do.

Appends are serialised: on SQLite the caller's session holds the write lock
(``db.session()``); on PostgreSQL a transaction-scoped advisory lock. A
unique ``prev_hash`` turns any fork that slipped through into an error, not a silent
branch. Secrets never enter the ledger: callers pass digests and identifiers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import ConfigError
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.anchors import Anchor, anchor_mac, make_anchor
from chainkeeper.governance.ledger_keys import LedgerKey, ledger_keys_of
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
    key_id: str | None = None  # the ledger key of its HMAC; None: an entry from before the ledger had a key


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
               request_id: str | None, details: dict[str, Any], key: LedgerKey | None = None) -> str:
    """The hash that links an entry to its predecessor (pure): HMAC-SHA256 under ``key``,
    or, for an entry from before the ledger had a key, plain sha256."""
    fields: dict[str, Any] = {
        "seq": seq, "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "actor": actor, "role": role, "action": action,
        "object_kind": object_kind, "object_id": object_id, "before": before_digest, "after": after_digest,
        "request_id": request_id, "details": details,
    }
    if key is None:
        return hashlib.sha256(f"{prev_hash}\n{canonical_json(fields)}".encode()).hexdigest()
    message = f"{prev_hash}\n{canonical_json({**fields, 'key_id': key.id})}".encode()
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def _to_entry(row: SqlAuditEntry) -> AuditEntry:
    return AuditEntry(seq=row.seq, at=row.at, actor=row.actor, role=row.role, action=row.action,
                      object_kind=row.object_kind, object_id=row.object_id, before_digest=row.before_digest,
                      after_digest=row.after_digest, request_id=row.request_id, details=dict(row.details or {}),
                      prev_hash=row.prev_hash, hash=row.hash, key_id=row.key_id)


def append_entry(session: Session, actor: Actor, action: str, object_kind: str, object_id: str | int, *,
                 before: Any = None, after: Any = None, details: dict[str, Any] | None = None,
                 role: str | None = None) -> AuditEntry:
    """Append one entry inside the caller's transaction (so the change and its record
    commit together), keyed with the store's current ledger key. The session must come
    from ``db.session()`` (on SQLite it holds the write lock; it knows its store's keys).

    Raises:
        ConfigError: the ledger key file is missing or not this ledger's (with the fix).
    """
    store = session.info.get("database")
    if not isinstance(store, Database):
        raise ConfigError("A ledger entry needs a session from db.session() (it knows the store's ledger keys).")
    keys = ledger_keys_of(store)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LEDGER_LOCK})
    last = session.execute(
        sa.select(SqlAuditEntry.seq, SqlAuditEntry.hash, SqlAuditEntry.key_id)
        .order_by(SqlAuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    key = keys.signing_key(last.key_id if last else None)
    at = utcnow()
    row_role = role if role is not None else (",".join(sorted(actor.roles)) or None)
    fields: _EntryFields = {
        "seq": seq, "at": at, "actor": actor.name, "role": row_role, "action": action, "object_kind": object_kind,
        "object_id": str(object_id), "before_digest": digest_of(before) if before is not None else None,
        "after_digest": digest_of(after) if after is not None else None, "request_id": actor.request_id,
        "details": details or {},
    }
    row = SqlAuditEntry(**fields, prev_hash=prev, hash=entry_hash(prev, **fields, key=key), key_id=key.id)
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


class Reason:
    """Why a ledger fails verification: the names ``LedgerVerdict.reason`` takes."""

    DELETED = "deleted"  # an entry is missing from the middle
    REORDERED = "reordered"  # an entry does not link to the one before it
    EDITED = "edited"  # an entry's content does not match its hash (edited, or forged without the key)
    UNKEYED = "unkeyed"  # an entry without a key after a keyed one: written without the key
    KEY_MISSING = "key-missing"  # the key file is missing: keyed entries cannot be checked
    UNKNOWN_KEY = "unknown-key"  # an entry or anchor names a key the keyring does not hold
    ANCHOR_FORGED = "anchor-forged"  # an anchor's MAC does not match: the anchor file was edited
    REWRITTEN = "rewritten"  # an anchored entry has another hash now: rewritten (with the key)
    TRUNCATED = "truncated"  # the ledger is shorter than an anchor saw it: its end was cut off


@dataclass(frozen=True)
class LedgerVerdict:
    """What ``verify_ledger`` found: ok, or the first problem, its reason and what to do."""

    ok: bool
    entries: int  # intact entries before the problem (all of them when ok)
    head: str  # the hash of the last intact entry
    problem: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None  # a ``Reason`` name
    hint: str | None = None  # what to do
    anchors: int = 0  # anchors checked
    anchored_seq: int | None = None  # the highest entry an anchor vouches for


_RESTORE = ("Restore the database from a backup taken before it, and find out who had write access to the "
            "database (and to the ledger key file).")


def _intact(count: int) -> str:
    return f"Entries 1-{count} are intact. " if count else ""


def _secret_or_problem(db: Database, key_id: str, what: str, *, seq: int | None = None, count: int = 0,
                       head: str = GENESIS, anchors: int = 0) -> bytes | LedgerVerdict:
    """The secret of ledger key ``key_id``, or the verdict of why there is none."""
    keys = ledger_keys_of(db)
    ring = keys.knows(key_id)
    secret = ring.secret(key_id) if ring is not None else None
    if secret is not None:
        return secret
    if keys.keyring() is None:
        return LedgerVerdict(False, count, head, f"{what} was made with ledger key {key_id}, but the key file "
                             f"{keys.where} is missing, so it cannot be checked", seq, Reason.KEY_MISSING,
                             f"Restore the key file from your backup to {keys.where} (or point ledger_key_file / "
                             "CHAINKEEPER_LEDGER_KEY at it) and verify again.", anchors)
    return LedgerVerdict(False, count, head, f"{what} names ledger key {key_id}, which the keys in {keys.where} "
                         "do not hold: it was forged, or these are not this ledger's keys", seq, Reason.UNKNOWN_KEY,
                         f"Check that {keys.where} is this store's key file (restore it from your backup); if it "
                         "is, the entry was forged. " + _RESTORE, anchors)


def verify_ledger(db: Database, *, anchors: Sequence[Anchor] = ()) -> LedgerVerdict:
    """Walk the chain, and check it against ``anchors`` of its head kept elsewhere.

    Finds the first entry that was edited, deleted, reordered, forged or rehashed without
    the key, an anchor that was tampered with, an anchored entry that was rewritten (with
    the key), and an end cut off after an anchor. Reads the ledger key only when a keyed
    entry or an anchor needs it.

    Returns:
        The verdict: ok, or the first problem with its reason (``Reason``) and what to do.

    Raises:
        ConfigError: the store was opened without its settings and the ledger is keyed.
    """
    by_seq: dict[int, list[Anchor]] = {}
    for a in anchors:
        found = _secret_or_problem(db, a.key_id, f"The anchor at {a.where or 'the anchor'}")
        if isinstance(found, LedgerVerdict):
            return found
        if not hmac.compare_digest(a.mac, anchor_mac(found, seq=a.seq, head=a.head, at=a.at, key_id=a.key_id)):
            return LedgerVerdict(False, 0, GENESIS, f"the anchor at {a.where or 'the anchor'} does not carry a valid "
                                 "MAC of the ledger key: the anchor file was edited, or the anchor is not this "
                                 "store's", None, Reason.ANCHOR_FORGED,
                                 "Verify against the copy of the anchor file you keep safe; an anchor file that "
                                 "was edited is itself evidence of tampering.")
        by_seq.setdefault(a.seq, []).append(a)
    checked, top = len(anchors), max(by_seq, default=None)
    vouched = 0  # the highest anchored entry found intact so far

    prev_hash, expected_seq, count, first_keyed = GENESIS, 1, 0, None
    secrets_by_id: dict[str, bytes] = {}
    for e in iter_entries(db):
        if e.seq != expected_seq:
            return LedgerVerdict(False, count, prev_hash, f"entry {expected_seq} is missing (the next entry is "
                                 f"{e.seq}): an entry was deleted", expected_seq, Reason.DELETED,
                                 _intact(count) + _RESTORE, checked, top)
        if e.prev_hash != prev_hash:
            return LedgerVerdict(False, count, prev_hash, f"entry {e.seq} does not follow entry {e.seq - 1}: "
                                 "entries were reordered or one was replaced", e.seq, Reason.REORDERED,
                                 _intact(count) + _RESTORE, checked, top)
        key = None
        if e.key_id is None:
            if first_keyed is not None:
                return LedgerVerdict(False, count, prev_hash, f"entry {e.seq} carries no ledger key, though entry "
                                     f"{first_keyed} before it was made with one: it was written or rehashed by "
                                     "someone without the key (a forged or rewritten entry)", e.seq, Reason.UNKEYED,
                                     _intact(count) + _RESTORE, checked, top)
        else:
            first_keyed = first_keyed or e.seq
            if e.key_id not in secrets_by_id:
                found = _secret_or_problem(db, e.key_id, f"entry {e.seq}", seq=e.seq, count=count, head=prev_hash,
                                           anchors=checked)
                if isinstance(found, LedgerVerdict):
                    return found
                secrets_by_id[e.key_id] = found
            key = LedgerKey(e.key_id, secrets_by_id[e.key_id])
        recomputed = entry_hash(e.prev_hash, seq=e.seq, at=e.at, actor=e.actor, role=e.role, action=e.action,
                                object_kind=e.object_kind, object_id=e.object_id, before_digest=e.before_digest,
                                after_digest=e.after_digest, request_id=e.request_id, details=e.details, key=key)
        if not hmac.compare_digest(recomputed, e.hash):
            how = "its keyed hash (HMAC)" if key is not None else "its hash"
            return LedgerVerdict(False, count, prev_hash, f"entry {e.seq} was edited or forged: its content no "
                                 f"longer matches {how}", e.seq, Reason.EDITED,
                                 _intact(count) + _RESTORE, checked, top)
        for anchored in by_seq.get(e.seq, ()):
            if not hmac.compare_digest(anchored.head, e.hash):
                return LedgerVerdict(False, count, prev_hash, f"entry {e.seq} is not the entry anchored at "
                                     f"{anchored.where or 'the anchor'} ({anchored.at:%Y-%m-%d %H:%M:%S} UTC): its "
                                     f"hash differs, so the ledger was rewritten between entry {vouched + 1} and "
                                     f"{e.seq} by someone holding the ledger key", e.seq, Reason.REWRITTEN,
                                     "Rotate the ledger key ('chainkeeper audit rotate-key') and keep the key file "
                                     f"from the database's admins; entries 1-{vouched} are vouched for by earlier "
                                     "anchors. " + _RESTORE, checked, top)
            vouched = e.seq
        prev_hash, expected_seq, count = e.hash, expected_seq + 1, count + 1

    if top is not None and top > count:
        last = by_seq[top][0]
        return LedgerVerdict(False, count, prev_hash, f"the ledger ends at entry {count}, but the anchor at "
                             f"{last.where or 'the anchor'} saw {top} entries on {last.at:%Y-%m-%d %H:%M:%S} UTC: "
                             f"{_entries(count + 1, top)} deleted", count + 1, Reason.TRUNCATED,
                             f"Restore the database from a backup taken after {last.at:%Y-%m-%d %H:%M} UTC, and find "
                             "out who had write access to it. Entries after the last anchor cannot be proven "
                             "complete: anchor often (setting ledger_anchor_file).", checked, top)
    return LedgerVerdict(True, count, prev_hash, anchors=checked, anchored_seq=top)


def _entries(first: int, last: int) -> str:
    return f"entry {first} was" if first == last else f"entries {first}-{last} were"


def anchor_head(db: Database) -> Anchor:
    """An anchor of the ledger's head now, with an HMAC of the current ledger key.

    Does not verify the chain: an anchor freezes what is there (verify first to vouch for it).

    Raises:
        ConfigError: the ledger key file is missing or not this ledger's.
    """
    head = ledger_head(db)
    key = ledger_keys_of(db).signing_key(head.key_id)
    return make_anchor(seq=head.seq, head=head.hash, at=utcnow(), key_id=key.id, secret=key.secret)


@dataclass(frozen=True)
class Head:
    seq: int  # 0: an empty ledger
    hash: str
    key_id: str | None


def ledger_head(db: Database) -> Head:
    """The last entry's sequence number, hash and key (``GENESIS`` for an empty ledger)."""
    with db.session(readonly=True) as s:
        last = s.execute(sa.select(SqlAuditEntry.seq, SqlAuditEntry.hash, SqlAuditEntry.key_id)
                         .order_by(SqlAuditEntry.seq.desc()).limit(1)).first()
    return Head(last.seq, last.hash, last.key_id) if last else Head(0, GENESIS, None)


def export_entries(db: Database) -> Iterator[str]:
    """The ledger as JSON Lines, one entry a line, in order."""
    for e in iter_entries(db):
        yield canonical_json({**e.__dict__, "at": e.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})

