"""Queues and answers: what an annotator sees and saves.

An annotator sees only the items assigned to them (``annotator_queue``, ``get_task``);
a data steward (annotation.manage) sees every queue. ``save_annotation`` stores an
answer (a label, a skip or a flag) under optimistic concurrency: the caller sends the
version of the annotation it last saw (0 for none); if someone saved in between (the
same annotator in another tab, say), the save is refused with ``Conflict`` and nothing
changes, so no one's work is silently overwritten.

After every save the item is settled: with as many labelled answers as it needs (1, or
k on an overlap item) it is ``done`` when they agree and ``disputed`` when they do not;
disputed items wait in the data steward's adjudication queue.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.orm import Session

from chainkeeper.annotation.projects import (
    ProjectState,
    authorize_in_project,
    project_row,
)
from chainkeeper.annotation.schemas import check_value, get_schema
from chainkeeper.annotation.tables import (
    SqlAnnotation,
    SqlAnnotationItem,
    SqlAssignment,
)
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.data import project_of_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize, is_allowed

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["ItemState", "AnswerStatus", "Answer", "Task", "annotator_queue", "get_task", "save_annotation",
           "list_answers", "settle_item"]

MAX_COMMENT = 2_000


class ItemState(enum.StrEnum):
    OPEN = "open"
    DONE = "done"
    DISPUTED = "disputed"
    ADJUDICATED = "adjudicated"


class AnswerStatus(enum.StrEnum):
    LABELLED = "labelled"
    SKIPPED = "skipped"
    FLAGGED = "flagged"


@dataclass(frozen=True)
class Answer:
    """One annotator's saved answer (mirrors ``SqlAnnotation``)."""

    id: int
    item_id: int
    annotator: str
    schema_id: int
    value: dict[str, Any]
    status: str
    flagged: bool
    comment: str
    version: int
    seconds: float | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Task:
    """An item as a queue shows it: its text, pre-label, state and the viewer's answer."""

    item_id: int
    row_id: int
    text: str
    position: int
    batch: int
    overlap: bool
    state: str
    prelabel: dict[str, Any] | None
    answer: Answer | None


def to_answer(row: SqlAnnotation) -> Answer:
    """The plain form of an annotation row (used by the other annotation modules)."""
    return Answer(id=row.id, item_id=row.item_id, annotator=row.annotator, schema_id=row.schema_id,
                  value=dict(row.value or {}), status=row.status, flagged=row.flagged, comment=row.comment,
                  version=row.version, seconds=row.seconds, created_at=row.created_at, updated_at=row.updated_at)


def _viewer(ctx: Context, actor: Actor, scope: str, annotator: str | None) -> str:
    """Whose queue ``actor`` may read: their own (annotation.label), anyone's (annotation.manage),
    in the project ``scope`` of the annotation project's dataset."""
    who = annotator or actor.name
    if who == actor.name and is_allowed(ctx.db, actor, "annotation.label", project=scope):
        return who
    authorize(ctx.db, actor, "annotation.manage", project=scope)
    return who


def annotator_queue(ctx: Context, project_id: int, actor: Actor, *, annotator: str | None = None) -> list[Task]:
    """An annotator's queue, in order (position within the queue counts from 0).

    Args:
        ctx: the stores.
        project_id: the project.
        actor: who asks (system.read in the project's dataset): an annotator gets their
            own queue; a data steward may name any ``annotator``.
        annotator: whose queue (default: the actor's).

    Raises:
        NotFound: no such project. Forbidden: the actor may not read the project, or
            asks for another annotator's queue without annotation.manage.
    """
    project = authorize_in_project(ctx, actor, "system.read", project_id)
    who = _viewer(ctx, actor, project_of_dataset_version(ctx.db, project.dataset_version_id), annotator)
    with ctx.db.session(readonly=True) as s:
        rows = s.execute(
            sa.select(SqlAnnotationItem, SqlAssignment.batch, SqlAnnotation)
            .join(SqlAssignment, SqlAssignment.item_id == SqlAnnotationItem.id)
            .outerjoin(SqlAnnotation, sa.and_(SqlAnnotation.item_id == SqlAnnotationItem.id,
                                              SqlAnnotation.annotator == who))
            .where(SqlAssignment.project_id == project_id, SqlAssignment.annotator == who)
            .order_by(SqlAssignment.batch, SqlAnnotationItem.position, SqlAnnotationItem.id)).all()
        return [Task(item_id=item.id, row_id=item.row_id, text=item.text, position=i, batch=batch,
                     overlap=item.overlap, state=item.state, prelabel=item.prelabel,
                     answer=to_answer(answer) if answer is not None else None)
                for i, (item, batch, answer) in enumerate(rows)]


