"""Approval gates: hand-offs that need a second, entitled person.

A gated action (releasing a dataset version, promoting a model version to production,
deploying) starts as a *request*. Automated checks run first and are stored with it; a
request whose checks fail cannot be approved. The approver must hold the action's
``.approve`` permission, must not be the requester, and must pass the action's
separation-of-duties rule (not the dataset's last editor; never the training run's
author). Approving executes the action as the approver, with the request in the ledger.

Each gated action is one ``Gate``: its checks, its executor and its separation rule,
as functions. Governance sits below the stages it gates, so it holds only the mechanism:
the chain layer builds the table (``chainkeeper.chain.gates``) and the context carries it
(``ctx.wiring.gates``). The project an action is authorised in is the gated object's own
(``Gate.project_of``), never a caller's word.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import (
    authorize,
    authorize_object,
    is_allowed,
    projects_allowed,
    roles_allowed,
)
from chainkeeper.governance.tables import SqlApproval, SqlUser, SqlUserRole

if TYPE_CHECKING:
    from chainkeeper.core.context import Context


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    EXECUTED = "executed"
    REJECTED = "rejected"
    FAILED = "failed"  # approved, but a check no longer passed or the action failed (the reason is kept)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


# check(ctx, object_id, payload) -> CheckResult, run at request time.
Check = Callable[["Context", str, dict[str, Any]], CheckResult]


@dataclass(frozen=True)
class Gate:
    """How one gated action is requested, checked, separated and executed."""

    action: str
    object_kind: str
    # executor(ctx, object_id, *, actor, **payload) -> the changed object, run as the approver.
    executor: Callable[..., Any]
    # project_of(ctx, object_id) -> the project the object belongs to (authorisation scope).
    project_of: Callable[[Context, str], str | None]
    # excluded(ctx, object_id) -> (names that may not approve, why).
    excluded: Callable[[Context, str], tuple[list[str], str]] | None = None
    checks: tuple[Check, ...] = field(default_factory=tuple)


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


def gated_actions(ctx: Context) -> list[str]:
    """The actions that go through an approval, as wired."""
    return sorted(ctx.wiring.gates)


def _gate(ctx: Context, action: str) -> Gate:
    try:
        gate: Gate = ctx.wiring.gates[action]
    except KeyError:
        raise InvalidInput(f"{action!r} is not a gated action.",
                           hint=f"Gated actions: {', '.join(gated_actions(ctx)) or 'none wired'}.") from None
    return gate


def request_approval(ctx: Context, action: str, object_id: int | str, *, actor: Actor, comment: str = "",
                     payload: dict[str, Any] | None = None) -> Approval:
    """Ask for a gated action; run its automated checks and store their results.

    Raises:
        NotFound: no such object. Forbidden: the actor may not request this action in
            the object's project. Conflict: an open request for the same action and object exists.
    """
    gate = _gate(ctx, action)
    authorize_object(ctx.db, actor, action, lambda: gate.project_of(ctx, str(object_id)))
    payload = payload or {}
    results = [check(ctx, str(object_id), payload) for check in gate.checks]
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
    gate = _gate(ctx, approval.action)
    roles = roles_allowed(ctx.db, f"{approval.action}.approve")
    excluded, why = {approval.requested_by}, "the requester cannot approve their own request"
    if gate.excluded:
        names, reason = gate.excluded(ctx, approval.object_id)
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
        Conflict: the request is no longer pending; its checks did not pass when it was made;
            or, on approval, a check no longer passes (a gate set or the object changed
            since: the checks run again at decision time) or the action failed — the request
            is then ``failed`` and the action not done.
    """
    if not comment.strip():
        raise InvalidInput("An approval decision needs a comment.", hint="Say why, e.g. --comment 'metrics reviewed'.")
    projects_allowed(ctx.db, actor, "system.read")  # who may see nothing of the chain is refused first
    approval = get_approval(ctx, approval_id)
    gate = _gate(ctx, approval.action)
    # Deciding needs the approve permission in the object's project (which also lets one see it).
    authorize(ctx.db, actor, f"{approval.action}.approve", project=gate.project_of(ctx, approval.object_id))
    if approval.state != ApprovalState.PENDING:
        raise Conflict(f"Approval request {approval_id} is already {approval.state}.")
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

    state, error, checks = ApprovalState.REJECTED, None, approval.checks
    if approve:
        # The checks run again now: a gate set, or an object changed, since the request must
        # not ride on the request's stale "ok". A check that no longer passes ends the request.
        checks = [asdict(check(ctx, approval.object_id, approval.payload)) for check in gate.checks]
        now_failed = [c for c in checks if not c["passed"]]
        if now_failed:
            state, error = ApprovalState.FAILED, (
                f"check {now_failed[0]['name']} no longer passes ({now_failed[0]['detail']}); it passed when "
                "the request was made")
        else:
            try:
                gate.executor(ctx, int(approval.object_id), actor=actor, **approval.payload)
                state = ApprovalState.EXECUTED
            except (Conflict, InvalidInput, NotFound) as exc:
                state, error = ApprovalState.FAILED, str(exc)
    with ctx.db.session() as s:
        row = s.get(SqlApproval, approval_id)
        assert row is not None
        row.state, row.decided_by, row.decided_at = state, actor.name, utcnow()
        row.checks = checks  # as they stood when the decision was made
        row.decision_comment = comment if error is None else f"{comment} [not executed: {error}]"
        append_entry(s, actor, "approval.approve" if approve else "approval.reject", "approval", approval_id,
                     before={"state": "pending"}, after={"state": state},
                     details={"action": approval.action, "object_kind": approval.object_kind,
                              "object_id": approval.object_id, "comment": comment,
                              **({"checks_at_decision": checks} if approve else {})})
        decided = _to_approval(row)
    if error is not None:
        raise Conflict(f"Request {approval_id} was approved but not executed: {error}.",
                       hint="Fix the cause and request again.")
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


