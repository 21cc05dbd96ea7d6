"""Ownership: every dataset, run, model and deployment has an owning user and a
responsible role, and "who is responsible for X?" is one call.

The owner is the object's creator until reassigned; a reassignment is stored here and
audited. The responsible role follows the chain's stage (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize
from chainkeeper.governance.roles import BuiltinRole
from chainkeeper.governance.tables import SqlOwnership, SqlUser, SqlUserRole

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

RESPONSIBLE_ROLE: dict[str, str] = {
    "dataset_version": BuiltinRole.DATA_STEWARD,
    "run": BuiltinRole.ML_ENGINEER,
    "model_version": BuiltinRole.ML_ENGINEER,
    "deployment": BuiltinRole.RELEASE_MANAGER,
}


@dataclass(frozen=True)
class Ownership:
    object_kind: str
    object_id: str
    owner: str
    responsible_role: str
    role_holders: tuple[str, ...]
    reassigned: bool


def _creator(ctx: Context, kind: str, object_id: str) -> str:
    if kind == "dataset_version":
        from chainkeeper.data.versions import get_dataset_version

        return get_dataset_version(ctx.db, int(object_id)).owner
    if kind == "run":
        from chainkeeper.training.runs import get_run

        return get_run(ctx.db, int(object_id)).created_by
    if kind == "model_version":
        from chainkeeper.registry.versions import get_model_version

        return get_model_version(ctx.db, int(object_id)).owner
    from chainkeeper.serving.deployments import get_deployment

    return get_deployment(ctx.db, int(object_id)).owner


def _check_kind(kind: str) -> None:
    if kind not in RESPONSIBLE_ROLE:
        raise InvalidInput(f"Objects of kind {kind!r} have no owner.", hint=f"Kinds: {', '.join(RESPONSIBLE_ROLE)}.")


def owner_of(ctx: Context, kind: str, object_id: int | str) -> Ownership:
    """Who owns the object, which role is responsible, and who holds that role.

    Raises:
        InvalidInput: an unknown kind. NotFound: no such object.
    """
    _check_kind(kind)
    object_id = str(object_id)
    creator = _creator(ctx, kind, object_id)  # also proves the object exists
    with ctx.db.session() as s:
        row = s.get(SqlOwnership, (kind, object_id))
        role = row.responsible_role if row else RESPONSIBLE_ROLE[kind]
        holders = tuple(sorted(set(s.scalars(
            sa.select(SqlUser.name).join(SqlUserRole, SqlUserRole.user_id == SqlUser.id).where(SqlUserRole.role == role)
        ))))
        return Ownership(kind, object_id, row.owner if row else creator, role, holders, row is not None)


def reassign_owner(ctx: Context, kind: str, object_id: int | str, new_owner: str, *, actor: Actor) -> Ownership:
    """Give an object a new owner (audited).

    Raises:
        Forbidden: the actor may not reassign. NotFound: no such object or user.
    """
    from chainkeeper.governance.users import get_user

    authorize(ctx.db, actor, "owner.assign")
    current = owner_of(ctx, kind, object_id)
    get_user(ctx.db, new_owner)
    with ctx.db.session() as s:
        s.merge(SqlOwnership(object_kind=kind, object_id=str(object_id), owner=new_owner,
                             responsible_role=current.responsible_role, updated_at=utcnow()))
        append_entry(s, actor, "owner.assign", kind, object_id, before={"owner": current.owner},
                     after={"owner": new_owner}, details={"from": current.owner, "to": new_owner})
    return owner_of(ctx, kind, object_id)
