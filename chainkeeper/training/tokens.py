"""Token classification (named entities, BIO/IOB2 tags): data, model, loop, metrics.

A sentence arrives as words with one tag each. The tokenizer splits words into
word pieces; only the *first* piece of each word carries the word's tag, the others get
-100 (ignored by the loss), so every word is predicted exactly once — the convention of
the CoNLL evaluations. Scores are entity-level (seqeval: an entity counts only when its
type and both boundaries are right) alongside the token-level report.

Training runs the one loop (``loop.fit``: length-grouped batches, dynamic padding,
optimiser groups, schedules, checkpoints, early stopping); only the loss changes shape,
(b, t, k).

Casing. An uncased base (the default MiniLM lower-cases its input) cannot see the
capital letters that mark most names in news text. A tagger built with ``casing=True``
(the default) adds a learned embedding of each word's shape — lower, Title, UPPER,
mixed, number… (``word_case``) — to the input embedding of every piece of that word, so
the encoder's layers see the shape in context (the casing features of classic NER
taggers). The embedding starts at zero, so training begins from the base model as it
is; it is saved as ``casing.safetensors`` beside the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.evaluation import classification_metrics
from chainkeeper.training.loop import (
    TrainResult,
    fit,
    pad_batch,
    sample_indices,
    seed_everything,
)
from chainkeeper.training.model import ClassifierMeta, TextClassifier

if TYPE_CHECKING:
    from transformers import PreTrainedModel  # importing it loads transformers' modeling code

IGNORE = -100  # CrossEntropyLoss's ignore_index: continuation pieces and special tokens
CASING_FILE = "casing.safetensors"
# Word shapes, by id; 0 is a special token ([CLS], [SEP], padding).
CASES = ("special", "lower", "title", "upper", "mixed", "number", "alphanumeric", "other")


def read_conll(text: str) -> list[tuple[list[str], list[str]]]:
    """Sentences of a CoNLL-style file: one ``word ... tag`` line per word (the tag is
    the last column), blank lines between sentences, ``-DOCSTART-`` lines skipped.

    Returns:
        ``[(words, tags)]`` in file order.
    """
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        words.append(parts[0])
        tags.append(parts[-1])
    if words:
        sentences.append((words, tags))
    return sentences


def align_tags(word_ids: Sequence[int | None], word_tags: Sequence[int]) -> list[int]:
    """Per-piece label ids: the word's tag on its first piece, ``IGNORE`` elsewhere.

    Args:
        word_ids: the word index of each piece (None for special tokens), as returned
            by a fast tokenizer's ``word_ids()``.
        word_tags: the tag id of each word.

    Returns:
        One label id per piece.
    """
    out, previous = [], None
    for wid in word_ids:
        out.append(IGNORE if wid is None or wid == previous else word_tags[wid])
        previous = wid
    return out


def word_case(word: str) -> int:
    """The shape of a word, an index into ``CASES`` (never 0, which marks special tokens)."""
    letters = [c for c in word if c.isalpha()]
    digits = any(c.isdigit() for c in word)
    if not letters:
        return CASES.index("number") if digits else CASES.index("other")
    if digits:
        return CASES.index("alphanumeric")
    if all(c.islower() for c in letters):
        return CASES.index("lower")
    if all(c.isupper() for c in letters):  # "IBM", and a lone capital ("I", the "J" of "J.")
        return CASES.index("upper")
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return CASES.index("title")
    return CASES.index("mixed")


class Encoded(NamedTuple):
    """One sentence as the tagger reads it, one entry per piece."""

    ids: list[int]
    tags: list[int]  # the word's tag at its first piece, IGNORE elsewhere
    cases: list[int]  # the word's shape (``word_case``) at each of its pieces, 0 at special tokens


def encode_sentences(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]],
                     tags: Sequence[Sequence[int]] | None, max_length: int) -> list[Encoded]:
    """Piece ids, aligned labels and word shapes of each sentence (truncated to ``max_length``).

    Raises:
        InvalidInput: the tokenizer is not a fast one (no word alignment).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInput("Token classification needs a fast tokenizer (tokenizer.json) for word alignment.",
                           hint="Save the tokenizer with the tokenizers library (tokenizer.json) in the model folder.")
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length)
    out = []
    for i, words in enumerate(sentences):
        word_tags = tags[i] if tags is not None else [0] * len(words)
        word_ids = enc.word_ids(i)
        shapes = [word_case(w) for w in words]
        out.append(Encoded(list(enc["input_ids"][i]), align_tags(word_ids, word_tags),
                           [0 if w is None else shapes[w] for w in word_ids]))
    return out


