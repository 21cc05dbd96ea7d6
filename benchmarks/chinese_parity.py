"""English/Chinese parity on the built-in customer-service sample: per-language test
accuracy and macro-F1 with and without vocabulary extension, in one run, same seed.

Trains ``train_classifier`` (our loop, no store, no job) with the quickstart's default
config on the sample's ``train.csv`` (601 rows, 60 % English, 40 % Chinese, ten intents)
and scores ``test.csv`` (150 rows) per language (``training.language_metrics``). Routes:

- ``baseline``: the base tokenizer as it is (most Chinese characters are ``[UNK]``);
- ``extended``: the default (``extend_vocab: true``): the training texts' unknown
  ideographs become tokens, their embedding rows learn at ``new_tokens_lr_multiplier``;
- ``extended-slow``: the same extension, the new rows at the encoder's rate (x1), to show
  why the new rows need their own rate;
- ``extended+mlm`` (``--mlm``, slow): the extension, then continued masked-LM
  pre-training on the training texts through the pre-training stage
  (``train_language_model``), then fine-tuning.

    python benchmarks/chinese_parity.py                 # 1 epoch (the quickstart default)
    python benchmarks/chinese_parity.py --epochs 1 2    # also 2 epochs
    python benchmarks/chinese_parity.py --batch-size 32 16
    python benchmarks/chinese_parity.py --routes baseline extended --seed 7 13 21
    python benchmarks/chinese_parity.py --mlm

Prints, per route, epoch count, batch size and seed: accuracy and macro-F1 of each language, the ratios
zh/en, the added tokens, the share of [UNK] tokens in the training texts and the
training time. The machine's load is printed: other processes slow every timing.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)

from chainkeeper.apps.customer_service.sample import generate_sample
from chainkeeper.core.settings import default_base_model
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.evaluation import classification_metrics, language_metrics
from chainkeeper.training.loop import predict_labels, seed_everything, train_classifier
from chainkeeper.training.model import ClassifierMeta, TextClassifier
from chainkeeper.training.pretraining import load_language_model, save_language_model, train_language_model
from chainkeeper.training.vocabulary import extend_vocabulary, learn_new_rows, unknown_share

ROUTES = ("baseline", "extended", "extended-slow")


def run_route(route: str, epochs: int, batch_size: int, data: dict[str, Any], *, seed: int, mlm_epochs: int,
              mlm_lr: float) -> dict[str, Any]:
    """Train and score one route; returns its figures."""
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, extend_vocab=route != "baseline",
                         new_tokens_lr_multiplier=1.0 if route == "extended-slow" else
                         TrainConfig.model_fields["new_tokens_lr_multiplier"].default,
                         checkpoint_every_steps=None)
    train_x, train_y, test_x, test_y, labels = (data[k] for k in ("train_x", "train_y", "test_x", "test_y",
                                                                   "labels"))
    started = time.perf_counter()
    base = default_base_model()
    pre_s = 0.0
    if route == "extended+mlm":
        # The extension and a short continued pre-training of the base on the training texts.
        seed_everything(config.seed)
        language_model, tokenizer = load_language_model(base, "masked-lm", dropout=config.dropout)
        tokenizer, extension = extend_vocabulary(language_model, tokenizer, train_x, seed=config.seed)
        mlm = TrainConfig(task="masked-lm", epochs=mlm_epochs, learning_rate=mlm_lr, seed=seed,
                          checkpoint_every_steps=None)
        train_language_model(language_model, tokenizer, train_x, mlm, "masked-lm")
        folder = Path(tempfile.mkdtemp(prefix="chainkeeper-parity-"))
        save_language_model(language_model, tokenizer, folder)
        base, config = folder, config.model_copy(update={"extend_vocab": False})
        pre_s = time.perf_counter() - started
    seed_everything(config.seed)
    meta = ClassifierMeta(labels=labels, pooling=config.pooling, max_length=config.max_length)
    model, tokenizer = TextClassifier.from_base(base, meta, dropout=config.dropout)
    unk_before = unknown_share(tokenizer, train_x)
    extension = None
    if config.extend_vocab:
        tokenizer, extension = extend_vocabulary(model.encoder, tokenizer, train_x, seed=config.seed)
    index = {name: i for i, name in enumerate(labels)}
    with learn_new_rows(model.encoder, extension):
        result = train_classifier(model, tokenizer, train_x, [index[y] for y in train_y], config)
    predicted = predict_labels(model, tokenizer, test_x, batch_size=config.eval_batch_size)
    return {
        "route": route, "epochs": epochs, "steps": result.steps,
        "overall": classification_metrics(test_y, predicted, labels),
        "by_language": language_metrics(test_x, test_y, predicted),
        "added": len(extension.added) if extension is not None else 0,
        "unk_before": unk_before, "unk_after": unknown_share(tokenizer, train_x),
        "train_s": result.seconds + pre_s, "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1], help="epoch counts to compare (default 1)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[TrainConfig().batch_size],
                        help="batch sizes to compare (default: the config's, 32)")
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=[*ROUTES, "extended+mlm"])
    parser.add_argument("--seed", type=int, nargs="+", default=[TrainConfig().seed],
                        help="the config's seeds; with several, a mean per setting is printed too (default 13)")
    parser.add_argument("--mlm", action="store_true", help="also the extended+mlm route (slow)")
    parser.add_argument("--mlm-epochs", type=int, default=2)
    parser.add_argument("--mlm-lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 on a shared, busy machine: no threads waiting on each other)")
    parser.add_argument("--sample-dir", type=Path, default=Path(tempfile.gettempdir()) / "chainkeeper-parity")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    routes = [*args.routes, *(["extended+mlm"] if args.mlm and "extended+mlm" not in args.routes else [])]

    paths = generate_sample(args.sample_dir)
    train_x, train_y = read_csv(paths["train"])
    test_x, test_y = read_csv(paths["test"])
    data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "labels": sorted(set(train_y))}
    counts = ", ".join(f"{k} {v['count']}" for k, v in language_metrics(test_x, test_y, test_y).items())
    print(f"built-in sample: {len(train_x)} train rows, {len(test_x)} test rows (test: {counts}), "
          f"{len(data['labels'])} labels")
    print(f"base model {default_base_model()}\n{load_average()}, torch threads {torch.get_num_threads()}", flush=True)

    header = (f"{'route':<14} {'ep':>2} {'bs':>3} {'seed':>4} {'steps':>5} {'added':>5} {'unk%':>11} {'en acc':>7} "
              f"{'en F1':>6} {'zh acc':>7} {'zh F1':>6} {'zh/en acc':>9} {'zh/en F1':>8} {'gap pts':>7} {'train s':>7}")
    rows: list[str] = []
    by_setting: dict[tuple[str, int, int], list[tuple[float, float]]] = {}
    for epochs, batch_size, route, seed in itertools.product(args.epochs, args.batch_size, routes, args.seed):
        r = run_route(route, epochs, batch_size, data, seed=seed, mlm_epochs=args.mlm_epochs, mlm_lr=args.mlm_lr)
        en, zh = r["by_language"]["en"], r["by_language"]["zh"]
        by_setting.setdefault((route, epochs, batch_size), []).append((en["accuracy"], zh["accuracy"]))
        rows.append(
            f"{route:<14} {epochs:>2} {batch_size:>3} {seed:>4} {r['steps']:>5} {r['added']:>5} "
            f"{r['unk_before']:>5.1%}→{r['unk_after']:<4.1%} {en['accuracy']:>7.4f} {en['macro_f1']:>6.4f} "
            f"{zh['accuracy']:>7.4f} {zh['macro_f1']:>6.4f} {zh['accuracy'] / en['accuracy']:>9.3f} "
            f"{zh['macro_f1'] / en['macro_f1']:>8.3f} {(en['accuracy'] - zh['accuracy']) * 100:>7.1f} "
            f"{r['train_s']:>7.1f}")
        print(rows[-1], flush=True)
    print("\n" + header + "\n" + "\n".join(rows))
    if len(args.seed) > 1:
        print(f"\nmean over seeds {', '.join(map(str, args.seed))}:\n"
              f"{'route':<14} {'ep':>2} {'bs':>3} {'en acc':>7} {'zh acc':>7} {'zh/en':>6} {'gap pts':>7}")
        for (route, epochs, batch_size), accs in by_setting.items():
            en_mean = statistics.mean(a for a, _ in accs)
            zh_mean = statistics.mean(b for _, b in accs)
            print(f"{route:<14} {epochs:>2} {batch_size:>3} {en_mean:>7.4f} {zh_mean:>7.4f} {zh_mean / en_mean:>6.3f} "
                  f"{(en_mean - zh_mean) * 100:>7.1f}")
    print(load_average() + " — the machine is shared; other processes slow these timings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
