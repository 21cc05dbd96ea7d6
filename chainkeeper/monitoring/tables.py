"""ORM classes of monitoring: the prediction log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow


class SqlPrediction(Base):
    __tablename__ = "predictions"

    # The request id returned to the caller (one per text served).
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    input_hash: Mapped[str] = mapped_column(sa.String(64))
    input_text: Mapped[str] = mapped_column(sa.Text)
    label: Mapped[str] = mapped_column(sa.String(255))
    score: Mapped[float]
    latency_ms: Mapped[float]
    # Added by migration 0006 (the hot path): the labels and probabilities returned to
    # the caller (top labels, best first), how many personal-data spans were redacted out
    # of input_text, and the length of the input as received (input_text is redacted).
    scores: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    pii_spans: Mapped[int] = mapped_column(default=0, server_default="0")
    input_chars: Mapped[int | None]
    # Added by migration 0014: a tagger's entities (type, start, end, score, redacted text),
    # offsets into the input as received; NULL for a classifier's prediction.
    entities: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON, nullable=True)


# --- hot path (issues 6 and 8): prediction-log columns and stored metric series; migration 0006 ---

class SqlMetricSample(Base):
    """One value of one metric series at one time (``monitoring.metrics.sample_metrics``)."""

    __tablename__ = "metric_samples"
    __table_args__ = (sa.Index("ix_metric_samples_name_at", "name", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    # The series' labels, e.g. {"deployment": "support", "model_version": "3"}.
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Copied out of labels so the per-deployment query is an indexed equality.
    deployment: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    value: Mapped[float]
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- quality (issue 8): feedback, live quality windows, drift results; migration 0007 ---


class SqlFeedback(Base):
    """The ground-truth label of one served prediction, from a reviewer or a downstream system.

    One row per request id: a later, different label corrects it (``revisions`` counts
    the corrections, ``previous_label`` keeps the one before); every change is in the ledger.
    """

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.ForeignKey("predictions.id"), unique=True)
    label: Mapped[str] = mapped_column(sa.String(255))
    source: Mapped[str] = mapped_column(sa.String(16))
    given_by: Mapped[str] = mapped_column(sa.String(128))
    given_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revisions: Mapped[int] = mapped_column(default=0)
    previous_label: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    # Added by migration 0014: the true entities of a tagger's prediction ({"type", "start",
    # "end"}, offsets into the text as sent); ``label`` then holds their summary. NULL for a classifier.
    spans: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON, nullable=True)


class SqlDriftResult(Base):
    """One drift check of one window of traffic against the model's reference data."""

    __tablename__ = "drift_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"))
    check_name: Mapped[str] = mapped_column(sa.String(32))
    statistic: Mapped[float]
    threshold: Mapped[float]
    p_value: Mapped[float | None] = mapped_column(nullable=True)
    drifted: Mapped[bool]
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    window_size: Mapped[int]
    reference: Mapped[str] = mapped_column(sa.Text)
    reference_dataset_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dataset_versions.id"),
                                                                     nullable=True)
    reference_size: Mapped[int]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id"), nullable=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- alerts and maintenance (issue 8): rules, alerts, notifications, tickets; migration 0008 ---


class SqlAlertRule(Base):
    """A condition on a metric or check: ``metric comparator threshold`` over ``window_s``."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    metric: Mapped[str] = mapped_column(sa.String(128))
    comparator: Mapped[str] = mapped_column(sa.String(2))
    threshold: Mapped[float]
    window_s: Mapped[int]
    severity: Mapped[str] = mapped_column(sa.String(16))
    # None: the rule watches every deployment.
    deployment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("deployments.id"), nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlAlert(Base):
    """One firing of a rule on a deployment, from the first breach to its resolution."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(sa.ForeignKey("alert_rules.id"), index=True)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id"), index=True)
    # "rule_id:deployment_id" while open, NULL once resolved: the unique key allows one open
    # alert per rule and deployment on every backend (NULLs never collide).
    open_key: Mapped[str | None] = mapped_column(sa.String(64), unique=True, nullable=True)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    severity: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[float]
    threshold: Mapped[float]
    message: Mapped[str] = mapped_column(sa.Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SqlSilence(Base):
    """While a silence holds, matching alerts are recorded but notify nobody and open no ticket."""

    __tablename__ = "alert_silences"

    id: Mapped[int] = mapped_column(primary_key=True)
    # None: every rule (or every deployment).
    rule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("alert_rules.id"), nullable=True)
    deployment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("deployments.id"), nullable=True)
    reason: Mapped[str] = mapped_column(sa.Text)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))


class SqlNotification(Base):
    """A webhook message about an alert, delivered (or not) by the background sender."""

    __tablename__ = "alert_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id"), index=True)
    url: Mapped[str] = mapped_column(sa.Text)
    event: Mapped[str] = mapped_column(sa.String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SqlDeliveryAttempt(Base):
    """One HTTP attempt of a notification: its status or the network error."""

    __tablename__ = "alert_delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(sa.ForeignKey("alert_notifications.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    duration_ms: Mapped[float]


class SqlTicket(Base):
    """Maintenance work opened by an alert: owned by a role, acknowledged, handed over, closed."""

    __tablename__ = "maintenance_tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(sa.ForeignKey("alerts.id"), nullable=True, index=True)
    deployment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("deployments.id"), nullable=True)
    title: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    owner_role: Mapped[str] = mapped_column(sa.String(64))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    time_to_acknowledge_s: Mapped[float | None] = mapped_column(nullable=True)
    handed_over_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    # What the retraining loop produced from this ticket (maintenance.py).
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
