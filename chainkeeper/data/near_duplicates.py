"""Near-duplicate texts by MinHash LSH, computed in bulk (pure).

A text becomes a set of shingles: runs of ``size`` characters (``"char"``, the default;
it works for Chinese, which has no spaces) or of ``size`` words (``"word"``; a run of
letters or digits is a word, so Chinese text is better served by "char"). Two texts
whose shingle sets have a Jaccard similarity at or above the threshold are near-duplicates.

The MinHash signatures are datasketch's "affine32" scheme (datasketch 2.0): each shingle
hash is pre-mixed with the MurmurHash3 finalizer, then ``min(a_k * h + b_k mod 2^32)``
over the shingles for each of the ``num_perm`` permutations, with the permutations
drawn exactly as ``datasketch.MinHash(num_perm, seed)`` draws them. What differs from
calling ``MinHash.update`` per shingle is only how the work is laid out: shingle hashes
are computed for a whole batch of texts at once with numpy (a polynomial hash of the
code points instead of a SHA-1 per shingle), and the minimum is a ``reduceat`` over the
batch, so a million texts take seconds rather than minutes. ``test_near_duplicates``
checks that the signatures equal datasketch's for the same shingle hashes.

Candidates come from LSH banding with the (bands, rows) that ``datasketch.MinHashLSH``
chooses for the threshold; bands are grouped by sorting instead of a dict of buckets.
Each candidate pair whose estimated Jaccard (the fraction of equal signature values) is
within 0.1 of the threshold is then verified on its exact shingle sets, so every
reported pair truly is at or above the threshold.
Rows are then decided in order: a row is removed when it verifiably matches an earlier
row that is kept, so the first row of each cluster stays and a chain A~B~C never removes
C because of A (C stays unless it matches A itself). Candidates pair each row with the
first row of its LSH bucket, so a row similar only to a later, removed member of a
bucket is kept: the step errs towards keeping rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from datasketch import MinHash, MinHashLSH

__all__ = ["Shingling", "NearDuplicates", "shingle_units", "shingle_hashes", "minhash_signatures",
           "find_near_duplicates", "DEFAULT_THRESHOLD", "DEFAULT_NUM_PERM"]

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
Shingling = Literal["char", "word"]
# Rows per batch: bounds memory to about batch x mean shingles x perms_per_pass x 4 bytes.
_BATCH_ROWS = 20_000
_PERMS_PER_PASS = 16
# Candidates estimated this far below the threshold still get the exact check.
_VERIFY_MARGIN = 0.1
_WORD = re.compile(r"\w+")
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
# Random odd 64-bit multipliers of the polynomial shingle hash (fixed: signatures are
# stable across runs and processes, unlike Python's salted hash()).
_MULTIPLIERS = np.random.default_rng(20261128).integers(1, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


@dataclass(frozen=True)
class NearDuplicates:
    """The near-duplicate structure of a list of texts.

    Attributes:
        removed: row positions to drop (all but the kept rows of each cluster), ascending.
        pairs: (removed row, kept row it duplicates, exact Jaccard), one per removed row.
        clusters: how many kept rows had near-duplicates removed against them.
        candidates: candidate pairs that LSH proposed (before verification).
        bands: LSH bands; rows: signature values per band.
    """

    removed: list[int]
    pairs: list[tuple[int, int, float]]
    clusters: int
    candidates: int
    bands: int
    rows: int


def shingle_units(texts: Sequence[str | None], shingling: Shingling) -> tuple[np.ndarray, np.ndarray]:
    """Turn texts into one array of integer units (code points or word ids) and row lengths.

    Args:
        texts: the texts (null counts as empty).
        shingling: "char" or "word".

    Returns:
        (units as uint64, length of each row in units as int64).
    """
    if shingling == "char":
        clean = [t or "" for t in texts]
        joined = "".join(clean).encode("utf-32-le")
        units = np.frombuffer(joined, dtype=np.uint32).astype(np.uint64)
        return units, np.fromiter((len(t) for t in clean), dtype=np.int64, count=len(clean))
    vocabulary: dict[str, int] = {}
    ids: list[int] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        words = _WORD.findall(text.lower()) if text else []
        ids.extend(vocabulary.setdefault(w, len(vocabulary) + 1) for w in words)
        lengths[i] = len(words)
    return np.asarray(ids, dtype=np.uint64), lengths


def shingle_hashes(units: np.ndarray, lengths: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every shingle of every row, computed for all rows at once.

    A row shorter than ``size`` (but not empty) is one shingle: the whole row.

    Args:
        units: the rows' units, concatenated.
        lengths: units per row.
        size: units per shingle (1-64).

    Returns:
        (hashes as uint32, shingles per row as int64); an empty row has 0 shingles.
    """
    counts = np.where(lengths > 0, np.maximum(lengths - size + 1, 1), 0)
    row_start = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else np.zeros(0, np.int64)
    row_end = row_start + lengths
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(lengths)), counts)
    first = np.concatenate(([0], np.cumsum(counts)[:-1])) if len(counts) else np.zeros(0, np.int64)
    starts = row_start[owner] + (np.arange(total) - first[owner])
    ends = row_end[owner]
    padded = np.concatenate((units, np.zeros(size, dtype=np.uint64)))
    h = np.zeros(total, dtype=np.uint64)
    for j in range(size):
        # Units past the row's end (a short row's whole-row shingle) contribute nothing.
        inside = (starts + j) < ends
        h += np.where(inside, padded[starts + j] + np.uint64(1), np.uint64(0)) * _MULTIPLIERS[j]
    folded = ((h >> np.uint64(32)) ^ h).astype(np.uint32)
    return folded, counts


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


