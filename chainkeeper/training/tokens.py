"""Token classification (named entities, BIO/IOB2 tags): data, model, loop, metrics.

A sentence arrives as words with one tag each. The tokenizer splits words into
word pieces; only the *first* piece of each word carries the word's tag, the others get
-100 (ignored by the loss), so every word is predicted exactly once — the convention of
the CoNLL evaluations. Scores are entity-level (seqeval: an entity counts only when its
type and both boundaries are right) alongside the token-level report.

The loop reuses the sequence classifier's pieces (length-grouped batches, dynamic
padding, optimiser groups, schedules); only the loss changes shape, (b, t, k).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.evaluation import classification_metrics
from chainkeeper.training.loop import (
    StepReport,
    TrainResult,
    build_optimizer,
    length_grouped_batches,
    lr_multiplier,
    pad_batch,
    seed_everything,
)

IGNORE = -100  # CrossEntropyLoss's ignore_index: continuation pieces and special tokens


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


def encode_sentences(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]],
                     tags: Sequence[Sequence[int]] | None, max_length: int) -> list[tuple[list[int], list[int]]]:
    """Piece ids and aligned labels of each sentence (truncated to ``max_length``).

    Raises:
        InvalidInput: the tokenizer is not a fast one (no word alignment).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInput("Token classification needs a fast tokenizer (tokenizer.json) for word alignment.",
                           hint="Save the tokenizer with the tokenizers library (tokenizer.json) in the model folder.")
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length)
    out = []
    for i in range(len(sentences)):
        word_tags = tags[i] if tags is not None else [0] * len(sentences[i])
        out.append((list(enc["input_ids"][i]), align_tags(enc.word_ids(i), word_tags)))
    return out


class TokenTagger(nn.Module):
    """An encoder with a linear layer over every token: logits of shape (b, t, k)."""

    def __init__(self, encoder: nn.Module, labels: Sequence[str], dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.labels = list(labels)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, len(labels))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (b, t, h)
        return self.head(self.dropout(hidden))  # (b, t, k)

    @classmethod
    def from_base(cls, base_dir: Path, labels: Sequence[str], *, dropout: float = 0.1,
                  head_dropout: float | None = None) -> tuple[TokenTagger, PreTrainedTokenizerBase]:
        """A fresh tagger on a local encoder folder, with a newly initialised head."""
        config = AutoConfig.from_pretrained(base_dir, local_files_only=True)
        if hasattr(config, "hidden_dropout_prob"):
            config.hidden_dropout_prob = dropout
        encoder = AutoModel.from_pretrained(base_dir, config=config, local_files_only=True, add_pooling_layer=False)
        tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
        model = cls(encoder, labels, dropout=dropout if head_dropout is None else head_dropout)
        nn.init.normal_(model.head.weight, std=0.02)
        nn.init.zeros_(model.head.bias)
        return model, tokenizer


def train_token_tagger(
    model: TokenTagger, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[str]], config: TrainConfig, *,
    on_step: Callable[[StepReport], None] | None = None, should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune ``model`` in place on tagged sentences.

    Args:
        sentences: the words of each sentence.
        tags: the tag of each word, from ``model.labels``.
        config: batch size, learning rate, schedule, steps… (as for classification).
        on_step: called with a ``StepReport`` every ``config.log_every_steps`` steps.
        should_stop: checked between steps; True ends the loop (cancel).

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
    encoded = encode_sentences(tokenizer, sentences, [[index[t] for t in row] for row in tags], config.max_length)
    lengths = [len(ids) for ids, _ in encoded]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total_steps = config.total_steps(len(encoded))
    warmup = math.floor(config.warmup_ratio * total_steps)
    optimizer = build_optimizer(model, config)  # type: ignore[arg-type]  # same encoder/head layout
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(config.schedule, s, total_steps,
                                                                                      warmup))
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
    model.train()
    step, samples, epoch, stopped = 0, 0, 0, False
    losses: list[tuple[int, float]] = []
    window, window_steps, window_samples = 0.0, 0, 0
    started = window_started = time.perf_counter()
    while step < total_steps and not stopped:
        for batch in length_grouped_batches(lengths, config.batch_size, config.seed + epoch):
            if step >= total_steps:
                break
            if should_stop is not None and should_stop():
                stopped = True
                break
            input_ids, mask = pad_batch([encoded[i][0] for i in batch], pad_id)  # (b, t)
            targets, _ = pad_batch([encoded[i][1] for i in batch], IGNORE)  # (b, t), padding ignored
            logits = model(input_ids, mask)  # (b, t, k)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            value = loss.item()
            if not math.isfinite(value):
                raise InvalidInput(f"The training loss became {value} at step {step + 1}; training stopped.",
                                   hint="Lower learning_rate or keep max_grad_norm set.")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            samples += len(batch)
            window += value
            window_steps += 1
            window_samples += len(batch)
            if step % config.log_every_steps == 0 or step == total_steps:
                now = time.perf_counter()
                losses.append((step, window / window_steps))
                if on_step is not None:
                    on_step(StepReport(step=step, total_steps=total_steps, epoch=epoch, loss=window / window_steps,
                                       learning_rate=optimizer.param_groups[0]["lr"],
                                       samples_per_s=window_samples / max(now - window_started, 1e-9),
                                       elapsed_s=now - started))
                window, window_steps, window_samples, window_started = 0.0, 0, 0, time.perf_counter()
        epoch += 1
    model.eval()
    seconds = time.perf_counter() - started
    return TrainResult(steps=step, samples=samples, seconds=seconds, samples_per_s=samples / max(seconds, 1e-9),
                       final_loss=losses[-1][1] if losses else float("nan"), losses=losses,
                       stopped_early=stopped, stop_reason="cancelled" if stopped else None)


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
        input_ids, mask = pad_batch([ids for ids, _ in chunk], pad_id)
        best = model(input_ids, mask).argmax(dim=-1)  # (b, t)
        for row, (_, firsts) in enumerate(chunk):
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
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

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
