"""Uncertainty scores against hand-computed values, and the ranking they give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chainkeeper.annotation.active import entropy, least_confidence, margin, rank_items, uncertainty
from chainkeeper.core.errors import InvalidInput

PROBS = np.array([
    [0.9, 0.05, 0.05],   # confident
    [0.4, 0.4, 0.2],     # top two tied
    [1 / 3, 1 / 3, 1 / 3],  # uniform
    [0.5, 0.3, 0.2],
    [1.0, 0.0, 0.0],     # certain (0 ln 0 = 0)
])


def test_least_confidence_hand_computed() -> None:
    assert least_confidence(PROBS) == pytest.approx([0.1, 0.6, 2 / 3, 0.5, 0.0])


def test_margin_hand_computed() -> None:
    # 1 - (first - second)
    assert margin(PROBS) == pytest.approx([1 - 0.85, 1.0, 1.0, 1 - 0.2, 0.0])


def test_entropy_hand_computed() -> None:
    expected = [
        -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05)),
        -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2)),
        math.log(3),
        -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)),
        0.0,
    ]
    assert entropy(PROBS) == pytest.approx(expected)


@pytest.mark.parametrize(("strategy", "order"), [
    pytest.param("least_confidence", [2, 1, 3, 0, 4], id="least-confidence"),
    pytest.param("margin", [1, 2, 3, 0, 4], id="margin-ties-keep-input-order"),
    pytest.param("entropy", [2, 1, 3, 0, 4], id="entropy"),
])
def test_rank_items_most_uncertain_first(strategy: str, order: list[int]) -> None:
    assert rank_items(PROBS, strategy) == order  # type: ignore[arg-type]
    assert rank_items(PROBS, strategy, limit=2) == order[:2]  # type: ignore[arg-type]


def test_strategies_disagree_where_the_tail_matters() -> None:
    # same top probability; A's remaining mass sits on one class, B's is spread out
    probs = [[0.5, 0.45, 0.05, 0.0, 0.0], [0.5, 0.125, 0.125, 0.125, 0.125]]
    assert least_confidence(probs)[0] == pytest.approx(least_confidence(probs)[1])
    assert rank_items(probs, "margin") == [0, 1]
    assert rank_items(probs, "entropy") == [1, 0]


@pytest.mark.parametrize(("probs", "match"), [
    pytest.param([0.5, 0.5], "at least two classes", id="one-dimensional"),
    pytest.param([[1.0], [1.0]], "at least two classes", id="one-class"),
    pytest.param([[2.0, 1.0]], "sums to 3", id="logits"),
    pytest.param([[1.2, -0.2]], "non-negative", id="negative"),
    pytest.param([[float("nan"), 1.0]], "finite", id="nan"),
])
def test_bad_probabilities_are_rejected(probs: list[object], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        uncertainty(probs, "entropy")  # type: ignore[arg-type]


def test_unknown_strategy_and_negative_limit() -> None:
    with pytest.raises(InvalidInput, match="Use one of least_confidence, margin, entropy"):
        uncertainty(PROBS, "random")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="limit"):
        rank_items(PROBS, "margin", limit=-1)