def minhash_signatures(hashes: np.ndarray, counts: np.ndarray, *, num_perm: int = DEFAULT_NUM_PERM,
                       seed: int = 1) -> np.ndarray:
    """MinHash signatures of many rows from their shingle hashes (datasketch affine32).

    Args:
        hashes: uint32 shingle hashes, the rows' shingles one after another.
        counts: shingles per row (rows with 0 get the empty signature, all 2^32-1).
        num_perm: permutations (signature length).
        seed: datasketch's seed for the permutations.

    Returns:
        uint32 array of shape (rows, num_perm); row i equals ``datasketch.MinHash(num_perm,
        seed, hashfunc=identity).update_batch(row i's hashes).hashvalues``.
    """
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    a, b = a.astype(np.uint32), b.astype(np.uint32)
    out = np.full((len(counts), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    filled = counts > 0
    if not filled.any():
        return out
    mixed = _fmix32(hashes.astype(np.uint32))
    offsets = np.concatenate(([0], np.cumsum(counts[filled])[:-1]))
    with np.errstate(over="ignore"):
        for p in range(0, num_perm, _PERMS_PER_PASS):
            # (perms, shingles) of uint32: the wraparound is datasketch's mod 2^32.
            permuted = a[p:p + _PERMS_PER_PASS, None] * mixed[None, :] + b[p:p + _PERMS_PER_PASS, None]
            out[filled, p:p + _PERMS_PER_PASS] = np.minimum.reduceat(permuted, offsets, axis=1).T
    return out


def _signatures(texts: Sequence[str | None], shingling: Shingling, size: int, num_perm: int,
                seed: int) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), _BATCH_ROWS):
        units, lengths = shingle_units(texts[start:start + _BATCH_ROWS], shingling)
        hashes, counts = shingle_hashes(units, lengths, size)
        parts.append(minhash_signatures(hashes, counts, num_perm=num_perm, seed=seed))
    return np.concatenate(parts) if parts else np.zeros((0, num_perm), np.uint32)


def _shingle_set(text: str | None, shingling: Shingling, size: int) -> frozenset[Any]:
    """The exact shingle set, as ``shingle_hashes`` cuts it (a short text is one shingle)."""
    if shingling == "char":
        # str slices: cheaper than tuples of characters, and the same set.
        chars = text or ""
        return frozenset([chars[k:k + size] for k in range(max(1, len(chars) - size + 1))]) if chars else frozenset()
    words = _WORD.findall((text or "").lower())
    if not words:
        return frozenset()
    return frozenset(tuple(words[k:k + size]) for k in range(max(1, len(words) - size + 1)))


