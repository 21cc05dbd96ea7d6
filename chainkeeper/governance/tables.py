"""ORM classes of governance: users, tokens, roles, permissions, the audit ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow


class SqlUser(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(255), default="")
    password_hash: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the user is deleted: the row stays (the ledger names the user), disabled,
    # without password, roles or working tokens; the name is not given out again.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SqlToken(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    # sha256 of the secret; the secret itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # 'token': an API token (bearer header, CLI); 'session': a web sign-in (the cookie only).
    kind: Mapped[str] = mapped_column(sa.String(16), default="token", server_default="token")
    # The address a session was signed in from (None for API tokens).
    created_address: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    # When the credential last authenticated a request (updated at most once a minute).
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SqlRole(Base):
    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    builtin: Mapped[bool] = mapped_column(default=False)


class SqlPermission(Base):
    __tablename__ = "permissions"

    role: Mapped[str] = mapped_column(sa.ForeignKey("roles.name", ondelete="CASCADE"), primary_key=True)
    action: Mapped[str] = mapped_column(sa.String(64), primary_key=True)


class SqlUserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (sa.UniqueConstraint("user_id", "role", "project"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.ForeignKey("roles.name", ondelete="CASCADE"))
    # None: the role holds everywhere; otherwise only inside this project.
    project: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)


class SqlAuditEntry(Base):
    __tablename__ = "audit_ledger"

    seq: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(sa.String(128))
    role: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    object_kind: Mapped[str] = mapped_column(sa.String(64))
    object_id: Mapped[str] = mapped_column(sa.String(128))
    before_digest: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    after_digest: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Unique: two appends that read the same predecessor cannot both commit (no forks).
    prev_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The ledger key of the entry's HMAC (governance.ledger_keys); None: made before the
    # ledger had a key (migration 0017), hashed with plain sha256.
    key_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)


class SqlApproval(Base):
    """A hand-off that needs a second person: a request, its checks and its decision."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    object_kind: Mapped[str] = mapped_column(sa.String(64))
    object_id: Mapped[str] = mapped_column(sa.String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), default="pending", index=True)
    checks: Mapped[list[Any]] = mapped_column(default=list)
    requested_by: Mapped[str] = mapped_column(sa.String(128))
    request_comment: Mapped[str] = mapped_column(sa.Text, default="")
    decided_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    decision_comment: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SqlOwnership(Base):
    """Who owns an object and which role is responsible for it."""

    __tablename__ = "ownership"

    object_kind: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    object_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(128))
    responsible_role: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlSignInAttempt(Base):
    """Sign-in attempts of one user name from one address, counted rather than listed
    (issue 15 item 5): the failure streak the back-off reads, when the pair last signed
    in (a familiar address), and the failures the ledger has not been told about yet.
    The name need not be a user's: guesses at unknown names are counted the same way."""

    __tablename__ = "signin_attempts"
    __table_args__ = (sa.UniqueConstraint("user_name", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(sa.String(128))
    address: Mapped[str] = mapped_column(sa.String(64), index=True)
    # Failures since the last success, or since a quiet spell of throttle.WINDOW.
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Failures not yet in a 'login.failed' ledger entry, and when the last entry was written.
    unreported: Mapped[int] = mapped_column(default=0)
    first_unreported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
