"""Chainkeeper registry stage: model versions and their stage history."""

from chainkeeper.registry.versions import (
    ALLOWED_MOVES,
    ModelVersion,
    ProductionPeriod,
    Stage,
    StageTransition,
    count_model_versions,
    get_model_version,
    list_model_versions,
    production_from_history,
    production_periods,
    production_timeline,
    production_version_at,
    register_model_version,
    stage_history,
    transition_stage,
    validate_model_name,
)

__all__ = [
    "ALLOWED_MOVES",
    "ModelVersion",
    "ProductionPeriod",
    "Stage",
    "StageTransition",
    "count_model_versions",
    "get_model_version",
    "list_model_versions",
    "production_from_history",
    "production_periods",
    "production_timeline",
    "production_version_at",
    "register_model_version",
    "stage_history",
    "transition_stage",
    "validate_model_name",
]
