"""The text classifier: a Hugging Face encoder, a pooling step and a linear head.

The default base, all-MiniLM-L6-v2, was trained as a sentence encoder with *mean
pooling*, so its CLS pooler is untuned; mean pooling over the attention mask makes its
embeddings useful from the first step and is the default here (``pooling="cls"`` is
available for encoders trained the BERT way).

On disk a classifier is one folder: the encoder (``config.json`` + ``model.safetensors``),
the tokenizer files, ``head.safetensors`` and ``chainkeeper.json`` (labels, pooling,
max length). That folder is what the artefact store keeps and serving loads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from chainkeeper.core.errors import InvalidInput

if TYPE_CHECKING:
    from transformers import PreTrainedModel  # importing it loads transformers' modeling code

META_FILE = "chainkeeper.json"
HEAD_FILE = "head.safetensors"


@dataclass(frozen=True)
class ClassifierMeta:
    labels: list[str]
    pooling: str = "mean"
    max_length: int = 64
    task: str = "sequence-classification"
    # Several labels per text: independent sigmoids, each predicted above ``threshold``.
    multi_label: bool = False
    threshold: float = 0.5
    # Token taggers only: a learned embedding of each word's shape (training.tokens).
    casing: bool = False


def _quiet_transformers() -> None:
    # Loading prints per-file progress bars and "unexpected key" notes meant for
    # notebooks; our progress is reported through jobs and Rich instead.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # unannotated in transformers
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers


class TextClassifier(nn.Module):
    """An encoder, pooling and a linear head: logits of shape (b, k) per text."""

    # What ``ClassifierMeta.task`` says for this kind of model; ``load`` refuses others.
    TASK = "sequence-classification"

    def __init__(self, encoder: PreTrainedModel, meta: ClassifierMeta, dropout: float = 0.1) -> None:
        super().__init__()
        if meta.pooling not in ("mean", "cls"):
            raise InvalidInput(f"Unknown pooling {meta.pooling!r}.", hint="Use 'mean' or 'cls'.")
        self.encoder = encoder
        self.meta = meta
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.head = nn.Linear(hidden, len(meta.labels))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_labels) for token ids of shape (batch, seq)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (b, t, h)
        if self.meta.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (b, h)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits

    # --- building, saving, loading --------------------------------------------------

    @classmethod
    def from_base(cls, base_dir: Path, meta: ClassifierMeta, *, dropout: float = 0.1,
                  attention_dropout: float | None = None,
                  head_dropout: float | None = None) -> tuple[Self, PreTrainedTokenizerBase]:
        """A fresh classifier on a local encoder folder, with a newly initialised head.

        ``dropout`` sets the encoder's hidden dropout and, unless ``head_dropout`` is
        given, the dropout before the head; ``attention_dropout`` the attention
        probabilities' (None keeps the base model's).
        """
        _quiet_transformers()
        base_dir = Path(base_dir)
        if not (base_dir / "config.json").is_file():
            raise InvalidInput(
                f"{base_dir} is not a Hugging Face model folder (no config.json).",
                hint="Point CHAINKEEPER_BASE_MODEL or --base-model at a local model folder.",
            )
        overrides: dict[str, float] = {"hidden_dropout_prob": dropout}
        if attention_dropout is not None:
            overrides["attention_probs_dropout_prob"] = attention_dropout
        config = AutoConfig.from_pretrained(base_dir, local_files_only=True)
        for key, value in overrides.items():
            if hasattr(config, key):
                setattr(config, key, value)
        encoder = AutoModel.from_pretrained(base_dir, config=config, local_files_only=True, add_pooling_layer=False)
        tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
        model = cls(encoder, meta, dropout=dropout if head_dropout is None else head_dropout)
        nn.init.normal_(model.head.weight, std=0.02)
        nn.init.zeros_(model.head.bias)
        return model, tokenizer

    def save(self, folder: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
        _quiet_transformers()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, folder / HEAD_FILE)
        (folder / META_FILE).write_text(json.dumps(asdict(self.meta), indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> tuple[Self, PreTrainedTokenizerBase]:
        """Load a saved classifier in eval mode.

        Raises:
            InvalidInput: the folder is not a saved Chainkeeper classifier.
        """
        _quiet_transformers()
        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise InvalidInput(f"{folder} holds no Chainkeeper classifier ({META_FILE} missing).")
        meta = ClassifierMeta(**json.loads((folder / META_FILE).read_text(encoding="utf-8")))
        if meta.task != cls.TASK:
            raise InvalidInput(f"{folder} holds a {meta.task} model, not a {cls.TASK} one.",
                               hint="Load it with the model class of its task (training.tokens.TokenTagger "
                                    "for token classification).")
        encoder = AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = cls(encoder, meta)
        model.head.load_state_dict(load_file(folder / HEAD_FILE))
        model.eval()
        return model, tokenizer

    @torch.inference_mode()
    def predict_logits(
        self, tokenizer: PreTrainedTokenizerBase, texts: list[str], *, batch_size: int = 64
    ) -> torch.Tensor:
        """Raw logits (float32) of shape (len(texts), num_labels), in the input order.

        Texts are sorted by length before batching so each batch pads to its own longest
        text, not the corpus's (dynamic padding); the order is restored at the end.

        Raises:
            InvalidInput: the model is not a text classifier (a token tagger's logits are per word).
        """
        if self.TASK != TextClassifier.TASK:
            raise InvalidInput("A token tagger scores words, not texts.", hint="Use training.tokens.predict_tags.")
        if not texts:
            return torch.empty(0, len(self.meta.labels))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), len(self.meta.labels))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=self.meta.max_length, return_tensors="pt")
            out[idx] = self(enc["input_ids"], enc["attention_mask"]).float()
        return out

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities from (n, num_labels) logits: softmax over the labels, or
        one sigmoid per label when ``meta.multi_label``."""
        return torch.sigmoid(logits) if self.meta.multi_label else torch.softmax(logits, dim=-1)

    @torch.inference_mode()
    def predict_proba(
        self, tokenizer: PreTrainedTokenizerBase, texts: list[str], *, batch_size: int = 64
    ) -> torch.Tensor:
        """Class probabilities of shape (len(texts), num_labels), in the input order
        (``probabilities`` of ``predict_logits``)."""
        return self.probabilities(self.predict_logits(tokenizer, texts, batch_size=batch_size))