def approval_project(ctx: Context, approval: Approval) -> str | None:
    """The project of the object an approval is about."""
    return _gate(ctx, approval.action).project_of(ctx, approval.object_id)


def readers_of(action: str) -> tuple[str, ...]:
    """Who may see a request for ``action`` (its payload and comments): those who may ask for
    it, decide it, or audit it. Seeing the chain (``system.read``) is not enough: an
    annotator has no business reading a release manager's reasons."""
    return (action, f"{action}.approve", "audit.read")


def _may_read(ctx: Context, actor: Actor, approval: Approval, project: str | None) -> bool:
    return any(is_allowed(ctx.db, actor, action, project=project) for action in readers_of(approval.action))


def show_approval(ctx: Context, approval_id: int, *, actor: Actor) -> Approval:
    """One approval request, for someone who may ask for, decide or audit it in its project.

    Raises:
        Forbidden: not allowed. NotFound: no such request.
    """
    projects_allowed(ctx.db, actor, "system.read")  # who may see nothing of the chain is refused first
    approval = get_approval(ctx, approval_id)
    project = approval_project(ctx, approval)
    if not _may_read(ctx, actor, approval, project):
        readers = ", ".join(readers_of(approval.action))
        where = f" in project {project!r}" if project else ""
        raise Forbidden(f"{actor.name} may not see approval request {approval_id}: requests are shown to those who "
                        f"may ask for, decide or audit them ({readers}){where}.",
                        hint="Ask an admin for a role with one of these permissions, or ask the requester.")
    return approval


def find_approvals(ctx: Context, *, actor: Actor, state: str | None = None, limit: int = 100) -> list[Approval]:
    """Approval requests the actor may ask for, decide or audit (``readers_of``), newest first.

    Raises:
        Forbidden: the actor may see the chain nowhere.
    """
    projects_allowed(ctx.db, actor, "system.read")
    return [a for a in list_approvals(ctx, state=state, limit=limit)
            if _may_read(ctx, actor, a, approval_project(ctx, a))]
