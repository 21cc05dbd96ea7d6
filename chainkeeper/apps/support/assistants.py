"""Support assistants as registered objects: who owns one, what answers for it, how it decides.

A support assistant names a *deployment* whose classifier finds a message's intent and a
*released knowledge-base version* its answers come from. Both are the chain's gated
objects: the model behind the deployment reached production through the promotion gate
and the deployment's approval, and the knowledge base is a dataset version a data
steward's approver released. Changing the assistant (``change_support_app``) can only
point it at another such deployment or released version, so every change of what it
answers passes the same release gates; each change is in the ledger with before and after.

Out-of-scope detection (``scope.py``, measured by ``benchmarks/support_oos.py``) needs a
threshold per model version: ``calibrate_support_app`` fits it on the in-scope *dev*
split of the version's training data (the energy score when the runtime gives the logits'
log-partition, else 1 − the top probability) with the rule "at most one point of dev
accuracy lost", and stores it with the assistant. A version on the route without one
(a rollout since) falls back to ``FALLBACK_CONFIDENCE`` until calibrated again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from chainkeeper.apps.support.scope import fit_threshold
from chainkeeper.apps.support.tables import SqlSupportApp
from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.data import get_dataset_version, read_dataset_rows
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize_object, projects_allowed
from chainkeeper.registry import get_model_version
from chainkeeper.serving import (
    MAX_TEXTS_PER_CALL,
    TAGGER_TASK,
    current_route,
    get_deployment,
    get_deployment_by_name,
    project_of_deployment,
)
from chainkeeper.training import get_run

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.serving import PredictorCache

__all__ = ["SupportApp", "DEFAULT_SETTINGS", "create_support_app", "change_support_app", "calibrate_support_app",
           "get_support_app", "find_support_apps", "show_support_app", "project_of_support_app"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# What an assistant decides with, unless its owner says otherwise (``settings``).
DEFAULT_SETTINGS: dict[str, float | int] = {
    "top_k": 3,                 # articles returned with an answer
    "clarify_margin": 0.15,     # top-1 minus top-2 intent probability below this: ask which one
    # The intent's best article scoring below this: ask to clarify. The hybrid score runs lower
    # on Chinese (median on-topic top hit 0.24 vs 0.66 in English, the sample's test questions).
    "min_article_score": 0.30,
    "min_article_score_zh": 0.12,
    "max_clarifications": 1,    # after this many clarifications an unsure message is handed over
}
# The confidence below which a version with no fitted threshold hands a message over.
FALLBACK_CONFIDENCE = 0.5
# A model folder's description (``training.model.META_FILE``, named here so that reading an
# assistant's labels does not load torch).
META_FILE = "chainkeeper.json"
# Dev rows the threshold is fitted on, at most (a seeded sample beyond it).
MAX_DEV_ROWS = 5000


@dataclass(frozen=True)
class SupportApp:
    id: int
    name: str
    project: str
    owner: str
    deployment: str
    deployment_id: int
    knowledge_version_id: int
    scope: dict[str, Any]  # str(model_version_id) -> fitted ScopeThreshold fields
    settings: dict[str, Any]
    state: str
    created_by: str
    created_at: datetime
    updated_at: datetime

    def setting(self, key: str) -> Any:
        return self.settings.get(key, DEFAULT_SETTINGS[key])


def _to_app(db: Database, row: SqlSupportApp) -> SupportApp:
    return SupportApp(id=row.id, name=row.name, project=row.project, owner=row.owner,
                      deployment=get_deployment(db, row.deployment_id).name, deployment_id=row.deployment_id,
                      knowledge_version_id=row.knowledge_version_id, scope=dict(row.scope or {}),
                      settings=dict(row.settings or {}), state=row.state, created_by=row.created_by,
                      created_at=row.created_at, updated_at=row.updated_at)


def _load(s: sa.orm.Session, name: str) -> SqlSupportApp:
    row = s.scalar(sa.select(SqlSupportApp).where(SqlSupportApp.name == name))
    if row is None:
        raise NotFound(f"There is no support assistant named {name!r}.",
                       hint="List them with 'chainkeeper apps support list' (GET /api/apps/support).")
    return row


def get_support_app(db: Database, name: str) -> SupportApp:
    """The assistant ``name`` (no authorisation: for services that decided already).

    Raises:
        NotFound: no such assistant.
    """
    with db.session(readonly=True) as s:
        row = _load(s, name)
        s.expunge(row)
    return _to_app(db, row)


def project_of_support_app(db: Database, name: str) -> str:
    """An assistant's project: its deployment's (the intent classifier's data), fixed at creation.

    Raises:
        NotFound: no such assistant.
    """
    return get_support_app(db, name).project


def show_support_app(ctx: Context, name: str, *, actor: Actor) -> SupportApp:
    """One assistant, for someone who may read its conversations there (``support.read``).

    Raises:
        Forbidden: not allowed. NotFound: no such assistant.
    """
    authorize_object(ctx.db, actor, "support.read", lambda: project_of_support_app(ctx.db, name))
    return get_support_app(ctx.db, name)


def find_support_apps(ctx: Context, *, actor: Actor) -> list[SupportApp]:
    """The assistants in the projects where ``actor`` may read conversations, by name.

    Raises:
        Forbidden: the actor may read them nowhere.
    """
    projects = projects_allowed(ctx.db, actor, "support.read")
    query = sa.select(SqlSupportApp).order_by(SqlSupportApp.name)
    if projects is not None:
        query = query.where(SqlSupportApp.project.in_(sorted(projects)))
    with ctx.db.session(readonly=True) as s:
        rows = list(s.scalars(query))
        s.expunge_all()
    return [_to_app(ctx.db, row) for row in rows]


# --- checks ------------------------------------------------------------------------------


def _check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if key not in DEFAULT_SETTINGS:
            raise InvalidInput(f"Unknown assistant setting {key!r}.", hint=f"Settings: {', '.join(DEFAULT_SETTINGS)}.")
        kind = type(DEFAULT_SETTINGS[key])
        try:
            number = kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        bounds = (1, 20) if key == "top_k" else (0, 10) if key == "max_clarifications" else (0.0, 1.0)
        hint = f"Give {key} a value from {bounds[0]} to {bounds[1]} (default {DEFAULT_SETTINGS[key]})."
        if number is None or (kind is int and float(value) != int(float(value))):
            raise InvalidInput(f"Setting {key} must be a{'n integer' if kind is int else ' number'}, got {value!r}.",
                               hint=hint)
        if not bounds[0] <= number <= bounds[1]:
            raise InvalidInput(f"Setting {key} must be between {bounds[0]} and {bounds[1]}, got {value!r}.",
                               hint=hint)
        out[key] = number
    return out


def classifier_labels(ctx: Context, model_version_id: int) -> list[str]:
    """The intents a model version knows, read from its stored folder.

    Raises:
        InvalidInput: the version is a token tagger, not an intent classifier.
        NotFound: no such version. ArtifactError: its files are missing.
    """
    version = get_model_version(ctx.db, model_version_id)
    meta = json.loads(ctx.artifacts.get_bytes(ctx.artifacts.read_manifest(version.model_artifact)[META_FILE]))
    if meta.get("task") == TAGGER_TASK:
        raise InvalidInput(f"Model version {version.label} is a token tagger, not an intent classifier: a support "
                           "assistant needs a deployment that labels whole messages.",
                           hint="Name a deployment of a text-classification model version.")
    return list(meta["labels"])


def _check_deployment(ctx: Context, deployment: str) -> tuple[int, list[str]]:
    dep = get_deployment_by_name(ctx.db, deployment)
    if dep.state != "active":
        raise Conflict(f"Deployment {deployment!r} is {dep.state}, not active.",
                       hint="Name an active deployment ('chainkeeper deploy list').")
    return dep.id, classifier_labels(ctx, dep.model_version_id)


def _check_knowledge(ctx: Context, version_id: int, labels: list[str], actor: Actor) -> dict[str, Any]:
    """Build (or reuse) the knowledge base's index; its articles must answer some of ``labels``."""
    # FAISS and the sentence model load here, not when the module is imported: listing or
    # showing assistants (the CLI's read commands) needs neither.
    from chainkeeper.apps.support.index import build_knowledge_index

    info = build_knowledge_index(ctx, version_id, actor=actor)  # released, a knowledge base, data.read
    intents = set(read_dataset_rows(ctx, version_id).column("label").to_pylist())
    answered = intents & set(labels)
    if not answered:
        raise InvalidInput(f"No article of knowledge-base version {version_id} answers an intent the classifier "
                           f"knows ({', '.join(sorted(labels)[:8])}…).",
                           hint="Label the articles with the classifier's intents, or pick the matching "
                           "knowledge base.")
    return {"index": info.index_artifact, "articles": info.articles,
            "intents_without_article": sorted(set(labels) - intents)}


# --- creating and changing -----------------------------------------------------------------


def create_support_app(ctx: Context, predictors: PredictorCache, *, name: str, deployment: str,
                       knowledge_version_id: int, actor: Actor, owner: str | None = None,
                       settings: Mapping[str, Any] | None = None) -> SupportApp:
    """Register a support assistant, build its knowledge index and fit its out-of-scope threshold.

    Args:
        predictors: loaded models (the server's, or a fresh ``PredictorCache``).
        name: lower-case letters, digits, '-' or '_' (it is in the URL).
        deployment: the active deployment of an intent classifier.
        knowledge_version_id: a released knowledge-base version (``knowledge.import_knowledge_base``).
        actor: app.manage in the deployment's project, and data.read in the knowledge base's.
        owner: who answers for it (default the actor).
        settings: overrides of ``DEFAULT_SETTINGS``.

    Raises:
        InvalidInput: a bad name or setting; a tagger's deployment; a knowledge base that
            answers none of the classifier's intents. Conflict: the name is taken; the
            deployment is not active; the knowledge base is not released.
        NotFound: no such deployment or version. Forbidden: not allowed. Nothing is stored then.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"Assistant name {name!r} is not valid.",
                           hint="Use 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit.")
    project = authorize_object(ctx.db, actor, "app.manage", lambda: project_of_deployment(ctx.db, deployment))
    assert project is not None
    chosen = _check_settings(settings)
    deployment_id, labels = _check_deployment(ctx, deployment)
    index = _check_knowledge(ctx, knowledge_version_id, labels, actor)
    with ctx.db.session() as s:
        if s.scalar(sa.select(SqlSupportApp.id).where(SqlSupportApp.name == name)) is not None:
            raise Conflict(f"A support assistant named {name!r} exists already.", hint="Pick another name.")
        row = SqlSupportApp(name=name, project=project, owner=owner or actor.name, deployment_id=deployment_id,
                            knowledge_version_id=knowledge_version_id, scope={}, settings=chosen, state="active",
                            created_by=actor.name)
        s.add(row)
        s.flush()
        append_entry(s, actor, "support.app.create", "support_app", row.id,
                     after={"name": name, "deployment": deployment, "knowledge_version_id": knowledge_version_id,
                            "settings": chosen, "owner": row.owner}, details={"index": index})
    calibrate_support_app(ctx, predictors, name, actor=actor)
    return get_support_app(ctx.db, name)


def change_support_app(ctx: Context, predictors: PredictorCache, name: str, *, actor: Actor,
                       deployment: str | None = None, knowledge_version_id: int | None = None,
                       settings: Mapping[str, Any] | None = None) -> SupportApp:
    """Point an assistant at another deployment or released knowledge base, or change its settings.

    Only an active classifier deployment (its versions went through the promotion gate and
    the deployment's approval) or a released knowledge-base version (a data steward's
    approver released it) can be named, so a change passes the same gates as the parts.
    A new deployment must stay in the assistant's project. The threshold is fitted again
    for a new deployment.

    Raises:
        As ``create_support_app``; InvalidInput: nothing to change, or a deployment of another project.
    """
    if deployment is None and knowledge_version_id is None and not settings:
        raise InvalidInput("Nothing to change.", hint="Name a deployment, a knowledge-base version or a setting.")
    project = authorize_object(ctx.db, actor, "app.manage", lambda: project_of_support_app(ctx.db, name))
    app = get_support_app(ctx.db, name)
    chosen = _check_settings(settings)
    changes: dict[str, Any] = {}
    labels: list[str] | None = None
    if deployment is not None and deployment != app.deployment:
        if project_of_deployment(ctx.db, deployment) != project:
            raise InvalidInput(f"Deployment {deployment!r} belongs to another project than assistant {name!r} "
                               f"({project}).", hint="Create a new assistant for that project.")
        deployment_id, labels = _check_deployment(ctx, deployment)
        changes["deployment_id"] = deployment_id
    if knowledge_version_id is not None and knowledge_version_id != app.knowledge_version_id:
        if labels is None:
            labels = classifier_labels(ctx, get_deployment_by_name(ctx.db, app.deployment).model_version_id)
        changes["index"] = _check_knowledge(ctx, knowledge_version_id, labels, actor)
        changes["knowledge_version_id"] = knowledge_version_id
    with ctx.db.session() as s:
        row = _load(s, name)
        before = {"deployment_id": row.deployment_id, "knowledge_version_id": row.knowledge_version_id,
                  "settings": dict(row.settings or {})}
        if "deployment_id" in changes:
            row.deployment_id, row.scope = changes["deployment_id"], {}
        if "knowledge_version_id" in changes:
            row.knowledge_version_id = changes["knowledge_version_id"]
        row.settings = {**(row.settings or {}), **chosen}
        row.updated_at = utcnow()
        append_entry(s, actor, "support.app.change", "support_app", row.id, before=before,
                     after={"deployment_id": row.deployment_id, "knowledge_version_id": row.knowledge_version_id,
                            "settings": dict(row.settings)}, details={"index": changes.get("index")})
    if "deployment_id" in changes:
        calibrate_support_app(ctx, predictors, name, actor=actor)
    return get_support_app(ctx.db, name)


# --- out-of-scope threshold ------------------------------------------------------------------


def calibrate_support_app(ctx: Context, predictors: PredictorCache, name: str, *, actor: Actor,
                          max_loss: float = 0.01) -> dict[str, Any]:
    """Fit the out-of-scope threshold of every version on the assistant's route.

    Each version is run on the dev split of the dataset version it was trained on (at most
    ``MAX_DEV_ROWS``, a seeded sample); the threshold is the lowest that rejects at most
    ``max_loss`` of the dev rows it labels right. The energy score is used when the
    runtime reports the log-partition (measured best on BANKING77, docs/support.md),
    else 1 − confidence. Stored with the assistant, keyed by model version.

    Returns:
        model version id -> the fitted threshold's fields.

    Raises:
        Forbidden: the actor may not manage the assistant. NotFound: no assistant.
        Conflict: a version's training data has no labelled dev rows.
    """
    authorize_object(ctx.db, actor, "app.manage", lambda: project_of_support_app(ctx.db, name))
    app = get_support_app(ctx.db, name)
    route = current_route(ctx.db, app.deployment)
    fitted: dict[str, Any] = {}
    for version_id in dict.fromkeys(v for v in (route.primary_version_id, route.candidate_version_id) if v):
        fitted[str(version_id)] = _fit_version(ctx, predictors, version_id, max_loss)
    with ctx.db.session() as s:
        row = _load(s, name)
        row.scope = {**(row.scope or {}), **fitted}
        row.updated_at = utcnow()
        append_entry(s, actor, "support.app.calibrate", "support_app", row.id, after={"scope": fitted})
    return fitted


def _fit_version(ctx: Context, predictors: PredictorCache, version_id: int, max_loss: float) -> dict[str, Any]:
    version = get_model_version(ctx.db, version_id)
    dataset_version_id = get_run(ctx.db, version.run_id).dataset_version_id
    table = read_dataset_rows(ctx, dataset_version_id, split="dev")
    rows = [(t, y) for t, y in zip(table.column("text").to_pylist(), table.column("label").to_pylist(), strict=True)
            if y]
    if not rows:
        dataset = get_dataset_version(ctx.db, dataset_version_id)
        raise Conflict(f"Model version {version.label} was trained on {dataset.name} v{dataset.version}, which has no "
                       "labelled dev rows to fit the out-of-scope threshold on.",
                       hint="Train on a dataset version with a dev split (the default split makes one).")
    if len(rows) > MAX_DEV_ROWS:
        picked = np.random.default_rng(13).choice(len(rows), MAX_DEV_ROWS, replace=False)
        rows = [rows[i] for i in sorted(picked)]
    predictor = predictors.get(version)
    answers = []
    for start in range(0, len(rows), MAX_TEXTS_PER_CALL):
        answers += predictor.predict([t for t, _ in rows[start:start + MAX_TEXTS_PER_CALL]])
    correct = [a.label == y for a, (_, y) in zip(answers, rows, strict=True)]
    partitions = [a.log_partition for a in answers]
    if all(p is not None for p in partitions):
        scorer, scores = "energy", [-float(p) for p in partitions if p is not None]
    else:
        scorer, scores = "msp", [1.0 - float(a.score) for a in answers]
    threshold = fit_threshold(scorer, scores, correct=correct, max_loss=max_loss, model_version_id=version_id)
    return {**threshold.to_dict(), "dev_accuracy": round(float(np.mean(correct)), 4),
            "dataset_version_id": dataset_version_id, "fitted_at": utcnow().isoformat()}
