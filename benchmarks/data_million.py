"""Cleaning a million rows: rows/s, peak memory, near-duplicate precision/recall, and a pandas baseline.

Data: ``--rows`` (default 1,000,000) rows written to a CSV: three in four are real texts
of the public datasets (BANKING77 and Financial PhraseBank, train and test, from
``../shared/datasets`` or CHAINKEEPER_DATASETS_DIR), one in four customer-service
messages from the templates of ``chainkeeper.apps.customer_service`` (English and
Chinese); each with a reference number so most texts are distinct. Planted (seeded):
personal data (e-mails, phones, cards, IBANs, IPs, Chinese ID numbers, secret URLs, ~6 %
of rows), HTML markup (~2 %), full-width variants (~2 %), exact repeats (~10 %) and
near-repeats (one character changed, ~5 %).

What is measured, in one process, each phase's peak resident memory (RSS) sampled every
20 ms from /proc:

1. import the CSV as a source (``import_csv``);
2. each recipe step on its own, on every row (normalize_text, strip_html, redact_pii,
   dedup_exact, dedup_near, filter_length): seconds and rows/s;
3. ``create_dataset_version`` end to end (recipe, split, Parquet snapshot, report);
4. near-duplicate precision and recall on the first ``--sample-rows`` (20,000) rows,
   cleaned by the steps before dedup_near: the MinHash LSH step against an exact
   all-pairs Jaccard join of the same texts (prefix filtering: exact, every pair at or
   above the threshold is found; checked against brute force on 1,000 rows), both
   deciding removals with the same rule (a row goes when it matches an earlier kept row);
5. the named baseline: the same recipe written the obvious way in pandas (vectorised
   ``.str`` methods where pandas has them, ``.map`` of a Python function where it does
   not, ``drop_duplicates``, and datasketch's per-row ``MinHash`` + ``MinHashLSH`` loop for
   near-duplicates), against chainkeeper's steps on the same first ``--baseline-rows``
   (20,000) rows: seconds per step and the ratio.

The machine may be shared: the load average is printed at the start and the end; compare
ratios measured in the same run rather than absolute times.

    python benchmarks/data_million.py                 # the full run
    python benchmarks/data_million.py --rows 200000   # quicker
"""

from __future__ import annotations

import argparse
import csv
import html
import math
import os
import random
import re
import resource
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
from _common import datasets_dir, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)
from datasketch import MinHash, MinHashLSH

from chainkeeper.apps.customer_service.sample import INTENTS, load_templates
from chainkeeper.chain import open_context
from chainkeeper.core import migrations
from chainkeeper.core.settings import Settings
from chainkeeper.data import cleaning, pii
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.near_duplicates import find_near_duplicates
from chainkeeper.data.sources import read_source_rows
from chainkeeper.data.versions import create_dataset_version
from chainkeeper.governance.actors import Actor

STEWARD = Actor(name="bench", roles=frozenset({"data_steward"}))
RECIPE: list[cleaning.RecipeEntry] = ["normalize_text", "strip_html", "redact_pii", "dedup_exact", "dedup_near",
                                      {"step": "filter_length", "min_chars": 5, "max_chars": 1000}]
SHINGLE = 5
THRESHOLD = 0.8
REAL_SHARE = 0.75


# --- memory ------------------------------------------------------------------------------


