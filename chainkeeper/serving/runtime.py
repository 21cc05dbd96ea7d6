"""The inference runtime: a model version loaded into memory, answering texts.

``load_predictor`` materialises the version's folder from the artefact store into
``<home>/cache/models/<digest>`` (files already there with the right hash are reused,
so a restart loads from local disk) and loads the ``TextClassifier``. A ``Predictor``
is safe to share between request threads; a ``PredictorCache`` holds several, keyed by
model version id, so every deployment of a process is served from one place.

Engines: a version with a passing ONNX export (``serving.export``) is served by ONNX
Runtime, the int8 form first (onnx-int8 > onnx > torch); otherwise by PyTorch. The cache
wraps each predictor in a micro-batcher (``serving.batching``), so concurrent requests
share model calls, and warms it up with one inference before it counts as ready.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from chainkeeper.core.artifacts import atomic_write
from chainkeeper.core.errors import ChainkeeperError, Conflict, InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.registry import ModelVersion, get_model_version
from chainkeeper.serving.access import authorize_deployment
from chainkeeper.serving.deployments import get_deployment_by_name
from chainkeeper.serving.onnx_runtime import logsumexp
from chainkeeper.training import META_FILE, TextClassifier

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chainkeeper.core.context import Context

__all__ = [
    "MAX_TEXT_CHARS",
    "MAX_TEXTS_PER_CALL",
    "TOP_K",
    "Prediction",
    "Predictor",
    "PredictorCache",
    "load_predictor",
    "predictions_from_probabilities",
    "deployment_readiness",
    "validate_texts",
]

_log = logging.getLogger(__name__)

# Longer texts are refused rather than silently cut: the model reads only its first
# max_length tokens, and a 10,000-character text is almost always a mistake.
MAX_TEXT_CHARS = 10_000
MAX_TEXTS_PER_CALL = 512
# How many labels each prediction lists with their probabilities.
TOP_K = 5
# A model folder needs one of these: without them transformers silently builds an empty
# vocabulary and every word becomes [UNK] (seen with transformers 5).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
# What ``chainkeeper.json`` says of a token tagger (``serving.tagging`` serves it).
TAGGER_TASK = "token-classification"
# A version that failed to load is not retried for this long: a broken model folder
# costs one load attempt per interval, not one per request.
FAILED_LOAD_RETRY_S = 10.0


@dataclass(frozen=True)
class Prediction:
    """The answer for one text: the best label, its probability and the top labels.

    A classifier's answer also carries ``log_partition``, the logsumexp of its raw
    logits (temperature 1): the scores are probabilities, from which it cannot be
    recovered, and out-of-scope scoring needs it (the free energy is its negative).
    None where the engine gave no logits.

    A tagger's answer (``serving.tagging``) also lists its ``entities`` (type, start,
    end, text, score), with ``label`` the entity types found ("O": none), ``score`` the
    mean word probability and ``scores`` the best span score per type; its
    ``log_partition`` is None.
    """

    label: str
    score: float
    scores: dict[str, float]
    entities: list[dict[str, Any]] | None = None
    log_partition: float | None = None


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


def predictions_from_probabilities(probs: Any, labels: list[str], log_partition: Any = None) -> list[Prediction]:
    """Turn a (n, num_labels) probability array (torch or numpy) into predictions (pure).

    Args:
        log_partition: optional (n,) logsumexp of each row's logits, carried as each
            prediction's ``log_partition`` (None: they carry None).

    Raises:
        InvalidInput: ``log_partition`` does not hold one value per row.
    """
    import numpy as np

    probs = np.asarray(probs, dtype=np.float32)
    k = min(TOP_K, probs.shape[1])
    top_i = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # best first
    lse: list[float | None] = [None] * len(probs)
    if log_partition is not None:
        values = np.asarray(log_partition, dtype=np.float64).reshape(-1)
        if len(values) != len(probs):
            raise InvalidInput(f"{len(values)} log-partition values for {len(probs)} rows of probabilities.",
                               hint="Pass one logsumexp per text.")
        lse = [float(v) for v in values]
    out = []
    for row, idx, z in zip(probs, top_i, lse, strict=True):
        scores = {labels[i]: round(float(row[i]), 6) for i in idx}
        out.append(Prediction(label=labels[idx[0]], score=float(row[idx[0]]), scores=scores, log_partition=z))
    return out


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
        self.engine = "torch"

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
            logits = self.model.predict_logits(self.tokenizer, texts)  # (n, num_labels)
            probs = self.model.probabilities(logits)
        # numpy's logsumexp: about half of torch.logsumexp's time on a (32, 77) batch (~30 µs).
        return predictions_from_probabilities(probs.numpy(), self.model.meta.labels, logsumexp(logits.numpy()))


ENGINE_CHOICES = ("auto", "onnx-int8", "onnx", "torch")


def load_predictor(ctx: Context, model_version: ModelVersion, *, engine: str = "auto") -> Any:
    """Load a model version from the artefact store (through the local cache).

    Args:
        model_version: the version to load; its ``model_artifact`` is the folder's
            manifest digest.
        engine: "auto" serves the best passing export of exactly these model files
            (onnx-int8 > onnx) and PyTorch without one; or name an engine.

    Returns:
        A ready ``Predictor`` or ``OnnxPredictor`` (its ``engine`` says which); for a
        token tagger a ``tagging.TaggerPredictor`` on the chosen engine.

    Raises:
        ArtifactError: the artefact is missing or not a folder. ArtifactCorrupted: a
            file does not match its hash. InvalidInput: the folder holds no classifier,
            an unknown engine, or a named ONNX engine the version was not exported to.
    """
    if engine not in ENGINE_CHOICES:
        raise InvalidInput(f"Unknown engine {engine!r}.", hint=f"Use one of {', '.join(ENGINE_CHOICES)}.")
    digest = model_version.model_artifact
    folder = ctx.artifacts.get_tree(digest, ctx.settings.home / "cache" / "models" / digest)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise Conflict(f"Model version {model_version.id} cannot be served: its model folder has no tokenizer "
                       f"(none of {', '.join(TOKENIZER_FILES)}).",
                       hint="Save the model together with its tokenizer (TextClassifier.save(folder, tokenizer)), "
                       "register that as a new version and deploy it.")
    if engine != "torch":
        onnx = _load_onnx(ctx, model_version, folder, engine)
        if onnx is not None:
            return onnx
    if ctx.settings.torch_threads:
        torch.set_num_threads(ctx.settings.torch_threads)
    if _task_of(folder) == TAGGER_TASK:
        return _torch_tagger(folder, model_version)
    model, tokenizer = TextClassifier.load(folder)
    return Predictor(model, tokenizer, model_version_id=model_version.id, artifact=digest)


def _task_of(folder: Any) -> str:
    """What the model folder's ``chainkeeper.json`` says it does (classifiers before tasks existed say nothing)."""
    import json

    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    return str(meta.get("task") or "sequence-classification")


