"""Passwords for the web UI: scrypt hashes, a policy for new ones, and sign-in that slows
guessing without locking anyone out (issue 15 item 5).

A password is stored as ``scrypt$n$r$p$salt$hash`` (hashlib.scrypt, memory-hard). A new
one must pass ``password_policy.check_new_password`` (length, common passwords, the
user's name).

``login`` counts failures per (user name, address) in ``signin_attempts`` and asks
``throttle.wait_before_try`` whether this try must wait (exponential back-off per pair,
per account from unfamiliar addresses, per address); a try within the wait is refused
with 429 before the password is checked. A try let through is counted as a failure,
under a lock, before its password is checked (a success takes it back), so tries sent in
parallel get no more guesses than the same tries one after another. An unknown user, a disabled one and one with
no password cost the same scrypt hash as a wrong password, so the answer's timing does
not say which names exist. The ledger gets at most one ``login.failed`` entry per pair
and ``throttle.LEDGER_WINDOW``, carrying the count of the failures since the last one;
the rest are counted in the table. Never the password.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import NotFound, RateLimited, Unauthenticated
from chainkeeper.governance.actors import SYSTEM, Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.password_policy import check_new_password
from chainkeeper.governance.permissions import authorize
from chainkeeper.governance.tables import SqlSignInAttempt, SqlUser
from chainkeeper.governance.throttle import (
    FAMILIAR_FOR,
    LEDGER_WINDOW,
    PAIR,
    WINDOW,
    Streak,
    Wait,
    wait_before_try,
)
from chainkeeper.governance.users import actor_for_user, end_user_sessions

__all__ = ["check_password", "hash_password", "login", "set_password"]

# n=2**14, r=8: 16 MiB of memory per hash, about 50 ms here; OWASP's scrypt floor.
_N, _R, _P = 2**14, 8, 1
# Stale rows whose failures still need a ledger entry, closed per sign-in that writes one.
_CLOSE_AT_ONCE = 100


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                maxmem=64 * 1024 * 1024, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    # Checked against when there is no real hash, so that costs the same time.
    return hash_password(secrets.token_urlsafe(16))


def set_password(db: Database, user_name: str, password: str, *, actor: Actor = SYSTEM) -> None:
    """Set a user's web sign-in password.

    Raises:
        Forbidden: the actor may not manage users. NotFound: no such user.
        InvalidInput: the password is too short or too long, a common one, or built on
            the user's name (``password_policy``).
    """
    authorize(db, actor, "user.manage")
    with db.session(readonly=True) as s:
        user = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        if user is None:
            raise NotFound(f"There is no user {user_name!r}.")
        display_name = user.display_name
    check_new_password(password, user_name=user_name, display_name=display_name)
    hashed = hash_password(password)
    with db.session() as s:
        row = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        if row is None:
            raise NotFound(f"There is no user {user_name!r}.")
        row.password_hash = hashed
        # Who set whose password and when; never the password or its hash.
        append_entry(s, actor, "user.password_set", "user", user_name)
        # Issue 15 item 4: a new password ends the user's web sessions (a stolen cookie too).
        end_user_sessions(s, row, actor=actor, reason="password changed")


def login(db: Database, user_name: str, password: str, *, address: str, now: datetime | None = None) -> Actor:
    """Check a password; return the user's actor.

    Args:
        address: the caller's address (the connecting one, or a trusted proxy's
            X-Forwarded-For: ``Settings.trusted_proxies``).
        now: the time of the try (tests pass one to step through the back-off).

    Raises:
        RateLimited: this try must wait (``retry_after_s`` says how long); the password
            was not checked.
        Unauthenticated: a wrong name or password (the same message, and about the same
            time, for both).
    """
    now = now or utcnow()
    # The columns' sizes; a longer name is no user's anyway.
    user_name, address = user_name[:128], address[:64]
    with db.session(readonly=True) as s:
        # Most tries of a flood are refused here, without the database's write lock.
        _refuse_if_waiting(s, user_name, address, now)
    with db.session() as s:
        # Again, under locks, and counted as a failure before the password is checked:
        # tries sent in parallel are let through one by one, never all at once.
        _lock_counters(s, user_name, address)
        _refuse_if_waiting(s, user_name, address, now)
        _count_failure(_locked_pair(s, user_name, address), now)
        user = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        stored = user.password_hash if user is not None and not user.disabled else None
    matches = check_password(password, stored or _dummy_hash())
    ok = stored is not None and matches
    with db.session() as s:
        row = _locked_pair(s, user_name, address)
        if ok:
            _record_success(s, row, now)
        elif row.reported_at is None or now - row.reported_at >= LEDGER_WINDOW:
            _report(s, row, now)
            # At most once per pair and ledger window: close and forget other pairs' old streaks.
            _close_stale(s, now)
    if not ok:
        raise Unauthenticated("Wrong user name or password.")
    with db.session() as s:
        user_row = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        assert user_row is not None
        return actor_for_user(s, user_row)


def _streaks(s: Session, user_name: str, address: str, now: datetime) -> tuple[SqlSignInAttempt | None, Streak, Streak]:
    """The pair's row, the account's streak (each address counting up to ``PAIR.free``
    failures) and the address's streak, over failures of the last ``WINDOW``."""
    t = SqlSignInAttempt
    recent = t.last_failure_at >= now - WINDOW
    pair = s.scalar(sa.select(t).where(t.user_name == user_name, t.address == address))
    capped = sa.case((t.failures > PAIR.free, PAIR.free), else_=t.failures)
    account = s.execute(sa.select(sa.func.sum(capped), sa.func.max(t.last_failure_at))
                        .where(t.user_name == user_name, recent)).one()
    per_address = s.execute(sa.select(sa.func.sum(t.failures), sa.func.max(t.last_failure_at))
                            .where(t.address == address, recent)).one()
    return pair, Streak(int(account[0] or 0), account[1]), Streak(int(per_address[0] or 0), per_address[1])


