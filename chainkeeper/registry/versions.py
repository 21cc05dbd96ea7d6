"""Model versions and their stages: the registry's service functions.

A succeeded training run's model folder becomes a *model version*: a name, the next
integer version under that name, the run's metrics and the artefact digest. A version
moves through stages::

    candidate ──▶ staging ──▶ production ──▶ archived
        │            │                          │
        └────────────┴──────▶ archived ◀────────┘ (archived ──▶ staging restores one)

A stage tells the truth about what is served: a version that a deployment's live route
sends traffic to (its primary, or a canary or shadow candidate) is never archived. The
registry asks serving through the ``SERVING_VERSIONS_HOOK`` (registered by the chain's
wiring). Promoting a version archives the name's previous production version in the
same transaction, unless that one still answers traffic: then it stays in production
until serving moves the traffic off it and calls ``retire_replaced_versions`` (a
canary's rollback, a rollout's promotion, a re-deploy). Every move is a
``SqlStageTransition`` row (who, when, why) and an audit-ledger entry, so "what served
on 3 May at 14:00?" is answered from the history (``production_version_at``), not from
today's stage column.

Promotion to production is a gated hand-off (``governance.approvals``); this module
performs the move, the gate decides whether it may happen.

A model version's project is its run's (``project_of_model_version``); a model *name*'s
project is the project of its oldest version (``project_of_model_name``), so the name's
thresholds and production history are guarded by the project the name was first
registered in. Every function a shell calls takes the actor and decides in that project.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize_object, projects_allowed
from chainkeeper.registry.hooks import SERVING_VERSIONS_HOOK
from chainkeeper.registry.tables import SqlModelVersion, SqlStageTransition
from chainkeeper.training import get_run, project_of_run, run_ids_of_projects

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = [
    "ALLOWED_MOVES",
    "ModelVersion",
    "ProductionHistory",
    "ProductionPeriod",
    "Stage",
    "StageTransition",
    "count_model_versions",
    "find_model_versions",
    "get_model_version",
    "list_model_versions",
    "production_version_at",
    "production_from_history",
    "production_periods",
    "production_timeline",
    "project_of_model_name",
    "project_of_model_version",
    "register_model_version",
    "retire_replaced_versions",
    "show_model_version",
    "show_production",
    "show_stage_history",
    "stage_history",
    "transition_stage",
    "validate_model_name",
]


# Lower-case slug: it appears in URLs, CLI arguments and file names.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Stage(enum.StrEnum):
    CANDIDATE = "candidate"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


# from-stage -> the stages it may move to. Later issues (rollback) extend this table.
ALLOWED_MOVES: dict[Stage, frozenset[Stage]] = {
    Stage.CANDIDATE: frozenset({Stage.STAGING, Stage.ARCHIVED}),
    Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.STAGING}),
}


@dataclass(frozen=True)
class ModelVersion:
    """One registered model: what it is, where its files are, where it stands."""

    id: int
    name: str
    version: int
    run_id: int
    model_artifact: str
    stage: Stage
    metrics: dict[str, Any]
    owner: str
    created_by: str
    created_at: datetime

    @property
    def label(self) -> str:
        """How people name it: ``intents v3``."""
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class StageTransition:
    """One stage change of a model version ("" as ``from_stage`` marks registration)."""

    id: int
    model_version_id: int
    from_stage: str
    to_stage: str
    actor: str
    comment: str
    at: datetime


def _to_version(row: SqlModelVersion) -> ModelVersion:
    return ModelVersion(
        id=row.id, name=row.name, version=row.version, run_id=row.run_id, model_artifact=row.model_artifact,
        stage=Stage(row.stage), metrics=dict(row.metrics or {}), owner=row.owner, created_by=row.created_by,
        created_at=row.created_at,
    )


def _to_transition(row: SqlStageTransition) -> StageTransition:
    return StageTransition(id=row.id, model_version_id=row.model_version_id, from_stage=row.from_stage,
                           to_stage=row.to_stage, actor=row.actor, comment=row.comment, at=row.at)


def _snapshot(row: SqlModelVersion) -> dict[str, Any]:
    """What the ledger hashes as the before/after state of a version."""
    return {"name": row.name, "version": row.version, "stage": row.stage, "run_id": row.run_id,
            "model_artifact": row.model_artifact}


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name.

    Raises:
        InvalidInput: not a lower-case slug of 1-63 characters.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"Model name {name!r} is not valid.",
            hint="Use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit "
            "(e.g. 'support-intents').",
        )
    return name


def _parse_stage(value: str) -> Stage:
    try:
        return Stage(value)
    except ValueError:
        raise InvalidInput(f"Unknown stage {value!r}.",
                           hint=f"Stages: {', '.join(s.value for s in Stage)}.") from None


# --- registering -----------------------------------------------------------------------


def register_model_version(ctx: Context, *, run_id: int, name: str, actor: Actor) -> ModelVersion:
    """Register a succeeded run's model as the next version of ``name``, as a candidate.

    Args:
        run_id: the training run whose ``model_artifact`` becomes the version.
        name: the model's name (a slug); the version number is the next under it.
        actor: who registers (``model.register`` in the run's project); becomes
            ``created_by`` and the first owner.

    Returns:
        The new version, in stage ``candidate``.

    Raises:
        InvalidInput: a malformed name.
        Forbidden: the actor may not register models in the run's project.
        NotFound: no such run.
        Conflict: the run has not succeeded, produced no model (a search's trial keeps
            none), or is already registered.
    """
    validate_model_name(name)
    authorize_object(ctx.db, actor, "model.register", lambda: project_of_run(ctx.db, run_id))
    run = get_run(ctx.db, run_id)
    if run.trial is not None:
        raise Conflict(f"Run {run_id} is trial {run.trial} of search job {run.search_job_id}; a trial keeps no model.",
                       hint=f"Register the run that trains the search's best config ('chainkeeper train search show "
                       f"{run.search_job_id}').")
    if run.state != "succeeded" or not run.model_artifact:
        what = "has no trained model" if run.state == "succeeded" else f"is {run.state}"
        job_id = getattr(run, "job_id", None)
        follow = f" (follow it with 'chainkeeper jobs show {job_id}')" if job_id else ""
        raise Conflict(
            f"Run {run_id} {what}; only a succeeded run with a trained model can be registered.",
            hint=f"Wait for the run to succeed{follow}, or start a new run.",
        )
    with ctx.db.session() as s:
        _refuse_registered_run(s, run.id)
        # On SQLite the immediate session serialises registrations; on PostgreSQL two at
        # once can pick the same number, and the (name, version) unique key refuses one.
        latest = s.execute(sa.select(sa.func.max(SqlModelVersion.version)).where(SqlModelVersion.name == name))
        version = (latest.scalar_one() or 0) + 1
        row = SqlModelVersion(name=name, version=version, run_id=run.id, model_artifact=run.model_artifact,
                              stage=Stage.CANDIDATE.value, metrics=dict(run.metrics or {}), owner=actor.name,
                              created_by=actor.name, created_at=utcnow())
        s.add(row)
        s.flush()
        _record_transition(s, row, "", Stage.CANDIDATE, actor, f"registered from run {run.id}")
        append_entry(s, actor, "model.register", "model_version", row.id, after=_snapshot(row),
                     details={"name": name, "version": version, "run_id": run.id})
        return _to_version(row)


def _refuse_registered_run(s: Session, run_id: int) -> None:
    """A run's model is one version: registering it again would count the same model twice
    (two versions, one artefact), and its gates and history would split between them."""
    existing = s.scalars(sa.select(SqlModelVersion).where(SqlModelVersion.run_id == run_id)
                         .order_by(SqlModelVersion.id).limit(1)).one_or_none()
    if existing is not None:
        raise Conflict(
            f"Run {run_id} is already registered as {existing.name} v{existing.version} "
            f"(model version {existing.id}).",
            hint=f"Use model version {existing.id} (GET /api/models/{existing.id}), or train a new run "
            "to register another version.",
        )


def _record_transition(s: Session, row: SqlModelVersion, from_stage: str, to_stage: Stage, actor: Actor,
                       comment: str, at: datetime | None = None) -> None:
    s.add(SqlStageTransition(model_version_id=row.id, from_stage=from_stage, to_stage=to_stage.value,
                             actor=actor.name, comment=comment, at=at or utcnow()))


# --- moving between stages -------------------------------------------------------------


def versions_in_service(ctx: Context, name: str) -> dict[int, list[str]]:
    """The versions of model ``name`` that a deployment's live route names, each with
    where it serves (asked of serving through ``SERVING_VERSIONS_HOOK``)."""
    served: dict[int, list[str]] = ctx.wiring.hook(SERVING_VERSIONS_HOOK)(ctx, name)
    return served


def transition_stage(ctx: Context, model_version_id: int, to_stage: str, *, actor: Actor,
                     comment: str = "") -> ModelVersion:
    """Move a model version to another stage, recording who, when and why.

    Moving a version to production archives the version of the same name that was in
    production, in the same transaction, both moves recorded; one that a deployment
    still sends traffic to stays in production until the traffic leaves it
    (``retire_replaced_versions``). A version in service cannot be archived.

    Args:
        model_version_id: the version to move.
        to_stage: one of ``Stage`` (a string is accepted).
        actor: who moves it: the gate's approver for production, the release manager
            who rolls a deployment back; they need ``model.promote.approve`` in the
            version's project (moving a version between stages is the release manager's call).
        comment: why, kept in the history.

    Returns:
        The version after the move.

    Raises:
        InvalidInput: an unknown stage.
        Forbidden: the actor may not move versions of the version's project.
        NotFound: no such version.
        Conflict: the move is not allowed from the version's current stage, or the
            version is to be archived while a deployment sends it traffic.
    """
    target = _parse_stage(to_stage)
    authorize_object(ctx.db, actor, "model.promote.approve", lambda: project_of_model_version(ctx.db, model_version_id))
    # Asked before the write transaction opens: serving reads its own tables.
    served = versions_in_service(ctx, get_model_version(ctx.db, model_version_id).name)
    with ctx.db.session() as s:
        row = _get_row(s, model_version_id)
        current = Stage(row.stage)
        if target not in ALLOWED_MOVES[current]:
            allowed = ", ".join(sorted(ALLOWED_MOVES[current])) or "none"
            raise Conflict(
                f"Model version {row.id} ({row.name} v{row.version}) is {current}; it cannot move to {target}.",
                hint=f"From {current} it may move to: {allowed}."
                + (" Promote it to staging first." if target == Stage.PRODUCTION else ""),
            )
        if target == Stage.ARCHIVED and row.id in served:
            raise Conflict(
                f"Model version {row.id} ({row.name} v{row.version}) serves traffic: "
                f"{'; '.join(served[row.id])}; a version that answers requests cannot be archived.",
                hint="Move the traffic off it first: roll the deployment back, or promote its rollout.")
        at = utcnow()
        kept: dict[int, list[str]] = {}
        if target == Stage.PRODUCTION:
            previous = s.scalars(sa.select(SqlModelVersion).where(
                SqlModelVersion.name == row.name, SqlModelVersion.stage == Stage.PRODUCTION.value,
                SqlModelVersion.id != row.id))
            for old in previous:
                if old.id in served:  # still answers requests: archived when the traffic leaves it
                    kept[old.id] = served[old.id]
                    continue
                _archive(s, old, actor, f"replaced in production by v{row.version}", at, replaced_by=row.id)
        before = _snapshot(row)
        row.stage = target.value
        _record_transition(s, row, current.value, target, actor, comment, at)
        append_entry(s, actor, "model.stage", "model_version", row.id, before=before, after=_snapshot(row),
                     details={"from": current.value, "to": target.value, "comment": comment,
                              **({"kept_in_production": {str(k): v for k, v in kept.items()}} if kept else {})})
        s.flush()
        return _to_version(row)


def _archive(s: Session, row: SqlModelVersion, actor: Actor, comment: str, at: datetime, *,
             replaced_by: int) -> None:
    before, current = _snapshot(row), row.stage
    row.stage = Stage.ARCHIVED.value
    _record_transition(s, row, current, Stage.ARCHIVED, actor, comment, at)
    append_entry(s, actor, "model.stage", "model_version", row.id, before=before, after=_snapshot(row),
                 details={"from": current, "to": Stage.ARCHIVED.value, "replaced_by": replaced_by,
                          "comment": comment})


def retire_replaced_versions(ctx: Context, name: str, *, caused_by: Actor, reason: str) -> list[ModelVersion]:
    """Archive the production versions of ``name`` that no deployment serves any more,
    now that another one is in production (a store writer for serving, which calls it
    after a switch it authorised: the archive is that switch's consequence).

    When no production version of the name is in service, the latest promoted one stays
    in production (a stopped service does not un-approve its model).

    Args:
        name: the model's name.
        caused_by: who made the switch; recorded as the mover.
        reason: why, kept in the history (e.g. "rolled back from deployment support").

    Returns:
        The versions archived, as they are now.
    """
    served = versions_in_service(ctx, name)
    with ctx.db.session() as s:
        live = list(s.scalars(sa.select(SqlModelVersion).where(
            SqlModelVersion.name == name, SqlModelVersion.stage == Stage.PRODUCTION.value)))
        if len(live) < 2:
            return []
        promoted = {row.id: _promoted_at(s, row.id) for row in live}
        keep = {row.id for row in live if row.id in served}
        if not keep:
            keep = {max(live, key=lambda row: promoted[row.id]).id}
        replaced_by = max(keep, key=lambda vid: promoted[vid])
        at = utcnow()
        retired = [row for row in live if row.id not in keep]
        for row in retired:
            _archive(s, row, caused_by, reason, at, replaced_by=replaced_by)
        s.flush()
        return [_to_version(row) for row in retired]


def _promoted_at(s: Session, model_version_id: int) -> tuple[datetime, int]:
    """When a version last entered production (and that move's id, to break ties)."""
    row = s.scalars(sa.select(SqlStageTransition).where(
        SqlStageTransition.model_version_id == model_version_id, SqlStageTransition.to_stage == Stage.PRODUCTION.value)
        .order_by(SqlStageTransition.at.desc(), SqlStageTransition.id.desc()).limit(1)).one()
    return row.at, row.id


# --- reading ---------------------------------------------------------------------------


def _get_row(s: Session, model_version_id: int) -> SqlModelVersion:
    row = s.get(SqlModelVersion, model_version_id)
    if row is None:
        raise NotFound(f"There is no model version {model_version_id}.",
                       hint="List model versions with GET /api/models.")
    return row


def get_model_version(db: Database, model_version_id: int) -> ModelVersion:
    """One model version.

    Raises:
        NotFound: no version with that id.
    """
    with db.session() as s:
        return _to_version(_get_row(s, model_version_id))


def project_of_model_version(db: Database, model_version_id: int) -> str:
    """The project of a model version: its training run's dataset's.

    Raises:
        NotFound: no such model version.
    """
    return project_of_run(db, get_model_version(db, model_version_id).run_id)


def project_of_model_name(db: Database, name: str) -> str | None:
    """The project of a model name: its oldest version's (None when no version has it yet).

    The name's thresholds and production history belong to that project; a name nobody
    registered yet belongs to none, so only a global role may act on it.
    """
    with db.session() as s:
        run_id = s.scalar(sa.select(SqlModelVersion.run_id).where(SqlModelVersion.name == name)
                          .order_by(SqlModelVersion.id).limit(1))
    return project_of_run(db, run_id) if run_id is not None else None


def list_model_versions(db: Database, name: str | None = None, *, stage: str | None = None,
                        limit: int | None = 100, run_ids: Collection[int] | None = None) -> list[ModelVersion]:
    """Model versions, newest first (a store reader: services that decided who may read call it).

    Args:
        name: only versions of this model.
        stage: only versions in this stage.
        limit: at most this many (all when None).
        run_ids: only versions registered from one of these runs.

    Raises:
        InvalidInput: an unknown stage.
    """
    query = sa.select(SqlModelVersion).order_by(SqlModelVersion.id.desc())
    if limit is not None:
        query = query.limit(limit)
    if name is not None:
        query = query.where(SqlModelVersion.name == name)
    if stage is not None:
        query = query.where(SqlModelVersion.stage == _parse_stage(stage).value)
    if run_ids is not None:
        query = query.where(SqlModelVersion.run_id.in_(list(run_ids)))
    with db.session() as s:
        return [_to_version(r) for r in s.scalars(query)]


def find_model_versions(ctx: Context, *, actor: Actor, name: str | None = None, stage: str | None = None,
                        limit: int = 100) -> list[ModelVersion]:
    """The model versions ``actor`` may read (``model.read``), newest first.

    Args:
        actor: who asks; only versions of projects where they hold ``model.read`` are listed.
        name: only versions of this model.
        stage: only versions in this stage.
        limit: at most this many.

    Raises:
        Forbidden: the actor may read models in no project. InvalidInput: an unknown stage.
    """
    projects = projects_allowed(ctx.db, actor, "model.read")
    within = None if projects is None else run_ids_of_projects(ctx.db, projects)
    return list_model_versions(ctx.db, name, stage=stage, limit=limit, run_ids=within)


def show_model_version(ctx: Context, model_version_id: int, *, actor: Actor) -> ModelVersion:
    """One model version, for an actor who may read it (``model.read`` in its project).

    Raises:
        Forbidden: the actor may not read models of its project. NotFound: no such version.
    """
    authorize_object(ctx.db, actor, "model.read", lambda: project_of_model_version(ctx.db, model_version_id))
    return get_model_version(ctx.db, model_version_id)


def show_stage_history(ctx: Context, model_version_id: int, *, actor: Actor) -> list[StageTransition]:
    """A version's stage changes, oldest first, for an actor who may read it (``model.read``).

    Raises:
        Forbidden: the actor may not read models of its project. NotFound: no such version.
    """
    authorize_object(ctx.db, actor, "model.read", lambda: project_of_model_version(ctx.db, model_version_id))
    return stage_history(ctx.db, model_version_id)


def count_model_versions(db: Database, name: str | None = None) -> int:
    """How many model versions exist (of ``name``, when given)."""
    query = sa.select(sa.func.count()).select_from(SqlModelVersion)
    if name is not None:
        query = query.where(SqlModelVersion.name == name)
    with db.session() as s:
        return int(s.execute(query).scalar_one())


def stage_history(db: Database, model_version_id: int) -> list[StageTransition]:
    """Every stage change of one version, oldest first (registration included)."""
    with db.session() as s:
        rows = s.scalars(sa.select(SqlStageTransition).where(SqlStageTransition.model_version_id == model_version_id)
                         .order_by(SqlStageTransition.at, SqlStageTransition.id))
        return [_to_transition(r) for r in rows]


def production_from_history(transitions: Iterable[StageTransition], when: datetime) -> int | None:
    """Which version id was in production at ``when``, replaying a name's history (pure).

    Args:
        transitions: the stage changes of every version of one name, in any order.
        when: an aware datetime.

    Returns:
        The id of the version in production at that moment, or None.
    """
    stage_of: dict[int, str] = {}
    entered: dict[int, tuple[datetime, int]] = {}
    for t in sorted(transitions, key=lambda t: (t.at, t.id)):
        if t.at > when:
            break
        stage_of[t.model_version_id] = t.to_stage
        if t.to_stage == Stage.PRODUCTION:
            entered[t.model_version_id] = (t.at, t.id)
    live = [vid for vid, stage in stage_of.items() if stage == Stage.PRODUCTION]
    # At most one by construction; should history hold two, the later promotion served.
    return max(live, key=lambda vid: entered[vid]) if live else None


@dataclass(frozen=True)
class ProductionPeriod:
    """One stretch of time a version was in production (``until`` None: it still is)."""

    model_version_id: int
    since: datetime
    until: datetime | None
    promoted_by: str
    ended_by: str | None
    comment: str


def production_periods(transitions: Iterable[StageTransition]) -> list[ProductionPeriod]:
    """When each version of a name was in production, oldest first (pure).

    Args:
        transitions: the stage changes of every version of one name, in any order.
    """
    open_: dict[int, StageTransition] = {}
    out: list[ProductionPeriod] = []
    for t in sorted(transitions, key=lambda t: (t.at, t.id)):
        if t.to_stage == Stage.PRODUCTION:
            open_[t.model_version_id] = t
        elif t.model_version_id in open_:
            start = open_.pop(t.model_version_id)
            out.append(ProductionPeriod(t.model_version_id, start.at, t.at, start.actor, t.actor, start.comment))
    out += [ProductionPeriod(vid, t.at, None, t.actor, None, t.comment) for vid, t in open_.items()]
    return sorted(out, key=lambda p: p.since)


def _name_transitions(s: Session, name: str, until: datetime | None = None) -> list[StageTransition]:
    query = sa.select(SqlStageTransition).join(
        SqlModelVersion, SqlModelVersion.id == SqlStageTransition.model_version_id).where(SqlModelVersion.name == name)
    if until is not None:
        query = query.where(SqlStageTransition.at <= until)
    return [_to_transition(r) for r in s.scalars(query)]


def production_timeline(db: Database, name: str) -> list[ProductionPeriod]:
    """Which version of ``name`` was in production when, oldest first (from the history)."""
    with db.session() as s:
        return production_periods(_name_transitions(s, name))


@dataclass(frozen=True)
class ProductionHistory:
    """What served under one model name: every production period, and the version that
    was in production at ``when`` (None when no time was asked or none served)."""

    name: str
    periods: list[ProductionPeriod] = field(default_factory=list)
    when: datetime | None = None
    version_at: ModelVersion | None = None


def show_production(ctx: Context, name: str, *, actor: Actor, when: datetime | None = None) -> ProductionHistory:
    """Which version of ``name`` was in production when, for an actor who may read the
    name's models (``model.read`` in the name's project, ``project_of_model_name``).

    Args:
        name: the model's name.
        actor: who asks.
        when: also answer which version served at this aware datetime.

    Raises:
        Forbidden: the actor may not read models of the name's project (a name with no
            version needs a global role).
        InvalidInput: ``when`` has no time zone.
    """
    authorize_object(ctx.db, actor, "model.read", lambda: project_of_model_name(ctx.db, name))
    version = production_version_at(ctx.db, name, when) if when is not None else None
    return ProductionHistory(name=name, periods=production_timeline(ctx.db, name), when=when, version_at=version)


def production_version_at(db: Database, name: str, when: datetime) -> ModelVersion | None:
    """The version of ``name`` that was in production at ``when`` (from the history).

    Args:
        name: the model's name.
        when: an aware datetime (UTC or any zone).

    Returns:
        That version as it is now (its ``stage`` is today's), or None if none served.

    Raises:
        InvalidInput: ``when`` has no time zone.
    """
    if when.tzinfo is None:
        raise InvalidInput(f"The time {when.isoformat()} has no time zone.",
                           hint="Pass an aware datetime, e.g. 2026-05-03T14:00:00+00:00.")
    with db.session() as s:
        version_id = production_from_history(_name_transitions(s, name, when), when)
        return _to_version(_get_row(s, version_id)) if version_id is not None else None
