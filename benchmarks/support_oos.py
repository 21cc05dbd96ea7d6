"""Out-of-scope detection of the support assistant on BANKING77, with no extra data.

The protocol of issue 16: hold 10 of the 77 intents out of training (drawn with a fixed
seed, printed), fine-tune the offline MiniLM through the chain's own loop
(``TextClassifier.from_base`` + ``train_classifier``, no store, no job) on the other 67,
and treat the held-out intents' test texts as out of scope. 10 % of the in-scope training
rows (stratified, seeded) are kept back as *dev*: the temperature (msp) and every
threshold are fitted on them only, so nothing out of scope is seen before the test.

Scorers (``chainkeeper.apps.support.scope``; higher = more out of scope):

- ``msp T=1`` / ``msp T=fit``: 1 − maximum softmax probability, raw and temperature-scaled;
- ``energy``: −logsumexp(logits) (T = 1);
- ``centroid`` / ``knn@k`` on two embeddings: ``base``, the offline MiniLM sentence vector
  (mean pooling + L2, ``apps.support.embedding.SentenceEncoder``, the knowledge base's
  vectors); ``tuned``, the fine-tuned classifier's pooled vector (the head's input),
  L2-normalised. Reference rows are the in-scope training rows.
- ``mahalanobis`` on the same two: squared distance to the nearest class mean under the
  classes' shared, slightly shrunk covariance (vectors as they are, not normalised).

Thresholds, both from dev: ``loss≤1pt`` (at most 1 % of dev texts are right *and*
rejected: in-scope accuracy drops ≤ 1 point on dev; wrong answers may be rejected
freely) and ``reject≤1%`` (at most 1 % of dev texts rejected, needs no labels). A third,
``test 1pt (oracle)``, fits the loss rule on the test's in-scope texts themselves: the
best a threshold can do at exactly the issue's operating point, not something a
deployment can know in advance.

    python benchmarks/support_oos.py                          # full: 67 intents, 3 epochs
    python benchmarks/support_oos.py --limit 3000 --epochs 1  # a smoke run (minutes)
    python benchmarks/support_oos.py --model-dir /tmp/oos-model  # train once, re-score later

The load average is printed with every timing: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import datasets_dir, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)

from chainkeeper.apps.support.embedding import SentenceEncoder
from chainkeeper.apps.support.scope import (
    centroid_distance_scores,
    class_centroids,
    energy_scores,
    fit_class_gaussians,
    fit_temperature,
    fit_threshold,
    knn_distance_scores,
    mahalanobis_scores,
    msp_scores,
    scope_metrics,
)
from chainkeeper.core.settings import default_base_model
from chainkeeper.data.splits import stratified_split
from chainkeeper.training.config import TrainConfig, parse_train_config
from chainkeeper.training.loop import StepReport, seed_everything, train_classifier
from chainkeeper.training.model import META_FILE, ClassifierMeta, TextClassifier

HELD_OUT = 10
GOAL_ACCURACY, GOAL_RECALL, GOAL_LOSS = 0.93, 0.80, 0.01
# Dev budgets of the trade-off table: how much recall each extra point of in-scope accuracy buys.
BUDGETS = (0.01, 0.02, 0.05, 0.10)


def held_out_intents(labels: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` intents drawn with ``seed`` from the sorted label set (the same on every machine)."""
    return sorted(random.Random(seed).sample(sorted(set(labels)), n))


@dataclass
class OosData:
    """The protocol's texts: in-scope train and dev (from train.csv), in-scope and held-out test."""

    folder: Path
    seed: int
    limit: int | None
    held_out: list[str]
    labels: list[str]  # the in-scope intents, sorted: the classifier's label ids
    train_texts: list[str]
    train_ids: list[int]
    dev_texts: list[str]
    dev_ids: np.ndarray
    in_texts: list[str]
    in_ids: np.ndarray
    out_texts: list[str]
    out_intents: list[str]

    def describe(self) -> str:
        return (f"held out ({len(self.held_out)}, seed {self.seed}): {', '.join(self.held_out)}\n"
                f"in scope: {len(self.labels)} intents; train {len(self.train_texts)} rows"
                + (f" (--limit {self.limit})" if self.limit else "")
                + f", dev {len(self.dev_texts)}, test {len(self.in_texts)} in scope + {len(self.out_texts)} "
                  "out of scope")


