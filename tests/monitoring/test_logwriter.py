"""The buffered prediction-log writer: off the request path, bounded, lossless on close."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.monitoring.logwriter import MAX_ATTEMPTS, PredictionLogWriter
from chainkeeper.monitoring.predictions import (
    count_predictions,
    get_prediction,
)
from chainkeeper.serving.deployments import deploy_model_version
from tests.model_rows import RELEASER, in_production


@pytest.fixture
def ids(any_ctx: Context) -> tuple[int, int]:
    version = in_production(any_ctx, "intents")
    return deploy_model_version(any_ctx, name="support", model_version_id=version.id, actor=RELEASER).id, version.id


def _items(ids: tuple[int, int], n: int, text: str = "where is my card") -> list[dict[str, Any]]:
    now = utcnow()
    return [{"request_id": str(uuid.uuid4()), "deployment_id": ids[0], "model_version_id": ids[1], "at": now,
             "text": text, "label": "card_lost", "score": 0.8, "scores": {"card_lost": 0.8}, "latency_ms": 4.0}
            for _ in range(n)]


def test_submitted_records_are_written_in_batches_and_read_back(any_ctx: Context, ids: tuple[int, int]) -> None:
    writer = PredictionLogWriter(any_ctx.db, max_batch=50, flush_interval_s=0.05)
    try:
        items = _items(ids, 120, text="mail me at a.b@example.org")
        assert writer.submit(items) == 120
        # A reader in this process flushes first: the id just returned is found at once.
        record = get_prediction(any_ctx.db, items[7]["request_id"])
        assert record.input_text == "mail me at [EMAIL]" and record.pii_spans == 1
        assert count_predictions(any_ctx.db) == 120
        stats = writer.stats()
        assert (stats.accepted, stats.written, stats.dropped, stats.buffered) == (120, 120, 0, 0)
    finally:
        writer.close()


def test_close_writes_everything_accepted_first(any_ctx: Context, ids: tuple[int, int]) -> None:
    writer = PredictionLogWriter(any_ctx.db, max_batch=1000, flush_interval_s=30.0)  # would wait 30 s
    writer.submit(_items(ids, 300))
    started = time.monotonic()
    assert writer.close(timeout=20) is True
    assert time.monotonic() - started < 20
    assert writer.stats().written == 300
    assert writer.submit(_items(ids, 2)) == 0 and writer.stats().dropped == 2  # closed: counted, not queued


def test_a_full_buffer_drops_and_counts_instead_of_growing(any_ctx: Context, ids: tuple[int, int]) -> None:
    writer = PredictionLogWriter(any_ctx.db, max_buffered=5, max_batch=1000, flush_interval_s=30.0)
    try:
        assert writer.submit(_items(ids, 3)) == 3
        assert writer.submit(_items(ids, 4)) == 2
        stats = writer.stats()
        assert (stats.accepted, stats.dropped, stats.buffered) == (5, 2, 5)
    finally:
        writer.close()
    assert count_predictions(any_ctx.db) == 5


def test_the_sampling_rate_keeps_about_that_share(ctx: Context) -> None:
    version = in_production(ctx, "intents")
    ids = deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER).id, version.id
    writer = PredictionLogWriter(ctx.db, sample_rate=0.25, rng=random.Random(7).random)
    try:
        kept = writer.submit(_items(ids, 800))
        assert 150 <= kept <= 250  # binomial(800, 0.25): mean 200, sd 12
        stats = writer.stats()
        assert stats.accepted == kept and stats.sampled_out == 800 - kept
    finally:
        writer.close()
    assert count_predictions(ctx.db) == kept
    none = PredictionLogWriter(ctx.db, sample_rate=0.0)
    assert none.submit(_items(ids, 10)) == 0
    none.close()


def test_a_store_outage_is_retried_then_counted_and_the_writer_recovers(ctx: Context) -> None:
    version = in_production(ctx, "intents")
    ids = deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER).id, version.id
    writer = PredictionLogWriter(ctx.db, flush_interval_s=0.02)
    try:
        with ctx.db.engine.begin() as conn:  # the table is gone: every insert fails
            conn.exec_driver_sql("ALTER TABLE predictions RENAME TO predictions_away")
        writer.submit(_items(ids, 4))
        assert writer.flush(timeout=20) is True
        stats = writer.stats()
        assert (stats.failed, stats.written) == (4, 0)
        with ctx.db.engine.begin() as conn:  # the store is back
            conn.exec_driver_sql("ALTER TABLE predictions_away RENAME TO predictions")
        writer.submit(_items(ids, 3))
        assert writer.flush(timeout=20) is True
        assert writer.stats().written == 3
    finally:
        writer.close()
    assert count_predictions(ctx.db) == 3 and MAX_ATTEMPTS >= 2


@pytest.mark.parametrize("kwargs", [pytest.param({"sample_rate": 1.5}, id="rate-above-1"),
                                    pytest.param({"max_buffered": 0}, id="no-buffer"),
                                    pytest.param({"flush_interval_s": 0}, id="no-flush-interval")])
def test_bad_writer_settings_are_refused_clearly(ctx: Context, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        PredictionLogWriter(ctx.db, **kwargs)
    assert caught.value.hint
