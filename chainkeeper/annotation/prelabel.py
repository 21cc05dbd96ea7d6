"""Model-assisted labelling: pre-labels from a registered model version, and the
active-learning order of the queue.

``prelabel_project`` runs a model version over the project's items in chunks, stores
each item's predicted label with its confidence and top labels (shown on the labelling
page as a suggestion), and its uncertainty score under an active-learning strategy
(``active.uncertainty``: least confidence, margin or entropy). In a project ordered by
``active`` the queue is then re-ranked, most uncertain first, so annotators label what
the model would learn most from. Items already pre-labelled by the same version are
skipped, so a cancelled or crashed job resumes where it stopped.

It runs as the ``prelabel`` job (``run_prelabel_job``), or directly for small projects.

The model comes from stages above this one (the registry holds it, serving loads it), so
annotation does not name them: the chain layer registers the ``annotation.prelabel_model``
hook (``PRELABEL_MODEL_HOOK``), which gives a ``PrelabelModel`` for a model version id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import sqlalchemy as sa

from chainkeeper.annotation.active import uncertainty
from chainkeeper.annotation.hooks import PRELABEL_MODEL_HOOK
from chainkeeper.annotation.projects import (
    Project,
    QueueOrder,
    authorize_in_project,
    get_project,
    project_of_annotation_project,
    project_row,
    queue_positions,
)
from chainkeeper.annotation.schemas import get_schema
from chainkeeper.annotation.tables import SqlAnnotationItem
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import Job, JobHandle, submit_job
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["JOB_KIND", "STRATEGIES", "PrelabelModel", "Suggestion", "prelabel_project",
           "submit_prelabel", "run_prelabel_job", "attach_prelabels"]

JOB_KIND = "prelabel"
STRATEGIES = ("least_confidence", "margin", "entropy")
# Items per model call and per write: bounds memory and the time a cancel waits.
CHUNK = 64


class Suggestion(Protocol):
    """A model's answer for one text: its label, that label's probability, the top labels' probabilities."""

    label: str
    score: float
    scores: dict[str, float]


class PrelabelModel(Protocol):
    """A registered model version as pre-labelling uses it (what ``PRELABEL_MODEL_HOOK`` returns).

    The hook raises NotFound at once for an unknown model version; the weights load on
    the first call, so checking a request before queueing a job stays cheap.
    """

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, list[Suggestion]]:
        """Class probabilities of the texts (texts x labels, rows summing to 1) and each one's suggestion."""
        ...


def _check(ctx: Context, project_id: int, model_version_id: int, actor: Actor,
           strategy: str) -> tuple[Project, PrelabelModel]:
    project = authorize_in_project(ctx, actor, "annotation.manage", project_id)
    if strategy not in STRATEGIES:
        raise InvalidInput(f"Unknown active-learning strategy {strategy!r}.",
                           hint=f"Use one of: {', '.join(STRATEGIES)}.")
    model: PrelabelModel = ctx.wiring.hook(PRELABEL_MODEL_HOOK)(ctx, model_version_id)
    return project, model


