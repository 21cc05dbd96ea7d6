"""Deployments: a name behind an HTTP endpoint, pointing at one production model version.

``deploy_model_version`` creates a deployment or points an existing one at a new
version (the ``deployment.create`` gate in ``chain.gates`` runs it as the approver);
``serve_predictions`` answers texts sent to a deployment and hands each answer, with a
request id, to the prediction log, so every served prediction can be traced back.

Which version answers a request is decided by the deployment's route
(``serving.rollout``: canary, shadow, promotion, rollback); a deploy writes a plain route.

The hot path reads no table per request: ``resolve_route`` keeps the deployment, its
route, its versions and its project in the context's route cache
(``rollout.route_cache``), which every deploy, rollout and rollback through the context
invalidates after it commits; ``authorize_prediction`` decides a user's ``predict`` in
the deployment's project from that cache. The answers go to a ``PredictionSink`` (the
API's buffered log writer) when one is given, so the log insert is off the request path
too; otherwise to the ``serving.log_predictions`` hook, which the monitoring stage
registers (``chain.wiring``): serving knows nothing of the log's tables.
``aserve_predictions`` is the same for an event loop: it awaits the micro-batcher
instead of blocking a thread.

Every function a shell calls to read or change deployments takes the actor and decides
in the deployment's project (``serving.access``).
"""

from __future__ import annotations

import enum
import logging
import re
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import (
    authorize,
    authorize_object,
    projects_allowed,
)
from chainkeeper.registry import (
    ModelVersion,
    Stage,
    get_model_version,
    project_of_model_version,
    retire_replaced_versions,
)
from chainkeeper.serving.access import authorize_deployment, project_of_deployment
from chainkeeper.serving.hooks import LOG_PREDICTIONS_HOOK
from chainkeeper.serving.rollout import (
    Route,
    choose_versions,
    current_route,
    route_cache,
    routes_changed,
)
from chainkeeper.serving.tables import SqlDeployment, SqlRoute, SqlShadowPrediction

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.serving.runtime import Prediction, PredictorCache

__all__ = [
    "Deployment",
    "DeploymentState",
    "PredictionSink",
    "ResolvedRoute",
    "ServedPrediction",
    "ServedPredictions",
    "ShadowPrediction",
    "aserve_predictions",
    "authorize_prediction",
    "cached_route",
    "count_deployments",
    "deploy_model_version",
    "find_deployments",
    "get_deployment",
    "get_deployment_by_name",
    "list_deployments",
    "list_shadow_predictions",
    "preload_deployments",
    "project_of_deployment",
    "resolve_route",
    "serve_predictions",
    "show_deployment",
    "validate_deployment_name",
    "wait_for_shadows",
]



class PredictionSink(Protocol):
    """Where the predict path hands its answers (the API's buffered log writer)."""

    def submit(self, items: list[dict[str, Any]]) -> object: ...  # what it answers is not used

