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

Candidates come from LSH banding; the (bands, rows) are chosen so that a pair right at
the threshold becomes a candidate with probability >= 0.97 (``lsh_bands``; datasketch's
own choice, which balances misses against false candidates, gives it ~0.4). Bands are
grouped by sorting instead of a dict of buckets; in each bucket a row is paired with
the bucket's first row and with the three rows before it.
Each candidate pair whose estimated Jaccard is within 0.1 of the threshold may then be
verified on its exact shingle sets, so every reported pair truly is at or above the
threshold. The estimate uses only the low 8 bits of each signature value (b-bit minwise
hashing), corrected for the 1/256 chance agreement.

Memory stays bounded at a million rows: signatures are computed 10,000 rows at a time
and only each row's 18 band keys (uint64) and 8-bit signature (128 bytes) are kept, about
270 bytes a row; texts are read from the pyarrow column a batch at a time, and only the
rows of candidate pairs become Python strings for the exact check.
Rows are then decided in order: a row is removed when it verifiably matches an earlier
row that is kept (its partners are checked exactly one by one, earliest first, until one
matches), so the first row of each cluster stays and a chain A~B~C never removes
C because of A (C stays unless it matches A itself). A row whose only near-duplicates
never shared a bucket with it close enough to be paired is kept: the step errs towards
keeping rows. ``benchmarks/data_million.py`` measures precision and recall against an
exact all-pairs join.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pyarrow as pa