def prelabel_project(ctx: Context, project_id: int, model_version_id: int, actor: Actor, *,
                     strategy: str = "least_confidence", job: JobHandle | None = None) -> dict[str, Any]:
    """Pre-label a project's items with a model version and score them for active learning.

    Args:
        ctx: the stores.
        project_id: the project.
        model_version_id: a registered model version (any stage).
        actor: the data steward (annotation.manage in the project's dataset).
        strategy: "least_confidence", "margin" or "entropy".
        job: the job running this, for progress and cancel (None when called directly).

    Returns:
        ``{"items", "prelabelled", "in_schema", "strategy", "reordered"}``.

    Raises:
        Forbidden, NotFound (project or model version); InvalidInput: an unknown
        strategy; JobCancelled: the job was cancelled (what was stored stays, and a
        rerun resumes).
    """
    project, model = _check(ctx, project_id, model_version_id, actor, strategy)
    schema_labels = set(get_schema(ctx.db, project.schema_id).label_names)
    with ctx.db.session(readonly=True) as s:
        every = s.execute(sa.select(SqlAnnotationItem.id, SqlAnnotationItem.text, SqlAnnotationItem.prelabel)
                          .where(SqlAnnotationItem.project_id == project_id).order_by(SqlAnnotationItem.id)).all()
    total = len(every)
    todo = [(i, t) for i, t, p in every if not (p and p.get("model_version_id") == model_version_id
                                               and p.get("strategy") == strategy)]
    done = total - len(todo)
    in_schema = 0
    for start in range(0, len(todo), CHUNK):
        if job is not None:
            job.check_cancelled()
        chunk = todo[start:start + CHUNK]
        probs, predictions = model([t for _, t in chunk])
        probs = probs / probs.sum(axis=1, keepdims=True)  # float32 rounding: rows sum to 1 within 1e-7
        scores = uncertainty(np.asarray(probs, dtype=float), strategy)  # type: ignore[arg-type]
        with ctx.db.session() as s:
            for (item_id, _), prediction, score in zip(chunk, predictions, scores, strict=True):
                item = s.get(SqlAnnotationItem, item_id)
                assert item is not None  # items are never deleted while a project exists
                item.prelabel = {"label": prediction.label, "confidence": round(prediction.score, 6),
                                 "scores": prediction.scores, "in_schema": prediction.label in schema_labels,
                                 "model_version_id": model_version_id, "strategy": strategy}
                item.al_score = float(score)
                in_schema += prediction.label in schema_labels
        done += len(chunk)
        if job is not None:
            job.progress(100.0 * done / max(total, 1), f"pre-labelled {done}/{total} items")
    reordered = project.queue_order == QueueOrder.ACTIVE
    with ctx.db.session() as s:
        items = s.scalars(sa.select(SqlAnnotationItem).where(SqlAnnotationItem.project_id == project_id)
                          .order_by(SqlAnnotationItem.id)).all()
        if reordered:
            positions = queue_positions([{"text": i.text} for i in items], QueueOrder.ACTIVE, seed=project.seed,
                                        scores=[i.al_score for i in items])
            for item, position in zip(items, positions, strict=True):
                item.position = position
        row = project_row(s, project_id)
        row.prelabel_model_version_id = model_version_id
        result = {"items": total, "prelabelled": len(todo), "in_schema": in_schema, "strategy": strategy,
                  "reordered": reordered}
        append_entry(s, actor, "annotation.prelabel", "annotation_project", project_id,
                     after={"prelabel_model_version_id": model_version_id}, details=result)
    return result


def submit_prelabel(ctx: Context, project_id: int, model_version_id: int, actor: Actor, *,
                    strategy: str = "least_confidence") -> Job:
    """Queue a ``prelabel`` job (checks the request first, so a bad one is never queued).

    Raises:
        As ``prelabel_project`` before it runs.
    """
    _check(ctx, project_id, model_version_id, actor, strategy)
    return submit_job(ctx, JOB_KIND, {"project_id": project_id, "model_version_id": model_version_id,
                                         "strategy": strategy, "roles": sorted(actor.roles),
                                         "scoped_roles": sorted(map(list, actor.scoped_roles))},
                      actor=actor.name, project=project_of_annotation_project(ctx.db, project_id))


def run_prelabel_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """The ``prelabel`` job handler (``chain.jobs.job_table``): runs as the requester, with the roles they had."""
    p = job.params
    actor = Actor(job.job.created_by, frozenset(p.get("roles", [])),
                  frozenset(tuple(x) for x in p.get("scoped_roles", [])), request_id=f"job:{job.id}")
    return prelabel_project(ctx, int(p["project_id"]), int(p["model_version_id"]), actor,
                            strategy=str(p.get("strategy", "least_confidence")), job=job)


def attach_prelabels(ctx: Context, project_id: int, labels: Mapping[int, str], *, source: str,
                     actor: Actor) -> int:
    """Attach labels that people already gave (not a model's) as the pre-labels of a project's items.

    The support assistant's hand-offs are the case: a support agent named the intent of a
    customer message; a reviewer confirms or corrects it in the project.

    Args:
        project_id: the annotation project.
        labels: row id (of the project's dataset version) -> label; each must be in the schema.
        source: who gave them, e.g. ``support_agent:ann``; shown with the pre-label.
        actor: annotation.manage in the project's dataset's project.

    Returns:
        How many items got a pre-label.

    Raises:
        Forbidden, NotFound: as ``authorize_in_project``. InvalidInput: a label outside the
            schema; nothing is stored.
    """
    authorize_in_project(ctx, actor, "annotation.manage", project_id)
    project = get_project(ctx.db, project_id)
    known = set(get_schema(ctx.db, project.schema_id).label_names)
    unknown = sorted({label for label in labels.values() if label not in known})
    if unknown:
        raise InvalidInput(f"Labels {unknown} are not in the project's schema.",
                           hint=f"Labels: {', '.join(sorted(known))}.")
    attached = 0
    with ctx.db.session() as s:
        for item in s.scalars(sa.select(SqlAnnotationItem).where(SqlAnnotationItem.project_id == project_id,
                                                                 SqlAnnotationItem.row_id.in_(list(labels)))):
            item.prelabel = {"label": labels[item.row_id], "confidence": 1.0, "scores": {labels[item.row_id]: 1.0},
                             "in_schema": True, "source": source}
            attached += 1
        append_entry(s, actor, "annotation.prelabel", "annotation_project", project_id,
                     details={"items": attached, "source": source})
    return attached
