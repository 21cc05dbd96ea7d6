"""Personal-data detection: precision and recall per type on the planted set, and the
throughput of ``redact_text`` against the previous detector.

The planted set is ``tests/data/pii_planted.jsonl`` (English and Chinese sentences with
values of every type at known offsets, hand-written sentences and hard negatives). "Before"
is the same detector restricted to the types that existed before issue 15 (item 7):
``secret_url, email, iban, cn_id, card, ip, phone``; "after" looks for all of ``PII_TYPES``.

Throughput is measured on two sets: BANKING77 (train + test, 13,083 real customer
questions, almost none with personal data: the prediction log's usual traffic) and the
planted set (most texts hold something). Per set, rounds alternate before and after so
slow drifts of a shared machine hit both alike; the table shows the median texts/s of
the rounds and their ratio after/before. "log path" is what the prediction log does per
served text: before, a regex prefilter (the old ``PREFILTER``) and then the old types;
after, ``redact_text`` with its own per-detector checks.

    python benchmarks/pii.py
    python benchmarks/pii.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable

from _common import REPO, datasets_dir, load_average, read_csv

from chainkeeper.data.pii import PII_TYPES, find_pii, redact_text

OLD_TYPES = frozenset({"secret_url", "email", "iban", "cn_id", "card", "ip", "phone"})
# The prediction log's prefilter before issue 15 (item 7).
OLD_PREFILTER = re.compile(r"\d[\d -]{6,}|@|://|\d\.\d+\.\d+\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:")
PLANTED = REPO / "tests" / "data" / "pii_planted.jsonl"


def scores(rows: list[dict], kinds: frozenset[str] | None) -> dict[str, tuple[float, float, int, int]]:
    """Type -> (precision, recall, planted, false positives) of ``find_pii`` restricted to ``kinds``."""
    tp = dict.fromkeys(PII_TYPES, 0)
    fp = dict.fromkeys(PII_TYPES, 0)
    fn = dict.fromkeys(PII_TYPES, 0)
    for row in rows:
        found = {(s.start, s.end, s.kind) for s in find_pii(row["text"], kinds)}
        expected = {tuple(s) for s in row["spans"]}
        for kind_set, counter in ((found & expected, tp), (found - expected, fp), (expected - found, fn)):
            for _, _, kind in kind_set:
                counter[kind] += 1
    return {k: (tp[k] / max(1, tp[k] + fp[k]), tp[k] / max(1, tp[k] + fn[k]), tp[k] + fn[k], fp[k])
            for k in PII_TYPES}


def texts_per_second(texts: list[str], redact: Callable[[str], object]) -> float:
    start = time.perf_counter()
    for text in texts:
        redact(text)
    return len(texts) / (time.perf_counter() - start)


def old_log_path(text: str) -> object:
    return redact_text(text, kinds=OLD_TYPES) if OLD_PREFILTER.search(text) else (text, [])


def compare(texts: list[str], rounds: int) -> dict[str, tuple[float, float]]:
    """Condition -> (median texts/s before, after), rounds alternating before and after."""
    conditions: dict[str, tuple[Callable[[str], object], Callable[[str], object]]] = {
        "redact_text": (lambda t: redact_text(t, kinds=OLD_TYPES), redact_text),
        "log path": (old_log_path, redact_text),
    }
    out = {}
    for name, (before, after) in conditions.items():
        runs: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(rounds):
            runs["before"].append(texts_per_second(texts, before))
            runs["after"].append(texts_per_second(texts, after))
        out[name] = (statistics.median(runs["before"]), statistics.median(runs["after"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with PLANTED.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    before, after = scores(rows, OLD_TYPES), scores(rows, None)
    planted_langs = {lang: sum(r["lang"] == lang for r in rows) for lang in ("en", "zh")}
    print(f"planted set: {len(rows)} texts ({planted_langs['en']} English, {planted_langs['zh']} Chinese), "
          f"{sum(not r['spans'] for r in rows)} without personal data")
    print(f"\n{'type':<11} {'planted':>7}  {'before P':>8} {'before R':>8}  "
          f"{'after P':>8} {'after R':>8} {'after FP':>8}")
    for kind in PII_TYPES:
        bp, br, planted, _ = before[kind]
        ap, ar, _, afp = after[kind]
        shown_before = f"{bp:8.3f} {br:8.3f}" if kind in OLD_TYPES else f"{'-':>8} {0.0:8.3f}"
        print(f"{kind:<11} {planted:7d}  {shown_before}  {ap:8.3f} {ar:8.3f} {afp:8d}")

    sets = {"planted": [r["text"] for r in rows]}
    banking = datasets_dir() / "banking77"
    if (banking / "train.csv").is_file():
        sets = {"BANKING77": read_csv(banking / "train.csv")[0] + read_csv(banking / "test.csv")[0], **sets}
    else:
        print(f"\n(BANKING77 not found under {datasets_dir()}; set CHAINKEEPER_DATASETS_DIR)")
    print(f"\nthroughput, median of {args.rounds} alternating rounds; {load_average()}")
    print(f"{'texts':<10} {'n':>6} {'path':<12} {'before/s':>10} {'after/s':>10} {'after/before':>12}")
    for name, texts in sets.items():
        for condition, (b, a) in compare(texts, args.rounds).items():
            print(f"{name:<10} {len(texts):6d} {condition:<12} {b:10,.0f} {a:10,.0f} {a / b:12.2f}")


if __name__ == "__main__":
    main()
