"""Issue 15 item 2: the ledger's HMAC key, held outside the database; rotation; anchoring as a job.

The key file is made 0600 in a 0700 folder when the ledger first needs it, read once per
process, and never silently replaced: a missing or foreign key file stops appends and
fails verification with the fix. Rotation adds a key; entries made with the old one keep
verifying. Entries from before the ledger had a key keep verifying, but not after a keyed one.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import ConfigError, Forbidden, OutboundRefused
from chainkeeper.core.jobs import JobState, get_job, submit_job
from chainkeeper.core.scheduler import Scheduler, list_schedules
from chainkeeper.core.settings import Settings
from chainkeeper.core.worker import Worker
from chainkeeper.governance import ledger_keys
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.anchors import parse_anchor_lines, read_anchor_file
from chainkeeper.governance.audit import (
    anchor_ledger_as,
    deliver_anchor,
    rotate_ledger_key,
    verify_ledger_as,
)
from chainkeeper.governance.ledger import (
    GENESIS,
    Reason,
    anchor_head,
    count_entries,
    entry_hash,
    iter_entries,
    record,
    verify_ledger,
)
from chainkeeper.governance.ledger_keys import create_key_file, key_file_of, key_id_of
from chainkeeper.governance.tables import SqlAuditEntry
from tests.governance.conftest import make_actor
from tests.monitoring.webhooks import Receiver, receiver  # noqa: F401 - the fixture

ALICE = Actor("alice", frozenset({"data_steward"}))


def _fill(ctx: Context, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        record(ctx.db, ALICE, "dataset.create", "dataset_version", i, after={"i": i})


@pytest.fixture
def reopen() -> Iterator[list[Context]]:
    """Contexts opened by a test (a fresh process's view: nothing cached), closed after it."""
    opened: list[Context] = []
    yield opened
    for c in opened:
        c.close()


def _fresh(settings: Settings, opened: list[Context]) -> Context:
    context = open_context(settings)
    opened.append(context)
    return context


def test_the_key_file_is_made_0600_in_a_0700_folder_when_first_needed(ctx: Context) -> None:
    path = key_file_of(ctx.settings)
    assert path == (ctx.settings.home / "secrets" / "ledger.keys").resolve() and not path.exists()
    entry = record(ctx.db, ALICE, "dataset.create", "dataset_version", 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    [line] = [x for x in path.read_text().splitlines() if not x.startswith("#")]
    key_id, secret = line.split()
    assert entry.key_id == key_id == key_id_of(bytes.fromhex(secret))
    assert secret not in "\n".join(str(e) for e in iter_entries(ctx.db))  # the key never enters the database


def test_the_key_is_read_once_per_process(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    record(ctx.db, ALICE, "dataset.create", "dataset_version", 0)  # makes the key file
    reads: list[Path] = []
    real = ledger_keys.read_key_file
    monkeypatch.setattr(ledger_keys, "read_key_file", lambda p: reads.append(p) or real(p))
    _fill(ctx, 50)
    assert verify_ledger(ctx.db).ok
    assert reads == []


def test_a_missing_key_file_is_named_with_the_fix(any_ctx: Context, reopen: list[Context]) -> None:
    _fill(any_ctx, 3)
    path = key_file_of(any_ctx.settings)
    path.unlink()
    ctx = _fresh(any_ctx.settings, reopen)  # a process started after the loss
    verdict = verify_ledger(ctx.db)
    assert not verdict.ok and verdict.reason == Reason.KEY_MISSING and verdict.first_bad_seq == 1
    assert str(path) in (verdict.problem or "") and "Restore the key file from your backup" in (verdict.hint or "")
    with pytest.raises(ConfigError) as refused:
        record(ctx.db, ALICE, "dataset.create", "dataset_version", 9)
    assert "is missing" in refused.value.message and "Restore the key file" in (refused.value.hint or "")
    assert not path.exists() and count_entries(ctx.db) == 3  # no new key papered over it, nothing written


def test_a_key_file_of_another_store_is_refused(any_ctx: Context, reopen: list[Context], tmp_path: Path) -> None:
    _fill(any_ctx, 3)
    path = key_file_of(any_ctx.settings)
    create_key_file(tmp_path / "other" / "ledger.keys")
    path.write_text((tmp_path / "other" / "ledger.keys").read_text())
    ctx = _fresh(any_ctx.settings, reopen)
    verdict = verify_ledger(ctx.db)
    assert not verdict.ok and verdict.reason == Reason.UNKNOWN_KEY and verdict.first_bad_seq == 1
    with pytest.raises(ConfigError, match="not this ledger's keys"):
        record(ctx.db, ALICE, "dataset.create", "dataset_version", 9)


def test_a_key_file_others_may_read_is_refused(ctx: Context, settings: Settings, reopen: list[Context]) -> None:
    _fill(ctx, 1)
    path = key_file_of(settings)
    path.chmod(0o644)
    with pytest.raises(ConfigError) as refused:
        record(_fresh(settings, reopen).db, ALICE, "dataset.create", "dataset_version", 9)
    assert "may be read or changed by other users" in refused.value.message
    assert f"chmod 600 {path}" in (refused.value.hint or "")


def test_a_rotation_keeps_old_entries_verifying_and_running_processes_follow(any_ctx: Context,
                                                                            reopen: list[Context]) -> None:
    _fill(any_ctx, 5)
    other = _fresh(any_ctx.settings, reopen)  # another process, its key cached before the rotation
    record(other.db, ALICE, "dataset.create", "dataset_version", 100)
    first = anchor_head(any_ctx.db)
    old = first.key_id
    done = rotate_ledger_key(any_ctx.db, host_user="ops")
    assert done.previous == old and done.key_id != old and done.new_secret is None
    _fill(any_ctx, 3, start=10)
    record(other.db, ALICE, "dataset.create", "dataset_version", 101)  # it meets the new key and follows
    second = anchor_head(any_ctx.db)
    entries = list(iter_entries(any_ctx.db))
    rotation = next(e for e in entries if e.action == "ledger.key_rotate")
    assert rotation.actor == "host:ops" and rotation.key_id == done.key_id
    assert rotation.details == {"previous": old, "host_user": "ops"}
    assert [e.key_id for e in entries] == [old] * 6 + [done.key_id] * 5 and second.key_id == done.key_id
    verdict = verify_ledger(_fresh(any_ctx.settings, reopen).db, anchors=[first, second])
    assert verdict.ok and verdict.entries == 11 and verdict.anchors == 2 and verdict.anchored_seq == 11
    key_lines = [x for x in key_file_of(any_ctx.settings).read_text().splitlines() if not x.startswith("#")]
    assert [x.split()[0] for x in key_lines] == [old, done.key_id]


def test_entries_from_before_the_key_verify_and_an_unkeyed_one_after_a_keyed_one_is_tampering(
        any_ctx: Context) -> None:
    def legacy(seq: int, prev: str) -> str:
        fields = dict(seq=seq, at=utcnow(), actor="old", role=None, action="user.create", object_kind="user",
                      object_id=str(seq), before_digest=None, after_digest=None, request_id=None, details={})
        digest = entry_hash(prev, **fields)  # plain sha256, as before migration 0017
        with any_ctx.db.engine.begin() as conn:
            conn.execute(SqlAuditEntry.__table__.insert().values(**fields, prev_hash=prev, hash=digest, key_id=None))
        return digest

    prev = GENESIS
    for seq in (1, 2, 3):
        prev = legacy(seq, prev)
    _fill(any_ctx, 2)  # the first keyed entries seal the old ones
    verdict = verify_ledger(any_ctx.db)
    assert verdict.ok and verdict.entries == 5
    legacy(6, verdict.head)
    verdict = verify_ledger(any_ctx.db)
    assert not verdict.ok and verdict.reason == Reason.UNKEYED and verdict.first_bad_seq == 6
    assert "entry 4 before it" in (verdict.problem or "")


def test_keys_from_the_setting_need_no_file(settings: Settings, reopen: list[Context]) -> None:
    one, two = "11" * 32, "22" * 32
    ctx = _fresh(settings.model_copy(update={"ledger_key": SecretStr(one)}), reopen)
    _fill(ctx, 2)
    assert not key_file_of(settings).exists()
    assert {e.key_id for e in iter_entries(ctx.db)} == {key_id_of(bytes.fromhex(one))}
    done = rotate_ledger_key(ctx.db, host_user="ops")  # nothing to write: a new key to add to the setting
    assert done.new_secret is not None and len(done.new_secret) == 64 and done.where == "CHAINKEEPER_LEDGER_KEY"
    both = _fresh(settings.model_copy(update={"ledger_key": SecretStr(f"{one}, {two}")}), reopen)
    _fill(both, 1)
    assert list(iter_entries(both.db))[-1].key_id == key_id_of(bytes.fromhex(two)) and verify_ledger(both.db).ok
    dropped = _fresh(settings.model_copy(update={"ledger_key": SecretStr(two)}), reopen)  # the old key left out
    verdict = verify_ledger(dropped.db)
    assert not verdict.ok and verdict.reason == Reason.UNKNOWN_KEY and verdict.first_bad_seq == 1
    with pytest.raises(ConfigError, match="not 64 hex digits"):
        record(_fresh(settings.model_copy(update={"ledger_key": SecretStr("zz")}), reopen).db, ALICE, "x", "y", 1)


def test_anchoring_is_a_scheduled_job_appending_to_the_configured_file(settings: Settings, tmp_path: Path,
                                                                      reopen: list[Context]) -> None:
    target = tmp_path / "auditor" / "anchors.jsonl"
    ctx = _fresh(settings.model_copy(update={"ledger_anchor_file": target, "ledger_anchor_every_s": 600}), reopen)
    _fill(ctx, 4)
    scheduler = Scheduler(ctx)
    scheduler.ensure_system_schedules()
    anchoring = {s.name: s for s in list_schedules(ctx.db)}["ledger-anchor"]
    assert anchoring.kind == "audit.anchor" and anchoring.every_s == 600 and anchoring.created_by == "system"
    [firing] = [f for f in scheduler.run_once() if f.name == "ledger-anchor"]
    Worker(ctx).run_forever(exit_when_idle=True)
    job = get_job(ctx.db, firing.job_id or 0)
    assert job.state == JobState.SUCCEEDED and job.result is not None and job.result["seq"] == 4
    [anchor] = read_anchor_file(target)
    assert anchor.seq == 4 and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert verify_ledger(ctx.db, anchors=[anchor]).ok
    with ctx.db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_ledger WHERE seq = 4"))
    assert verify_ledger(ctx.db, anchors=[anchor]).reason == Reason.TRUNCATED


def test_no_anchor_schedule_without_an_anchor_file_and_a_leftover_job_does_nothing(ctx: Context) -> None:
    Scheduler(ctx).ensure_system_schedules()
    assert "ledger-anchor" not in {s.name for s in list_schedules(ctx.db)}
    job = submit_job(ctx, "audit.anchor", {}, actor="system")  # as a schedule that outlived the setting
    Worker(ctx).run_one()
    done = get_job(ctx.db, job.id)
    assert done.state == JobState.SUCCEEDED and done.result == {"seq": None, "head": None, "key_id": None,
                                                                "file": None}


def test_an_anchor_is_posted_to_a_url_only_where_the_outbound_policy_allows(ctx: Context,
                                                                          receiver: Receiver) -> None:  # noqa: F811
    _fill(ctx, 2)
    anchor = anchor_head(ctx.db)
    with pytest.raises(OutboundRefused):  # loopback is refused by default
        deliver_anchor(receiver.url, anchor, ctx.settings)
    deliver_anchor(receiver.url, anchor, ctx.settings.model_copy(update={"outbound_allow": ["127.0.0.1"]}))
    [sent] = receiver.received
    assert sent == anchor.to_dict()
    assert verify_ledger(ctx.db, anchors=parse_anchor_lines([receiver.bodies[0].decode()], "posted")).ok


def test_anchoring_and_verifying_need_audit_verify(ctx: Context) -> None:
    auditor, annotator = make_actor(ctx, "otto", "auditor"), make_actor(ctx, "ann", "annotator")
    anchor = anchor_ledger_as(ctx.db, actor=auditor)
    assert verify_ledger_as(ctx.db, actor=auditor, anchors=[anchor]).ok
    with pytest.raises(Forbidden):
        anchor_ledger_as(ctx.db, actor=annotator)
    with pytest.raises(Forbidden):
        verify_ledger_as(ctx.db, actor=annotator, anchors=[anchor])
