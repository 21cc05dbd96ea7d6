"""The diagnosis report: slices, confused pairs, wrong, low-confidence and slow examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chainkeeper.monitoring.diagnosis import diagnose, diagnosis_report, render_diagnosis_html
from chainkeeper.monitoring.feedback import submit_feedback
from chainkeeper.monitoring.quality import LabelledPrediction
from tests.monitoring.chain import IN_DISTRIBUTION, OPERATOR, Served, classifier_dir, served  # noqa: F401  (fixtures)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _rows() -> list[LabelledPrediction]:
    spec = [  # (text, predicted, truth, confidence, latency)
        ("my card is lost", "card_lost", "card_lost", 0.95, 10.0),
        ("lost my card again", "refund", "card_lost", 0.91, 11.0),
        ("card lost abroad today", "refund", "card_lost", 0.40, 12.0),
        ("where is my refund for the shoes I returned last month", "refund", "refund", 0.85, 9.0),
        ("balance please", "balance", "balance", 0.30, 10.0),
        ("hello there", "greeting", None, 0.20, 250.0),
        ("what is my balance", "transfer", "balance", 0.88, 11.0),
    ]
    return [LabelledPrediction(request_id=f"r{i}", at=T0 + timedelta(minutes=i), model_version_id=1, predicted=p,
                               confidence=c, truth=t, input_text=text, latency_ms=ms)
            for i, (text, p, t, c, ms) in enumerate(spec)]


def test_the_report_finds_where_the_model_fails() -> None:
    report = diagnosis_report(_rows(), examples=3)
    assert (report["predictions"], report["labelled"]) == (7, 6)
    assert report["overall"]["accuracy"] == 3 / 6
    assert report["confused_pairs"][0] == {"truth": "card_lost", "predicted": "refund", "count": 2}
    assert [w["request_id"] for w in report["wrong"]] == ["r1", "r6", "r2"]  # most confident mistakes first
    assert [w["request_id"] for w in report["low_confidence"]] == ["r5", "r4", "r2"]
    assert [o["request_id"] for o in report["latency"]["outliers"]] == ["r5"]
    slices = report["slices"]
    assert slices["text length"]["1-5 words"]["support"] == 5 and slices["script"]["latin"]["support"] == 6
    assert slices["predicted label"]["refund"]["accuracy"] == 1 / 3


def test_the_html_report_is_self_contained_with_plots() -> None:
    page = render_diagnosis_html({"deployment": "support", "model_version_id": 1, "since": "a", "until": "b",
                                  **diagnosis_report(_rows())})
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 4
    assert "card_lost → refund" in page and "<script" not in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")


def test_a_deployment_is_diagnosed_from_its_log_and_feedback(served: Served) -> None:
    ids = served.serve(IN_DISTRIBUTION[:8])
    submit_feedback(served.ctx, [(r, "balance") for r in ids[:4]], actor=OPERATOR)
    report = diagnose(served.ctx, "support", actor=OPERATOR)
    assert report["deployment"] == "support" and report["predictions"] == 8 and report["labelled"] == 4
    assert len(report["low_confidence"]) == 8 and report["latency"]["p50_ms"] > 0
    empty = diagnose(served.ctx, "support", actor=OPERATOR, since=datetime.now(UTC))
    assert empty["predictions"] == 0 and empty["calibration"] is None and "<svg" in render_diagnosis_html(empty)
