"""The inference runtime: a model version loaded into memory, answering texts.

``load_predictor`` materialises the version's folder from the artefact store into
``<home>/cache/models/<digest>`` (files already there with the right hash are reused,
so a restart loads from local disk) and loads the ``TextClassifier``. A ``Predictor``
is safe to share between request threads; a ``PredictorCache`` holds several, keyed by
model version id, so every deployment of a process is served from one place.

Later issues add an ONNX backend and micro-batching behind the same ``predict``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.model import TextClassifier

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chainkeeper.core.context import Context
    from chainkeeper.registry.versions import ModelVersion

__all__ = [
    "MAX_TEXT_CHARS",
    "MAX_TEXTS_PER_CALL",
    "TOP_K",
    "Prediction",
    "Predictor",
    "PredictorCache",
    "load_predictor",
    "validate_texts",
]

# Longer texts are refused rather than silently cut: the model reads only its first
# max_length tokens, and a 10,000-character text is almost always a mistake.
MAX_TEXT_CHARS = 10_000
MAX_TEXTS_PER_CALL = 512
# How many labels each prediction lists with their probabilities.
TOP_K = 5


@dataclass(frozen=True)
class Prediction:
    """The answer for one text: the best label, its probability and the top labels."""

    label: str
    score: float
    scores: dict[str, float]


def validate_texts(texts: Any) -> list[str]:
    """Return ``texts`` if they can be served (pure).

    Raises:
        InvalidInput: not a non-empty list of non-blank strings of at most
            ``MAX_TEXT_CHARS`` characters, or more than ``MAX_TEXTS_PER_CALL`` of them.
    """
    if not isinstance(texts, list) or not texts:
        raise InvalidInput("There are no texts to predict.",
                           hint='Send {"text": "..."} or {"texts": ["...", "..."]} with at least one text.')
    if len(texts) > MAX_TEXTS_PER_CALL:
        raise InvalidInput(f"{len(texts):,} texts in one call; at most {MAX_TEXTS_PER_CALL} are allowed.",
                           hint=f"Send them in batches of up to {MAX_TEXTS_PER_CALL}.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(f"Text {i} is a {type(text).__name__}, not a string.",
                               hint="Send every text as a JSON string.")
        if not text.strip():
            raise InvalidInput(f"Text {i} is empty.", hint="Send text with at least one visible character.")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"Text {i} has {len(text):,} characters; at most {MAX_TEXT_CHARS:,} are allowed.",
                               hint="Shorten it or split it into several texts.")
    return texts


class Predictor:
    """One loaded model version. ``predict`` may be called from many threads at once."""

    def __init__(self, model: TextClassifier, tokenizer: PreTrainedTokenizerBase, *, model_version_id: int,
                 artifact: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_version_id = model_version_id
        self.artifact = artifact
        # Fast tokenizers are not re-entrant ("Already borrowed" from Rust under
        # concurrent calls) and torch already spreads one call over the cores, so calls
        # are serialised; micro-batching (a later issue) recovers throughput.
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return list(self.model.meta.labels)

    def predict(self, texts: list[str]) -> list[Prediction]:
        """Label each text.

        Args:
            texts: 1 to ``MAX_TEXTS_PER_CALL`` non-blank strings.

        Returns:
            One ``Prediction`` per text, in the input order.

        Raises:
            InvalidInput: see ``validate_texts``.
        """
        validate_texts(texts)
        with self._lock, torch.inference_mode():
            probs = self.model.predict_proba(self.tokenizer, texts)  # (n, num_labels)
        k = min(TOP_K, probs.shape[1])
        top_p, top_i = torch.topk(probs, k, dim=1)  # each (n, k), best first
        labels = self.model.meta.labels
        out = []
        for p_row, i_row in zip(top_p.tolist(), top_i.tolist(), strict=True):
            scores = {labels[i]: round(p, 6) for p, i in zip(p_row, i_row, strict=True)}
            out.append(Prediction(label=labels[i_row[0]], score=float(p_row[0]), scores=scores))
        return out


def load_predictor(ctx: Context, model_version: ModelVersion) -> Predictor:
    """Load a model version's classifier from the artefact store (through the local cache).

    Args:
        model_version: the version to load; its ``model_artifact`` is the folder's
            manifest digest.

    Returns:
        A ready ``Predictor``.

    Raises:
        ArtifactError: the artefact is missing or not a folder. ArtifactCorrupted: a
            file does not match its hash. InvalidInput: the folder holds no classifier.
    """
    digest = model_version.model_artifact
    folder = ctx.artifacts.get_tree(digest, ctx.settings.home / "cache" / "models" / digest)
    if ctx.settings.torch_threads:
        torch.set_num_threads(ctx.settings.torch_threads)
    model, tokenizer = TextClassifier.load(folder)
    return Predictor(model, tokenizer, model_version_id=model_version.id, artifact=digest)


class PredictorCache:
    """Loaded predictors by model version id, least recently used evicted past ``max_loaded``.

    Loading takes a lock per version, so concurrent first requests load a model once.
    """

    def __init__(self, ctx: Context, *, max_loaded: int = 8) -> None:
        self.ctx = ctx
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[int, Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    def get(self, model_version: ModelVersion) -> Predictor:
        """The predictor of a version, loading it on first use.

        Raises:
            The errors of ``load_predictor``.
        """
        with self._lock:
            predictor = self._loaded.get(model_version.id)
            if predictor is not None:
                self._loaded.move_to_end(model_version.id)
                return predictor
            loading = self._loading.setdefault(model_version.id, threading.Lock())
        with loading:
            with self._lock:
                if model_version.id in self._loaded:  # another thread loaded it meanwhile
                    return self._loaded[model_version.id]
            predictor = load_predictor(self.ctx, model_version)
            with self._lock:
                self._loaded[model_version.id] = predictor
                self._loading.pop(model_version.id, None)
                while len(self._loaded) > self.max_loaded:
                    self._loaded.popitem(last=False)
            return predictor

    def loaded(self) -> list[int]:
        """Ids of the versions in memory, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def evict(self, model_version_id: int) -> bool:
        """Drop a version from memory; True if it was loaded."""
        with self._lock:
            return self._loaded.pop(model_version_id, None) is not None
