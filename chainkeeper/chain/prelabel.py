"""The model behind annotation's pre-labels: a registered model version, loaded by serving.

Annotation ranks and pre-labels items with a model (``annotation.prelabel``) but sits
below the registry and serving, so it asks through the ``annotation.prelabel_model`` hook;
``prelabel_model`` is what ``chain.wiring.build_wiring`` registers there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chainkeeper import registry, serving

if TYPE_CHECKING:
    import numpy as np

    from chainkeeper.core.context import Context
    from chainkeeper.serving import Prediction

__all__ = ["prelabel_model"]


def prelabel_model(ctx: Context, model_version_id: int) -> PrelabelPredictor:
    """The ``annotation.prelabel_model`` hook: a model version as pre-labelling uses it.

    Raises:
        NotFound: there is no such model version (at once; the weights load on first use).
    """
    return PrelabelPredictor(ctx, registry.get_model_version(ctx.db, model_version_id))


class PrelabelPredictor:
    """Class probabilities and suggestions of texts from one model version, in PyTorch
    (``annotation.prelabel.PrelabelModel``)."""

    def __init__(self, ctx: Context, model_version: Any) -> None:
        self._ctx = ctx
        self._version = model_version
        self._predictor: Any = None

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, list[Prediction]]:
        import torch

        if self._predictor is None:
            self._predictor = serving.load_predictor(self._ctx, self._version, engine="torch")
        with torch.inference_mode():
            probs = self._predictor.model.predict_proba(self._predictor.tokenizer, list(texts)).numpy()
        return probs, serving.predictions_from_probabilities(probs, self._predictor.labels)
