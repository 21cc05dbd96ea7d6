"""Drift checks: is a window of served traffic still like the model's reference data?

Values in, values out: each check takes the reference sample and the window as plain
lists or arrays and returns a ``CheckResult`` with its statistic, the threshold it is
compared with, a p-value where the test has one, and whether it fired. The job that
reads the log, runs the model and stores results is ``drift_jobs``.

Every threshold is the statistic's critical value at the significance level ``alpha``
(or a fixed rule of thumb for PSI), so "statistic above threshold" is the decision and
a chart of statistic / threshold reads the same for every check:

- ``label_psi``: population stability index of the predicted-label distribution,
  threshold 0.2 (the usual "significant shift" rule) or, where sampling noise alone
  reaches more, the PSI that no-drift windows of this size exceed with probability
  alpha (a window of 30 needs far more than 0.2).
- ``label_chi2``: chi-square test of the same two distributions (2 x k contingency).
- ``confidence_ks``: two-sample Kolmogorov-Smirnov test of the top-label confidence.
- ``length_ks``: the same test on text length in words.
- ``oov_rate``: share of words the tokenizer does not know (``[UNK]``) or splits into
  ``OOV_PIECES`` or more pieces; one-sided two-proportion z-test for an increase.
- ``script_chi2``: chi-square test of the writing script (``data.text.detect_script``).
- ``embedding_mmd``: maximum mean discrepancy of mean-pooled model embeddings with an
  RBF kernel, its p-value and threshold from a permutation test.
- ``entity_type_psi`` and ``entity_type_chi2`` (token taggers): PSI and chi-square of the
  entity-type distribution, each entity one observation and each text without an entity
  one ``(none)`` (so a window where entities vanish drifts too), calibrated by the same
  permutation null as the label checks. A tagger is checked with ``TAGGER_CHECKS``
  (confidence, length, OOV, script and these two); a classifier with ``CHECKS`` (also
  named ``CLASSIFIER_CHECKS``); ``ALL_CHECKS`` names every check, in result order.

With 77 labels and windows of tens of requests most labels are seen zero times; the
chi-square distribution and PSI's chi-square approximation are then wrong, and merging
labels into bins by their reference share biased the test (the reference's rare labels
are rare partly by chance). Both label checks therefore compare every label and take
their p-value and threshold from a permutation null of the window at hand
(``label_null``, issue 8).

Both sides are the *model's predicted labels*: the reference's are the model's answers
on the reference texts, the window's those it served (``drift_jobs``), so a shift means
the traffic, not the model's errors against true labels.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from scipy import stats

from chainkeeper.core.errors import InvalidInput

__all__ = [
    "ALL_CHECKS",
    "CHECKS",
    "CLASSIFIER_CHECKS",
    "NO_ENTITY_CATEGORY",
    "TAGGER_CHECKS",
    "DEFAULT_ALPHA",
    "MC_DRAWS",
    "MC_MAX_DRAWS",
    "OOV_PIECES",
    "PSI_THRESHOLD",
    "CheckResult",
    "LabelNull",
    "Profile",
    "categorical_chi2",
    "embedding_mmd",
    "entity_type_checks",
    "entity_type_sample",
    "ks_check",
    "label_chi2",
    "label_null",
    "label_psi",
    "mc_draws",
    "mc_test",
    "mmd2",
    "oov_increase",
    "psi",
    "run_checks",
]

# A classifier's checks (what ``CHECKS`` always named); a tagger's; every check by name, in result order.
CHECKS = ("label_psi", "label_chi2", "confidence_ks", "length_ks", "oov_rate", "script_chi2", "embedding_mmd")
CLASSIFIER_CHECKS = CHECKS
TAGGER_CHECKS = ("confidence_ks", "length_ks", "oov_rate", "script_chi2", "entity_type_psi", "entity_type_chi2")
ALL_CHECKS = (*CHECKS, "entity_type_psi", "entity_type_chi2")
# The category of a text in which no entity was found (entity-type checks).
NO_ENTITY_CATEGORY = "(none)"
DEFAULT_ALPHA = 0.01
PSI_THRESHOLD = 0.2
# A word split into this many word pieces or more counts as out of vocabulary.
OOV_PIECES = 4
# Zero shares make PSI infinite: a share is floored at this before the logarithm.
_PSI_FLOOR = 1e-4
# Random splits of the pooled labels drawn to calibrate the label checks: p resolves to
# 1/5000 and at alpha 0.01 the threshold is the 49th largest of 4,999 statistics. A smaller
# alpha draws more, so that at least _MC_TAIL statistics lie beyond its threshold.
MC_DRAWS = 4999
MC_MAX_DRAWS = 100_000
_MC_TAIL = 50
_MC_SEED = 8  # issue 8


@dataclass(frozen=True)
class CheckResult:
    """One check of one window.

    ``drifted`` is the test's decision: the p-value below ``alpha`` where the test has
    one (then the statistic is also about at or above its critical value), else
    ``statistic > threshold``.
    """

    check: str
    statistic: float
    threshold: float
    p_value: float | None
    drifted: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    """What the checks read of a sample of texts (the reference, or a window of traffic).

    Attributes:
        labels: the predicted label of each text.
        confidences: the predicted label's probability.
        lengths: words per text.
        oov_words: per text, words out of the tokenizer's vocabulary.
        scripts: per text, its dominant script.
        embeddings: (n, hidden) mean-pooled encoder states, or None to skip the MMD check.
        entity_types: a tagger's entity-type sample (``entity_type_sample``), or None
            (a classifier) to skip the entity checks.
    """

    labels: list[str]
    confidences: list[float]
    lengths: list[int]
    oov_words: list[int]
    scripts: list[str]
    embeddings: Any = None
    entity_types: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)


# --- label distribution ---------------------------------------------------------------


def _psi_rows(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """PSI of each row pair of two (rows, labels) count arrays (``psi`` of one pair, vectorised)."""
    e = np.maximum(expected / expected.sum(axis=1, keepdims=True), _PSI_FLOOR)
    a = np.maximum(actual / actual.sum(axis=1, keepdims=True), _PSI_FLOOR)
    rows: np.ndarray = np.sum((a - e) * np.log(a / e), axis=1)
    return rows


def _chi2_rows(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Chi-square of homogeneity of each row pair of two (rows, labels) count arrays.

    For a 2 x k table with row totals m, n and column totals c_j the statistic reduces to
    ``sum_j (r_j n - w_j m)^2 / (m n c_j)``; a column empty on both sides adds nothing.
    """
    m = reference.sum(axis=1, keepdims=True)
    n = window.sum(axis=1, keepdims=True)
    column = reference + window
    squares = (reference * n - window * m) ** 2
    terms = np.divide(squares, m * n * column, out=np.zeros(column.shape), where=column > 0)
    rows: np.ndarray = terms.sum(axis=1)
    return rows


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two count (or share) vectors over the same bins.

    ``sum((a - e) * ln(a / e))`` over the bins' shares; a share of zero is floored at
    1e-4 so an empty bin adds a large but finite amount.

    Raises:
        InvalidInput: lengths differ or a side has no mass.
    """
    if len(expected) != len(actual) or not len(expected):
        raise InvalidInput(f"PSI needs two count vectors of one length, got {len(expected)} and {len(actual)}.")
    e, a = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    if e.sum() <= 0 or a.sum() <= 0:
        raise InvalidInput("PSI needs counts on both sides.")
    return float(_psi_rows(e[None, :], a[None, :])[0])


@dataclass(frozen=True)
class LabelNull:
    """PSI and chi-square of random splits of the pooled labels, each sorted ascending.

    Attributes:
        psi, chi2: ``draws`` statistics each.
        reference_size, window_size: m and n, the sizes of each split.
    """

    psi: np.ndarray
    chi2: np.ndarray
    reference_size: int
    window_size: int

    def describe(self) -> str:
        """One line for a result's details: what the threshold was calibrated for."""
        return (f"calibrated for this window of {self.window_size}: {len(self.psi)} random splits of the "
                f"{self.reference_size + self.window_size} pooled labels into {self.reference_size} reference "
                f"and {self.window_size} window labels")


