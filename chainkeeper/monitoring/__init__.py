"""Chainkeeper monitoring stage: the prediction log."""

from chainkeeper.monitoring.predictions import (
    PredictionRecord,
    count_predictions,
    get_prediction,
    hash_input,
    list_predictions,
    log_predictions,
    prediction_record,
)

__all__ = [
    "PredictionRecord",
    "count_predictions",
    "get_prediction",
    "hash_input",
    "list_predictions",
    "log_predictions",
    "prediction_record",
]