def _torch_tagger(folder: Any, model_version: ModelVersion) -> Any:
    from chainkeeper.serving._training import TokenTagger
    from chainkeeper.serving.tagging import TaggerPredictor, torch_logits

    model, tokenizer = TokenTagger.load(folder)
    return TaggerPredictor(torch_logits(model), tokenizer, model.labels, max_length=model.meta.max_length,
                           model_version_id=model_version.id, artifact=model_version.model_artifact, engine="torch",
                           casing=model.casing is not None)


def _load_onnx(ctx: Context, model_version: ModelVersion, folder: Any, engine: str) -> Any:
    """The ONNX predictor for ``engine`` ("auto": the best passing form), or None for PyTorch."""
    import json

    from transformers import AutoTokenizer

    from chainkeeper.serving.export import latest_export
    from chainkeeper.serving.onnx_runtime import (
        OnnxPredictor,
        make_session,
        serving_threads,
    )

    export = latest_export(ctx, model_version.id, model_version.model_artifact)
    chosen = (export.best_engine() if export is not None else "torch") if engine == "auto" else engine
    form = export.form(chosen) if export is not None else None
    if form is None:
        if engine == "auto":
            return None
        raise InvalidInput(f"Model version {model_version.id} has no {engine} export.",
                           hint=f"Export it first (job kind 'export', model_version_id={model_version.id}).")
    path = ctx.settings.home / "cache" / "onnx" / f"{form.artifact}.onnx"
    if not path.is_file():  # several server processes may write it at once: each its own temporary file
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, ctx.artifacts.get_bytes(form.artifact))  # verified against its digest
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    _, threads = serving_threads(ctx.settings.torch_threads, ctx.settings.serve_model_workers)
    if meta.get("task") == TAGGER_TASK:
        from chainkeeper.serving.tagging import TaggerPredictor, onnx_logits

        return TaggerPredictor(onnx_logits(make_session(path, threads=threads)), tokenizer, meta["labels"],
                               max_length=int(meta.get("max_length", 128)), model_version_id=model_version.id,
                               artifact=model_version.model_artifact, engine=chosen, casing=bool(meta.get("casing")))
    return OnnxPredictor(make_session(path, threads=threads), tokenizer, meta["labels"],
                         max_length=int(meta.get("max_length", 64)), model_version_id=model_version.id,
                         artifact=model_version.model_artifact, engine=chosen)


