"""Who may touch monitoring's objects: each belongs to its deployment's project.

Rules, alerts, silences, tickets, predictions, feedback and drift results belong to the
project of the deployment they are about (``serving.project_of_deployment``: its model
version's project). One without a deployment (a rule watching every deployment, a silence
of every deployment) belongs to no project: only a role held everywhere acts on it.
"""

from __future__ import annotations

from collections.abc import Callable

from chainkeeper.core.db import Database
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import (
    authorize,
    authorize_object,
    projects_allowed,
)
from chainkeeper.serving import list_deployments, project_of_deployment

__all__ = ["authorize_for_deployment", "authorize_for_object", "readable_deployment_ids"]


def authorize_for_deployment(db: Database, actor: Actor, action: str, deployment: int | str | None) -> str | None:
    """Authorise ``action`` on an object of ``deployment`` (id or name), in its project.

    Returns:
        The project, or None for an object of no deployment (decided at global scope).

    Raises:
        Forbidden: not allowed. NotFound: no such deployment.
    """
    if deployment is None:
        authorize(db, actor, action)
        return None
    return authorize_object(db, actor, action, lambda: project_of_deployment(db, deployment))


def authorize_for_object(db: Database, actor: Actor, action: str,
                         deployment_of: Callable[[], int | str | None]) -> str | None:
    """Authorise ``action`` on one monitoring object, in its deployment's project.

    A caller who holds ``action`` nowhere is refused before ``deployment_of`` looks the
    object up (raising NotFound when there is none).

    Raises:
        Forbidden: not allowed. NotFound: from ``deployment_of``.
    """
    projects_allowed(db, actor, action)
    return authorize_for_deployment(db, actor, action, deployment_of())


def readable_deployment_ids(db: Database, actor: Actor, action: str = "monitoring.read") -> set[int] | None:
    """The deployments whose objects ``actor`` may ``action``: None for all (a global role).

    Objects of no deployment are readable only when this is None.

    Raises:
        Forbidden: the actor may do it nowhere.
    """
    allowed = projects_allowed(db, actor, action)
    if allowed is None:
        return None
    return {d.id for d in list_deployments(db, limit=100_000) if project_of_deployment(db, d.id) in allowed}
