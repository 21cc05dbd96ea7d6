"""Stratified splits: proportions per label, determinism, tiny labels, bad fractions."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data.splits import split_counts, stratified_split, validate_fractions


def per_label(labels: list[str], splits: list[str]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for label, split in zip(labels, splits, strict=True):
        out.setdefault(label, Counter())[split] += 1
    return out


def test_each_label_is_split_in_proportion() -> None:
    labels = ["a"] * 100 + ["b"] * 50 + ["c"] * 30

    counts = per_label(labels, stratified_split(labels, seed=1))

    assert counts["a"] == {"train": 80, "dev": 10, "test": 10}
    assert counts["b"] == {"train": 40, "dev": 5, "test": 5}
    assert counts["c"] == {"train": 24, "dev": 3, "test": 3}


def test_same_seed_gives_the_same_split_and_another_seed_another() -> None:
    labels = [f"l{i % 7}" for i in range(700)]

    first = stratified_split(labels, seed=13)

    assert stratified_split(labels, seed=13) == first
    assert stratified_split(labels, seed=14) != first
    assert Counter(stratified_split(labels, seed=14)) == Counter(first)  # same sizes, other rows


def test_small_labels_get_one_row_per_split_and_tiny_ones_go_to_train() -> None:
    labels = ["three"] * 3 + ["four"] * 4 + ["two"] * 2 + ["one"]

    counts = per_label(labels, stratified_split(labels, seed=3))

    assert counts["three"] == {"train": 1, "dev": 1, "test": 1}
    assert counts["four"] == {"train": 2, "dev": 1, "test": 1}
    assert counts["two"] == {"train": 2}
    assert counts["one"] == {"train": 1}


def test_a_labels_assignment_ignores_the_other_labels() -> None:
    rng = random.Random(0)
    mine = ["mine"] * 40
    others = [f"other{rng.randrange(5)}" for _ in range(200)]
    more = others + ["newcomer"] * 30
    rng.shuffle(more)

    def assignment(labels: list[str]) -> list[str]:
        return [s for s, label in zip(stratified_split(labels, seed=5), labels, strict=True) if label == "mine"]

    assert assignment(mine + others) == assignment(more[:100] + mine + more[100:])


def test_custom_fractions_and_zero_shares() -> None:
    labels = ["a"] * 20

    splits = stratified_split(labels, seed=0, fractions={"train": 0.9, "dev": 0.1, "test": 0.0})

    assert Counter(splits) == {"train": 18, "dev": 2}


@pytest.mark.parametrize("n", range(0, 40))
def test_split_counts_always_sum_to_the_rows(n: int) -> None:
    counts = split_counts(n, {"train": 0.7, "dev": 0.15, "test": 0.15})

    assert sum(counts.values()) == n
    assert all(c >= 0 for c in counts.values())


@pytest.mark.parametrize(("fractions", "words"), [
    pytest.param({"train": 0.8, "dev": 0.1}, "sum to 0.9", id="sum-below-one"),
    pytest.param({"train": 1.2, "dev": -0.2}, "must be a number from 0 to 1", id="negative"),
    pytest.param({"train": float("nan")}, "must be a number", id="nan"),
    pytest.param({}, "No split fractions", id="empty"),
    pytest.param({"": 1.0}, "not valid", id="empty-name"),
])
def test_invalid_fractions_are_refused_with_the_values(fractions: dict[str, float], words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        stratified_split(["a", "b"], seed=0, fractions=fractions)


def test_fractions_within_rounding_of_one_are_accepted() -> None:
    assert validate_fractions({"train": 0.7, "dev": 0.2, "test": 0.1}) == {"train": 0.7, "dev": 0.2, "test": 0.1}
