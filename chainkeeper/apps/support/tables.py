"""ORM classes of the support assistant (issue 16). Migration: core/migrations/versions/0020_support.py.

An application (``support_apps``) names the deployment whose classifier finds the intent
and the released knowledge-base version its answers come from, with its out-of-scope
threshold per model version. A conversation (``support_conversations``) belongs to one
application and one caller; its messages (``support_messages``) are stored with personal
data redacted, each assistant answer tied to the prediction (``request_id``), the model
version and the knowledge-base version that produced it. A handed-over conversation waits
in the queue until a support agent resolves it; the resolution (the right intent, a reply,
optionally a new article) becomes a labelled row when a data steward exports it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow

__all__ = ["SqlSupportApp", "SqlSupportConversation", "SqlSupportMessage"]


class SqlSupportApp(Base):
    """One support assistant: its classifier deployment, knowledge base and decision settings."""

    __tablename__ = "support_apps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    project: Mapped[str] = mapped_column(sa.String(128), index=True)
    owner: Mapped[str] = mapped_column(sa.String(128))
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id"), index=True)
    knowledge_version_id: Mapped[int] = mapped_column(sa.ForeignKey("dataset_versions.id"))
    # {model_version_id: {"method", "threshold", "dev_rows", ...}}: fitted per answering version.
    scope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), default="active")
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlSupportConversation(Base):
    """A caller's conversation with one assistant, and its hand-off to a person."""

    __tablename__ = "support_conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    app_id: Mapped[int] = mapped_column(sa.ForeignKey("support_apps.id"), index=True)
    caller: Mapped[str] = mapped_column(sa.String(160))
    # open -> handed_over -> claimed -> resolved (a new customer message opens it again)
    state: Mapped[str] = mapped_column(sa.String(16), default="open", index=True)
    language: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)
    clarifications: Mapped[int] = mapped_column(default=0)
    handoff_reason: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The resolution: the customer message it labels, the intent, the article sent or proposed.
    labelled_message_id: Mapped[int | None] = mapped_column(nullable=True)
    resolved_intent: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    resolution: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    # The dataset version its labelled row went into (``export_resolutions``).
    exported_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dataset_versions.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SqlSupportMessage(Base):
    """One message of a conversation, its text redacted; an assistant's with what answered it."""

    __tablename__ = "support_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(sa.ForeignKey("support_conversations.id", ondelete="CASCADE"),
                                                 index=True)
    sender: Mapped[str] = mapped_column(sa.String(16))  # customer | assistant | agent
    text: Mapped[str] = mapped_column(sa.Text)
    decision: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)  # answer | clarify | handoff
    intent: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    confidence: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    scope_score: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    articles: Mapped[list[Any]] = mapped_column(default=list)
    request_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True, index=True)
    deployment_id: Mapped[int | None] = mapped_column(nullable=True)
    model_version_id: Mapped[int | None] = mapped_column(nullable=True)
    knowledge_version_id: Mapped[int | None] = mapped_column(nullable=True)
    author: Mapped[str | None] = mapped_column(sa.String(160), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
