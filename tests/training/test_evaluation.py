"""Classification metrics, checked by hand and against scikit-learn."""

from __future__ import annotations

import pytest
from sklearn.metrics import classification_report, f1_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.evaluation import classification_metrics, format_report, language_metrics

LABELS = ["a", "b", "c"]
Y_TRUE = ["a", "a", "a", "b", "b", "c"]
Y_PRED = ["a", "a", "b", "b", "c", "c"]


def test_metrics_match_hand_computed_values() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    # a: tp 2, predicted 2, support 3 -> p 1, r 2/3, f1 0.8
    # b: tp 1, predicted 2, support 2 -> p 1/2, r 1/2, f1 1/2
    # c: tp 1, predicted 2, support 1 -> p 1/2, r 1, f1 2/3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1-score": 0.8, "support": 3})
    assert m["per_class"]["c"]["f1-score"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3 * 1) / 6)
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["labels"] == LABELS and m["support"] == 6


def test_metrics_agree_with_scikit_learn_including_an_unpredicted_and_an_absent_class() -> None:
    labels = ["x", "y", "z", "w"]  # w never occurs; z is never predicted
    y_true = ["x", "y", "z", "x", "y", "z", "x", "x"]
    y_pred = ["x", "x", "y", "x", "y", "x", "y", "x"]
    m = classification_metrics(y_true, y_pred, labels)
    report = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
    for label in labels:
        assert m["per_class"][label] == pytest.approx(report[label])
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(report["weighted avg"]["f1-score"])
    assert m["macro_precision"] == pytest.approx(report["macro avg"]["precision"])
    assert m["macro_recall"] == pytest.approx(report["macro avg"]["recall"])
    assert m["confusion_matrix"] == sk_confusion_matrix(y_true, y_pred, labels=labels).tolist()


def test_metrics_are_plain_json_types() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert type(m["accuracy"]) is float
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)
    assert type(m["per_class"]["a"]["support"]) is int


@pytest.mark.parametrize(
    ("y_true", "y_pred", "labels", "fragment"),
    [
        pytest.param([], [], LABELS, "zero rows", id="empty"),
        pytest.param(["a"], ["a", "b"], LABELS, "1 true labels but 2 predictions", id="length-mismatch"),
        pytest.param(["a"], ["q"], LABELS, "'q'", id="unknown-label"),
        pytest.param(["a"], ["a"], ["a", "a"], "without repeats", id="repeated-labels"),
    ],
)
def test_bad_inputs_are_refused_with_the_problem(
    y_true: list[str], y_pred: list[str], labels: list[str], fragment: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        classification_metrics(y_true, y_pred, labels)
    assert fragment in err.value.message


def test_format_report_prints_a_line_per_class_and_the_averages() -> None:
    text = format_report(classification_metrics(Y_TRUE, Y_PRED, LABELS))
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["a", "1.00", "0.67", "0.80", "3"]
    assert lines[-3].split() == ["accuracy", "0.67", "6"]
    assert lines[-2].split()[:2] == ["macro", "avg"]
    assert lines[-1].split()[-2:] == ["0.68", "6"]  # weighted F1 (0.8*3 + 0.5*2 + 0.667) / 6 = 0.678


def test_out_of_scope_figures_are_read_apart_from_in_scope_accuracy() -> None:
    from chainkeeper.training.evaluation import out_of_scope_metrics

    truth = ["pay", "pay", "card", "card", "oos", "oos", "oos", "oos"]
    guess = ["pay", "oos", "card", "card", "oos", "oos", "pay", "card"]
    m = classification_metrics(truth, guess, ["card", "oos", "pay"])
    oos = out_of_scope_metrics(m)
    assert oos is not None
    # In scope: 4 rows, 3 right (the "pay" answered "oos" is wrong); out of scope: 2 of 4
    # found, and 2 of the 3 "oos" answers were right.
    assert (oos["in_scope_rows"], oos["out_of_scope_rows"]) == (4, 4)
    assert oos["in_scope_accuracy"] == pytest.approx(3 / 4)
    assert oos["out_of_scope_recall"] == pytest.approx(2 / 4)
    assert oos["out_of_scope_precision"] == pytest.approx(2 / 3)
    assert oos["out_of_scope_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert out_of_scope_metrics(m, "none_of_these") is None


def test_language_metrics_score_each_language_apart() -> None:
    texts = ["my card is lost", "transfer failed", "where is my card", "我的卡丢了", "转账失败了"]
    truth = ["lost", "transfer", "arrival", "lost", "transfer"]
    guess = ["lost", "transfer", "lost", "transfer", "transfer"]
    by_language = language_metrics(texts, truth, guess)
    assert list(by_language) == ["en", "zh"]
    assert by_language["en"]["count"] == 3 and by_language["en"]["accuracy"] == pytest.approx(2 / 3)
    assert by_language["zh"] == {"accuracy": 0.5, "count": 2,
                                 "macro_f1": pytest.approx(classification_metrics(
                                     truth[3:], guess[3:], ["lost", "transfer"])["macro_f1"])}
    # A language without rows is left out, and lengths must agree.
    assert list(language_metrics(texts[:3], truth[:3], guess[:3])) == ["en"]
    with pytest.raises(InvalidInput, match="3 texts"):
        language_metrics(texts[:3], truth, guess)


def test_format_report_adds_a_line_per_language() -> None:
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    metrics["by_language"] = {"en": {"accuracy": 0.9667, "macro_f1": 0.9664, "count": 90},
                              "zh": {"accuracy": 0.9167, "macro_f1": 0.9146, "count": 60}}
    lines = format_report(metrics, digits=4).splitlines()
    assert lines[-3].split() == ["language", "accuracy", "macro-F1", "rows"]
    assert lines[-2].split() == ["en", "0.9667", "0.9664", "90"]
    assert lines[-1].split() == ["zh", "0.9167", "0.9146", "60"]
    assert "language" not in format_report(classification_metrics(Y_TRUE, Y_PRED, LABELS))
