"""Chainkeeper training stage: fine-tune classifiers and taggers, pre-train language
models, as jobs; evaluate them honestly; record and re-run what makes them reproducible.

One public surface: every name a shell or another stage needs is re-exported here and
loaded on first use (PEP 562). Importing the package, which the schema does for
``chainkeeper.training.tables``, loads no service code and no torch: the model, the loop
and the job's trainers load only when one of their names is used.

- runs: ``start_training_run``, ``cancel_run``, ``find_runs``, ``show_run``, ``run_points``,
  ``run_report_html``, ``compare_runs`` (each decides with the actor, in the run's
  project: ``project_of_run``); ``get_run``, ``list_runs``, ``count_runs`` are store
  readers for services that already decided;
- search and reproduction: ``start_search``, ``show_search`` (a search with its trials,
  each a run of the search), ``parse_space``, ``reproduce_run``,
  ``compare_reproduction``;
- jobs: ``run_training_job``, ``run_search_job`` (registered by the chain's job table),
  ``load_split`` and ``evaluate_split``; ``score_classifier`` and ``score_tagger`` score a
  stored model on rows from outside its dataset (``models evaluate``);
- the model (torch): ``TextClassifier``, ``ClassifierMeta``, ``train_classifier``,
  ``predict_labels``, ``seed_everything``; metrics: ``classification_metrics``,
  ``calibration_report``, ``slice_metrics``, ``language_metrics`` (English and Chinese
  rows apart); pages: ``render_report_html``, ``line_plot_svg``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.training.calibration import (
        calibration_report,
        length_bucket,
        slice_metrics,
    )
    from chainkeeper.training.config import TrainConfig, parse_train_config
    from chainkeeper.training.evaluation import (
        OUT_OF_SCOPE_LABEL,
        classification_metrics,
        confusion_matrix,
        format_report,
        language_metrics,
        out_of_scope_metrics,
    )
    from chainkeeper.training.jobs import (
        Split,
        evaluate_split,
        load_split,
        run_training_job,
    )
    from chainkeeper.training.loop import (
        StepReport,
        predict_labels,
        seed_everything,
        train_classifier,
    )
    from chainkeeper.training.model import (
        HEAD_FILE,
        META_FILE,
        ClassifierMeta,
        TextClassifier,
    )
    from chainkeeper.training.report import (
        line_plot_svg,
        reliability_svg,
        render_report_html,
    )
    from chainkeeper.training.reproducibility import (
        Reproduction,
        compare_reproduction,
        reproduce_run,
    )
    from chainkeeper.training.runs import (
        FINISHED_RUN_STATES,
        FROM_SCRATCH,
        Run,
        RunState,
        cancel_run,
        check_base_model,
        check_trainable,
        compare_runs,
        count_runs,
        find_runs,
        get_run,
        list_runs,
        project_of_run,
        resolve_task,
        run_ids_of_projects,
        run_points,
        run_report_html,
        show_run,
        start_training_run,
    )
    from chainkeeper.training.scoring import score_classifier, score_tagger
    from chainkeeper.training.search import (
        SearchReport,
        Target,
        parse_space,
        run_search_job,
        show_search,
        start_search,
    )
    from chainkeeper.training.tokens import TokenTagger, entity_metrics, word_case

_EXPORTS = {
    "calibration_report": "calibration", "length_bucket": "calibration", "slice_metrics": "calibration",
    "TrainConfig": "config", "parse_train_config": "config",
    "classification_metrics": "evaluation", "confusion_matrix": "evaluation", "format_report": "evaluation",
    "OUT_OF_SCOPE_LABEL": "evaluation", "out_of_scope_metrics": "evaluation", "language_metrics": "evaluation",
    "Split": "jobs", "evaluate_split": "jobs", "load_split": "jobs", "run_training_job": "jobs",
    "StepReport": "loop", "predict_labels": "loop", "seed_everything": "loop", "train_classifier": "loop",
    "HEAD_FILE": "model", "META_FILE": "model", "ClassifierMeta": "model", "TextClassifier": "model",
    "line_plot_svg": "report", "reliability_svg": "report", "render_report_html": "report",
    "Reproduction": "reproducibility", "compare_reproduction": "reproducibility", "reproduce_run": "reproducibility",
    "FINISHED_RUN_STATES": "runs", "FROM_SCRATCH": "runs", "Run": "runs", "RunState": "runs",
    "cancel_run": "runs", "check_base_model": "runs", "check_trainable": "runs", "compare_runs": "runs",
    "count_runs": "runs", "find_runs": "runs", "get_run": "runs", "list_runs": "runs", "project_of_run": "runs",
    "resolve_task": "runs", "run_ids_of_projects": "runs", "run_points": "runs", "run_report_html": "runs",
    "show_run": "runs", "start_training_run": "runs",
    "score_classifier": "scoring", "score_tagger": "scoring",
    "SearchReport": "search", "Target": "search", "parse_space": "search", "run_search_job": "search",
    "show_search": "search", "start_search": "search",
    "TokenTagger": "tokens", "entity_metrics": "tokens", "word_case": "tokens",
}

# Literal, so type checkers and linters see the exports; tests/test_layers.py keeps it equal to _EXPORTS.
__all__ = [
    "ClassifierMeta",
    "FINISHED_RUN_STATES",
    "FROM_SCRATCH",
    "HEAD_FILE",
    "META_FILE",
    "OUT_OF_SCOPE_LABEL",
    "Reproduction",
    "Run",
    "RunState",
    "SearchReport",
    "Split",
    "StepReport",
    "Target",
    "TextClassifier",
    "TokenTagger",
    "TrainConfig",
    "calibration_report",
    "cancel_run",
    "check_base_model",
    "check_trainable",
    "classification_metrics",
    "compare_reproduction",
    "compare_runs",
    "confusion_matrix",
    "count_runs",
    "entity_metrics",
    "evaluate_split",
    "find_runs",
    "format_report",
    "get_run",
    "language_metrics",
    "length_bucket",
    "line_plot_svg",
    "list_runs",
    "load_split",
    "out_of_scope_metrics",
    "parse_space",
    "parse_train_config",
    "predict_labels",
    "project_of_run",
    "reliability_svg",
    "render_report_html",
    "reproduce_run",
    "resolve_task",
    "run_ids_of_projects",
    "run_points",
    "run_report_html",
    "run_search_job",
    "run_training_job",
    "score_classifier",
    "score_tagger",
    "seed_everything",
    "show_run",
    "show_search",
    "slice_metrics",
    "start_search",
    "start_training_run",
    "train_classifier",
    "word_case",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
