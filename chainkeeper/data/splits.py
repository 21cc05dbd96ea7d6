"""Stratified train/dev/test splits (pure).

Each label is split on its own, in proportion to the fractions, so every split sees the
labels in the same proportions as the whole. The rows of one label are shuffled with a
random generator seeded by (seed, label): a label's assignment depends only on the seed,
the label and the order of that label's own rows, so adding rows of another label, or
reordering the other labels' rows, leaves it unchanged.

How many rows of a label go to each split: the largest-remainder rounding of
``n * fraction`` (the counts always sum to n). Then every split with a fraction above
zero gets at least one row when the label has enough rows for that (n >= number of such
splits, so ≥ 3 for train/dev/test), taken from the largest split; a label with fewer
rows fills the first split (train) first, since a label never seen in training cannot
be learnt.

``assign_splits`` decides the split of every row of a new version by its identity
(``identity.row_identities``), so a text is in exactly one split. For each identity, in
this order:

1. declared: when some row of it has a declared split, that split; when rows of it are
   declared in different splits, test wins over dev over train (``cleaning.SPLIT_RANK``,
   the rule ``dedup_exact`` keeps) and the rows declared in the other split are removed
   and reported as split conflicts. Its undeclared rows join it.
2. inherited: else, the split the text had in the previous version of the dataset, when
   that split still takes undeclared rows (its fraction is above zero); a text whose old
   split is now declared by a source, or given no share, is split anew and counted as
   reassigned.
3. assigned: else a stratified split of the new identities by label, in the order of
   their identities (not of the rows), so it does not depend on how the files were ordered.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data.cleaning import SPLIT_RANK

__all__ = ["DEFAULT_FRACTIONS", "SplitAssignment", "validate_fractions", "split_counts", "stratified_split",
           "assign_splits"]

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.8, "dev": 0.1, "test": 0.1}
_TOLERANCE = 1e-6


def validate_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Check split fractions: named splits, finite non-negative values that sum to 1.

    Args:
        fractions: split name -> fraction of the rows, e.g. {"train": 0.8, "dev": 0.2}.

    Returns:
        The fractions as a plain dict, in their given order.

    Raises:
        InvalidInput: no splits, an empty name, a negative or non-finite value, or a sum other than 1.
    """
    if not fractions:
        raise InvalidInput("No split fractions given.", hint=f"For example: {DEFAULT_FRACTIONS}.")
    out: dict[str, float] = {}
    for name, value in fractions.items():
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"Split name {name!r} is not valid.", hint="Name splits e.g. 'train', 'dev', 'test'.")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InvalidInput(f"The fraction of split {name!r} is {value!r}; it must be a number from 0 to 1.",
                               hint=f"For example: {DEFAULT_FRACTIONS}.")
        out[name] = float(value)
    total = sum(out.values())
    if abs(total - 1.0) > _TOLERANCE:
        raise InvalidInput(f"Split fractions {out} sum to {total:g}, not 1.",
                           hint="Adjust them so they add up to 1, e.g. train 0.8, dev 0.1, test 0.1.")
    return out


def split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """How many of a label's ``n`` rows go to each split (pure; see the module docstring).

    Args:
        n: the label's row count.
        fractions: validated fractions; the first split is filled first for tiny labels.

    Returns:
        Split name -> count, summing to n.
    """
    names = list(fractions)
    exact = {name: n * fractions[name] for name in names}
    counts = {name: math.floor(exact[name]) for name in names}
    # Largest remainder; ties go to the split named first, so the result never depends
    # on floating-point noise in an otherwise equal pair.
    by_remainder = sorted(names, key=lambda name: (-(exact[name] - counts[name]), names.index(name)))
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1

    wanted = [name for name in names if fractions[name] > 0]
    if n >= len(wanted):
        for name in wanted:
            if counts[name] == 0:
                donor = max(wanted, key=lambda d: (counts[d], -names.index(d)))
                counts[donor] -= 1
                counts[name] += 1
    elif n > 0 and counts[wanted[0]] == 0:
        # Too few rows for every split: make sure the first split (train) has one.
        donor = max(wanted, key=lambda d: counts[d])
        counts[donor] -= 1
        counts[wanted[0]] += 1
    return counts


def stratified_split(labels: Sequence[str], *, seed: int,
                     fractions: Mapping[str, float] | None = None) -> list[str]:
    """Assign each row to a split, per label in proportion to the fractions.

    Args:
        labels: the label of each row.
        seed: the seed; the same labels and seed always give the same assignment.
        fractions: split name -> fraction (default train 0.8, dev 0.1, test 0.1). The
            first split listed gets the rows of labels too small to share.

    Returns:
        The split name of each row, in the order of ``labels``.

    Raises:
        InvalidInput: the fractions are not valid (see ``validate_fractions``).
    """
    fractions = validate_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)

    assignment = [""] * len(labels)
    for label, positions in by_label.items():
        # str seeds are hashed with sha512 by random.Random, stable across runs and platforms.
        rng = random.Random(f"{seed}\x1f{label}")
        shuffled = positions[:]
        rng.shuffle(shuffled)
        start = 0
        for name, count in split_counts(len(shuffled), fractions).items():
            for i in shuffled[start:start + count]:
                assignment[i] = name
            start += count
    return assignment


