"""Vocabulary extension: Chinese characters the base model cannot read become tokens.

The offline base (all-MiniLM-L6-v2) has an English, uncased WordPiece vocabulary of
30,522 pieces with only a few hundred single Chinese characters, so most Chinese text
becomes ``[UNK]``: "我的卡丢了，怎么办" is ``我 的 [UNK] [UNK] [UNK] ， [UNK] [UNK] [UNK]``
and the classifier has nothing to learn from (on the built-in sample, 23 % test accuracy
on Chinese rows against 97 % on English ones).

BERT's tokenizer already splits CJK ideographs into one word each, so a character only
needs to be *in the vocabulary* to become its own token. Before fine-tuning,
``extend_vocabulary``:

1. finds the ideographs of the training texts that the tokenizer maps to ``[UNK]``
   (``unknown_characters``), in first-seen order, so a rerun or a resumed run extends
   the same way;
2. appends them to the WordPiece vocabulary (``extend_tokenizer``): the tokenizer's own
   ``tokenizer.json`` gains the entries, so the saved model folder, the fast tokenizer
   and the Rust tokenizer serving builds from it (``backend_tokenizer``) all agree;
3. adds as many rows to the encoder's input embeddings (``config.vocab_size`` follows),
   set to the mean of the existing rows plus noise of half their spread, so each new
   character starts as a distinct, ordinary-looking token.

The new rows know nothing yet; at the encoder's learning rate one epoch barely moves
them. ``learn_new_rows`` splits them into a parameter of their own for the length of
training (the loop gives it ``learning_rate * new_tokens_lr_multiplier``) and merges
them back into one plain embedding afterwards, so what is saved, exported and served is
an ordinary Hugging Face encoder. Measured on the built-in sample (1 epoch, the
quickstart's default config, ``benchmarks/chinese_parity.py``): see docs/training.md.

A tokenizer that is not WordPiece (byte-level BPE has no ``[UNK]``), does not split
ideographs or has tokens added on top of its vocabulary, and an encoder with more
embedding rows than its tokenizer has tokens, are left as they are.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812  (the usual name)
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from chainkeeper.data import is_han_character
from chainkeeper.training.loop import NEW_ROWS_PARAMETER

__all__ = ["NEW_ROWS_PARAMETER", "VocabularyExtension", "extend_tokenizer", "extend_vocabulary",
           "learn_new_rows", "unknown_characters", "unknown_share"]

# At most this many characters are added (the common Chinese characters number ~3,500;
# a corpus needing more is better served by a Chinese or multilingual base model).
MAX_NEW_TOKENS = 8000
# Noise of the new rows, as a share of the existing rows' spread per dimension.
INIT_NOISE = 0.5


@dataclass(frozen=True)
class VocabularyExtension:
    """What an extension did, recorded on the run (``metrics.train.vocabulary``)."""

    added: list[str]  # the characters, in token-id order
    base_size: int  # embedding rows before; the new tokens have ids base_size, base_size + 1, ...
    unk_share_before: float  # share of the training texts' tokens that were [UNK]
    unk_share_after: float

    def record(self) -> dict[str, Any]:
        """The JSON the run stores (the characters themselves only when few)."""
        return {"added_tokens": len(self.added), "base_vocab_size": self.base_size,
                "unk_share_before": round(self.unk_share_before, 4),
                "unk_share_after": round(self.unk_share_after, 4),
                "added_sample": "".join(self.added[:50])}


def _wordpiece_spec(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any] | None:
    """The fast tokenizer's JSON when it is a WordPiece model that splits ideographs and
    whose ids are exactly its vocabulary's, 0 .. n-1 (no tokens added on top, which new
    ids would collide with); None otherwise."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or tokenizer.unk_token is None:
        return None
    spec: dict[str, Any] = json.loads(backend.to_str())
    normalizer = spec.get("normalizer") or {}
    if spec.get("model", {}).get("type") != "WordPiece" or not normalizer.get("handle_chinese_chars"):
        return None
    vocab: dict[str, int] = spec["model"]["vocab"]
    if not vocab or max(vocab.values()) != len(vocab) - 1 or len(tokenizer) != len(vocab):
        return None
    return spec


def unknown_characters(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *,
                       limit: int = MAX_NEW_TOKENS) -> list[str]:
    """The CJK ideographs of ``texts`` that are not in the tokenizer's vocabulary.

    Args:
        tokenizer: a fast tokenizer (anything but a plain WordPiece vocabulary with
            ideograph splitting gives an empty list).
        texts: the training texts.
        limit: at most this many, the most frequent first kept; ties and the order of
            the result follow first appearance.

    Returns:
        The characters, in order of first appearance.
    """
    spec = _wordpiece_spec(tokenizer)
    if spec is None:
        return []
    vocab = spec["model"]["vocab"]
    normalizer = tokenizer.backend_tokenizer.normalizer
    counts: dict[str, int] = {}
    for text in texts:
        # Normalise as the tokenizer will (full-width forms, case), then look up each ideograph.
        for char in normalizer.normalize_str(text) if normalizer is not None else text:
            if is_han_character(char) and char not in vocab:
                counts[char] = counts.get(char, 0) + 1
    chars = list(counts)  # insertion order: first appearance
    if len(chars) > limit:
        kept = set(sorted(chars, key=lambda c: (-counts[c], chars.index(c)))[:limit])
        chars = [c for c in chars if c in kept]
    return chars