def find_near_duplicates(texts: Sequence[str | None], *, threshold: float = DEFAULT_THRESHOLD,
                         shingling: Shingling = "char", size: int = 5, num_perm: int = DEFAULT_NUM_PERM,
                         seed: int = 1, pinned: Sequence[bool] | None = None) -> NearDuplicates:
    """Find clusters of near-duplicate texts and the rows to drop.

    Args:
        texts: the texts, in order (earlier rows are kept).
        threshold: Jaccard similarity at or above which two texts are near-duplicates (0-1).
        shingling: "char" or "word".
        size: units per shingle.
        num_perm: MinHash permutations.
        seed: MinHash seed.
        pinned: rows that must never be removed (a declared split); in a cluster with
            pinned rows every pinned row stays and the others go, even if they came first.

    Returns:
        The rows to remove and the verified pairs.
    """
    n = len(texts)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    bands, rows = lsh.b, lsh.r
    sig = _signatures(texts, shingling, size, num_perm, seed)
    usable = np.flatnonzero(sig[:, 0] != np.iinfo(np.uint32).max) if n else np.zeros(0, np.int64)
    pair_codes = []
    for band in range(bands):
        block = sig[usable, band * rows:(band + 1) * rows].astype(np.uint64)
        key = (block * _MULTIPLIERS[:rows]).sum(axis=1, dtype=np.uint64)
        order = np.argsort(key, kind="stable")  # stable: within a bucket, rows stay in input order
        sorted_key = key[order]
        new_group = np.concatenate(([True], sorted_key[1:] != sorted_key[:-1])) if len(order) else np.zeros(0, bool)
        group_first = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
        members = ~new_group
        firsts = usable[order[group_first[members]]]
        others = usable[order[members]]
        pair_codes.append(firsts.astype(np.int64) * n + others)
    codes = np.unique(np.concatenate(pair_codes)) if pair_codes else np.zeros(0, np.int64)
    left, right = codes // max(n, 1), codes % max(n, 1)
    similarity = (sig[left] == sig[right]).mean(axis=1) if len(codes) else np.zeros(0)
    # The estimate has a standard error of about sqrt(J(1-J)/num_perm) (0.035 at 0.8
    # with 128 permutations), so a pair near the threshold is checked on its real
    # shingle sets: removed rows are truly at or above the threshold.
    # Pairs come sorted by their left row, so only the current left row's set is kept:
    # memory stays flat however many pairs there are.
    near = np.flatnonzero(similarity >= threshold - _VERIFY_MARGIN)
    exact = np.zeros(len(codes), dtype=np.float32)
    current, current_set = -1, frozenset()
    for k in near.tolist():
        i, j = int(left[k]), int(right[k])
        if i != current:
            current, current_set = i, _shingle_set(texts[i], shingling, size)
        other = _shingle_set(texts[j], shingling, size)
        exact[k] = len(current_set & other) / max(1, len(current_set | other))
    verified = exact >= threshold - 1e-6

    # Greedy in row order: a row goes when it verifiably matches an earlier row that
    # stays (or any pinned row). Matching only rows that stay, never a removed one,
    # keeps chains A~B~C from removing C because of A.
    earlier: dict[int, list[int]] = {}
    pinned_partners: dict[int, list[int]] = {}
    pin = list(pinned) if pinned is not None else [False] * n
    for i, j in zip(left[verified].tolist(), right[verified].tolist(), strict=True):
        earlier.setdefault(j, []).append(i)
        if pin[j]:
            pinned_partners.setdefault(i, []).append(j)
        if pin[i]:
            pinned_partners.setdefault(j, []).append(i)
    removed: list[int] = []
    pairs: list[tuple[int, int, float]] = []
    gone: set[int] = set()
    for x in sorted(set(earlier) | set(pinned_partners)):
        if pin[x]:
            continue
        keepers = sorted(pinned_partners.get(x, [])) or sorted(i for i in earlier.get(x, []) if i not in gone)
        if keepers:
            gone.add(x)
            removed.append(x)
            k = int(np.searchsorted(codes, min(x, keepers[0]) * n + max(x, keepers[0])))
            pairs.append((x, keepers[0], round(float(exact[k]), 3)))
    return NearDuplicates(removed=removed, pairs=pairs, clusters=len({kept for _, kept, _ in pairs}),
                          candidates=int(len(codes)), bands=bands, rows=rows)
