"""Drift checks: is a window of served traffic still like the model's reference data?

Values in, values out: each check takes the reference sample and the window as plain
lists or arrays and returns a ``CheckResult`` with its statistic, the threshold it is
compared with, a p-value where the test has one, and whether it fired. The job that
reads the log, runs the model and stores results is ``drift_jobs``.

Every threshold is the statistic's critical value at the significance level ``alpha``
(or a fixed rule of thumb for PSI), so "statistic above threshold" is the decision and
a chart of statistic / threshold reads the same for every check:

- ``label_psi``: population stability index of the predicted-label distribution,
  threshold 0.2 (the usual "significant shift" rule) or, for small samples, the PSI
  that sampling noise alone reaches with probability alpha: under no drift PSI is about
  ``chi2(bins - 1) * (1/n + 1/m)``, so a window of 30 needs far more than 0.2.
- ``label_chi2``: chi-square test of the same two distributions (2 x k contingency).
- ``confidence_ks``: two-sample Kolmogorov-Smirnov test of the top-label confidence.
- ``length_ks``: the same test on text length in words.
- ``oov_rate``: share of words the tokenizer does not know (``[UNK]``) or splits into
  ``OOV_PIECES`` or more pieces; one-sided two-proportion z-test for an increase.
- ``script_chi2``: chi-square test of the writing script (``data.text.detect_script``).
- ``embedding_mmd``: maximum mean discrepancy of mean-pooled model embeddings with an
  RBF kernel, its p-value and threshold from a permutation test.

With 77 labels and windows of tens of requests most labels are seen zero times, which
makes PSI and chi-square fire on noise alone; ``label_bins`` therefore merges labels,
by their reference share, into bins that expect at least ``MIN_EXPECTED`` window rows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from chainkeeper.core.errors import InvalidInput

__all__ = [
    "CHECKS",
    "DEFAULT_ALPHA",
    "MIN_EXPECTED",
    "OOV_PIECES",
    "PSI_THRESHOLD",
    "CheckResult",
    "Profile",
    "categorical_chi2",
    "embedding_mmd",
    "ks_check",
    "label_bins",
    "label_chi2",
    "label_psi",
    "mmd2",
    "oov_increase",
    "psi",
    "run_checks",
]

CHECKS = ("label_psi", "label_chi2", "confidence_ks", "length_ks", "oov_rate", "script_chi2", "embedding_mmd")
DEFAULT_ALPHA = 0.01
PSI_THRESHOLD = 0.2
# Smallest expected count per bin of a chi-square or PSI comparison (the textbook rule; in
# the benchmark 10 left windows of 30 two bins and no power, with no fewer false alarms).
MIN_EXPECTED = 5.0
# A word split into this many word pieces or more counts as out of vocabulary.
OOV_PIECES = 4
# Zero shares make PSI infinite: a share is floored at this before the logarithm.
_PSI_FLOOR = 1e-4


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
    """

    labels: list[str]
    confidences: list[float]
    lengths: list[int]
    oov_words: list[int]
    scripts: list[str]
    embeddings: Any = None

    def __len__(self) -> int:
        return len(self.labels)