def banking77_folder() -> Path | None:
    """``banking77/`` of the datasets folder, or None (the reason on stderr) when it is not there."""
    folder = datasets_dir() / "banking77"
    if not (folder / "train.csv").is_file() or not (folder / "test.csv").is_file():
        print(f"BANKING77 not found at {folder} (need train.csv and test.csv). "
              "Set CHAINKEEPER_DATASETS_DIR to the folder holding banking77/.", file=sys.stderr)
        return None
    return folder


def load_oos_data(folder: Path, *, seed: int, dev_fraction: float, limit: int | None) -> OosData:
    """BANKING77 split by the protocol: ``HELD_OUT`` intents drawn with ``seed`` are out of
    scope; the others' training rows are split train / dev (stratified, seeded), then the
    ``limit`` sample of train is kept (stratified too)."""
    all_texts, all_labels = read_csv(folder / "train.csv")
    test_texts, test_labels = read_csv(folder / "test.csv")
    held_out = held_out_intents(all_labels, HELD_OUT, seed)
    labels = sorted(set(all_labels) - set(held_out))
    index = {name: i for i, name in enumerate(labels)}

    # in-scope rows only: train / dev (stratified), then the --limit sample of train
    pool = [i for i, y in enumerate(all_labels) if y in index]
    splits = stratified_split([all_labels[i] for i in pool], seed=seed,
                              fractions={"train": 1 - dev_fraction, "dev": dev_fraction})
    train_rows = [i for i, s in zip(pool, splits, strict=True) if s == "train"]
    if limit and limit < len(train_rows):
        # a stratified sample: every in-scope intent keeps training rows (a class needs them
        # for its centroid and mean), in proportion to its share
        share = limit / len(train_rows)
        kept = stratified_split([all_labels[i] for i in train_rows], seed=seed,
                                fractions={"train": share, "rest": 1 - share})
        train_rows = [i for i, s in zip(train_rows, kept, strict=True) if s == "train"]
    dev_rows = [i for i, s in zip(pool, splits, strict=True) if s == "dev"]
    in_test = [i for i, y in enumerate(test_labels) if y in index]
    out_test = [i for i, y in enumerate(test_labels) if y not in index]
    return OosData(folder=folder, seed=seed, limit=limit, held_out=held_out, labels=labels,
                   train_texts=[all_texts[i] for i in train_rows],
                   train_ids=[index[all_labels[i]] for i in train_rows],
                   dev_texts=[all_texts[i] for i in dev_rows],
                   dev_ids=np.array([index[all_labels[i]] for i in dev_rows]),
                   in_texts=[test_texts[i] for i in in_test],
                   in_ids=np.array([index[test_labels[i]] for i in in_test]),
                   out_texts=[test_texts[i] for i in out_test], out_intents=[test_labels[i] for i in out_test])


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The protocol's options, shared with ``benchmarks/support.py``: training rows, recipe,
    seed, threshold budget, where the trained classifier is kept."""
    parser.add_argument("--limit", type=int, default=None,
                        help="training rows (seeded sample, stratified by intent; default all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1.5e-4)
    parser.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="cosine")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=13, help="held-out intents, dev split, training")
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--max-loss", type=float, default=GOAL_LOSS, help="threshold budget (0.01 = 1 point)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base-model", type=Path, default=None, help="encoder folder (default: offline MiniLM)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="save the trained classifier here; reuse it when it is already there")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The training recipe of ``add_protocol_arguments``' options."""
    return parse_train_config({"epochs": args.epochs, "learning_rate": args.lr, "schedule": args.schedule,
                               "batch_size": args.batch_size, "seed": args.seed, "log_every_steps": 50})


def describe_config(config: TrainConfig) -> str:
    return (f"config: epochs {config.epochs}, lr {config.learning_rate:g} (head x{config.head_lr_multiplier:g}), "
            f"batch {config.batch_size}, max_length {config.max_length}, {config.schedule}, seed {config.seed}")


