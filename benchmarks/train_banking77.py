"""Fine-tuning speed and quality: one epoch of the offline MiniLM on BANKING77.

Runs ``train_classifier`` directly (no store, no job) on a seeded 9,000-row sample of
``banking77/train.csv``, evaluates on the whole ``test.csv`` (3,080 rows, 77 intents) and
prints rows, steps, seconds, samples/s, test accuracy and macro-F1.

Baseline, in the same run: the same model, batch size and learning rate trained with
the Hugging Face ``Trainer`` (``AutoModelForSequenceClassification``) on a slice of
``--slice`` rows, against our loop on the same slice; the printed ratio is samples/s
ours / Trainer. ``Trainer`` needs the ``accelerate`` package; without it the script says
so and times Trainer's recipe as a plain loop instead (``train_hf_plain``), named as such.

    python benchmarks/train_banking77.py                       # full epoch + baseline
    python benchmarks/train_banking77.py --lr 5e-5 --no-baseline
    CHAINKEEPER_DATASETS_DIR=/data/datasets python benchmarks/train_banking77.py

Other processes on the machine slow every number here: the load average is printed
before and after, so read the numbers with it.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from _common import datasets_dir, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)

from chainkeeper.core.settings import default_base_model
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.evaluation import classification_metrics
from chainkeeper.training.loop import StepReport, predict_labels, sample_indices, seed_everything, train_classifier
from chainkeeper.training.model import ClassifierMeta, TextClassifier


def train_ours(
    base: Path, texts: Sequence[str], labels: Sequence[str], label_names: list[str], config: TrainConfig, *,
    verbose: bool,
) -> tuple[TextClassifier, object, float, int]:
    """Our loop; returns the model, its tokenizer, seconds and steps."""
    seed_everything(config.seed)
    model, tokenizer = TextClassifier.from_base(
        base, ClassifierMeta(labels=label_names, pooling=config.pooling, max_length=config.max_length),
        dropout=config.dropout,
    )
    index = {name: i for i, name in enumerate(label_names)}

    def report(r: StepReport) -> None:
        if verbose:
            print(f"  step {r.step}/{r.total_steps}  loss {r.loss:.3f}  lr {r.learning_rate:.2e}  "
                  f"{r.samples_per_s:.0f} samples/s  {r.elapsed_s:.0f}s", flush=True)

    result = train_classifier(model, tokenizer, texts, [index[y] for y in labels], config, on_step=report)
    return model, tokenizer, result.seconds, result.steps


def train_hf_trainer(
    base: Path, texts: Sequence[str], labels: Sequence[str], label_names: list[str], config: TrainConfig,
) -> float | None:
    """The same epoch with transformers.Trainer; returns seconds, or None if unavailable."""
    if importlib.util.find_spec("accelerate") is None:
        print("  Trainer baseline skipped: transformers.Trainer needs the 'accelerate' package, "
              "which is not installed (pip install 'accelerate>=1.1.0').")
        return None
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    index = {name: i for i, name in enumerate(label_names)}
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(label_names),
                                                               local_files_only=True)
    encoded = tokenizer(list(texts), truncation=True, max_length=config.max_length)
    rows = [{"input_ids": ids, "attention_mask": mask, "labels": index[y]}
            for ids, mask, y in zip(encoded["input_ids"], encoded["attention_mask"], labels, strict=True)]
    # transformers 5 takes warm-up as steps only: the same fraction of one epoch as ours.
    steps = math.ceil(len(rows) / config.batch_size)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
            num_train_epochs=1, warmup_steps=math.ceil(config.warmup_ratio * steps), weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm, seed=config.seed, report_to=[], save_strategy="no",
            logging_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows,  # type: ignore[arg-type]
                          data_collator=DataCollatorWithPadding(tokenizer))
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def train_hf_plain(
    base: Path, texts: Sequence[str], labels: Sequence[str], label_names: list[str], config: TrainConfig,
) -> float:
    """What ``Trainer`` does per step, without ``Trainer``: for when accelerate is absent.

    ``AutoModelForSequenceClassification`` (CLS pooler + head), batches drawn at random
    and padded to their own longest text (``DataCollatorWithPadding``), AdamW with a
    linear schedule: Trainer's defaults. Returns seconds.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    seed_everything(config.seed)
    index = {name: i for i, name in enumerate(label_names)}
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(label_names),
                                                               local_files_only=True)
    encoded = tokenizer(list(texts), truncation=True, max_length=config.max_length)["input_ids"]
    targets = torch.as_tensor([index[y] for y in labels])
    steps = -(-len(texts) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
    order = torch.randperm(len(texts)).tolist()
    model.train()
    start = time.perf_counter()
    for b in range(steps):
        batch = order[b * config.batch_size:(b + 1) * config.batch_size]
        padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
        loss = model(**padded, labels=targets[batch]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=9000, help="training rows (seeded sample of train.csv)")
    parser.add_argument("--lr", type=float, default=None, help="encoder learning rate (default: TrainConfig's)")
    parser.add_argument("--head-lr-multiplier", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--pooling", choices=["mean", "cls"], default=None)
    parser.add_argument("--epochs", type=int, default=None, help="passes over the rows (default: 1)")
    parser.add_argument("--schedule", choices=["linear", "cosine", "constant"], default=None)
    parser.add_argument("--slice", type=int, default=1000, help="rows of the Trainer baseline comparison")
    parser.add_argument("--no-full", action="store_true", help="skip the full epoch (baseline only)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Trainer baseline")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quiet", action="store_true", help="no per-step lines")
    args = parser.parse_args(argv)

    folder = datasets_dir() / "banking77"
    if not (folder / "train.csv").is_file() or not (folder / "test.csv").is_file():
        print(f"BANKING77 not found at {folder} (need train.csv and test.csv). "
              "Set CHAINKEEPER_DATASETS_DIR to the folder holding banking77/.", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in {"learning_rate": args.lr, "head_lr_multiplier": args.head_lr_multiplier,
                                   "batch_size": args.batch_size, "pooling": args.pooling,
                                   "epochs": args.epochs, "schedule": args.schedule}.items() if v is not None}
    config = TrainConfig(**overrides)
    base = default_base_model()
    train_texts, train_labels = read_csv(folder / "train.csv")
    test_texts, test_labels = read_csv(folder / "test.csv")
    label_names = sorted(set(train_labels))
    print(f"base model {base}\n{load_average()}, torch threads {torch.get_num_threads()}")
    print(f"config: lr {config.learning_rate:g} (head x{config.head_lr_multiplier:g}), batch {config.batch_size}, "
          f"max_length {config.max_length}, pooling {config.pooling}, warmup {config.warmup_ratio}, "
          f"epochs {config.epochs}, schedule {config.schedule}")

    if not args.no_full:
        keep = sample_indices(len(train_texts), args.rows, config.seed)
        texts, labels = [train_texts[i] for i in keep], [train_labels[i] for i in keep]
        model, tokenizer, seconds, steps = train_ours(base, texts, labels, label_names, config,
                                                      verbose=not args.quiet)
        start = time.perf_counter()
        predicted = predict_labels(model, tokenizer, test_texts, batch_size=config.eval_batch_size)  # type: ignore[arg-type]
        eval_s = time.perf_counter() - start
        metrics = classification_metrics(test_labels, predicted, label_names)
        print(f"\nfull run (ours): rows {len(texts)}, epochs {config.epochs}, steps {steps}, "
              f"seconds {seconds:.1f}, samples/s {len(texts) * config.epochs / seconds:.1f}")
        print(f"test ({len(test_texts)} rows, {eval_s:.1f}s): accuracy {metrics['accuracy']:.4f}, "
              f"macro-F1 {metrics['macro_f1']:.4f}")
        print(load_average())

    if not args.no_baseline:
        keep = sample_indices(len(train_texts), args.slice, config.seed)
        texts, labels = [train_texts[i] for i in keep], [train_labels[i] for i in keep]
        print(f"\nbaseline on a {len(texts)}-row slice, batch {config.batch_size}, lr {config.learning_rate:g}:")
        _, _, ours_s, _ = train_ours(base, texts, labels, label_names, config, verbose=False)
        print(f"  ours: {ours_s:.1f}s, {len(texts) / ours_s:.1f} samples/s")
        hf_s = train_hf_trainer(base, texts, labels, label_names, config)
        if hf_s is not None:
            print(f"  transformers.Trainer: {hf_s:.1f}s, {len(texts) / hf_s:.1f} samples/s")
            print(f"  samples/s ratio ours/Trainer: {hf_s / ours_s:.2f}x")
        else:
            plain_s = train_hf_plain(base, texts, labels, label_names, config)
            print(f"  Trainer's recipe as a plain loop (AutoModelForSequenceClassification, random batches): "
                  f"{plain_s:.1f}s, {len(texts) / plain_s:.1f} samples/s")
            print(f"  samples/s ratio ours/Trainer-recipe: {plain_s / ours_s:.2f}x")
        print(load_average())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
