"""CoNLL-2003 English NER with the offline MiniLM: entity-level F1 (seqeval) and the
classic token-level table, resumable.

Trains ``train_token_tagger`` (the one loop, ``loop.fit``; no store, no job) on the whole
``conll2003/train.txt`` (14,041 sentences), scores ``dev.txt`` after each epoch (printed
for the curve) and ``test.txt`` at the end: entity-level precision/recall/F1 per type
(seqeval, IOB2, the CoNLL convention: an entity counts only with its type and both
boundaries right), then the token-level report.

The base is uncased (all-MiniLM-L6-v2 lower-cases its input), so the capital letters
that mark most names in news text are invisible to it: expect less than a cased BERT.

    python benchmarks/train_conll2003.py --epochs 3
    python benchmarks/train_conll2003.py --epochs 1 --limit-train 1000 --no-dev-curve \
        --checkpoint-dir /tmp/chainkeeper-bench/conll-quick      # a quick look

Resumable: the loop's checkpoint goes to ``--checkpoint-dir`` (default
``/tmp/chainkeeper-bench/conll2003``) every 100 steps and at each epoch's end; running
the same command again continues from it. The load average is printed: the machine may
be shared, and other processes slow every timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from _common import datasets_dir, load_average  # noqa: E402  (benchmarks/ is the script's folder)

from chainkeeper.core.settings import default_base_model
from chainkeeper.training.checkpoints import load_checkpoint, remove_checkpoint, save_checkpoint
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.evaluation import format_report
from chainkeeper.training.loop import StepReport, seed_everything
from chainkeeper.training.tokens import TokenTagger, entity_metrics, predict_tags, read_conll, train_token_tagger

TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--head-lr-multiplier", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="linear")
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--no-casing", action="store_true",
                        help="no word-shape embedding (the plain uncased tagger, for comparison)")
    parser.add_argument("--no-dev-curve", action="store_true", help="skip scoring dev at each epoch's end")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 on a shared, busy machine: no threads waiting on each other)")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("/tmp/chainkeeper-bench/conll2003"))
    args = parser.parse_args(argv)

    folder = datasets_dir() / "conll2003"
    if not all((folder / f"{s}.txt").is_file() for s in ("train", "dev", "test")):
        print(f"{folder} lacks train.txt/dev.txt/test.txt. Set CHAINKEEPER_DATASETS_DIR to the folder holding "
              "conll2003/.", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    splits = {s: read_conll((folder / f"{s}.txt").read_text(encoding="utf-8")) for s in ("train", "dev", "test")}
    config = TrainConfig(epochs=args.epochs, learning_rate=args.lr, head_lr_multiplier=args.head_lr_multiplier,
                         batch_size=args.batch_size, max_length=args.max_length, schedule=args.schedule,
                         limit_train=args.limit_train, checkpoint_every_steps=100, log_every_steps=50, labels=TAGS)
    print("conll2003: " + ", ".join(f"{s} {len(v)} sentences" for s, v in splits.items()))
    print(f"base model {default_base_model()}\n{load_average()}, torch threads {torch.get_num_threads()}")
    print(f"config: {config.model_dump(exclude={'class_weights'})}", flush=True)

    seed_everything(config.seed)
    model, tokenizer = TokenTagger.from_base(default_base_model(), TAGS, dropout=config.dropout,
                                             max_length=config.max_length, casing=not args.no_casing)
    print(f"word-shape embedding (casing): {'off' if args.no_casing else 'on'}")
    resume = load_checkpoint(args.checkpoint_dir)
    if resume is not None and (TrainConfig(**resume["config"]) != config
                               or resume.get("casing", False) != (not args.no_casing)):
        print(f"ignoring the checkpoint in {args.checkpoint_dir}: it was written with another config")
        resume = None
    if resume is not None:
        print(f"resuming from step {resume['step']} (epoch {resume['epoch'] + 1})")
    dev_curve: list[tuple[int, float]] = list(resume.get("dev_curve", [])) if resume else []
    prior_s = float(resume.get("wall_s", 0.0)) if resume else 0.0
    started = time.perf_counter()
    dev_words = [w for w, _ in splits["dev"]]
    dev_tags = [t for _, t in splits["dev"]]

    def report(r: StepReport) -> None:
        print(f"  step {r.step}/{r.total_steps} epoch {r.epoch + 1} loss {r.loss:.4f} lr {r.learning_rate:.2e} "
              f"{r.samples_per_s:.0f} sentences/s {prior_s + time.perf_counter() - started:.0f}s", flush=True)

    def checkpoint(state: dict) -> None:
        if state["batch_in_epoch"] == 0 and not args.no_dev_curve:  # an epoch's end: score dev for the curve
            predicted = predict_tags(model, tokenizer, dev_words, max_length=config.max_length)
            model.train()
            f1 = entity_metrics(dev_tags, predicted, TAGS)["f1"]
            dev_curve.append((state["epoch"], f1))
            print(f"  after epoch {state['epoch']}: dev entity F1 {f1:.4f} ({load_average()})", flush=True)
        state["dev_curve"] = list(dev_curve)
        state["casing"] = not args.no_casing
        state["wall_s"] = prior_s + time.perf_counter() - started
        save_checkpoint(args.checkpoint_dir, state)

    result = train_token_tagger(model, tokenizer, [w for w, _ in splits["train"]], [t for _, t in splits["train"]],
                                config, on_step=report, on_checkpoint=checkpoint, resume=resume)
    eval_started = time.perf_counter()
    test_words, test_tags = [w for w, _ in splits["test"]], [t for _, t in splits["test"]]
    m = entity_metrics(test_tags, predict_tags(model, tokenizer, test_words, max_length=config.max_length), TAGS)
    wall = prior_s + time.perf_counter() - started
    print(f"\nCoNLL-2003 test ({len(test_words)} sentences, {time.perf_counter() - eval_started:.0f}s): entity-level "
          f"precision {m['precision']:.4f}, recall {m['recall']:.4f}, F1 {m['f1']:.4f}")
    print(f"trained {result.steps} steps, {config.epochs} epochs, wall {wall:.0f}s (this process "
          f"{result.seconds:.0f}s, {result.samples_per_s:.1f} sentences/s"
          + (f", resumed from step {result.resumed_from_step}" if result.resumed_from_step else "") + ")")
    print("dev entity F1 by epoch: " + ", ".join(f"{e}: {f:.4f}" for e, f in dev_curve))
    print("\nentity level (seqeval):\n" + m["report"])
    print("token level:\n" + format_report(m["token"], digits=4))
    print(load_average() + " — the machine is shared; other processes slow these timings")
    remove_checkpoint(args.checkpoint_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