@torch.inference_mode()
def classifier_outputs(model: TextClassifier, tokenizer: Any, texts: Sequence[str],
                       batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, k) and the pooled vector the head reads (n, hidden), in input order.

    The pooled vector is caught with a forward pre-hook on the head: in eval mode the
    dropout before it is the identity, so it is exactly what the logits were made from.
    """
    model.eval()
    caught: list[torch.Tensor] = []
    hook = model.head.register_forward_pre_hook(lambda _module, args: caught.append(args[0].detach()))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
    logits = np.zeros((len(texts), len(model.meta.labels)), dtype=np.float32)
    pooled = np.zeros((len(texts), model.head.in_features), dtype=np.float32)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=model.meta.max_length, return_tensors="pt")
            logits[idx] = model(enc["input_ids"], enc["attention_mask"]).float().numpy()
            pooled[idx] = caught.pop().float().numpy()
    finally:
        hook.remove()
    return logits, pooled


def train_or_load(model_dir: Path | None, base: Path, labels: list[str], texts: list[str], label_ids: list[int],
                  config: TrainConfig) -> tuple[TextClassifier, Any, str]:
    """The classifier of ``model_dir`` when it was trained on these labels, else a new one
    (then saved to ``model_dir`` when given)."""
    if model_dir and (model_dir / META_FILE).is_file():
        model, tokenizer = TextClassifier.load(model_dir)
        if model.meta.labels == labels:
            return model, tokenizer, f"loaded from {model_dir} (not retrained)"
        print(f"{model_dir} holds a classifier of other labels: training anew")
    seed_everything(config.seed)
    model, tokenizer = TextClassifier.from_base(
        base, ClassifierMeta(labels=labels, pooling=config.pooling, max_length=config.max_length),
        dropout=config.dropout)
    started = time.perf_counter()

    def report(r: StepReport) -> None:
        print(f"  step {r.step}/{r.total_steps} epoch {r.epoch + 1} loss {r.loss:.4f} lr {r.learning_rate:.2e} "
              f"{r.samples_per_s:.0f} samples/s {time.perf_counter() - started:.0f}s", flush=True)

    result = train_classifier(model, tokenizer, texts, label_ids, config, on_step=report)
    if model_dir:
        model.save(model_dir, tokenizer)
    return model, tokenizer, (f"trained {result.steps} steps in {result.seconds:.0f}s "
                              f"({result.samples_per_s:.1f} samples/s, {load_average()})")


def evaluate(name: str, dev: np.ndarray, dev_correct: np.ndarray, test_in: np.ndarray, test_correct: np.ndarray,
             test_out: np.ndarray, *, max_loss: float, score_us: float) -> list[dict[str, Any]]:
    """One row per threshold rule for one scorer's dev and test scores; the loss rule's row
    also holds ``budgets``: test recall and loss of the dev-fitted loss rule at each of ``BUDGETS``."""
    family = name.split()[0].split("@")[0]  # "knn@10 tuned" -> "knn", as scope.SCORERS names it
    rules = [("loss≤1pt", fit_threshold(family, dev, correct=dev_correct, max_loss=max_loss)),
             ("reject≤1%", fit_threshold(family, dev, max_loss=max_loss)),
             ("test 1pt (oracle)", fit_threshold(family, test_in, correct=test_correct, max_loss=max_loss))]
    rows: list[dict[str, Any]] = []
    for rule, fitted in rules:
        m = scope_metrics(test_in, test_correct, test_out, fitted.threshold)
        rows.append({"scorer": name, "rule": rule, "threshold": fitted.threshold,
                     "dev_rejected": fitted.dev_rejected, "score_us_per_text": score_us, **m})
    rows[0]["budgets"] = {}
    for budget in BUDGETS:
        fitted = fit_threshold(family, dev, correct=dev_correct, max_loss=budget)
        m = scope_metrics(test_in, test_correct, test_out, fitted.threshold)
        rows[0]["budgets"][f"{budget:g}"] = {k: m[k] for k in ("oos_recall", "oos_precision", "accuracy_loss")}
    return rows


def print_budgets(rows: list[dict[str, Any]]) -> None:
    cells = [f"{b * 100:g} pt" for b in BUDGETS]
    print("| scorer | " + " | ".join(cells) + " |")
    print("|---|" + "---|" * len(cells))
    for r in rows:
        if "budgets" in r:
            print(f"| {r['scorer']} | " + " | ".join(
                f"{v['oos_recall']:.1%} ({100 * v['accuracy_loss']:.2f})" for v in r["budgets"].values()) + " |")


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"| {'scorer':<17} | {'threshold rule':<17} | AUROC | in-scope acc | with rejection | loss (pt) "
              f"| in-scope rejected | OOS recall | OOS precision | µs/text |")
    print(header)
    print("|" + "|".join("-" * (len(cell) if cell else 1) for cell in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['scorer']:<17} | {r['rule']:<17} | {r['auroc']:.3f} | {r['accuracy']:>12.2%} "
              f"| {r['accuracy_with_rejection']:>14.2%} | {100 * r['accuracy_loss']:>9.2f} "
              f"| {r['in_scope_rejected']:>17.2%} | {r['oos_recall']:>10.2%} | {r['oos_precision']:>13.2%} "
              f"| {r['score_us_per_text']:>7.1f} |")


def print_held_out(best: dict[str, Any], out_scores: np.ndarray, out_intents: list[str],
                   predicted: list[str]) -> None:
    """Recall per held-out intent at the best rule's threshold, and the in-scope intent its
    texts are most often taken for: where the gap is."""
    print(f"\nper held-out intent, {best['scorer']} ({best['rule']}, threshold {best['threshold']:.4g}):")
    print("| held-out intent | texts | OOS recall | most often classified as (share) |")
    print("|---|---|---|---|")
    for intent in sorted(set(out_intents)):
        rows = [i for i, y in enumerate(out_intents) if y == intent]
        caught = float(np.mean(out_scores[rows] > best["threshold"]))
        taken, count = Counter(predicted[i] for i in rows).most_common(1)[0]
        print(f"| {intent} | {len(rows)} | {caught:.1%} | {taken} ({count / len(rows):.0%}) |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_arguments(parser)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 10], help="neighbours of the knn scorers")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--scores", type=Path, default=None, help="also write every score here (.npz)")
    args = parser.parse_args(argv)

    folder = banking77_folder()
    if folder is None:
        return 2
    torch.set_num_threads(args.threads)
    base = args.base_model or default_base_model()
    config = train_config(args)
    data = load_oos_data(folder, seed=args.seed, dev_fraction=args.dev_fraction, limit=args.limit)
    labels, held_out = data.labels, data.held_out
    train_texts, train_ids, dev_texts, dev_ids = data.train_texts, data.train_ids, data.dev_texts, data.dev_ids
    in_texts, in_ids, out_texts = data.in_texts, data.in_ids, data.out_texts

    print(f"BANKING77 from {folder}; base model {base}\n{load_average()}, torch threads {torch.get_num_threads()}")
    print(data.describe())
    print(describe_config(config), flush=True)

    model, tokenizer, how = train_or_load(args.model_dir, base, labels, train_texts, train_ids, config)
    print(f"classifier: {how}", flush=True)
    start = time.perf_counter()
    train_logits, train_tuned = classifier_outputs(model, tokenizer, train_texts)
    dev_logits, dev_tuned = classifier_outputs(model, tokenizer, dev_texts)
    in_logits, in_tuned = classifier_outputs(model, tokenizer, in_texts)
    out_logits, out_tuned = classifier_outputs(model, tokenizer, out_texts)
    encoder = SentenceEncoder(base)
    train_base, dev_base, in_base, out_base = (encoder.encode(t) for t in (train_texts, dev_texts, in_texts,
                                                                           out_texts))
    print(f"logits and embeddings of {len(train_texts) + len(dev_texts) + len(in_texts) + len(out_texts)} texts in "
          f"{time.perf_counter() - start:.0f}s ({load_average()})", flush=True)

    dev_correct, in_correct = dev_logits.argmax(axis=1) == dev_ids, in_logits.argmax(axis=1) == in_ids
    temperature = fit_temperature(dev_logits, dev_ids)
    print(f"in-scope accuracy: dev {dev_correct.mean():.2%}, test {in_correct.mean():.2%} "
          f"(train {np.mean(train_logits.argmax(axis=1) == np.array(train_ids)):.2%}); "
          f"temperature fitted on dev: {temperature:.3f}\n")

    rows: list[dict[str, Any]] = []
    n_scored = len(dev_texts) + len(in_texts) + len(out_texts)

    scores: dict[str, list[np.ndarray]] = {}

    def add(name: str, part: str, score: Any) -> None:
        (dev, test_in, test_out), seconds = timed(lambda: [score(x) for x in parts[part]])
        scores[name] = [dev, test_in, test_out]
        rows.extend(evaluate(name, dev, dev_correct, test_in, in_correct, test_out, max_loss=args.max_loss,
                             score_us=seconds / n_scored * 1e6))

    parts = {"logits": (dev_logits, in_logits, out_logits), "base": (dev_base, in_base, out_base),
             "tuned": (dev_tuned, in_tuned, out_tuned)}
    add("msp T=1", "logits", msp_scores)
    add("msp T=fit", "logits", lambda z: msp_scores(z, temperature))
    add("energy", "logits", energy_scores)
    for kind, train_vectors in (("base", train_base), ("tuned", train_tuned)):
        centroids = class_centroids(train_vectors, train_ids)
        add(f"centroid {kind}", kind, lambda x, c=centroids: centroid_distance_scores(x, c))
        for k in args.k:
            add(f"knn@{k} {kind}", kind, lambda x, r=train_vectors, k=k: knn_distance_scores(x, r, k=k))
        gaussians = fit_class_gaussians(train_vectors, train_ids)
        add(f"mahalanobis {kind}", kind, lambda x, g=gaussians: mahalanobis_scores(x, g))

    print(f"Out-of-scope detection, BANKING77 test: {len(in_texts)} in-scope texts ({len(labels)} intents) and "
          f"{len(out_texts)} out-of-scope texts ({len(held_out)} held-out intents); thresholds fitted on "
          f"{len(dev_texts)} in-scope dev texts, budget {args.max_loss:.0%}.")
    print_table(rows)
    print("\nAUROC: held-out intents' test texts are the positives. 'with rejection': accepted and right, over all "
          "in-scope test texts; loss = the difference; in-scope rejected: handed over although in scope (right or "
          "wrong). OOS precision: held-out texts among all rejected. "
          "µs/text: the scorer alone (logits and embeddings already computed).")
    print("\nTrade-off, dev-fitted loss rule at a larger budget: OOS recall on test (in-scope accuracy loss on "
          "test, points):")
    print_budgets(rows)
    deployable = [r for r in rows if r["rule"] != "test 1pt (oracle)"]
    best = max(deployable, key=lambda r: (r["accuracy_loss"] <= GOAL_LOSS + 1e-9, r["oos_recall"]))
    print(f"\ngoal: in-scope accuracy ≥ {GOAL_ACCURACY:.0%} (measured {in_correct.mean():.2%}), OOS recall ≥ "
          f"{GOAL_RECALL:.0%} at loss ≤ {GOAL_LOSS * 100:.0f} pt; best dev-fitted: {best['scorer']} "
          f"({best['rule']}): recall {best['oos_recall']:.2%}, loss {best['accuracy_loss'] * 100:.2f} pt")
    print_held_out(best, scores[best["scorer"]][2], data.out_intents,
                   [labels[j] for j in out_logits.argmax(axis=1)])
    print(load_average())
    if args.scores:
        arrays: dict[str, Any] = {f"{name}/{part}": v for name, parts_ in scores.items()
                                  for part, v in zip(("dev", "in", "out"), parts_, strict=True)}
        np.savez_compressed(args.scores, dev_correct=dev_correct, in_correct=in_correct,
                            out_intents=np.array(data.out_intents), **arrays)
    if args.json:
        args.json.write_text(json.dumps({"held_out": held_out, "temperature": temperature, "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "rows": rows}, indent=2),
            encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
