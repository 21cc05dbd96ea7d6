"""Per-deployment API keys: for programs that call one deployment, not for people.

A key belongs to one deployment, carries scopes (``predict``, ``read``), an optional
rate limit and expiry, and is separate from user tokens: it grants nothing in the rest
of the system. Its secret (``ckd_`` + 256 random bits) is shown once; the store keeps
only its SHA-256, looked up by an indexed equality like user tokens
(``governance.users``).

The predict path looks keys up through the context's short-lived key cache
(``serving.caching``, ``KEY_CACHE_TTL_S``): a key revoked through ``revoke_deployment_key``
stops working in this process at once; in another server process within
``KEY_CACHE_TTL_S`` seconds. Expiry is checked on every request against the cached key.

Issuing, listing and revoking keys is ``apikey.manage`` in the deployment's project.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.serving.access import authorize_deployment
from chainkeeper.serving.caching import TtlCache
from chainkeeper.serving.tables import SqlDeployment, SqlDeploymentKey

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = [
    "KEY_PREFIX",
    "SCOPES",
    "DeploymentKey",
    "IssuedKey",
    "KEY_CACHE_MAX_ENTRIES",
    "KEY_CACHE_TTL_S",
    "authenticate_deployment_key",
    "cached_deployment_key",
    "create_deployment_key",
    "key_cache",
    "list_deployment_keys",
    "parse_rate",
    "revoke_deployment_key",
]

KEY_PREFIX = "ckd_"
SCOPES = {"predict": "send texts to the deployment's predict endpoint", "read": "read the deployment's status",
          "feedback": "attach true labels to the deployment's served predictions"}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
# How long another process's revocation may go unseen by this one (seconds).
KEY_CACHE_TTL_S = 2.0
# Past this many keys the cache starts over (only keys that exist are cached).
KEY_CACHE_MAX_ENTRIES = 10_000
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


@dataclass(frozen=True)
class DeploymentKey:
    """A key as the rest of the system sees it (never its secret)."""

    id: int
    deployment_id: int
    deployment: str
    name: str
    scopes: tuple[str, ...]
    rate_per_s: float | None
    burst: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str
    created_at: datetime

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > utcnow())


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its secret: the only time the secret exists outside the caller."""

    key: DeploymentKey
    secret: str


# Bounds on what a key may be given: beyond these a limit means nothing (and a date overflows).
MAX_RATE_PER_S = 1_000_000.0
MAX_BURST = 1_000_000
MAX_KEY_LIFETIME = timedelta(days=3650)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _to_key(row: SqlDeploymentKey, deployment: str) -> DeploymentKey:
    return DeploymentKey(id=row.id, deployment_id=row.deployment_id, deployment=deployment, name=row.name,
                         scopes=tuple(row.scopes or ()), rate_per_s=row.rate_per_s, burst=row.burst,
                         expires_at=row.expires_at, revoked_at=row.revoked_at, created_by=row.created_by,
                         created_at=row.created_at)


def key_cache(ctx: Context) -> TtlCache[str, DeploymentKey]:
    """The context's cache of keys, by the SHA-256 of their secret (made on first use)."""
    return ctx.state("serving.keys", lambda: TtlCache(KEY_CACHE_TTL_S, max_entries=KEY_CACHE_MAX_ENTRIES))


def parse_rate(text: str) -> float:
    """Requests per second from ``"50/s"``, ``"600/min"`` or ``"1000/h"`` (pure).

    Raises:
        InvalidInput: any other form, or a rate of zero.
    """
    match = _RATE.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise InvalidInput(f"Rate {text!r} is not valid.", hint="Write it as COUNT/UNIT, e.g. 50/s, 600/min or 1000/h.")
    return float(match.group(1)) / _PER[match.group(2)]


