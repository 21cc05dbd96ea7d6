"""Our loop against the Hugging Face ``Trainer``: speed, dev accuracy and peak memory.

The baseline a user would pick: ``transformers.Trainer`` with
``AutoModelForSequenceClassification`` and ``DataCollatorWithPadding``, on the same
offline MiniLM, the same BANKING77 training slice, batch size, learning rate, sequence
length, warm-up and number of steps (one epoch). Ours is ``train_classifier`` with its
defaults (mean pooling, head at 20x, length-grouped batches, fused AdamW).

Each side runs in its own fresh process (spawned one after the other, never together),
so its peak resident memory (``ru_maxrss``) is its own; both are then scored on the
same dev rows (drawn from train, disjoint from the slice). Printed: seconds,
samples/s, dev accuracy, peak RSS, and the samples/s ratio ours / Trainer.

    python benchmarks/train_vs_trainer.py --rows 2000 --dev 1000
    python benchmarks/train_vs_trainer.py --threads 2

Needs ``accelerate`` (``pip install -e '.[bench]'``). The load average is printed before
and after: on a shared machine other processes slow both sides.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from typing import Any

from _common import datasets_dir, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)


def _data(rows: int, dev: int, seed: int) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    texts, labels = read_csv(datasets_dir() / "banking77" / "train.csv")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    train, held = order[:rows], order[rows:rows + dev]
    return ([texts[i] for i in train], [labels[i] for i in train], [texts[i] for i in held],
            [labels[i] for i in held], sorted(set(labels)))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_ours(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    from chainkeeper.core.settings import default_base_model
    from chainkeeper.training.config import TrainConfig
    from chainkeeper.training.loop import predict_labels, seed_everything, train_classifier
    from chainkeeper.training.model import ClassifierMeta, TextClassifier

    torch.set_num_threads(args["threads"])
    texts, labels, dev_texts, dev_labels, names = _data(args["rows"], args["dev"], args["seed"])
    config = TrainConfig(batch_size=args["batch_size"], learning_rate=args["lr"], max_length=args["max_length"],
                         seed=args["seed"], checkpoint_every_steps=None)
    seed_everything(config.seed)
    model, tokenizer = TextClassifier.from_base(default_base_model(), ClassifierMeta(labels=names,
                                                max_length=config.max_length), dropout=config.dropout)
    index = {n: i for i, n in enumerate(names)}
    cpu = time.process_time()
    result = train_classifier(model, tokenizer, texts, [index[y] for y in labels], config)
    cpu = time.process_time() - cpu
    predicted = predict_labels(model, tokenizer, dev_texts)
    accuracy = sum(p == y for p, y in zip(predicted, dev_labels, strict=True)) / len(dev_labels)
    return {"seconds": result.seconds, "cpu_seconds": cpu, "steps": result.steps,
            "samples_per_s": len(texts) / result.seconds, "samples_per_cpu_s": len(texts) / cpu,
            "dev_accuracy": accuracy, "peak_mb": _peak_mb()}


def run_trainer(args: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from chainkeeper.core.settings import default_base_model

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args["threads"])
    texts, labels, dev_texts, dev_labels, names = _data(args["rows"], args["dev"], args["seed"])
    index = {n: i for i, n in enumerate(names)}
    base = default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(names), local_files_only=True)
    enc = tokenizer(texts, truncation=True, max_length=args["max_length"])
    rows = [{"input_ids": i, "attention_mask": m, "labels": index[y]}
            for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)]
    dev_enc = tokenizer(dev_texts, truncation=True, max_length=args["max_length"])
    dev_rows = [{"input_ids": i, "attention_mask": m} for i, m in zip(dev_enc["input_ids"], dev_enc["attention_mask"],
                                                                       strict=True)]
    steps = math.ceil(len(rows) / args["batch_size"])
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args["batch_size"], per_device_eval_batch_size=128,
            learning_rate=args["lr"], num_train_epochs=1, warmup_steps=math.ceil(0.06 * steps), weight_decay=0.01,
            max_grad_norm=1.0, seed=args["seed"], report_to=[], save_strategy="no", logging_strategy="no",
            use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=targs, train_dataset=rows,  # type: ignore[arg-type]
                          data_collator=DataCollatorWithPadding(tokenizer))
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        logits = trainer.predict(dev_rows).predictions  # type: ignore[arg-type]
    predicted = [names[i] for i in logits.argmax(axis=-1).tolist()]
    accuracy = sum(p == y for p, y in zip(predicted, dev_labels, strict=True)) / len(dev_labels)
    return {"seconds": seconds, "cpu_seconds": cpu, "steps": steps, "samples_per_s": len(texts) / seconds,
            "samples_per_cpu_s": len(texts) / cpu, "dev_accuracy": accuracy, "peak_mb": _peak_mb()}


def _in_fresh_process(target: Any, args: dict[str, Any]) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(target, (args,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="training rows (a seeded slice of train.csv)")
    parser.add_argument("--dev", type=int, default=1000, help="dev rows, disjoint from the slice")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    args = vars(parser.parse_args(argv))
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        print("transformers.Trainer needs 'accelerate': pip install -e '.[bench]'", file=sys.stderr)
        return 2
    print(f"BANKING77 slice: {args['rows']} train rows, {args['dev']} dev rows; batch {args['batch_size']}, "
          f"lr {args['lr']:g}, max_length {args['max_length']}, 1 epoch, torch threads {args['threads']}")
    print(load_average(), flush=True)
    ours = _in_fresh_process(run_ours, args)
    print(f"ours:    {ours}", flush=True)
    theirs = _in_fresh_process(run_trainer, args)
    print(f"Trainer: {theirs}", flush=True)
    print("\n| loop | steps | wall s | samples/s | CPU s | samples per CPU-s | dev accuracy | peak RSS (MB) |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in (("Chainkeeper `train_classifier`", ours), ("`transformers.Trainer`", theirs)):
        print(f"| {name} | {r['steps']} | {r['seconds']:.1f} | {r['samples_per_s']:.1f} | {r['cpu_seconds']:.1f} | "
              f"{r['samples_per_cpu_s']:.1f} | {r['dev_accuracy']:.4f} | {r['peak_mb']:.0f} |")
    # On a shared machine the wall-clock ratio depends on what else ran meanwhile; CPU
    # time (the process's own, all threads) depends much less on it.
    print(f"\nsamples/s ratio ours / Trainer: {ours['samples_per_s'] / theirs['samples_per_s']:.2f}x wall, "
          f"{ours['samples_per_cpu_s'] / theirs['samples_per_cpu_s']:.2f}x per CPU-second; "
          f"dev accuracy {ours['dev_accuracy']:.4f} vs {theirs['dev_accuracy']:.4f}")
    print(load_average() + " — the machine is shared; both sides ran one after the other under this load")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
