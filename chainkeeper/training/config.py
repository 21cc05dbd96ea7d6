"""The knobs of one fine-tuning run, as one typed, frozen object.

A run's config is stored with the run (``SqlRun.config``) and travels with the model, so
every value that changes the result lives here, with its default and its meaning.

The defaults were measured on BANKING77 (9,000 training rows, 77 intents, test 3,080
rows) with the offline MiniLM, one epoch at batch 32 on two shared CPU cores
(``benchmarks/train_banking77.py``). Test accuracy by encoder learning rate, head at
20x: 5e-5 → 85.3%, 1e-4 → 90.4%, 2e-4 → 92.1%, 3e-4 → 91.9%; at 1e-4 without the
faster head, 79.3%; batch 16 at 2e-4, 91.9% (no better, twice the steps). 2e-4 at
batch 32 sits in the middle of the plateau, so it is the default (~95 s, 92.1%).

Unknown keys are errors (a typo such as ``learning_rat`` must not silently train with
the default), and ``parse_train_config`` turns pydantic's report into one message that
names the bad key and lists the allowed ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chainkeeper.core.errors import InvalidInput

TASKS = ("auto", "sequence-classification", "token-classification", "masked-lm", "causal-lm")
Task = Literal["auto", "sequence-classification", "token-classification", "masked-lm", "causal-lm"]


class ScratchModel(BaseModel):
    """The size of a model pre-trained from scratch, and the tokenizer trained for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokenizer: Literal["wordpiece", "bpe"] = Field(
        "wordpiece", description="WordPiece (BERT-style, lower-cased) or byte-level BPE (GPT-2 style).")
    vocab_size: int = Field(8000, ge=100, le=200_000, description="Largest vocabulary the tokenizer learns.")
    hidden_size: int = Field(256, ge=8, le=4096, description="Width of every layer.")
    layers: int = Field(4, ge=1, le=48, description="Transformer layers.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads (must divide hidden_size).")
    intermediate_size: int = Field(1024, ge=8, le=16384, description="Width of the feed-forward layers.")

    @model_validator(mode="after")
    def _heads_divide(self) -> ScratchModel:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of heads={self.heads}")
        return self


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run (fine-tuning or pre-training)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task = Field(
        "auto", description="What to train; auto follows the dataset version: text → sequence-classification, "
                            "tokens/tags → token-classification, "
                            "unlabelled → masked-lm (causal-lm for a decoder base).")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens masked in masked-LM training.")
    from_scratch: ScratchModel | None = Field(
        None, description="Pre-train a new model of this size with a tokenizer trained on the corpus (no base model).")

    epochs: int = Field(1, ge=1, le=1000, description="Passes over the training rows.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimiser steps; overrides epochs when set."
    )
    learning_rate: float = Field(
        2e-4, gt=0, lt=1, description="Peak learning rate of the encoder (AdamW), reached after warm-up."
    )
    head_lr_multiplier: float = Field(
        20.0, gt=0, le=1000,
        description="The freshly initialised head learns this many times faster than the encoder.",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Training rows per optimiser step.")
    max_length: int = Field(64, ge=8, le=4096, description="Tokens kept per text; longer texts are truncated.")
    warmup_ratio: float = Field(
        0.06, ge=0, lt=1, description="Fraction of the steps over which the learning rate rises linearly from 0."
    )
    weight_decay: float = Field(
        0.01, ge=0, lt=1, description="AdamW weight decay (not applied to biases and LayerNorm weights)."
    )
    dropout: float = Field(
        0.1, ge=0, lt=1,
        description="Hidden dropout in the encoder (and before the head unless head_dropout is set).",
    )
    attention_dropout: float | None = Field(
        None, ge=0, lt=1, description="Dropout on the encoder's attention probabilities; None keeps the base model's."
    )
    head_dropout: float | None = Field(None, ge=0, lt=1, description="Dropout before the head; None uses dropout.")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="AdamW, or SGD with momentum.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by AdamW).")
    schedule: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="Learning-rate shape after warm-up: linear or cosine decay to 0, or constant."
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=1024, description="Batches whose gradients are summed into one optimiser step."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many dev evaluations without improvement (needs eval_every_steps)."
    )
    early_stopping_metric: Literal["accuracy", "macro_f1"] = Field(
        "macro_f1", description="The dev metric early stopping watches (higher is better)."
    )
    class_weights: Literal["none", "balanced"] | dict[str, float] = Field(
        "none", description="Loss weight per label: none, balanced (n / (k * count)), or a {label: weight} table."
    )
    multi_label_separator: str | None = Field(
        None, min_length=1, max_length=4,
        description="Multi-label classification: a row's label holds several labels joined by this separator "
                    "(e.g. '|'); sigmoid outputs and binary cross-entropy instead of one softmax.")
    multi_label_threshold: float = Field(
        0.5, gt=0, lt=1, description="Multi-label: a label is predicted when its probability reaches this.")
    labels: list[str] | None = Field(
        None,
        description="The label map: when set, rows with any other label are refused, and the head has these outputs.",
    )
    slice_column: str | None = Field(
        None, description="A metadata column of the dataset whose values get their own metrics (the fairness view)."
    )
    checkpoint_every_steps: int | None = Field(
        200, ge=1,
        description="Save a resumable checkpoint every N steps (and at each epoch's end); None: epoch ends only.",
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradients are clipped to this global L2 norm.")
    seed: int = Field(13, ge=0, description="Seeds the head's initialisation, the sampling and the batch order.")
    eval_batch_size: int = Field(128, ge=1, le=8192, description="Rows per batch when evaluating.")
    extend_vocab: bool = Field(
        True,
        description="Before fine-tuning, add the Chinese (CJK) characters of the training texts that the base "
                    "tokenizer reads as [UNK] to its vocabulary, with new embedding rows (WordPiece bases; "
                    "language-model pre-training ignores it).")
    new_tokens_lr_multiplier: float = Field(
        50.0, gt=0, le=1000,
        description="The embedding rows of added tokens learn this many times faster than the encoder.")
    pooling: Literal["mean", "cls"] = Field(
        "mean", description="How token vectors become one text vector: mean over tokens, or the [CLS] token."
    )
    limit_train: int | None = Field(
        None, ge=1, description="Train on at most this many rows (a deterministic, seeded sample)."
    )
    log_every_steps: int = Field(20, ge=1, description="Report loss, learning rate and speed every N steps.")
    eval_every_steps: int | None = Field(
        None, ge=1, description="Also evaluate on the dev split every N steps (dev curve in the metrics)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.early_stopping_patience is not None and self.eval_every_steps is None:
            raise ValueError("early_stopping_patience needs eval_every_steps (how often the dev split is scored)")
        if isinstance(self.class_weights, dict) and any(w < 0 for w in self.class_weights.values()):
            raise ValueError("class_weights must not be negative")
        if self.from_scratch is not None and self.task not in ("auto", "masked-lm", "causal-lm"):
            raise ValueError(f"from_scratch pre-trains a language model; task={self.task!r} needs a base model "
                             "(pre-train first, then fine-tune on the result)")
        if self.multi_label_separator is not None and self.class_weights != "none":
            raise ValueError("class_weights is not supported with multi_label_separator (one sigmoid per label)")
        if self.labels is not None and len(set(self.labels)) < 2:
            raise ValueError("labels must name at least two distinct labels")
        return self

    def steps_per_epoch(self, n_rows: int) -> int:
        """Optimiser steps of one pass over ``n_rows`` rows (the last step of an epoch
        may gather fewer than ``gradient_accumulation_steps`` batches)."""
        batches = -(-n_rows // self.batch_size)  # ceiling division: the last batch may be short
        return -(-batches // self.gradient_accumulation_steps)

    def total_steps(self, n_rows: int) -> int:
        """Optimiser steps this config takes over ``n_rows`` training rows.

        Args:
            n_rows: training rows after ``limit_train`` was applied.

        Returns:
            ``max_steps`` when set, else ``epochs`` times the steps per epoch.
        """
        return self.max_steps if self.max_steps is not None else self.epochs * self.steps_per_epoch(n_rows)


def parse_train_config(values: Mapping[str, Any] | None) -> TrainConfig:
    """Validate a mapping of hyper-parameters (from the CLI, the API or a stored run).

    Args:
        values: keys of ``TrainConfig``; missing keys take their defaults.

    Returns:
        The validated, frozen config.

    Raises:
        InvalidInput: a key is unknown or a value is out of range; the message names the
            key and its value, and the hint lists the allowed keys.
    """
    values = dict(values or {})
    allowed = ", ".join(TrainConfig.model_fields)
    unknown = sorted(set(values) - set(TrainConfig.model_fields))
    if unknown:
        guesses = [f"{key!r} → {match[0]!r}" for key in unknown
                   if (match := difflib.get_close_matches(key, TrainConfig.model_fields, n=1))]
        did_you_mean = f"Did you mean {', '.join(guesses)}? " if guesses else ""
        raise InvalidInput(
            f"Unknown training option(s): {', '.join(unknown)}.",
            hint=f"{did_you_mean}Allowed options: {allowed}.",
        )
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(_describe(err, values) for err in exc.errors())
        raise InvalidInput(f"Invalid training option(s): {problems}.", hint=f"Allowed options: {allowed}.") from None


def _describe(err: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "config"
    if key in values:
        return f"{key}={values[key]!r} ({err['msg']})"
    return f"{key} ({err['msg']})"
