"""Ownership: every dataset, run, model and deployment has an owning user and a
responsible role, and "who is responsible for X?" is one call.

The owner is the object's creator until reassigned; a reassignment is stored here and
audited. The responsible role follows the chain's stage (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chainkeeper.chain.projects import project_of_object
from chainkeeper.core.errors import InvalidInput
from chainkeeper.data import get_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.owners import role_holders, store_owner, stored_owner
from chainkeeper.governance.permissions import authorize_object
from chainkeeper.governance.roles import BuiltinRole
from chainkeeper.governance.users import get_user
from chainkeeper.registry import get_model_version
from chainkeeper.serving import get_deployment
from chainkeeper.training import get_run

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
        return get_dataset_version(ctx.db, int(object_id)).owner
    if kind == "run":
        return get_run(ctx.db, int(object_id)).created_by
    if kind == "model_version":
        return get_model_version(ctx.db, int(object_id)).owner
    return get_deployment(ctx.db, int(object_id)).owner


def _check_kind(kind: str) -> None:
    if kind not in RESPONSIBLE_ROLE:
        raise InvalidInput(f"Objects of kind {kind!r} have no owner.", hint=f"Kinds: {', '.join(RESPONSIBLE_ROLE)}.")


def owner_of(ctx: Context, kind: str, object_id: int | str, *, actor: Actor) -> Ownership:
    """Who owns the object, which role is responsible, and who holds that role.

    Raises:
        InvalidInput: an unknown kind. Forbidden: the actor may not ask in the object's
            project. NotFound: no such object.
    """
    _check_kind(kind)
    object_id = str(object_id)
    authorize_object(ctx.db, actor, "owner.read", lambda: project_of_object(ctx, kind, str(object_id)))
    return _ownership(ctx, kind, object_id)


def _ownership(ctx: Context, kind: str, object_id: str) -> Ownership:
    creator = _creator(ctx, kind, object_id)  # also proves the object exists
    stored = stored_owner(ctx.db, kind, object_id)
    role = stored.responsible_role if stored else RESPONSIBLE_ROLE[kind]
    return Ownership(kind, object_id, stored.owner if stored else creator, role, role_holders(ctx.db, role),
                     stored is not None)


def reassign_owner(ctx: Context, kind: str, object_id: int | str, new_owner: str, *, actor: Actor) -> Ownership:
    """Give an object a new owner (audited).

    Raises:
        Forbidden: the actor may not reassign. NotFound: no such object or user.
    """
    _check_kind(kind)
    authorize_object(ctx.db, actor, "owner.assign", lambda: project_of_object(ctx, kind, str(object_id)))
    current = _ownership(ctx, kind, str(object_id))
    get_user(ctx.db, new_owner)
    store_owner(ctx.db, kind, str(object_id), owner=new_owner, responsible_role=current.responsible_role,
                previous=current.owner, actor=actor)
    return _ownership(ctx, kind, str(object_id))
