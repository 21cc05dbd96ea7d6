"""The chain overview service: stage cards from each stage's public functions, the jobs panel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chainkeeper.chain.overview import chain_overview, jobs_panel
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.jobs import JobState, submit_job
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.web.overview import format_age, format_count, state_totals

VIEWER = Actor("vera", frozenset({"auditor"}))

CHAIN_ORDER = ["collect", "annotate", "train", "release", "deploy", "monitor", "audit"]
OWNERS = {
    "collect": "data_steward", "annotate": "annotator", "train": "ml_engineer", "release": "ml_engineer",
    "deploy": "release_manager", "monitor": "operator", "audit": "auditor",
}


def test_an_empty_store_shows_every_stage_in_chain_order_with_its_owner(any_ctx: Context) -> None:
    overview = chain_overview(any_ctx, actor=VIEWER)

    assert [s.key for s in overview.stages] == CHAIN_ORDER
    assert {s.key: s.role for s in overview.stages} == OWNERS
    assert all(c.value == 0 for s in overview.stages for c in s.counts)
    assert overview.empty
    assert overview.jobs.jobs == () and overview.jobs.total == 0


def test_release_model_is_approved_by_someone_other_than_its_owner(ctx: Context) -> None:
    cards = {s.key: s for s in chain_overview(ctx, actor=VIEWER).stages}

    # DESIGN.md: the ml_engineer registers, the release_manager approves (never the run's author).
    assert cards["release"].role == "ml_engineer"
    assert cards["release"].approver == "release_manager"
    # The annotators label; the data steward is accountable for label quality.
    assert cards["annotate"].role == "annotator"
    assert cards["annotate"].approver == "data_steward"


def test_every_stage_card_counts_what_its_stage_holds(any_ctx: Context, tmp_path: Path) -> None:
    fill_the_chain(any_ctx, tmp_path)

    cards = {s.key: s for s in chain_overview(any_ctx, actor=VIEWER).stages}
    counts = {key: {c.label: c.value for c in card.counts} for key, card in cards.items()}

    # in_production() brings a dataset version and a run of its own, hence 2 versions.
    assert counts["collect"] == {"sources": 1, "dataset versions": 2}
    assert cards["collect"].note == "latest release: support v1"
    assert counts["train"] == {"runs": 1}
    assert counts["release"] == {"model versions": 1, "in production": 1}
    assert cards["release"].note == "in production: support v1"
    assert counts["deploy"] == {"deployments": 1, "active": 1}
    assert cards["deploy"].note == "serving: support"
    assert counts["monitor"] == {"predictions served": 3}
    assert not chain_overview(any_ctx, actor=VIEWER).empty


def fill_the_chain(ctx: Context, tmp_path: Path) -> None:
    """One link of each kind, through each stage's public functions (no training: a
    stored run stands in for it, see tests/model_rows.py)."""
    from chainkeeper.data.ingest import import_csv
    from chainkeeper.data.versions import create_dataset_version, release_dataset_version
    from chainkeeper.monitoring.predictions import log_predictions, prediction_record
    from chainkeeper.serving.deployments import deploy_model_version
    from tests.model_rows import RELEASER, in_production

    model = in_production(ctx, "support")
    steward = Actor("sam", frozenset({"data_steward"}))
    csv = tmp_path / "train.csv"
    rows = [f"{text} {i},{label}" for i in range(10) for text, label in
            (("where is my card", "card_lost"), ("what is my balance", "balance"), ("hello there", "greeting"))]
    csv.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    source = import_csv(ctx, csv, actor=steward)
    version = create_dataset_version(ctx, name="support", source_ids=[source.id], actor=steward)
    release_dataset_version(ctx, version.id, actor=Actor("dana", frozenset({"data_steward"})))
    deployment = deploy_model_version(ctx, name="support", model_version_id=model.id, actor=RELEASER)
    log_predictions(ctx.db, [
        prediction_record(request_id=str(uuid.uuid4()), deployment_id=deployment.id, model_version_id=model.id,
                          at=utcnow(), text=f"text {i}", label="balance", score=0.9, latency_ms=5.0)
        for i in range(3)
    ])


def test_jobs_panel_lists_the_latest_jobs_newest_first_with_totals(any_ctx: Context) -> None:
    for steps in (1, 2, 3):
        submit_job(any_ctx, "sleep", {"steps": steps, "step_s": 0.0}, actor="alice")

    panel = jobs_panel(any_ctx, actor=VIEWER, limit=2)

    assert [j.params["steps"] for j in panel.jobs] == [3, 2]
    assert panel.counts_by_state == {"queued": 3}
    assert panel.total == 3
    assert {j.created_by for j in panel.jobs} == {"alice"}


def test_a_job_run_by_a_worker_shows_as_succeeded_and_the_worker_as_live(any_ctx: Context) -> None:
    submit_job(any_ctx, "sleep", {"steps": 2, "step_s": 0.0}, actor="alice")
    worker = Worker(any_ctx, worker_id="worker-under-test")
    worker.run_one()

    panel = jobs_panel(any_ctx, actor=VIEWER)
    overview = chain_overview(any_ctx, actor=VIEWER)

    assert panel.jobs[0].state == JobState.SUCCEEDED and panel.jobs[0].progress == 100.0
    assert [w.id for w in panel.workers] == ["worker-under-test"]
    assert panel.workers[0].state == "idle"
    # A chain with a finished job is no longer "empty": the getting-started hint goes away.
    assert not overview.empty


NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "expected"), [
    pytest.param(0.4, "just now", id="under-a-second"),
    pytest.param(-30, "just now", id="clock-skew-future"),
    pytest.param(42, "42 s ago", id="seconds"),
    pytest.param(60, "1 min ago", id="one-minute"),
    pytest.param(3 * 3600 + 59, "3 h ago", id="hours"),
    pytest.param(2 * 86_400 + 5, "2 d ago", id="days"),
])
def test_format_age_uses_the_largest_unit_that_fits(seconds: float, expected: str) -> None:
    assert format_age(NOW - timedelta(seconds=seconds), NOW) == expected


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(0, "0", id="zero"),
    pytest.param(12_345, "12,345", id="thousands"),
    pytest.param(2_450_000, "2.5M", id="millions"),
])
def test_format_count_is_readable_at_every_size(value: int, expected: str) -> None:
    assert format_count(value) == expected


def test_state_totals_follow_the_display_order_and_skip_empty_states() -> None:
    counts = {"succeeded": 4, "queued": 1, "failed": 0}

    assert state_totals(counts, ["running", "queued", "succeeded", "failed"]) == [("queued", 1), ("succeeded", 4)]
