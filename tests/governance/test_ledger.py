import json

import pytest
import sqlalchemy as sa

from chainkeeper.core.context import Context
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import export_entries, list_entries, record, verify_ledger
from chainkeeper.governance.tables import SqlAuditEntry

ALICE = Actor("alice", frozenset({"data_steward"}), request_id="req-1")


def _fill(ctx: Context, n: int = 5) -> None:
    for i in range(n):
        record(ctx.db, ALICE, "dataset.create", "dataset_version", i + 1, after={"rows": i}, details={"i": i})


def test_an_intact_chain_verifies_and_exports(any_ctx: Context) -> None:
    _fill(any_ctx)
    verdict = verify_ledger(any_ctx.db)
    assert verdict.ok and verdict.entries == 5 and verdict.problem is None
    lines = [json.loads(line) for line in export_entries(any_ctx.db)]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["actor"] == "alice" and lines[0]["request_id"] == "req-1"
    assert lines[1]["prev_hash"] == lines[0]["hash"] and lines[-1]["hash"] == verdict.head


def _execute(ctx: Context, statement: str, **params: object) -> None:
    with ctx.db.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_an_edited_entry_is_named(any_ctx: Context) -> None:
    _fill(any_ctx)
    _execute(any_ctx, "UPDATE audit_ledger SET actor = 'mallory' WHERE seq = 3")
    verdict = verify_ledger(any_ctx.db)
    assert not verdict.ok and verdict.first_bad_seq == 3 and "edited" in (verdict.problem or "")


def test_a_deleted_entry_is_named(any_ctx: Context) -> None:
    _fill(any_ctx)
    _execute(any_ctx, "DELETE FROM audit_ledger WHERE seq = 2")
    verdict = verify_ledger(any_ctx.db)
    assert not verdict.ok and verdict.first_bad_seq == 2 and "deleted" in (verdict.problem or "")


def test_reordered_entries_are_named(any_ctx: Context) -> None:
    _fill(any_ctx)
    # Swap the contents of entries 2 and 4, keeping the sequence numbers in place.
    with any_ctx.db.session() as s:
        two, four = (s.get(SqlAuditEntry, 2), s.get(SqlAuditEntry, 4))
        assert two is not None and four is not None
        cols = ["at", "actor", "role", "action", "object_kind", "object_id", "before_digest", "after_digest",
                "request_id", "details", "prev_hash", "hash"]
        a, b = {c: getattr(two, c) for c in cols}, {c: getattr(four, c) for c in cols}
        # Unique hashes: move one out of the way first.
        for c in ("prev_hash", "hash"):
            setattr(two, c, "x" * 64 if c == "hash" else "y" * 64)
        s.flush()
        for c in cols:
            setattr(four, c, a[c])
        s.flush()
        for c in cols:
            setattr(two, c, b[c])
    verdict = verify_ledger(any_ctx.db)
    assert not verdict.ok and verdict.first_bad_seq == 2 and "reordered" in (verdict.problem or "")


def test_recomputing_a_tampered_entry_still_breaks_the_next_link(any_ctx: Context) -> None:
    _fill(any_ctx)
    _execute(any_ctx, "UPDATE audit_ledger SET hash = :h WHERE seq = 3", h="f" * 64)
    verdict = verify_ledger(any_ctx.db)
    assert not verdict.ok and verdict.first_bad_seq == 3


def test_entries_can_be_listed_per_object(ctx: Context) -> None:
    _fill(ctx, 3)
    assert [e.object_id for e in list_entries(ctx.db, object_kind="dataset_version", object_id="2")] == ["2"]


@pytest.mark.parametrize("secret_field", ["before", "details"])
def test_digests_not_values_of_before_and_after(ctx: Context, secret_field: str) -> None:
    entry = record(ctx.db, ALICE, "token.issue", "token", 1, before={"password": "hunter2"})
    exported = "\n".join(export_entries(ctx.db))
    assert "hunter2" not in exported and entry.before_digest is not None


def test_concurrent_appends_never_fork_the_chain(any_ctx: Context) -> None:
    import threading

    errors: list[BaseException] = []

    def append(who: str) -> None:
        try:
            for i in range(40):
                record(any_ctx.db, Actor(who), "job.cancel", "job", i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(name,)) for name in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    verdict = verify_ledger(any_ctx.db)
    assert verdict.ok and verdict.entries == 120


def test_a_job_cancel_is_recorded_in_the_same_transaction(ctx: Context) -> None:
    from chainkeeper.core.jobs import request_cancel, submit_job
    from chainkeeper.governance.ledger import auditor

    job = submit_job(ctx, "sleep", {}, actor="alice")
    request_cancel(ctx.db, job.id, audit=auditor(ALICE, "job.cancel", "job"))
    entries = list_entries(ctx.db, object_kind="job", object_id=str(job.id))
    assert [(e.action, e.actor) for e in entries] == [("job.cancel", "alice")]
    assert entries[0].before_digest != entries[0].after_digest and verify_ledger(ctx.db).ok