def get_task(ctx: Context, project_id: int, item_id: int, actor: Actor) -> Task:
    """One item of the actor's queue.

    Raises:
        NotFound: no such item in the project. Forbidden: the actor may not label in
            the project's dataset, or the item is not assigned to them.
    """
    authorize_in_project(ctx, actor, "annotation.label", project_id)
    for task in annotator_queue(ctx, project_id, actor):
        if task.item_id == item_id:
            return task
    with ctx.db.session(readonly=True) as s:
        owner = s.scalar(sa.select(SqlAnnotationItem.project_id).where(SqlAnnotationItem.id == item_id))
    if owner != project_id:
        raise NotFound(f"Project {project_id} has no item {item_id}.", hint="Open your queue to see its items.")
    raise _not_yours(item_id, actor)


def _not_yours(item_id: int, actor: Actor) -> Forbidden:
    return Forbidden(f"Item {item_id} is not assigned to {actor.name}.",
                     hint="Annotators label only the items in their own queue; ask the data steward to assign it.")


def list_answers(ctx: Context, project_id: int, actor: Actor) -> list[Answer]:
    """Every answer in a project (annotation.manage or annotation.adjudicate in its dataset's project).

    Raises:
        Forbidden: the actor may do neither there. NotFound: no such project.
    """
    authorize_in_project(ctx, actor, "annotation.manage", project_id, also="annotation.adjudicate")
    with ctx.db.session(readonly=True) as s:
        return [to_answer(r) for r in s.scalars(sa.select(SqlAnnotation).where(SqlAnnotation.project_id == project_id)
                                                .order_by(SqlAnnotation.item_id, SqlAnnotation.annotator))]


def settle_item(s: Session, item: SqlAnnotationItem, overlap_k: int) -> None:
    """Set an item's state and final value from its labelled answers (adjudicated items keep theirs)."""
    if item.state == ItemState.ADJUDICATED:
        return
    values = [a.value for a in s.scalars(sa.select(SqlAnnotation).where(
        SqlAnnotation.item_id == item.id, SqlAnnotation.status == AnswerStatus.LABELLED))]
    need = overlap_k if item.overlap else 1
    if len(values) < need:
        item.state, item.final = ItemState.OPEN, None
    elif all(v == values[0] for v in values):
        item.state, item.final = ItemState.DONE, dict(values[0])
    else:
        item.state, item.final = ItemState.DISPUTED, None
    item.version += 1