class PredictorCache:
    """Loaded predictors by model version id, least recently used evicted past ``max_loaded``.

    Loading takes a lock per version, so concurrent first requests load a model once.
    Each predictor is warmed up with one inference, then wrapped in a micro-batcher
    (``batching.BatchedPredictor``) unless ``batching`` is False; only then is its
    version ``ready``.

    Args:
        engine: passed to ``load_predictor`` ("auto": the best passing export).
        max_batch_size, max_wait_ms: the micro-batching window (default the settings
            ``serve_max_batch_size`` and ``serve_max_wait_ms``).
    """

    def __init__(self, ctx: Context, *, max_loaded: int = 8, engine: str = "auto", batching: bool = True,
                 max_batch_size: int | None = None, max_wait_ms: float | None = None) -> None:
        self.ctx = ctx
        self.max_loaded = max_loaded
        self.engine = engine
        self.batching = batching
        self.max_batch_size = max_batch_size or ctx.settings.serve_max_batch_size
        self.max_wait_ms = ctx.settings.serve_max_wait_ms if max_wait_ms is None else max_wait_ms
        self._loaded: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        # version id -> (when, the error class, message, hint) of its last failed load
        self._failed: dict[int, tuple[float, type[ChainkeeperError], str, str | None]] = {}

    def get(self, model_version: ModelVersion) -> Any:
        """The predictor of a version, loading (and warming up) it on first use.

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
                failed = self._failed.get(model_version.id)
            if failed is not None and time.monotonic() - failed[0] < FAILED_LOAD_RETRY_S:
                raise failed[1](failed[2], hint=failed[3])
            try:
                predictor = load_predictor(self.ctx, model_version, engine=self.engine)
            except ChainkeeperError as error:
                with self._lock:
                    self._failed[model_version.id] = (time.monotonic(), type(error), error.message, error.hint)
                    self._loading.pop(model_version.id, None)  # so a later preload tries again
                raise
            # The first call allocates buffers and plans kernels: pay it here, not in a request.
            predictor.predict(["warm-up"])
            _settle_heap()
            if self.batching:
                from chainkeeper.serving.batching import BatchedPredictor
                from chainkeeper.serving.onnx_runtime import serving_threads

                # ONNX sessions take concurrent calls, each on its share of the cores; a
                # PyTorch model uses every core per call (torch threads are per process).
                workers = (serving_threads(self.ctx.settings.torch_threads, self.ctx.settings.serve_model_workers)[0]
                           if str(getattr(predictor, "engine", "")).startswith("onnx") else 1)
                predictor = BatchedPredictor(predictor, max_batch_size=self.max_batch_size,
                                             max_wait_ms=self.max_wait_ms, workers=workers)
            evicted = []
            with self._lock:
                self._loaded[model_version.id] = predictor
                self._loading.pop(model_version.id, None)
                while len(self._loaded) > self.max_loaded:
                    evicted.append(self._loaded.popitem(last=False)[1])
            for old in evicted:
                _close(old)
            return predictor

    def loaded_predictor(self, model_version_id: int) -> Any:
        """The predictor of a version if it is loaded and warm, else None (never loads, never blocks)."""
        with self._lock:
            predictor = self._loaded.get(model_version_id)
            if predictor is not None:
                self._loaded.move_to_end(model_version_id)
            return predictor

    def preload(self, model_version: ModelVersion) -> None:
        """Start loading and warming a version on a background thread (no-op if loaded or loading)."""
        with self._lock:
            if model_version.id in self._loaded or model_version.id in self._loading:
                return

        def load() -> None:
            try:
                self.get(model_version)
            except Exception:  # noqa: BLE001 - readiness stays false; the next request reports the error
                _log.exception("preloading model version %s failed", model_version.id)

        threading.Thread(target=load, name=f"preload-v{model_version.id}", daemon=True).start()

    def ready(self, model_version_id: int) -> bool:
        """Whether a version is loaded and warmed up (a request will not wait for a load)."""
        with self._lock:
            return model_version_id in self._loaded

    def stats(self) -> dict[int, dict[str, Any]]:
        """Per loaded version: its engine and, when batched, queue depth and batch sizes."""
        with self._lock:
            loaded = dict(self._loaded)
        out: dict[int, dict[str, Any]] = {}
        for version_id, predictor in loaded.items():
            entry: dict[str, Any] = {"engine": predictor.engine}
            batcher = getattr(predictor, "batcher", None)
            if batcher is not None:
                st = batcher.stats()
                entry.update(requests=st.requests, texts=st.texts, batches=st.batches, queue_depth=st.queue_depth,
                             max_queue_depth=st.max_queue_depth, mean_batch_size=round(st.mean_batch_size, 2),
                             batch_sizes=st.batch_sizes)
            out[version_id] = entry
        return out

    def loaded(self) -> list[int]:
        """Ids of the versions in memory, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def evict(self, model_version_id: int) -> bool:
        """Drop a version from memory; True if it was loaded."""
        with self._lock:
            predictor = self._loaded.pop(model_version_id, None)
        if predictor is None:
            return False
        _close(predictor)
        gc.unfreeze()  # what the dropped model leaves in reference cycles can be collected again
        return True

    def close(self) -> None:
        """Stop every batcher (for a server shutting down)."""
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), OrderedDict()
        for predictor in loaded:
            _close(predictor)
        gc.unfreeze()


