"""Who may touch a deployment: its project, and the decision in that project.

A deployment belongs to the project of the model version it serves (that version's
run's dataset's name), so a role bound to project "news" acts on every deployment of
a "news" model and on nothing else. The serving service functions decide here; the
shells only say who the actor is.
"""

from __future__ import annotations

import sqlalchemy as sa

from chainkeeper.core.db import Database
from chainkeeper.core.errors import NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize_object
from chainkeeper.registry import project_of_model_version
from chainkeeper.serving.tables import SqlDeployment

__all__ = ["authorize_deployment", "project_of_deployment"]


def project_of_deployment(db: Database, deployment: int | str) -> str:
    """The project of a deployment (by id or name): its model version's.

    Raises:
        NotFound: no such deployment.
    """
    with db.session() as s:
        if isinstance(deployment, int):
            version_id = s.scalar(sa.select(SqlDeployment.model_version_id).where(SqlDeployment.id == deployment))
        else:
            version_id = s.scalar(sa.select(SqlDeployment.model_version_id).where(SqlDeployment.name == deployment))
    if version_id is None:
        what = f"deployment {deployment}" if isinstance(deployment, int) else f"deployment named {deployment!r}"
        raise NotFound(f"There is no {what}.", hint="List them with GET /api/deployments.")
    return project_of_model_version(db, version_id)


def authorize_deployment(db: Database, actor: Actor, action: str, deployment: int | str) -> str:
    """Authorise ``action`` on one deployment, in its project; returns the project.

    A caller who holds ``action`` nowhere is refused before the deployment is looked
    up, so a made-up name tells them nothing.

    Raises:
        Forbidden: not allowed there. NotFound: no such deployment.
    """
    project = authorize_object(db, actor, action, lambda: project_of_deployment(db, deployment))
    assert project is not None  # project_of_deployment always names one
    return project