class TokenTagger(TextClassifier):
    """An encoder with a linear layer over every token: logits of shape (b, t, k).

    It saves and loads as the classifier does (one folder, ``chainkeeper.json`` says
    ``task: token-classification``), so the artefact store, the registry and lineage
    treat both alike.
    """

    TASK = "token-classification"

    def __init__(self, encoder: PreTrainedModel, meta: ClassifierMeta, dropout: float = 0.1) -> None:
        super().__init__(encoder, meta, dropout=dropout)
        self.casing = nn.Embedding(len(CASES), encoder.config.hidden_size) if meta.casing else None
        if self.casing is not None:
            nn.init.zeros_(self.casing.weight)

    @property
    def labels(self) -> list[str]:
        """The tag set, in output order."""
        return self.meta.labels

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                cases: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (b, t, k); ``cases`` (b, t) holds each piece's word shape (needed when
        the tagger was built with casing)."""
        if self.casing is None:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (b, t, h)
        else:
            if cases is None:
                raise InvalidInput("This tagger reads word shapes: pass `cases` (see encode_sentences).")
            embeds = self.encoder.get_input_embeddings()(input_ids) + self.casing(cases)  # (b, t, h)
            hidden = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        logits: torch.Tensor = self.head(self.dropout(hidden))  # (b, t, k)
        return logits

    @classmethod
    def from_base(cls, base_dir: Path, labels: Sequence[str] | ClassifierMeta,
                  *, dropout: float = 0.1, attention_dropout: float | None = None, head_dropout: float | None = None,
                  max_length: int = 128, casing: bool = True) -> tuple[TokenTagger, PreTrainedTokenizerBase]:
        """A fresh tagger on a local encoder folder, with a newly initialised head.

        Args:
            labels: the tag set (or a full ``ClassifierMeta``).
            max_length: pieces kept per sentence, recorded with the model.
            casing: learn an embedding of each word's shape (see the module's notes).
        """
        meta = labels if isinstance(labels, ClassifierMeta) else ClassifierMeta(
            labels=list(labels), max_length=max_length, task=cls.TASK, casing=casing)
        model, tokenizer = super().from_base(base_dir, replace(meta, task=cls.TASK), dropout=dropout,
                                             attention_dropout=attention_dropout, head_dropout=head_dropout)
        return model, tokenizer

    def save(self, folder: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
        folder = super().save(folder, tokenizer)
        if self.casing is not None:
            save_file({"weight": self.casing.weight.detach().contiguous()}, Path(folder) / CASING_FILE)
        return folder

    @classmethod
    def load(cls, folder: Path) -> tuple[TokenTagger, PreTrainedTokenizerBase]:
        model, tokenizer = super().load(folder)
        if model.casing is not None:
            model.casing.load_state_dict(load_file(Path(folder) / CASING_FILE))
        return model, tokenizer

    def predict_proba(self, tokenizer: PreTrainedTokenizerBase, texts: list[str], *,
                      batch_size: int = 64) -> torch.Tensor:
        raise InvalidInput("A token tagger scores words, not texts.", hint="Use training.tokens.predict_tags.")


def train_token_tagger(
    model: TokenTagger, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[str]], config: TrainConfig, **hooks: Any,
) -> TrainResult:
    """Fine-tune ``model`` in place on tagged sentences.

    Args:
        sentences: the words of each sentence.
        tags: the tag of each word, from ``model.labels``.
        config: batch size, learning rate, schedule, steps… (as for classification).
        **hooks: ``on_step``, ``should_stop``, ``on_eval``, ``on_checkpoint``, ``resume``
            (see ``loop.fit``).

    Raises:
        InvalidInput: no sentences, a tag outside ``model.labels``, or a non-finite loss.
    """
    if not sentences:
        raise InvalidInput("There are no training sentences.", hint="Check the dataset version's train split.")
    index = {t: i for i, t in enumerate(model.labels)}
    unknown = sorted({t for row in tags for t in row if t not in index})
    if unknown:
        raise InvalidInput(f"Tag(s) {', '.join(map(repr, unknown[:5]))} are not in the tag set "
                           f"({', '.join(model.labels)}).", hint="Add them to 'labels' or fix the data.")
    seed_everything(config.seed)
    keep = sample_indices(len(sentences), config.limit_train, config.seed)
    encoded = encode_sentences(tokenizer, [sentences[i] for i in keep],
                               [[index[t] for t in tags[i]] for i in keep], config.max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)

    def batch_loss(batch: list[int]) -> torch.Tensor:
        input_ids, mask = pad_batch([encoded[i].ids for i in batch], pad_id)  # (b, t)
        targets, _ = pad_batch([encoded[i].tags for i in batch], IGNORE)  # (b, t), padding ignored
        cases, _ = pad_batch([encoded[i].cases for i in batch], 0)  # (b, t)
        logits = model(input_ids, mask, cases)  # (b, t, k)
        loss: torch.Tensor = loss_fn(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return loss

    return fit(model, [len(e.ids) for e in encoded], batch_loss, config, **hooks)


@torch.inference_mode()
def predict_tags(model: TokenTagger, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]], *,
                 max_length: int, batch_size: int = 64) -> list[list[str]]:
    """The tag of each word (read at its first piece); words cut off by ``max_length``
    get ``"O"``, so every sentence gets exactly one tag per word."""
    model.eval()
    encoded = encode_sentences(tokenizer, sentences, None, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[str]] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        input_ids, mask = pad_batch([e.ids for e in chunk], pad_id)
        cases, _ = pad_batch([e.cases for e in chunk], 0)
        best = model(input_ids, mask, cases).argmax(dim=-1)  # (b, t)
        for row, (_, firsts, _) in enumerate(chunk):
            n_words = len(sentences[start + row])
            words = [model.labels[int(best[row, pos])] for pos, flag in enumerate(firsts) if flag != IGNORE]
            out.append(words + ["O"] * (n_words - len(words)))
    return out


def entity_metrics(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
                   labels: Sequence[str]) -> dict[str, Any]:
    """Entity-level scores (seqeval, IOB2, CoNLL convention) plus the token-level report.

    Args:
        y_true: gold tags per sentence.
        y_pred: predicted tags per sentence (same lengths).
        labels: the tag set (token-level report order).

    Returns:
        ``{"precision", "recall", "f1", "per_type": {type: {"precision", "recall",
        "f1-score", "support"}}, "report": str, "token": classification_metrics(...)}``.

    Raises:
        InvalidInput: no sentences, or a sentence whose lengths differ.
    """
    from seqeval.metrics import (
        classification_report,
        f1_score,
        precision_score,
        recall_score,
    )

    if not y_true:
        raise InvalidInput("Cannot compute entity metrics on zero sentences.")
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(t) != len(p):
            raise InvalidInput(f"Sentence {i} has {len(t)} gold tags but {len(p)} predicted.")
    truth, guess = [list(s) for s in y_true], [list(s) for s in y_pred]
    per_type = classification_report(truth, guess, output_dict=True, zero_division=0)
    return {
        "precision": float(precision_score(truth, guess, zero_division=0)),
        "recall": float(recall_score(truth, guess, zero_division=0)),
        "f1": float(f1_score(truth, guess, zero_division=0)),
        "per_type": {k: {m: float(v) for m, v in d.items()} for k, d in per_type.items() if "avg" not in k},
        "report": classification_report(truth, guess, digits=4, zero_division=0),
        "token": classification_metrics([t for s in truth for t in s], [t for s in guess for t in s], labels),
    }
