"""Chainkeeper monitoring stage: prediction log, metrics, feedback, live quality, drift, alerts, tickets.

One public surface: every name a shell or another stage needs is re-exported here and
loaded on first use (PEP 562). The schema imports ``chainkeeper.monitoring.tables``, which
runs this file: loading nothing here keeps that import light (no numpy for the shells).
The retraining loop that starts from a ticket lives above every stage, in
``chainkeeper.chain.maintenance``.

Every object here belongs to its deployment's project (``monitoring.access``); the
functions a shell calls take the actor and decide there:

- log: ``log_predictions`` (and the ``log_served_predictions`` hook), ``PredictionLogWriter``,
  ``name_tagger`` (person names redacted by a registered tagger, ``pii_name_model``);
- feedback: ``submit_feedback``, ``show_feedback``; live quality: ``live_quality``; ``diagnose``;
- drift: ``check_drift`` (``CHECKS``), ``submit_drift_job``, ``schedule_drift_checks``, ``show_drift_results``;
- alerts: ``create_rule``, ``evaluate_rules_now``, ``resolve_alert``, silences, ``find_alerts``,
  ``show_alert``, ``webhook_secret`` (the key a rule's receiver checks signatures with);
- tickets: ``acknowledge_ticket``, ``hand_over_ticket``, ``close_ticket``, ``find_tickets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.monitoring.alerts import (
        ALERTING,
        MAX_SILENCE_S,
        MAX_WINDOW_S,
        Alert,
        AlertDetail,
        AlertRule,
        AlertState,
        Evaluation,
        Severity,
        Silence,
        create_rule,
        create_silence,
        end_silence,
        evaluate_rules,
        evaluate_rules_now,
        find_alerts,
        find_rules,
        find_signals,
        find_silences,
        get_alert,
        get_rule,
        list_alerts,
        list_rules,
        list_silences,
        resolve_alert,
        run_evaluate_job,
        schedule_rule_evaluation,
        set_rule_enabled,
        show_alert,
        webhook_secret,
    )
    from chainkeeper.monitoring.charts import (
        bar_chart_svg,
        series_svg,
    )
    from chainkeeper.monitoring.diagnosis import (
        diagnose,
        render_diagnosis_html,
    )
    from chainkeeper.monitoring.drift import (
        ALL_CHECKS,
        CHECKS,
        CLASSIFIER_CHECKS,
        TAGGER_CHECKS,
    )
    from chainkeeper.monitoring.drift_jobs import (
        THRESHOLD_CAP,
        DriftResult,
        check_drift,
        latest_drift_results,
        list_drift_results,
        run_drift_job,
        schedule_drift_checks,
        show_drift_results,
        submit_drift_job,
    )
    from chainkeeper.monitoring.feedback import (
        MAX_FEEDBACK_ITEMS,
        SOURCES,
        Feedback,
        FeedbackOutcome,
        get_feedback,
        list_feedback,
        show_feedback,
        submit_feedback,
    )
    from chainkeeper.monitoring.logwriter import (
        PredictionLogWriter,
        flush_writers,
    )
    from chainkeeper.monitoring.metrics import (
        CONTENT_TYPE,
        METRIC_NAMES,
        UNKNOWN_DEPLOYMENT,
        MetricSampler,
        ServingMetrics,
        metric_names,
        metric_series,
        read_metric_series,
        render_metrics,
    )
    from chainkeeper.monitoring.names import NameTagger, name_tagger
    from chainkeeper.monitoring.notify import (
        DeliveryAttempt,
        Notification,
        RetryPolicy,
        list_attempts,
        list_notifications,
        run_delivery_job,
    )
    from chainkeeper.monitoring.predictions import (
        PredictionRecord,
        count_predictions,
        get_prediction,
        hash_input,
        list_predictions,
        log_predictions,
        log_served_predictions,
        prediction_record,
        purge_predictions,
        redact_input,
    )
    from chainkeeper.monitoring.quality import (
        labelled_predictions,
        live_quality,
        parse_window,
        quality_windows,
        score_entities,
    )
    from chainkeeper.monitoring.retention import retention_schedules, run_retention_job
    from chainkeeper.monitoring.signals import (
        known_signals,
    )
    from chainkeeper.monitoring.tickets import (
        Ticket,
        TicketBoard,
        TicketState,
        acknowledge_ticket,
        advance_ticket,
        close_ticket,
        find_tickets,
        get_ticket,
        hand_over_ticket,
        list_tickets,
        show_ticket,
        ticket_stats,
    )

_EXPORTS = {
    "ALERTING": "alerts", "Alert": "alerts", "AlertDetail": "alerts", "AlertRule": "alerts", "AlertState": "alerts",
    "Evaluation": "alerts", "MAX_SILENCE_S": "alerts", "MAX_WINDOW_S": "alerts", "Severity": "alerts",
    "Silence": "alerts", "create_rule": "alerts", "create_silence": "alerts", "end_silence": "alerts",
    "evaluate_rules": "alerts", "evaluate_rules_now": "alerts", "find_signals": "alerts", "find_alerts": "alerts",
    "find_rules": "alerts",
    "find_silences": "alerts", "get_alert": "alerts", "get_rule": "alerts", "list_alerts": "alerts",
    "list_rules": "alerts", "list_silences": "alerts", "resolve_alert": "alerts", "run_evaluate_job": "alerts",
    "schedule_rule_evaluation": "alerts",
    "set_rule_enabled": "alerts", "show_alert": "alerts", "webhook_secret": "alerts",
    "bar_chart_svg": "charts", "series_svg": "charts",
    "diagnose": "diagnosis", "render_diagnosis_html": "diagnosis",
    "ALL_CHECKS": "drift", "CHECKS": "drift", "CLASSIFIER_CHECKS": "drift", "TAGGER_CHECKS": "drift",
    "score_entities": "quality",
    "DriftResult": "drift_jobs", "check_drift": "drift_jobs", "latest_drift_results": "drift_jobs",
    "list_drift_results": "drift_jobs", "run_drift_job": "drift_jobs", "show_drift_results": "drift_jobs",
    "submit_drift_job": "drift_jobs", "schedule_drift_checks": "drift_jobs",
    "run_delivery_job": "notify", "retention_schedules": "retention", "run_retention_job": "retention",
    "Feedback": "feedback", "FeedbackOutcome": "feedback", "MAX_FEEDBACK_ITEMS": "feedback", "SOURCES": "feedback",
    "get_feedback": "feedback", "list_feedback": "feedback", "show_feedback": "feedback",
    "submit_feedback": "feedback",
    "PredictionLogWriter": "logwriter", "flush_writers": "logwriter",
    "NameTagger": "names", "name_tagger": "names",
    "CONTENT_TYPE": "metrics", "METRIC_NAMES": "metrics", "MetricSampler": "metrics", "ServingMetrics": "metrics",
    "UNKNOWN_DEPLOYMENT": "metrics", "metric_names": "metrics", "metric_series": "metrics",
    "read_metric_series": "metrics", "render_metrics": "metrics",
    "DeliveryAttempt": "notify", "Notification": "notify", "RetryPolicy": "notify", "list_attempts": "notify",
    "list_notifications": "notify",
    "PredictionRecord": "predictions", "count_predictions": "predictions", "get_prediction": "predictions",
    "hash_input": "predictions", "list_predictions": "predictions", "log_predictions": "predictions",
    "log_served_predictions": "predictions", "prediction_record": "predictions", "purge_predictions": "predictions",
    "redact_input": "predictions",
    "labelled_predictions": "quality", "live_quality": "quality", "parse_window": "quality",
    "quality_windows": "quality",
    "known_signals": "signals",
    "Ticket": "tickets", "TicketBoard": "tickets", "TicketState": "tickets", "acknowledge_ticket": "tickets",
    "advance_ticket": "tickets", "close_ticket": "tickets", "find_tickets": "tickets", "get_ticket": "tickets",
    "hand_over_ticket": "tickets", "list_tickets": "tickets", "show_ticket": "tickets", "ticket_stats": "tickets",
    "THRESHOLD_CAP": "drift_jobs",
}

# Literal, so type checkers and linters see the exports; tests/test_layers.py keeps it equal to _EXPORTS.
__all__ = [
    "ALERTING",
    "ALL_CHECKS",
    "Alert",
    "AlertDetail",
    "AlertRule",
    "AlertState",
    "CHECKS",
    "CLASSIFIER_CHECKS",
    "CONTENT_TYPE",
    "DeliveryAttempt",
    "DriftResult",
    "Evaluation",
    "Feedback",
    "FeedbackOutcome",
    "MAX_FEEDBACK_ITEMS",
    "MAX_SILENCE_S",
    "MAX_WINDOW_S",
    "METRIC_NAMES",
    "MetricSampler",
    "NameTagger",
    "Notification",
    "PredictionLogWriter",
    "PredictionRecord",
    "RetryPolicy",
    "SOURCES",
    "ServingMetrics",
    "Severity",
    "Silence",
    "TAGGER_CHECKS",
    "THRESHOLD_CAP",
    "Ticket",
    "TicketBoard",
    "TicketState",
    "UNKNOWN_DEPLOYMENT",
    "acknowledge_ticket",
    "advance_ticket",
    "bar_chart_svg",
    "check_drift",
    "close_ticket",
    "count_predictions",
    "create_rule",
    "create_silence",
    "diagnose",
    "end_silence",
    "evaluate_rules",
    "evaluate_rules_now",
    "find_alerts",
    "find_rules",
    "find_signals",
    "find_silences",
    "find_tickets",
    "flush_writers",
    "get_alert",
    "get_feedback",
    "get_prediction",
    "get_rule",
    "get_ticket",
    "hand_over_ticket",
    "hash_input",
    "known_signals",
    "labelled_predictions",
    "latest_drift_results",
    "list_alerts",
    "list_attempts",
    "list_drift_results",
    "list_feedback",
    "list_notifications",
    "list_predictions",
    "list_rules",
    "list_silences",
    "list_tickets",
    "live_quality",
    "log_predictions",
    "log_served_predictions",
    "metric_names",
    "metric_series",
    "name_tagger",
    "parse_window",
    "prediction_record",
    "purge_predictions",
    "quality_windows",
    "read_metric_series",
    "redact_input",
    "render_diagnosis_html",
    "render_metrics",
    "resolve_alert",
    "retention_schedules",
    "run_delivery_job",
    "run_drift_job",
    "run_evaluate_job",
    "run_retention_job",
    "schedule_rule_evaluation",
    "score_entities",
    "series_svg",
    "set_rule_enabled",
    "show_alert",
    "show_drift_results",
    "show_feedback",
    "show_ticket",
    "schedule_drift_checks",
    "submit_drift_job",
    "submit_feedback",
    "ticket_stats",
    "webhook_secret",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
