"""Rollout: canary and shadow traffic, promotion of the candidate, instant rollback.

A deployment's traffic follows its *route*: the newest row of ``deployment_routes``.
A route is never edited; every change inserts a new row (and updates the deployment's
``model_version_id`` to the route's primary) in one transaction, with an audit entry.
A request reads the route once, at its start, and answers from the versions that
route names, so a switch never drops or splits a request in flight: requests that
started before it finish on the old version, requests after it use the new one.
The predict path reads routes through the context's route cache (``route_cache``);
every switch below (and a deploy) invalidates it after its transaction commits, so the
next request in this process uses the new route; another server process sees it within
``ROUTE_CACHE_TTL_S``.

Modes:

- ``single``: every request goes to the primary version;
- ``canary``: ``percent`` of callers go to the candidate. The caller key (header
  ``X-Caller-Key``) is hashed to a bucket 0-99 together with the deployment's name, so
  the same caller always meets the same version while the percentage stays put;
- ``shadow``: every request is answered by the primary; the candidate sees the same
  texts and its answers are stored as shadow predictions, never returned.

``promote_rollout`` makes the candidate the primary (it must have passed the
``model.promote`` gate first: only production versions take all traffic);
``rollback_deployment`` drops a running canary or shadow, or else returns to the
version that served before the last switch, restoring it in the registry.

The registry's stages follow the traffic: ``serving_versions`` tells it which versions
a live route names (its ``SERVING_VERSIONS_HOOK``), so a version still answering
requests is never archived, and after every switch that moves traffic off a version
the registry archives the production versions no route serves any more
(``retire_replaced_versions``): the old primary after a promotion, a production
candidate after its canary's rollback, the version rolled back from.

Every function that a shell calls takes the actor and decides in the deployment's
project (``serving.access``).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.registry import (
    ModelVersion,
    Stage,
    get_model_version,
    list_model_versions,
    retire_replaced_versions,
    transition_stage,
)
from chainkeeper.serving.access import authorize_deployment
from chainkeeper.serving.caching import TtlCache
from chainkeeper.serving.tables import SqlDeployment, SqlRoute

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = [
    "ROUTE_CACHE_MAX_ENTRIES",
    "ROUTE_CACHE_TTL_S",
    "Route",
    "RouteMode",
    "RolloutStatus",
    "bucket_of",
    "choose_versions",
    "current_route",
    "list_routes",
    "promote_rollout",
    "route_cache",
    "routes_changed",
    "rollback_deployment",
    "rollout_status",
    "serving_versions",
    "start_canary",
    "start_shadow",
]

BUCKETS = 100
# What the predict path knows of a deployment (``deployments.resolve_route``), by
# deployment name, one cache per context. A switch through this context invalidates it
# at once; a switch made by another process is seen within ROUTE_CACHE_TTL_S seconds.
ROUTE_CACHE_TTL_S = 1.0
# Past this many names the cache starts over (made-up names are never cached: NotFound is not).
ROUTE_CACHE_MAX_ENTRIES = 1_000


def route_cache(ctx: Context) -> TtlCache[str, Any]:
    """The context's cache of resolved routes, by deployment name (made on first use)."""
    return ctx.state("serving.routes", lambda: TtlCache(ROUTE_CACHE_TTL_S, max_entries=ROUTE_CACHE_MAX_ENTRIES))


def routes_changed(ctx: Context, name: str) -> None:
    """Forget what this context cached of deployment ``name``; call it after the change commits."""
    route_cache(ctx).invalidate(lambda key: key == name)


class RouteMode(enum.StrEnum):
    SINGLE = "single"
    CANARY = "canary"
    SHADOW = "shadow"


@dataclass(frozen=True)
class Route:
    """Where a deployment's traffic goes (``id`` 0: implied by the deployment, never switched)."""

    id: int
    deployment_id: int
    primary_version_id: int
    candidate_version_id: int | None
    mode: RouteMode
    percent: int
    previous_version_id: int | None
    reason: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class RolloutStatus:
    """A deployment's live route with its versions, and the routes before it."""

    deployment_name: str
    route: Route
    primary: ModelVersion
    candidate: ModelVersion | None
    history: list[Route]

    def live(self) -> dict[str, Any]:
        """What answers the traffic now (the API's and the CLI's ``live`` field): the primary,
        and a canary (with its share) or a shadow."""
        route, candidate = self.route, self.candidate
        return {"mode": str(route.mode), "primary": version_ref(self.primary),
                "canary": ({**version_ref(candidate), "percent": route.percent}
                           if candidate and route.mode == RouteMode.CANARY else None),
                "shadow": version_ref(candidate) if candidate and route.mode == RouteMode.SHADOW else None,
                "previous_version_id": route.previous_version_id, "since": route.created_at}


