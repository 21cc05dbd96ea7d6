"""Calibration, slices and run comparison: values in, values out.

- ``calibration_report``: expected calibration error (ECE) over equal-width confidence
  bins and the per-bin data of a reliability diagram. A model is calibrated when, among
  the rows it predicts with confidence ~0.8, about 80 % are right; ECE is the
  support-weighted mean gap ``|accuracy(bin) - confidence(bin)|``.
- ``slice_metrics``: accuracy and macro-F1 per group of rows (text-length buckets by
  default, or a declared metadata column): the fairness view, where a good average can
  hide a group the model serves badly.
- ``compare_metrics``: the deltas of every headline number between two runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.evaluation import classification_metrics

# Word-count buckets of the default slice: short questions, sentences, paragraphs.
LENGTH_BUCKETS: tuple[tuple[int, int | None], ...] = ((1, 5), (6, 10), (11, 20), (21, 40), (41, None))
# The headline numbers ``compare_metrics`` reports, per split.
HEADLINE = ("accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall", "ece")


def calibration_report(confidences: Sequence[float], correct: Sequence[bool], *, n_bins: int = 10) -> dict[str, Any]:
    """Expected calibration error and the reliability diagram's bins.

    Bin ``i`` holds confidences in ``(i/n_bins, (i+1)/n_bins]`` (the first also holds 0).

    Args:
        confidences: the predicted class's probability, per row, in [0, 1].
        correct: whether that prediction was right, per row.
        n_bins: equal-width bins over [0, 1].

    Returns:
        ``{"ece", "n_bins", "bins": [{"lower", "upper", "count", "confidence",
        "accuracy"}]}``; an empty bin has count 0 and confidence/accuracy None.

    Raises:
        InvalidInput: lengths differ, no rows, a confidence outside [0, 1], n_bins < 1.
    """
    if len(confidences) != len(correct):
        raise InvalidInput(f"{len(confidences)} confidences but {len(correct)} outcomes.")
    if not confidences:
        raise InvalidInput("Cannot measure calibration on zero rows.", hint="Evaluate on a non-empty split.")
    if n_bins < 1:
        raise InvalidInput(f"n_bins must be at least 1, got {n_bins}.")
    sums = [[0, 0.0, 0] for _ in range(n_bins)]  # count, confidence sum, correct count
    for conf, ok in zip(confidences, correct, strict=True):
        if not 0.0 <= conf <= 1.0:
            raise InvalidInput(f"Confidence {conf} is outside [0, 1].")
        # ceil(conf * n) - 1 puts a value on a bin's upper edge into that bin
        index = max(0, min(n_bins - 1, math.ceil(conf * n_bins) - 1))
        sums[index][0] += 1
        sums[index][1] += conf
        sums[index][2] += int(ok)
    n = len(confidences)
    bins, ece = [], 0.0
    for i, (count, conf_sum, hits) in enumerate(sums):
        mean_conf = conf_sum / count if count else None
        accuracy = hits / count if count else None
        if count:
            ece += count / n * abs(accuracy - mean_conf)  # type: ignore[operator]
        bins.append({"lower": i / n_bins, "upper": (i + 1) / n_bins, "count": count,
                     "confidence": mean_conf, "accuracy": accuracy})
    return {"ece": ece, "n_bins": n_bins, "bins": bins}


def length_bucket(text: str) -> str:
    """The word-count bucket of a text, e.g. ``"6-10 words"`` or ``"41+ words"``."""
    words = len(text.split())
    for low, high in LENGTH_BUCKETS:
        if high is None or words <= high:
            return f"{low}+ words" if high is None else f"{low}-{high} words"
    raise AssertionError("the last bucket is open-ended")  # pragma: no cover


def slice_metrics(y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str],
                  labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Accuracy and macro-F1 of each group of rows.

    Args:
        y_true: gold labels.
        y_pred: predictions, same order.
        groups: each row's group (a length bucket, a metadata value).
        labels: the label set (macro-F1 averages over all of it, as the whole-split number).

    Returns:
        ``{group: {"support", "accuracy", "macro_f1"}}``, groups sorted by name.

    Raises:
        InvalidInput: lengths differ.
    """
    if not len(y_true) == len(y_pred) == len(groups):
        raise InvalidInput(f"{len(y_true)} labels, {len(y_pred)} predictions and {len(groups)} groups differ.")
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(str(group), []).append(i)
    out: dict[str, dict[str, Any]] = {}
    for group in sorted(members):
        rows = members[group]
        m = classification_metrics([y_true[i] for i in rows], [y_pred[i] for i in rows], labels)
        out[group] = {"support": len(rows), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    return out


def compare_metrics(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Headline numbers of two runs side by side, with ``delta = b - a``.

    Args:
        a: the first run's stored metrics (``{"dev": {...}, "test": {...}}``).
        b: the second run's.

    Returns:
        ``{split: {metric: {"a", "b", "delta"}}}`` for the splits and metrics either
        run has; a missing side is None and so is its delta.
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for split in ("dev", "test"):
        sa_, sb = a.get(split) or {}, b.get(split) or {}
        if not sa_ and not sb:
            continue
        rows: dict[str, dict[str, float | None]] = {}
        for key in HEADLINE:
            va, vb = _headline(sa_, key), _headline(sb, key)
            if va is None and vb is None:
                continue
            rows[key] = {"a": va, "b": vb, "delta": vb - va if va is not None and vb is not None else None}
        out[split] = rows
    return out


def _headline(split: Mapping[str, Any], key: str) -> float | None:
    if key == "ece":
        value = (split.get("calibration") or {}).get("ece")
    else:
        value = split.get(key)
    return float(value) if isinstance(value, int | float) else None
