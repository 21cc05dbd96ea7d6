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
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from chainkeeper.core.errors import InvalidInput

__all__ = ["DEFAULT_FRACTIONS", "validate_fractions", "split_counts", "stratified_split"]

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
