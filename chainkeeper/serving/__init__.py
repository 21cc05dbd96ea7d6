"""Chainkeeper serving stage: deployments, and the inference runtime.

The runtime (``chainkeeper.serving.runtime``: ``Predictor``, ``PredictorCache``,
``load_predictor``) is imported from its module: it imports PyTorch, which commands that
never serve should not pay for.
"""

from chainkeeper.serving.deployments import (
    Deployment,
    DeploymentState,
    ServedPrediction,
    ServedPredictions,
    aserve_predictions,
    count_deployments,
    deploy_model_version,
    get_deployment,
    get_deployment_by_name,
    list_deployments,
    resolve_route,
    serve_predictions,
    validate_deployment_name,
)

__all__ = [
    "Deployment",
    "DeploymentState",
    "ServedPrediction",
    "ServedPredictions",
    "aserve_predictions",
    "count_deployments",
    "deploy_model_version",
    "get_deployment",
    "get_deployment_by_name",
    "list_deployments",
    "resolve_route",
    "serve_predictions",
    "validate_deployment_name",
]
