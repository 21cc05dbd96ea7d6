"""The label checks calibrated by permutation (issue 8): few false alarms on small windows, power on real shifts.

With 77 labels and windows of 30 requests the chi-square distribution and a fixed PSI
threshold misjudge sampling noise; these tests draw hundreds of seeded no-drift windows
and count how often each check fires.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from chainkeeper.core.errors import InvalidInput
from chainkeeper.monitoring import drift
from chainkeeper.monitoring.drift import label_chi2, label_null, label_psi, mc_test

ALPHA = 0.01
WINDOWS = 400
# Sampling error of a 1 % rate over 400 windows is 0.5 points: alpha + 1.5 points is
# three standard errors.
MARGIN = 0.015
LABELS = [f"intent_{i:02d}" for i in range(77)]


def _population(seed: int = 0) -> np.ndarray:
    """Uneven shares over 77 intents, like a model's predicted labels (a few common, a long tail)."""
    return np.random.default_rng(seed).dirichlet(np.full(len(LABELS), 2.0))


def _draw(rng: np.random.Generator, shares: np.ndarray, n: int, labels: list[str] = LABELS) -> list[str]:
    return [str(x) for x in rng.choice(labels, n, p=shares)]


def _alarm_rates(reference: list[str], windows: list[list[str]]) -> dict[str, float]:
    fired = {"label_psi": 0, "label_chi2": 0}
    for window in windows:
        psi_result, chi2_result = label_psi(reference, window), label_chi2(reference, window)
        # "statistic above threshold" is the decision, as the charts show it
        assert (psi_result.statistic > psi_result.threshold) == psi_result.drifted
        assert (chi2_result.statistic > chi2_result.threshold) == chi2_result.drifted
        fired["label_psi"] += psi_result.drifted
        fired["label_chi2"] += chi2_result.drifted
    return {name: count / len(windows) for name, count in fired.items()}


def test_label_checks_keep_alpha_on_windows_of_30_resampled_from_the_reference() -> None:
    rng = np.random.default_rng(1)
    reference = _draw(rng, _population(), 300)
    rates = _alarm_rates(reference, [[str(x) for x in rng.choice(reference, 30)] for _ in range(WINDOWS)])
    assert rates["label_psi"] <= ALPHA + MARGIN and rates["label_chi2"] <= ALPHA + MARGIN, rates


def test_label_checks_keep_alpha_over_fresh_references_from_one_population() -> None:
    # Each (reference of 300, window of 30) pair drawn anew from one population: the
    # real no-drift case, averaged over references (one fixed reference can be luckier or
    # unluckier than the population; no test on its sample can know).
    rng = np.random.default_rng(2)
    shares = _population()
    fired = {"label_psi": 0.0, "label_chi2": 0.0}
    for _ in range(WINDOWS):
        for name, rate in _alarm_rates(_draw(rng, shares, 300), [_draw(rng, shares, 30)]).items():
            fired[name] += rate
    assert fired["label_psi"] <= (ALPHA + MARGIN) * WINDOWS, fired
    assert fired["label_chi2"] <= (ALPHA + MARGIN) * WINDOWS, fired


def test_half_a_window_from_five_unseen_intents_fires_both_checks() -> None:
    rng = np.random.default_rng(3)
    shares = _population()
    reference = _draw(rng, shares, 300)
    unseen = [f"new_{i}" for i in range(5)]
    fired = {"label_psi": 0, "label_chi2": 0}
    for _ in range(50):
        window = _draw(rng, shares, 15) + _draw(rng, np.full(5, 0.2), 15, unseen)
        for result in (label_psi(reference, window), label_chi2(reference, window)):
            fired[result.check] += result.drifted
            assert result.p_value is not None and result.p_value < ALPHA
    assert fired == {"label_psi": 50, "label_chi2": 50}


@pytest.mark.parametrize("shift", [pytest.param(0.0, id="no-shift"), pytest.param(0.025, id="small-shift"),
                                   pytest.param(0.04, id="clear-shift")])
def test_monte_carlo_p_value_agrees_with_scipy_when_expected_counts_are_large(shift: float) -> None:
    rng = np.random.default_rng(4)
    labels = LABELS[:6]
    shares = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
    reference = _draw(rng, shares, 2000, labels)
    moved = shares + np.array([shift, 0, 0, 0, 0, -shift])
    window = _draw(rng, moved, 1000, labels)
    result = label_chi2(reference, window)
    table = np.array([[reference.count(y) for y in labels], [window.count(y) for y in labels]])
    assert table.min() >= 5 and result.details["labels"] == 6
    statistic, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(statistic) and result.details["dof"] == dof
    assert result.p_value == pytest.approx(p_value, abs=0.02)
    assert result.threshold == pytest.approx(stats.chi2.ppf(1 - ALPHA, dof), rel=0.08)


def test_the_threshold_is_where_the_monte_carlo_p_value_crosses_alpha() -> None:
    null = np.arange(4999, dtype=float)  # 4,999 draws: alpha 0.01 allows 48 at or above the statistic
    p_value, threshold = mc_test(null, 4950.5, ALPHA)
    assert threshold == 4950.0 and p_value == pytest.approx(49 / 5000) and p_value < ALPHA
    assert mc_test(null, 4950.0, ALPHA)[0] == pytest.approx(50 / 5000)  # a tie counts against drift
    assert mc_test(null, -1.0, ALPHA)[0] == 1.0
    assert mc_test(np.arange(99, dtype=float), 200.0, 0.001)[1] == float("inf")  # 99 draws cannot resolve 0.001


def test_results_say_the_threshold_was_calibrated_for_the_window_and_repeat_exactly() -> None:
    rng = np.random.default_rng(6)
    reference, window = _draw(rng, _population(), 300), _draw(rng, _population(), 30)
    first = label_psi(reference, window)
    assert first.details["calibration"] == ("calibrated for this window of 30: 4999 random splits of the 330 pooled "
                                            "labels into 300 reference and 30 window labels")
    assert first.details["threshold_from"] == "calibrated" and first.threshold > drift.PSI_THRESHOLD
    assert label_psi(reference, window) == first  # seeded: one window always gets one threshold
    assert len(label_null((5, 5), (1, 1), drift.mc_draws(0.001)).chi2) == 49_999


def test_psi_keeps_the_rule_of_thumb_on_large_windows_and_a_fixed_threshold_wins() -> None:
    reference = ["a"] * 3000 + ["b"] * 2000 + ["c"] * 1000
    large = label_psi(reference, ["a"] * 2500 + ["b"] * 1700 + ["c"] * 800)
    assert large.threshold == drift.PSI_THRESHOLD and large.details["threshold_from"] == "rule of thumb"
    assert large.details["calibrated_threshold"] < drift.PSI_THRESHOLD and not large.drifted
    fixed = label_psi(reference, ["a"] * 20 + ["b"] * 10, threshold=5.0)
    assert fixed.threshold == 5.0 and fixed.details["threshold_from"] == "fixed" and not fixed.drifted
    assert fixed.p_value is not None and fixed.p_value < ALPHA  # c never seen: significant, under the fixed bar


def test_empty_sides_and_a_single_label_are_handled() -> None:
    with pytest.raises(InvalidInput, match="label_chi2 check needs labels on both sides, got 3 and 0"):
        label_chi2(["a", "b", "a"], [])
    single = label_chi2(["a"] * 50, ["a"] * 30)
    assert (single.statistic, single.p_value, single.drifted) == (0.0, 1.0, False)
    assert not label_psi(["a"] * 50, ["a"] * 30).drifted
