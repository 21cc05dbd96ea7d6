"""Calibration, slices, run comparison and the HTML report, against hand-computed values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobState
from chainkeeper.core.worker import Worker
from chainkeeper.training.calibration import calibration_report, compare_metrics, length_bucket, slice_metrics
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.evaluation import classification_metrics
from chainkeeper.training.runs import compare_runs, get_run, run_report_html, start_training_run
from tests.training.test_runs import ALICE, FAST, _dataset_version


def test_expected_calibration_error_matches_a_hand_computed_example() -> None:
    # 5 bins. Bin (0.2,0.4]: 0.25, 0.35 -> conf 0.30, 1 of 2 right -> gap 0.20
    #         Bin (0.6,0.8]: 0.65, 0.75 -> conf 0.70, 2 of 2 right -> gap 0.30
    #         Bin (0.8,1.0]: 0.9        -> conf 0.90, 0 of 1 right -> gap 0.90
    # ECE = 2/5*0.20 + 2/5*0.30 + 1/5*0.90 = 0.08 + 0.12 + 0.18 = 0.38
    report = calibration_report([0.25, 0.35, 0.65, 0.75, 0.9], [True, False, True, True, False], n_bins=5)
    assert report["ece"] == pytest.approx(0.38)
    counts = [b["count"] for b in report["bins"]]
    assert counts == [0, 2, 0, 2, 1]
    assert report["bins"][1]["confidence"] == pytest.approx(0.30) and report["bins"][1]["accuracy"] == 0.5
    assert report["bins"][0]["accuracy"] is None


def test_a_perfectly_calibrated_set_has_zero_ece_and_edges_go_to_the_lower_bin() -> None:
    report = calibration_report([0.5, 0.5, 1.0, 0.0], [True, False, True, False], n_bins=2)
    assert [b["count"] for b in report["bins"]] == [3, 1]  # 0.5 and 0.0 in [0, 0.5]
    with pytest.raises(InvalidInput, match="outside"):
        calibration_report([1.5], [True])
    with pytest.raises(InvalidInput, match="zero rows"):
        calibration_report([], [])


def test_metrics_per_slice_and_length_buckets() -> None:
    assert length_bucket("one two") == "1-5 words"
    assert length_bucket(" ".join(["w"] * 50)) == "41+ words"
    slices = slice_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["x", "x", "y", "y"], ["a", "b"])
    assert slices["x"] == {"support": 2, "accuracy": 0.5, "macro_f1": pytest.approx((2 / 3 + 0) / 2)}
    assert slices["y"]["accuracy"] == 1.0


def test_micro_and_weighted_averages_by_hand() -> None:
    # a: tp 1, predicted 1, support 2 -> P 1, R .5 ; b: tp 2, predicted 3, support 2 -> P 2/3, R 1
    m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert m["micro_f1"] == m["accuracy"] == 0.75
    assert m["weighted_precision"] == pytest.approx((1 * 2 + 2 / 3 * 2) / 4)
    assert m["weighted_recall"] == pytest.approx(0.75)


def test_compare_gives_deltas_of_the_headline_numbers() -> None:
    a = {"test": {"accuracy": 0.80, "macro_f1": 0.70, "calibration": {"ece": 0.10}}}
    b = {"test": {"accuracy": 0.85, "macro_f1": 0.65, "calibration": {"ece": 0.05}}, "dev": {"accuracy": 0.9}}
    out = compare_metrics(a, b)
    assert out["test"]["accuracy"]["delta"] == pytest.approx(0.05)
    assert out["test"]["macro_f1"]["delta"] == pytest.approx(-0.05)
    assert out["test"]["ece"] == {"a": 0.10, "b": 0.05, "delta": pytest.approx(-0.05)}
    assert out["dev"]["accuracy"] == {"a": None, "b": 0.9, "delta": None}


def test_a_finished_run_stores_calibration_slices_and_renders_a_self_contained_report(
        ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    first = start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE, base_model=tiny_model_dir)
    second = start_training_run(ctx, dataset_version_id=version_id,
                                config=TrainConfig(**{**FAST.model_dump(), "epochs": 1}), actor=ALICE,
                                base_model=tiny_model_dir)
    assert Worker(ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]
    assert Worker(ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]
    test = get_run(ctx.db, first.id).metrics["test"]
    assert 0.0 <= test["calibration"]["ece"] <= 1.0
    assert sum(b["count"] for b in test["calibration"]["bins"]) == test["support"]
    assert sum(v["support"] for v in test["slices"]["text length"].values()) == test["support"]

    page = run_report_html(ctx, first.id, actor=ALICE)
    assert page.count("<svg") >= 3  # loss curve, confusion matrix, reliability diagram (per split)
    assert "confusion matrix" in page and "ECE" in page and "weighted avg" in page
    assert not re.search(r"(src|href)=[\"']?https?:", page)  # nothing fetched when opened

    diff = compare_runs(ctx, first.id, second.id, actor=ALICE)
    row = diff["splits"]["test"]["accuracy"]
    assert row["delta"] == pytest.approx(row["b"] - row["a"])
