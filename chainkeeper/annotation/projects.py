"""Annotation projects: the rows of a dataset version, as items in annotators' queues.

An annotation project belongs to the project of the dataset version it labels (the
dataset's name): roles bound to that project hold in it, and every service here decides
there (``authorize_in_project``).

``create_project`` takes a dataset version (all rows, or those a filter keeps), makes an
item per row, picks the overlap items (``overlap_fraction`` of them, seeded) that ``k``
annotators each label to measure agreement, and orders the queue:

- ``random``: a seeded shuffle;
- ``metadata``: by a row column (``label``, ``split``, ``source_line``, ``length``, or a
  key of the row's ``meta``), ascending;
- ``active``: by active-learning score once pre-labels exist (``prelabel``), most
  informative first; random until then.

``assign_batches`` deals the unassigned items, in queue order, to annotators: each
ordinary item to one of them, each overlap item to ``k`` different ones, round robin,
numbered in batches of ``batch_size`` per annotator.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.annotation.schemas import NAME_PATTERN, LabelSchema, get_schema
from chainkeeper.annotation.tables import (
    SqlAnnotationItem,
    SqlAnnotationProject,
    SqlAssignment,
)
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.data import project_of_dataset_version, read_dataset_rows
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import (
    authorize,
    authorize_object,
    is_allowed,
    projects_allowed,
)
from chainkeeper.governance.users import get_user

if TYPE_CHECKING:
    import pyarrow as pa

    from chainkeeper.core.context import Context
    from chainkeeper.core.db import Database

__all__ = ["QueueOrder", "ProjectState", "Project", "create_project", "get_project", "list_projects",
           "find_projects", "show_project", "project_of_annotation_project", "authorize_in_project",
           "assign_batches", "change_schema", "select_rows", "queue_positions", "FILTER_KEYS"]

FILTER_KEYS = ("split", "labels", "row_ids", "text_contains", "limit")
_ROW_COLUMNS = ("label", "split", "source_line", "source_id", "row_id", "length")


class QueueOrder(enum.StrEnum):
    RANDOM = "random"
    ACTIVE = "active"
    METADATA = "metadata"


class ProjectState(enum.StrEnum):
    OPEN = "open"
    EXPORTED = "exported"


@dataclass(frozen=True)
class Project:
    """An annotation project (mirrors ``SqlAnnotationProject``)."""

    id: int
    name: str
    dataset_version_id: int
    schema_id: int
    row_filter: dict[str, Any]
    overlap_k: int
    overlap_fraction: float
    queue_order: QueueOrder
    order_key: str | None
    seed: int
    state: ProjectState
    prelabel_model_version_id: int | None
    exported_version_id: int | None
    created_by: str
    created_at: datetime


def to_project(row: SqlAnnotationProject) -> Project:
    """The plain form of a project row (used by the other annotation modules)."""
    return Project(id=row.id, name=row.name, dataset_version_id=row.dataset_version_id, schema_id=row.schema_id,
                   row_filter=dict(row.row_filter or {}), overlap_k=row.overlap_k,
                   overlap_fraction=row.overlap_fraction, queue_order=QueueOrder(row.queue_order),
                   order_key=row.order_key, seed=row.seed, state=ProjectState(row.state),
                   prelabel_model_version_id=row.prelabel_model_version_id,
                   exported_version_id=row.exported_version_id, created_by=row.created_by,
                   created_at=row.created_at)


def project_row(s: Any, project_id: int) -> SqlAnnotationProject:
    """The project's row in session ``s``.

    Raises:
        NotFound: there is no such project.
    """
    row: SqlAnnotationProject | None = s.get(SqlAnnotationProject, project_id)
    if row is None:
        raise NotFound(f"There is no annotation project with id {project_id}.",
                       hint="List projects with 'chainkeeper annotate projects'.")
    return row


def select_rows(table: pa.Table, row_filter: Mapping[str, Any], *, seed: int) -> list[dict[str, Any]]:
    """The rows of a snapshot that a filter keeps, in row order (pure).

    Args:
        table: a dataset version's rows.
        row_filter: any of ``split`` (name), ``labels`` (list: keep rows with one of
            these labels), ``row_ids`` (list), ``text_contains`` (case-insensitive),
            ``limit`` (a seeded random sample of this many of the kept rows).
        seed: the seed of the ``limit`` sample.

    Raises:
        InvalidInput: an unknown filter key or a bad value.
    """
    unknown = sorted(set(row_filter) - set(FILTER_KEYS))
    if unknown:
        raise InvalidInput(f"Unknown filter key(s): {', '.join(unknown)}.", hint=f"Use: {', '.join(FILTER_KEYS)}.")
    rows: list[dict[str, Any]] = table.to_pylist()
    if (split := row_filter.get("split")) is not None:
        rows = [r for r in rows if r.get("split") == split]
    if (labels := row_filter.get("labels")) is not None:
        if not isinstance(labels, list):
            raise InvalidInput(f"Filter 'labels' must be a list, got {labels!r}.")
        rows = [r for r in rows if r.get("label") in set(labels)]
    if (row_ids := row_filter.get("row_ids")) is not None:
        if not isinstance(row_ids, list) or not all(isinstance(i, int) for i in row_ids):
            raise InvalidInput(f"Filter 'row_ids' must be a list of integers, got {row_ids!r}.")
        rows = [r for r in rows if r["row_id"] in set(row_ids)]
    if (needle := row_filter.get("text_contains")) is not None:
        rows = [r for r in rows if str(needle).casefold() in r["text"].casefold()]
    if (limit := row_filter.get("limit")) is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"Filter 'limit' must be a positive integer, got {limit!r}.")
        if limit < len(rows):
            keep = set(random.Random(seed).sample(range(len(rows)), limit))
            rows = [r for i, r in enumerate(rows) if i in keep]
    return rows


def _order_value(row: Mapping[str, Any], key: str) -> Any:
    if key == "length":
        return len(row["text"])
    if key in row:
        return row[key]
    meta = row.get("meta")
    return meta.get(key) if isinstance(meta, Mapping) else None


def queue_positions(rows: Sequence[Mapping[str, Any]], order: QueueOrder, *, seed: int,
                    order_key: str | None = None, scores: Sequence[float | None] | None = None) -> list[float]:
    """Each row's queue position, 0 first (pure).

    Args:
        rows: the items' rows.
        order: random, metadata (by ``order_key``) or active (by ``scores``, highest
            first; rows without a score go last, in random order).
        seed: the seed of the random order (also the tie-break of the others).
        order_key: the row column or ``meta`` key of the metadata order.
        scores: the active-learning score of each row.
    """
    shuffled = list(range(len(rows)))
    random.Random(seed).shuffle(shuffled)
    tie = {index: rank for rank, index in enumerate(shuffled)}
    if order == QueueOrder.METADATA:
        assert order_key is not None  # checked by create_project
        def key(i: int) -> tuple[Any, ...]:
            value = _order_value(rows[i], order_key)
            return (value is None, str(type(value).__name__), value if value is not None else 0, tie[i])
        ranked = sorted(range(len(rows)), key=key)
    elif order == QueueOrder.ACTIVE and scores is not None:
        ranked = sorted(range(len(rows)), key=lambda i: (scores[i] is None, -(scores[i] or 0.0), tie[i]))
    else:
        ranked = shuffled
    positions = [0.0] * len(rows)
    for rank, index in enumerate(ranked):
        positions[index] = float(rank)
    return positions


def create_project(ctx: Context, *, name: str, dataset_version_id: int, schema_id: int, actor: Actor,
                   row_filter: Mapping[str, Any] | None = None, overlap_k: int = 1, overlap_fraction: float = 0.0,
                   queue_order: str = "random", order_key: str | None = None, seed: int = 13) -> Project:
    """Turn the rows of a dataset version into the items of a new project.

    Args:
        ctx: the stores.
        name: the project's unique name.
        dataset_version_id: the rows to label.
        schema_id: the label schema version to label under.
        actor: who creates it (annotation.manage in the dataset version's project).
        row_filter: which rows (see ``select_rows``); all when None.
        overlap_k: annotators per overlap item (2 or more when ``overlap_fraction`` > 0).
        overlap_fraction: share of the items labelled by ``overlap_k`` annotators.
        queue_order: "random", "active" or "metadata".
        order_key: the column of the metadata order.
        seed: the seed of the sample, the overlap choice and the random order.

    Returns:
        The project, with its items.

    Raises:
        Forbidden: the actor may not manage annotation of this dataset.
        NotFound: no such dataset version or schema.
        InvalidInput: a bad name, filter, overlap or order; an empty project (no rows
            match). Nothing is stored.
        Conflict: a project of that name exists.
    """
    authorize_object(ctx.db, actor, "annotation.manage", lambda: project_of_dataset_version(ctx.db, dataset_version_id))
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInput(f"Project name {name!r} is not valid.",
                           hint="Use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    if queue_order not in set(QueueOrder):
        raise InvalidInput(f"Unknown queue order {queue_order!r}.", hint=f"Use one of: {', '.join(QueueOrder)}.")
    if isinstance(overlap_k, bool) or not isinstance(overlap_k, int) or overlap_k < 1:
        raise InvalidInput(f"overlap_k must be a positive integer, got {overlap_k!r}.")
    if not 0.0 <= float(overlap_fraction) <= 1.0:
        raise InvalidInput(f"overlap_fraction must be between 0 and 1, got {overlap_fraction}.")
    if overlap_fraction > 0 and overlap_k < 2:
        raise InvalidInput(f"An overlap of {overlap_fraction:.0%} needs overlap_k of at least 2, got {overlap_k}.",
                           hint="Set overlap_k to the number of annotators who label each overlap item.")
    if queue_order == QueueOrder.METADATA and not order_key:
        raise InvalidInput("A metadata order needs an order key.",
                           hint=f"Name a row column ({', '.join(_ROW_COLUMNS)}) or a key of the rows' meta.")
    schema = get_schema(ctx.db, schema_id)
    rows = select_rows(read_dataset_rows(ctx, dataset_version_id), row_filter or {}, seed=seed)
    if not rows:
        raise InvalidInput(f"The project would be empty: no row of dataset version {dataset_version_id} matches "
                           f"the filter {dict(row_filter or {})}.", hint="Loosen the filter or pick another version.")
    if queue_order == QueueOrder.METADATA and all(_order_value(r, str(order_key)) is None for r in rows):
        raise InvalidInput(f"No row has a value for the order key {order_key!r}.",
                           hint=f"Name a row column ({', '.join(_ROW_COLUMNS)}) or a key of the rows' meta.")
    positions = queue_positions(rows, QueueOrder(queue_order), seed=seed, order_key=order_key)
    n_overlap = round(len(rows) * float(overlap_fraction))
    overlap = set(random.Random(seed + 1).sample(range(len(rows)), n_overlap))
    with ctx.db.session() as s:
        if s.scalar(sa.select(SqlAnnotationProject.id).where(SqlAnnotationProject.name == name)) is not None:
            raise Conflict(f"An annotation project named {name!r} exists already.", hint="Pick another name.")
        project = SqlAnnotationProject(
            name=name, dataset_version_id=dataset_version_id, schema_id=schema.id, row_filter=dict(row_filter or {}),
            overlap_k=overlap_k, overlap_fraction=float(overlap_fraction), queue_order=str(queue_order),
            order_key=order_key, seed=seed, state=ProjectState.OPEN.value, created_by=actor.name)
        s.add(project)
        s.flush()
        s.add_all(SqlAnnotationItem(project_id=project.id, row_id=r["row_id"], text=r["text"], position=positions[i],
                                    overlap=i in overlap, state="open") for i, r in enumerate(rows))
        append_entry(s, actor, "annotation.project.create", "annotation_project", project.id,
                     after={"name": name, "dataset_version_id": dataset_version_id, "schema_id": schema.id},
                     details={"items": len(rows), "overlap_items": n_overlap, "overlap_k": overlap_k,
                              "queue_order": str(queue_order), "filter": dict(row_filter or {})})
        return to_project(project)


def get_project(db: Database, project_id: int) -> Project:
    """One project.

    Raises:
        NotFound: there is no such project.
    """
    with db.session(readonly=True) as s:
        return to_project(project_row(s, project_id))


def list_projects(db: Database, *, annotator: str | None = None) -> list[Project]:
    """Projects, newest first; with ``annotator``, only those with items in their queue."""
    query = sa.select(SqlAnnotationProject).order_by(SqlAnnotationProject.id.desc())
    if annotator is not None:
        query = query.where(SqlAnnotationProject.id.in_(
            sa.select(SqlAssignment.project_id).where(SqlAssignment.annotator == annotator)))
    with db.session(readonly=True) as s:
        return [to_project(r) for r in s.scalars(query)]


def project_of_annotation_project(db: Database, project_id: int) -> str:
    """The project an annotation project belongs to: its dataset version's.

    Raises:
        NotFound: there is no such annotation project.
    """
    return project_of_dataset_version(db, get_project(db, project_id).dataset_version_id)


def authorize_in_project(ctx: Context, actor: Actor, action: str, project_id: int, *,
                         also: str | None = None) -> Project:
    """Authorise ``action`` on an annotation project, in its dataset's project; return it.

    Args:
        also: another action that is enough instead (a steward's pages take
            annotation.adjudicate or annotation.manage); a refusal names ``action``.

    Raises:
        Forbidden: the actor may not (a caller without the action anywhere is refused
            before the project is looked up). NotFound: there is no such project.
    """
    if also is not None:
        try:
            return authorize_in_project(ctx, actor, also, project_id)
        except Forbidden:
            pass
    authorize_object(ctx.db, actor, action, lambda: project_of_annotation_project(ctx.db, project_id))
    return get_project(ctx.db, project_id)


def find_projects(ctx: Context, *, actor: Actor, dataset: str | None = None) -> list[Project]:
    """The projects the actor works on, newest first: those of the datasets where they
    manage annotation, and those with items in their own queue.

    Args:
        ctx: the stores.
        actor: who asks (system.read).
        dataset: only the projects labelling versions of this dataset (the actor must be
            allowed to read it).

    Raises:
        Forbidden: the actor may read nothing (system.read), or not dataset ``dataset``.
    """
    if dataset is not None:
        authorize(ctx.db, actor, "system.read", project=dataset)
    else:
        projects_allowed(ctx.db, actor, "system.read")
    found = []
    for project in list_projects(ctx.db):
        scope = project_of_dataset_version(ctx.db, project.dataset_version_id)
        if dataset is None or scope == dataset:
            found.append((project, scope))
    queued = {p.id for p in list_projects(ctx.db, annotator=actor.name)}
    return [p for p, scope in found
            if p.id in queued or is_allowed(ctx.db, actor, "annotation.manage", project=scope)]


def show_project(ctx: Context, project_id: int, *, actor: Actor) -> tuple[Project, LabelSchema]:
    """A project and the schema version it labels under (system.read in its project).

    Raises:
        Forbidden: the actor may not read the project's dataset. NotFound: no such project.
    """
    project = authorize_in_project(ctx, actor, "system.read", project_id)
    return project, get_schema(ctx.db, project.schema_id)


def _annotator_actor(db: Database, name: str) -> Actor:
    user = get_user(db, name)
    if user.disabled:
        raise InvalidInput(f"User {name!r} is disabled.", hint="Assign the queue to an active annotator.")
    roles = frozenset(r for r in user.roles if "@" not in r)
    scoped = frozenset(tuple(r.split("@", 1)) for r in user.roles if "@" in r)
    return Actor(name=name, roles=roles, scoped_roles=scoped)  # type: ignore[arg-type]


def assign_batches(ctx: Context, project_id: int, *, annotators: Sequence[str], actor: Actor,
                   batch_size: int = 50) -> dict[str, int]:
    """Deal the project's unassigned items to annotators, in queue order.

    Args:
        ctx: the stores.
        project_id: the project.
        annotators: user names; each must be allowed annotation.label (in this project).
        actor: who assigns (annotation.manage in the project).
        batch_size: items per batch and annotator.

    Returns:
        annotator -> number of items newly assigned.

    Raises:
        Forbidden: the actor may not manage annotation.
        NotFound: no such project or user.
        InvalidInput: no annotators, a repeated one, one who may not label, fewer
            annotators than the overlap needs, a bad batch size.
        Conflict: the project is exported (closed).
    """
    project = authorize_in_project(ctx, actor, "annotation.manage", project_id)
    names = list(annotators)
    if not names or len(set(names)) != len(names):
        raise InvalidInput(f"Give one or more distinct annotators, got {names!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be a positive integer, got {batch_size!r}.")
    scope = project_of_dataset_version(ctx.db, project.dataset_version_id)
    for name in names:
        if not is_allowed(ctx.db, _annotator_actor(ctx.db, name), "annotation.label", project=scope):
            raise InvalidInput(f"User {name!r} may not label (annotation.label) in project {scope!r}.",
                               hint="Grant them the annotator role first: chainkeeper users grant NAME annotator.")
    with ctx.db.session() as s:
        row = project_row(s, project_id)
        if row.state != ProjectState.OPEN:
            raise Conflict(f"Project {row.name!r} is {row.state}; its queues are closed.")
        if row.overlap_fraction > 0 and len(names) < row.overlap_k:
            raise InvalidInput(f"Project {row.name!r} has each overlap item labelled by {row.overlap_k} annotators; "
                               f"{len(names)} given.", hint=f"Give at least {row.overlap_k} annotators.")
        items = s.execute(sa.select(SqlAnnotationItem.id, SqlAnnotationItem.overlap)
                          .where(SqlAnnotationItem.project_id == project_id)
                          .order_by(SqlAnnotationItem.position, SqlAnnotationItem.id)).all()
        have: dict[int, set[str]] = {}
        for item_id, who in s.execute(sa.select(SqlAssignment.item_id, SqlAssignment.annotator)
                                      .where(SqlAssignment.project_id == project_id)):
            have.setdefault(item_id, set()).add(who)
        counts = {n: s.scalar(sa.select(sa.func.count()).select_from(SqlAssignment).where(
            SqlAssignment.project_id == project_id, SqlAssignment.annotator == n)) or 0 for n in names}
        added = dict.fromkeys(names, 0)
        turn = 0
        for item_id, is_overlap in items:
            need = (row.overlap_k if is_overlap else 1) - len(have.get(item_id, ()))
            chosen: list[str] = []
            for step in range(len(names)):
                if len(chosen) == need:
                    break
                name = names[(turn + step) % len(names)]
                if name not in have.get(item_id, ()):
                    chosen.append(name)
            turn = (turn + max(len(chosen), 1)) % len(names)
            for name in chosen:
                s.add(SqlAssignment(project_id=project_id, item_id=item_id, annotator=name,
                                    batch=counts[name] // batch_size + 1, assigned_by=actor.name))
                counts[name] += 1
                added[name] += 1
        append_entry(s, actor, "annotation.assign", "annotation_project", project_id,
                     details={"assigned": added, "batch_size": batch_size})
        return added


def change_schema(ctx: Context, project_id: int, schema_id: int, *, actor: Actor) -> Project:
    """Move a project to another version of its label schema.

    Answers already given keep the schema version they were made under (and their
    values: a label the new version dropped stays in those answers); answers saved from
    now on are checked against, and recorded with, the new version.

    Args:
        ctx: the stores.
        project_id: the project.
        schema_id: a version of the same schema (same name and kind).
        actor: the data steward (annotation.manage).

    Raises:
        Forbidden, NotFound; InvalidInput: a schema of another name or kind;
        Conflict: the project is exported.
    """
    project = authorize_in_project(ctx, actor, "annotation.manage", project_id)
    old, new = get_schema(ctx.db, project.schema_id), get_schema(ctx.db, schema_id)
    if (new.name, new.kind) != (old.name, old.kind):
        raise InvalidInput(f"Project {project.name!r} is labelled under {old.name} ({old.kind}); schema id {schema_id} "
                           f"is {new.name} ({new.kind}).",
                           hint=f"Pick a version of {old.name}, or start a new project for another schema.")
    with ctx.db.session() as s:
        row = project_row(s, project_id)
        if row.state != ProjectState.OPEN:
            raise Conflict(f"Project {row.name!r} is {row.state}; its schema is final.")
        row.schema_id = new.id
        append_entry(s, actor, "annotation.project.schema", "annotation_project", project_id,
                     before={"schema_id": old.id}, after={"schema_id": new.id},
                     details={"from": f"{old.name} v{old.version}", "to": f"{new.name} v{new.version}"})
        return to_project(row)
