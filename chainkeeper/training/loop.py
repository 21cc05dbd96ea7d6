"""The fine-tuning loop of a sequence classifier, in plain PyTorch.

``fit`` reads as the sequence it runs: batch, forward, loss, backward, clip, step,
schedule, log, evaluate, checkpoint. Every task runs it (``train_classifier`` here,
token tagging in ``tokens``, masked and causal language modelling in ``pretraining``);
a task only supplies the loss of a batch of row indices. What makes it fast on a CPU is what it does *not* do:

- it tokenises every text once, up front, and pads each batch only to its own longest
  text (dynamic padding), so a batch of short questions costs short-question time;
- batches are *length-grouped*: rows are shuffled, cut into chunks of ~50 batches, each
  chunk sorted by length, cut into batches, and the batches shuffled again. Padding
  nearly vanishes while the order stays random from step to step;
- AdamW runs fused (one kernel over all parameters) where the build has it, else
  ``foreach``.

Everything random (head initialisation, dropout, sampling, batch order) follows
``config.seed``. Threads are the caller's business (``torch.set_num_threads``), set once
at the entry point from ``settings.torch_threads``.

Scale-out (Ray Train, issue 5) wraps this same loop; resume, early stopping and NaN
guards come with it for every task.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.model import TextClassifier

# Batches per length-sorted chunk: large enough that neighbours have similar lengths,
# small enough that the batch order stays well mixed.
CHUNK_BATCHES = 50
# Parameters whose names end like this get no weight decay (biases, LayerNorm gains).
NO_DECAY_SUFFIXES = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


@dataclass(frozen=True)
class StepReport:
    """What the loop says every ``log_every_steps`` steps (and at its last step)."""

    step: int
    total_steps: int
    epoch: int
    loss: float  # mean training loss over the steps since the previous report
    learning_rate: float  # the encoder's current learning rate
    samples_per_s: float  # over the steps since the previous report
    elapsed_s: float


@dataclass(frozen=True)
class TrainResult:
    steps: int
    samples: int
    seconds: float
    samples_per_s: float
    final_loss: float
    losses: list[tuple[int, float]]  # (step, mean loss of the window ending there)
    stopped_early: bool  # the loop ended before its last step (see stop_reason)
    stop_reason: str | None = None  # "cancelled" (should_stop) or "early_stopping"
    resumed_from_step: int | None = None  # the checkpoint's step when the run was resumed


# --- pure pieces -----------------------------------------------------------------------


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier at ``step``: 1) linear warm-up from 0 to 1 over
    ``warmup_steps``, 2) linear decay from 1 to 0 at ``total_steps``.

    Args:
        step: optimiser steps taken so far (0 before the first).
        total_steps: steps of the whole run.
        warmup_steps: steps of the rise; 0 starts at the peak.

    Returns:
        A factor in [0, 1].
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    remaining = total_steps - step
    return max(0.0, remaining / max(1, total_steps - warmup_steps))


def lr_multiplier(schedule: Literal["linear", "cosine", "constant"], step: int, total_steps: int,
                  warmup_steps: int) -> float:
    """Learning-rate multiplier at ``step`` for a named schedule: linear warm-up, then
    linear or cosine decay to 0 at ``total_steps``, or a constant 1.

    Args:
        schedule: "linear", "cosine" or "constant".
        step: optimiser steps taken so far.
        total_steps: steps of the whole run.
        warmup_steps: steps of the rise; 0 starts at the peak.

    Returns:
        A factor in [0, 1].
    """
    if schedule == "linear" or step < warmup_steps:
        return linear_warmup_decay(step, total_steps, warmup_steps)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def class_weight_vector(label_ids: Sequence[int], label_names: Sequence[str],
                        spec: str | Mapping[str, float]) -> torch.Tensor | None:
    """Per-class loss weights for imbalanced labels.

    Args:
        label_ids: the training rows' label ids.
        label_names: the head's labels, in output order.
        spec: "none"; "balanced" (``n / (k * count)``, as scikit-learn; a label with no
            rows gets 1); or a {label: weight} table (unnamed labels get 1).

    Returns:
        A float tensor of shape (k,), or None for "none".

    Raises:
        InvalidInput: the table names a label the head does not have.
    """
    if spec == "none":
        return None
    k = len(label_names)
    if spec == "balanced":
        counts = [0] * k
        for y in label_ids:
            counts[y] += 1
        n = len(label_ids)
        return torch.tensor([n / (k * c) if c else 1.0 for c in counts], dtype=torch.float)
    assert isinstance(spec, Mapping)
    unknown = sorted(set(spec) - set(label_names))
    if unknown:
        raise InvalidInput(f"class_weights names label(s) {', '.join(map(repr, unknown))} the data does not have.",
                           hint=f"Labels: {', '.join(label_names)}.")
    return torch.tensor([float(spec.get(name, 1.0)) for name in label_names], dtype=torch.float)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Indices of ``lengths`` cut into batches of similar length, in a random order.

    Args:
        lengths: token count of each row.
        batch_size: rows per batch (the last batch of a chunk may be shorter).
        seed: fixes the shuffle; pass a different one per epoch.

    Returns:
        Batches of row indices; every index appears exactly once.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * CHUNK_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        group = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(group[i:i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def sample_indices(n_rows: int, limit: int | None, seed: int) -> list[int]:
    """A deterministic sample of at most ``limit`` row indices, in their original order.

    Args:
        n_rows: rows available.
        limit: how many to keep; None keeps all.
        seed: fixes which rows are kept.
    """
    if limit is None or limit >= n_rows:
        return list(range(n_rows))
    return sorted(random.Random(seed).sample(range(n_rows), limit))


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one.

    Returns:
        ``input_ids`` and ``attention_mask``, both of shape (batch, longest).
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


# --- set-up -----------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's and PyTorch's generators (call before building the model, so the
    head's initialisation is reproducible too)."""
    random.seed(seed)
    torch.manual_seed(seed)


