"""The token-classification runtime: a tagger answering texts with entity spans.

One path for every engine: ``TaggerPredictor`` holds a *logits function* — the PyTorch
``TokenTagger`` (``torch_logits``) or its ONNX export (``onnx_logits``) — and does the
rest itself, so both engines cut, tag and decode a text the same way:

1. the fast tokenizer's Rust core (a private copy, no truncation, no padding) splits the
   text into words (its pre-tokenizer: whitespace and punctuation, each CJK character
   a word) and word pieces, with each piece's offsets into the *original* text;
2. words are packed into windows of at most ``max_length - 2`` pieces (``spans.windows``),
   each read as ``[CLS] pieces [SEP]``, so a long text is tagged to its end; with casing,
   each piece carries its word's shape (``word_case`` of the word's original characters);
3. windows of similar length are batched (``onnx_runtime.length_groups``), and each
   word's tag is read at its first piece, as in training;
4. ``spans.decode_entities`` turns word tags into entities with character offsets.

``tag_sentences`` runs steps 2-3 on sentences already split into words (a dataset's
test split), which is how the export compares engines on entity F1.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data import read_dataset_rows
from chainkeeper.serving._training import word_case
from chainkeeper.serving.onnx_runtime import length_groups, softmax
from chainkeeper.serving.spans import (
    NO_ENTITY,
    Entity,
    decode_entities,
    entity_types,
    summarize_entities,
    windows,
    word_offsets,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

    from chainkeeper.core.context import Context
    from chainkeeper.serving._training import TokenTagger
    from chainkeeper.serving.runtime import Prediction

__all__ = ["TASK", "LogitsFn", "TaggerPredictor", "onnx_logits", "read_tagged_split", "torch_logits"]

TASK = "token-classification"
# (input_ids, attention_mask, cases), each int64 of shape (b, t) -> logits (b, t, k).
LogitsFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def torch_logits(model: TokenTagger) -> LogitsFn:
    """A logits function over a PyTorch tagger; calls are serialised (torch uses every core per call)."""
    import torch

    model = model.eval()
    lock = threading.Lock()

    def run(ids: np.ndarray, mask: np.ndarray, cases: np.ndarray) -> np.ndarray:
        with lock, torch.inference_mode():
            logits = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(cases))  # (b, t, k)
        out: np.ndarray = logits.float().numpy()
        return out

    return run


def onnx_logits(session: Any) -> LogitsFn:
    """A logits function over an ONNX Runtime session of an exported tagger (safe to call at once)."""
    names = {i.name for i in session.get_inputs()}

    def run(ids: np.ndarray, mask: np.ndarray, cases: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "cases" in names:  # exported with casing
            feed["cases"] = cases
        (logits,) = session.run(["logits"], feed)
        return logits  # type: ignore[no-any-return]

    return run


def read_tagged_split(ctx: Context, dataset_version_id: int, split: str) -> tuple[list[list[str]], list[list[str]]]:
    """The tagged sentences of one split of a token-classification dataset version: (words, tags).

    Sentences without tags, or whose words and tags differ in length, are skipped (the
    training job refuses the latter before any model exists).
    """
    table = read_dataset_rows(ctx, dataset_version_id, split)
    if "tokens" not in table.column_names or "tags" not in table.column_names:
        return [], []
    sentences, tags = [], []
    for words, row in zip(table.column("tokens").to_pylist(), table.column("tags").to_pylist(), strict=True):
        if words and row and len(words) == len(row):
            sentences.append(list(words))
            tags.append(list(row))
    return sentences, tags


class _Doc(NamedTuple):
    """One text (or sentence) as words: each word's pieces and shape, and its offsets when known."""

    pieces: list[list[int]]
    cases: list[int]
    offsets: list[tuple[int, int]]
    positions: list[int]  # each word's place among the caller's words (a sentence may hold piece-less words)


def _rust_copy(tokenizer: PreTrainedTokenizerBase) -> Tokenizer:
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InvalidInput("The tagger's tokenizer is not a fast tokenizer; character offsets need one.",
                           hint="Save the model with a tokenizer.json (a fast tokenizer).")
    rust = Tokenizer.from_str(backend.to_str())
    rust.no_padding()
    rust.no_truncation()  # windows (not truncation) keep every word, and every offset inside the text
    return rust