__all__ = ["Shingling", "NearDuplicates", "shingle_units", "shingle_hashes", "minhash_signatures",
           "find_near_duplicates", "lsh_bands", "DEFAULT_THRESHOLD", "DEFAULT_NUM_PERM"]

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
Shingling = Literal["char", "word"]
TextColumn: TypeAlias = Sequence[str | None] | pa.Array | pa.ChunkedArray
# Rows per batch: bounds memory to about batch x mean shingles x perms_per_pass x 4 bytes.
_BATCH_ROWS = 10_000
# How likely a pair right at the threshold must be to become a candidate (see lsh_bands).
_RECALL_AT_THRESHOLD = 0.97
# Each row is paired with the first row of its bucket and with this many rows before it.
_NEIGHBOURS = 3
# Shingle sets kept for the exact checks (the kept rows of clusters are checked again and again).
_CACHED_SETS = 4096
# Candidate pairs compared at a time when estimating their Jaccard.
_PAIRS_PER_CHUNK = 65_536
_PERMS_PER_PASS = 16
# Candidates estimated this far below the threshold still get the exact check.
_VERIFY_MARGIN = 0.1
_WORD = re.compile(r"\w+")
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
# Random odd 64-bit multipliers of the polynomial shingle hash (fixed: signatures are
# stable across runs and processes, unlike Python's salted hash()).
_MULTIPLIERS = (
    np.random.default_rng(20261128).integers(1, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
)


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
    mixed: np.ndarray = h ^ (h >> s3)
    return mixed


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
    from datasketch import MinHash  # with scipy behind it: ~0.4 s, paid by a dedup only

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


def _texts(texts: TextColumn, start: int, stop: int) -> list[str | None]:
    """Rows start..stop of ``texts`` as Python strings (only a batch at a time)."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        batch: list[str | None] = texts.slice(start, stop - start).to_pylist()
        return batch
    return list(texts[start:stop])


def _take(texts: TextColumn, positions: np.ndarray) -> list[str | None]:
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        taken: list[str | None] = texts.take(pa.array(positions, pa.int64())).to_pylist()
        return taken
    return [texts[i] for i in positions.tolist()]


def _sketches(texts: TextColumn, shingling: Shingling, size: int, num_perm: int, seed: int, bands: int,
              rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: its LSH band keys, its b-bit signature and whether it has any shingle.

    Signatures are computed a batch at a time and never kept whole: a million rows'
    full signatures would be 512 MB (uint32 x 128), their band keys and 8-bit
    signatures are 270 MB.

    Returns:
        (band keys as (n, bands) uint64, low 8 bits of each MinHash value as
        (n, num_perm) uint8, usable rows as (n,) bool).
    """
    n = len(texts)
    keys = np.empty((n, bands), dtype=np.uint64)
    low = np.empty((n, num_perm), dtype=np.uint8)
    usable = np.zeros(n, dtype=bool)
    for start in range(0, n, _BATCH_ROWS):
        stop = min(n, start + _BATCH_ROWS)
        units, lengths = shingle_units(_texts(texts, start, stop), shingling)
        hashes, counts = shingle_hashes(units, lengths, size)
        sig = minhash_signatures(hashes, counts, num_perm=num_perm, seed=seed)
        usable[start:stop] = counts > 0
        low[start:stop] = sig.astype(np.uint8)  # the cast keeps the low 8 bits
        for band in range(bands):
            block = sig[:, band * rows:(band + 1) * rows].astype(np.uint64)
            keys[start:stop, band] = (block * _MULTIPLIERS[:rows]).sum(axis=1, dtype=np.uint64)
    return keys, low, usable


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH (bands, rows per band) that make a pair at the threshold a candidate with probability >= 0.97 (pure).

    A pair of Jaccard J shares a band with probability 1 - (1 - J^r)^b. datasketch's
    ``MinHashLSH`` weighs misses and false candidates equally, which leaves a pair right
    at the threshold a ~40 % chance (0.8 with 128 permutations: b=9, r=13). Since every
    candidate is verified exactly, false candidates cost only time, so this takes the
    longest band (fewest false candidates) that still finds 97 % of pairs at the
    threshold, and more above it (0.8 with 128: b=18, r=7, 98.6 %).
    """
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold ** r) ** b >= _RECALL_AT_THRESHOLD:
            best = (b, r)
    return best


def _estimated_jaccard(low: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Jaccard estimated from b-bit signatures (Li and König, b-bit minwise hashing, 2010).

    Two different 8-bit values still agree with probability 1/256, so the share of equal
    values is J + (1 - J) / 256; solving for J removes that bias.
    """
    out = np.empty(len(left), dtype=np.float32)
    chance = 1 / 256
    for start in range(0, len(left), _PAIRS_PER_CHUNK):
        part = slice(start, start + _PAIRS_PER_CHUNK)
        equal = (low[left[part]] == low[right[part]]).mean(axis=1)
        out[part] = (equal - chance) / (1 - chance)
    return out


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


def find_near_duplicates(texts: TextColumn, *, threshold: float = DEFAULT_THRESHOLD,
                         shingling: Shingling = "char", size: int = 5, num_perm: int = DEFAULT_NUM_PERM,
                         seed: int = 1, pinned: Sequence[bool] | None = None) -> NearDuplicates:
    """Find clusters of near-duplicate texts and the rows to drop.

    Args:
        texts: the texts, in order (earlier rows are kept): a list, or a pyarrow string
            array, which is turned into Python strings a batch at a time.
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
    bands, rows = lsh_bands(threshold, num_perm)
    keys, low, usable_rows = _sketches(texts, shingling, size, num_perm, seed, bands, rows)
    usable = np.flatnonzero(usable_rows)
    codes = np.zeros(0, np.int64)
    for band in range(bands):
        key = keys[usable, band]
        order = np.argsort(key, kind="stable")  # stable: within a bucket, rows stay in input order
        sorted_key = key[order]
        new_group = np.concatenate(([True], sorted_key[1:] != sorted_key[:-1])) if len(order) else np.zeros(0, bool)
        group_first = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
        members = ~new_group
        lefts = [order[group_first[members]]]
        rights = [order[members]]
        # Also each row's few predecessors in its bucket: in a big cluster the bucket's
        # first row may be just below the threshold while a neighbour is above it.
        group = np.cumsum(new_group)
        for back in range(1, _NEIGHBOURS + 1):
            same = group[back:] == group[:-back]
            lefts.append(order[:-back][same])
            rights.append(order[back:][same])
        left_rows, right_rows = usable[np.concatenate(lefts)], usable[np.concatenate(rights)]
        codes = np.union1d(codes, np.minimum(left_rows, right_rows).astype(np.int64) * n
                           + np.maximum(left_rows, right_rows))
    del keys
    left, right = codes // max(n, 1), codes % max(n, 1)
    similarity = _estimated_jaccard(low, left, right)
    del low
    # The estimate has a standard error of about sqrt(J(1-J)/num_perm) (0.035 at 0.8
    # with 128 permutations), so a pair near the threshold is checked on its real
    # shingle sets: removed rows are truly at or above the threshold. Only the texts of
    # these pairs' rows are turned into Python strings.
    near = np.flatnonzero(similarity >= threshold - _VERIFY_MARGIN)
    left, right = left[near], right[near]
    del similarity, near

    # Each row's partners: the earlier rows it may duplicate (numpy, sorted by row then
    # partner: millions of pairs as Python lists would cost ~40 bytes each), and pinned
    # rows on either side (few: a dict).
    pin = np.asarray(pinned, dtype=bool) if pinned is not None else np.zeros(n, dtype=bool)
    by_row = np.lexsort((left, right))
    partner, owner = left[by_row], right[by_row]
    rows_with_partners, first_partner = np.unique(owner, return_index=True)
    last_partner = np.append(first_partner[1:], len(owner))
    pinned_partners: dict[int, list[int]] = {}
    touches_pinned = pin[left] | pin[right]
    for i, j in zip(left[touches_pinned].tolist(), right[touches_pinned].tolist(), strict=True):
        if pin[j]:
            pinned_partners.setdefault(i, []).append(j)
        if pin[i]:
            pinned_partners.setdefault(j, []).append(i)
    needed = np.unique(np.concatenate((left, right)))
    text_of = dict(zip(needed.tolist(), _take(texts, needed), strict=True))
    del left, right, needed, by_row, owner, touches_pinned

    @functools.lru_cache(maxsize=_CACHED_SETS)  # a cluster's kept row is checked against each member
    def shingles(row: int) -> frozenset[Any]:
        return _shingle_set(text_of[row], shingling, size)

    def jaccard(a: int, b: int) -> float:
        sa, sb = shingles(a), shingles(b)
        common = len(sa & sb)
        return common / max(1, len(sa) + len(sb) - common)

    # Greedy in row order: a row goes when it verifiably matches an earlier row that
    # stays (or any pinned row). Matching only rows that stay, never a removed one,
    # keeps chains A~B~C from removing C because of A. Pairs are verified lazily, the
    # partners of a row in ascending order until one matches: in a cluster of k copies
    # that is about k checks, not k x (partners per row).
    removed: list[int] = []
    pairs: list[tuple[int, int, float]] = []
    gone: set[int] = set()
    to_decide = np.union1d(rows_with_partners, np.fromiter(pinned_partners, dtype=np.int64))
    slot = np.minimum(np.searchsorted(rows_with_partners, to_decide), max(len(rows_with_partners) - 1, 0))
    has_earlier = rows_with_partners[slot] == to_decide if len(rows_with_partners) else np.zeros(len(to_decide), bool)
    for x, k_slot, has in zip(to_decide.tolist(), slot.tolist(), has_earlier.tolist(), strict=True):
        if pin[x]:
            continue
        match = None
        earlier = partner[first_partner[k_slot]:last_partner[k_slot]].tolist() if has else []
        for candidates in (sorted(pinned_partners.get(x, [])), earlier):
            for k in candidates:
                if k in gone:
                    continue
                similarity_xk = jaccard(x, k)
                if similarity_xk >= threshold - 1e-6:
                    match = (k, similarity_xk)
                    break
            if match is not None:
                break
        if match is not None:
            gone.add(x)
            removed.append(x)
            pairs.append((x, match[0], round(match[1], 3)))
    return NearDuplicates(removed=removed, pairs=pairs, clusters=len({kept for _, kept, _ in pairs}),
                          candidates=int(len(codes)), bands=bands, rows=rows)
