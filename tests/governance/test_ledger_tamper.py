"""Issue 15 item 2: every way to cut off, append to or rewrite the ledger is caught, on SQLite and PostgreSQL.

Before the ledger had a key and anchors, deleting the last entry, the last ten or all of
them, appending an entry with a recomputed hash, or rewriting from entry 150 with
rehashing all verified "intact". Each case here tampers with a real store the way a
database admin would (plain SQL) and needs a named reason from ``verify_ledger``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.anchors import Anchor, append_anchor, make_anchor, read_anchor_file
from chainkeeper.governance.ledger import (
    Reason,
    anchor_head,
    append_entry,
    entry_hash,
    iter_entries,
    record,
    verify_ledger,
)
from chainkeeper.governance.ledger_keys import LedgerKey, key_file_of, read_key_file
from chainkeeper.governance.tables import SqlAuditEntry

MALLORY = Actor("mallory", frozenset({"admin"}))
N = 200


@dataclass
class Ledger:
    ctx: Context
    anchor: Anchor  # of the head after N entries

    def sql(self, statement: str, **params: object) -> None:
        with self.ctx.db.engine.begin() as conn:
            conn.execute(sa.text(statement), params)

    def key(self) -> LedgerKey:
        ring = read_key_file(key_file_of(self.ctx.settings))
        assert ring is not None
        return ring.current


@pytest.fixture
def ledger(any_ctx: Context) -> Ledger:
    with any_ctx.db.session() as s:  # the real append path, in one transaction to keep the test quick
        for i in range(N):
            append_entry(s, Actor(f"user{i % 7}", frozenset({"ml_engineer"})), "run.create", "run", i,
                         after={"i": i}, details={"i": i})
    anchor = anchor_head(any_ctx.db)
    assert anchor.seq == N
    return Ledger(any_ctx, anchor)


def _fields(seq: int) -> dict[str, Any]:
    return dict(seq=seq, at=utcnow(), actor="mallory", role="admin",
                action="model.promote", object_kind="model_version", object_id=str(seq), before_digest=None,
                after_digest=None, request_id=None, details={"forged": True})


def _append_forged(ledger: Ledger, *, key: LedgerKey | None, claimed_key_id: str | None) -> None:
    """Append one entry after the head, hashed as the forger can (plain sha256, or a key of his own)."""
    with ledger.ctx.db.session() as s:
        head = s.execute(sa.select(SqlAuditEntry.seq, SqlAuditEntry.hash).order_by(SqlAuditEntry.seq.desc())).first()
        assert head is not None
        fields = _fields(head.seq + 1)
        s.add(SqlAuditEntry(**fields, prev_hash=head.hash, hash=entry_hash(head.hash, **fields, key=key),
                            key_id=claimed_key_id))


def _rewrite_from(ledger: Ledger, start: int, *, key: LedgerKey | None, claimed_key_id: str | None) -> None:
    """Change entry ``start`` and rehash it and every later one, keeping the chain's links."""
    entries = [e for e in iter_entries(ledger.ctx.db) if e.seq >= start]
    table = SqlAuditEntry.__table__
    with ledger.ctx.db.engine.begin() as conn:
        conn.execute(table.delete().where(table.c.seq >= start))
        prev = conn.execute(sa.select(table.c.hash).where(table.c.seq == start - 1)).scalar_one()
        for e in entries:
            fields = dict(seq=e.seq, at=e.at, actor="mallory" if e.seq == start else e.actor, role=e.role,
                          action=e.action, object_kind=e.object_kind, object_id=e.object_id,
                          before_digest=e.before_digest, after_digest=e.after_digest, request_id=e.request_id,
                          details=e.details)
            digest = entry_hash(prev, **fields, key=key)
            conn.execute(table.insert().values(**fields, prev_hash=prev, hash=digest, key_id=claimed_key_id))
            prev = digest


def test_an_untouched_ledger_verifies_against_its_anchor(ledger: Ledger) -> None:
    verdict = verify_ledger(ledger.ctx.db, anchors=[ledger.anchor])
    assert verdict.ok and verdict.entries == N and verdict.anchors == 1 and verdict.anchored_seq == N
    assert verdict.head == ledger.anchor.head
    entries = list(iter_entries(ledger.ctx.db))
    assert {e.key_id for e in entries} == {ledger.key().id}  # every entry is keyed, with the one key


TRUNCATIONS = [
    pytest.param(N, 1, id="last-entry"),
    pytest.param(N - 9, 10, id="last-ten"),
    pytest.param(1, N, id="all"),
]


@pytest.mark.parametrize(("cut_from", "cut"), TRUNCATIONS)
def test_a_cut_off_end_is_caught_against_the_anchor(ledger: Ledger, cut_from: int, cut: int) -> None:
    ledger.sql("DELETE FROM audit_ledger WHERE seq >= :s", s=cut_from)
    assert verify_ledger(ledger.ctx.db).ok  # the shorter chain alone is still a chain: why anchors exist
    verdict = verify_ledger(ledger.ctx.db, anchors=[ledger.anchor])
    assert not verdict.ok and verdict.reason == Reason.TRUNCATED
    assert verdict.first_bad_seq == cut_from and verdict.entries == N - cut
    deleted = f"entry {N} was deleted" if cut == 1 else f"entries {cut_from}-{N} were deleted"
    assert deleted in (verdict.problem or "")
    assert "Restore the database from a backup taken after" in (verdict.hint or "")


