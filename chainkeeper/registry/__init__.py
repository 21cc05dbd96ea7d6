"""Chainkeeper registry stage: model versions, their stage history, release gates and model cards.

One public surface: every name a shell or another stage needs is re-exported here and
loaded on first use (PEP 562), so importing ``chainkeeper.registry.tables`` (the schema
does) loads no service code.

- versions: ``register_model_version``, ``transition_stage``, ``find_model_versions``,
  ``show_model_version``, ``show_stage_history``, ``show_production`` (each decides with the
  actor, in the version's project ``project_of_model_version`` or the name's
  ``project_of_model_name``); ``get_model_version``, ``list_model_versions``,
  ``stage_history``, ``production_*`` are store readers for services that already decided;
- gates: ``set_gate_thresholds``, ``run_gates``, ``show_gates``; ``evaluate_release_gates``
  for the promotion gate; the deployment tests come from above through ``DEPLOYMENT_TESTS_HOOK``;
- evaluation: ``evaluate_model_version`` scores a version on a file of labelled rows
  (read by the data stage's readers; the reading is stored, not the file), out-of-scope
  figures apart; ``list_model_evaluations`` reads them back;
- cards: ``model_card``, ``collect_card_facts`` (serving's export through ``LATEST_EXPORT_HOOK``),
  the pure ``render_model_card`` and ``render_card_html``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.registry.cards import (
        CardFacts,
        collect_card_facts,
        model_card,
        render_card_html,
        render_model_card,
    )
    from chainkeeper.registry.evaluation import (
        ModelEvaluation,
        evaluate_model_version,
        list_model_evaluations,
        read_labelled_file,
    )
    from chainkeeper.registry.gates import (
        UNCHANGED,
        GateOutcome,
        GateReport,
        GateResult,
        GateThresholds,
        evaluate_gates,
        evaluate_release_gates,
        flat_slices,
        get_gate_thresholds,
        is_tagger_metrics,
        latest_gate_results,
        run_gates,
        set_gate_thresholds,
        show_gates,
    )
    from chainkeeper.registry.hooks import DEPLOYMENT_TESTS_HOOK, LATEST_EXPORT_HOOK, SERVING_VERSIONS_HOOK
    from chainkeeper.registry.versions import (
        ALLOWED_MOVES,
        ModelVersion,
        ProductionHistory,
        ProductionPeriod,
        Stage,
        StageTransition,
        count_model_versions,
        find_model_versions,
        get_model_version,
        list_model_versions,
        production_from_history,
        production_periods,
        production_timeline,
        production_version_at,
        project_of_model_name,
        project_of_model_version,
        register_model_version,
        retire_replaced_versions,
        show_model_version,
        show_production,
        show_stage_history,
        stage_history,
        transition_stage,
        validate_model_name,
    )

_EXPORTS = {
    "LATEST_EXPORT_HOOK": "hooks", "CardFacts": "cards", "collect_card_facts": "cards", "model_card": "cards",
    "render_card_html": "cards", "render_model_card": "cards",
    "ModelEvaluation": "evaluation", "evaluate_model_version": "evaluation", "read_labelled_file": "evaluation",
    "list_model_evaluations": "evaluation",
    "DEPLOYMENT_TESTS_HOOK": "hooks", "UNCHANGED": "gates", "GateOutcome": "gates", "GateReport": "gates",
    "GateResult": "gates", "GateThresholds": "gates", "evaluate_gates": "gates", "evaluate_release_gates": "gates",
    "flat_slices": "gates", "get_gate_thresholds": "gates", "latest_gate_results": "gates", "run_gates": "gates",
    "is_tagger_metrics": "gates",
    "set_gate_thresholds": "gates", "show_gates": "gates",
    "ALLOWED_MOVES": "versions", "ModelVersion": "versions", "ProductionHistory": "versions",
    "ProductionPeriod": "versions", "Stage": "versions", "StageTransition": "versions",
    "count_model_versions": "versions", "find_model_versions": "versions", "get_model_version": "versions",
    "list_model_versions": "versions", "production_from_history": "versions", "production_periods": "versions",
    "production_timeline": "versions", "production_version_at": "versions", "project_of_model_name": "versions",
    "project_of_model_version": "versions", "register_model_version": "versions", "show_model_version": "versions",
    "show_production": "versions", "show_stage_history": "versions", "stage_history": "versions",
    "transition_stage": "versions", "retire_replaced_versions": "versions",
    "SERVING_VERSIONS_HOOK": "hooks", "validate_model_name": "versions",
}

# Literal, so type checkers and linters see the exports; tests/test_layers.py keeps it equal to _EXPORTS.
__all__ = [
    "ALLOWED_MOVES",
    "CardFacts",
    "DEPLOYMENT_TESTS_HOOK",
    "GateOutcome",
    "GateReport",
    "GateResult",
    "GateThresholds",
    "LATEST_EXPORT_HOOK",
    "ModelEvaluation",
    "ModelVersion",
    "ProductionHistory",
    "ProductionPeriod",
    "SERVING_VERSIONS_HOOK",
    "Stage",
    "StageTransition",
    "UNCHANGED",
    "collect_card_facts",
    "count_model_versions",
    "evaluate_gates",
    "evaluate_model_version",
    "evaluate_release_gates",
    "find_model_versions",
    "flat_slices",
    "get_gate_thresholds",
    "get_model_version",
    "is_tagger_metrics",
    "latest_gate_results",
    "list_model_evaluations",
    "list_model_versions",
    "model_card",
    "production_from_history",
    "production_periods",
    "production_timeline",
    "production_version_at",
    "project_of_model_name",
    "project_of_model_version",
    "read_labelled_file",
    "register_model_version",
    "render_card_html",
    "render_model_card",
    "retire_replaced_versions",
    "run_gates",
    "set_gate_thresholds",
    "show_gates",
    "show_model_version",
    "show_production",
    "show_stage_history",
    "stage_history",
    "transition_stage",
    "validate_model_name",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