def _group(word_ids: Sequence[int | None], ids: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """Words in order and the piece ids of each."""
    order: list[int] = []
    pieces: dict[int, list[int]] = {}
    for wid, piece in zip(word_ids, ids, strict=True):
        if wid is None:
            continue
        if wid not in pieces:
            order.append(wid)
            pieces[wid] = []
        pieces[wid].append(piece)
    return order, [pieces[w] for w in order]


class TaggerPredictor:
    """One tagger model version; ``predict`` answers entity spans, safe to call from many threads.

    Args:
        logits: the engine (``torch_logits`` or ``onnx_logits``).
        tokenizer: the model folder's fast tokenizer.
        labels: the tag set, in the model's output order.
        max_length: pieces the model reads at once, special tokens included.
        casing: whether the model reads word shapes.
    """

    task = TASK

    def __init__(self, logits: LogitsFn, tokenizer: PreTrainedTokenizerBase, labels: Sequence[str], *,
                 max_length: int, model_version_id: int, artifact: str, engine: str, casing: bool) -> None:
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
            raise InvalidInput("The tagger's tokenizer has no [CLS]/[SEP] tokens to frame a window with.",
                               hint="Serve a tagger built on a BERT-style encoder.")
        self._logits = logits
        self.tokenizer = tokenizer
        self._rust = _rust_copy(tokenizer)
        self._cls, self._sep = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)
        self._pad = int(tokenizer.pad_token_id or 0)
        self._labels = list(labels)
        self._cap = max(1, int(max_length) - 2)  # pieces per window besides [CLS] and [SEP]
        self.casing = casing
        self.model_version_id = model_version_id
        self.artifact = artifact
        self.engine = engine

    @property
    def labels(self) -> list[str]:
        """The tag set."""
        return list(self._labels)

    @property
    def entity_types(self) -> list[str]:
        return entity_types(self._labels)

    # --- words ---------------------------------------------------------------------

    def _text_docs(self, texts: Sequence[str]) -> list[_Doc]:
        docs = []
        for text, enc in zip(texts, self._rust.encode_batch(list(texts), add_special_tokens=False), strict=True):
            order, pieces = _group(enc.word_ids, enc.ids)
            offsets = word_offsets(enc.word_ids, enc.offsets)
            docs.append(_Doc(pieces, [word_case(text[a:b]) for a, b in offsets], offsets, list(range(len(order)))))
        return docs

    def _sentence_docs(self, sentences: Sequence[Sequence[str]]) -> list[_Doc]:
        encs = self._rust.encode_batch([list(s) for s in sentences], is_pretokenized=True, add_special_tokens=False)
        docs = []
        for words, enc in zip(sentences, encs, strict=True):
            order, pieces = _group(enc.word_ids, enc.ids)
            docs.append(_Doc(pieces, [word_case(words[w]) for w in order], [], order))
        return docs

    # --- the model -------------------------------------------------------------------

    def _tag(self, docs: Sequence[_Doc]) -> list[tuple[list[str], list[float]]]:
        """Tag and probability of each piece-bearing word of each doc."""
        rows: list[tuple[int, list[int], list[int], list[int]]] = []  # (doc, ids, cases, first-piece positions)
        for d, doc in enumerate(docs):
            for a, b in windows([min(len(p), self._cap) for p in doc.pieces], self._cap):
                ids, cases, firsts = [self._cls], [0], []
                for w in range(a, b):
                    kept = doc.pieces[w][:self._cap]
                    firsts.append(len(ids))
                    ids += kept
                    cases += [doc.cases[w]] * len(kept)
                rows.append((d, ids + [self._sep], cases + [0], firsts))
        probs: list[np.ndarray | None] = [None] * len(rows)
        for group in length_groups([len(r[1]) for r in rows]):
            width = max(len(rows[i][1]) for i in group)
            batch_ids = np.full((len(group), width), self._pad, dtype=np.int64)
            batch_mask = np.zeros((len(group), width), dtype=np.int64)
            batch_cases = np.zeros((len(group), width), dtype=np.int64)
            for row, i in enumerate(group):
                n = len(rows[i][1])
                batch_ids[row, :n], batch_mask[row, :n], batch_cases[row, :n] = rows[i][1], 1, rows[i][2]
            logits = self._logits(batch_ids, batch_mask, batch_cases)  # (b, t, k)
            for row, i in enumerate(group):
                probs[i] = softmax(logits[row, rows[i][3]])  # (words in the window, k)
        out: list[tuple[list[str], list[float]]] = [([], []) for _ in docs]
        for (d, *_), p in zip(rows, probs, strict=True):
            assert p is not None
            best = p.argmax(axis=1)
            out[d][0].extend(self._labels[j] for j in best)
            out[d][1].extend(float(p[i, j]) for i, j in enumerate(best))
        return out

    def tag_sentences(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """The tag of each word of sentences already split into words (a dataset's rows);
        a word the tokenizer gives no piece gets ``"O"``."""
        docs = self._sentence_docs(sentences)
        out = []
        for words, doc, (tags, _) in zip(sentences, docs, self._tag(docs), strict=True):
            row = [NO_ENTITY] * len(words)
            for position, tag in zip(doc.positions, tags, strict=True):
                row[position] = tag
            out.append(row)
        return out

    def entities(self, texts: Sequence[str]) -> list[tuple[list[Entity], float]]:
        """Each text's entities and its mean word probability (1.0 for a text without words); no validation."""
        docs = self._text_docs(texts)
        out = []
        for text, doc, (tags, scores) in zip(texts, docs, self._tag(docs), strict=True):
            confidence = sum(scores) / len(scores) if scores else 1.0
            out.append((decode_entities(text, doc.offsets, tags, scores), confidence))
        return out

    def predict(self, texts: list[str]) -> list[Prediction]:
        """Tag each text: ``entities`` (type, start, end, text, score) per text, with
        ``label`` the entity types found (``"O"``: none), ``score`` the mean word
        probability and ``scores`` the best span score per type.

        Raises:
            InvalidInput: see ``runtime.validate_texts``.
        """
        from chainkeeper.serving.runtime import Prediction, validate_texts

        validate_texts(texts)
        answers = []
        for found, confidence in self.entities(texts):
            best: dict[str, float] = {}
            for e in found:
                best[e.type] = max(best.get(e.type, 0.0), e.score)
            answers.append(Prediction(label=summarize_entities(found), score=round(confidence, 6), scores=best,
                                      entities=[e.as_dict() for e in found]))
        return answers