def test_a_cut_off_end_regrown_by_the_server_is_caught(ledger: Ledger) -> None:
    """Cut the last ten, then let the server write ten new keyed entries: as many as anchored, but not the same."""
    ledger.sql("DELETE FROM audit_ledger WHERE seq > :s", s=N - 10)
    for i in range(10):
        record(ledger.ctx.db, MALLORY, "job.cancel", "job", i)
    verdict = verify_ledger(ledger.ctx.db, anchors=[ledger.anchor])
    assert not verdict.ok and verdict.reason == Reason.REWRITTEN and verdict.first_bad_seq == N


@pytest.mark.parametrize(("key", "claimed", "reason"), [
    pytest.param(None, None, Reason.UNKEYED, id="plain-sha256-no-key-id"),
    pytest.param(None, "real", Reason.EDITED, id="plain-sha256-claiming-the-key"),
    pytest.param(LedgerKey("guess", b"\x01" * 32), "real", Reason.EDITED, id="hmac-with-a-guessed-key"),
    pytest.param(LedgerKey("own", b"\x02" * 32), "own", Reason.UNKNOWN_KEY, id="hmac-with-a-key-of-his-own"),
])
def test_a_forged_appended_entry_is_caught(ledger: Ledger, key: LedgerKey | None, claimed: str | None,
                                           reason: str) -> None:
    real = ledger.key().id
    _append_forged(ledger, key=key, claimed_key_id=real if claimed == "real" else claimed)
    for anchors in ([], [ledger.anchor]):  # with or without an anchor: the key catches it
        verdict = verify_ledger(ledger.ctx.db, anchors=anchors)
        assert not verdict.ok and verdict.reason == reason and verdict.first_bad_seq == N + 1
        assert verdict.entries == N and verdict.hint


@pytest.mark.parametrize(("key", "claimed", "reason"), [
    pytest.param(None, None, Reason.UNKEYED, id="rehashed-plain"),
    pytest.param(None, "real", Reason.EDITED, id="rehashed-plain-claiming-the-key"),
])
def test_a_rewrite_from_entry_150_with_rehashing_is_caught(ledger: Ledger, key: LedgerKey | None,
                                                           claimed: str | None, reason: str) -> None:
    _rewrite_from(ledger, 150, key=key, claimed_key_id=ledger.key().id if claimed else None)
    verdict = verify_ledger(ledger.ctx.db)
    assert not verdict.ok and verdict.reason == reason and verdict.first_bad_seq == 150
    assert verdict.entries == 149 and "entry 150" in (verdict.problem or "")


def test_a_rewrite_from_entry_150_by_a_key_holder_is_caught_by_the_anchor(ledger: Ledger) -> None:
    key = ledger.key()
    # An earlier anchor, as the server made it when the ledger had 100 entries.
    at_100 = make_anchor(seq=100, head=list(iter_entries(ledger.ctx.db))[99].hash, at=utcnow(), key_id=key.id,
                         secret=key.secret)
    _rewrite_from(ledger, 150, key=key, claimed_key_id=key.id)
    assert verify_ledger(ledger.ctx.db).ok  # with the key the chain itself is sound again
    verdict = verify_ledger(ledger.ctx.db, anchors=[at_100, ledger.anchor])
    assert not verdict.ok and verdict.reason == Reason.REWRITTEN and verdict.first_bad_seq == N
    assert "between entry 101 and 200" in (verdict.problem or "") and "rotate-key" in (verdict.hint or "")


def test_an_edited_anchor_file_is_caught(ledger: Ledger, tmp_path: Path) -> None:
    """Cut the end, then lower the anchor's count to match: the anchor's MAC no longer fits."""
    path = tmp_path / "anchors.jsonl"
    append_anchor(path, ledger.anchor)
    ledger.sql("DELETE FROM audit_ledger WHERE seq > 190")
    line = json.loads(path.read_text())
    head_190 = list(iter_entries(ledger.ctx.db))[-1].hash
    path.write_text(json.dumps({**line, "seq": 190, "head": head_190}) + "\n")
    verdict = verify_ledger(ledger.ctx.db, anchors=read_anchor_file(path))
    assert not verdict.ok and verdict.reason == Reason.ANCHOR_FORGED and f"{path} line 1" in (verdict.problem or "")


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda led: led.sql("UPDATE audit_ledger SET actor = 'mallory' WHERE seq = 42"), id="edit"),
    pytest.param(lambda led: led.sql("DELETE FROM audit_ledger WHERE seq = 42"), id="delete-in-the-middle"),
])
def test_older_tampering_is_still_named(ledger: Ledger, tamper: Callable[[Ledger], None]) -> None:
    tamper(ledger)
    verdict = verify_ledger(ledger.ctx.db, anchors=[ledger.anchor])
    assert not verdict.ok and verdict.first_bad_seq == 42 and verdict.reason in (Reason.EDITED, Reason.DELETED)