def tokenize_once(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_length``, without padding."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return [list(ids) for ids in encoded["input_ids"]]


# Parameters a model gets fresh on top of its base: they learn at the head's rate.
FRESH_MODULES = ("head.", "casing.")
# The embedding rows of tokens added to the base's vocabulary (``training.vocabulary``),
# a parameter of this name while they train: they learn at ``new_tokens_lr_multiplier``.
NEW_ROWS_PARAMETER = "new_rows"


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (or SGD with momentum, ``config.optimizer``) with four groups: body weights
    (decayed), body biases and norms (not decayed), and the head's weights and biases at
    ``learning_rate * head_lr_multiplier``; a fifth for the embedding rows of tokens
    added to the base's vocabulary (``training.vocabulary``), at ``learning_rate *
    new_tokens_lr_multiplier``.

    The head is every parameter under a ``head`` module (the classifier's and the
    tagger's linear layer) or a ``casing`` one (the tagger's word-shape embedding, new
    as well); a language model has none, so all of it learns at ``learning_rate``. The
    fresh head starts from noise while the encoder is already good; a faster head lets
    the encoder move gently (on BANKING77 at 1e-4: 79% → 90%
    test accuracy).
    """
    head_lr = config.learning_rate * config.head_lr_multiplier
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(h, d): [] for h in (False, True) for d in (True, False)}
    new_rows: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith("." + NEW_ROWS_PARAMETER):
            new_rows.append(param)
        else:
            groups[(name.startswith(FRESH_MODULES), not name.endswith(NO_DECAY_SUFFIXES))].append(param)
    param_groups = [
        {"params": params, "weight_decay": config.weight_decay if decayed else 0.0,
         "lr": head_lr if is_head else config.learning_rate}
        for (is_head, decayed), params in groups.items() if params
    ]
    if new_rows:
        param_groups.append({"params": new_rows, "weight_decay": config.weight_decay,
                             "lr": config.learning_rate * config.new_tokens_lr_multiplier})
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=config.learning_rate, momentum=config.momentum, foreach=True)
    try:
        # One fused kernel over all parameters: the fastest CPU path in recent PyTorch.
        return torch.optim.AdamW(param_groups, lr=config.learning_rate, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - builds without the fused CPU kernel
        return torch.optim.AdamW(param_groups, lr=config.learning_rate, foreach=True)


# --- the loop ---------------------------------------------------------------------------


def fit(
    model: nn.Module,
    lengths: Sequence[int],
    batch_loss: Callable[[list[int]], torch.Tensor],
    config: TrainConfig,
    *,
    on_step: Callable[[StepReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_eval: Callable[[int], float | None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place: the one loop every task runs (classification, tagging,
    masked and causal language modelling); only ``batch_loss`` differs.

    Args:
        model: the module whose parameters are optimised (``build_optimizer``).
        lengths: token count of each training row (for length-grouped batches).
        batch_loss: the mean loss of the rows at the given indices (a forward pass).
        config: the run's hyper-parameters.
        on_step: called with a ``StepReport`` every ``config.log_every_steps`` steps and
            after the last step.
        should_stop: checked between batches; returning True ends the loop early (cancel).
        on_eval: called with the step number every ``config.eval_every_steps`` steps,
            with the model in eval mode; it returns the dev metric early stopping
            watches (higher is better), or None when there is nothing to score.
        on_checkpoint: called with a checkpoint dictionary (see
            ``chainkeeper.training.checkpoints``) every ``config.checkpoint_every_steps``
            steps and at each epoch's end.
        resume: a checkpoint from an earlier, interrupted run of the same config; the
            loop restores its weights, optimiser, scheduler, generators and position.

    Returns:
        Steps, samples, time, speed and losses of the run.

    Raises:
        InvalidInput: the loss or the weights stopped being finite numbers (the last
            checkpoint is the last good state).
    """
    total_steps = config.total_steps(len(lengths))
    warmup_steps = math.floor(config.warmup_ratio * total_steps)
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(config.schedule, s, total_steps, warmup_steps)
    )
    accumulate = config.gradient_accumulation_steps

    step, samples, epoch, next_batch = 0, 0, 0, 0
    losses: list[tuple[int, float]] = []
    best_metric, evals_without_gain = -math.inf, 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        step, epoch, next_batch = int(resume["step"]), int(resume["epoch"]), int(resume["batch_in_epoch"])
        samples = int(resume.get("samples", 0))
        losses = [(int(a), float(b)) for a, b in resume.get("losses", [])]
        best_metric, evals_without_gain = resume.get("early_stopping", (-math.inf, 0))
        torch.set_rng_state(resume["rng_torch"])
        random.setstate(resume["rng_python"])

    def checkpoint() -> None:
        if on_checkpoint is not None:
            # A step can turn weights into inf/NaN before any loss shows it; such a state
            # must never replace the last good checkpoint.
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                raise InvalidInput(
                    f"The model's weights stopped being finite numbers at step {step}; training stopped.",
                    hint="Lower learning_rate or keep max_grad_norm set; the last good checkpoint is kept.",
                )
            on_checkpoint({
                "step": step, "epoch": epoch, "batch_in_epoch": next_batch, "samples": samples,
                "losses": list(losses), "early_stopping": (best_metric, evals_without_gain),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng_torch": torch.get_rng_state(),
                "rng_python": random.getstate(), "config": config.model_dump(mode="json"),
            })

    model.train()
    stop_reason: str | None = None
    window_loss, window_steps, window_samples = 0.0, 0, 0
    started = window_started = time.perf_counter()
    while step < total_steps and stop_reason is None:
        # The batch order of an epoch depends only on the seed and the epoch, so a
        # resumed run finds its place by index.
        batches = length_grouped_batches(lengths, config.batch_size, config.seed + epoch)
        micro, step_loss, step_samples = 0, 0.0, 0
        while next_batch < len(batches) and step < total_steps:
            if should_stop is not None and should_stop():
                stop_reason = "cancelled"
                break
            batch = batches[next_batch]
            # forward: the task's loss over this batch (padded to its own longest row)
            loss = batch_loss(batch)
            value = loss.item()
            if not math.isfinite(value):
                raise InvalidInput(
                    f"The training loss became {value} at step {step + 1}; training stopped.",
                    hint="Lower learning_rate, keep max_grad_norm set, or check the data; "
                         "the last checkpoint before this step is kept.",
                )
            # backward: accumulated gradients average over the step's batches
            (loss / accumulate).backward()  # type: ignore[no-untyped-call]  # unannotated in torch
            next_batch += 1
            micro += 1
            step_loss += value
            step_samples += len(batch)
            if micro < accumulate and next_batch < len(batches):
                continue
            # clip, step, schedule
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            samples += step_samples
            window_loss += step_loss / micro
            window_steps += 1
            window_samples += step_samples
            micro, step_loss, step_samples = 0, 0.0, 0
            # log
            if step % config.log_every_steps == 0 or step == total_steps:
                now = time.perf_counter()
                mean_loss = window_loss / window_steps
                losses.append((step, mean_loss))
                if on_step is not None:
                    on_step(StepReport(
                        step=step, total_steps=total_steps, epoch=epoch, loss=mean_loss,
                        learning_rate=optimizer.param_groups[0]["lr"],
                        samples_per_s=window_samples / max(now - window_started, 1e-9),
                        elapsed_s=now - started,
                    ))
                window_loss, window_steps, window_samples, window_started = 0.0, 0, 0, time.perf_counter()
            # evaluate (and maybe stop early)
            if on_eval is not None and config.eval_every_steps and step % config.eval_every_steps == 0:
                model.eval()
                eval_started = time.perf_counter()
                metric = on_eval(step)
                # Evaluation time is not training time: keep it out of samples/s.
                window_started += time.perf_counter() - eval_started
                model.train()
                if metric is not None and config.early_stopping_patience is not None:
                    if metric > best_metric:
                        best_metric, evals_without_gain = metric, 0
                    else:
                        evals_without_gain += 1
                        if evals_without_gain >= config.early_stopping_patience:
                            stop_reason = "early_stopping"
                            break
            # checkpoint
            if config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
                checkpoint()
        if stop_reason is None and next_batch >= len(batches):
            epoch, next_batch = epoch + 1, 0
            checkpoint()  # an epoch's end is always a resumable point

    if window_steps:  # a stop between two reports: keep the partial window's loss
        losses.append((step, window_loss / window_steps))
    model.eval()
    seconds = time.perf_counter() - started
    return TrainResult(
        steps=step, samples=samples, seconds=seconds,
        samples_per_s=samples / max(seconds, 1e-9),
        final_loss=losses[-1][1] if losses else float("nan"),
        losses=losses, stopped_early=stop_reason is not None, stop_reason=stop_reason,
        resumed_from_step=int(resume["step"]) if resume is not None else None,
    )


