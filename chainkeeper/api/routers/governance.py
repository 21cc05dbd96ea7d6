"""Governance routes: sign-in, users and tokens, roles and RACI, approvals, the audit
ledger, lineage and ownership. Thin: parse, call the governance service, answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chainkeeper.api.auth import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    clear_session_cookie,
    public,
    require,
    set_session_cookie,
)
from chainkeeper.api.deps import MAX_INT64, Id
from chainkeeper.chain import lineage_of, owner_of, reassign_owner
from chainkeeper.core.context import Context
from chainkeeper.governance import approvals, audit, passwords, permissions, users
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.anchors import parse_anchor_lines

router = APIRouter(tags=["governance"])


def _ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    user: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class UserBody(_Body):
    name: str
    roles: list[str] = []
    display_name: str = ""


class TokenBody(_Body):
    name: str = Field(min_length=1, max_length=128)
    expires_in_days: float | None = Field(None, gt=0, le=3650)


class RoleGrantBody(_Body):
    role: str
    project: str | None = None


class RoleBody(_Body):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    description: str = ""
    actions: list[str] = []


class RequestBody(_Body):
    comment: str = ""


class DeploymentRequestBody(_Body):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    comment: str = ""


class DecisionBody(_Body):
    approve: bool
    comment: str = Field(min_length=1, max_length=4000)


class OwnerBody(_Body):
    owner: str


# --- identity -------------------------------------------------------------------------


@router.post("/api/login", dependencies=[public()])
def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
    """Sign in with a password; starts a 12-hour server-side session in an HttpOnly cookie
    (accepted only as that cookie: programs use an API token)."""
    ctx = _ctx(request)
    address = request.client.host if request.client else "unknown"
    actor = passwords.login(ctx.db, body.user, body.password, address=address)
    issued = users.start_session(ctx.db, actor=actor, address=address, expires_in=SESSION_LIFETIME)
    set_session_cookie(response, request, issued.secret)
    return {"user": actor.name, "roles": sorted(actor.roles)}


@router.post("/api/logout", dependencies=[public()])
def logout(request: Request, response: Response) -> dict[str, str]:
    """End the session of the cookie in the store and drop the cookie."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        users.end_session(_ctx(request).db, secret)
    clear_session_cookie(response, request)
    return {"status": "signed out"}


@router.get("/api/me")
def me(request: Request, actor: Actor = require("owner.read")) -> dict[str, Any]:
    return users.describe_actor(_ctx(request).db, actor=actor)


# --- users, tokens, roles (admin) ------------------------------------------------------


@router.get("/api/users")
def list_users(request: Request, actor: Actor = require("user.manage")) -> list[dict[str, Any]]:
    """Every user with roles and state (active, disabled, deleted)."""
    return [u.__dict__ for u in users.list_users(_ctx(request).db, actor=actor)]


