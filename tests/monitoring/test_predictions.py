"""The prediction log's records: redacted input, hashed as received, scores kept, retention."""

from __future__ import annotations

import uuid
from datetime import timedelta

from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.monitoring.predictions import (
    count_predictions,
    get_prediction,
    hash_input,
    list_predictions,
    log_predictions,
    prediction_record,
    purge_predictions,
    redact_input,
)
from chainkeeper.serving.deployments import deploy_model_version
from tests.model_rows import RELEASER, in_production


def _deployed(ctx: Context) -> tuple[int, int]:
    version = in_production(ctx, "intents")
    return deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER).id, version.id


def test_a_record_stores_the_input_redacted_and_hashes_it_as_received() -> None:
    text = "Refund to jane.doe@example.com or call +44 20 7946 0958 please"
    record = prediction_record(request_id=str(uuid.uuid4()), deployment_id=1, model_version_id=2, at=utcnow(),
                               text=text, label="refund", score=0.9, latency_ms=3.0,
                               scores={"refund": 0.9, "transfer": 0.05})
    assert record.input_text == "Refund to [EMAIL] or call [PHONE] please"
    assert record.pii_spans == 2 and record.input_chars == len(text)
    assert record.input_hash == hash_input(text) != hash_input(record.input_text)
    assert redact_input("where is my card") == ("where is my card", 0)


def test_records_round_trip_with_their_scores_on_every_store(any_ctx: Context) -> None:
    deployment_id, version_id = _deployed(any_ctx)
    now = utcnow()
    records = [prediction_record(request_id=str(uuid.uuid4()), deployment_id=deployment_id,
                                 model_version_id=version_id, at=now - timedelta(minutes=i), text=f"text {i}",
                                 label="balance", score=0.5 + i / 10, latency_ms=2.5, scores={"balance": 0.5})
               for i in range(3)]
    assert log_predictions(any_ctx.db, records) == 3
    got = get_prediction(any_ctx.db, records[1].request_id)
    assert got == records[1] and got.scores == {"balance": 0.5} and got.input_chars == 6
    assert [r.id for r in list_predictions(any_ctx.db, deployment_id)] == [r.id for r in records]
    recent = list_predictions(any_ctx.db, since=now - timedelta(seconds=90))
    assert [r.id for r in recent] == [records[0].id, records[1].id]
    assert count_predictions(any_ctx.db, deployment_id) == 3


def test_the_purge_deletes_only_records_older_than_the_cut(any_ctx: Context) -> None:
    deployment_id, version_id = _deployed(any_ctx)
    now = utcnow()
    old, new = (prediction_record(request_id=str(uuid.uuid4()), deployment_id=deployment_id,
                                  model_version_id=version_id, at=at, text="hello", label="greeting", score=0.7,
                                  latency_ms=1.0) for at in (now - timedelta(days=40), now - timedelta(days=1)))
    log_predictions(any_ctx.db, [old, new])
    assert purge_predictions(any_ctx.db, now - timedelta(days=30)) == 1
    assert [r.id for r in list_predictions(any_ctx.db)] == [new.id]
    assert purge_predictions(any_ctx.db, now - timedelta(days=30)) == 0
