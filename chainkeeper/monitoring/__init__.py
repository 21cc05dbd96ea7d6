"""Chainkeeper monitoring stage: prediction log, feedback, drift, alerts and maintenance.

One public surface: every name a shell or another stage needs is re-exported here and
loaded on first use (PEP 562). The schema imports ``chainkeeper.monitoring.tables``, which
runs this file; loading nothing here keeps that import free of cycles (the loop reaches
into data, training and registry) and of numpy for the shells.

- log: ``log_predictions``, ``list_predictions``, ``purge_predictions`` …;
- feedback: ``submit_feedback``, ``list_feedback``; live quality: ``live_quality``;
- drift: ``check_drift`` (``CHECKS``), ``submit_drift_job``, ``list_drift_results``;
- alerts: ``create_rule``, ``evaluate_rules``, ``resolve_alert``, silences; webhooks:
  ``list_notifications``, ``RetryPolicy``;
- tickets: ``acknowledge_ticket``, ``hand_over_ticket``, ``close_ticket``;
- maintenance: ``start_retraining``, ``train_on_released``, ``evaluate_retraining``,
  ``hand_to_release_gate``, ``close_when_served``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainkeeper.monitoring.alerts import (
        Alert,
        AlertRule,
        AlertState,
        Evaluation,
        Severity,
        Silence,
        create_rule,
        create_silence,
        end_silence,
        evaluate_rules,
        get_alert,
        get_rule,
        list_alerts,
        list_rules,
        list_silences,
        resolve_alert,
        set_rule_enabled,
    )
    from chainkeeper.monitoring.drift import CHECKS
    from chainkeeper.monitoring.drift_jobs import (
        DriftResult,
        check_drift,
        latest_drift_results,
        list_drift_results,
        submit_drift_job,
    )
    from chainkeeper.monitoring.feedback import Feedback, FeedbackOutcome, get_feedback, list_feedback, submit_feedback
    from chainkeeper.monitoring.maintenance import (
        Retraining,
        RetrainingRun,
        close_when_served,
        evaluate_retraining,
        hand_to_release_gate,
        start_retraining,
        train_on_released,
    )
    from chainkeeper.monitoring.notify import RetryPolicy, list_attempts, list_notifications
    from chainkeeper.monitoring.predictions import (
        PredictionRecord,
        count_predictions,
        get_prediction,
        hash_input,
        list_predictions,
        log_predictions,
        prediction_record,
        purge_predictions,
        redact_input,
    )
    from chainkeeper.monitoring.quality import live_quality, quality_windows
    from chainkeeper.monitoring.tickets import (
        Ticket,
        TicketState,
        acknowledge_ticket,
        close_ticket,
        get_ticket,
        hand_over_ticket,
        list_tickets,
        ticket_stats,
    )

_EXPORTS = {
    "Alert": "alerts", "AlertRule": "alerts", "AlertState": "alerts", "Evaluation": "alerts", "Severity": "alerts",
    "Silence": "alerts", "create_rule": "alerts", "create_silence": "alerts", "end_silence": "alerts",
    "evaluate_rules": "alerts", "get_alert": "alerts", "get_rule": "alerts", "list_alerts": "alerts",
    "list_rules": "alerts", "list_silences": "alerts", "resolve_alert": "alerts", "set_rule_enabled": "alerts",
    "CHECKS": "drift",
    "DriftResult": "drift_jobs", "check_drift": "drift_jobs", "latest_drift_results": "drift_jobs",
    "list_drift_results": "drift_jobs", "submit_drift_job": "drift_jobs",
    "Feedback": "feedback", "FeedbackOutcome": "feedback", "get_feedback": "feedback", "list_feedback": "feedback",
    "submit_feedback": "feedback",
    "Retraining": "maintenance", "RetrainingRun": "maintenance", "close_when_served": "maintenance",
    "evaluate_retraining": "maintenance", "hand_to_release_gate": "maintenance", "start_retraining": "maintenance",
    "train_on_released": "maintenance",
    "RetryPolicy": "notify", "list_attempts": "notify", "list_notifications": "notify",
    "PredictionRecord": "predictions", "count_predictions": "predictions", "get_prediction": "predictions",
    "hash_input": "predictions", "list_predictions": "predictions", "log_predictions": "predictions",
    "prediction_record": "predictions", "purge_predictions": "predictions", "redact_input": "predictions",
    "live_quality": "quality", "quality_windows": "quality",
    "Ticket": "tickets", "TicketState": "tickets", "acknowledge_ticket": "tickets", "close_ticket": "tickets",
    "get_ticket": "tickets", "hand_over_ticket": "tickets", "list_tickets": "tickets", "ticket_stats": "tickets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chainkeeper.monitoring' has no attribute {name!r}")
    return getattr(importlib.import_module(f"chainkeeper.monitoring.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