def save_annotation(ctx: Context, project_id: int, item_id: int, actor: Actor, *, expected_version: int,
                    value: dict[str, Any] | None = None, skip: bool = False, flag: bool = False,
                    comment: str = "", seconds: float | None = None) -> Answer:
    """Save the actor's answer on an item of their queue.

    Args:
        ctx: the stores.
        project_id: the project.
        item_id: the item.
        actor: the annotator (annotation.label in the project's dataset); the item must be
            in their queue.
        expected_version: the version of their answer the caller last saw; 0 when
            they had none.
        value: the answer (see ``schemas.check_value``); None with ``skip`` or ``flag``.
        skip: pass the item (it stays in the queue, unlabelled).
        flag: mark the item for the data steward (with or without a label).
        comment: a note for the steward.
        seconds: time spent on the item, as the page measured it.

    Returns:
        The saved answer, its version one higher.

    Raises:
        Forbidden: the actor may not label, or the item is not in their queue.
        NotFound: no such project or item.
        InvalidInput: a label outside the schema, a malformed answer, a bad comment.
        Conflict: ``expected_version`` is stale (someone saved in between), or the
            project is closed. Nothing is changed in either case.
    """
    project = authorize_in_project(ctx, actor, "annotation.label", project_id)
    if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
        raise InvalidInput(f"expected_version must be a non-negative integer, got {expected_version!r}.",
                           hint="Send the version of your answer you last saw (0 if you had none).")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise InvalidInput(f"A comment is text of at most {MAX_COMMENT:,} characters.")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0):
        raise InvalidInput(f"seconds must be a non-negative number, got {seconds!r}.")
    if skip and value is not None:
        raise InvalidInput("An answer is either a label or a skip, not both.")
    if value is None and not (skip or flag):
        raise InvalidInput("Nothing to save: send a label, a skip or a flag.",
                           hint='Send {"value": {"label": ...}}, {"skip": true} or {"flag": true}.')
    schema = get_schema(ctx.db, project.schema_id)
    with ctx.db.session() as s:
        # Locking the item serialises every save on it (PostgreSQL; on SQLite the session
        # holds the write lock): the version check and the settling see each other's work.
        item = s.get(SqlAnnotationItem, item_id, with_for_update=True)
        if item is None or item.project_id != project_id:
            raise NotFound(f"Project {project.name!r} has no item {item_id}.", hint="Open your queue to see its items.")
        assigned = s.scalar(sa.select(SqlAssignment.id).where(SqlAssignment.item_id == item_id,
                                                              SqlAssignment.annotator == actor.name))
        if assigned is None:
            raise _not_yours(item_id, actor)
        proj = project_row(s, project_id)
        if proj.state != ProjectState.OPEN:
            raise Conflict(f"Project {proj.name!r} is {proj.state}; it takes no more answers.")
        stored = check_value(schema, value, item.text) if value is not None else {}
        status = (AnswerStatus.SKIPPED if skip
                  else AnswerStatus.LABELLED if value is not None else AnswerStatus.FLAGGED)
        row = s.scalar(sa.select(SqlAnnotation).where(SqlAnnotation.item_id == item_id,
                                                      SqlAnnotation.annotator == actor.name))
        current = row.version if row is not None else 0
        if current != expected_version:
            assert row is not None  # current is 0 without a row, so a mismatch means one exists
            raise _stale(item_id, row, expected_version)
        before = {"value": row.value, "status": row.status, "version": row.version} if row is not None else None
        now = utcnow()
        if row is None:
            row = SqlAnnotation(project_id=project_id, item_id=item_id, annotator=actor.name, schema_id=schema.id,
                                value=stored, status=status, flagged=flag, comment=comment, version=1,
                                seconds=seconds, created_at=now, updated_at=now)
            s.add(row)
        else:
            row.value, row.status, row.flagged, row.comment = stored, status, flag, comment
            row.schema_id, row.version, row.updated_at = schema.id, row.version + 1, now
            row.seconds = seconds if seconds is not None else row.seconds
        try:
            s.flush()
        except exc.IntegrityError:
            # PostgreSQL: another transaction inserted this annotator's first answer meanwhile.
            raise Conflict(f"Your answer on item {item_id} was saved from elsewhere a moment ago.",
                           hint="Reload the item to see the saved answer, then save again.") from None
        settle_item(s, item, proj.overlap_k)
        append_entry(s, actor, "annotation.save", "annotation", row.id, before=before,
                     after={"value": stored, "status": status, "version": row.version},
                     details={"project_id": project_id, "item_id": item_id, "status": status, "flagged": flag,
                              "schema_id": schema.id, "item_state": item.state})
        return to_answer(row)


def _stale(item_id: int, row: SqlAnnotation, expected: int) -> Conflict:
    return Conflict(f"Your answer on item {item_id} changed since you loaded it: it is at version {row.version} "
                    f"(saved {row.updated_at:%Y-%m-%d %H:%M:%S} UTC), you sent version {expected}.",
                    hint="Reload the item to see the latest answer, then save again.")