class RssSampler:
    """Samples this process's resident memory every 20 ms and keeps the peak of each phase."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self._phase = "start"
        self._page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._run, daemon=True).start()

    def rss_mib(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page / 2**20

    def _run(self) -> None:
        while True:
            rss, phase = self.rss_mib(), self._phase
            self.peaks[phase] = max(self.peaks.get(phase, 0.0), rss)
            time.sleep(0.02)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._phase = name
        try:
            yield
        finally:
            time.sleep(0.05)  # one more sample inside the phase
            self._phase = "between phases"


# --- data --------------------------------------------------------------------------------


def _luhn_card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    return next(body + d for d in "0123456789" if pii.luhn_valid(body + d))


def _cn_id(rng: random.Random) -> str:
    body = f"110105{rng.randint(1960, 2000)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


PLANTS: list[Callable[[random.Random], str]] = [
    lambda r: f" mail me at user{r.randint(1, 99999)}@example.com",
    lambda r: f" 我的手机是1{r.choice('3589')}{r.randint(100000000, 999999999)}",
    lambda r: f" call +44 20 {r.randint(1000, 9999)} {r.randint(1000, 9999)}",
    lambda r: f" card {_luhn_card(r)}",
    lambda r: " IBAN GB82 WEST 1234 5698 7654 32",
    lambda r: f" from IP 10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
    lambda r: f" 身份证{_cn_id(r)}",
    lambda r: f" see https://bank.example.com/s?access_token={r.getrandbits(64):x}",
]


def real_texts() -> list[tuple[str, str]]:
    """(text, label) of BANKING77 and Financial PhraseBank, train and test; empty when absent."""
    out: list[tuple[str, str]] = []
    for name in ("banking77", "financial_sentiment"):
        for split in ("train", "test"):
            path = datasets_dir() / name / f"{split}.csv"
            if path.is_file():
                texts, labels = read_csv(path)
                out.extend(zip(texts, labels, strict=True))
    return out


def generate(path: Path, rows: int, seed: int) -> dict[str, int]:
    """Write the benchmark CSV; return how many rows of each kind it has."""
    rng = random.Random(seed)
    templates = load_templates()
    langs = list(templates["languages"])
    weights = list(templates["languages"].values())
    real = real_texts()
    planted = {"real": 0, "template": 0, "pii": 0, "html": 0, "fullwidth": 0, "exact": 0, "near": 0}
    texts: list[str] = []
    labels: list[str] = []
    for _ in range(rows):
        roll = rng.random()
        if texts and roll < 0.10:
            i = rng.randrange(len(texts))
            text, label = texts[i], labels[i]
            planted["exact"] += 1
        elif texts and roll < 0.15:
            i = rng.randrange(len(texts))
            base = texts[i]
            pos = rng.randrange(len(base))
            text, label = base[:pos] + rng.choice("xyz") + base[pos + 1:], labels[i]
            planted["near"] += 1
        else:
            if real and rng.random() < REAL_SHARE:
                text, label = rng.choice(real)
                planted["real"] += 1
            else:
                label = rng.choice(INTENTS)
                lang = rng.choices(langs, weights)[0]
                template = rng.choice(templates["intents"][label][lang])
                names = sorted({part.split("}", 1)[0] for part in template.split("{")[1:]})
                body = template.format_map({n: rng.choice(templates["slots"][lang][n]) for n in names})
                text = rng.choice(templates["openers"][lang]) + body + rng.choice(templates["closers"][lang])
                planted["template"] += 1
            text += f" (ref {rng.randint(1, 10**6)})"  # so repeated base texts are mostly distinct
            if roll < 0.21:
                text += rng.choice(PLANTS)(rng)
                planted["pii"] += 1
            elif roll < 0.23:
                text = f"<p>{html.escape(text)}<br/><b>thanks</b></p>"
                planted["html"] += 1
            elif roll < 0.25:
                text = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)
                planted["fullwidth"] += 1
        texts.append(text)
        labels.append(label)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return planted


# --- chainkeeper's steps -------------------------------------------------------------------


def fast_steps(table: pa.Table, recipe: list[cleaning.RecipeEntry] = RECIPE,
               ) -> tuple[dict[str, tuple[float, int]], pa.Table]:
    """The recipe with chainkeeper's steps, each timed. Returns step -> (seconds, rows out), and the rows."""
    out: dict[str, tuple[float, int]] = {}
    for entry in cleaning.check_recipe(recipe):
        params = {k: v for k, v in entry.items() if k != "step"}
        t = time.perf_counter()
        table, _ = cleaning.STEPS[entry["step"]](table, **params)
        out[entry["step"]] = (time.perf_counter() - t, table.num_rows)
    return out, table


def _print_steps(title: str, timings: dict[str, tuple[float, int]], rows_in: int) -> float:
    print(f"\n{title}")
    print(f"  {'step':<16}{'seconds':>9}{'rows out':>11}{'rows/s':>12}")
    rows = rows_in
    for name, (seconds, rows_out) in timings.items():
        print(f"  {name:<16}{seconds:9.2f}{rows_out:11,}{rows / max(seconds, 1e-9):12,.0f}")
        rows = rows_out
    total = sum(s for s, _ in timings.values())
    print(f"  {'total':<16}{total:9.2f}{'':>11}{rows_in / total:12,.0f}")
    return total


# --- the pandas baseline -------------------------------------------------------------------

_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff]")
_TAG = re.compile(r"<[^>]+>")


