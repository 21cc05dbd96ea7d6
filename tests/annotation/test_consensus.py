"""Majority vote reports ties; Dawid-Skene beats it on a noisy crowd and ranks the annotators."""

from __future__ import annotations

import numpy as np
import pytest

from chainkeeper.annotation.agreement import Judgement
from chainkeeper.annotation.consensus import dawid_skene, majority_vote
from chainkeeper.core.errors import InvalidInput

CLASSES = 4
# Probability each simulated annotator gives the true label; otherwise a uniformly random
# wrong one. "adversary" instead shifts the true label by one class 85 % of the time.
ACCURACY = {"expert": 0.92, "careful": 0.8, "average": 0.6, "careless": 0.4}


def simulated_crowd(items: int, seed: int) -> tuple[np.ndarray, list[Judgement]]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, CLASSES, items)
    judgements = []
    for i, t in enumerate(truth.tolist()):
        for name, accuracy in ACCURACY.items():
            wrong = [c for c in range(CLASSES) if c != t]
            judgements.append(Judgement(i, name, t if rng.random() < accuracy else int(rng.choice(wrong))))
        judgements.append(Judgement(i, "adversary", (t + 1) % CLASSES if rng.random() < 0.85 else t))
    return truth, judgements


def test_majority_vote_reports_ties_instead_of_breaking_them() -> None:
    result = majority_vote([(1, "a", "x"), (1, "b", "x"), (1, "c", "y"),
                            (2, "a", "x"), (2, "b", "y")])
    assert result[1].label == "x" and not result[1].is_tie and result[1].share == pytest.approx(2 / 3)
    assert result[2].label is None and result[2].is_tie and set(result[2].tied) == {"x", "y"}
    assert result[2].votes == {"x": 1, "y": 1}


@pytest.mark.parametrize("seed", [0, 1])
def test_dawid_skene_beats_majority_vote_and_ranks_annotators(seed: int) -> None:
    truth, judgements = simulated_crowd(400, seed)
    votes = majority_vote(judgements)
    majority_accuracy = np.mean([votes[i].label == t for i, t in enumerate(truth)])
    ds = dawid_skene(judgements)
    ds_accuracy = np.mean([ds.labels[i] == t for i, t in enumerate(truth)])
    assert ds.converged
    assert ds_accuracy > majority_accuracy + 0.1, (ds_accuracy, majority_accuracy)
    assert ds.ranking() == ["expert", "careful", "average", "careless", "adversary"]
    # the estimated reliabilities are close to the simulated ones
    for name, accuracy in ACCURACY.items():
        assert ds.reliability[name] == pytest.approx(accuracy, abs=0.07)
    # the adversary's confusion matrix shows the shift: true k is mostly reported as k + 1
    adversary = ds.confusion[ds.annotators.index("adversary")]
    assert all(adversary[k, (k + 1) % CLASSES] > 0.7 for k in range(CLASSES))
    assert np.allclose(ds.posteriors.sum(axis=1), 1.0) and np.allclose(ds.confusion.sum(axis=2), 1.0)


def test_dawid_skene_agrees_with_a_clear_unanimous_crowd() -> None:
    judgements = [(i, a, "pos" if i % 3 else "neg") for i in range(30) for a in ("a", "b", "c")]
    ds = dawid_skene(judgements, categories=["neg", "pos", "neutral"])
    assert ds.labels == {i: "pos" if i % 3 else "neg" for i in range(30)}
    assert ds.priors[2] < 0.01  # nobody said "neutral"


def test_dawid_skene_without_smoothing_stays_finite() -> None:
    _, judgements = simulated_crowd(60, 5)
    ds = dawid_skene(judgements, smoothing=0.0)
    assert np.isfinite(ds.posteriors).all() and np.isfinite(ds.log_likelihood)


@pytest.mark.parametrize(("judgements", "kwargs", "match"), [
    pytest.param([], {}, "at least one judgement", id="empty"),
    pytest.param([(1, "a", "x"), (2, "b", "x")], {}, "two categories", id="one-category"),
    pytest.param([(1, "a", "x")], {"categories": ["y", "z"]}, "not among the categories", id="unknown-label"),
    pytest.param([(1, "a", "x")], {"categories": ["x", "y"], "max_iter": 0}, "max_iter", id="no-iterations"),
])
def test_dawid_skene_rejects_bad_input(judgements: list[tuple[int, str, str]], kwargs: dict[str, object],
                                       match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        dawid_skene(judgements, **kwargs)  # type: ignore[arg-type]
