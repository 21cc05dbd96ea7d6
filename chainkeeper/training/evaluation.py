"""Classification metrics: values in, values out.

``classification_metrics`` computes what a run stores and a release gate reads:
accuracy, macro and weighted F1, macro precision and recall, a per-class report shaped
like scikit-learn's ``classification_report(output_dict=True)`` and the confusion
matrix in a stated label order. It is written out here rather than delegated so the
definition is visible and the result is plain JSON (no numpy scalars to convert before
storing): the test checks it against scikit-learn's numbers.

Conventions (the same as scikit-learn with ``zero_division=0``): a class never
predicted has precision 0; a class absent from ``y_true`` has recall 0 and support 0,
and still counts in the macro averages when it is listed in ``labels``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data import LANGUAGES, text_language


def _ratio(numerator: int, denominator: int) -> float:
    # zero_division=0: an empty denominator gives 0, not NaN, so JSON stays valid.
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Counts of (true, predicted) pairs: row ``i`` is true ``labels[i]``, column ``j``
    predicted ``labels[j]``.

    Raises:
        InvalidInput: lengths differ, or a value is not in ``labels``.
    """
    if len(y_true) != len(y_pred):
        raise InvalidInput(f"{len(y_true)} true labels but {len(y_pred)} predictions.")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({y for y in (*y_true, *y_pred) if y not in index})
    if unknown:
        raise InvalidInput(
            f"Label(s) not in the label set: {', '.join(map(repr, unknown[:5]))}.",
            hint=f"Known labels: {', '.join(labels)}.",
        )
    matrix = [[0] * len(labels) for _ in labels]
    for truth, guess in zip(y_true, y_pred, strict=True):
        matrix[index[truth]][index[guess]] += 1
    return matrix


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Every number a classification run is judged by.

    Args:
        y_true: the gold label of each row.
        y_pred: the predicted label of each row, same order.
        labels: the label set, in the order of the report and the confusion matrix.

    Returns:
        ``{"accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
        "support", "labels", "per_class": {label: {"precision", "recall", "f1-score",
        "support"}}, "confusion_matrix": [[...]]}``, all plain floats and ints.

    Raises:
        InvalidInput: no rows, lengths differ, an empty or repeated label set, or a
            label outside it.
    """
    if not y_true:
        raise InvalidInput("Cannot compute metrics on zero rows.", hint="Evaluate on a non-empty split.")
    if not labels or len(set(labels)) != len(labels):
        raise InvalidInput(f"The label set must be non-empty and without repeats, got {list(labels)!r}.")
    matrix = confusion_matrix(y_true, y_pred, labels)
    n = len(y_true)
    per_class: dict[str, dict[str, float | int]] = {}
    correct = 0
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(row[i] for row in matrix)
        precision, recall = _ratio(tp, predicted), _ratio(tp, support)
        per_class[label] = {"precision": precision, "recall": recall, "f1-score": _f1(precision, recall),
                            "support": support}
        correct += tp
    k = len(labels)
    return {
        "accuracy": correct / n,
        "macro_f1": sum(c["f1-score"] for c in per_class.values()) / k,
        "weighted_f1": sum(c["f1-score"] * c["support"] for c in per_class.values()) / n,
        "macro_precision": sum(c["precision"] for c in per_class.values()) / k,
        "macro_recall": sum(c["recall"] for c in per_class.values()) / k,
        "weighted_precision": sum(c["precision"] * c["support"] for c in per_class.values()) / n,
        "weighted_recall": sum(c["recall"] * c["support"] for c in per_class.values()) / n,
        # One label per row: every miss is one false positive and one false negative,
        # so micro precision, recall and F1 all equal accuracy.
        "micro_f1": correct / n,
        "support": n,
        "labels": list(labels),
        "per_class": per_class,
        "confusion_matrix": matrix,
    }


def language_metrics(texts: Sequence[str], y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 of each language's rows apart (``data.text_language``: "en"
    or "zh"), so a model that reads one language well and the other badly shows it.

    Macro-F1 of a language averages over the labels its rows carry or were given (a
    label no row of that language has does not count as a zero).

    Args:
        texts: the text of each row.
        y_true: the gold label of each row, same order.
        y_pred: the predicted label of each row, same order.

    Returns:
        ``{"en": {"accuracy", "macro_f1", "count"}, "zh": {...}}``, only for languages
        with at least one row, in that order.

    Raises:
        InvalidInput: lengths differ.
    """
    if not len(texts) == len(y_true) == len(y_pred):
        raise InvalidInput(f"{len(texts)} texts, {len(y_true)} true labels and {len(y_pred)} predictions.")
    rows: dict[str, list[int]] = {language: [] for language in LANGUAGES}
    for i, text in enumerate(texts):
        rows[text_language(text)].append(i)
    out: dict[str, Any] = {}
    for language, index in rows.items():
        if not index:
            continue
        truth, guess = [y_true[i] for i in index], [y_pred[i] for i in index]
        labels = sorted({*truth, *guess})
        m = classification_metrics(truth, guess, labels)
        out[language] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "count": len(index)}
    return out