_log = logging.getLogger(__name__)

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
    entities: list[dict[str, Any]] | None = None  # a tagger's spans (``runtime.Prediction``)
    # A classifier's logsumexp of its logits (``runtime.Prediction``), for out-of-scope
    # scoring in Python; neither the HTTP answer nor the prediction log carries it.
    log_partition: float | None = None


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
        actor: who deploys: the approver of the deploy gate (``deployment.create.approve``
            in the model version's project).

    Returns:
        The deployment, active and pointing at the version.

    Raises:
        InvalidInput: a malformed name. Forbidden: the actor may not deploy it.
        NotFound: no such model version.
        Conflict: the version is not in production.
    """
    validate_deployment_name(name)
    authorize_object(ctx.db, actor, "deployment.create.approve",
                     lambda: project_of_model_version(ctx.db, model_version_id))
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
            s.add(SqlRoute(deployment_id=row.id, primary_version_id=version.id, mode="single", percent=0,
                           reason="deploy", created_by=actor.name, created_at=now))
            append_entry(s, actor, "deployment.create", "deployment", row.id, after=_snapshot(row),
                         details={"name": name, "model_version_id": version.id})
        else:
            before = _snapshot(row)
            previous = row.model_version_id
            row.model_version_id, row.state, row.updated_at = version.id, DeploymentState.ACTIVE, now
            # A re-deploy ends any canary or shadow and remembers what served before, for a rollback.
            s.add(SqlRoute(deployment_id=row.id, primary_version_id=version.id, mode="single", percent=0,
                           previous_version_id=previous if previous != version.id else None, reason="deploy",
                           created_by=actor.name, created_at=now))
            s.flush()
            append_entry(s, actor, "deployment.update", "deployment", row.id, before=before, after=_snapshot(row),
                         details={"name": name, "from_model_version_id": previous, "model_version_id": version.id})
        deployment = _to_deployment(row)
    routes_changed(ctx, name)
    # A re-deploy moves the traffic: the version it replaced is archived once nothing serves it.
    retire_replaced_versions(ctx, version.name, caused_by=actor, reason=f"replaced by v{version.version} in "
                             f"deployment {name}")
    return deployment


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


def find_deployments(ctx: Context, *, actor: Actor, limit: int = 100) -> list[Deployment]:
    """The deployments the actor may read, most recently changed first.

    Args:
        actor: who asks; only deployments of projects where they hold ``deployment.read``.
        limit: at most this many.

    Raises:
        Forbidden: the actor may read deployments nowhere.
    """
    allowed = projects_allowed(ctx.db, actor, "deployment.read")
    found = list_deployments(ctx.db, limit=limit if allowed is None else 1000)
    if allowed is not None:
        found = [d for d in found if project_of_model_version(ctx.db, d.model_version_id) in allowed]
    return found[:limit]


def show_deployment(ctx: Context, name: str, *, actor: Actor) -> Deployment:
    """One deployment by name, for a reader.

    Args:
        actor: who asks (``deployment.read`` in the deployment's project).

    Raises:
        Forbidden: the actor may not read it. NotFound: no such deployment.
    """
    authorize_deployment(ctx.db, actor, "deployment.read", name)
    return get_deployment_by_name(ctx.db, name)


# --- serving ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedRoute:
    """What a request needs to know about a deployment, read together: the deployment,
    its live route, the model versions that route names and the deployment's project."""

    deployment: Deployment
    route: Route
    versions: dict[int, ModelVersion]
    project: str


def _load_route(db: Database, name: str) -> ResolvedRoute:
    deployment = get_deployment_by_name(db, name)
    route = current_route(db, name)
    ids = [i for i in (route.primary_version_id, route.candidate_version_id) if i is not None]
    return ResolvedRoute(deployment, route, {i: get_model_version(db, i) for i in ids},
                         project_of_model_version(db, deployment.model_version_id))


def resolve_route(ctx: Context, name: str) -> ResolvedRoute:
    """Deployment ``name`` with its live route, versions and project, through the context's route cache.

    Raises:
        NotFound: no such deployment (not cached: a name created later is found at once).
    """
    return route_cache(ctx).get_or_load(name, lambda: _load_route(ctx.db, name))  # type: ignore[no-any-return]


def cached_route(ctx: Context, name: str) -> ResolvedRoute | None:
    """The cached ``resolve_route`` answer, or None when it would need the store."""
    return route_cache(ctx).get(name)


def authorize_prediction(ctx: Context, name: str, *, actor: Actor) -> None:
    """Decide whether a user may send texts to deployment ``name`` (``predict`` in its project).

    Reads the project from the route cache, so a warm predict path decides without the
    store (the permission matrix is cached by governance). A caller holding ``predict``
    nowhere is refused before the deployment is looked up. API keys are decided by
    ``keys.authenticate_deployment_key`` instead: a key belongs to one deployment.

    Raises:
        Forbidden: the actor may not predict there. NotFound: no such deployment.
    """
    projects_allowed(ctx.db, actor, "predict")
    authorize(ctx.db, actor, "predict", project=resolve_route(ctx, name).project)


def preload_deployments(ctx: Context, predictors: PredictorCache) -> int:
    """Start loading, in the background, every model version an active deployment's route
    names (a server process warms up before its first request needs them); returns how many."""
    versions = {}
    for deployment in list_deployments(ctx.db, limit=1000):
        if deployment.state == DeploymentState.ACTIVE:
            versions.update(resolve_route(ctx, deployment.name).versions)
    for version in versions.values():
        predictors.preload(version)
    return len(versions)


def _pick(resolved: ResolvedRoute, name: str, caller_key: str | None) -> tuple[ModelVersion, int | None]:
    """The version that answers and the shadow version, if any (raises when not serving)."""
    if resolved.deployment.state != DeploymentState.ACTIVE:
        raise Conflict(f"Deployment {name!r} is {resolved.deployment.state}, not serving.",
                       hint="Deploy a production model version under this name again.")
    version_id, shadow_id = choose_versions(resolved.route, name, caller_key or uuid.uuid4().hex)
    return resolved.versions[version_id], shadow_id


def _finish(ctx: Context, predictors: PredictorCache, resolved: ResolvedRoute, version: ModelVersion,
            shadow_id: int | None, texts: list[str], answers: list[Prediction], latency_ms: float,
            log: PredictionSink | None) -> ServedPredictions:
    """Give each answer a request id, log it, start the shadow; the part after the model call."""
    deployment = resolved.deployment
    at = utcnow()
    served = [ServedPrediction(str(uuid.uuid4()), a.label, a.score, a.scores, a.entities, a.log_partition)
              for a in answers]
    # Every text of a batch waited for the whole batch: each records the batch's latency.
    items = [{"request_id": p.request_id, "deployment_id": deployment.id, "model_version_id": version.id, "at": at,
              "text": text, "label": p.label, "score": p.score, "scores": p.scores, "latency_ms": latency_ms}
             | ({"entities": p.entities} if p.entities is not None else {})
             for p, text in zip(served, texts, strict=True)]
    if log is not None:
        log.submit(items)
    else:
        ctx.wiring.hook(LOG_PREDICTIONS_HOOK)(ctx, items)
    if shadow_id is not None:
        _submit_shadow(ctx, predictors, deployment, shadow_id, texts, served)
    return ServedPredictions(deployment=deployment, model_version=version, predictions=served, latency_ms=latency_ms)


def serve_predictions(ctx: Context, predictors: PredictorCache, name: str, texts: list[str], *,
                      caller_key: str | None = None, log: PredictionSink | None = None) -> ServedPredictions:
    """Answer texts sent to a deployment and log one record per text.

    The deployment's route is read once: the request finishes on the versions it
    names even if a rollout or rollback switches the route meanwhile. A canary sends
    a caller to the candidate by the bucket of ``caller_key``; a shadow candidate
    answers too, on a background thread, into the shadow log only.

    Blocking (model call, and the store on a route-cache miss or without ``log``): call
    it from a worker thread, not the event loop (``aserve_predictions`` is for that).

    Args:
        predictors: the process's loaded models.
        name: the deployment's name.
        texts: what to label (validated by the runtime).
        caller_key: who calls, for sticky canary routing (None: a random bucket).
        log: the buffered log writer to hand the records to (None: the ``serving.log_predictions``
            hook stores them now).

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
    resolved = resolve_route(ctx, name)
    version, shadow_id = _pick(resolved, name, caller_key)
    answers: list[Prediction] = predictors.get(version).predict(texts)
    latency_ms = (time.perf_counter() - start) * 1000
    return _finish(ctx, predictors, resolved, version, shadow_id, texts, answers, latency_ms, log)


async def aserve_predictions(ctx: Context, predictors: PredictorCache, name: str, texts: list[str], *,
                             caller_key: str | None = None, log: PredictionSink | None = None,
                             started: float | None = None) -> ServedPredictions:
    """``serve_predictions`` for an event loop: never blocks it on the common path.

    A cached route and a loaded model are used in place; a route-cache miss and a
    model load run on a worker thread; the model call awaits the micro-batcher, whose
    thread tokenises and runs the batch. With ``log`` None the insert runs on a worker
    thread as well.

    Args:
        started: ``time.perf_counter()`` when the request arrived (default: now), so the
            logged latency includes authentication and parsing.

    Raises:
        The errors of ``serve_predictions``.
    """
    from starlette.concurrency import run_in_threadpool

    from chainkeeper.serving.runtime import validate_texts

    validate_texts(texts)
    start = time.perf_counter() if started is None else started
    resolved = cached_route(ctx, name)
    if resolved is None:
        resolved = await run_in_threadpool(resolve_route, ctx, name)
    version, shadow_id = _pick(resolved, name, caller_key)
    predictor = predictors.loaded_predictor(version.id) or await run_in_threadpool(predictors.get, version)
    apredict = getattr(predictor, "apredict", None)
    answers: list[Prediction] = (await apredict(texts) if apredict is not None
                                 else await run_in_threadpool(predictor.predict, texts))
    latency_ms = (time.perf_counter() - start) * 1000
    if log is None:
        return await run_in_threadpool(_finish, ctx, predictors, resolved, version, shadow_id, texts, answers,
                                       latency_ms, None)
    return _finish(ctx, predictors, resolved, version, shadow_id, texts, answers, latency_ms, log)


# Shadow answers run on one background thread, off the caller's path: a shadow never
# adds latency to the served answer. Past MAX_SHADOW_BACKLOG waiting requests, new ones
# are skipped (and logged) rather than queued without bound.
MAX_SHADOW_BACKLOG = 64


class ShadowRunner:
    """The context's shadow thread and the shadow answers still pending (``ctx.state``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()

    def submit(self, ctx: Context, predictors: PredictorCache, deployment: Deployment, version_id: int,
               texts: list[str], served: list[ServedPrediction]) -> None:
        with self._lock:
            if len(self._pending) >= MAX_SHADOW_BACKLOG:
                _log.warning("shadow backlog full (%d); skipping the shadow of deployment %s for this request",
                             MAX_SHADOW_BACKLOG, deployment.name)
                return
            if self._pool is None:  # made on first use: a context that never shadows starts no thread
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chainkeeper-shadow")
            future = self._pool.submit(_shadow, ctx, predictors, deployment, version_id, texts, served)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait(self, timeout: float) -> bool:
        with self._lock:
            pending = list(self._pending)
        _, not_done = wait_futures(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _shadows(ctx: Context) -> ShadowRunner:
    return ctx.state("serving.shadows", ShadowRunner)


def _submit_shadow(ctx: Context, predictors: PredictorCache, deployment: Deployment, version_id: int,
                   texts: list[str], served: list[ServedPrediction]) -> None:
    _shadows(ctx).submit(ctx, predictors, deployment, version_id, texts, served)


def wait_for_shadows(ctx: Context, timeout: float = 30.0) -> bool:
    """Wait until every shadow answer submitted through ``ctx`` so far is stored (tests, shutdown).

    Returns:
        True when none is left pending.
    """
    return _shadows(ctx).wait(timeout)


def _shadow(ctx: Context, predictors: PredictorCache, deployment: Deployment, version_id: int, texts: list[str],
            served: list[ServedPrediction]) -> None:
    """Let a shadow candidate answer the same texts; store its answers, return nothing.

    A failing shadow must never fail the caller's request: its error is logged and dropped.
    """
    try:
        answers = predictors.get(get_model_version(ctx.db, version_id)).predict(texts)
        at = utcnow()
        with ctx.db.session() as s:
            s.add_all([SqlShadowPrediction(request_id=p.request_id, deployment_id=deployment.id,
                                           model_version_id=version_id, label=a.label, score=a.score,
                                           served_label=p.label, at=at)
                       for a, p in zip(answers, served, strict=True)])
    except Exception:  # noqa: BLE001 - the shadow is an experiment; the caller already has an answer
        _log.exception("shadow version %s of deployment %s failed", version_id, deployment.name)


@dataclass(frozen=True)
class ShadowPrediction:
    request_id: str
    model_version_id: int
    label: str
    score: float
    served_label: str
    at: datetime


def list_shadow_predictions(ctx: Context, name: str, *, actor: Actor, limit: int = 100) -> list[ShadowPrediction]:
    """The shadow answers logged for deployment ``name``, newest first.

    Args:
        actor: who reads (``deployment.read`` in the deployment's project).

    Raises:
        Forbidden: the actor may not read it. NotFound: no such deployment.
    """
    authorize_deployment(ctx.db, actor, "deployment.read", name)
    deployment = get_deployment_by_name(ctx.db, name)
    with ctx.db.session() as s:
        rows = s.scalars(sa.select(SqlShadowPrediction).where(SqlShadowPrediction.deployment_id == deployment.id)
                         .order_by(SqlShadowPrediction.id.desc()).limit(limit))
        return [ShadowPrediction(r.request_id, r.model_version_id, r.label, r.score, r.served_label, r.at)
                for r in rows]
