import csv
import io

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import (
    ACTIONS,
    DEFAULT_MATRIX,
    authorize,
    create_role,
    permission_matrix,
    raci_rows,
    render_raci,
    set_permission,
)
from tests.governance.conftest import make_actor


def test_every_default_grant_names_a_known_action() -> None:
    for role, actions in DEFAULT_MATRIX.items():
        assert actions <= set(ACTIONS), role


def test_forbidden_names_the_action_and_who_may(ctx: Context) -> None:
    annotator = make_actor(ctx, "ann", "annotator")
    with pytest.raises(Forbidden) as info:
        authorize(ctx.db, annotator, "model.promote.approve")
    assert "ann (annotator) may not model.promote.approve" in str(info.value)
    assert "Roles that may: release_manager" in str(info.value)
    authorize(ctx.db, annotator, "annotation.label")


def test_a_user_with_no_role_may_do_nothing(ctx: Context) -> None:
    nobody = make_actor(ctx, "nobody")
    with pytest.raises(Forbidden, match="nobody \\(no role\\)"):
        authorize(ctx.db, nobody, "system.read")


def test_project_scoped_roles_hold_only_in_their_project(ctx: Context) -> None:
    scoped = Actor("sam", frozenset(), scoped_roles=frozenset({("data_steward", "banking")}))
    authorize(ctx.db, scoped, "dataset.create", project="banking")
    with pytest.raises(Forbidden):
        authorize(ctx.db, scoped, "dataset.create", project="news")
    with pytest.raises(Forbidden):
        authorize(ctx.db, scoped, "dataset.create")


def test_roles_are_data_custom_roles_and_matrix_changes_take_effect(ctx: Context) -> None:
    create_role(ctx.db, "labeller_lead", description="leads labelling", actions=["annotation.label", "system.read"])
    lead = Actor("lea", frozenset({"labeller_lead"}))
    authorize(ctx.db, lead, "annotation.label")
    set_permission(ctx.db, "labeller_lead", "annotation.label", granted=False)
    with pytest.raises(Forbidden):
        authorize(ctx.db, lead, "annotation.label")
    with pytest.raises(InvalidInput, match="Unknown action"):
        set_permission(ctx.db, "labeller_lead", "fly", granted=True)
    with pytest.raises(NotFound, match="no role 'ghost'"):
        set_permission(ctx.db, "ghost", "system.read", granted=True)


def test_raci_is_read_from_the_enforced_matrix(ctx: Context) -> None:
    rows = {r.activity: r for r in raci_rows(permission_matrix(ctx.db))}
    promote = rows["promote to production"]
    assert promote.accountable == ("release_manager",)
    assert set(promote.responsible) == {"ml_engineer", "release_manager"}
    release = rows["release a dataset version"]
    # ml_engineer may ask (the retraining loop does); only data_steward approves.
    assert release.responsible == ("data_steward", "ml_engineer") and release.accountable == ("data_steward",)
    # Change the enforced matrix: the RACI follows.
    set_permission(ctx.db, "operator", "model.promote.approve", granted=True)
    rows = {r.activity: r for r in raci_rows(permission_matrix(ctx.db))}
    assert rows["promote to production"].accountable == ("operator", "release_manager")


def test_raci_renders_as_markdown_and_csv(ctx: Context) -> None:
    rows = raci_rows(permission_matrix(ctx.db))
    md = render_raci(rows, "md")
    assert md.startswith("| stage | activity | Responsible |") and "release a dataset version" in md
    parsed = list(csv.reader(io.StringIO(render_raci(rows, "csv"))))
    assert parsed[0] == ["stage", "activity", "Responsible", "Accountable", "Consulted", "Informed"]
    assert len(parsed) == len(rows) + 1
    with pytest.raises(InvalidInput, match="--format md"):
        render_raci(rows, "xml")