def version_ref(version: ModelVersion) -> dict[str, Any]:
    """A model version as a route names it: id, label, stage."""
    return {"id": version.id, "label": version.label, "stage": str(version.stage)}


def _to_route(row: SqlRoute) -> Route:
    return Route(id=row.id, deployment_id=row.deployment_id, primary_version_id=row.primary_version_id,
                 candidate_version_id=row.candidate_version_id, mode=RouteMode(row.mode), percent=row.percent,
                 previous_version_id=row.previous_version_id, reason=row.reason, created_by=row.created_by,
                 created_at=row.created_at)


def _implied_route(dep: SqlDeployment) -> Route:
    return Route(id=0, deployment_id=dep.id, primary_version_id=dep.model_version_id, candidate_version_id=None,
                 mode=RouteMode.SINGLE, percent=0, previous_version_id=None, reason="deploy", created_by=dep.created_by,
                 created_at=dep.created_at)


# --- the pure part ---------------------------------------------------------------------


def bucket_of(deployment_name: str, caller_key: str) -> int:
    """The caller's bucket in 0-99 for a deployment (pure, stable across processes).

    Hashing the deployment name in means a caller is not in the canary of every
    deployment at once.
    """
    digest = hashlib.sha256(f"{deployment_name}\x00{caller_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def choose_versions(route: Route, deployment_name: str, caller_key: str) -> tuple[int, int | None]:
    """Which version answers a caller, and which (if any) shadows the request (pure).

    Args:
        route: the deployment's route, read once for this request.
        deployment_name: the deployment's name (salts the bucket).
        caller_key: the caller's key (a random one for callers that send none).

    Returns:
        (version id that answers, version id that shadows or None).
    """
    if route.mode == RouteMode.CANARY and route.candidate_version_id is not None:
        if bucket_of(deployment_name, caller_key) < route.percent:
            return route.candidate_version_id, None
        return route.primary_version_id, None
    if route.mode == RouteMode.SHADOW and route.candidate_version_id is not None:
        return route.primary_version_id, route.candidate_version_id
    return route.primary_version_id, None


# --- reading ---------------------------------------------------------------------------


def _deployment_row(s: Session, name: str) -> SqlDeployment:
    row = s.scalars(sa.select(SqlDeployment).where(SqlDeployment.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"There is no deployment named {name!r}.", hint="List them with GET /api/deployments.")
    return row


def _latest_route(s: Session, dep: SqlDeployment) -> Route:
    row = s.scalars(sa.select(SqlRoute).where(SqlRoute.deployment_id == dep.id)
                    .order_by(SqlRoute.id.desc()).limit(1)).one_or_none()
    return _to_route(row) if row is not None else _implied_route(dep)


def current_route(db: Database, name: str) -> Route:
    """The live route of deployment ``name``.

    Raises:
        NotFound: no such deployment.
    """
    with db.session() as s:
        return _latest_route(s, _deployment_row(s, name))


def list_routes(db: Database, name: str, *, limit: int = 20) -> list[Route]:
    """The deployment's routes, newest first."""
    with db.session() as s:
        dep = _deployment_row(s, name)
        rows = s.scalars(sa.select(SqlRoute).where(SqlRoute.deployment_id == dep.id)
                         .order_by(SqlRoute.id.desc()).limit(limit))
        return [_to_route(r) for r in rows]


def serving_versions(ctx: Context, model_name: str) -> dict[int, list[str]]:
    """The versions of model ``model_name`` that a deployment's live route names, each
    with where it serves: the registry's ``SERVING_VERSIONS_HOOK`` (a store reader).

    Returns:
        ``{model version id: ["deployment support (canary, 10 % of callers)", ...]}``.
    """
    ids = {v.id for v in list_model_versions(ctx.db, model_name, limit=None)}
    served: dict[int, list[str]] = {}
    with ctx.db.session() as s:
        for dep in s.scalars(sa.select(SqlDeployment).order_by(SqlDeployment.id)):
            route = _latest_route(s, dep)
            if route.primary_version_id in ids:
                share = f" ({100 - route.percent} % of callers)" if route.mode == RouteMode.CANARY else ""
                served.setdefault(route.primary_version_id, []).append(f"deployment {dep.name}{share}")
            if route.candidate_version_id in ids and route.candidate_version_id is not None:
                role = (f"canary, {route.percent} % of callers" if route.mode == RouteMode.CANARY
                        else str(route.mode))
                served.setdefault(route.candidate_version_id, []).append(f"deployment {dep.name} ({role})")
    return served


def rollout_status(ctx: Context, name: str, *, actor: Actor) -> RolloutStatus:
    """The live route of a deployment, its versions and its recent routes.

    Args:
        actor: who reads (``deployment.read`` in the deployment's project).

    Raises:
        Forbidden: the actor may not read it. NotFound: no such deployment.
    """
    authorize_deployment(ctx.db, actor, "deployment.read", name)
    db = ctx.db
    route = current_route(db, name)
    candidate = get_model_version(db, route.candidate_version_id) if route.candidate_version_id else None
    return RolloutStatus(deployment_name=name, route=route, primary=get_model_version(db, route.primary_version_id),
                         candidate=candidate, history=list_routes(db, name))


# --- switching -------------------------------------------------------------------------


def _route_snapshot(route: Route | SqlRoute) -> dict[str, Any]:
    return {"primary": route.primary_version_id, "candidate": route.candidate_version_id, "mode": str(route.mode),
            "percent": route.percent, "previous": route.previous_version_id}


def switch_route(s: Session, dep: SqlDeployment, *, actor: Actor, action: str, reason: str, primary: int,
                 candidate: int | None = None, mode: RouteMode = RouteMode.SINGLE, percent: int = 0,
                 previous: int | None = None) -> Route:
    """Insert a new route for ``dep`` inside the caller's transaction, and audit it.

    The deployment's ``model_version_id`` follows the primary, so readers that know
    nothing of routes still see what answers most traffic.
    """
    before = _latest_route(s, dep)
    row = SqlRoute(deployment_id=dep.id, primary_version_id=primary, candidate_version_id=candidate, mode=mode.value,
                   percent=percent, previous_version_id=previous, reason=reason, created_by=actor.name,
                   created_at=utcnow())
    s.add(row)
    dep.model_version_id, dep.updated_at = primary, row.created_at
    s.flush()
    append_entry(s, actor, action, "deployment", dep.id, before=_route_snapshot(before), after=_route_snapshot(row),
                 details={"name": dep.name, "reason": reason, **_route_snapshot(row)})
    return _to_route(row)


def _check_candidate(db: Database, route: Route, model_version_id: int) -> ModelVersion:
    primary = get_model_version(db, route.primary_version_id)
    candidate = get_model_version(db, model_version_id)
    if candidate.id == primary.id:
        raise Conflict(f"Model version {candidate.id} ({candidate.label}) already serves this deployment.",
                       hint="Pick another version of the same model as the candidate.")
    if candidate.name != primary.name:
        raise Conflict(f"Model version {candidate.id} is {candidate.label}, but the deployment serves "
                       f"{primary.name!r}; a candidate must be a version of the same model.",
                       hint=f"List the versions of {primary.name!r} with GET /api/models?name={primary.name}.")
    if candidate.stage not in (Stage.STAGING, Stage.PRODUCTION):
        raise Conflict(f"Model version {candidate.id} ({candidate.label}) is {candidate.stage}; only a staging or "
                       "production version may take live traffic.",
                       hint=f"Move version {candidate.id} to staging in the registry first.")
    return candidate


def _unchanged_route(session: Session, name: str, seen: Route) -> tuple[SqlDeployment, Route]:
    """The deployment row and its live route, inside the switching transaction; refuse
    when the route moved since ``seen`` was read (someone else switched it meanwhile)."""
    dep = _deployment_row(session, name)
    live = _latest_route(session, dep)
    if live.id != seen.id:
        raise Conflict(f"The route of deployment {name!r} changed while this request was checked.",
                       hint="Look at 'chainkeeper deploy status NAME' and try again.")
    return dep, live


def _start(ctx: Context, name: str, model_version_id: int, *, actor: Actor, mode: RouteMode,
           percent: int) -> Route:
    authorize_deployment(ctx.db, actor, "deployment.rollout", name)
    route = current_route(ctx.db, name)
    _check_candidate(ctx.db, route, model_version_id)
    with ctx.db.session() as s:
        dep, live = _unchanged_route(s, name, route)
        switched = switch_route(s, dep, actor=actor, action="deployment.rollout", reason=mode.value,
                                primary=live.primary_version_id, candidate=model_version_id, mode=mode,
                                percent=percent, previous=live.previous_version_id)
    routes_changed(ctx, name)
    return switched


def start_canary(ctx: Context, name: str, model_version_id: int, *, percent: int, actor: Actor) -> Route:
    """Send ``percent`` of callers (sticky by caller key) to a candidate version.

    Calling it again with another percentage shifts the split; with another version,
    replaces the candidate.

    Args:
        name: the deployment.
        model_version_id: the candidate, a staging or production version of the same model.
        percent: 1-99, the share of callers the candidate answers.
        actor: who starts it (``deployment.rollout`` in the deployment's project).

    Returns:
        The new live route.

    Raises:
        Forbidden: the actor may not roll it out.
        InvalidInput: a percentage outside 1-99. NotFound: no such deployment or version.
        Conflict: the candidate is the primary, another model, or not staging/production.
    """
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 99:
        raise InvalidInput(f"A canary percentage must be a whole number from 1 to 99, got {percent!r}.",
                           hint="Use e.g. --percent 10; to send all traffic, promote the canary instead.")
    return _start(ctx, name, model_version_id, actor=actor, mode=RouteMode.CANARY, percent=percent)


def start_shadow(ctx: Context, name: str, model_version_id: int, *, actor: Actor) -> Route:
    """Let a candidate see every request; its answers are stored, never returned.

    Raises:
        Forbidden: the actor may not roll it out (``deployment.rollout``).
        NotFound: no such deployment or version.
        Conflict: the candidate is the primary, another model, or not staging/production.
    """
    return _start(ctx, name, model_version_id, actor=actor, mode=RouteMode.SHADOW, percent=100)


def promote_rollout(ctx: Context, name: str, *, actor: Actor) -> Route:
    """Make the canary or shadow candidate the primary: it answers all traffic.

    The previous primary is kept as ``previous_version_id`` for a rollback.

    Raises:
        Forbidden: the actor may not roll it out (``deployment.rollout``).
        NotFound: no such deployment.
        Conflict: no canary or shadow is running, or the candidate has not been
            promoted to production in the registry (the ``model.promote`` gate).
    """
    authorize_deployment(ctx.db, actor, "deployment.rollout", name)
    route = current_route(ctx.db, name)
    if route.mode == RouteMode.SINGLE or route.candidate_version_id is None:
        raise Conflict(f"Deployment {name!r} runs no canary or shadow; there is nothing to promote.",
                       hint=f"Start one with 'chainkeeper deploy canary {name} MODEL_VERSION --percent 10'.")
    candidate = get_model_version(ctx.db, route.candidate_version_id)
    if candidate.stage != Stage.PRODUCTION:
        raise Conflict(
            f"Candidate {candidate.id} ({candidate.label}) is {candidate.stage}; only a production version may "
            "take all traffic.",
            hint=f"Ask for its promotion (POST /api/models/{candidate.id}/promotion-requests); once a release "
            "manager approves it, promote the rollout again.")
    with ctx.db.session() as s:
        dep, live = _unchanged_route(s, name, route)
        switched = switch_route(s, dep, actor=actor, action="deployment.rollout", reason="promote",
                                primary=candidate.id, previous=live.primary_version_id)
    routes_changed(ctx, name)
    retire_replaced_versions(ctx, candidate.name, caused_by=actor,
                             reason=f"replaced by v{candidate.version} in deployment {name}")
    return switched


def rollback_deployment(ctx: Context, name: str, *, actor: Actor, comment: str = "") -> Route:
    """Roll a deployment back at once.

    With a canary or shadow running, the candidate is dropped and the primary answers
    everything (the registry is untouched). Otherwise the deployment returns to the
    version that served before the last switch; if that version left production, it is
    restored there (archived → staging → production, each move recorded). Either way a
    production version the rollback took the last traffic from is archived (a canary
    candidate promoted meanwhile, the version rolled back from).

    Args:
        name: the deployment.
        actor: who rolls back (``deployment.rollback`` in the deployment's project).
        comment: why, kept in the registry history.

    Returns:
        The new live route.

    Raises:
        Forbidden: the actor may not roll it back. NotFound: no such deployment.
        Conflict: there is nothing to roll back to.
    """
    authorize_deployment(ctx.db, actor, "deployment.rollback", name)
    route = current_route(ctx.db, name)
    why = comment or f"rollback of deployment {name}"
    if route.mode != RouteMode.SINGLE:
        target, previous = route.primary_version_id, route.previous_version_id
    elif route.previous_version_id is not None:
        target, previous = route.previous_version_id, None
        restored = get_model_version(ctx.db, target)
        if restored.stage == Stage.ARCHIVED:
            transition_stage(ctx, target, Stage.STAGING, actor=actor, comment=why)
        if restored.stage != Stage.PRODUCTION:
            transition_stage(ctx, target, Stage.PRODUCTION, actor=actor, comment=why)
    else:
        raise Conflict(f"Deployment {name!r} has no previous version to roll back to.",
                       hint="A rollback returns to the version served before the last promotion or deploy; "
                       "deploy another production version instead.")
    with ctx.db.session() as s:
        dep = _deployment_row(s, name)
        switched = switch_route(s, dep, actor=actor, action="deployment.rollback", reason="rollback",
                                primary=target, previous=previous)
    routes_changed(ctx, name)
    retire_replaced_versions(ctx, get_model_version(ctx.db, target).name, caused_by=actor,
                             reason=f"rolled back from deployment {name}" + (f": {comment}" if comment else ""))
    return switched
