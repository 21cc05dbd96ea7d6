"""Signed webhooks: every message carries an HMAC of its body, keyed by its rule's secret.

A receiver checks the header

    X-Chainkeeper-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

against the raw body it received and its rule's secret, and refuses a ``t`` older than
its replay window (``REPLAY_WINDOW_S``; ``verify_signature`` is a reference receiver).
Each attempt is signed afresh, so a retry an hour later still passes.

Each alert rule has its own secret, derived from the signing key (the
``webhook_signing_key`` setting, or a random key kept in ``<home>/webhook-signing.key``)
and the rule's id and creation time. No secret is stored in the database: someone
who reads the database cannot sign messages, and the receiver of one rule cannot sign
another rule's. A new key changes every rule's secret; a rule made again gets a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from chainkeeper.core.errors import ConfigError

if TYPE_CHECKING:
    from chainkeeper.core.settings import Settings

__all__ = [
    "KEY_FILE",
    "REPLAY_WINDOW_S",
    "SIGNATURE_HEADER",
    "rule_secret",
    "signature_header",
    "signing_key",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Chainkeeper-Signature"
# How old a signed timestamp a receiver should accept (seconds), either way.
REPLAY_WINDOW_S = 300
KEY_FILE = "webhook-signing.key"


def signing_key(settings: Settings) -> bytes:
    """The key rule secrets are derived from: the setting, else the key file in ``home``
    (made on first use: 32 random bytes, hex, readable by the owner only).

    Raises:
        ConfigError: the key file cannot be read or written, or holds a key that is too short.
    """
    if settings.webhook_signing_key is not None:
        return settings.webhook_signing_key.get_secret_value().encode()
    path = Path(settings.home) / KEY_FILE
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_text(encoding="ascii").strip()
        else:
            key = secrets.token_hex(32)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(key + "\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot use the webhook signing key file {path}: {exc}.",
                          hint="Make the home folder writable, or set CHAINKEEPER_WEBHOOK_SIGNING_KEY.") from None
    if len(key) < 32:
        raise ConfigError(f"The webhook signing key in {path} is shorter than 32 characters.",
                          hint="Delete the file (a new key is made; every rule's secret changes), or set "
                          "CHAINKEEPER_WEBHOOK_SIGNING_KEY.")
    return key.encode()


def rule_secret(key: bytes, rule_id: int, created_at: datetime) -> str:
    """The secret one rule's messages are signed with: hex HMAC-SHA256 of the rule's identity (pure)."""
    identity = f"chainkeeper-webhook-v1:{rule_id}:{int(created_at.timestamp())}"
    return hmac.new(key, identity.encode(), hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Chainkeeper-Signature`` value of ``body`` sent at ``timestamp`` (pure)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, now: float,
                     window_s: float = REPLAY_WINDOW_S) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``window_s`` of ``now`` (pure).

    What a receiver does; docs/security.md shows the same in a few lines.
    """
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > window_s:
        return False
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
