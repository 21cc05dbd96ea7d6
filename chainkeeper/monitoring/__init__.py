"""Chainkeeper monitoring stage: prediction log, metrics, feedback, drift, alerts and maintenance."""

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

__all__ = [
    "PredictionRecord",
    "count_predictions",
    "get_prediction",
    "hash_input",
    "list_predictions",
    "log_predictions",
    "prediction_record",
    "purge_predictions",
    "redact_input",
]
