"""Approval gates: self-approval refused with who may approve; the right second person
works; every request and decision is in the ledger; failed checks block approval."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.chain.ownership import owner_of, reassign_owner
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.versions import create_dataset_version, get_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import decide, find_approvals, request_approval, show_approval
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.registry.versions import get_model_version, register_model_version
from tests.governance.conftest import make_actor
from tests.model_rows import insert_run


def _draft_dataset(ctx: Context, tmp_path: Path, steward_name: str) -> tuple[int, Actor]:
    steward = make_actor(ctx, steward_name, "data_steward")
    csv = tmp_path / "train.csv"
    rows = [f"card {i} has not arrived,card_arrival" for i in range(12)] + \
           [f"please block my lost card {i},lost_card" for i in range(12)]
    csv.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    source = import_csv(ctx, csv, actor=steward)
    return create_dataset_version(ctx, name="support", source_ids=[source.id], actor=steward).id, steward


def test_dataset_release_needs_a_second_steward(any_ctx: Context, tmp_path: Path) -> None:
    version_id, sofia = _draft_dataset(any_ctx, tmp_path, "sofia")
    dara = make_actor(any_ctx, "dara", "data_steward")
    request = request_approval(any_ctx, "dataset.release", version_id, actor=sofia, comment="ready")
    assert request.checks[0]["passed"]

    # The requester may not decide, and neither may the version's last editor.
    with pytest.raises(Forbidden, match="requester cannot approve") as info:
        decide(any_ctx, request.id, actor=sofia, approve=True, comment="lgtm")
    assert "Who may approve: dara" in str(info.value)
    assert get_dataset_version(any_ctx.db, version_id).state == "draft"

    decided = decide(any_ctx, request.id, actor=dara, approve=True, comment="labels checked")
    assert decided.state == "executed" and decided.decided_by == "dara"
    released = get_dataset_version(any_ctx.db, version_id)
    assert released.state == "released" and released.released_by == "dara"
    actions = [e.action for e in list_entries(any_ctx.db, limit=1000)]
    assert "approval.request" in actions and "approval.approve" in actions and "dataset.release" in actions
    assert verify_ledger(any_ctx.db).ok


def test_the_last_editor_of_the_rows_cannot_approve_even_when_someone_else_asked(ctx: Context,
                                                                                   tmp_path: Path) -> None:
    version_id, sofia = _draft_dataset(ctx, tmp_path, "sofia")  # sofia froze the rows
    dara = make_actor(ctx, "dara", "data_steward")
    request = request_approval(ctx, "dataset.release", version_id, actor=dara)
    with pytest.raises(Forbidden, match="sofia last edited the rows"):
        decide(ctx, request.id, actor=sofia, approve=True, comment="mine, but fine")


def test_model_promotion_is_never_approved_by_the_runs_author(any_ctx: Context) -> None:
    emil = make_actor(any_ctx, "emil", "ml_engineer", "release_manager")  # even holding both roles
    rhea = make_actor(any_ctx, "rhea", "release_manager")
    model = register_model_version(any_ctx, run_id=insert_run(any_ctx, model_artifact="a" * 64, author="emil"),
                                   name="support", actor=emil)
    request = request_approval(any_ctx, "model.promote", model.id, actor=rhea, comment="beats v0")
    with pytest.raises(Forbidden, match="emil is the author of training run") as info:
        decide(any_ctx, request.id, actor=emil, approve=True, comment="I trust my run")
    assert "Who may approve:" in str(info.value) and "emil" not in str(info.value).split("Who may approve:")[1]
    assert get_model_version(any_ctx.db, model.id).stage == "candidate"

    remy = make_actor(any_ctx, "remy", "release_manager")
    decide(any_ctx, request.id, actor=remy, approve=True, comment="report reviewed")
    assert get_model_version(any_ctx.db, model.id).stage == "production"


def test_an_approver_without_the_role_and_a_missing_comment_are_refused(ctx: Context) -> None:
    emil = make_actor(ctx, "emil", "ml_engineer")
    omar = make_actor(ctx, "omar", "operator")
    model = register_model_version(ctx, run_id=insert_run(ctx, model_artifact="a" * 64, author="emil"),
                                   name="support", actor=emil)
    request = request_approval(ctx, "model.promote", model.id, actor=emil)
    with pytest.raises(Forbidden, match="may not model.promote.approve"):
        decide(ctx, request.id, actor=omar, approve=True, comment="ok")
    with pytest.raises(InvalidInput, match="needs a comment"):
        decide(ctx, request.id, actor=omar, approve=True, comment="  ")
    with pytest.raises(Conflict, match="still pending"):
        request_approval(ctx, "model.promote", model.id, actor=emil)


def test_failed_checks_block_approval_and_rejection_records_why(ctx: Context) -> None:
    emil = make_actor(ctx, "emil", "ml_engineer")
    rhea = make_actor(ctx, "rhea", "release_manager")
    remy = make_actor(ctx, "remy", "release_manager")
    model = register_model_version(ctx, run_id=insert_run(ctx, model_artifact="a" * 64, author="emil"),
                                   name="support", actor=emil)
    # Deploying a candidate: the automated check fails at request time.
    request = request_approval(ctx, "deployment.create", model.id, actor=rhea, payload={"name": "support"})
    assert request.checks == [{"name": "in-production", "passed": False,
                               "detail": f"model version {model.id} is candidate, not production"}]
    with pytest.raises(Conflict, match="check in-production failed"):
        decide(ctx, request.id, actor=remy, approve=True, comment="go")
    rejected = decide(ctx, request.id, actor=remy, approve=False, comment="promote it first")
    assert rejected.state == "rejected" and rejected.decision_comment == "promote it first"


def test_owner_is_the_creator_until_reassigned_and_reassignment_is_audited(ctx: Context) -> None:
    emil = make_actor(ctx, "emil", "ml_engineer")
    make_actor(ctx, "erin", "ml_engineer")
    admin = make_actor(ctx, "root", "admin")
    model = register_model_version(ctx, run_id=insert_run(ctx, model_artifact="a" * 64, author="emil"),
                                   name="support", actor=emil)
    info = owner_of(ctx, "model_version", model.id, actor=emil)
    assert (info.owner, info.responsible_role) == ("emil", "ml_engineer") and set(info.role_holders) == {"emil", "erin"}
    with pytest.raises(Forbidden):
        reassign_owner(ctx, "model_version", model.id, "erin", actor=emil)
    moved = reassign_owner(ctx, "model_version", model.id, "erin", actor=admin)
    assert moved.owner == "erin" and moved.reassigned
    entry = list_entries(ctx.db, object_kind="model_version", object_id=str(model.id))[-1]
    assert entry.action == "owner.assign" and entry.details == {"from": "emil", "to": "erin"}
    with pytest.raises(InvalidInput, match="have no owner"):
        owner_of(ctx, "planet", 1, actor=admin)


def test_approvals_are_shown_only_to_who_may_ask_decide_or_audit(ctx: Context, tmp_path: Path) -> None:
    """Finding 15.9: every role with system.read (annotators too) read all approvals and
    their comments. Now an annotator and an operator see none; the stewards, an auditor and
    an admin-less release manager of another action see what their permissions cover."""
    version_id, sofia = _draft_dataset(ctx, tmp_path, "sofia")
    request = request_approval(ctx, "dataset.release", version_id, actor=sofia, comment="vendor X labels, see memo")
    ana, omar = make_actor(ctx, "ana", "annotator"), make_actor(ctx, "omar", "operator")
    for outsider in (ana, omar):
        assert find_approvals(ctx, actor=outsider) == []
        with pytest.raises(Forbidden, match="ask for, decide or audit") as info:
            show_approval(ctx, request.id, actor=outsider)
        assert "dataset.release.approve" in str(info.value)
    for reader in (sofia, make_actor(ctx, "dara", "data_steward"), make_actor(ctx, "ada", "auditor")):
        assert [a.id for a in find_approvals(ctx, actor=reader)] == [request.id]
        assert show_approval(ctx, request.id, actor=reader).request_comment == "vendor X labels, see memo"
