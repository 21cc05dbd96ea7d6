"""Consensus labels from several annotators: majority vote and Dawid-Skene (pure).

- ``majority_vote``: the most frequent label per item. A tie is reported (``label`` is
  None and ``tied`` lists the labels), never broken silently: it goes to adjudication.
- ``dawid_skene``: Dawid & Skene (1979), "Maximum Likelihood Estimation of Observer
  Error-Rates Using the EM Algorithm". Each annotator j has a confusion matrix
  ``pi[j, k, l]`` = P(j says l | the true label is k); the classes have priors ``p[k]``.
  EM alternates: E-step, each item's posterior over true labels
  ``T[i, k] ∝ p[k] * prod_j prod_l pi[j, k, l] ** n[i, j, l]``; M-step, priors and
  confusion matrices re-estimated from those posteriors. It starts from the majority
  vote's shares. An annotator who is often wrong — or systematically swaps labels —
  gets a confusion matrix that says so, and their votes count for less (or are read
  through the swap), which is why it beats a plain vote on a noisy crowd.

Judgements are (item, annotator, label[, at]) records, e.g.
``chainkeeper.annotation.agreement.Judgement``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from chainkeeper.core.errors import InvalidInput

__all__ = ["MajorityResult", "DawidSkeneResult", "majority_vote", "dawid_skene"]

_FLOOR = 1e-300


@dataclass(frozen=True)
class MajorityResult:
    """The vote on one item.

    Attributes:
        label: the winning label, or None on a tie.
        votes: label -> number of annotators who gave it.
        tied: the labels sharing the top count when there is a tie, else ().
        share: the top count / all votes on the item.
    """

    label: Hashable | None
    votes: dict[Hashable, int]
    tied: tuple[Hashable, ...]
    share: float

    @property
    def is_tie(self) -> bool:
        """True when two or more labels share the top count."""
        return bool(self.tied)


@dataclass(frozen=True)
class DawidSkeneResult:
    """What Dawid-Skene estimated.

    Attributes:
        categories: the label order of every array below.
        annotators: the annotator order of ``confusion``.
        items: the item order of ``posteriors``.
        labels: item -> the label with the highest posterior (ties: the first category).
        posteriors: items x categories, P(true label | judgements); rows sum to 1.
        priors: the estimated share of each true label.
        confusion: annotators x categories x categories; ``confusion[j, k, l]`` =
            P(annotator j says l | true label k); rows sum to 1.
        reliability: annotator -> estimated probability that their label is the true
            one, ``sum_k priors[k] * confusion[j, k, k]``.
        iterations: EM iterations run.
        converged: whether the log-likelihood changed by less than ``tol`` before
            ``max_iter``.
        log_likelihood: of the judgements under the final estimates.
    """

    categories: list[Hashable]
    annotators: list[str]
    items: list[Hashable]
    labels: dict[Hashable, Hashable]
    posteriors: np.ndarray
    priors: np.ndarray
    confusion: np.ndarray
    reliability: dict[str, float]
    iterations: int
    converged: bool
    log_likelihood: float

    def ranking(self) -> list[str]:
        """Annotators from the most to the least reliable."""
        return sorted(self.reliability, key=lambda a: (-self.reliability[a], a))


def majority_vote(judgements: Iterable[Sequence[Hashable]]) -> dict[Hashable, MajorityResult]:
    """The most frequent label of each item, with ties reported.

    Args:
        judgements: (item, annotator, label[, at]) records.

    Returns:
        item -> ``MajorityResult``, items in first-seen order.
    """
    votes: dict[Hashable, Counter[Hashable]] = defaultdict(Counter)
    for j in judgements:
        votes[j[0]][j[2]] += 1
    results = {}
    for item, counter in votes.items():
        top = max(counter.values())
        leaders = tuple(label for label, n in counter.items() if n == top)
        results[item] = MajorityResult(label=leaders[0] if len(leaders) == 1 else None, votes=dict(counter),
                                       tied=leaders if len(leaders) > 1 else (),
                                       share=top / sum(counter.values()))
    return results


def dawid_skene(judgements: Iterable[Sequence[Hashable]], *, categories: Sequence[Hashable] | None = None,
                max_iter: int = 100, tol: float = 1e-6, smoothing: float = 0.01) -> DawidSkeneResult:
    """Estimate true labels and each annotator's confusion matrix by EM.

    Args:
        judgements: (item, annotator, label[, at]) records; an annotator may label an
            item more than once (each counts).
        categories: every possible label, in order; defaults to the sorted labels seen.
        max_iter: EM iterations at most.
        tol: stop when the log-likelihood improves by less than this.
        smoothing: pseudo-count added to every confusion-matrix cell and prior, so a
            label an annotator never used is improbable rather than impossible.

    Returns:
        A ``DawidSkeneResult``.

    Raises:
        InvalidInput: no judgements, a label outside ``categories``, fewer than two
            categories, or max_iter < 1 / smoothing < 0.
    """
    records = [(j[0], str(j[1]), j[2]) for j in judgements]
    if not records:
        raise InvalidInput("Dawid-Skene needs at least one judgement.")
    if max_iter < 1 or smoothing < 0:
        raise InvalidInput(f"Dawid-Skene needs max_iter >= 1 and smoothing >= 0, got {max_iter} and {smoothing}.")
    seen = {label for _, _, label in records}
    cats = sorted(seen, key=str) if categories is None else list(categories)
    unknown = seen - set(cats)
    if unknown:
        raise InvalidInput(f"Labels {sorted(unknown, key=str)!r} are not among the categories {cats!r}.")
    if len(cats) < 2:
        raise InvalidInput(f"Dawid-Skene needs at least two categories, got {cats!r}.",
                           hint="Pass the schema's labels as categories.")
    items = list(dict.fromkeys(item for item, _, _ in records))
    annotators = sorted({a for _, a, _ in records})
    item_ix = {v: i for i, v in enumerate(items)}
    ann_ix = {v: i for i, v in enumerate(annotators)}
    cat_ix = {v: i for i, v in enumerate(cats)}
    # counts[i, j, l]: how often annotator j gave item i the label l, of shape (items, annotators, categories)
    counts = np.zeros((len(items), len(annotators), len(cats)))
    for item, ann, label in records:
        counts[item_ix[item], ann_ix[ann], cat_ix[label]] += 1

    votes = counts.sum(axis=1)
    posteriors = votes / votes.sum(axis=1, keepdims=True)  # start: the majority vote's shares
    previous = -np.inf
    converged = False
    for iteration in range(1, max_iter + 1):  # noqa: B007  (the count is reported after the loop)
        priors, confusion = _m_step(counts, posteriors, smoothing)
        posteriors, log_likelihood = _e_step(counts, priors, confusion)
        if log_likelihood - previous < tol:
            converged = True
            break
        previous = log_likelihood
    priors, confusion = _m_step(counts, posteriors, smoothing)
    accuracy = np.einsum("k,jkk->j", priors, confusion)
    return DawidSkeneResult(
        categories=cats, annotators=annotators, items=items,
        labels={item: cats[int(np.argmax(posteriors[i]))] for i, item in enumerate(items)},
        posteriors=posteriors, priors=priors, confusion=confusion,
        reliability={a: float(accuracy[j]) for j, a in enumerate(annotators)},
        iterations=iteration, converged=converged, log_likelihood=float(log_likelihood))


def _m_step(counts: np.ndarray, posteriors: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Priors (k,) and confusion matrices (j, k, l) from the item posteriors (i, k)."""
    priors = posteriors.sum(axis=0) + smoothing
    priors /= priors.sum()
    # confusion[j, k, l] = sum_i T[i, k] * counts[i, j, l]
    confusion = np.einsum("ik,ijl->jkl", posteriors, counts) + smoothing
    totals = confusion.sum(axis=2, keepdims=True)
    return priors, confusion / np.where(totals > 0, totals, 1.0)


def _e_step(counts: np.ndarray, priors: np.ndarray, confusion: np.ndarray) -> tuple[np.ndarray, float]:
    """Item posteriors (i, k) and the data log-likelihood, computed in log space."""
    # floor at 1e-300: with smoothing=0 a zero cell would give 0 * log 0 = nan instead of 0
    log_joint = np.log(np.maximum(priors, _FLOOR))[None, :] + np.einsum(
        "ijl,jkl->ik", counts, np.log(np.maximum(confusion, _FLOOR)))
    top = log_joint.max(axis=1, keepdims=True)
    log_norm = top + np.log(np.exp(log_joint - top).sum(axis=1, keepdims=True))
    return np.exp(log_joint - log_norm), float(log_norm.sum())
