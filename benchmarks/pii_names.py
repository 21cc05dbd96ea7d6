"""Person-name redaction in the prediction log: precision and recall on a planted set, and
the cost of the tagger pass.

The tagger is the chain's own: a CoNLL-2003 tagger (PER, ORG, LOC, MISC) trained with
the functions the training job runs (``TokenTagger.from_base`` on the offline MiniLM,
word shapes on; ``train_token_tagger``) on a seeded subset of
``$CHAINKEEPER_DATASETS_DIR/conll2003/train.txt`` (``--lowercase-share``: that share of it
lower-cased, as callers often write names), or an already trained model folder
(``--model``). Its entity F1 on CoNLL's test split is printed for reference.

The planted set is ``tests/data/names_planted.py`` (300 customer-service messages, seed
15: 180 person names in four forms, 120 hard negatives with companies, products,
places, months and capitals; the generator's docstring lists them). Each text is tagged
as the log writer tags it (``names.tag_names``: the model itself, 64 texts per call,
``PER``/``PERSON`` spans) and the spans scored are those ``prediction_record`` replaces
by ``[NAME]`` (``names.add_names`` around the regex spans).

How matched (characters other than spaces, so boundaries count and spacing does not):

- **characters** (the goal, 0.85 each): precision = name characters among the characters
  replaced by ``[NAME]``; recall = characters of planted names replaced;
- **names**: recall = planted names with every character replaced; precision = replaced
  spans with every character inside a planted name;
- **exact**: a replaced span with the planted name's start and end.

Cost: texts/s of the tagger pass alone (``tag_names``, torch, this machine's
threads) and of the whole record building with and without names, median of rounds.

    python benchmarks/pii_names.py                       # train (about 10 min on 2 cores), then measure
    python benchmarks/pii_names.py --lowercase-share 0.3 # a tagger that finds "priya patel" too
    python benchmarks/pii_names.py --save /tmp/names     # ... and keep the model folder
    python benchmarks/pii_names.py --model /tmp/names    # measure an already trained tagger
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from _common import REPO, datasets_dir, load_average

sys.path.insert(0, str(REPO))  # tests.data.names_planted

from chainkeeper.core.settings import default_base_model  # noqa: E402
from chainkeeper.data import PLACEHOLDERS, find_pii  # noqa: E402
from chainkeeper.monitoring.names import NAME_PLACEHOLDER, add_names, tag_names  # noqa: E402
from chainkeeper.monitoring.predictions import prediction_record  # noqa: E402
from chainkeeper.serving.tagging import TaggerPredictor, torch_logits  # noqa: E402
from chainkeeper.training.config import TrainConfig  # noqa: E402
from chainkeeper.training.loop import seed_everything  # noqa: E402
from chainkeeper.training.tokens import (  # noqa: E402
    TokenTagger,
    entity_metrics,
    predict_tags,
    read_conll,
    train_token_tagger,
)
from tests.data.names_planted import SEED, SIZE, planted  # noqa: E402

TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
GOAL = 0.85
Span = tuple[int, int]


def lowercased(sentences: list[tuple[list[str], list[str]]], share: float, seed: int = 0,
               ) -> list[tuple[list[str], list[str]]]:
    """The sentences with a seeded ``share`` of them written in lower case, tags unchanged (pure)."""
    rng = random.Random(seed)
    return [([w.lower() for w in words], tags) if rng.random() < share else (words, tags) for words, tags in sentences]


def train(folder: Path, *, limit: int, epochs: int, max_length: int, lowercase_share: float,
          ) -> tuple[TokenTagger, Any]:
    """A CoNLL tagger trained as the training job trains one (seeded subset of ``limit`` sentences,
    ``lowercase_share`` of them lower-cased)."""
    sentences = lowercased(read_conll((folder / "train.txt").read_text(encoding="utf-8")), lowercase_share)
    config = TrainConfig(epochs=epochs, learning_rate=1e-4, head_lr_multiplier=20.0, batch_size=32,
                         max_length=max_length, limit_train=limit, log_every_steps=50, labels=TAGS)
    seed_everything(config.seed)
    model, tokenizer = TokenTagger.from_base(default_base_model(), TAGS, dropout=config.dropout, max_length=max_length)
    started = time.perf_counter()

    def report(step: Any) -> None:
        if step.step % 50 == 0 or step.step == step.total_steps:
            print(f"  step {step.step}/{step.total_steps} loss {step.loss:.4f} "
                  f"{time.perf_counter() - started:.0f}s", flush=True)

    train_token_tagger(model, tokenizer, [w for w, _ in sentences], [t for _, t in sentences], config,
                       on_step=report)
    print(f"trained on {min(limit, len(sentences)):,} of {len(sentences):,} sentences ({lowercase_share:.0%} "
          f"lower-cased), {epochs} epoch(s), {time.perf_counter() - started:.0f}s")
    return model, tokenizer


def predictor_of(model: TokenTagger, tokenizer: Any) -> TaggerPredictor:
    return TaggerPredictor(torch_logits(model), tokenizer, model.labels, max_length=model.meta.max_length,
                           model_version_id=0, artifact="", engine="torch", casing=model.casing is not None)


def record(text: str, names: list[Span]) -> Any:
    return prediction_record(request_id="r", deployment_id=1, model_version_id=1, at=datetime.now(UTC), text=text,
                             label="x", score=1.0, latency_ms=1.0, names=names)


def replaced(text: str, names: list[Span]) -> list[Span]:
    """The spans of ``text`` the log replaces by [NAME] (after ``add_names``: regex spans keep theirs)."""
    spans = add_names([(p.start, p.end, PLACEHOLDERS[p.kind]) for p in find_pii(text)], names)
    return [(a, b) for a, b, placeholder in spans if placeholder == NAME_PLACEHOLDER]


def _chars(text: str, spans: list[Span]) -> set[int]:
    return {i for a, b in spans for i in range(a, b) if not text[i].isspace()}


def score(rows: list[dict[str, Any]], found: list[list[Span]]) -> dict[str, Any]:
    """Character, name and exact-span precision and recall, and recall per form (pure)."""
    c_tp = c_pred = c_true = 0
    n_hit = n_true = s_ok = s_pred = x_tp = 0
    by_group: dict[str, list[int]] = {}
    false_positives: list[str] = []
    for row, spans in zip(rows, found, strict=True):
        text, truth = row["text"], [tuple(n) for n in row["names"]]
        true_chars, pred_chars = _chars(text, truth), _chars(text, spans)
        c_tp += len(true_chars & pred_chars)
        c_pred += len(pred_chars)
        c_true += len(true_chars)
        hits = [_chars(text, [t]) <= pred_chars for t in truth]
        n_hit += sum(hits)
        n_true += len(truth)
        group = by_group.setdefault(row["group"], [0, 0])
        group[0] += sum(hits)
        group[1] += len(truth)
        for span in spans:
            inside = _chars(text, [span]) <= true_chars
            s_ok += inside
            s_pred += 1
            if not inside:
                false_positives.append(f"{text[span[0]:span[1]]!r} in {text!r}")
        x_tp += len(set(spans) & set(truth))
    return {"char_precision": c_tp / max(1, c_pred), "char_recall": c_tp / max(1, c_true),
            "name_precision": s_ok / max(1, s_pred), "name_recall": n_hit / max(1, n_true),
            "exact_precision": x_tp / max(1, s_pred), "exact_recall": x_tp / max(1, n_true),
            "names": n_true, "spans": s_pred, "by_group": by_group, "false_positives": false_positives,
            "negatives_flagged": sum(1 for r, f in zip(rows, found, strict=True) if r["group"] == "negative" and f)}


def rate(texts: list[str], run: Callable[[list[str]], object], rounds: int) -> float:
    """Median texts/s of ``run`` over all texts, ``rounds`` times."""
    runs = []
    for _ in range(rounds):
        started = time.perf_counter()
        run(texts)
        runs.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a trained tagger folder (TokenTagger.save); default: train one")
    parser.add_argument("--save", type=Path, help="where to keep the tagger trained here")
    parser.add_argument("--limit-train", type=int, default=4000, help="CoNLL training sentences (seeded subset)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lowercase-share", type=float, default=0.0,
                        help="share of the training sentences written in lower case (callers do write names so)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--show", type=int, default=15, help="false positives and misses to print")
    parser.add_argument("--no-conll-test", action="store_true", help="skip the CoNLL test split's entity F1")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    conll = datasets_dir() / "conll2003"
    print(f"{load_average()}, torch threads {torch.get_num_threads()}")
    if args.model is not None:
        model, tokenizer = TokenTagger.load(args.model)
        print(f"tagger {args.model} (labels {', '.join(model.labels)})")
    else:
        if not (conll / "train.txt").is_file():
            print(f"{conll}/train.txt is missing. Set CHAINKEEPER_DATASETS_DIR to the folder holding conll2003/, "
                  "or pass --model FOLDER.", file=sys.stderr)
            return 2
        model, tokenizer = train(conll, limit=args.limit_train, epochs=args.epochs, max_length=args.max_length,
                                 lowercase_share=args.lowercase_share)
        if args.save is not None:
            model.save(args.save, tokenizer)
            print(f"saved to {args.save}")
    model.eval()
    if (conll / "test.txt").is_file() and not args.no_conll_test:
        test = read_conll((conll / "test.txt").read_text(encoding="utf-8"))
        words, tags = [w for w, _ in test], [t for _, t in test]
        m = entity_metrics(tags, predict_tags(model, tokenizer, words, max_length=model.meta.max_length), model.labels)
        per = m["per_type"].get("PER", {})
        print(f"CoNLL-2003 test ({len(test):,} sentences): entity F1 {m['f1']:.4f}; PER precision "
              f"{per.get('precision', 0):.4f} recall {per.get('recall', 0):.4f}")

    predictor = predictor_of(model, tokenizer)
    rows = planted(SEED, SIZE)
    texts = [r["text"] for r in rows]
    found = [replaced(text, names) for text, names in zip(texts, tag_names(predictor, texts), strict=True)]
    s = score(rows, found)
    print(f"\nplanted set: {len(rows)} texts (seed {SEED}), {s['names']} names, "
          f"{sum(r['group'] == 'negative' for r in rows)} hard negatives; {s['spans']} spans replaced by [NAME]")
    print(f"{'matched by':<12} {'precision':>9} {'recall':>7}")
    for kind, label in (("char", "characters"), ("name", "names"), ("exact", "exact span")):
        print(f"{label:<12} {s[kind + '_precision']:>9.3f} {s[kind + '_recall']:>7.3f}")
    ok = s["char_precision"] >= GOAL and s["char_recall"] >= GOAL
    print(f"goal (characters, precision and recall >= {GOAL}): {'met' if ok else 'NOT met'}")
    print("recall by form: " + ", ".join(f"{g} {hit}/{total} ({hit / max(1, total):.3f})"
                                          for g, (hit, total) in sorted(s["by_group"].items()) if total))
    print(f"hard negatives with a [NAME]: {s['negatives_flagged']} of {sum(r['group'] == 'negative' for r in rows)}")
    for line in s["false_positives"][:args.show]:
        print(f"  false positive: {line}")
    missed = [(r["text"], r["text"][a:b]) for r, f in zip(rows, found, strict=True) for a, b in r["names"]
              if not _chars(r["text"], [(a, b)]) <= _chars(r["text"], f)]
    for text, name in missed[:args.show]:
        print(f"  missed: {name!r} in {text!r}")

    print(f"\ncost ({load_average()}, torch threads {torch.get_num_threads()}, median of {args.rounds} rounds):")
    tagger = rate(texts, lambda t: tag_names(predictor, t), args.rounds)
    with_names = rate(texts, lambda t: [record(x, n) for x, n in zip(t, tag_names(predictor, t), strict=True)],
                      args.rounds)
    regex_only = rate(texts, lambda t: [record(x, []) for x in t], args.rounds)
    print(f"  tagger pass (tag_names):            {tagger:>10,.0f} texts/s")
    print(f"  log records with names:             {with_names:>10,.0f} texts/s")
    print(f"  log records, regex redaction only:  {regex_only:>10,.0f} texts/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
