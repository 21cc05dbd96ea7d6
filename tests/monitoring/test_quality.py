"""Live quality: windows of labelled predictions scored like the offline evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sklearn.metrics import accuracy_score, f1_score

from chainkeeper.core.errors import InvalidInput, NotFound
from chainkeeper.monitoring.feedback import submit_feedback
from chainkeeper.monitoring.quality import (
    LabelledPrediction,
    live_quality,
    parse_window,
    quality_windows,
    score_window,
)
from tests.monitoring.chain import IN_DISTRIBUTION, OFFLINE, OPERATOR, Served, any_served, classifier_dir  # noqa: F401  (fixtures)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _row(minute: int, predicted: str, truth: str | None, confidence: float = 0.9, version: int = 1
         ) -> LabelledPrediction:
    return LabelledPrediction(request_id=f"r{minute}-{predicted}", at=T0 + timedelta(minutes=minute),
                              model_version_id=version, predicted=predicted, confidence=confidence, truth=truth,
                              input_text="some text", latency_ms=5.0)


def test_a_window_is_scored_like_scikit_learn_over_the_labels_present() -> None:
    truth = ["a", "a", "b", "c", "c", "c"]
    predicted = ["a", "b", "b", "c", "a", "c"]
    scores = score_window(truth, predicted, [0.9, 0.6, 0.8, 0.7, 0.5, 0.95])
    assert scores["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert scores["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    # ECE, 10 bins: one row per bin here, so it is the mean |correct - confidence|
    gaps = [abs(1 - 0.9), abs(0 - 0.6), abs(1 - 0.8), abs(1 - 0.7), abs(0 - 0.5), abs(1 - 0.95)]
    assert scores["ece"] == pytest.approx(sum(gaps) / 6)
    assert score_window([], [], []) == {"labelled": 0, "accuracy": None, "macro_f1": None, "ece": None}


def test_predictions_are_grouped_into_aligned_windows_per_version() -> None:
    rows = [_row(5, "a", "a"), _row(20, "a", "b"), _row(50, "b", None), _row(70, "a", "a"),
            _row(75, "b", "b", version=2)]
    windows = quality_windows(rows, timedelta(hours=1))
    assert [(w.start.hour, w.model_version_id, w.predictions, w.labelled) for w in windows] == [
        (10, 1, 3, 2), (11, 1, 1, 1), (11, 2, 1, 1)]
    assert windows[0].accuracy == 0.5 and windows[1].accuracy == 1.0
    with pytest.raises(InvalidInput, match="must be positive"):
        quality_windows(rows, timedelta(0))


@pytest.mark.parametrize(("text", "seconds"), [("45s", 45), ("30m", 1800), ("1h", 3600), ("1.5d", 129600)])
def test_durations_are_parsed(text: str, seconds: float) -> None:
    assert parse_window(text).total_seconds() == seconds


def test_a_bad_duration_says_how_to_write_one() -> None:
    with pytest.raises(InvalidInput, match="not valid") as caught:
        parse_window("an hour")
    assert "30m, 1h" in (caught.value.hint or "")


def test_live_quality_of_a_deployment_sits_next_to_its_offline_numbers(any_served: Served) -> None:
    ids = any_served.serve(IN_DISTRIBUTION[:12])
    predicted = {p.request_id: p.label for p in _predictions(any_served, ids)}
    right, wrong = ids[:6], ids[6:9]
    items = [(r, predicted[r]) for r in right] + [(r, "refund" if predicted[r] != "refund" else "balance")
                                                  for r in wrong]
    submit_feedback(any_served.ctx, items, actor=OPERATOR)
    live = live_quality(any_served.ctx, "support", actor=OPERATOR, window=timedelta(hours=1))
    labelled = [w for w in live.windows if w.labelled]
    assert sum(w.predictions for w in live.windows) == 12 and sum(w.labelled for w in labelled) == 9
    [overall] = live.overall
    assert overall.accuracy == pytest.approx(6 / 9) and overall.predictions == 12
    assert live.offline[any_served.version.id] == {"accuracy": 0.9, "macro_f1": 0.85, "ece": 0.05}
    assert OFFLINE["test"]["accuracy"] == 0.9
    with pytest.raises(NotFound, match="no deployment named 'nope'"):
        live_quality(any_served.ctx, "nope", actor=OPERATOR)


def _predictions(served: Served, ids: list[str]):  # type: ignore[no-untyped-def]
    from chainkeeper.monitoring.predictions import get_prediction

    return [get_prediction(served.ctx.db, r) for r in ids]
