"""The hooks annotation asks through, by name: a module of constants only, so the chain
layer registers them without loading annotation's services."""

__all__ = ["PRELABEL_MODEL_HOOK"]

# Registered by the chain layer: hook(ctx, model_version_id) -> PrelabelModel.
PRELABEL_MODEL_HOOK = "annotation.prelabel_model"