def mc_draws(alpha: float) -> int:
    """Draws that leave at least ``_MC_TAIL`` null statistics beyond the alpha threshold (capped)."""
    return min(MC_MAX_DRAWS, max(MC_DRAWS, math.ceil(_MC_TAIL / alpha) - 1))


@functools.lru_cache(maxsize=16)
def label_null(reference_counts: tuple[int, ...], window_counts: tuple[int, ...], draws: int = MC_DRAWS) -> LabelNull:
    """The no-drift distribution of both label statistics for this table: a permutation test.

    Under no drift the m reference and n window labels are one exchangeable sample, so
    every split of the pooled labels into m and n is as likely as the observed one; the
    window's counts of a random split are multivariate hypergeometric. The null is exact
    for any counts (no chi-square approximation, no merging of rare labels), and its
    chi-square tends to scipy's when expected counts are large. A null drawn from the
    reference's label shares instead treats that sample of a few hundred as the truth:
    with 77 labels it fired on about 5 % of simulated calm windows of 30 at alpha 0.01.
    Seeded, so one table always gives one threshold; cached, so ``label_psi`` and
    ``label_chi2`` of one window draw once (a window of tens of labels costs milliseconds;
    a scheduled job's windows differ, so nothing more is worth keeping).

    Args:
        reference_counts, window_counts: counts per label over the same labels.
        draws: random splits drawn.
    """
    pooled = (np.asarray(reference_counts) + np.asarray(window_counts)).astype(np.int64)
    n = int(np.sum(window_counts))
    # "count" costs O(n) per draw, "marginals" O(labels): pick the cheaper for this table.
    method: Literal["count", "marginals"] = "count" if n <= 10 * len(pooled) else "marginals"
    window = np.random.default_rng(_MC_SEED).multivariate_hypergeometric(pooled, n, size=draws, method=method)
    reference = (pooled - window).astype(float)  # (draws, labels)
    window = window.astype(float)
    null_psi, null_chi2 = np.sort(_psi_rows(reference, window)), np.sort(_chi2_rows(reference, window))
    null_psi.setflags(write=False)  # cached: shared by every caller of this table
    null_chi2.setflags(write=False)
    return LabelNull(null_psi, null_chi2, int(pooled.sum()) - n, n)


