"""Governance routes: sign-in, users and tokens, roles and RACI, approvals, the audit
ledger, lineage and ownership. Thin: parse, call the governance service, answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chainkeeper.api.auth import SESSION_COOKIE, public, require
from chainkeeper.chain import lineage_of, owner_of, reassign_owner
from chainkeeper.core.context import Context
from chainkeeper.governance import approvals, audit, passwords, permissions, users
from chainkeeper.governance.actors import Actor

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
    """Sign in with a password; sets an HttpOnly session cookie (a 12-hour token)."""
    ctx = _ctx(request)
    address = request.client.host if request.client else "unknown"
    actor = passwords.login(ctx.db, body.user, body.password, address=address)
    issued = users.issue_session_token(ctx.db, actor=actor, expires_in=timedelta(hours=12))
    response.set_cookie(SESSION_COOKIE, issued.secret, httponly=True, samesite="strict", max_age=12 * 3600)
    return {"user": actor.name, "roles": sorted(actor.roles)}


@router.post("/api/logout", dependencies=[public()])
def logout(response: Response) -> dict[str, str]:
    response.delete_cookie(SESSION_COOKIE)
    return {"status": "signed out"}


@router.get("/api/me")
def me(request: Request, actor: Actor = require("owner.read")) -> dict[str, Any]:
    return users.describe_actor(_ctx(request).db, actor=actor)


# --- users, tokens, roles (admin) ------------------------------------------------------


@router.get("/api/users")
def list_users(request: Request, actor: Actor = require("user.manage")) -> list[dict[str, Any]]:
    return [u.__dict__ for u in users.list_users(_ctx(request).db, actor=actor)]


@router.post("/api/users", status_code=201)
def create_user(body: UserBody, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
    return users.create_user(_ctx(request).db, body.name, roles=body.roles, display_name=body.display_name,
                             actor=actor).__dict__


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
def revoke_token(token_id: int, request: Request, actor: Actor = require("user.manage")) -> dict[str, Any]:
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
def request_dataset_release(version_id: int, body: RequestBody, request: Request,
                            actor: Actor = require("dataset.release")) -> dict[str, Any]:
    return approvals.request_approval(_ctx(request), "dataset.release", version_id, actor=actor,
                                      comment=body.comment).__dict__


@router.post("/api/models/{model_version_id}/promotion-requests", status_code=201)
def request_promotion(model_version_id: int, body: RequestBody, request: Request,
                      actor: Actor = require("model.promote")) -> dict[str, Any]:
    return approvals.request_approval(_ctx(request), "model.promote", model_version_id, actor=actor,
                                      comment=body.comment).__dict__


@router.post("/api/models/{model_version_id}/deployment-requests", status_code=201)
def request_deployment(model_version_id: int, body: DeploymentRequestBody, request: Request,
                       actor: Actor = require("deployment.create")) -> dict[str, Any]:
    return approvals.request_approval(_ctx(request), "deployment.create", model_version_id, actor=actor,
                                      comment=body.comment, payload={"name": body.name}).__dict__


@router.get("/api/approvals")
def list_approvals(request: Request, state: str | None = None,
                   actor: Actor = require("system.read")) -> list[dict[str, Any]]:
    return [a.__dict__ for a in approvals.find_approvals(_ctx(request), actor=actor, state=state)]


@router.get("/api/approvals/{approval_id}")
def show_approval(approval_id: int, request: Request, actor: Actor = require("system.read")) -> dict[str, Any]:
    ctx = _ctx(request)
    approval = approvals.show_approval(ctx, approval_id, actor=actor)
    candidates, excluded, why = approvals.who_may_approve(ctx, approval)
    return {**approval.__dict__, "may_approve": candidates, "excluded": excluded, "excluded_because": why}


@router.post("/api/approvals/{approval_id}/decision")
def decide(approval_id: int, body: DecisionBody, request: Request,
           actor: Actor = require("system.read")) -> dict[str, Any]:
    """Approve or reject. The approve permission of the request's action and separation
    of duties are checked by the approvals service, which knows the action."""
    return approvals.decide(_ctx(request), approval_id, actor=actor, approve=body.approve,
                            comment=body.comment).__dict__


# --- audit, lineage, ownership ----------------------------------------------------------


@router.get("/api/audit")
def audit_entries(request: Request, after_seq: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
                  object_kind: str | None = None, object_id: str | None = None,
                  actor: Actor = require("audit.read")) -> list[dict[str, Any]]:
    return [e.__dict__ for e in audit.read_entries(_ctx(request).db, actor=actor, after_seq=after_seq, limit=limit,
                                                    object_kind=object_kind, object_id=object_id)]


@router.get("/api/audit/verify")
def audit_verify(request: Request, actor: Actor = require("audit.verify")) -> dict[str, Any]:
    return audit.verify_ledger_as(_ctx(request).db, actor=actor).__dict__


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