def deployment_readiness(ctx: Context, predictors: PredictorCache, name: str, *, actor: Actor) -> dict[str, Any]:
    """Whether deployment ``name`` can answer without a load: its version is loaded and warm.

    A version not loaded yet starts loading in the background, so polling this until
    ``ready`` is true is how a rollout waits for a warm model.

    Args:
        actor: who asks (``deployment.read`` in the deployment's project).

    Raises:
        Forbidden: the actor may not read it. NotFound: no such deployment.
    """
    authorize_deployment(ctx.db, actor, "deployment.read", name)
    deployment = get_deployment_by_name(ctx.db, name)
    ready = predictors.ready(deployment.model_version_id)
    if not ready:
        predictors.preload(get_model_version(ctx.db, deployment.model_version_id))
    stats = predictors.stats().get(deployment.model_version_id, {})
    return {"deployment": name, "model_version_id": deployment.model_version_id, "state": deployment.state,
            "ready": ready, "engine": stats.get("engine"), "batching": stats}


def _settle_heap() -> None:
    """Keep the cyclic garbage collector's full passes off what a loaded model holds.

    A loaded model with its tokenizer and the libraries behind them is over half a
    million objects. A full (generation 2) collection walks all of them while every
    thread waits: about 300 ms on this machine, every few seconds under load, which
    was the whole p99 of the serving benchmark (p95 96 ms, p99 319 ms). They live as
    long as the model, so ``gc.freeze`` moves everything alive now out of the
    collector's sight (freed memory is still freed: only cycle detection skips it);
    ``evict`` unfreezes, so cycles left by a dropped model are found again.
    """
    gc.freeze()


def _close(predictor: Any) -> None:
    close = getattr(predictor, "close", None)
    if close is not None:
        close()
