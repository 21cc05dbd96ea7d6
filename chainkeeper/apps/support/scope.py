"""Out-of-scope detection for a deployed intent classifier: scores, a threshold, metrics.

A message about none of the known intents must be handed over, never answered with the
nearest intent's article (issue 16). Each scorer turns what the classifier gives per text
into one number, oriented the same way everywhere: **higher = more out of scope**.

- ``msp_scores``: 1 − the maximum softmax probability, after temperature scaling
  (``fit_temperature`` fits T on labelled in-scope dev logits; T = 1 is the raw model).
- ``energy_scores``: the free energy −T·logsumexp(logits / T) (Liu et al. 2020). Unlike
  the probability it keeps the logits' scale, which softmax throws away, so it needs the
  raw logits, not the probabilities.
- ``centroid_distance_scores``: cosine distance to the nearest class centroid of the
  in-scope training embeddings.
- ``knn_distance_scores``: cosine distance to the k-th nearest in-scope training embedding
  (Sun et al. 2022). Embeddings are L2-normalised rows (the sentence recipe: mean pooling
  + unit length), so a dot product is the cosine.
- ``mahalanobis_scores``: squared Mahalanobis distance to the nearest class mean under one
  shared covariance (``fit_class_gaussians``), which weighs the directions the in-scope
  texts vary along less than those they never move in.

``fit_threshold`` picks the rule's cut-off on held-out *in-scope* texts only, so no
out-of-scope data is needed, and returns it as a ``ScopeThreshold`` tied to the model
version it was fitted for. ``auroc`` and ``scope_metrics`` measure a scorer against texts
known to be out of scope (the benchmark's held-out intents).

Values in, values out: numpy arrays, no model, file or clock here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from chainkeeper.core.errors import InvalidInput

__all__ = [
    "SCORERS", "ClassGaussians", "ScopeThreshold", "ThresholdRule", "auroc", "centroid_distance_scores",
    "class_centroids", "energy_scores", "fit_class_gaussians", "fit_temperature", "fit_threshold",
    "knn_distance_scores", "log_softmax", "mahalanobis_scores", "msp_scores", "scope_metrics",
]

FloatArray = npt.NDArray[np.float64]
SCORERS = ("msp", "energy", "centroid", "knn", "mahalanobis")
ThresholdRule = Literal["accuracy_loss", "rejection"]
# Search interval of the temperature: beyond it a model is either hopelessly over-confident
# or says nothing, and the dev set is too small to tell the difference.
TEMPERATURE_BOUNDS = (0.05, 20.0)
# Rows of a k-NN query scored at once: (chunk, n_reference) float32 similarities stay ~40 MB.
KNN_CHUNK = 1024


@dataclass(frozen=True)
class ScopeThreshold:
    """A fitted out-of-scope rule: a text is out of scope when its score > ``threshold``.

    Attributes:
        scorer: one of ``SCORERS``.
        threshold: the cut-off on that scorer's score.
        temperature: T the scores are computed with (msp and energy; 1.0 for distances).
        rule: "accuracy_loss" (at most ``max_loss`` of the dev texts are correctly
            classified and rejected) or "rejection" (at most ``max_loss`` of the dev texts
            are rejected, right or wrong).
        max_loss: the rule's budget, a fraction (0.01 = one point).
        dev_rows: in-scope dev texts it was fitted on.
        dev_rejected: share of them it rejects.
        dev_accuracy_loss: share of them classified right and rejected (None without labels).
        model_version_id: the classifier's model version (None outside the registry).
        k: neighbours of the knn scorer, else None.
    """

    scorer: str
    threshold: float
    temperature: float
    rule: ThresholdRule
    max_loss: float
    dev_rows: int
    dev_rejected: float
    dev_accuracy_loss: float | None
    model_version_id: int | None = None
    k: int | None = None

    def out_of_scope(self, scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each score is past the threshold (one bool per text)."""
        return np.asarray(scores, dtype=np.float64) > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, for whatever stores it next to the model version."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScopeThreshold:
        """The inverse of ``to_dict``.

        Raises:
            InvalidInput: a field is missing or unknown, or the scorer or rule is not a known one.
        """
        fields = set(cls.__dataclass_fields__)
        missing = sorted(f for f in fields - set(data) if f not in ("model_version_id", "k"))
        unknown = sorted(set(data) - fields)
        if missing or unknown:
            raise InvalidInput(f"An out-of-scope threshold record lacks {missing} or has unknown {unknown}.",
                               hint=f"Fields: {', '.join(sorted(fields))}.")
        _check_scorer(str(data["scorer"]))
        if data["rule"] not in ("accuracy_loss", "rejection"):
            raise InvalidInput(f"Unknown threshold rule {data['rule']!r}.", hint="Use 'accuracy_loss' or 'rejection'.")
        return cls(**dict(data))


