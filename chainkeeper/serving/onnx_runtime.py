"""The fast inference engine: an exported classifier run by ONNX Runtime.

Three things make it fast on a few CPU cores, each measured (docs/serving.md):

* one ONNX Runtime session per model with ``intra_op`` threads = the cores, ``inter_op``
  1 and sequential execution: a BERT-sized graph has no parallel branches worth a
  second pool, and two pools fight over the same cores;
* tokenisation by the Rust tokenizer on its own copy (``encode_batch`` releases the GIL),
  without padding; padding is added per group, below;
* length-grouped batches (``length_groups``): texts are sorted by token count and cut
  into groups whose padding waste is bounded, because a batch of 32 padded to 64 tokens
  is slower per text than batch 1 (self-attention pays for the padding).

``OnnxPredictor`` answers like ``runtime.Predictor`` (same ``predict`` contract) so the
runtime can choose either per model version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chainkeeper.core.errors import InvalidInput

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

    from chainkeeper.serving.runtime import Prediction

__all__ = [
    "OnnxPredictor",
    "length_groups",
    "logsumexp",
    "make_session",
    "onnx_classifier_logits",
    "onnx_probabilities",
    "rust_tokenizer",
    "serving_threads",
    "softmax",
]

# A group may carry at most this share of padding tokens on top of its real tokens...
MAX_PADDING_SHARE = 0.25
# ...except a few tokens of slack, so near-equal short texts still batch together.
PADDING_SLACK_TOKENS = 4
DEFAULT_MAX_GROUP = 64


def length_groups(lengths: Sequence[int], *, max_group: int = DEFAULT_MAX_GROUP,
                  max_padding_share: float = MAX_PADDING_SHARE, slack: int = PADDING_SLACK_TOKENS) -> list[list[int]]:
    """Cut items into batches of similar length (pure).

    Items are sorted by length; a group grows while padding everything to its longest
    item costs at most ``max_padding_share`` of its real tokens plus ``slack`` tokens per
    item, and it holds at most ``max_group`` items.

    Args:
        lengths: the token count of each item.
        max_group: the largest batch.
        max_padding_share: the padding allowed, as a share of the real tokens.
        slack: padding tokens per item always allowed.

    Returns:
        Groups of indices into ``lengths``; every index appears once; each group's
        indices are in ascending length.

    Raises:
        InvalidInput: ``max_group`` below 1 or a negative length.
    """
    if max_group < 1:
        raise InvalidInput(f"max_group is {max_group}; it must be at least 1.", hint="Use a batch size of 1 or more.")
    if any(n < 0 for n in lengths):
        raise InvalidInput("A length is negative.", hint="Pass token counts (0 or more).")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        # Sorted ascending: the new item is the longest, so the group pads to n.
        padded = n * (len(current) + 1)
        allowed = (real + n) * (1 + max_padding_share) + slack * (len(current) + 1)
        if current and (len(current) >= max_group or padded > allowed):
            groups.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        groups.append(current)
    return groups


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a (n, k) array, computed stably in float32 (pure)."""
    if not logits.size:  # no rows: nothing to normalise
        return logits.astype(np.float32)
    shifted = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-partition log(sum(exp(logits))) of a (n, k) array, shape (n,), computed
    stably in float64 (pure)."""
    x = logits.astype(np.float64)
    if not x.size:
        return np.full(x.shape[0], -np.inf)  # no rows, or no labels: the log of an empty sum
    top = x.max(axis=1)
    return top + np.log(np.exp(x - top[:, None]).sum(axis=1))  # type: ignore[no-any-return]


def default_threads() -> int:
    """The cores this process may use (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def serving_threads(cores: int | None, workers: int | None) -> tuple[int, int]:
    """Model workers and intra-op threads per session call for a server (pure).

    Several single-threaded calls beat one call spread over the cores for the small
    batches a server sees (two cores, batches of 16: 922 texts/s against 616), so the
    default is one worker per core, each with one thread.

    Args:
        cores: the cores to use (None: ``default_threads()``).
        workers: the model workers asked for (None: one per core).
    """
    cores = cores or default_threads()
    workers = workers or cores
    return workers, max(1, cores // workers)


def make_session(path: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session fitted to the cores.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (None: the cores this process may use).

    Returns:
        An ``onnxruntime.InferenceSession``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads spin by default, burning the cores the HTTP threads and the
    # tokenizer need between batches; a server shares its cores, so they sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are noise for users
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def rust_tokenizer(tokenizer: PreTrainedTokenizerBase, max_length: int) -> Tokenizer:
    """A private copy of a fast tokenizer's Rust core: truncating at ``max_length``, not padding.

    A copy, because truncation settings live on the object and the HF wrapper shares it.

    Raises:
        InvalidInput: the tokenizer is a slow (Python) one.
    """
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InvalidInput("The model's tokenizer is not a fast tokenizer; ONNX serving needs one.",
                           hint="Save the model with a tokenizer.json (a fast tokenizer).")
    rust = Tokenizer.from_str(backend.to_str())
    rust.no_padding()
    rust.enable_truncation(max_length)
    return rust


def onnx_classifier_logits(session: Any, rust: Tokenizer, texts: Sequence[str], *, pad_id: int = 0,
                           max_group: int = DEFAULT_MAX_GROUP) -> np.ndarray:
    """Raw logits (float32) of shape (len(texts), num_labels), in the input order.

    Args:
        session: an ONNX Runtime session of an exported classifier (its output ``logits``).
        rust: its tokenizer (``rust_tokenizer``).
        texts: the texts.
        pad_id: the tokenizer's padding id.
        max_group: the largest batch sent to the session.
    """
    encodings = rust.encode_batch(list(texts))
    ids = [e.ids for e in encodings]
    out: np.ndarray | None = None
    for group in length_groups([len(x) for x in ids], max_group=max_group):
        width = max(len(ids[i]) for i in group)
        input_ids = np.full((len(group), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(group), width), dtype=np.int64)
        for row, i in enumerate(group):
            input_ids[row, :len(ids[i])] = ids[i]
            mask[row, :len(ids[i])] = 1
        (logits,) = session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})
        if out is None:
            out = np.empty((len(texts), logits.shape[1]), dtype=np.float32)
        out[group] = logits
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def onnx_probabilities(session: Any, rust: Tokenizer, texts: Sequence[str], *, pad_id: int = 0,
                       max_group: int = DEFAULT_MAX_GROUP) -> np.ndarray:
    """Class probabilities of shape (len(texts), num_labels), in the input order: the softmax
    of ``onnx_classifier_logits`` (same arguments)."""
    return softmax(onnx_classifier_logits(session, rust, texts, pad_id=pad_id, max_group=max_group))


class OnnxPredictor:
    """One model version served by ONNX Runtime; same ``predict`` as ``runtime.Predictor``.

    Calls may run at once from several threads (an ONNX Runtime session and a Rust
    tokenizer are safe to share): serving runs one call per model worker, each session
    call on ``intra_op_num_threads`` of the cores (``serving_threads``).

    Every export's graph outputs raw ``logits`` (``export.export_onnx``), so answers carry
    their ``log_partition`` whatever export served them.
    """

    def __init__(self, session: Any, tokenizer: PreTrainedTokenizerBase, labels: Sequence[str], *,
                 max_length: int, model_version_id: int, artifact: str, engine: str) -> None:
        self.session = session
        self._rust = rust_tokenizer(tokenizer, max_length)
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._labels = list(labels)
        self.model_version_id = model_version_id
        self.artifact = artifact
        self.engine = engine

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits (len(texts), num_labels), without validation."""
        return onnx_classifier_logits(self.session, self._rust, texts, pad_id=self._pad_id)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities (len(texts), num_labels), without validation."""
        return softmax(self.logits(texts))

    def predict(self, texts: list[str]) -> list[Prediction]:
        """Label each text (see ``runtime.Predictor.predict``).

        Raises:
            InvalidInput: see ``runtime.validate_texts``.
        """
        from chainkeeper.serving.runtime import (
            predictions_from_probabilities,
            validate_texts,
        )

        validate_texts(texts)
        logits = self.logits(texts)
        return predictions_from_probabilities(softmax(logits), self._labels, logsumexp(logits))