def _deployment(s: sa.orm.Session, name: str) -> SqlDeployment:
    row = s.scalars(sa.select(SqlDeployment).where(SqlDeployment.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"There is no deployment named {name!r}.", hint="List them with GET /api/deployments.")
    return row


def create_deployment_key(ctx: Context, deployment: str, *, name: str, actor: Actor, scopes: list[str],
                          rate_per_s: float | None = None, burst: int | None = None,
                          expires_in: timedelta | None = None) -> IssuedKey:
    """Issue an API key for one deployment.

    Args:
        deployment: the deployment's name.
        name: a label for the key (who or what uses it).
        actor: who issues it (``apikey.manage`` in the deployment's project).
        scopes: a non-empty subset of ``SCOPES``.
        rate_per_s: requests per second it may send (None: unlimited).
        burst: requests it may send at once (default: one second's worth, at least 1).
        expires_in: when it stops working (None: never).

    Returns:
        The key and its secret, shown once.

    Raises:
        Forbidden: the actor may not manage the deployment's keys.
        InvalidInput: no or unknown scopes, a blank name, a non-positive rate, burst or expiry.
        NotFound: no such deployment.
    """
    authorize_deployment(ctx.db, actor, "apikey.manage", deployment)
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise InvalidInput(f"Scopes {unknown or scopes!r} are not valid." if unknown else "A key needs a scope.",
                           hint=f"Scopes: {', '.join(SCOPES)} (e.g. --scope predict).")
    if not name.strip() or len(name) > 128:
        raise InvalidInput(f"Key name {name!r} is not valid.", hint="Name what uses the key, e.g. 'web-shop'.")
    if rate_per_s is not None and not 0 < rate_per_s <= MAX_RATE_PER_S:
        raise InvalidInput(f"A rate must be positive and at most {MAX_RATE_PER_S:,.0f}/s, got {rate_per_s}.",
                           hint="E.g. --rate 50/s (leave it out for no limit).")
    if burst is not None and not 1 <= burst <= MAX_BURST:
        raise InvalidInput(f"A burst must be between 1 and {MAX_BURST:,}, got {burst}.", hint="E.g. --burst 20.")
    if expires_in is not None and not timedelta(0) < expires_in <= MAX_KEY_LIFETIME:
        raise InvalidInput(f"An expiry must lie in the future and at most {MAX_KEY_LIFETIME.days:,} days ahead.",
                           hint="E.g. --expires-in-days 90 (leave it out for a key that never expires).")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with ctx.db.session() as s:
        dep = _deployment(s, deployment)
        row = SqlDeploymentKey(deployment_id=dep.id, name=name, key_hash=_hash(secret), scopes=sorted(set(scopes)),
                               rate_per_s=rate_per_s, burst=burst, expires_at=now + expires_in if expires_in else None,
                               created_by=actor.name, created_at=now)
        s.add(row)
        s.flush()
        # The ledger gets the key's id, scopes and limits, never its secret or hash.
        append_entry(s, actor, "apikey.create", "deployment_key", row.id,
                     after={"deployment": deployment, "name": name, "scopes": row.scopes},
                     details={"deployment": deployment, "name": name, "scopes": row.scopes, "rate_per_s": rate_per_s,
                              "expires_at": row.expires_at.isoformat() if row.expires_at else None})
        return IssuedKey(key=_to_key(row, dep.name), secret=secret)


def list_deployment_keys(ctx: Context, deployment: str, *, actor: Actor) -> list[DeploymentKey]:
    """A deployment's keys, revoked ones included, newest first.

    Args:
        actor: who asks (``apikey.manage`` in the deployment's project).

    Raises:
        Forbidden: the actor may not manage the deployment's keys. NotFound: no such deployment.
    """
    authorize_deployment(ctx.db, actor, "apikey.manage", deployment)
    with ctx.db.session() as s:
        dep = _deployment(s, deployment)
        rows = s.scalars(sa.select(SqlDeploymentKey).where(SqlDeploymentKey.deployment_id == dep.id)
                         .order_by(SqlDeploymentKey.id.desc()))
        return [_to_key(r, dep.name) for r in rows]


def revoke_deployment_key(ctx: Context, deployment: str, key_id: int, *, actor: Actor) -> DeploymentKey:
    """Revoke a key at once (revoking twice is harmless).

    Raises:
        Forbidden: the actor may not manage the deployment's keys (``apikey.manage``).
        NotFound: no such deployment, or no such key of it.
    """
    authorize_deployment(ctx.db, actor, "apikey.manage", deployment)
    with ctx.db.session() as s:
        dep = _deployment(s, deployment)
        row = s.get(SqlDeploymentKey, key_id)
        if row is None or row.deployment_id != dep.id:
            raise NotFound(f"Deployment {deployment!r} has no API key {key_id}.",
                           hint=f"List its keys with 'chainkeeper deploy keys list {deployment}'.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            append_entry(s, actor, "apikey.revoke", "deployment_key", row.id,
                         before={"revoked": False}, after={"revoked": True},
                         details={"deployment": deployment, "name": row.name})
        key = _to_key(row, dep.name)
    # After the commit, so no request can cache the key as it was before the revocation.
    key_cache(ctx).invalidate()
    return key


def cached_deployment_key(ctx: Context, secret: str) -> DeploymentKey | None:
    """The key behind ``secret`` if this context has it cached (no store access), else None.

    Lets an async caller skip a worker thread on the common path; check the key with
    ``authenticate_deployment_key`` either way.
    """
    return key_cache(ctx).get(_hash(secret))


def _load_key(db: Database, digest: str) -> DeploymentKey:
    with db.session() as s:
        row = s.scalar(sa.select(SqlDeploymentKey).where(SqlDeploymentKey.key_hash == digest))
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            raise Unauthenticated("This API key is not valid.",
                                  hint="Check the key, or ask a release manager for one "
                                  "('chainkeeper deploy keys create NAME').")
        dep = s.get(SqlDeployment, row.deployment_id)
        assert dep is not None  # a key's deployment is a foreign key
        return _to_key(row, dep.name)


def authenticate_deployment_key(ctx: Context, secret: str, *, deployment: str, scope: str) -> DeploymentKey:
    """The key behind ``secret``, if it may use ``scope`` on ``deployment``.

    Reads through the context's key cache (see the module docstring for how soon a
    revocation is seen).

    Raises:
        Unauthenticated: an unknown, revoked or expired key (the message never echoes it).
        Forbidden: a key of another deployment, or without the scope.
    """
    digest = _hash(secret)
    key = key_cache(ctx).get_or_load(digest, lambda: _load_key(ctx.db, digest))
    if key.revoked_at is not None:
        raise Unauthenticated(f"API key {key.id} ({key.name}) was revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC.",
                              hint="Ask a release manager for a new key.")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise Unauthenticated(f"API key {key.id} ({key.name}) expired on {key.expires_at:%Y-%m-%d %H:%M} UTC.",
                              hint="Ask a release manager for a new key.")
    if key.deployment != deployment:
        raise Forbidden(f"API key {key.id} belongs to deployment {key.deployment!r}, not {deployment!r}.",
                        hint=f"Call /v1/deployments/{key.deployment}/predict, or get a key for {deployment!r}.")
    if scope not in key.scopes:
        raise Forbidden(f"API key {key.id} ({key.name}) lacks the {scope!r} scope (it has: {', '.join(key.scopes)}).",
                        hint=f"Issue a key with --scope {scope}.")
    return key
