"""Chainkeeper training stage: fine-tune classifiers and taggers, pre-train language
models, as jobs; evaluate them honestly; record and re-run what makes them reproducible.

Importing the package imports no torch: the loop, the model and the job handler are
loaded by name when used (``chainkeeper.training.loop`` etc.), so the API and the CLI
start fast. The names below are the ones other stages call.
"""

from chainkeeper.training.config import TrainConfig, parse_train_config
from chainkeeper.training.evaluation import classification_metrics, confusion_matrix, format_report
from chainkeeper.training.runs import (
    FINISHED_RUN_STATES,
    Run,
    RunState,
    cancel_run,
    check_base_model,
    check_trainable,
    compare_runs,
    count_runs,
    get_run,
    list_runs,
    run_points,
    resolve_task,
    run_report_html,
    start_training_run,
)

__all__ = [
    "FINISHED_RUN_STATES",
    "Run",
    "RunState",
    "TrainConfig",
    "cancel_run",
    "check_base_model",
    "check_trainable",
    "compare_runs",
    "classification_metrics",
    "confusion_matrix",
    "count_runs",
    "format_report",
    "get_run",
    "list_runs",
    "parse_train_config",
    "run_points",
    "resolve_task",
    "run_report_html",
    "start_training_run",
]
