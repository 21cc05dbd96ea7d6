"""Active learning: which unlabelled items to ask annotators about first (pure).

From a model's class probabilities (items x classes, rows summing to 1) each strategy
gives an uncertainty score where HIGHER means "label this sooner":

- ``least_confidence``: ``1 - max_k p[k]``; 0 when the model is certain.
- ``margin``: ``1 - (p[first] - p[second])``; 1 when the top two classes are tied.
  (The margin itself is small for uncertain items; 1 - margin keeps "higher = sooner".)
- ``entropy``: ``-sum_k p[k] ln p[k]`` in nats; at most ``ln(classes)``.

On two classes the three give the same order; they differ with many classes, where
entropy weighs the whole tail, margin only the top two (Settles 2009, "Active Learning
Literature Survey", section 3.1). ``benchmarks/active_learning.py`` measures them
against random order on BANKING77.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from chainkeeper.core.errors import InvalidInput

__all__ = ["STRATEGIES", "Strategy", "least_confidence", "margin", "entropy", "uncertainty", "rank_items"]

Strategy = Literal["least_confidence", "margin", "entropy"]
_SUM_TOLERANCE = 1e-4


def least_confidence(probs: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``1 - max_k p[k]`` per item; see the module docstring.

    Args:
        probs: items x classes probabilities, each row summing to 1.

    Returns:
        One score per item, shape (items,).

    Raises:
        InvalidInput: see ``uncertainty``.
    """
    p = _checked(probs)
    scores: np.ndarray = 1.0 - p.max(axis=1)
    return scores


def margin(probs: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``1 - (p[first] - p[second])`` per item; see the module docstring.

    Raises:
        InvalidInput: see ``uncertainty``.
    """
    p = _checked(probs)
    top_two = np.sort(p, axis=1)[:, -2:]  # (items, 2): second, first
    scores: np.ndarray = 1.0 - (top_two[:, 1] - top_two[:, 0])
    return scores


def entropy(probs: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``-sum_k p[k] ln p[k]`` per item (0 ln 0 = 0); see the module docstring.

    Raises:
        InvalidInput: see ``uncertainty``.
    """
    p = _checked(probs)
    logs = np.log(np.where(p > 0, p, 1.0))  # p = 0 contributes 0, not nan
    scores: np.ndarray = -(p * logs).sum(axis=1)
    return scores


STRATEGIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}


def uncertainty(probs: np.ndarray | Sequence[Sequence[float]], strategy: Strategy) -> np.ndarray:
    """The uncertainty score of each item under a named strategy.

    Args:
        probs: items x classes probabilities, each row summing to 1 (within 1e-4).
        strategy: "least_confidence", "margin" or "entropy".

    Returns:
        One score per item, shape (items,); higher = label sooner.

    Raises:
        InvalidInput: unknown strategy; not a 2-D table with at least two classes;
            a negative or non-finite value; a row that does not sum to 1.
    """
    try:
        score = STRATEGIES[strategy]
    except KeyError:
        raise InvalidInput(f"Unknown active-learning strategy {strategy!r}.",
                           hint=f"Use one of {', '.join(STRATEGIES)}.") from None
    return score(np.asarray(probs, dtype=float))


def rank_items(probs: np.ndarray | Sequence[Sequence[float]], strategy: Strategy, *,
               limit: int | None = None) -> list[int]:
    """Row indices from the most to the least uncertain.

    Equal scores keep their input order (a stable sort), so the ranking is
    deterministic.

    Args:
        probs: items x classes probabilities (see ``uncertainty``).
        strategy: "least_confidence", "margin" or "entropy".
        limit: return only the first ``limit`` indices (the next batch to label).

    Returns:
        Indices into ``probs``' rows.

    Raises:
        InvalidInput: as ``uncertainty``, or a negative limit.
    """
    if limit is not None and limit < 0:
        raise InvalidInput(f"limit must be 0 or more, got {limit}.")
    scores = uncertainty(probs, strategy)
    order = np.argsort(-scores, kind="stable")
    ranked: list[int] = order[:limit].tolist() if limit is not None else order.tolist()
    return ranked


def _checked(probs: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InvalidInput(f"Active learning needs an items x classes probability table with at least two "
                           f"classes, got shape {p.shape}.")
    if not np.isfinite(p).all() or (p < 0).any():
        raise InvalidInput("Probabilities must be finite and non-negative.")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_TOLERANCE)
    if bad.size:
        raise InvalidInput(f"Row {int(bad[0])} of the probabilities sums to {sums[bad[0]]:.6f}, not 1.",
                           hint="Pass softmax outputs, not logits.")
    return p