def mc_test(null: np.ndarray, observed: float, alpha: float) -> tuple[float, float]:
    """Monte Carlo p-value of ``observed`` and the threshold the decision ``p < alpha`` amounts to.

    ``p = (1 + #{null >= observed}) / (1 + draws)``, ties counted against drift. ``p <
    alpha`` holds exactly when at most k null statistics reach the observed one, k the
    largest integer below ``alpha (1 + draws) - 1``, that is when the statistic exceeds the
    (k + 1)-th largest null statistic: that is the threshold, so "statistic above
    threshold" and "p below alpha" are one decision.

    Args:
        null: the null statistics, sorted ascending.

    Returns:
        (p-value, threshold); the threshold is infinite when ``draws`` cannot resolve alpha.
    """
    draws = len(null)
    # The tolerance keeps a tie a tie when the observed table's sum rounds differently.
    at_least = draws - int(np.searchsorted(null, observed - 1e-9 * max(1.0, abs(observed)), side="left"))
    k = math.ceil(alpha * (1 + draws) - 1) - 1
    threshold = float(null[draws - 1 - k]) if k >= 0 else math.inf
    return (1 + at_least) / (1 + draws), threshold


def _label_table(reference: Sequence[str], window: Sequence[str], name: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Reference and window counts over every label seen on either side."""
    if not reference or not window:
        raise InvalidInput(f"The {name} check needs labels on both sides, got {len(reference)} and {len(window)}.")
    ref, win = Counter(reference), Counter(window)
    labels = sorted(set(ref) | set(win))
    return np.array([ref[y] for y in labels], dtype=float), np.array([win[y] for y in labels], dtype=float)


def _key(counts: np.ndarray) -> tuple[int, ...]:
    return tuple(int(c) for c in counts)


def label_psi(reference: Sequence[str], window: Sequence[str], *, alpha: float = DEFAULT_ALPHA,
              threshold: float | None = None) -> CheckResult:
    """PSI of the predicted-label distribution, its threshold calibrated for this window.

    The threshold is the larger of the usual 0.2 and the PSI that no-drift splits of
    these labels exceed with probability alpha (``label_null``); the p-value is the
    permutation one. On small windows PSI is dominated by labels the window happens not
    to hold (floored at 1e-4), so a fixed rule or a chi-square approximation fires on
    noise: 15.7 % of calm 30-request windows in the benchmark before issue 8.

    Args:
        threshold: a fixed threshold to use instead (the calibration is then only reported).
    """
    ref_counts, win_counts = _label_table(reference, window, "label_psi")
    value = float(_psi_rows(ref_counts[None, :], win_counts[None, :])[0])
    null = label_null(_key(ref_counts), _key(win_counts), mc_draws(alpha))
    p_value, calibrated = mc_test(null.psi, value, alpha)
    if threshold is not None:
        limit, source = threshold, "fixed"
    elif calibrated >= PSI_THRESHOLD:
        limit, source = calibrated, "calibrated"
    else:
        limit, source = PSI_THRESHOLD, "rule of thumb"
    return CheckResult("label_psi", value, limit, p_value, value > limit,
                       {"labels": len(ref_counts), "alpha": alpha, "window_size": len(window),
                        "threshold_from": source, "calibrated_threshold": calibrated,
                        "rule_of_thumb": PSI_THRESHOLD, "calibration": null.describe(),
                        "top_window_labels": _top(window)})


def label_chi2(reference: Sequence[str], window: Sequence[str], *, alpha: float = DEFAULT_ALPHA) -> CheckResult:
    """Chi-square test of the predicted-label distribution, its p-value by permutation.

    The statistic is the textbook 2 x k one over every label seen; its p-value and
    threshold come from ``label_null``, not the chi-square distribution, which is wrong
    when expected counts are a few (a window of 30 over 77 labels). The asymptotic
    p-value is kept in the details, for comparison.
    """
    ref_counts, win_counts = _label_table(reference, window, "label_chi2")
    dof = len(ref_counts) - 1
    if dof < 1:
        return CheckResult("label_chi2", 0.0, math.inf, 1.0, False, {"labels": 1, "alpha": alpha})
    value = float(_chi2_rows(ref_counts[None, :], win_counts[None, :])[0])
    null = label_null(_key(ref_counts), _key(win_counts), mc_draws(alpha))
    p_value, threshold = mc_test(null.chi2, value, alpha)
    return CheckResult("label_chi2", value, threshold, p_value, p_value < alpha,
                       {"labels": len(ref_counts), "dof": dof, "alpha": alpha, "window_size": len(window),
                        "asymptotic_p_value": float(stats.chi2.sf(value, dof)), "calibration": null.describe()})


def categorical_chi2(reference: Sequence[str], window: Sequence[str], *, alpha: float = DEFAULT_ALPHA,
                     name: str = "chi2") -> CheckResult:
    """Chi-square test of homogeneity of two categorical samples (a 2 x k table), asymptotic p-value.

    For a handful of categories with most of the mass in one (the script check); the
    label checks use ``label_chi2``. With one category there is nothing to compare and
    the result is statistic 0, p-value 1.
    """
    categories = sorted(set(reference) | set(window))
    ref, win = Counter(reference), Counter(window)
    table = np.array([[ref[c] for c in categories], [win[c] for c in categories]], dtype=float)
    if len(categories) < 2:
        return CheckResult(name, 0.0, math.inf, 1.0, False, {"categories": len(categories)})
    statistic, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    threshold = float(stats.chi2.ppf(1 - alpha, dof))
    return CheckResult(name, float(statistic), threshold, float(p_value), float(statistic) > threshold,
                       {"dof": int(dof), "alpha": alpha})


def _top(values: Sequence[str], k: int = 3) -> list[list[Any]]:
    n = len(values) or 1
    return [[str(label), round(count / n, 4)] for label, count in Counter(values).most_common(k)]


def entity_type_sample(per_text: Sequence[Sequence[str]]) -> list[str]:
    """The entity-type observations of tagged texts: each entity's type, and ``(none)``
    for each text without one (pure)."""
    out: list[str] = []
    for types in per_text:
        out += list(types) if types else [NO_ENTITY_CATEGORY]
    return out


def entity_type_checks(reference: Sequence[str], window: Sequence[str], *,
                       alpha: float = DEFAULT_ALPHA) -> tuple[CheckResult, CheckResult]:
    """PSI and chi-square of the entity-type distribution (``entity_type_sample`` on each side),
    calibrated by permutation as ``label_psi`` and ``label_chi2`` are."""
    psi_result, chi2_result = label_psi(reference, window, alpha=alpha), label_chi2(reference, window, alpha=alpha)
    shares = {"reference_types": _top(reference, 10), "window_types": _top(window, 10)}
    return (replace(psi_result, check="entity_type_psi", details={**psi_result.details, **shares}),
            replace(chi2_result, check="entity_type_chi2", details={**chi2_result.details, **shares}))


# --- continuous values ------------------------------------------------------------------


def ks_check(name: str, reference: Sequence[float], window: Sequence[float], *,
             alpha: float = DEFAULT_ALPHA) -> CheckResult:
    """Two-sample Kolmogorov-Smirnov test; the threshold is the asymptotic critical D.

    ``c(alpha) * sqrt((n + m) / (n * m))`` with ``c(alpha) = sqrt(-ln(alpha / 2) / 2)``;
    the p-value is scipy's (exact for small samples), so near the threshold the two
    can disagree slightly; the decision is the p-value's.
    """
    n, m = len(reference), len(window)
    if not n or not m:
        raise InvalidInput(f"The {name} check needs values on both sides, got {n} and {m}.")
    with warnings.catch_warnings():
        # For some sizes and statistics (two windows of 500 at D = 2/500) scipy's exact
        # p-value overflows; it then uses the asymptotic one and says so with a warning.
        # That fallback is the answer we want, not a fault of the data.
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful",
                                category=RuntimeWarning)
        result = stats.ks_2samp(np.asarray(reference, dtype=float), np.asarray(window, dtype=float))
    threshold = math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))
    return CheckResult(name, float(result.statistic), threshold, float(result.pvalue), float(result.pvalue) < alpha,
                       {"reference_median": float(np.median(reference)), "window_median": float(np.median(window)),
                        "alpha": alpha})


def oov_increase(reference_oov: int, reference_words: int, window_oov: int, window_words: int, *,
                 alpha: float = DEFAULT_ALPHA) -> CheckResult:
    """One-sided two-proportion z-test: is the window's OOV word rate higher?

    The statistic is the rate difference (window - reference); the threshold is the
    difference that reaches significance, ``z(1 - alpha) * pooled standard error``.
    """
    if not reference_words or not window_words:
        raise InvalidInput("The OOV check needs words on both sides.")
    p_ref, p_win = reference_oov / reference_words, window_oov / window_words
    pooled = (reference_oov + window_oov) / (reference_words + window_words)
    se = math.sqrt(pooled * (1 - pooled) * (1 / reference_words + 1 / window_words))
    diff = p_win - p_ref
    threshold = float(stats.norm.ppf(1 - alpha)) * se
    p_value = float(stats.norm.sf(diff / se)) if se > 0 else (0.0 if diff > 0 else 1.0)
    return CheckResult("oov_rate", diff, threshold, p_value, diff > threshold,
                       {"reference_rate": p_ref, "window_rate": p_win, "alpha": alpha})


# --- embeddings ---------------------------------------------------------------------------


def _sq_distances(x: np.ndarray) -> np.ndarray:
    sq = np.sum(x * x, axis=1)
    distances: np.ndarray = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    return distances


def mmd2(kernel: np.ndarray, n: int) -> float:
    """Biased MMD^2 from the joint kernel matrix of [reference (first n rows); window]."""
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float(kxx.mean() + kyy.mean() - 2 * kxy.mean())


def embedding_mmd(reference: np.ndarray, window: np.ndarray, *, alpha: float = DEFAULT_ALPHA,
                  permutations: int = 200, seed: int = 0) -> CheckResult:
    """MMD^2 of two embedding samples with an RBF kernel, tested by permutation.

    The bandwidth is the median pairwise distance of the pooled sample (the median
    heuristic). The p-value is ``(1 + #{perm >= observed}) / (1 + permutations)``;
    the threshold is the (1 - alpha) quantile of the permutation statistics.

    Args:
        reference, window: arrays of shape (n, d) and (m, d).
        permutations: relabellings of the pooled sample; 200 resolve p down to ~0.005.
    """
    x, y = np.asarray(reference, dtype=np.float64), np.asarray(window, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise InvalidInput(f"MMD needs two (n, d) samples of at least 2 rows, got {x.shape} and {y.shape}.")
    pooled = np.vstack([x, y])
    d2 = _sq_distances(pooled)
    median = float(np.median(d2[np.triu_indices(len(pooled), 1)]))
    kernel = np.exp(-d2 / max(median, 1e-12))
    n = len(x)
    observed = mmd2(kernel, n)
    rng = np.random.default_rng(seed)
    null = np.empty(permutations)
    for i in range(permutations):
        order = rng.permutation(len(pooled))
        null[i] = mmd2(kernel[np.ix_(order, order)], n)
    p_value = float((1 + np.sum(null >= observed)) / (1 + permutations))
    threshold = float(np.quantile(null, 1 - alpha))
    return CheckResult("embedding_mmd", observed, threshold, p_value, p_value < alpha,
                       {"permutations": permutations, "bandwidth_sq": median, "alpha": alpha})


# --- all of them ---------------------------------------------------------------------------


def run_checks(reference: Profile, window: Profile, *, alpha: float = DEFAULT_ALPHA,
               checks: Sequence[str] = CHECKS, permutations: int = 200) -> list[CheckResult]:
    """Every requested check of a window against the reference, in ``CHECKS`` order.

    ``embedding_mmd`` is skipped when either profile has no embeddings, the entity-type
    checks when either has no ``entity_types`` (a classifier's).

    Raises:
        InvalidInput: an unknown check name, or an empty side.
    """
    unknown = sorted(set(checks) - set(ALL_CHECKS))
    if unknown:
        raise InvalidInput(f"Unknown drift check(s): {', '.join(unknown)}.", hint=f"Checks: {', '.join(ALL_CHECKS)}.")
    if not len(reference) or not len(window):
        raise InvalidInput(f"Drift checks need texts on both sides, got {len(reference)} reference and "
                           f"{len(window)} window texts.")
    out: list[CheckResult] = []
    tagged = reference.entity_types is not None and window.entity_types is not None
    entity = (entity_type_checks(reference.entity_types or [], window.entity_types or [], alpha=alpha)
              if tagged and {"entity_type_psi", "entity_type_chi2"} & set(checks) else None)
    for name in ALL_CHECKS:
        if name not in checks:
            continue
        if name in ("entity_type_psi", "entity_type_chi2"):
            if entity is not None:
                out.append(entity[0] if name == "entity_type_psi" else entity[1])
        elif name == "label_psi":
            out.append(label_psi(reference.labels, window.labels, alpha=alpha))
        elif name == "label_chi2":
            out.append(label_chi2(reference.labels, window.labels, alpha=alpha))
        elif name == "confidence_ks":
            out.append(ks_check(name, reference.confidences, window.confidences, alpha=alpha))
        elif name == "length_ks":
            out.append(ks_check(name, reference.lengths, window.lengths, alpha=alpha))
        elif name == "oov_rate":
            out.append(oov_increase(sum(reference.oov_words), sum(reference.lengths), sum(window.oov_words),
                                    sum(window.lengths), alpha=alpha))
        elif name == "script_chi2":
            out.append(categorical_chi2(reference.scripts, window.scripts, alpha=alpha, name="script_chi2"))
        elif reference.embeddings is not None and window.embeddings is not None:
            out.append(embedding_mmd(reference.embeddings, window.embeddings, alpha=alpha,
                                     permutations=permutations))
    return out
