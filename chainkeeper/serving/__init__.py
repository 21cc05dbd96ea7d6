"""Chainkeeper serving stage: export, deployments, rollout, API keys and the inference runtime.

One public surface: every name a shell or another stage needs is re-exported here and
loaded on first use (PEP 562). The schema imports ``chainkeeper.serving.tables``, which
runs this file: loading nothing here keeps that import light, and the runtime (which
imports PyTorch) loads only when a caller first names ``Predictor``, ``PredictorCache`` …

- deploy: ``deploy_model_version`` (run by the ``deployment.create`` gate), ``find_deployments``,
  ``show_deployment``, ``project_of_deployment``;
- serve: ``serve_predictions`` / ``aserve_predictions`` (answers go to a ``PredictionSink`` or
  the ``LOG_PREDICTIONS_HOOK``), ``authorize_prediction``, ``PredictorCache``;
- roll out: ``start_canary``, ``start_shadow``, ``promote_rollout``, ``rollback_deployment``,
  ``rollout_status``;
- API keys: ``create_deployment_key``, ``list_deployment_keys``, ``revoke_deployment_key``,
  ``authenticate_deployment_key``;
- export: ``request_export`` (a job: ``run_export_job``), ``latest_export``;
- several processes: ``ProcessGroup``, ``share_invalidations``, ``SharedRateLimiter``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.serving.caching import (
        TtlCache,
        share_invalidations,
    )
    from chainkeeper.serving.deployment_tests import run_deployment_tests
    from chainkeeper.serving.deployments import (
        Deployment,
        DeploymentState,
        PredictionSink,
        ResolvedRoute,
        ServedPrediction,
        ServedPredictions,
        ShadowPrediction,
        aserve_predictions,
        authorize_prediction,
        cached_route,
        count_deployments,
        deploy_model_version,
        find_deployments,
        get_deployment,
        get_deployment_by_name,
        list_deployments,
        list_shadow_predictions,
        preload_deployments,
        project_of_deployment,
        resolve_route,
        serve_predictions,
        show_deployment,
        validate_deployment_name,
        wait_for_shadows,
    )
    from chainkeeper.serving.export import (
        DEFAULT_MAX_DELTA_POINTS,
        ENGINES,
        ExportedForm,
        ExportResult,
        check_model_files,
        latest_export,
        model_task,
        request_export,
        run_export_job,
    )
    from chainkeeper.serving.hooks import LOG_PREDICTIONS_HOOK
    from chainkeeper.serving.keys import (
        KEY_PREFIX,
        MAX_BURST,
        MAX_KEY_LIFETIME,
        MAX_RATE_PER_S,
        SCOPES,
        DeploymentKey,
        IssuedKey,
        authenticate_deployment_key,
        cached_deployment_key,
        create_deployment_key,
        list_deployment_keys,
        parse_rate,
        revoke_deployment_key,
    )
    from chainkeeper.serving.limits import (
        PayloadTooLarge,
        RateLimiter,
        SharedRateLimiter,
        check_body_size,
        check_content_type,
        check_texts,
    )
    from chainkeeper.serving.processes import (
        GROUP_ENV,
        METRICS_ENV,
        ProcessGroup,
        SharedStamp,
    )
    from chainkeeper.serving.rollout import (
        RolloutStatus,
        Route,
        RouteMode,
        current_route,
        promote_rollout,
        rollback_deployment,
        rollout_status,
        serving_versions,
        start_canary,
        start_shadow,
        version_ref,
    )
    from chainkeeper.serving.runtime import (
        ENGINE_CHOICES,
        MAX_TEXT_CHARS,
        MAX_TEXTS_PER_CALL,
        TAGGER_TASK,
        Prediction,
        Predictor,
        PredictorCache,
        deployment_readiness,
        load_predictor,
        predictions_from_probabilities,
        validate_texts,
    )
    from chainkeeper.serving.spans import (
        NO_ENTITY,
        Entity,
        decode_entities,
        entity_types,
        summarize_entities,
        validate_spans,
    )
    from chainkeeper.serving.tagging import TaggerPredictor

_EXPORTS = {
    "TtlCache": "caching", "share_invalidations": "caching",
    "Deployment": "deployments", "DeploymentState": "deployments", "LOG_PREDICTIONS_HOOK": "hooks",
    "PredictionSink": "deployments", "ResolvedRoute": "deployments", "ServedPrediction": "deployments",
    "ServedPredictions": "deployments", "ShadowPrediction": "deployments", "aserve_predictions": "deployments",
    "authorize_prediction": "deployments", "cached_route": "deployments", "count_deployments": "deployments",
    "deploy_model_version": "deployments", "find_deployments": "deployments", "get_deployment": "deployments",
    "get_deployment_by_name": "deployments", "list_deployments": "deployments",
    "list_shadow_predictions": "deployments", "preload_deployments": "deployments",
    "project_of_deployment": "deployments", "resolve_route": "deployments", "serve_predictions": "deployments",
    "show_deployment": "deployments", "validate_deployment_name": "deployments", "wait_for_shadows": "deployments",
    "DEFAULT_MAX_DELTA_POINTS": "export", "ENGINES": "export", "ExportResult": "export", "ExportedForm": "export",
    "check_model_files": "export", "latest_export": "export", "request_export": "export", "run_export_job": "export",
    "DeploymentKey": "keys", "IssuedKey": "keys", "KEY_PREFIX": "keys", "SCOPES": "keys",
    "authenticate_deployment_key": "keys", "cached_deployment_key": "keys", "create_deployment_key": "keys",
    "list_deployment_keys": "keys", "parse_rate": "keys", "revoke_deployment_key": "keys", "MAX_BURST": "keys",
    "MAX_KEY_LIFETIME": "keys", "MAX_RATE_PER_S": "keys",
    "PayloadTooLarge": "limits", "RateLimiter": "limits", "SharedRateLimiter": "limits", "check_body_size": "limits",
    "check_content_type": "limits", "check_texts": "limits",
    "GROUP_ENV": "processes", "METRICS_ENV": "processes", "ProcessGroup": "processes", "SharedStamp": "processes",
    "RolloutStatus": "rollout", "Route": "rollout", "RouteMode": "rollout", "current_route": "rollout",
    "promote_rollout": "rollout", "rollback_deployment": "rollout", "rollout_status": "rollout",
    "serving_versions": "rollout",
    "start_canary": "rollout", "start_shadow": "rollout",
    "ENGINE_CHOICES": "runtime", "TAGGER_TASK": "runtime", "MAX_TEXTS_PER_CALL": "runtime",
    "MAX_TEXT_CHARS": "runtime",
    "Prediction": "runtime", "Predictor": "runtime", "PredictorCache": "runtime", "deployment_readiness": "runtime",
    "load_predictor": "runtime", "validate_texts": "runtime",
    "predictions_from_probabilities": "runtime",
    "run_deployment_tests": "deployment_tests",
    "version_ref": "rollout",
    "model_task": "export",
    "Entity": "spans", "NO_ENTITY": "spans", "decode_entities": "spans", "entity_types": "spans",
    "summarize_entities": "spans", "validate_spans": "spans",
    "TaggerPredictor": "tagging",
}

# Literal, so type checkers and linters see the exports; tests/test_layers.py keeps it equal to _EXPORTS.
__all__ = [
    "DEFAULT_MAX_DELTA_POINTS",
    "Deployment",
    "DeploymentKey",
    "DeploymentState",
    "ENGINES",
    "ENGINE_CHOICES",
    "Entity",
    "ExportResult",
    "ExportedForm",
    "GROUP_ENV",
    "IssuedKey",
    "KEY_PREFIX",
    "MAX_BURST",
    "MAX_KEY_LIFETIME",
    "MAX_RATE_PER_S",
    "LOG_PREDICTIONS_HOOK",
    "MAX_TEXTS_PER_CALL",
    "TAGGER_TASK",
    "MAX_TEXT_CHARS",
    "METRICS_ENV",
    "NO_ENTITY",
    "PayloadTooLarge",
    "Prediction",
    "PredictionSink",
    "Predictor",
    "PredictorCache",
    "ProcessGroup",
    "RateLimiter",
    "ResolvedRoute",
    "RolloutStatus",
    "Route",
    "RouteMode",
    "SCOPES",
    "ServedPrediction",
    "ServedPredictions",
    "ShadowPrediction",
    "SharedRateLimiter",
    "SharedStamp",
    "TaggerPredictor",
    "TtlCache",
    "aserve_predictions",
    "authenticate_deployment_key",
    "authorize_prediction",
    "cached_deployment_key",
    "cached_route",
    "check_body_size",
    "check_content_type",
    "check_model_files",
    "check_texts",
    "count_deployments",
    "create_deployment_key",
    "current_route",
    "decode_entities",
    "deploy_model_version",
    "deployment_readiness",
    "entity_types",
    "find_deployments",
    "get_deployment",
    "get_deployment_by_name",
    "latest_export",
    "list_deployment_keys",
    "list_deployments",
    "list_shadow_predictions",
    "load_predictor",
    "model_task",
    "parse_rate",
    "predictions_from_probabilities",
    "preload_deployments",
    "project_of_deployment",
    "promote_rollout",
    "request_export",
    "resolve_route",
    "revoke_deployment_key",
    "rollback_deployment",
    "rollout_status",
    "run_deployment_tests",
    "run_export_job",
    "serve_predictions",
    "serving_versions",
    "share_invalidations",
    "show_deployment",
    "start_canary",
    "start_shadow",
    "summarize_entities",
    "validate_deployment_name",
    "validate_spans",
    "validate_texts",
    "version_ref",
    "wait_for_shadows",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