def pandas_steps(path: Path, rows: int) -> dict[str, tuple[float, int]]:
    """The recipe written the obvious way in pandas, on the first ``rows`` rows. Returns step -> (seconds, rows out)."""
    import pandas as pd

    df = pd.read_csv(path, nrows=rows, keep_default_na=False)
    out: dict[str, tuple[float, int]] = {}

    def timed(name: str, step: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
        nonlocal df
        t = time.perf_counter()
        df = step(df)
        out[name] = (time.perf_counter() - t, len(df))

    def normalize(d: pd.DataFrame) -> pd.DataFrame:
        text = d["text"].str.normalize("NFKC").str.replace(_INVISIBLE.pattern, "", regex=True)
        return d.assign(text=text.str.replace(r"\s+", " ", regex=True).str.strip())

    def strip_html(d: pd.DataFrame) -> pd.DataFrame:
        text = d["text"].str.replace(_TAG.pattern, " ", regex=True).map(html.unescape)
        return d.assign(text=text.str.replace(r"\s+", " ", regex=True).str.strip())

    def near(d: pd.DataFrame) -> pd.DataFrame:
        lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)

        def is_new(item: tuple[int, str]) -> bool:
            i, s = item
            m = MinHash(num_perm=128)
            m.update_batch([s[k:k + SHINGLE].encode("utf-8") for k in range(max(1, len(s) - SHINGLE + 1))])
            if lsh.query(m):
                return False
            lsh.insert(i, m)
            return True

        return d[[is_new(item) for item in enumerate(d["text"])]]

    timed("normalize_text", normalize)
    timed("strip_html", strip_html)
    timed("redact_pii", lambda d: d.assign(text=d["text"].map(lambda s: pii.redact_text(s)[0])))
    timed("dedup_exact", lambda d: d.drop_duplicates("text"))
    timed("dedup_near", near)
    timed("filter_length", lambda d: d[d["text"].str.len().between(5, 1000)])
    return out


# --- near-duplicate precision and recall ---------------------------------------------------


def _shingles(text: str) -> frozenset[str]:
    return frozenset(text[k:k + SHINGLE] for k in range(max(1, len(text) - SHINGLE + 1))) if text else frozenset()


def exact_pairs(texts: list[str], threshold: float = THRESHOLD) -> set[tuple[int, int]]:
    """Every pair (earlier, later) with shingle Jaccard >= threshold, by an exact prefix-filtered join.

    Tokens are ordered rarest first; a pair at or above the threshold shares at least
    ceil(t * max(|x|, |y|)) shingles, so it shares a shingle within the first
    |x| - ceil(t * |x|) + 1 of each: indexing and probing those prefixes misses no pair.
    """
    sets = [_shingles(t) for t in texts]
    frequency = Counter(s for shingles in sets for s in shingles)
    index: dict[str, list[int]] = defaultdict(list)
    pairs: set[tuple[int, int]] = set()
    for i, shingles in enumerate(sets):
        if not shingles:
            continue
        ordered = sorted(shingles, key=lambda s: (frequency[s], s))
        prefix = ordered[:len(ordered) - math.ceil(threshold * len(ordered)) + 1]
        candidates = {j for s in prefix for j in index[s]}
        for j in candidates:
            common = len(shingles & sets[j])
            if common / (len(shingles) + len(sets[j]) - common) >= threshold - 1e-9:
                pairs.add((j, i))
        for s in prefix:
            index[s].append(i)
    return pairs


def brute_force_pairs(texts: list[str], threshold: float = THRESHOLD) -> set[tuple[int, int]]:
    sets = [_shingles(t) for t in texts]
    return {(j, i) for i in range(len(sets)) for j in range(i) if sets[i] and sets[j]
            and len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold - 1e-9}


def greedy_removals(n: int, pairs: set[tuple[int, int]]) -> set[int]:
    """The rows the dedup rule removes: a row goes when it matches an earlier row that stays."""
    earlier: dict[int, list[int]] = defaultdict(list)
    for j, i in pairs:
        earlier[i].append(j)
    removed: set[int] = set()
    for i in range(n):
        if any(j not in removed for j in earlier.get(i, ())):
            removed.add(i)
    return removed


