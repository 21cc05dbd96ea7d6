"""Deployments: only production versions, re-pointing by name, serving and the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.monitoring.predictions import count_predictions, get_prediction, hash_input, list_predictions
from chainkeeper.registry.versions import transition_stage
from chainkeeper.serving.deployments import (
    count_deployments,
    deploy_model_version,
    get_deployment,
    get_deployment_by_name,
    list_deployments,
    serve_predictions,
)
from chainkeeper.serving.runtime import PredictorCache
from tests.model_rows import LABELS, RELEASER, in_production, registered, save_tiny_classifier


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


def test_deploying_a_production_version_creates_an_active_deployment(any_ctx: Context) -> None:
    version = in_production(any_ctx, "intents")
    deployment = deploy_model_version(any_ctx, name="support", model_version_id=version.id, actor=RELEASER)
    assert (deployment.name, deployment.model_version_id, deployment.state) == ("support", version.id, "active")
    assert deployment.created_by == deployment.owner == "rory"
    assert get_deployment(any_ctx.db, deployment.id) == deployment == get_deployment_by_name(any_ctx.db, "support")
    assert count_deployments(any_ctx.db) == 1 and list_deployments(any_ctx.db) == [deployment]
    actions = [e.action for e in list_entries(any_ctx.db, object_kind="deployment")]
    assert actions == ["deployment.create"]


@pytest.mark.parametrize("stages", [pytest.param([], id="candidate"), pytest.param(["staging"], id="staging")])
def test_a_version_not_in_production_cannot_be_deployed(any_ctx: Context, stages: list[str]) -> None:
    version = registered(any_ctx, "intents")
    for stage in stages:
        transition_stage(any_ctx, version.id, stage, actor=RELEASER)
    with pytest.raises(Conflict, match="only a production version can be deployed") as caught:
        deploy_model_version(any_ctx, name="support", model_version_id=version.id, actor=RELEASER)
    assert "Promote it first" in (caught.value.hint or "")
    assert count_deployments(any_ctx.db) == 0


def test_redeploying_a_name_points_it_at_the_new_version(any_ctx: Context) -> None:
    first = in_production(any_ctx, "intents")
    created = deploy_model_version(any_ctx, name="support", model_version_id=first.id, actor=RELEASER)
    second = in_production(any_ctx, "intents")
    moved = deploy_model_version(any_ctx, name="support", model_version_id=second.id, actor=RELEASER)
    assert moved.id == created.id and moved.model_version_id == second.id
    assert moved.updated_at > created.updated_at and moved.created_at == created.created_at
    assert count_deployments(any_ctx.db) == 1
    update = list_entries(any_ctx.db, object_kind="deployment")[-1]
    assert update.action == "deployment.update" and update.details["from_model_version_id"] == first.id
    assert verify_ledger(any_ctx.db).ok


@pytest.mark.parametrize("name", [pytest.param("Support", id="upper-case"), pytest.param("a/b", id="slash"),
                                  pytest.param("", id="empty"), pytest.param("-x", id="leading-dash")])
def test_deployment_names_must_be_url_slugs(ctx: Context, name: str) -> None:
    version = in_production(ctx, "intents")
    with pytest.raises(InvalidInput, match="is not valid"):
        deploy_model_version(ctx, name=name, model_version_id=version.id, actor=RELEASER)
    assert count_deployments(ctx.db) == 0


def test_unknown_deployments_and_versions_are_not_found(ctx: Context) -> None:
    with pytest.raises(NotFound, match="no deployment named 'ghost'"):
        get_deployment_by_name(ctx.db, "ghost")
    with pytest.raises(NotFound, match="no model version 987654"):
        deploy_model_version(ctx, name="support", model_version_id=987654, actor=RELEASER)


def test_serving_logs_one_record_per_text_with_its_request_id(any_ctx: Context, classifier_dir: Path) -> None:
    version = in_production(any_ctx, "intents", model_artifact=any_ctx.artifacts.put_tree(classifier_dir))
    deployment = deploy_model_version(any_ctx, name="support", model_version_id=version.id, actor=RELEASER)
    texts = ["my card is lost", "thanks, bye"]
    served = serve_predictions(any_ctx, PredictorCache(any_ctx), "support", texts)
    assert served.deployment == deployment and served.model_version.id == version.id
    assert len({p.request_id for p in served.predictions}) == 2
    assert count_predictions(any_ctx.db) == 2 == count_predictions(any_ctx.db, deployment.id)
    for prediction, text in zip(served.predictions, texts, strict=True):
        assert prediction.label in LABELS
        record = get_prediction(any_ctx.db, prediction.request_id)
        assert (record.deployment_id, record.model_version_id) == (deployment.id, version.id)
        assert (record.label, record.input_text, record.input_hash) == (prediction.label, text, hash_input(text))
        assert record.score == pytest.approx(prediction.score) and record.latency_ms > 0
    assert {r.id for r in list_predictions(any_ctx.db, deployment_id=deployment.id)} == {
        p.request_id for p in served.predictions}


def test_a_bad_request_logs_nothing(ctx: Context) -> None:
    with pytest.raises(InvalidInput):
        serve_predictions(ctx, PredictorCache(ctx), "support", [""])
    with pytest.raises(NotFound):
        serve_predictions(ctx, PredictorCache(ctx), "ghost", ["hello"])
    assert count_predictions(ctx.db) == 0


def test_an_unknown_request_id_is_not_found(ctx: Context) -> None:
    with pytest.raises(NotFound, match="no prediction with request id 'nope'"):
        get_prediction(ctx.db, "nope")

