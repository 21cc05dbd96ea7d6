"""Model versions: registration, stage moves, the single production version, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.registry.versions import (
    Stage,
    StageTransition,
    count_model_versions,
    get_model_version,
    list_model_versions,
    production_from_history,
    production_version_at,
    register_model_version,
    stage_history,
    transition_stage,
)
from tests.model_rows import ENGINEER, METRICS, RELEASER, in_production, insert_run, registered


def test_registering_a_succeeded_run_makes_a_candidate_with_its_metrics(any_ctx: Context) -> None:
    run_id = insert_run(any_ctx, model_artifact="b" * 64)
    version = register_model_version(any_ctx, run_id=run_id, name="intents", actor=ENGINEER)
    assert (version.name, version.version, version.stage) == ("intents", 1, Stage.CANDIDATE)
    assert version.run_id == run_id and version.model_artifact == "b" * 64
    assert version.metrics == METRICS
    assert version.created_by == version.owner == "erin"
    history = stage_history(any_ctx.db, version.id)
    assert [(t.from_stage, t.to_stage, t.actor) for t in history] == [("", "candidate", "erin")]
    entries = list_entries(any_ctx.db, object_kind="model_version", object_id=str(version.id))
    assert [e.action for e in entries] == ["model.register"]


def test_versions_count_up_per_name(any_ctx: Context) -> None:
    numbers = [registered(any_ctx, "intents").version for _ in range(3)]
    other = registered(any_ctx, "sentiment")
    assert numbers == [1, 2, 3] and other.version == 1
    assert count_model_versions(any_ctx.db) == 4 and count_model_versions(any_ctx.db, "intents") == 3
    assert [v.version for v in list_model_versions(any_ctx.db, "intents")] == [3, 2, 1]


@pytest.mark.parametrize(
    ("succeeded", "artifact", "fragment"),
    [
        pytest.param(False, None, "is queued", id="run-not-finished"),
        pytest.param(True, None, "has no trained model", id="run-without-model"),
    ],
)
def test_a_run_without_a_model_cannot_be_registered(
    any_ctx: Context, succeeded: bool, artifact: str | None, fragment: str
) -> None:
    run_id = insert_run(any_ctx, model_artifact=artifact, succeeded=succeeded)
    with pytest.raises(Conflict, match=fragment):
        register_model_version(any_ctx, run_id=run_id, name="intents", actor=ENGINEER)
    assert count_model_versions(any_ctx.db) == 0


def test_registering_checks_the_name_and_the_run(ctx: Context) -> None:
    run_id = insert_run(ctx, model_artifact="b" * 64)
    with pytest.raises(InvalidInput, match="Model name 'Bad Name!' is not valid"):
        register_model_version(ctx, run_id=run_id, name="Bad Name!", actor=ENGINEER)
    with pytest.raises(NotFound):
        register_model_version(ctx, run_id=987654, name="intents", actor=ENGINEER)
    assert count_model_versions(ctx.db) == 0


def test_a_version_walks_candidate_staging_production_archived(any_ctx: Context) -> None:
    version = registered(any_ctx, "intents")
    for stage in (Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED):
        version = transition_stage(any_ctx, version.id, stage, actor=RELEASER, comment=f"to {stage}")
        assert version.stage == stage
    assert get_model_version(any_ctx.db, version.id).stage == Stage.ARCHIVED
    moves = [(t.from_stage, t.to_stage) for t in stage_history(any_ctx.db, version.id)]
    assert moves == [("", "candidate"), ("candidate", "staging"), ("staging", "production"),
                     ("production", "archived")]
    assert verify_ledger(any_ctx.db).ok


@pytest.mark.parametrize(
    ("path", "target", "fragment"),
    [
        pytest.param([], "production", "is candidate; it cannot move to production", id="skip-staging"),
        pytest.param([], "candidate", "is candidate; it cannot move to candidate", id="same-stage"),
        pytest.param(["staging", "production"], "staging", "is production; it cannot move to staging",
                     id="production-back-to-staging"),
    ],
)
def test_moves_outside_the_stage_graph_are_refused(
    any_ctx: Context, path: list[str], target: str, fragment: str
) -> None:
    version = registered(any_ctx, "intents")
    for stage in path:
        transition_stage(any_ctx, version.id, stage, actor=RELEASER)
    before = stage_history(any_ctx.db, version.id)
    with pytest.raises(Conflict, match=fragment) as caught:
        transition_stage(any_ctx, version.id, target, actor=RELEASER)
    assert "may move to" in (caught.value.hint or "")
    assert stage_history(any_ctx.db, version.id) == before


def test_unknown_stages_and_versions_are_clear_errors(ctx: Context) -> None:
    version = registered(ctx, "intents")
    with pytest.raises(InvalidInput, match="Unknown stage 'live'") as caught:
        transition_stage(ctx, version.id, "live", actor=RELEASER)
    assert "candidate, staging, production, archived" in (caught.value.hint or "")
    with pytest.raises(NotFound, match="no model version 987654"):
        transition_stage(ctx, 987654, "staging", actor=RELEASER)


def test_promoting_to_production_archives_the_previous_production_version(any_ctx: Context) -> None:
    first = in_production(any_ctx, "intents")
    unrelated = in_production(any_ctx, "sentiment")
    second = in_production(any_ctx, "intents")
    assert get_model_version(any_ctx.db, first.id).stage == Stage.ARCHIVED
    assert get_model_version(any_ctx.db, second.id).stage == Stage.PRODUCTION
    assert get_model_version(any_ctx.db, unrelated.id).stage == Stage.PRODUCTION  # another name is untouched
    last = stage_history(any_ctx.db, first.id)[-1]
    assert (last.from_stage, last.to_stage, last.actor) == ("production", "archived", "rory")
    assert "replaced in production by v2" in last.comment
    assert [v.id for v in list_model_versions(any_ctx.db, "intents", stage="production")] == [second.id]


def test_production_version_at_answers_from_the_history(any_ctx: Context) -> None:
    before_any = utcnow()
    first = in_production(any_ctx, "intents")
    while_first = utcnow()
    second = in_production(any_ctx, "intents")
    while_second = utcnow()
    transition_stage(any_ctx, second.id, Stage.ARCHIVED, actor=RELEASER, comment="withdrawn")
    after_withdrawal = utcnow()

    assert production_version_at(any_ctx.db, "intents", before_any) is None
    served = production_version_at(any_ctx.db, "intents", while_first)
    assert served is not None and served.id == first.id and served.stage == Stage.ARCHIVED  # today's stage
    served = production_version_at(any_ctx.db, "intents", while_second.astimezone(UTC))
    assert served is not None and served.id == second.id
    assert production_version_at(any_ctx.db, "intents", after_withdrawal) is None
    assert production_version_at(any_ctx.db, "no-such-model", after_withdrawal) is None


def test_production_version_at_refuses_a_naive_time(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="has no time zone"):
        production_version_at(ctx.db, "intents", datetime(2026, 5, 3, 14, 0))


def _t(i: int, version: int, to: str, minute: int) -> StageTransition:
    at = datetime(2026, 5, 3, 14, 0, tzinfo=UTC) + timedelta(minutes=minute)
    return StageTransition(id=i, model_version_id=version, from_stage="", to_stage=to, actor="x", comment="", at=at)


def test_replaying_the_history_handles_simultaneous_moves_in_order() -> None:
    # v1 archived and v2 promoted in one transaction share a timestamp: the id orders them.
    history = [_t(4, 2, "production", 10), _t(3, 1, "archived", 10), _t(1, 1, "production", 0),
               _t(2, 2, "staging", 5)]
    at = datetime(2026, 5, 3, 14, 0, tzinfo=UTC)
    assert production_from_history(history, at - timedelta(seconds=1)) is None
    assert production_from_history(history, at + timedelta(minutes=9)) == 1
    assert production_from_history(history, at + timedelta(minutes=10)) == 2
