"""The ledger as people read it: entries, verification, anchors and export, each decided for the actor.

``governance.ledger`` writes and checks the chain of entries and knows no permissions
(the permission module itself writes to it); this module puts ``audit.read`` and
``audit.verify`` in front of its readers. The ledger spans every project, so both are
global permissions.

It also holds what runs on the store's host without a user: the ``audit.anchor`` job
that the scheduler queues every ``ledger_anchor_every_s`` (``anchor_schedules``), and key
rotation (``rotate_ledger_key``), where access to the key file is the proof of authority.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from chainkeeper.core.db import Database
from chainkeeper.core.errors import ServiceUnavailable
from chainkeeper.core.outbound import OutboundClient, OutboundPolicy
from chainkeeper.core.scheduler import ScheduleSpec
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.anchors import Anchor, anchor_line, append_anchor, is_url
from chainkeeper.governance.ledger import (
    AuditEntry,
    LedgerVerdict,
    anchor_head,
    export_entries,
    ledger_head,
    list_entries,
    record,
    verify_ledger,
)
from chainkeeper.governance.ledger_keys import ENV_NAME, add_key, key_id_of, ledger_keys_of, new_secret
from chainkeeper.governance.permissions import authorize

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.core.jobs import JobHandle
    from chainkeeper.core.settings import Settings

__all__ = ["ANCHOR_JOB", "KeyRotation", "anchor_ledger_as", "anchor_schedules", "deliver_anchor", "export_ledger",
           "read_entries", "rotate_ledger_key", "run_anchor_job", "verify_ledger_as"]

ANCHOR_JOB = "audit.anchor"
ANCHOR_SCHEDULE = "ledger-anchor"


def read_entries(db: Database, *, actor: Actor, object_kind: str | None = None, object_id: str | None = None,
                 limit: int = 100, after_seq: int = 0) -> list[AuditEntry]:
    """``list_entries`` for someone who may read the ledger (``audit.read``, global).

    Raises:
        Forbidden: not allowed.
    """
    authorize(db, actor, "audit.read")
    return list_entries(db, object_kind=object_kind, object_id=object_id, limit=limit, after_seq=after_seq)


def verify_ledger_as(db: Database, *, actor: Actor, anchors: Sequence[Anchor] = ()) -> LedgerVerdict:
    """``verify_ledger`` for someone who may verify it (``audit.verify``, global).

    Args:
        anchors: anchors of the head kept elsewhere (``anchors.read_anchor_file``): the
            ledger must still hold each anchored entry, with the same hash.

    Raises:
        Forbidden: not allowed.
    """
    authorize(db, actor, "audit.verify")
    return verify_ledger(db, anchors=anchors)


def anchor_ledger_as(db: Database, *, actor: Actor) -> Anchor:
    """An anchor of the ledger's head now, for someone who may verify it (``audit.verify``), to keep
    where the database's admins cannot change it.

    Raises:
        Forbidden: not allowed. ConfigError: the ledger key file is missing or not this ledger's.
    """
    authorize(db, actor, "audit.verify")
    return anchor_head(db)


def export_ledger(db: Database, *, actor: Actor) -> Iterator[str]:
    """``export_entries`` for someone who may read the ledger; decided before the first line.

    Raises:
        Forbidden: not allowed.
    """
    authorize(db, actor, "audit.read")
    return export_entries(db)


# --- anchors to a file or a URL, by hand or by the scheduler ------------------------------


def deliver_anchor(target: str, anchor: Anchor | dict[str, Any], settings: Settings) -> None:
    """Append the anchor to a file, or POST it (one JSON object) to an http(s) URL.

    A URL is reached through the outbound client (``core.outbound``): private and loopback
    addresses only when ``outbound_allow`` names them. A 2xx answer counts as stored.

    Raises:
        InvalidInput: the file cannot be written. OutboundRefused: the URL's address is
            refused. ServiceUnavailable: the URL did not take it.
    """
    if not is_url(target):
        append_anchor(Path(target), anchor)
        return
    body = anchor_line(anchor).encode()
    try:
        with OutboundClient(OutboundPolicy.from_settings(settings), timeout_s=settings.webhook_timeout_s) as client:
            answer = client.post(target, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"The anchor could not be sent to {target}: {exc}.",
                                 hint="Check the URL and that its service runs; or anchor to a file.") from None
    if not 200 <= answer.status_code < 300:
        raise ServiceUnavailable(f"{target} refused the anchor (HTTP {answer.status_code}).",
                                 hint="Check that the URL accepts a POSTed JSON anchor; or anchor to a file.")


def anchor_schedules(settings: Settings) -> list[ScheduleSpec]:
    """The periodic anchoring schedule, when ``ledger_anchor_file`` is set (pure)."""
    if settings.ledger_anchor_file is None:
        return []
    return [ScheduleSpec(ANCHOR_SCHEDULE, ANCHOR_JOB, settings.ledger_anchor_every_s)]


def run_anchor_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Append an anchor of the ledger's head to ``ledger_anchor_file`` (the ``audit.anchor`` job).

    Returns:
        ``{"seq", "head", "key_id", "file"}`` of the anchor written; all None when
        ``ledger_anchor_file`` is unset (the schedule outlived the setting).

    Raises:
        InvalidInput: the file cannot be written.
        ConfigError: the ledger key file is missing or not this ledger's.
    """
    target = ctx.settings.ledger_anchor_file
    if target is None:
        job.log("nothing anchored: ledger_anchor_file is unset (delete the 'ledger-anchor' schedule if that is meant)")
        return {"seq": None, "head": None, "key_id": None, "file": None}
    anchor = anchor_head(ctx.db)
    append_anchor(target, anchor)
    job.log(f"anchored the ledger at entry {anchor.seq} (head {anchor.head[:16]}…) to {target}")
    return {"seq": anchor.seq, "head": anchor.head, "key_id": anchor.key_id, "file": str(target)}


# --- key rotation ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRotation:
    key_id: str  # the new key; new entries use it
    previous: str | None  # the key it replaces (kept, to verify the entries made with it)
    where: str  # the key file, or the environment variable the keys come from
    new_secret: str | None = None  # only when the keys come from the environment: the operator adds it there


def rotate_ledger_key(db: Database, *, host_user: str) -> KeyRotation:
    """Add a new ledger key, which new entries use from now on; the old keys stay for verification.

    With a key file, the key is appended to it and the rotation is the first entry made
    with the new key (by ``host:<host_user>``: access to the key file is the authority, as
    for ``reset_admin``). Processes that run already switch to it when they meet an entry
    made with it. With keys from ``CHAINKEEPER_LEDGER_KEY`` nothing is written: the new
    secret is returned for the operator to add there.

    Raises:
        ConfigError: the key file is missing or not this ledger's (restore it first), or
            cannot be written.
    """
    keys = ledger_keys_of(db)
    current = keys.signing_key(ledger_head(db).key_id)  # refuses a missing or foreign key file
    if keys.path is None:
        secret = new_secret()
        return KeyRotation(key_id=key_id_of(secret), previous=current.id, where=ENV_NAME, new_secret=secret.hex())
    added, previous = add_key(keys.path)
    keys.keyring(reload=True)
    record(db, Actor(name=f"host:{host_user}", roles=frozenset({"admin"})), "ledger.key_rotate", "ledger_key",
           added.id, details={"previous": previous.id if previous else None, "host_user": host_user})
    return KeyRotation(key_id=added.id, previous=previous.id if previous else None, where=keys.where)
