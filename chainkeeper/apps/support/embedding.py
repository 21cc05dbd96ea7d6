"""Sentence embeddings with the offline MiniLM: mean pooling and L2 normalisation.

This is the sentence-transformers recipe of all-MiniLM-L6-v2 written with transformers
and torch: run the encoder, average the token vectors of each text under its attention
mask (padding does not count), scale each average to unit length. The model folder says
how it was trained to be pooled (``1_Pooling/config.json``: mean or CLS) and how long a
text it reads (``sentence_bert_config.json``: ``max_seq_length``, 256 for MiniLM); a folder
without them (a plain Hugging Face encoder) is mean-pooled at 256 tokens. Vectors are unit
length, so a dot product is the cosine.

Deterministic: the same texts on the same model and thread count give the same bytes
(inference mode, no dropout; texts are batched in a fixed order). Texts are sorted by
length before batching, so a batch pads short texts to short lengths, and the results
are put back in input order.

A model is named by its *digest*: the sha256 of the manifest of its files, the digest the
artefact store would give the folder (``ArtifactStore.put_tree``). Indexes are keyed by it,
so a changed model never reuses vectors made by another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from chainkeeper.core.artifacts import MANIFEST_KIND, sha256_file
from chainkeeper.core.errors import ConfigError

__all__ = ["SentenceEncoder", "folder_digest", "DEFAULT_MAX_LENGTH", "DEFAULT_BATCH_SIZE"]

DEFAULT_MAX_LENGTH = 256
DEFAULT_BATCH_SIZE = 32
POOLING_CONFIG = "1_Pooling/config.json"
SENTENCE_CONFIG = "sentence_bert_config.json"


def folder_digest(folder: Path) -> str:
    """The sha256 of a folder's manifest (relative path -> file sha256), as ``put_tree`` names it."""
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = json.dumps({"kind": MANIFEST_KIND, "files": files}, sort_keys=True).encode()
    return hashlib.sha256(manifest).hexdigest()


def _pooling(folder: Path) -> str:
    path = folder / POOLING_CONFIG
    if not path.is_file():
        return "mean"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    raise ConfigError(f"The sentence model in {folder} asks for a pooling this encoder does not do ({path}).",
                      hint="Use a model pooled by mean or CLS token, such as the default all-MiniLM-L6-v2.")


def _max_length(folder: Path) -> int:
    path = folder / SENTENCE_CONFIG
    if path.is_file():
        return int(json.loads(path.read_text(encoding="utf-8")).get("max_seq_length") or DEFAULT_MAX_LENGTH)
    return DEFAULT_MAX_LENGTH


class SentenceEncoder:
    """A sentence model loaded from a local folder: texts in, unit vectors out."""

    def __init__(self, folder: Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Load the model (offline: only files in ``folder`` are read).

        Raises:
            ConfigError: the folder holds no model and tokenizer, or asks for another pooling.
        """
        self.folder = Path(folder)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.folder, local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"Cannot load a sentence model from {self.folder}: {exc}",
                              hint="Name a local Hugging Face model folder with its tokenizer.") from None
        self.pooling = _pooling(self.folder)
        self.max_length = _max_length(self.folder)
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)
        self.digest = folder_digest(self.folder)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts.

        Args:
            texts: the texts (longer ones are cut at ``max_length`` tokens).

        Returns:
            float32 array of shape (len(texts), dim), each row of unit length.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            out[batch] = self._encode_batch([texts[i] for i in batch])
        return out

    def unknown_share(self, texts: Sequence[str]) -> float:
        """The share of the texts' tokens the model's vocabulary does not know (0..1; 0 for no tokens).

        A vocabulary made for one language reads another as unknown tokens: MiniLM's
        English WordPiece vocabulary knows about a quarter of the Chinese characters of the
        built-in sample, so its vectors of Chinese text carry little meaning.
        """
        unknown = self.tokenizer.unk_token_id
        counts = [(sum(t == unknown for t in ids), len(ids))
                  for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        total = sum(n for _, n in counts)
        return sum(u for u, _ in counts) / total if total else 0.0

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
        inputs = {name: encoded[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded}
        with torch.inference_mode():
            hidden = self.model(**inputs).last_hidden_state  # (b, t, h)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (b, h)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