def extend_tokenizer(tokenizer: PreTrainedTokenizerBase, chars: Sequence[str]) -> PreTrainedTokenizerBase:
    """A copy of a WordPiece tokenizer with ``chars`` appended to its vocabulary.

    The copy is written and read back through ``save_pretrained``/``AutoTokenizer``, so
    it is exactly what a saved model folder will load (``tokenizer.json``, and
    ``vocab.txt`` when the tokenizer writes one).

    Raises:
        ValueError: the tokenizer is not WordPiece with ideograph splitting, or tokens
            were added on top of its vocabulary (new ids would collide with theirs).
    """
    spec = _wordpiece_spec(tokenizer)
    if spec is None:
        raise ValueError("only a WordPiece tokenizer that splits CJK ideographs, with no tokens added on top of "
                         "its vocabulary, can be extended")
    vocab: dict[str, int] = spec["model"]["vocab"]
    for char in chars:
        if char not in vocab:
            vocab[char] = len(vocab)
    with tempfile.TemporaryDirectory(prefix="chainkeeper-vocab-") as tmp:
        folder = Path(tmp)
        tokenizer.save_pretrained(folder)
        (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        if (folder / "vocab.txt").is_file():  # a slow-tokenizer copy must agree with tokenizer.json
            ordered = sorted(vocab, key=vocab.__getitem__)
            (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in ordered), encoding="utf-8")
        extended: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return extended


def unknown_share(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> float:
    """The share of the texts' tokens (special tokens left out) that are ``[UNK]``."""
    if not texts or tokenizer.unk_token_id is None:
        return 0.0
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    total = sum(len(row) for row in ids)
    unknown = sum(row.count(tokenizer.unk_token_id) for row in ids)
    return unknown / total if total else 0.0


def extend_vocabulary(encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *,
                      seed: int) -> tuple[PreTrainedTokenizerBase, VocabularyExtension]:
    """Add the training texts' unknown ideographs to the tokenizer and the encoder.

    Args:
        encoder: the base encoder; its input embeddings gain one row per new token, in
            place (mean of the old rows + ``INIT_NOISE`` of their spread, seeded).
        tokenizer: its tokenizer (left as it is; the extended copy is returned).
        texts: the training texts.
        seed: seeds the new rows' noise.

    Returns:
        The tokenizer to train, save and serve with (the same object when nothing was
        unknown), and what was added.
    """
    chars = unknown_characters(tokenizer, texts)
    before = unknown_share(tokenizer, texts)
    base_size = len(tokenizer)
    old = cast(nn.Embedding, encoder.get_input_embeddings()).weight.detach()
    # An encoder with more rows than tokens (a vocabulary padded to a round number) is
    # left as it is: its spare rows would sit between the old ids and the new ones.
    if not chars or old.shape[0] != base_size:
        return tokenizer, VocabularyExtension([], base_size, before, before)
    extended = extend_tokenizer(tokenizer, chars)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(chars), old.shape[1], generator=generator)
    rows = old.mean(dim=0) + INIT_NOISE * old.std(dim=0) * noise  # (new, hidden)
    encoder.resize_token_embeddings(len(extended), mean_resizing=False)
    with torch.no_grad():
        cast(nn.Embedding, encoder.get_input_embeddings()).weight[base_size:] = rows.to(old.dtype)
    return extended, VocabularyExtension(list(chars), base_size, before, unknown_share(extended, texts))


class _SplitEmbedding(nn.Module):
    """An input embedding whose rows from ``base_size`` on are a parameter of their own."""

    def __init__(self, embedding: nn.Embedding, base_size: int) -> None:
        super().__init__()
        weight = embedding.weight.detach()
        self.weight = nn.Parameter(weight[:base_size].clone())
        setattr(self, NEW_ROWS_PARAMETER, nn.Parameter(weight[base_size:].clone()))
        self.padding_idx = embedding.padding_idx

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        table = torch.cat([self.weight, getattr(self, NEW_ROWS_PARAMETER)])  # (vocab, hidden)
        return F.embedding(input_ids, table, self.padding_idx)

    def merged(self) -> nn.Embedding:
        table = torch.cat([self.weight, getattr(self, NEW_ROWS_PARAMETER)]).detach()  # (vocab, hidden)
        # _weight: built from the table, without drawing (and so moving) the global generator.
        return nn.Embedding(table.shape[0], table.shape[1], padding_idx=self.padding_idx, _weight=table.clone())


@contextmanager
def learn_new_rows(encoder: PreTrainedModel, extension: VocabularyExtension | None) -> Iterator[None]:
    """While inside, the encoder's added embedding rows are a separate parameter named
    ``…word_embeddings.new_rows`` (their own learning rate); on leaving, even after an
    error, they are merged back into one ``nn.Embedding`` that ``save_pretrained`` and
    ONNX export see as usual. Does nothing when nothing was added (or ``extension`` is None).
    """
    if extension is None or not extension.added:
        yield
        return
    embedding = cast(nn.Embedding, encoder.get_input_embeddings())
    split = _SplitEmbedding(embedding, extension.base_size)
    encoder.set_input_embeddings(split)
    try:
        yield
    finally:
        encoder.set_input_embeddings(split.merged())