# The label that marks an out-of-scope row (CLINC150's "oos"): a request the model should
# recognise as none of its intents. A label set holding it gets its own figures.
OUT_OF_SCOPE_LABEL = "oos"


def out_of_scope_metrics(metrics: Mapping[str, Any], label: str = OUT_OF_SCOPE_LABEL) -> dict[str, Any] | None:
    """In-scope accuracy and out-of-scope recall and precision, apart (pure).

    A model that answers "out of scope" too often looks fine on overall accuracy while
    it fails the in-scope requests, and one that never does misses every out-of-scope
    one; the two are read apart. Computed from ``classification_metrics``' confusion matrix.

    Args:
        metrics: the output of ``classification_metrics`` (``labels``, ``confusion_matrix``).
        label: the out-of-scope label.

    Returns:
        ``{"label", "in_scope_rows", "in_scope_accuracy", "out_of_scope_rows",
        "out_of_scope_recall", "out_of_scope_precision", "out_of_scope_f1"}``, or None
        when the label set does not hold ``label``. An in-scope row predicted as out of
        scope counts as wrong in the in-scope accuracy.
    """
    labels = list(metrics.get("labels") or [])
    matrix = metrics.get("confusion_matrix")
    if label not in labels or not matrix:
        return None
    k = labels.index(label)
    in_scope = [i for i in range(len(labels)) if i != k]
    in_rows = sum(sum(matrix[i]) for i in in_scope)
    in_correct = sum(matrix[i][i] for i in in_scope)
    oos_rows, oos_found = sum(matrix[k]), matrix[k][k]
    predicted_oos = sum(row[k] for row in matrix)
    precision, recall = _ratio(oos_found, predicted_oos), _ratio(oos_found, oos_rows)
    return {"label": label, "in_scope_rows": in_rows, "in_scope_accuracy": _ratio(in_correct, in_rows),
            "out_of_scope_rows": oos_rows, "out_of_scope_recall": recall, "out_of_scope_precision": precision,
            "out_of_scope_f1": _f1(precision, recall)}


def format_report(metrics: Mapping[str, Any], *, digits: int = 2) -> str:
    """The familiar text table: one line per class, then accuracy and the averages, and
    accuracy and macro-F1 per language when the metrics hold ``by_language``.

    Args:
        metrics: the output of ``classification_metrics`` (a run's split metrics may add
            ``by_language``, see ``language_metrics``).
        digits: decimals of each number.

    Returns:
        A multi-line string, like scikit-learn's ``classification_report``.
    """
    per_class: Mapping[str, Mapping[str, float]] = metrics["per_class"]
    width = max([len("weighted avg"), *(len(label) for label in per_class)])
    header = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"
    lines = [header, ""]
    for label, c in per_class.items():
        lines.append(f"{label:>{width}} {c['precision']:>9.{digits}f} {c['recall']:>9.{digits}f} "
                     f"{c['f1-score']:>9.{digits}f} {int(c['support']):>9}")
    n = metrics["support"]
    # Weights are the classes' supports: their sum is n for single-label metrics, and the
    # number of gold labels for multi-label ones.
    total = sum(c["support"] for c in per_class.values()) or 1
    weighted_p = sum(c["precision"] * c["support"] for c in per_class.values()) / total
    weighted_r = sum(c["recall"] * c["support"] for c in per_class.values()) / total
    lines += [
        "",
        f"{'accuracy':>{width}} {'':>9} {'':>9} {metrics['accuracy']:>9.{digits}f} {n:>9}",
        f"{'macro avg':>{width}} {metrics['macro_precision']:>9.{digits}f} {metrics['macro_recall']:>9.{digits}f} "
        f"{metrics['macro_f1']:>9.{digits}f} {n:>9}",
        f"{'weighted avg':>{width}} {weighted_p:>9.{digits}f} {weighted_r:>9.{digits}f} "
        f"{metrics['weighted_f1']:>9.{digits}f} {n:>9}",
    ]
    by_language: Mapping[str, Mapping[str, float]] = metrics.get("by_language") or {}
    if by_language:
        lines += ["", f"{'language':>{width}} {'accuracy':>9} {'macro-F1':>9} {'':>9} {'rows':>9}"]
        lines += [f"{language:>{width}} {m['accuracy']:>9.{digits}f} {m['macro_f1']:>9.{digits}f} {'':>9} "
                  f"{int(m['count']):>9}" for language, m in by_language.items()]
    return "\n".join(lines)
