"""Approval gates: hand-offs that need a second, entitled person.

A gated action (releasing a dataset version, promoting a model version to production,
deploying) starts as a *request*. Automated checks run first and are stored with it; a
request whose checks fail cannot be approved. The approver must hold the action's
``.approve`` permission, must not be the requester, and must pass the action's
separation-of-duties rule (not the dataset's last editor; never the training run's
author). Approving executes the action as the approver, with the request in the ledger.

Each gated action is one ``Gate``: its permission, its checks, its executor and its
separation rule, named by dotted path so governance imports no stage at import time.
Later stages plug their checks in by adding to ``Gate.checks``.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize, roles_allowed
from chainkeeper.governance.tables import SqlApproval, SqlUser, SqlUserRole

if TYPE_CHECKING:
    from chainkeeper.core.context import Context


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    EXECUTED = "executed"
    REJECTED = "rejected"
    FAILED = "failed"  # approved, but executing the action failed (the error is kept)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Gate:
    """How one gated action is requested, checked, separated and executed."""

    action: str
    object_kind: str
    # "module:function"(ctx, object_id, *, actor, **payload) -> object performing the change.
    executor: str
    # "module:function"(ctx, object_id) -> (names that may not approve, why).
    excluded: str | None = None
    # "module:function"(ctx, object_id, payload) -> CheckResult, run at request time.
    checks: list[str] = field(default_factory=list)


GATES: dict[str, Gate] = {
    "dataset.release": Gate(
        action="dataset.release", object_kind="dataset_version",
        executor="chainkeeper.data.versions:release_dataset_version",
        excluded="chainkeeper.governance.separation:dataset_last_editors",
        checks=["chainkeeper.governance.separation:check_dataset_is_draft",
                "chainkeeper.governance.separation:check_dataset_quality_report"],
    ),
    "model.promote": Gate(
        action="model.promote", object_kind="model_version",
        executor="chainkeeper.governance.separation:promote_to_production",
        excluded="chainkeeper.governance.separation:model_run_authors",
        checks=["chainkeeper.governance.separation:check_model_has_evaluation",
                "chainkeeper.registry.gates:check_release_gates"],
    ),
    "deployment.create": Gate(
        action="deployment.create", object_kind="model_version",
        executor="chainkeeper.governance.separation:deploy",
        checks=["chainkeeper.governance.separation:check_model_in_production"],
    ),
}


@dataclass(frozen=True)
class Approval:
    id: int
    action: str
    object_kind: str
    object_id: str
    payload: dict[str, Any]
    state: ApprovalState
    checks: list[dict[str, Any]]
    requested_by: str
    request_comment: str
    decided_by: str | None
    decision_comment: str | None
    created_at: datetime
    decided_at: datetime | None


def _to_approval(row: SqlApproval) -> Approval:
    return Approval(id=row.id, action=row.action, object_kind=row.object_kind, object_id=row.object_id,
                    payload=dict(row.payload or {}), state=ApprovalState(row.state), checks=list(row.checks or []),
                    requested_by=row.requested_by, request_comment=row.request_comment, decided_by=row.decided_by,
                    decision_comment=row.decision_comment, created_at=row.created_at, decided_at=row.decided_at)


def _resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _gate(action: str) -> Gate:
    try:
        return GATES[action]
    except KeyError:
        raise InvalidInput(f"{action!r} is not a gated action.", hint=f"Gated actions: {', '.join(GATES)}.") from None


def request_approval(ctx: Context, action: str, object_id: int | str, *, actor: Actor, comment: str = "",
                     payload: dict[str, Any] | None = None, project: str | None = None) -> Approval:
    """Ask for a gated action; run its automated checks and store their results.

    Raises:
        Forbidden: the actor may not request this action.
        Conflict: an open request for the same action and object exists.
    """
    gate = _gate(action)
    authorize(ctx.db, actor, action, project=project)
    payload = payload or {}
    results = [_resolve(path)(ctx, object_id, payload) for path in gate.checks]
    with ctx.db.session() as s:
        open_request = s.scalar(sa.select(SqlApproval.id).where(
            SqlApproval.action == action, SqlApproval.object_id == str(object_id),
            SqlApproval.state == ApprovalState.PENDING))
        if open_request is not None:
            raise Conflict(f"Approval request {open_request} for {action} of {gate.object_kind} {object_id} is "
                           "still pending.", hint=f"Approve or reject it: 'chainkeeper approvals show {open_request}'.")
        row = SqlApproval(action=action, object_kind=gate.object_kind, object_id=str(object_id), payload=payload,
                          checks=[asdict(r) for r in results], requested_by=actor.name, request_comment=comment)
        s.add(row)
        s.flush()
        append_entry(s, actor, "approval.request", "approval", row.id,
                     after={"action": action, "object": f"{gate.object_kind}:{object_id}", "checks": row.checks},
                     details={"action": action, "object_kind": gate.object_kind, "object_id": str(object_id)})
        return _to_approval(row)


def who_may_approve(ctx: Context, approval: Approval) -> tuple[list[str], list[str], str]:
    """(users who may approve, users excluded, why they are excluded)."""
    gate = _gate(approval.action)
    roles = roles_allowed(ctx.db, f"{approval.action}.approve")
    excluded, why = {approval.requested_by}, "the requester cannot approve their own request"
    if gate.excluded:
        names, reason = _resolve(gate.excluded)(ctx, approval.object_id)
        excluded |= set(names)
        why = f"{why}; {reason}"
    with ctx.db.session() as s:
        holders = s.scalars(sa.select(SqlUser.name).join(SqlUserRole, SqlUserRole.user_id == SqlUser.id)
                            .where(SqlUserRole.role.in_(roles), SqlUser.disabled.is_(False)).distinct())
        candidates = sorted(set(holders) - excluded)
    return candidates, sorted(excluded), why


def decide(ctx: Context, approval_id: int, *, actor: Actor, approve: bool, comment: str) -> Approval:
    """Approve (and so execute) or reject a pending request.

    Raises:
        InvalidInput: no comment.
        Forbidden: the actor lacks the approve permission or is excluded by separation of
            duties; the message names who may approve instead.
        Conflict: the request is no longer pending, or its checks did not pass.
    """
    if not comment.strip():
        raise InvalidInput("An approval decision needs a comment.", hint="Say why, e.g. --comment 'metrics reviewed'.")
    approval = get_approval(ctx, approval_id)
    if approval.state != ApprovalState.PENDING:
        raise Conflict(f"Approval request {approval_id} is already {approval.state}.")
    authorize(ctx.db, actor, f"{approval.action}.approve")
    candidates, excluded, why = who_may_approve(ctx, approval)
    if actor.name in excluded:
        raise Forbidden(
            f"{actor.name} may not decide request {approval_id} ({approval.action} of {approval.object_kind} "
            f"{approval.object_id}): {why}.",
            hint=f"Who may approve: {', '.join(candidates) or 'nobody yet — an admin must grant the role'}.",
        )
    failed = [c for c in approval.checks if not c["passed"]]
    if approve and failed:
        raise Conflict(f"Request {approval_id} cannot be approved: check {failed[0]['name']} failed "
                       f"({failed[0]['detail']}).", hint="Fix the cause and request again.")

    state, error = ApprovalState.REJECTED, None
    if approve:
        gate = _gate(approval.action)
        try:
            _resolve(gate.executor)(ctx, int(approval.object_id), actor=actor, **approval.payload)
            state = ApprovalState.EXECUTED
        except (Conflict, InvalidInput, NotFound) as exc:
            state, error = ApprovalState.FAILED, str(exc)
    with ctx.db.session() as s:
        row = s.get(SqlApproval, approval_id)
        assert row is not None
        row.state, row.decided_by, row.decided_at = state, actor.name, utcnow()
        row.decision_comment = comment if error is None else f"{comment} [execution failed: {error}]"
        append_entry(s, actor, "approval.approve" if approve else "approval.reject", "approval", approval_id,
                     before={"state": "pending"}, after={"state": state},
                     details={"action": approval.action, "object_kind": approval.object_kind,
                              "object_id": approval.object_id, "comment": comment})
        decided = _to_approval(row)
    if error is not None:
        raise Conflict(f"Request {approval_id} was approved but the action failed: {error}")
    return decided


def get_approval(ctx: Context, approval_id: int) -> Approval:
    with ctx.db.session() as s:
        row = s.get(SqlApproval, approval_id)
        if row is None:
            raise NotFound(f"There is no approval request {approval_id}.",
                           hint="List them with 'chainkeeper approvals list'.")
        return _to_approval(row)


def list_approvals(ctx: Context, *, state: str | None = None, object_kind: str | None = None,
                   object_id: str | None = None, limit: int = 100) -> list[Approval]:
    with ctx.db.session() as s:
        query = sa.select(SqlApproval).order_by(SqlApproval.id.desc()).limit(limit)
        if state:
            query = query.where(SqlApproval.state == state)
        if object_kind:
            query = query.where(SqlApproval.object_kind == object_kind)
        if object_id is not None:
            query = query.where(SqlApproval.object_id == str(object_id))
        return [_to_approval(r) for r in s.scalars(query)]
