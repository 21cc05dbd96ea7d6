"""The hooks the registry asks through, by name: a module of constants only, so the chain
layer registers them without loading the registry's services."""

__all__ = ["DEPLOYMENT_TESTS_HOOK", "LATEST_EXPORT_HOOK", "SERVING_VERSIONS_HOOK"]

# Runs the deployment tests on a version's export: hook(ctx, version: ModelVersion,
# thresholds: GateThresholds) -> list[GateOutcome].
DEPLOYMENT_TESTS_HOOK = "registry.deployment_tests"

# Serving's latest export: hook(ctx, model_version_id, model_artifact) -> the version's
# latest export of those files (``serving.ExportResult``) or None.
LATEST_EXPORT_HOOK = "registry.latest_export"

# hook(ctx, name) -> {model version id: [where it serves, e.g. "deployment support (canary
# 10 %)"]} for the versions of model ``name`` that a live route names.
SERVING_VERSIONS_HOOK = "registry.serving_versions"
