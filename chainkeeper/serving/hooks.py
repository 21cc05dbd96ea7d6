"""The hooks serving asks through, by name: a module of constants only, so the chain layer
registers them without loading serving's services (or torch)."""

__all__ = ["LOG_PREDICTIONS_HOOK"]

# Stores served predictions when no sink is given: hook(ctx, items) with one dict per
# answer (request_id, deployment_id, model_version_id, at, text, label, score, scores,
# latency_ms; a tagger's also entities). The monitoring stage registers it.
LOG_PREDICTIONS_HOOK = "serving.log_predictions"
