"""Deployments: a name behind an HTTP endpoint, pointing at one production model version.

``deploy_model_version`` creates a deployment or points an existing one at a new
version (the deploy gate in ``governance.approvals`` decides whether it may);
``serve_predictions`` answers texts sent to a deployment and logs each answer with a
request id, so every served prediction can be traced back.

Rollout (canary, shadow) and rollback are later issues; they add columns and moves
here without changing how a deployment is found or served.
"""

from __future__ import annotations

import enum
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.monitoring.predictions import log_predictions, prediction_record
from chainkeeper.registry.versions import ModelVersion, Stage, get_model_version
from chainkeeper.serving.tables import SqlDeployment

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.serving.runtime import Prediction, PredictorCache

__all__ = [
    "Deployment",
    "DeploymentState",
    "ServedPrediction",
    "ServedPredictions",
    "count_deployments",
    "deploy_model_version",
    "get_deployment",
    "get_deployment_by_name",
    "list_deployments",
    "serve_predictions",
    "validate_deployment_name",
]

# The name is a URL path segment: /v1/deployments/<name>/predict.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class DeploymentState(enum.StrEnum):
    # Rollout issues add states (e.g. retired); a deployment serves only while active.
    ACTIVE = "active"


@dataclass(frozen=True)
class Deployment:
    id: int
    name: str
    model_version_id: int
    state: str
    owner: str
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ServedPrediction:
    request_id: str
    label: str
    score: float
    scores: dict[str, float]


@dataclass(frozen=True)
class ServedPredictions:
    """What a predict call answers: who served, and one prediction per text."""

    deployment: Deployment
    model_version: ModelVersion
    predictions: list[ServedPrediction]
    latency_ms: float


def _to_deployment(row: SqlDeployment) -> Deployment:
    return Deployment(id=row.id, name=row.name, model_version_id=row.model_version_id, state=row.state,
                      owner=row.owner, created_by=row.created_by, created_at=row.created_at,
                      updated_at=row.updated_at)


def _snapshot(row: SqlDeployment) -> dict[str, Any]:
    return {"name": row.name, "model_version_id": row.model_version_id, "state": row.state}


def validate_deployment_name(name: str) -> str:
    """Return ``name`` if it can name a deployment.

    Raises:
        InvalidInput: not a lower-case slug of 1-63 letters, digits and '-'.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"Deployment name {name!r} is not valid.",
            hint="Use 1-63 lower-case letters, digits or '-', starting with a letter or digit (e.g. 'support').",
        )
    return name


def deploy_model_version(ctx: Context, *, name: str, model_version_id: int, actor: Actor) -> Deployment:
    """Serve a production model version under ``name`` (create, or re-point an existing one).

    Args:
        name: the deployment's name, a slug used in its URL.
        model_version_id: the version to serve; it must be in production.
        actor: who deploys (the approver of the deploy gate).

    Returns:
        The deployment, active and pointing at the version.

    Raises:
        InvalidInput: a malformed name.
        NotFound: no such model version.
        Conflict: the version is not in production.
    """
    validate_deployment_name(name)
    version = get_model_version(ctx.db, model_version_id)
    if version.stage != Stage.PRODUCTION:
        raise Conflict(
            f"Model version {version.id} ({version.label}) is {version.stage}; only a production version "
            "can be deployed.",
            hint=f"Promote it first: ask for promotion (POST /api/models/{version.id}/promotion-requests) "
            "and have a release manager approve it.",
        )
    with ctx.db.session() as s:
        row = s.scalars(sa.select(SqlDeployment).where(SqlDeployment.name == name)).one_or_none()
        now = utcnow()
        if row is None:
            row = SqlDeployment(name=name, model_version_id=version.id, state=DeploymentState.ACTIVE,
                                owner=actor.name, created_by=actor.name, created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            append_entry(s, actor, "deployment.create", "deployment", row.id, after=_snapshot(row),
                         details={"name": name, "model_version_id": version.id})
        else:
            before = _snapshot(row)
            previous = row.model_version_id
            row.model_version_id, row.state, row.updated_at = version.id, DeploymentState.ACTIVE, now
            s.flush()
            append_entry(s, actor, "deployment.update", "deployment", row.id, before=before, after=_snapshot(row),
                         details={"name": name, "from_model_version_id": previous, "model_version_id": version.id})
        return _to_deployment(row)


# --- reading ---------------------------------------------------------------------------


def get_deployment(db: Database, deployment_id: int) -> Deployment:
    """One deployment by id.

    Raises:
        NotFound: no such deployment.
    """
    with db.session() as s:
        row = s.get(SqlDeployment, deployment_id)
        if row is None:
            raise NotFound(f"There is no deployment {deployment_id}.", hint="List them with GET /api/deployments.")
        return _to_deployment(row)


def get_deployment_by_name(db: Database, name: str) -> Deployment:
    """One deployment by name.

    Raises:
        NotFound: no deployment of that name.
    """
    with db.session() as s:
        row = s.scalars(sa.select(SqlDeployment).where(SqlDeployment.name == name)).one_or_none()
        if row is None:
            raise NotFound(f"There is no deployment named {name!r}.", hint="List them with GET /api/deployments.")
        return _to_deployment(row)


def list_deployments(db: Database, *, limit: int = 100) -> list[Deployment]:
    """Deployments, most recently changed first."""
    with db.session() as s:
        rows = s.scalars(sa.select(SqlDeployment).order_by(SqlDeployment.updated_at.desc(), SqlDeployment.id.desc())
                         .limit(limit))
        return [_to_deployment(r) for r in rows]


def count_deployments(db: Database) -> int:
    """How many deployments exist."""
    with db.session() as s:
        return int(s.execute(sa.select(sa.func.count()).select_from(SqlDeployment)).scalar_one())


# --- serving ---------------------------------------------------------------------------


def serve_predictions(ctx: Context, predictors: PredictorCache, name: str, texts: list[str]) -> ServedPredictions:
    """Answer texts sent to a deployment and log one record per text.

    Blocking (model call and store writes): call it from a worker thread, not the event loop.

    Args:
        predictors: the process's loaded models.
        name: the deployment's name.
        texts: what to label (validated by the runtime).

    Returns:
        The deployment, the version that answered and a prediction (with its request id)
        per text, in order.

    Raises:
        NotFound: no such deployment. Conflict: it is not active. InvalidInput: bad texts.
        ArtifactError, StoreError: the model or the store cannot be reached.
    """
    from chainkeeper.serving.runtime import validate_texts

    validate_texts(texts)  # before any lookup: a bad request costs nothing
    start = time.perf_counter()
    deployment = get_deployment_by_name(ctx.db, name)
    if deployment.state != DeploymentState.ACTIVE:
        raise Conflict(f"Deployment {name!r} is {deployment.state}, not serving.",
                       hint="Deploy a production model version under this name again.")
    version = get_model_version(ctx.db, deployment.model_version_id)
    answers: list[Prediction] = predictors.get(version).predict(texts)
    latency_ms = (time.perf_counter() - start) * 1000
    at = utcnow()
    served = [ServedPrediction(str(uuid.uuid4()), a.label, a.score, a.scores) for a in answers]
    # Every text of a batch waited for the whole batch: each records the batch's latency.
    log_predictions(ctx.db, [
        prediction_record(request_id=p.request_id, deployment_id=deployment.id, model_version_id=version.id, at=at,
                          text=text, label=p.label, score=p.score, latency_ms=latency_ms)
        for p, text in zip(served, texts, strict=True)
    ])
    return ServedPredictions(deployment=deployment, model_version=version, predictions=served, latency_ms=latency_ms)
