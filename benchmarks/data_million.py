"""Cleaning a million rows: rows/s per step, against the obvious per-row Python baseline.

Data: ``--rows`` (default 1,000,000) customer-service messages generated from the
templates of ``chainkeeper.apps.customer_service`` (seeded), with planted personal data
(e-mails, phones, cards, IBANs, IPs, Chinese ID numbers, secret URLs: ~6 % of rows),
HTML markup (~2 %), full-width variants (~2 %), exact repeats (~10 %) and near-repeats
(one character changed, ~5 %), written to a CSV.

Run: import the CSV as a source -> each recipe step timed on its own (normalize_text,
strip_html, redact_pii, dedup_exact, dedup_near, filter_length) -> the whole
``create_dataset_version`` (recipe, split, Parquet snapshot, quality report) timed end
to end. Peak RSS of the process is printed at the end.

Baseline, in the same run, on the first ``--baseline-rows`` (default 100,000) rows of
the same data, against the same steps on the same slice: the steps written the obvious
way, one row at a time in Python: ``unicodedata.normalize`` + ``re`` for whitespace;
``re`` tag removal + ``html.unescape``; PII detection per row with the same detectors
but no vectorised prefilter; exact dedup with a ``set``; near-duplicates with
datasketch's per-row ``MinHash.update`` loop (SHA-1 per shingle) and ``MinHashLSH``
insert/query; a length check per row. The machine is shared: compare the ratios.

    python benchmarks/data_million.py                 # about 3-5 minutes on 2 loaded cores
    python benchmarks/data_million.py --rows 200000   # quicker
"""

from __future__ import annotations

import argparse
import csv
import html
import os
import random
import re
import resource
import tempfile
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from datasketch import MinHash, MinHashLSH

from chainkeeper.apps.customer_service.sample import INTENTS, load_templates
from chainkeeper.core import migrations
from chainkeeper.core.context import Context
from chainkeeper.core.settings import Settings
from chainkeeper.data import cleaning, pii
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.sources import read_source_rows
from chainkeeper.data.versions import create_dataset_version
from chainkeeper.governance.actors import Actor

STEWARD = Actor(name="bench", roles=frozenset({"data_steward"}))
RECIPE: list[cleaning.RecipeEntry] = ["normalize_text", "strip_html", "redact_pii", "dedup_exact", "dedup_near",
                                      {"step": "filter_length", "min_chars": 5, "max_chars": 1000}]
SHINGLE = 5
THRESHOLD = 0.8


# --- data ------------------------------------------------------------------------------


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


def generate(path: Path, rows: int, seed: int) -> dict[str, int]:
    """Write the benchmark CSV; return how many rows of each planted kind it has."""
    rng = random.Random(seed)
    templates = load_templates()
    langs = list(templates["languages"])
    weights = list(templates["languages"].values())
    planted = {"pii": 0, "html": 0, "fullwidth": 0, "exact": 0, "near": 0}
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
            label = rng.choice(INTENTS)
            lang = rng.choices(langs, weights)[0]
            template = rng.choice(templates["intents"][label][lang])
            names = sorted({part.split("}", 1)[0] for part in template.split("{")[1:]})
            body = template.format_map({n: rng.choice(templates["slots"][lang][n]) for n in names})
            text = rng.choice(templates["openers"][lang]) + body + rng.choice(templates["closers"][lang])
            text += f" (ref {rng.randint(1, 10**6)})"  # so template texts are mostly distinct
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


# --- the obvious baseline ----------------------------------------------------------------

_WS = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]+>")