# --- logit scores ------------------------------------------------------------------------


def _logits(logits: npt.ArrayLike) -> FloatArray:
    array = np.asarray(logits, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise InvalidInput(f"Logits must have shape (texts, classes) with at least 2 classes, got {array.shape}.")
    if not np.isfinite(array).all():
        raise InvalidInput("Logits hold NaN or infinite values.", hint="Check the model's output.")
    return array


def _check_temperature(temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise InvalidInput(f"Temperature must be a positive number, got {temperature}.")


def _logsumexp(x: FloatArray) -> FloatArray:
    peak = x.max(axis=1, keepdims=True)  # subtracted so exp never overflows
    out: FloatArray = (peak + np.log(np.exp(x - peak).sum(axis=1, keepdims=True)))[:, 0]
    return out


def log_softmax(logits: npt.ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Log-probabilities of shape (n, k) of logits of shape (n, k) divided by ``temperature``.

    Raises:
        InvalidInput: logits not of shape (n, k ≥ 2) or not finite; temperature ≤ 0.
    """
    _check_temperature(temperature)
    scaled = _logits(logits) / temperature
    return scaled - _logsumexp(scaled)[:, None]


def msp_scores(logits: npt.ArrayLike, temperature: float = 1.0) -> FloatArray:
    """1 − the maximum softmax probability of each text (n,), after temperature scaling.

    Raises:
        InvalidInput: as ``log_softmax``.
    """
    out: FloatArray = 1.0 - np.exp(log_softmax(logits, temperature).max(axis=1))
    return out


def energy_scores(logits: npt.ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Free energy −T·logsumexp(logits / T) of each text (n,): low for a confident
    in-scope text, high when no class's logit stands out.

    Raises:
        InvalidInput: as ``log_softmax``.
    """
    _check_temperature(temperature)
    out: FloatArray = -temperature * _logsumexp(_logits(logits) / temperature)
    return out


def fit_temperature(logits: npt.ArrayLike, labels: Sequence[int] | npt.ArrayLike) -> float:
    """The temperature T minimising the negative log-likelihood of labelled logits
    (Guo et al. 2017): softmax(logits / T) is then calibrated on those texts.

    The NLL is convex in 1/T, so a golden-section search over log T in
    ``TEMPERATURE_BOUNDS`` finds its minimum; 60 steps narrow the interval to ~1e-12.

    Args:
        logits: in-scope dev logits, shape (n, k).
        labels: the true class index of each row, in range(k).

    Returns:
        T in ``TEMPERATURE_BOUNDS``.

    Raises:
        InvalidInput: shapes disagree, no rows, or a label outside range(k).
    """
    z = _logits(logits)
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (z.shape[0],) or z.shape[0] == 0:
        raise InvalidInput(f"{z.shape[0]} logit rows but {y.size} labels; temperature needs labelled rows.")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise InvalidInput(f"A label index is outside range({z.shape[1]}).")
    picked = z[np.arange(len(y)), y]

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        return float(np.mean(_logsumexp(z / t) - picked / t))

    low, high = math.log(TEMPERATURE_BOUNDS[0]), math.log(TEMPERATURE_BOUNDS[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return math.exp((low + high) / 2)


# --- embedding scores --------------------------------------------------------------------


def _unit_rows(embeddings: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] == 0:
        raise InvalidInput(f"{what} must have shape (rows, dim) with at least one row, got {array.shape}.")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.isfinite(norms).all() or (norms == 0).any():
        raise InvalidInput(f"{what} hold a zero, NaN or infinite vector.", hint="Check the sentence encoder's output.")
    out: npt.NDArray[np.float32] = array / norms  # already unit rows stay as they are
    return out


def class_centroids(embeddings: npt.ArrayLike, labels: Sequence[int] | npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The unit-length mean direction of each class's embeddings, shape (k, dim).

    Args:
        embeddings: in-scope training embeddings, shape (n, dim).
        labels: class index of each row; classes are range(max + 1), each needs a row.

    Raises:
        InvalidInput: shapes disagree, or a class in range(max + 1) has no row.
    """
    x = _unit_rows(embeddings, "Embeddings")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (x.shape[0],) or y.min() < 0:
        raise InvalidInput(f"{x.shape[0]} embeddings but {y.size} labels, or a negative label.")
    k = int(y.max()) + 1
    counts = np.bincount(y, minlength=k)
    if (counts == 0).any():
        raise InvalidInput(f"Class {int(np.argmin(counts))} has no training embedding; every class needs one.")
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, y, x)
    return _unit_rows(sums, "Class centroids")


def centroid_distance_scores(embeddings: npt.ArrayLike, centroids: npt.ArrayLike) -> FloatArray:
    """Cosine distance 1 − max_c cos(x, centroid_c) of each text (n,), in [0, 2].

    Raises:
        InvalidInput: not 2-D, empty, a zero vector, or the dimensions differ.
    """
    x, c = _unit_rows(embeddings, "Embeddings"), _unit_rows(centroids, "Centroids")
    if x.shape[1] != c.shape[1]:
        raise InvalidInput(f"Embeddings of dimension {x.shape[1]} against centroids of dimension {c.shape[1]}.")
    out: FloatArray = 1.0 - (x @ c.T).max(axis=1).astype(np.float64)
    return out


def knn_distance_scores(embeddings: npt.ArrayLike, reference: npt.ArrayLike, *, k: int = 1) -> FloatArray:
    """Cosine distance 1 − cos(x, its k-th nearest reference row) of each text (n,).

    An exact search in chunks of ``KNN_CHUNK`` queries (a BANKING77-sized reference of
    ~9,000 rows takes milliseconds per chunk); a larger one belongs in the vector index.

    Args:
        embeddings: the texts to score, shape (n, dim).
        reference: in-scope training embeddings, shape (m, dim). The texts scored should
            not be among them (a text's own row is at distance 0).
        k: which neighbour, 1 ≤ k ≤ m.

    Raises:
        InvalidInput: not 2-D, empty, a zero vector, dimensions differ, k outside [1, m].
    """
    x, ref = _unit_rows(embeddings, "Embeddings"), _unit_rows(reference, "Reference embeddings")
    if x.shape[1] != ref.shape[1]:
        raise InvalidInput(f"Embeddings of dimension {x.shape[1]} against reference of dimension {ref.shape[1]}.")
    if not 1 <= k <= ref.shape[0]:
        raise InvalidInput(f"k={k} is outside [1, {ref.shape[0]}] (the reference rows).")
    out = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], KNN_CHUNK):
        sims = x[start:start + KNN_CHUNK] @ ref.T  # (chunk, m)
        # the k-th largest similarity: partition puts it at index m - k
        kth = np.partition(sims, ref.shape[0] - k, axis=1)[:, ref.shape[0] - k]
        out[start:start + KNN_CHUNK] = 1.0 - kth
    return out


@dataclass(frozen=True)
class ClassGaussians:
    """Class means and the whitening of their shared covariance (``fit_class_gaussians``).

    Attributes:
        means: shape (k, dim), one mean per class.
        whitening: shape (dim, dim), W with W·Wᵀ = Σ⁻¹ (the regularised shared
            covariance's inverse): ‖(x − μ)·W‖² is the Mahalanobis distance squared.
    """

    means: npt.NDArray[np.float64]
    whitening: npt.NDArray[np.float64]


def fit_class_gaussians(embeddings: npt.ArrayLike, labels: Sequence[int] | npt.ArrayLike, *,
                        shrinkage: float = 0.01) -> ClassGaussians:
    """Class means and a shared (tied) covariance of in-scope training embeddings: the
    Gaussian model behind the Mahalanobis score (Lee et al. 2018; Podolskiy et al. 2021
    for transformer intents).

    The covariance is shrunk towards a multiple of the identity, Σ ← (1 − s)·Σ + s·(tr Σ / d)·I,
    so directions the training rows never vary along (fewer rows than dimensions, or a
    pooled vector with dead units) do not get an infinite weight.

    Args:
        embeddings: in-scope training embeddings, shape (n, dim), used as given (not normalised).
        labels: class index of each row; classes are range(max + 1), each needs a row.
        shrinkage: s in [0, 1].

    Raises:
        InvalidInput: shapes disagree, a class has no row, non-finite values, s outside [0, 1].
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] == 0 or not np.isfinite(x).all():
        raise InvalidInput(f"Embeddings must be finite, of shape (rows, dim) with rows, got {x.shape}.")
    if y.shape != (x.shape[0],) or y.min() < 0:
        raise InvalidInput(f"{x.shape[0]} embeddings but {y.size} labels, or a negative label.")
    if not 0.0 <= shrinkage <= 1.0:
        raise InvalidInput(f"shrinkage must be in [0, 1], got {shrinkage}.")
    k, d = int(y.max()) + 1, x.shape[1]
    counts = np.bincount(y, minlength=k)
    if (counts == 0).any():
        raise InvalidInput(f"Class {int(np.argmin(counts))} has no training embedding; every class needs one.")
    means = np.zeros((k, d))
    np.add.at(means, y, x)
    means /= counts[:, None]
    centred = x - means[y]
    cov = centred.T @ centred / x.shape[0]  # (d, d)
    cov = (1 - shrinkage) * cov + shrinkage * (np.trace(cov) / d) * np.eye(d)
    eigenvalues, vectors = np.linalg.eigh(cov)
    # a floor keeps a singular covariance (shrinkage 0) finite
    eigenvalues = np.maximum(eigenvalues, 1e-12 * max(float(eigenvalues.max()), 1e-12))
    return ClassGaussians(means=means, whitening=vectors / np.sqrt(eigenvalues))


def mahalanobis_scores(embeddings: npt.ArrayLike, gaussians: ClassGaussians) -> FloatArray:
    """Squared Mahalanobis distance to the nearest class mean, min_c (x − μ_c)ᵀ Σ⁻¹ (x − μ_c), (n,).

    Raises:
        InvalidInput: not 2-D, non-finite, or of another dimension than the fitted model.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != gaussians.means.shape[1] or not np.isfinite(x).all():
        raise InvalidInput(f"Embeddings of shape {x.shape} against class Gaussians of dimension "
                           f"{gaussians.means.shape[1]}.")
    xw, mw = x @ gaussians.whitening, gaussians.means @ gaussians.whitening  # whitened: (n, d), (k, d)
    squared = (xw ** 2).sum(axis=1)[:, None] - 2 * xw @ mw.T + (mw ** 2).sum(axis=1)[None, :]  # (n, k)
    out: FloatArray = np.maximum(squared.min(axis=1), 0.0)
    return out


# --- threshold -----------------------------------------------------------------------------


def _check_scorer(scorer: str) -> None:
    if scorer not in SCORERS:
        raise InvalidInput(f"Unknown out-of-scope scorer {scorer!r}.", hint=f"Use one of: {', '.join(SCORERS)}.")


def _scores(scores: npt.ArrayLike, what: str) -> FloatArray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise InvalidInput(f"{what} must be a non-empty list of finite numbers, got shape {array.shape}.")
    return array


def fit_threshold(scorer: str, dev_scores: npt.ArrayLike, *, correct: Sequence[bool] | npt.ArrayLike | None = None,
                  max_loss: float = 0.01, temperature: float = 1.0, model_version_id: int | None = None,
                  k: int | None = None) -> ScopeThreshold:
    """The lowest threshold on held-out in-scope texts that costs at most ``max_loss``.

    Rejecting a text the classifier got wrong costs no accuracy (it hands over a wrong
    answer); rejecting one it got right costs one text. So with ``correct`` (rule
    "accuracy_loss") at most ⌊max_loss·n⌋ correctly classified dev texts score above the
    threshold, however many wrong ones do: in-scope accuracy drops by ≤ ``max_loss`` on
    dev, the issue's "loss ≤ 1 point". Without it (rule "rejection") at most ⌊max_loss·n⌋
    dev texts of any kind do: a stricter rule that needs no labels. The lowest such
    threshold rejects the most out-of-scope texts the budget allows.

    Args:
        scorer: which of ``SCORERS`` produced the scores (recorded, not used).
        dev_scores: scores of in-scope texts the classifier was not trained on, (n,).
        correct: whether the classifier's intent was right for each, (n,), or None.
        max_loss: the budget, a fraction in [0, 1).
        temperature: recorded with the threshold (the scores' T).
        model_version_id: recorded with the threshold.
        k: recorded with the threshold (knn).

    Returns:
        The fitted ``ScopeThreshold``.

    Raises:
        InvalidInput: unknown scorer, no or non-finite scores, ``correct`` of another
            length, or ``max_loss`` outside [0, 1).
    """
    _check_scorer(scorer)
    scores = _scores(dev_scores, "In-scope dev scores")
    if not 0.0 <= max_loss < 1.0:
        raise InvalidInput(f"max_loss must be a fraction in [0, 1), got {max_loss}.",
                           hint="0.01 allows one point of in-scope accuracy.")
    n = scores.size
    budget = math.floor(max_loss * n + 1e-9)  # rows the rule may give up (1e-9: 0.01 * 300 is 2.9999…)
    if correct is None:
        costly = scores
    else:
        right = np.asarray(correct, dtype=bool)
        if right.shape != scores.shape:
            raise InvalidInput(f"{n} dev scores but {right.size} correctness flags.")
        costly = scores[right]
    if costly.size <= budget:
        # every costly row fits the budget: reject all but the lowest score (nothing costly survives)
        threshold = float(scores.min())
    else:
        # rows strictly above the (budget + 1)-th largest costly score: at most `budget` costly ones
        threshold = float(np.sort(costly)[costly.size - 1 - budget])
    rejected = scores > threshold
    loss = None if correct is None else float((rejected & np.asarray(correct, dtype=bool)).mean())
    return ScopeThreshold(scorer=scorer, threshold=threshold, temperature=float(temperature),
                          rule="rejection" if correct is None else "accuracy_loss", max_loss=float(max_loss),
                          dev_rows=n, dev_rejected=float(rejected.mean()), dev_accuracy_loss=loss,
                          model_version_id=model_version_id, k=k)


# --- measuring -------------------------------------------------------------------------------


def auroc(in_scope_scores: npt.ArrayLike, out_of_scope_scores: npt.ArrayLike) -> float:
    """Area under the ROC curve of telling out-of-scope texts (positives) from in-scope
    ones by score: the chance a random out-of-scope text scores above a random in-scope
    one, ties counting one half (the Mann-Whitney U statistic over n_in·n_out).

    Raises:
        InvalidInput: either side empty or not finite.
    """
    neg = _scores(in_scope_scores, "In-scope scores")
    pos = _scores(out_of_scope_scores, "Out-of-scope scores")
    both = np.concatenate([neg, pos])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size, dtype=np.float64)
    ranks[order] = np.arange(1, both.size + 1)
    # tied scores share their mean rank
    sorted_scores = both[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], both.size]
    for s, e in zip(starts, ends, strict=True):
        if e - s > 1:
            ranks[order[s:e]] = (s + 1 + e) / 2
    u = ranks[neg.size:].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (neg.size * pos.size))


def scope_metrics(in_scope_scores: npt.ArrayLike, in_scope_correct: Sequence[bool] | npt.ArrayLike,
                  out_of_scope_scores: npt.ArrayLike, threshold: float) -> dict[str, float | int]:
    """What a threshold does on a labelled test set with known out-of-scope texts.

    Args:
        in_scope_scores: scores of in-scope test texts, (n_in,).
        in_scope_correct: whether the classifier's intent was right for each, (n_in,).
        out_of_scope_scores: scores of out-of-scope test texts, (n_out,).
        threshold: texts scoring above it are rejected (handed over).

    Returns:
        ``in_scope_rows``, ``out_of_scope_rows``; ``accuracy`` (in-scope, no rejection),
        ``accuracy_with_rejection`` (accepted and right, over all in-scope texts),
        ``accuracy_loss`` (their difference), ``accepted_accuracy`` (right among the
        accepted), ``in_scope_rejected`` (share); ``oos_recall`` (out-of-scope texts
        rejected), ``oos_precision`` (out-of-scope among all rejected; 0 when none is),
        ``oos_f1``; ``auroc``.

    Raises:
        InvalidInput: empty or non-finite scores, or lengths of scores and correctness differ.
    """
    s_in, s_out = _scores(in_scope_scores, "In-scope scores"), _scores(out_of_scope_scores, "Out-of-scope scores")
    right = np.asarray(in_scope_correct, dtype=bool)
    if right.shape != s_in.shape:
        raise InvalidInput(f"{s_in.size} in-scope scores but {right.size} correctness flags.")
    kept = s_in <= threshold
    caught = int((s_out > threshold).sum())
    rejected = int((~kept).sum()) + caught
    accuracy, with_rejection = float(right.mean()), float((right & kept).mean())
    recall = caught / s_out.size
    precision = caught / rejected if rejected else 0.0
    return {
        "in_scope_rows": int(s_in.size), "out_of_scope_rows": int(s_out.size),
        "accuracy": accuracy, "accuracy_with_rejection": with_rejection,
        "accuracy_loss": accuracy - with_rejection,
        "accepted_accuracy": float(right[kept].mean()) if kept.any() else 0.0,
        "in_scope_rejected": float((~kept).mean()),
        "oos_recall": recall, "oos_precision": precision,
        "oos_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "auroc": auroc(s_in, s_out),
    }