def train_classifier(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    config: TrainConfig,
    **hooks: Any,
) -> TrainResult:
    """Fine-tune a sequence classifier in place on texts and their label ids.

    Args:
        model: a classifier whose head has ``len(model.meta.labels)`` outputs.
        tokenizer: the encoder's tokenizer.
        train_texts: training texts (``config.limit_train`` samples them).
        train_labels: label id of each text, in ``range(len(model.meta.labels))``.
        config: the run's hyper-parameters.
        **hooks: ``on_step``, ``should_stop``, ``on_eval``, ``on_checkpoint``, ``resume``
            (see ``fit``).

    Returns:
        Steps, samples, time, speed and losses of the run.

    Raises:
        InvalidInput: no texts, lengths differ, a label id is out of range, or the loss
            stopped being a finite number (the last checkpoint is the last good state).
    """
    if len(train_texts) != len(train_labels):
        raise InvalidInput(f"{len(train_texts)} texts but {len(train_labels)} labels were given for training.")
    if not train_texts:
        raise InvalidInput("There are no training rows.", hint="Check the dataset version's train split.")
    n_labels = len(model.meta.labels)
    bad = [y for y in train_labels if not 0 <= y < n_labels]
    if bad:
        raise InvalidInput(f"Label id {bad[0]} is out of range for {n_labels} labels.")

    seed_everything(config.seed)
    keep = sample_indices(len(train_texts), config.limit_train, config.seed)
    token_ids = tokenize_once(tokenizer, [train_texts[i] for i in keep], config.max_length)
    labels = torch.as_tensor([train_labels[i] for i in keep], dtype=torch.long)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    weights = class_weight_vector(labels.tolist(), model.meta.labels, config.class_weights)
    loss_fn = nn.CrossEntropyLoss(weight=weights)

    def batch_loss(batch: list[int]) -> torch.Tensor:
        input_ids, attention_mask = pad_batch([token_ids[i] for i in batch], pad_id)  # (b, t)
        loss: torch.Tensor = loss_fn(model(input_ids, attention_mask), labels[batch])  # logits (b, n_labels)
        return loss

    return fit(model, [len(ids) for ids in token_ids], batch_loss, config, **hooks)


def predict_labels(
    model: TextClassifier, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, batch_size: int = 128
) -> list[str]:
    """The most probable label of each text, in input order (model put in eval mode)."""
    model.eval()
    probs = model.predict_proba(tokenizer, list(texts), batch_size=batch_size)  # (n, n_labels)
    return [model.meta.labels[i] for i in probs.argmax(dim=-1).tolist()]