def baseline_steps(texts: list[str]) -> dict[str, tuple[float, int]]:
    """The recipe, one row at a time in Python. Returns step -> (seconds, rows out)."""
    out: dict[str, tuple[float, int]] = {}
    t = time.perf_counter()
    texts = [_WS.sub(" ", "".join(c for c in unicodedata.normalize("NFKC", s) if c.isprintable() or c == " ")).strip()
             for s in texts]
    out["normalize_text"] = (time.perf_counter() - t, len(texts))
    t = time.perf_counter()
    texts = [_WS.sub(" ", html.unescape(_TAG.sub(" ", s))).strip() for s in texts]
    out["strip_html"] = (time.perf_counter() - t, len(texts))
    t = time.perf_counter()
    texts = [pii.redact_text(s)[0] for s in texts]
    out["redact_pii"] = (time.perf_counter() - t, len(texts))
    t = time.perf_counter()
    seen: set[str] = set()
    unique = []
    for s in texts:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    texts = unique
    out["dedup_exact"] = (time.perf_counter() - t, len(texts))
    t = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    kept = []
    for i, s in enumerate(texts):
        m = MinHash(num_perm=128)
        for k in range(max(1, len(s) - SHINGLE + 1)):
            m.update(s[k:k + SHINGLE].encode("utf-8"))
        if lsh.query(m):
            continue
        lsh.insert(i, m)
        kept.append(s)
    texts = kept
    out["dedup_near"] = (time.perf_counter() - t, len(texts))
    t = time.perf_counter()
    texts = [s for s in texts if 5 <= len(s) <= 1000]
    out["filter_length"] = (time.perf_counter() - t, len(texts))
    return out


def fast_steps(table: pa.Table) -> tuple[dict[str, tuple[float, int]], list[cleaning.StepReport]]:
    """The recipe with chainkeeper's steps, each timed. Returns step -> (seconds, rows out), and the reports."""
    out: dict[str, tuple[float, int]] = {}
    reports = []
    for entry in cleaning.check_recipe(RECIPE):
        params = {k: v for k, v in entry.items() if k != "step"}
        t = time.perf_counter()
        table, report = cleaning.STEPS[entry["step"]](table, **params)
        out[entry["step"]] = (time.perf_counter() - t, table.num_rows)
        reports.append(report)
    return out, reports


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}, cpus: {os.cpu_count()}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        planted = generate(folder / "million.csv", args.rows, args.seed)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f} s: planted {planted}")
        settings = Settings(home=folder / "home")  # type: ignore[call-arg]
        ctx = Context.open(settings, check_schema=False)
        migrations.upgrade(ctx.db)

        t = time.perf_counter()
        source = import_csv(ctx, folder / "million.csv", actor=STEWARD)
        seconds = time.perf_counter() - t
        print(f"import: {source.rows_accepted:,} rows accepted, {source.rows_quarantined:,} quarantined in "
              f"{seconds:.1f} s ({source.rows_accepted / seconds:,.0f} rows/s)")
        rows = read_source_rows(ctx, source.id)

        timings, reports = fast_steps(rows)
        fast_total = _print_steps(f"chainkeeper steps on {rows.num_rows:,} rows", timings, rows.num_rows)
        pii_found = next(r for r in reports if r.name == "redact_pii").details["pii_found"]
        near = next(r for r in reports if r.name == "dedup_near").details
        print(f"  PII redacted per type: {pii_found}")
        print(f"  near-duplicates: {near}")

        t = time.perf_counter()
        version = create_dataset_version(ctx, name="million", source_ids=[source.id], actor=STEWARD, recipe=RECIPE)
        seconds = time.perf_counter() - t
        print(f"\ncreate_dataset_version (recipe + split + snapshot + quality report): {version.stats['rows']:,} rows "
              f"in {seconds:.1f} s ({rows.num_rows / seconds:,.0f} input rows/s)")

        n = min(args.baseline_rows, rows.num_rows)
        slice_ = rows.slice(0, n)
        fast_slice, _ = fast_steps(slice_)
        fast_slice_total = _print_steps(f"chainkeeper steps on the first {n:,} rows", fast_slice, n)
        base = baseline_steps(slice_.column("text").to_pylist())
        base_total = _print_steps(f"baseline (per-row Python, datasketch per-row MinHash) on the same {n:,} rows",
                                  base, n)
        print("\nspeed-up on the slice (baseline seconds / chainkeeper seconds):")
        for name in base:
            print(f"  {name:<16}{base[name][0] / max(fast_slice[name][0], 1e-9):8.1f}x")
        print(f"  {'total':<16}{base_total / fast_slice_total:8.1f}x")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\n{rows.num_rows:,}-row recipe total {fast_total:.1f} s; peak RSS {peak_mb:,.0f} MiB; "
              f"load average at end: {os.getloadavg()}")
        ctx.close()


if __name__ == "__main__":
    main()
