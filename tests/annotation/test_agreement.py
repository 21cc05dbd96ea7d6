"""Agreement metrics against published textbook values, sklearn, and hand-computed cases."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from chainkeeper.annotation.agreement import (
    AgreementUndefined,
    Judgement,
    agreement_report,
    annotator_figures,
    category_counts,
    cohen_kappa,
    fleiss_kappa,
    items_per_hour,
    krippendorff_alpha,
    percent_agreement,
    reliability_matrix,
    span_f1,
)
from chainkeeper.core.errors import InvalidInput

# Fleiss (1971) as tabulated on Wikipedia ("Fleiss' kappa", worked example): 10 subjects,
# 14 raters each, 5 categories; P-bar = 0.378, P-bar-e = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, missing values; nominal alpha = 0.743, interval alpha = 0.849.
_ = None
KRIPPENDORFF_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]


def test_fleiss_kappa_matches_fleiss_1971_worked_example() -> None:
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.210, abs=5e-4)


def test_krippendorff_alpha_matches_the_2011_paper_with_missing_values() -> None:
    assert krippendorff_alpha(KRIPPENDORFF_DATA) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_DATA, level="interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_accepts_nan_as_missing() -> None:
    with_nan = [[float("nan") if v is None else v for v in row] for row in KRIPPENDORFF_DATA]
    assert krippendorff_alpha(with_nan) == pytest.approx(krippendorff_alpha(KRIPPENDORFF_DATA))
    as_array = np.array(with_nan, dtype=np.float32)
    assert krippendorff_alpha(as_array, level="interval") == pytest.approx(0.849, abs=5e-4)


def test_cohen_kappa_hand_computed() -> None:
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15.
    # p_o = 35/50 = 0.7; A says yes 25/50, B says yes 30/50: p_e = 0.5*0.6 + 0.5*0.4 = 0.5;
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert percent_agreement(a, b) == pytest.approx(0.7)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_agrees_with_sklearn(weights: str | None) -> None:
    rng = random.Random(7)
    a = [rng.randint(1, 5) for _ in range(200)]
    b = [x if rng.random() < 0.6 else rng.randint(1, 5) for x in a]
    assert cohen_kappa(a, b, weights=weights) == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)


def test_weighted_kappa_orders_numpy_integers_as_numbers() -> None:
    a = np.array([2, 10, 3, 2, 10, 3])
    b = np.array([2, 3, 3, 10, 10, 2])
    assert cohen_kappa(a, b, weights="linear") == pytest.approx(cohen_kappa_score(a, b, weights="linear"))


def test_weighted_kappa_uses_the_given_category_order() -> None:
    # ordered labels that do not sort alphabetically: low < mid < high
    a = ["low", "mid", "high", "high", "low"]
    b = ["mid", "mid", "high", "mid", "low"]
    ordered = cohen_kappa(a, b, weights="linear", categories=["low", "mid", "high"])
    numeric = cohen_kappa_score([0, 1, 2, 2, 0], [1, 1, 2, 1, 0], weights="linear")
    assert ordered == pytest.approx(numeric)


def test_cohen_kappa_undefined_when_everything_is_one_category() -> None:
    with pytest.raises(AgreementUndefined, match="chance agreement is 1"):
        cohen_kappa(["a"] * 4, ["a"] * 4)


@pytest.mark.parametrize(("a", "b", "match"), [
    pytest.param([], [], "at least one item", id="empty"),
    pytest.param(["x"], ["x", "y"], "same items", id="lengths-differ"),
])
def test_cohen_kappa_rejects_bad_input(a: list[str], b: list[str], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        cohen_kappa(a, b)


def test_cohen_kappa_rejects_a_label_outside_the_categories() -> None:
    with pytest.raises(InvalidInput, match="not among the categories"):
        cohen_kappa(["a", "b"], ["a", "z"], categories=["a", "b"])
    with pytest.raises(InvalidInput, match="Unknown kappa weights"):
        cohen_kappa(["a", "b"], ["a", "b"], weights="cubic")  # type: ignore[arg-type]


@pytest.mark.parametrize(("table", "error", "match"), [
    pytest.param([], InvalidInput, "items x categories", id="empty"),
    pytest.param([[1, 0], [0, 1]], InvalidInput, "at least two raters", id="one-rater"),
    pytest.param([[2, 1], [1, 1]], InvalidInput, "same number of raters", id="uneven-raters"),
    pytest.param([[3, 0], [3, 0]], AgreementUndefined, "one category", id="one-category"),
    pytest.param([[3, -1], [1, 1]], InvalidInput, "non-negative", id="negative"),
])
def test_fleiss_kappa_degenerate_input(table: list[list[int]], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        fleiss_kappa(table)


def test_fleiss_perfect_agreement_is_one_and_counts_from_judgements() -> None:
    judgements = [Judgement(i, ann, "pos" if i % 2 else "neg") for i in range(6) for ann in ("a", "b", "c")]
    items, cats, table = category_counts(judgements)
    assert items == list(range(6)) and cats == ["neg", "pos"]
    assert table.sum(axis=1).tolist() == [3] * 6
    assert fleiss_kappa(table) == pytest.approx(1.0)


@pytest.mark.parametrize(("data", "error", "match"), [
    pytest.param([], InvalidInput, "raters x units", id="empty"),
    pytest.param([[1, 2, 3]], InvalidInput, "two or more raters", id="one-rater"),
    pytest.param([[1, None], [None, 2]], InvalidInput, "two or more raters", id="no-overlap"),
    pytest.param([[1, 1, None], [1, 1, 2]], AgreementUndefined, "no variation", id="one-value"),
])
def test_krippendorff_alpha_degenerate_input(data: list[list[object]], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        krippendorff_alpha(data)


def test_krippendorff_interval_needs_numbers() -> None:
    with pytest.raises(InvalidInput, match="numeric"):
        krippendorff_alpha([["a", "b"], ["a", "a"]], level="interval")


def test_krippendorff_equals_fleiss_in_the_limit_of_many_items() -> None:
    # nominal alpha = Fleiss' kappa up to a small-sample correction: (1 - alpha) = (1 - kappa) * (N n - 1) / (N n)
    rows = [[c for c, n in enumerate(r) for _ in range(n)] for r in FLEISS_TABLE]
    by_rater = [list(col) for col in zip(*rows, strict=True)]
    n_values = sum(map(sum, FLEISS_TABLE))
    expected = 1 - (1 - fleiss_kappa(FLEISS_TABLE)) * (n_values - 1) / n_values
    assert krippendorff_alpha(by_rater) == pytest.approx(expected)


def test_reliability_matrix_rejects_a_double_judgement() -> None:
    with pytest.raises(InvalidInput, match="twice"):
        reliability_matrix([Judgement(1, "a", "x"), Judgement(1, "a", "y")])


def test_span_f1_exact_match_on_start_end_label() -> None:
    a = {"s1": [(0, 5, "PER"), (10, 16, "LOC")], "s2": [(3, 7, "ORG")], "s3": []}
    b = {"s1": [(0, 5, "PER"), (10, 16, "ORG")], "s2": [(3, 8, "ORG")], "s3": [], "only-b": [(0, 1, "PER")]}
    # 3 spans each side, 1 exact match (s1 PER); LOC vs ORG differs by label, s2 by end
    result = span_f1(a, b)
    assert (result["items"], result["spans_a"], result["spans_b"], result["matched"]) == (3, 3, 3, 1)
    assert result["f1"] == pytest.approx(1 / 3)
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert result["per_label"]["PER"]["f1"] == pytest.approx(1.0)
    assert result["per_label"]["LOC"]["f1"] == 0.0
    assert result["per_label"]["ORG"] == {"spans_a": 1, "spans_b": 2, "matched": 0, "f1": 0.0}


def test_span_f1_is_one_when_both_found_nothing_and_rejects_bad_spans() -> None:
    assert span_f1({"x": []}, {"x": []})["f1"] == 1.0
    with pytest.raises(InvalidInput, match="both annotators"):
        span_f1({"x": []}, {"y": []})
    with pytest.raises(InvalidInput, match="start < end"):
        span_f1({"x": [(5, 2, "PER")]}, {"x": []})
    with pytest.raises(InvalidInput, match="not \\(start, end, label\\)"):
        span_f1({"x": [(5, "PER")]}, {"x": []})


def test_items_per_hour_leaves_breaks_out() -> None:
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    # 4 items 30 s apart, a lunch break, 3 more 60 s apart: 5 timed gaps over 90 + 120 s
    times = [t0 + timedelta(seconds=30 * i) for i in range(4)]
    times += [t0 + timedelta(hours=2, seconds=60 * i) for i in range(3)]
    assert items_per_hour(times) == pytest.approx(5 * 3600 / 210)
    assert items_per_hour(times[:1]) is None
    assert items_per_hour([t0, t0 + timedelta(hours=1)]) is None


def test_annotator_figures_against_consensus() -> None:
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    consensus = {i: "pos" if i < 5 else "neg" for i in range(10)}
    judgements = [Judgement(i, "ann", consensus[i], t0 + timedelta(seconds=20 * i)) for i in range(10)]
    judgements += [Judgement(i, "bob", "pos" if i < 7 else "neg", None) for i in range(10)]
    judgements += [Judgement(i, "cat", "pos", t0) for i in range(3)]
    figures = annotator_figures(judgements, consensus)
    assert list(figures) == ["ann", "bob", "cat"]
    ann, bob, cat = figures.values()
    assert (ann.items, ann.compared, ann.agreement, ann.kappa) == (10, 10, 1.0, pytest.approx(1.0))
    assert ann.items_per_hour == pytest.approx(180.0)
    # bob: 8 of 10 right (says pos on 5 and 6); p_o = 0.8, p_e = 0.7*0.5 + 0.3*0.5 = 0.5, kappa = 0.6
    assert bob.agreement == pytest.approx(0.8) and bob.kappa == pytest.approx(0.6)
    assert bob.items_per_hour is None
    # cat only ever said "pos" on items whose consensus is "pos": kappa is 0/0, reported as None
    assert cat.agreement == 1.0 and cat.kappa is None and "undefined" in cat.note


def test_agreement_report_on_a_project_with_overlap() -> None:
    rng = random.Random(3)
    truth = [rng.choice("abc") for _ in range(40)]
    judgements = []
    for i, label in enumerate(truth):
        raters = ("u1", "u2", "u3") if i < 20 else (("u1",) if i % 2 else ("u2",))  # overlap on half
        for r in raters:
            judgements.append(Judgement(i, r, label if rng.random() < 0.8 else rng.choice("abc")))
    report = agreement_report(judgements)
    assert report["items"] == 40 and report["overlap_items"] == 20 and report["fleiss_items"] == 20
    assert set(report["cohen_kappa"]) == {"u1|u2", "u1|u3", "u2|u3"}
    _, _, table = category_counts([j for j in judgements if j.item < 20])
    assert report["fleiss_kappa"] == pytest.approx(fleiss_kappa(table))
    _, _, rows = reliability_matrix(judgements)
    assert report["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(rows))
    assert 0.3 < report["krippendorff_alpha"] < 0.95 and report["notes"] == []


def test_agreement_report_without_overlap_says_so() -> None:
    report = agreement_report([Judgement(i, "u1" if i % 2 else "u2", "a") for i in range(4)])
    assert report["overlap_items"] == 0 and report["fleiss_kappa"] is None and report["krippendorff_alpha"] is None
    assert "overlap" in report["notes"][0]