# --- label distribution ---------------------------------------------------------------


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
    e = np.maximum(e / e.sum(), _PSI_FLOOR)
    a = np.maximum(a / a.sum(), _PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def label_bins(reference: Sequence[str], window_size: int) -> dict[str, int]:
    """Map each reference label to a bin so every bin expects >= ``MIN_EXPECTED`` window rows.

    Labels are taken from most to least frequent in the reference and packed greedily;
    a label never seen in the reference goes to the last bin, with the rarest ones.

    Returns:
        label -> bin index (0 .. number of bins - 1).
    """
    counts = Counter(reference)
    # A bin is full when its reference count c gives c / n * window_size >= MIN_EXPECTED
    # (compared in counts, not summed float shares, so 8 x 2.5 % makes exactly 20 %).
    needed = MIN_EXPECTED * sum(counts.values())
    bins: dict[str, int] = {}
    current, filled = 0, 0
    for label, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        bins[label] = current
        filled += count
        if filled * max(window_size, 1) >= needed:
            current, filled = current + 1, 0
    if filled and current:  # the last bin came up short: merge it into the one before
        for label, b in bins.items():
            if b == current:
                bins[label] = current - 1
    return bins


def _binned(values: Sequence[str], bins: Mapping[str, int]) -> np.ndarray:
    last = max(bins.values(), default=0)
    out = np.zeros(last + 1)
    for value in values:
        out[bins.get(value, last)] += 1
    return out


def label_psi(reference: Sequence[str], window: Sequence[str], *, alpha: float = DEFAULT_ALPHA,
              threshold: float = PSI_THRESHOLD) -> CheckResult:
    """PSI of the predicted-label distribution, over ``label_bins``.

    The threshold is ``max(threshold, chi2_{1-alpha}(bins - 1) * (1/n + 1/m))``: PSI is
    the symmetric KL divergence, which under no drift is about that chi-square scaled by
    the two sample sizes, so the fixed rule alone fires on small windows' noise.
    """
    bins = label_bins(reference, len(window))
    k = int(max(bins.values(), default=0)) + 1
    noise = float(stats.chi2.ppf(1 - alpha, k - 1)) * (1 / len(reference) + 1 / len(window)) if k > 1 else 0.0
    limit = max(threshold, noise)
    value = psi(_binned(reference, bins), _binned(window, bins))
    return CheckResult("label_psi", value, limit, None, value > limit,
                       {"bins": k, "rule_of_thumb": threshold, "top_window_labels": _top(window)})


def categorical_chi2(reference: Sequence[str], window: Sequence[str], *, alpha: float = DEFAULT_ALPHA,
                     name: str = "chi2", bins: Mapping[str, int] | None = None) -> CheckResult:
    """Chi-square test of homogeneity of two categorical samples (a 2 x k table).

    Categories empty on both sides are dropped; with one category left there is
    nothing to compare and the result is statistic 0, p-value 1.

    Args:
        bins: merge categories into these bins first (``label_bins``); None: one bin each.
    """
    if bins is None:
        bins = {value: i for i, value in enumerate(sorted(set(reference) | set(window)))}
    table = np.vstack([_binned(reference, bins), _binned(window, bins)])
    table = table[:, table.sum(axis=0) > 0]
    dof = table.shape[1] - 1
    if dof < 1:
        return CheckResult(name, 0.0, math.inf, 1.0, False, {"categories": int(table.shape[1])})
    statistic, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    threshold = float(stats.chi2.ppf(1 - alpha, dof))
    return CheckResult(name, float(statistic), threshold, float(p_value), float(statistic) > threshold,
                       {"dof": int(dof), "alpha": alpha})


def label_chi2(reference: Sequence[str], window: Sequence[str], *, alpha: float = DEFAULT_ALPHA) -> CheckResult:
    """Chi-square test of the predicted-label distribution, over ``label_bins``."""
    return categorical_chi2(reference, window, alpha=alpha, name="label_chi2",
                            bins=label_bins(reference, len(window)))


def _top(values: Sequence[str], k: int = 3) -> list[list[Any]]:
    n = len(values) or 1
    return [[label, round(count / n, 4)] for label, count in Counter(values).most_common(k)]


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
    return np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)


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

    ``embedding_mmd`` is skipped when either profile has no embeddings.

    Raises:
        InvalidInput: an unknown check name, or an empty side.
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise InvalidInput(f"Unknown drift check(s): {', '.join(unknown)}.", hint=f"Checks: {', '.join(CHECKS)}.")
    if not len(reference) or not len(window):
        raise InvalidInput(f"Drift checks need texts on both sides, got {len(reference)} reference and "
                           f"{len(window)} window texts.")
    out: list[CheckResult] = []
    for name in CHECKS:
        if name not in checks:
            continue
        if name == "label_psi":
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
