"""Serving metrics: Prometheus text on a real server, derived series, the stored series query."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.settings import load_settings
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.metrics import (
    METRIC_NAMES,
    MetricPoint,
    ServingMetrics,
    derive_points,
    histogram_quantile,
    metric_series,
    store_points,
)
from chainkeeper.serving.deployments import deploy_model_version
from tests.model_rows import RELEASER, in_production, save_tiny_classifier


def test_histogram_quantiles_interpolate_inside_the_bucket() -> None:
    buckets = [(0.01, 10.0), (0.02, 90.0), (0.05, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.05, buckets) == pytest.approx(0.005)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.015)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.035)
    assert histogram_quantile(0.99, [(0.1, 1.0), (math.inf, 100.0)]) == 0.1  # in +Inf: the largest bound
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


def test_two_snapshots_give_rates_quantiles_and_error_rates() -> None:
    metrics = ServingMetrics()
    for _ in range(10):
        metrics.observe("support", 3, 0.004, texts=2)
    before = metrics.snapshot()
    for latency in [0.004] * 98 + [0.4, 0.4]:
        metrics.observe("support", 3, latency, texts=1)
    metrics.observe_error("support", 422)
    points = {(p.name, tuple(sorted(p.labels.items()))): p.value
              for p in derive_points(before, metrics.snapshot(), 10.0, utcnow())}
    tags = (("deployment", "support"), ("model_version", "3"))
    assert points[("requests_per_s", tags)] == pytest.approx(10.0)
    assert points[("texts_per_s", tags)] == pytest.approx(10.0)
    assert points[("requests_total", tags)] == 110
    assert 2.0 <= points[("latency_p50_ms", tags)] <= 5.0
    assert 300.0 <= points[("latency_p99_ms", tags)] <= 500.0
    assert points[("error_rate", (("deployment", "support"),))] == pytest.approx(1 / 101)
    assert points[("process_resident_memory_bytes", ())] > 10_000_000
    assert {name for name, _ in points} <= set(METRIC_NAMES)


def test_metric_series_filters_by_name_time_and_deployment(any_ctx: Context) -> None:
    now = utcnow()
    support, news = {"deployment": "support", "model_version": "1"}, {"deployment": "news", "model_version": "2"}
    store_points(any_ctx.db, [
        MetricPoint("latency_p99_ms", support, 40.0, now - timedelta(minutes=5)),
        MetricPoint("latency_p99_ms", support, 55.0, now - timedelta(minutes=1)),
        MetricPoint("latency_p99_ms", news, 90.0, now - timedelta(minutes=1)),
        MetricPoint("process_resident_memory_bytes", {}, 1e9, now - timedelta(minutes=1)),
    ])
    recent = metric_series(any_ctx.db, "latency_p99_ms", now - timedelta(minutes=2), "support")
    assert [(p.value, p.labels["model_version"]) for p in recent] == [(55.0, "1")]
    both = metric_series(any_ctx.db, "latency_p99_ms", now - timedelta(minutes=10))
    assert [p.value for p in both] == [40.0, 55.0, 90.0]
    assert metric_series(any_ctx.db, "latency_p99_ms", now - timedelta(minutes=10), until=now - timedelta(minutes=2))[
        0].value == 40.0
    assert metric_series(any_ctx.db, "process_resident_memory_bytes", now - timedelta(minutes=2), "support") == []
    with pytest.raises(InvalidInput, match="no metric named 'p99'") as caught:
        metric_series(any_ctx.db, "p99", now)
    assert "latency_p99_ms" in (caught.value.hint or "")


@pytest.fixture
def server(tmp_path: Path, migrated_template: Path, tiny_model_dir: Path) -> Iterator[tuple[Context, RunningServer]]:
    import shutil

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(migrated_template, home / "chainkeeper.db")
    ctx = open_context(load_settings({}, home=home, metrics_sample_s=0.3))
    model = save_tiny_classifier(tiny_model_dir, tmp_path / "model")
    version = in_production(ctx, "intents", model_artifact=ctx.artifacts.put_tree(model))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    running = start_server_in_thread(create_app(ctx))
    yield ctx, running
    running.stop()
    ctx.close()


def test_metrics_are_served_in_prometheus_format_and_stored(server: tuple[Context, RunningServer]) -> None:
    ctx, running = server
    create_user(ctx.db, "olive", roles=["operator"])
    create_user(ctx.db, "anna", roles=["annotator"])
    headers = {"Authorization": f"Bearer {issue_token(ctx.db, 'olive', name='t').secret}"}
    started = utcnow()
    with httpx.Client(base_url=running.url, headers=headers, timeout=60) as client:
        for _ in range(3):
            answer = client.post("/v1/deployments/support/predict", json={"texts": ["hi", "lost card"]})
            assert answer.status_code == 200
        assert client.post("/v1/deployments/support/predict", json={"text": ""}).status_code == 422
        assert client.post("/v1/deployments/nope-1/predict", json={"text": "x"}).status_code == 404
        text = client.get("/metrics")
        annotator = client.get("/metrics", headers={
            "Authorization": f"Bearer {issue_token(ctx.db, 'anna', name='t').secret}"})
        anonymous = httpx.get(f"{running.url}/metrics")
        version = client.get("/v1/deployments/support").json()["model_version_id"]
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    body = text.text
    labels = f'deployment="support",model_version="{version}"'
    assert f"chainkeeper_predict_requests_total{{{labels}}} 3.0" in body
    assert f"chainkeeper_predict_texts_total{{{labels}}} 6.0" in body
    # prometheus-client sorts the labels of a histogram bucket: le sits between the two.
    bucket = f'deployment="support",le="+Inf",model_version="{version}"'
    assert f"chainkeeper_predict_latency_seconds_bucket{{{bucket}}} 3.0" in body
    assert 'chainkeeper_predict_errors_total{deployment="support",status="422"} 1.0' in body
    assert 'chainkeeper_predict_errors_total{deployment="(unknown)",status="404"} 1.0' in body
    assert f'chainkeeper_batch_size_count{{model_version="{version}"}}' in body
    assert f'chainkeeper_batch_queue_depth{{model_version="{version}"}}' in body
    assert "process_resident_memory_bytes" in body and "chainkeeper_prediction_log_dropped_total 0.0" in body
    assert annotator.status_code == 403 and anonymous.status_code == 401
    # The sampler runs on its own clock: a point taken while the requests were in
    # flight holds fewer than three, so wait for one taken after the last of them.
    deadline = time.monotonic() + 20
    while True:
        points = metric_series(ctx.db, "requests_total", started, "support")
        if points and points[-1].value == 3.0:
            break
        assert time.monotonic() < deadline, f"the sampler never stored the third request: {points}"
        time.sleep(0.1)
    assert all(point.value <= 3.0 for point in points)
    assert points[-1].value == 3.0 and points[-1].labels == {"deployment": "support", "model_version": str(version)}
    with httpx.Client(base_url=running.url, headers=headers, timeout=60) as client:
        series = client.get("/api/metrics/requests_total", params={"minutes": 5, "deployment": "support"})
        unknown = client.get("/api/metrics/p99")
    assert series.status_code == 200 and series.json()[-1]["value"] == 3.0
    assert unknown.status_code == 422 and "latency_p99_ms" in unknown.json()["hint"]