MAX_CONFLICT_EXAMPLES = 5
_RANK_SPLIT = {rank: name for name, rank in SPLIT_RANK.items()}


@dataclass(frozen=True)
class SplitAssignment:
    """What ``assign_splits`` decided.

    Attributes:
        splits: the split of every row (rows not kept included, with their declared split).
        keep: False for a row declared in a split its text lost to (a split conflict).
        report: rows_declared, rows_following_declared (undeclared rows of a declared
            text), rows_inherited, rows_assigned, rows_reassigned (assigned anew although
            the previous version had them: their old split takes no undeclared rows now),
            declared_over_previous (declared rows whose text the previous version had in
            another split: the declaration wins), conflicts (rows removed) and
            conflict_examples (text, declared, kept_in).
    """

    splits: pa.Array
    keep: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)


def assign_splits(identities: pa.Array, declared: pa.Array | pa.ChunkedArray, labels: Sequence[str | None], *,
                  seed: int, fractions: Mapping[str, float], previous: pa.Table | None = None,
                  texts: pa.Array | pa.ChunkedArray | None = None) -> SplitAssignment:
    """Each row's split, one per identity (see the module docstring; pure).

    Args:
        identities: each row's identity (``identity.row_identities``).
        declared: the split each row's source declared, or null.
        labels: each row's label (null for unlabelled and token rows: one stratum).
        seed: the seed of the stratified split.
        fractions: the fractions for undeclared rows (``versions.undeclared_fractions``).
        previous: the previous version's rows as columns ``identity`` and ``split``, or None.
        texts: each row's text, for the conflict examples.

    Returns:
        The splits, which rows to keep, and the report.
    """
    distinct = pc.unique(identities)
    distinct = distinct.take(pc.array_sort_indices(distinct))
    codes = np.asarray(pc.index_in(identities, value_set=distinct).to_numpy(zero_copy_only=False), dtype=np.int64)
    declared_names = pc.fill_null(pa.chunked_array([declared]) if isinstance(declared, pa.Array) else declared, "")
    names = np.asarray(declared_names.to_numpy(zero_copy_only=False), dtype=object)
    ranks = np.array([SPLIT_RANK.get(name, 1 if name else 0) for name in names.tolist()], dtype=np.int64)
    group_rank = np.zeros(len(distinct), dtype=np.int64)
    np.maximum.at(group_rank, codes, ranks)
    group_split = np.array([_RANK_SPLIT.get(int(r), "") for r in group_rank], dtype=object)

    # The split each identity had in the previous version (first row of it there).
    before = np.full(len(distinct), "", dtype=object)
    if previous is not None and previous.num_rows:
        position = pc.index_in(distinct, value_set=previous.column("identity"))
        found = pc.take(previous.column("split"), position)
        before = np.asarray(pc.fill_null(found, "").to_numpy(zero_copy_only=False), dtype=object)
    open_splits = {name for name, share in fractions.items() if share > 0}
    undecided = group_rank == 0
    inherited = undecided & np.isin(before, list(open_splits))
    group_split[inherited] = before[inherited]
    fresh = np.flatnonzero(undecided & ~inherited)
    if len(fresh):
        _, first_row = np.unique(codes, return_index=True)
        stratum = [labels[i] for i in first_row[fresh].tolist()]
        group_split[fresh] = stratified_split(stratum, seed=seed, fractions=fractions)

    row_split = group_split[codes]
    keep = (ranks == 0) | (ranks == group_rank[codes])
    row_split[ranks > 0] = names[ranks > 0]
    lost = np.flatnonzero(~keep)
    row_was = before[codes]
    undeclared = ranks == 0
    examples = [{"text": None if texts is None else texts[i].as_py(), "declared": names[i],
                 "kept_in": group_split[codes[i]]} for i in lost[:MAX_CONFLICT_EXAMPLES].tolist()]
    report = {
        "rows_declared": int((keep & ~undeclared).sum()),
        "rows_following_declared": int((undeclared & (group_rank[codes] > 0)).sum()),
        "rows_inherited": int((undeclared & inherited[codes]).sum()),
        "rows_assigned": int((undeclared & np.isin(codes, fresh)).sum()),
        "rows_reassigned": int((undeclared & np.isin(codes, fresh) & (row_was != "")).sum()),
        "declared_over_previous": int((keep & ~undeclared & (row_was != "") & (row_was != names)).sum()),
        "conflicts": len(lost),
        "conflict_examples": examples,
    }
    return SplitAssignment(splits=pa.array(row_split.tolist(), pa.string()), keep=keep, report=report)