@router.post("/api/users", status_code=201)
def create_user(body: UserBody, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
    return users.create_user(_ctx(request).db, body.name, roles=body.roles, display_name=body.display_name,
                             actor=actor).__dict__


@router.post("/api/users/{name}/disable")
def disable_user(name: str, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
    """Disable a user: their tokens and sessions are refused at once, their sessions end."""
    return users.disable_user(_ctx(request).db, name, actor=actor).__dict__


@router.post("/api/users/{name}/enable")
def enable_user(name: str, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
    """Enable a disabled user (their API tokens work again; sessions stay ended)."""
    return users.enable_user(_ctx(request).db, name, actor=actor).__dict__


@router.delete("/api/users/{name}")
def delete_user(name: str, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
    """Delete a user (kept as a deleted record for the ledger's sake; never the last administrator)."""
    return users.delete_user(_ctx(request).db, name, actor=actor).__dict__


@router.get("/api/users/{name}/sessions")
def list_sessions(name: str, request: Request, actor: Actor = require("user.manage")) -> list[dict[str, Any]]:
    """A user's open web sessions: id, when and where they started, last seen, expiry."""
    return users.list_sessions(_ctx(request).db, name, actor=actor)


@router.delete("/api/users/{name}/sessions")
def end_sessions(name: str, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
    """End every open web session of a user at once."""
    return {"user": name, "sessions_ended": users.end_sessions(_ctx(request).db, name, actor=actor)}


@router.post("/api/users/{name}/tokens", status_code=201)
def issue_token(name: str, body: TokenBody, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
    """Issue a token; the secret is in this answer and nowhere else, ever."""
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    issued = users.issue_token(_ctx(request).db, name, name=body.name, expires_in=expires, actor=actor)
    return issued.__dict__


@router.get("/api/users/{name}/tokens")
def list_tokens(name: str, request: Request, actor: Actor = require("user.manage")) -> list[dict[str, Any]]:
    """A user's tokens: id, label, dates and state, never the secrets."""
    return users.list_tokens(_ctx(request).db, name, actor=actor)


@router.delete("/api/tokens/{token_id}")
def revoke_token(token_id: Id, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
    users.revoke_token(_ctx(request).db, token_id, actor=actor)
    return {"id": token_id, "revoked": True}


@router.post("/api/users/{name}/roles")
def grant_role(
    name: str, body: RoleGrantBody, request: Request, actor: Actor = require("user.manage")
) -> dict[str, Any]:
    return users.grant_role(_ctx(request).db, name, body.role, project=body.project, actor=actor).__dict__


@router.get("/api/roles")
def list_roles(request: Request, actor: Actor = require("owner.read")) -> dict[str, list[str]]:
    return {role: sorted(a for a in actions if ":" not in a)
            for role, actions in sorted(permissions.read_matrix(_ctx(request).db, actor=actor).items())}


@router.get("/api/roles/raci")
def raci(request: Request, format: Literal["md", "csv", "json"] = "json", actor: Actor = require("owner.read")) -> Any:
    rows = permissions.raci_rows(permissions.read_matrix(_ctx(request).db, actor=actor))
    if format == "json":
        return [r.__dict__ for r in rows]
    media = "text/markdown" if format == "md" else "text/csv"
    return PlainTextResponse(permissions.render_raci(rows, format), media_type=media)


@router.post("/api/roles", status_code=201)
def create_role(body: RoleBody, request: Request, actor: Actor = require("role.manage")) -> dict[str, Any]:
    permissions.create_role(_ctx(request).db, body.name, description=body.description, actions=body.actions,
                            actor=actor)
    return {"name": body.name, "actions": sorted(body.actions)}


@router.put("/api/roles/{role}/permissions/{action}")
def grant_permission(role: str, action: str, request: Request, actor: Actor = require("role.manage")) -> dict[str, Any]:
    permissions.set_permission(_ctx(request).db, role, action, granted=True, actor=actor)
    return {"role": role, "action": action, "granted": True}


@router.delete("/api/roles/{role}/permissions/{action}")
def revoke_permission(
    role: str, action: str, request: Request, actor: Actor = require("role.manage")
) -> dict[str, Any]:
    permissions.set_permission(_ctx(request).db, role, action, granted=False, actor=actor)
    return {"role": role, "action": action, "granted": False}


# --- approvals -------------------------------------------------------------------------


@router.post("/api/datasets/{version_id}/release-requests", status_code=201)
def request_dataset_release(version_id: Id, body: RequestBody, request: Request,
                            actor: Actor = require("dataset.release")) -> dict[str, Any]:
    return approvals.request_approval(_ctx(request), "dataset.release", version_id, actor=actor,
                                      comment=body.comment).__dict__


@router.post("/api/models/{model_version_id}/promotion-requests", status_code=201)
def request_promotion(model_version_id: Id, body: RequestBody, request: Request,
                      actor: Actor = require("model.promote")) -> dict[str, Any]:
    return approvals.request_approval(_ctx(request), "model.promote", model_version_id, actor=actor,
                                      comment=body.comment).__dict__


@router.post("/api/models/{model_version_id}/deployment-requests", status_code=201)
def request_deployment(model_version_id: Id, body: DeploymentRequestBody, request: Request,
                       actor: Actor = require("deployment.create")) -> dict[str, Any]:
    return approvals.request_approval(_ctx(request), "deployment.create", model_version_id, actor=actor,
                                      comment=body.comment, payload={"name": body.name}).__dict__


@router.get("/api/approvals")
def list_approvals(request: Request, state: str | None = None,
                   actor: Actor = require("system.read")) -> list[dict[str, Any]]:
    return [a.__dict__ for a in approvals.find_approvals(_ctx(request), actor=actor, state=state)]


@router.get("/api/approvals/{approval_id}")
def show_approval(approval_id: Id, request: Request, actor: Actor = require("system.read")) -> dict[str, Any]:
    ctx = _ctx(request)
    approval = approvals.show_approval(ctx, approval_id, actor=actor)
    candidates, excluded, why = approvals.who_may_approve(ctx, approval)
    return {**approval.__dict__, "may_approve": candidates, "excluded": excluded, "excluded_because": why}


@router.post("/api/approvals/{approval_id}/decision")
def decide(approval_id: Id, body: DecisionBody, request: Request,
           actor: Actor = require("system.read")) -> dict[str, Any]:
    """Approve or reject. The approve permission of the request's action and separation
    of duties are checked by the approvals service, which knows the action."""
    return approvals.decide(_ctx(request), approval_id, actor=actor, approve=body.approve,
                            comment=body.comment).__dict__


# --- audit, lineage, ownership ----------------------------------------------------------


@router.get("/api/audit")
def audit_entries(request: Request, after_seq: int = Query(0, ge=0, le=MAX_INT64),
                  limit: int = Query(100, ge=1, le=1000),
                  object_kind: str | None = None, object_id: str | None = None,
                  actor: Actor = require("audit.read")) -> list[dict[str, Any]]:
    return [e.__dict__ for e in audit.read_entries(_ctx(request).db, actor=actor, after_seq=after_seq, limit=limit,
                                                    object_kind=object_kind, object_id=object_id)]


@router.get("/api/audit/verify")
def audit_verify(request: Request, actor: Actor = require("audit.verify")) -> dict[str, Any]:
    return audit.verify_ledger_as(_ctx(request).db, actor=actor).__dict__


class AnchorsBody(_Body):
    """The lines of an anchor file ('chainkeeper audit anchor --to FILE'), to verify the ledger against."""

    anchors: list[Annotated[str, Field(max_length=1024)]] = Field(min_length=1, max_length=1_000)
    source: str = Field("the anchor file", max_length=512, description="The file's name, for messages.")
    first_line: int = Field(1, ge=1, le=2**62, description="The number of the first line sent.")


@router.post("/api/audit/verify")
def audit_verify_anchored(body: AnchorsBody, request: Request,
                          actor: Actor = require("audit.verify")) -> dict[str, Any]:
    """Verify the chain and that each anchored entry is still there with the same hash."""
    found = parse_anchor_lines(body.anchors, body.source, first_line=body.first_line)
    return audit.verify_ledger_as(_ctx(request).db, actor=actor, anchors=found).__dict__


@router.get("/api/audit/anchor")
def audit_anchor(request: Request, actor: Actor = require("audit.verify")) -> dict[str, Any]:
    """An anchor of the ledger's head now (with its HMAC), for the caller to keep."""
    return audit.anchor_ledger_as(_ctx(request).db, actor=actor).to_dict()


@router.get("/api/audit/export")
def audit_export(request: Request, actor: Actor = require("audit.read")) -> StreamingResponse:
    lines = (line + "\n" for line in audit.export_ledger(_ctx(request).db, actor=actor))
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.get("/api/lineage/{kind}/{object_id}")
def get_lineage(kind: str, object_id: str, request: Request, actor: Actor = require("lineage.read")) -> dict[str, Any]:
    return lineage_of(_ctx(request), kind, object_id, actor=actor).to_dict()


@router.get("/api/owners/{kind}/{object_id}")
def get_owner(kind: str, object_id: str, request: Request, actor: Actor = require("owner.read")) -> dict[str, Any]:
    return owner_of(_ctx(request), kind, object_id, actor=actor).__dict__


@router.put("/api/owners/{kind}/{object_id}")
def set_owner(kind: str, object_id: str, body: OwnerBody, request: Request,
              actor: Actor = require("owner.assign")) -> dict[str, Any]:
    return reassign_owner(_ctx(request), kind, object_id, body.owner, actor=actor).__dict__
