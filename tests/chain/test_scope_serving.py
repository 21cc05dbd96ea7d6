"""Every protected serving function refuses an actor whose roles are bound to another project.

A deployment's project is its model version's (``serving.project_of_deployment``); the
"news" deployment of the ``projects`` fixture belongs to "news", so ``projects.outsider``
(every role, in "support" only) is refused everywhere and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden
from chainkeeper.serving import (
    authorize_prediction,
    create_deployment_key,
    deploy_model_version,
    deployment_readiness,
    find_deployments,
    list_deployment_keys,
    list_shadow_predictions,
    promote_rollout,
    request_export,
    revoke_deployment_key,
    rollback_deployment,
    rollout_status,
    show_deployment,
    start_canary,
    start_shadow,
)
from tests.chain.conftest import Projects, ScopeCase, table_counts

NAME = "news-sentiment"

CASES: dict[Callable[..., object], ScopeCase] = {
    deploy_model_version: lambda ctx, p, tmp: deploy_model_version(ctx, name="elsewhere", model_version_id=p.model.id,
                                                                   actor=p.outsider),
    authorize_prediction: lambda ctx, p, tmp: authorize_prediction(ctx, NAME, actor=p.outsider),
    show_deployment: lambda ctx, p, tmp: show_deployment(ctx, NAME, actor=p.outsider),
    rollout_status: lambda ctx, p, tmp: rollout_status(ctx, NAME, actor=p.outsider),
    list_shadow_predictions: lambda ctx, p, tmp: list_shadow_predictions(ctx, NAME, actor=p.outsider),
    start_canary: lambda ctx, p, tmp: start_canary(ctx, NAME, p.model.id, percent=10, actor=p.outsider),
    start_shadow: lambda ctx, p, tmp: start_shadow(ctx, NAME, p.model.id, actor=p.outsider),
    promote_rollout: lambda ctx, p, tmp: promote_rollout(ctx, NAME, actor=p.outsider),
    rollback_deployment: lambda ctx, p, tmp: rollback_deployment(ctx, NAME, actor=p.outsider),
    create_deployment_key: lambda ctx, p, tmp: create_deployment_key(ctx, NAME, name="shop", actor=p.outsider,
                                                                     scopes=["predict"]),
    list_deployment_keys: lambda ctx, p, tmp: list_deployment_keys(ctx, NAME, actor=p.outsider),
    revoke_deployment_key: lambda ctx, p, tmp: revoke_deployment_key(ctx, NAME, 1, actor=p.outsider),
    request_export: lambda ctx, p, tmp: request_export(ctx, p.model.id, actor=p.outsider),
    # The predictor cache is never reached: the decision comes first.
    deployment_readiness: lambda ctx, p, tmp: deployment_readiness(ctx, None, NAME, actor=p.outsider),  # type: ignore[arg-type]
}

# List functions refuse no reader: they leave out what the actor may not read.
LISTS: dict[Callable[..., object], Callable[[Context, Projects, object], list[object]]] = {
    find_deployments: lambda ctx, p, actor: find_deployments(ctx, actor=actor),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("function", list(CASES), ids=lambda f: f.__name__)
def test_an_actor_of_another_project_is_refused(ctx: Context, projects: Projects, tmp_path: Path,
                                                function: Callable[..., object]) -> None:
    before = table_counts(ctx)
    with pytest.raises(Forbidden):
        CASES[function](ctx, projects, tmp_path)
    assert table_counts(ctx) == before


@pytest.mark.parametrize("function", list(LISTS), ids=lambda f: f.__name__)
def test_a_list_shows_an_actor_of_another_project_nothing_of_this_one(ctx: Context, projects: Projects,
                                                                       function: Callable[..., object]) -> None:
    assert LISTS[function](ctx, projects, projects.outsider) == []
    assert LISTS[function](ctx, projects, projects.insider) != []


def test_an_actor_of_the_project_may_read_and_roll_out_its_deployment(ctx: Context, projects: Projects) -> None:
    assert show_deployment(ctx, NAME, actor=projects.insider).id == projects.deployment.id
    authorize_prediction(ctx, NAME, actor=projects.insider)
    issued = create_deployment_key(ctx, NAME, name="shop", actor=projects.insider, scopes=["predict"])
    assert [k.id for k in list_deployment_keys(ctx, NAME, actor=projects.insider)] == [issued.key.id]
