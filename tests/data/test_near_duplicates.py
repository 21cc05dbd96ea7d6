"""Near-duplicate removal: bulk MinHash equals datasketch's, LSH finds the planted near-copies."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data.cleaning import dedup_near
from chainkeeper.data.near_duplicates import (
    find_near_duplicates,
    lsh_bands,
    minhash_signatures,
    shingle_hashes,
    shingle_units,
)

WORDS = ("card lost pin transfer account bank money refund fee limit app password top up exchange rate "
         "declined pending cash machine salary statement").split()


def _jaccard(a: str, b: str, k: int = 5) -> float:
    sa = {a[i:i + k] for i in range(max(1, len(a) - k + 1))}
    sb = {b[i:i + k] for i in range(max(1, len(b) - k + 1))}
    return len(sa & sb) / len(sa | sb)


def test_bulk_signatures_equal_datasketch_minhash_of_the_same_shingle_hashes() -> None:
    texts = ["我的卡还没到，怎么办", "where is my card please", "ab", "", "a much longer text about fees and limits"]
    units, lengths = shingle_units(texts, "char")
    hashes, counts = shingle_hashes(units, lengths, 5)

    signatures = minhash_signatures(hashes, counts, num_perm=64, seed=3)

    offsets = np.concatenate(([0], np.cumsum(counts)))
    for i in range(len(texts)):
        reference = MinHash(num_perm=64, seed=3, hashfunc=lambda h: h)
        reference.update_batch(hashes[offsets[i]:offsets[i + 1]].tolist())
        if counts[i]:
            assert (reference.hashvalues == signatures[i]).all()
        else:
            assert (signatures[i] == np.iinfo(np.uint32).max).all()


def test_planted_near_copies_are_found_and_distinct_texts_kept() -> None:
    rng = random.Random(5)
    originals = [" ".join(rng.choice(WORDS) for _ in range(14)) for _ in range(400)]
    # A near-copy changes one character at the end: Jaccard well above 0.8.
    copies = [t[:-1] + ("X" if t[-1] != "X" else "Y") for t in originals[:50]]
    texts = originals + copies

    found = find_near_duplicates(texts, threshold=0.8)

    assert len(set(found.removed) & set(range(400, 450))) >= 48  # recall on the planted copies
    # Every removal is verified on the exact shingle sets: truly at or above the threshold.
    assert all(_jaccard(texts[r], texts[kept]) >= 0.8 and kept < r for r, kept, _ in found.pairs)


def test_chinese_near_duplicates_are_found_with_character_shingles() -> None:
    texts = ["我的信用卡昨天在商场丢失了请帮我冻结", "我的信用卡昨天在商场丢失了请帮我冻结吧", "请问转账手续费是多少"]

    found = find_near_duplicates(texts, threshold=0.7, size=3)

    assert found.removed == [1] and found.pairs[0][1] == 0


def test_word_shingles_ignore_case_and_punctuation() -> None:
    texts = ["Where is my new card, it has not arrived yet", "where is my new card it has not arrived yet!", "fees"]

    found = find_near_duplicates(texts, shingling="word", size=2)

    assert found.removed == [1]


def test_dedup_near_step_keeps_declared_split_rows_and_reports_pairs() -> None:
    table = pa.table({"text": ["the card i ordered last week has not arrived", "pin blocked",
                               "the card i ordered last week has not arrived."],
                      "label": ["a", "b", "a"], "split": [None, None, "test"]})

    out, report = dedup_near(table)

    assert out.column("text").to_pylist() == table.column("text").to_pylist()[1:]
    assert report.details["near_duplicates"] == 1
    assert report.examples[0]["kept"].endswith("arrived.") and report.examples[0]["similarity"] >= 0.8


@pytest.mark.parametrize("params", [
    pytest.param({"threshold": 1.5}, id="threshold-above-1"),
    pytest.param({"shingling": "sentence"}, id="unknown-shingling"),
    pytest.param({"size": 0}, id="size-0"),
])
def test_dedup_near_refuses_bad_parameters(params: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        dedup_near(pa.table({"text": ["x"]}), **params)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_lsh_bands_make_a_pair_at_the_threshold_a_candidate_at_least_97_percent_of_the_time(threshold: float) -> None:
    bands, rows = lsh_bands(threshold, 128)

    assert bands * rows <= 128
    assert 1 - (1 - threshold ** rows) ** bands >= 0.97


def _exact_removals(texts: list[str], threshold: float) -> set[int]:
    """The same decision rule on every pair, brute force: a row goes when it matches an earlier kept row."""
    removed: set[int] = set()
    for i in range(len(texts)):
        if any(j not in removed and _jaccard(texts[i], texts[j]) >= threshold for j in range(i)):
            removed.add(i)
    return removed


def test_clusters_of_near_copies_are_found_as_an_exact_all_pairs_check_finds_them() -> None:
    # Forty base sentences, each repeated with different reference numbers: clusters whose
    # members sit on both sides of the threshold, as in real exports.
    rng = random.Random(11)
    bases = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))) for _ in range(40)]
    texts = [f"{rng.choice(bases)} (ref {rng.randint(1, 10**6)})" for _ in range(500)]

    truth = _exact_removals(texts, 0.8)
    found = set(find_near_duplicates(texts, threshold=0.8).removed)

    assert len(truth) > 100
    assert found <= truth  # precision 1: each removal is one the exact all-pairs rule makes too
    assert len(found) / len(truth) >= 0.95  # recall