def near_duplicate_quality(rows: pa.Table, sample: int) -> None:
    table, _ = cleaning.apply_recipe(rows.slice(0, sample), RECIPE[:4])  # the steps before dedup_near
    texts = table.column("text").to_pylist()
    check = texts[:1000]
    assert exact_pairs(check) == brute_force_pairs(check), "the prefix join must equal brute force"
    t = time.perf_counter()
    truth = greedy_removals(len(texts), exact_pairs(texts))
    exact_s = time.perf_counter() - t
    t = time.perf_counter()
    found = set(find_near_duplicates(texts, threshold=THRESHOLD, size=SHINGLE).removed)
    lsh_s = time.perf_counter() - t
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    print(f"\nnear-duplicates on the first {sample:,} rows ({len(texts):,} after the steps before dedup_near), "
          f"Jaccard >= {THRESHOLD} on {SHINGLE}-character shingles:")
    print("  exact all-pairs join (prefix filtering; equals brute force on the first 1,000 rows: checked)")
    print(f"  rows to remove: exact {len(truth):,} ({exact_s:.1f} s), MinHash LSH {len(found):,} ({lsh_s:.1f} s); "
          f"both found {hits:,}")
    print(f"  precision {precision:.4f}  recall {recall:.4f}")


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sample-rows", type=int, default=20_000, help="rows of the near-duplicate check")
    parser.add_argument("--baseline-rows", type=int, default=20_000, help="rows of the pandas comparison")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    memory = RssSampler()
    print(f"start: {load_average()}; the machine may be shared with other work")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "million.csv"
        t = time.perf_counter()
        with memory.phase("generate"):
            planted = generate(csv_path, args.rows, args.seed)
        print(f"generated {args.rows:,} rows ({csv_path.stat().st_size / 2**20:,.0f} MiB) in "
              f"{time.perf_counter() - t:.1f} s: {planted}")
        settings = Settings(home=folder / "home")  # type: ignore[call-arg]
        ctx = open_context(settings, check_schema=False)
        migrations.upgrade(ctx.db)

        t = time.perf_counter()
        with memory.phase("import"):
            source = import_csv(ctx, csv_path, actor=STEWARD)
        seconds = time.perf_counter() - t
        print(f"import: {source.rows_accepted:,} rows accepted, {source.rows_quarantined:,} quarantined in "
              f"{seconds:.1f} s ({source.rows_accepted / seconds:,.0f} rows/s)")

        with memory.phase("recipe steps"):
            rows = read_source_rows(ctx, source.id)
            rows_in = rows.num_rows
            timings, _ = fast_steps(rows)
            del rows
        fast_total = _print_steps(f"chainkeeper steps on {rows_in:,} rows", timings, rows_in)

        t = time.perf_counter()
        with memory.phase("create_dataset_version"):
            version = create_dataset_version(ctx, name="million", source_ids=[source.id], actor=STEWARD,
                                             recipe=RECIPE)
        seconds = time.perf_counter() - t
        print(f"\ncreate_dataset_version (recipe + split + snapshot + quality report): {version.stats['rows']:,} rows "
              f"in {seconds:.1f} s ({rows_in / seconds:,.0f} input rows/s); PII redacted "
              f"{version.stats['pii_found']}; near-duplicates removed {version.stats['near_duplicates_removed']:,}")

        with memory.phase("near-duplicate check"):
            rows = read_source_rows(ctx, source.id)
            near_duplicate_quality(rows, min(args.sample_rows, rows.num_rows))

        n = min(args.baseline_rows, rows_in)
        with memory.phase("pandas comparison"):
            fast_slice, _ = fast_steps(rows.slice(0, n))
            del rows
            base = pandas_steps(csv_path, n)
        fast_slice_total = _print_steps(f"chainkeeper steps on the first {n:,} rows", fast_slice, n)
        base_total = _print_steps(f"pandas, the obvious way, on the same {n:,} rows", base, n)
        print("\npandas seconds / chainkeeper seconds, same rows:")
        for name in base:
            print(f"  {name:<16}{base[name][0] / max(fast_slice[name][0], 1e-9):8.1f}x")
        print(f"  {'total':<16}{base_total / fast_slice_total:8.1f}x")
        ctx.close()

    print("\npeak resident memory per phase (MiB):")
    for phase, peak in memory.peaks.items():
        print(f"  {phase:<24}{peak:8,.0f}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{rows_in:,}-row recipe total {fast_total:.1f} s ({rows_in / fast_total:,.0f} rows/s); "
          f"process peak RSS {peak_mib:,.0f} MiB; end: {load_average()}")


if __name__ == "__main__":
    main()
