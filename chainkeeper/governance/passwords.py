"""Passwords for the web UI: scrypt hashes, and login rate-limited per user and address.

A password is stored as ``scrypt$n$r$p$salt$hash`` (hashlib.scrypt, memory-hard). Login
counts recent failures for the user and for the address in ``login_attempts``; past the
limit it refuses before checking the password, so guessing costs time. Every failure is
in the audit ledger with the user name and address, never the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import InvalidInput, NotFound, RateLimited, Unauthenticated
from chainkeeper.governance.actors import SYSTEM, Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize
from chainkeeper.governance.tables import SqlLoginAttempt, SqlUser
from chainkeeper.governance.users import actor_for_user

# n=2**14, r=8: 16 MiB of memory per hash, about 50 ms here; OWASP's scrypt floor.
_N, _R, _P = 2**14, 8, 1
MIN_LENGTH = 10
WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20


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


def set_password(db: Database, user_name: str, password: str, *, actor: Actor = SYSTEM) -> None:
    """Set a user's web sign-in password.

    Raises:
        Forbidden: the actor may not manage users. InvalidInput: too short. NotFound: no such user.
    """
    authorize(db, actor, "user.manage")
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"The password is too short ({len(password)} characters).",
                           hint=f"Use at least {MIN_LENGTH} characters.")
    hashed = hash_password(password)
    with db.session() as s:
        row = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        if row is None:
            raise NotFound(f"There is no user {user_name!r}.")
        row.password_hash = hashed
        # Who set whose password and when; never the password or its hash.
        append_entry(s, actor, "user.password_set", "user", user_name)


def login(db: Database, user_name: str, password: str, *, address: str) -> Actor:
    """Check a password; return the user's actor.

    Raises:
        RateLimited: too many recent failures for this user or this address.
        Unauthenticated: a wrong name or password (the same message for both).
    """
    since = utcnow() - WINDOW
    with db.session() as s:
        def failures(column: InstrumentedAttribute[str], value: str) -> int:
            return s.scalar(sa.select(sa.func.count()).select_from(SqlLoginAttempt).where(
                column == value, SqlLoginAttempt.succeeded.is_(False), SqlLoginAttempt.at >= since)) or 0

        if failures(SqlLoginAttempt.user_name, user_name) >= MAX_FAILURES_PER_USER or \
                failures(SqlLoginAttempt.address, address) >= MAX_FAILURES_PER_ADDRESS:
            raise RateLimited("Too many failed sign-in attempts.",
                              hint=f"Wait {int(WINDOW.total_seconds() // 60)} minutes, or ask an admin to reset "
                              "the password.")
        user = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        ok = bool(user and not user.disabled and user.password_hash and check_password(password, user.password_hash))
    with db.session() as s:
        s.add(SqlLoginAttempt(user_name=user_name, address=address, succeeded=ok))
        # Committed before raising: the failed attempt must count.
        append_entry(s, Actor(user_name), "login.succeeded" if ok else "login.failed", "user", user_name,
                     details={"address": address})
    if not ok:
        raise Unauthenticated("Wrong user name or password.")
    with db.session() as s:
        row = s.scalar(sa.select(SqlUser).where(SqlUser.name == user_name))
        assert row is not None
        return actor_for_user(s, row)