def _refuse_if_waiting(s: Session, user_name: str, address: str, now: datetime) -> None:
    pair, account, per_address = _streaks(s, user_name, address, now)
    familiar = pair is not None and pair.last_success_at is not None and now - pair.last_success_at < FAMILIAR_FOR
    wait = wait_before_try(Streak(pair.failures, pair.last_failure_at) if pair else Streak(), account, per_address,
                           familiar=familiar, now=now)
    if wait is not None:
        raise _refusal(wait, user_name)


def _lock_counters(s: Session, user_name: str, address: str) -> None:
    """Serialise the tries at one user name, and from one address, until commit. SQLite
    needs nothing (a writing session holds the database's lock); PostgreSQL takes
    transaction advisory locks, the user's first so that two tries never wait in a cycle."""
    if s.get_bind().dialect.name != "postgresql":
        return
    for kind, value in (("user", user_name), ("address", address)):
        key = int.from_bytes(hashlib.sha256(f"signin\0{kind}\0{value}".encode()).digest()[:8], "big", signed=True)
        s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _refusal(wait: Wait, user_name: str) -> RateLimited:
    seconds = math.ceil(wait.seconds)
    cap = f"up to {int(PAIR.cap_s // 60)} minutes"
    if wait.reason == "pair":
        message = f"Too many failed sign-ins as {user_name!r} from this address."
        hint = f"Try again in {seconds} s; each further failure doubles the wait ({cap}), signing in ends it."
    elif wait.reason == "account":
        message = f"Too many failed sign-ins as {user_name!r} from many addresses."
        hint = (f"Try again in {seconds} s. An address {user_name!r} signed in from in the last "
                f"{FAMILIAR_FOR.days} days is not slowed by this; an admin can see the failures in the audit ledger.")
    else:
        message = "Too many failed sign-ins from this address."
        hint = f"Try again in {seconds} s; each further failure doubles the wait ({cap})."
    return RateLimited(message, hint=hint, retry_after_s=seconds)


def _locked_pair(s: Session, user_name: str, address: str) -> SqlSignInAttempt:
    """The pair's row, created if missing, locked for this transaction (two servers
    counting the same pair at once both count)."""
    dialect_insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    s.execute(dialect_insert(SqlSignInAttempt).values(user_name=user_name, address=address, failures=0, unreported=0)
              .on_conflict_do_nothing(index_elements=["user_name", "address"]))
    return s.scalars(sa.select(SqlSignInAttempt).where(SqlSignInAttempt.user_name == user_name,
                                                       SqlSignInAttempt.address == address).with_for_update()).one()


def _count_failure(row: SqlSignInAttempt, now: datetime) -> None:
    """Count a try as failed (taken back by ``_record_success`` if the password is right)."""
    streak_over = row.last_failure_at is None or now - row.last_failure_at >= WINDOW
    row.failures = 1 if streak_over else row.failures + 1
    row.last_failure_at = now
    if not row.unreported:
        row.first_unreported_at = now
    row.unreported += 1


def _record_success(s: Session, row: SqlSignInAttempt, now: datetime) -> None:
    row.unreported = max(0, row.unreported - 1)
    if row.unreported:
        _report(s, row, now)
    # The streak ends; no failure of this pair counts for the address or the account any more.
    row.failures, row.last_failure_at, row.first_unreported_at, row.last_success_at = 0, None, None, now
    append_entry(s, Actor(row.user_name), "login.succeeded", "user", row.user_name, details={"address": row.address})


def _report(s: Session, row: SqlSignInAttempt, now: datetime) -> None:
    """One 'login.failed' entry for the pair's failures not yet in the ledger."""
    first = row.first_unreported_at or now
    append_entry(s, Actor(row.user_name), "login.failed", "user", row.user_name,
                 details={"address": row.address, "failures": row.unreported, "first_at": first.isoformat(),
                          "last_at": (row.last_failure_at or now).isoformat()})
    row.unreported, row.first_unreported_at, row.reported_at = 0, None, now


def _close_stale(s: Session, now: datetime) -> None:
    t = SqlSignInAttempt
    quiet = sa.or_(t.last_failure_at.is_(None), t.last_failure_at < now - WINDOW)
    # Streaks that ended with failures the ledger has not been told about: tell it now.
    for row in s.scalars(sa.select(t).where(quiet, t.unreported > 0).order_by(t.id).limit(_CLOSE_AT_ONCE)
                         .with_for_update(skip_locked=True)):
        _report(s, row, now)
    s.flush()
    # Forget pairs with nothing left to count: no recent failure, no recent success.
    s.execute(sa.delete(t).where(quiet, t.unreported == 0,
                                 sa.or_(t.last_success_at.is_(None), t.last_success_at < now - FAMILIAR_FOR)),
              execution_options={"synchronize_session": False})
