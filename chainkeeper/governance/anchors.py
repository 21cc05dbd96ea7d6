"""Anchors of the audit ledger: its head, written where the database's admins cannot reach.

The hash chain shows an entry edited, removed from the middle or reordered, and the key
(``ledger_keys``) shows entries forged or rehashed by someone without it. Neither shows
the end of the ledger cut off: a shorter chain is still a chain. An anchor records the
head — how many entries, the last one's hash, when, with which key — and an HMAC over
them, as one JSON line appended to a file the auditor keeps (``chainkeeper audit anchor
--to FILE``, or the scheduler every ``ledger_anchor_every_s``). ``verify --anchor FILE``
then checks that each anchored entry is still there with the same hash, so the ledger
can lose nothing up to the last anchor (entries after it can: anchor often).

This module is the anchors' format, their MAC and the file; it knows no database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chainkeeper.core.errors import InvalidInput

__all__ = ["ANCHOR_KIND", "Anchor", "anchor_line", "anchor_mac", "append_anchor", "is_url", "make_anchor",
           "parse_anchor_lines", "read_anchor_file"]

ANCHOR_KIND = "chainkeeper.ledger-anchor"
ANCHOR_VERSION = 1
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Anchor:
    """The ledger's head at one moment, with an HMAC of the ledger key over it."""

    seq: int  # the head entry's sequence number: the number of entries (0: empty ledger)
    head: str  # the head entry's hash
    at: datetime
    key_id: str  # the ledger key the MAC was made with
    mac: str
    where: str = field(default="", compare=False)  # "FILE line N" when read from a file

    def to_dict(self) -> dict[str, Any]:
        """The anchor as its JSON line holds it."""
        return {"kind": ANCHOR_KIND, "v": ANCHOR_VERSION, "seq": self.seq, "head": self.head,
                "at": self.at.astimezone(UTC).strftime(_TIME), "key_id": self.key_id, "mac": self.mac}


def is_url(target: str) -> bool:
    """Whether an anchor target is an http(s) URL rather than a file."""
    return target.startswith(("http://", "https://"))


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def anchor_mac(secret: bytes, *, seq: int, head: str, at: datetime, key_id: str) -> str:
    """HMAC-SHA256 over an anchor's fields (pure)."""
    body = {"kind": ANCHOR_KIND, "v": ANCHOR_VERSION, "seq": seq, "head": head,
            "at": at.astimezone(UTC).strftime(_TIME), "key_id": key_id}
    return hmac.new(secret, _canonical(body), hashlib.sha256).hexdigest()


def make_anchor(*, seq: int, head: str, at: datetime, key_id: str, secret: bytes) -> Anchor:
    """An anchor of the head ``seq``/``head`` made with the key ``key_id`` (pure)."""
    return Anchor(seq=seq, head=head, at=at, key_id=key_id,
                  mac=anchor_mac(secret, seq=seq, head=head, at=at, key_id=key_id))


def anchor_line(anchor: Anchor | dict[str, Any]) -> str:
    """The JSON line of an anchor (from the object, or from the API's answer)."""
    data = anchor.to_dict() if isinstance(anchor, Anchor) else anchor
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def parse_anchor_lines(lines: Iterable[str], source: str, *, first_line: int = 1) -> list[Anchor]:
    """The anchors of a JSON-lines text; blank lines are skipped (pure).

    Args:
        source: the file's name, for messages ("FILE line N").
        first_line: the number of the first line given (when only the file's end is sent).

    Raises:
        InvalidInput: a line that is not an anchor (naming the line), or no anchor at all.
    """
    anchors = []
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or data.get("kind") != ANCHOR_KIND:
                raise ValueError("not a ledger anchor")
            seq, head, key_id, mac = data["seq"], data["head"], data["key_id"], data["mac"]
            if not (isinstance(seq, int) and seq >= 0 and all(isinstance(v, str) for v in (head, key_id, mac))):
                raise ValueError("a field of the wrong type")
            at = datetime.strptime(data["at"], _TIME).replace(tzinfo=UTC)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{where} is not a ledger anchor ({exc}).",
                               hint="Give the file 'chainkeeper audit anchor --to FILE' appends to; it holds "
                               "one JSON anchor a line.") from None
        anchors.append(Anchor(seq=seq, head=head, at=at, key_id=key_id, mac=mac, where=where))
    if not anchors:
        raise InvalidInput(f"{source} holds no ledger anchor.",
                           hint="Write one first: 'chainkeeper audit anchor --to FILE'.")
    return anchors


def read_anchor_file(path: Path) -> list[Anchor]:
    """The anchors in ``path``.

    Raises:
        InvalidInput: no such file, or a line that is not an anchor, or none at all.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"There is no anchor file {path}.",
                           hint="Give the file 'chainkeeper audit anchor --to FILE' wrote.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"The anchor file {path} cannot be read: {exc}.") from None
    return parse_anchor_lines(text.splitlines(), str(path))


def append_anchor(path: Path, anchor: Anchor | dict[str, Any]) -> None:
    """Append one anchor line to ``path`` (created 0600), synced to disk.

    Raises:
        InvalidInput: the file cannot be written.
    """
    data = (anchor_line(anchor) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InvalidInput(f"The anchor file {path} cannot be written: {exc}.",
                           hint="Give a file in a folder you may write.") from None
