"""Adjudication: the data steward settles the items annotators disagreed on.

Disputed items (their k answers differ) and flagged items wait in the steward's queue
(``adjudication_queue``). The steward decides one item (``adjudicate_item``) or lets a
consensus method decide every disputed item at once (``resolve_disputes``): a majority
vote (a tie stays disputed for a person to decide) or Dawid-Skene, which weighs each
annotator by the reliability it estimates from all their answers in the project. Each
decision is an ``SqlAdjudication`` row and an audit-ledger entry naming the method and
who decided.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.annotation.consensus import dawid_skene, majority_vote
from chainkeeper.annotation.projects import (
    ProjectState,
    authorize_in_project,
    project_row,
)
from chainkeeper.annotation.schemas import check_value, get_schema
from chainkeeper.annotation.tables import (
    SqlAdjudication,
    SqlAnnotation,
    SqlAnnotationItem,
)
from chainkeeper.annotation.tasks import Answer, AnswerStatus, ItemState, to_answer
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["METHODS", "Dispute", "Decision", "adjudication_queue", "adjudicate_item", "resolve_disputes",
           "value_key", "key_value", "list_decisions"]

METHODS = ("majority", "dawid_skene")


@dataclass(frozen=True)
class Dispute:
    """An item waiting for the steward, with every answer given on it."""

    item_id: int
    row_id: int
    text: str
    state: str
    version: int
    flagged: bool
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class Decision:
    """One adjudication: the value decided, how, and by whom."""

    id: int
    item_id: int
    method: str
    value: dict[str, Any]
    note: str
    decided_by: str
    decided_at: datetime


def value_key(value: dict[str, Any]) -> str:
    """An answer as a hashable, comparable label (pure): the label itself for one
    label, canonical JSON for several labels or spans."""
    if set(value) == {"label"}:
        return str(value["label"])
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def key_value(key: str) -> dict[str, Any]:
    """The inverse of ``value_key`` (pure)."""
    if key.startswith("{"):
        return dict(json.loads(key))
    return {"label": key}


def _to_decision(row: SqlAdjudication) -> Decision:
    return Decision(id=row.id, item_id=row.item_id, method=row.method, value=dict(row.value), note=row.note,
                    decided_by=row.decided_by, decided_at=row.decided_at)


def adjudication_queue(ctx: Context, project_id: int, actor: Actor) -> list[Dispute]:
    """Disputed and flagged items of a project, in queue order (annotation.adjudicate).

    Raises:
        NotFound: no such project. Forbidden: the actor may not adjudicate.
    """
    authorize_in_project(ctx, actor, "annotation.adjudicate", project_id)
    with ctx.db.session(readonly=True) as s:
        flagged = set(s.scalars(sa.select(SqlAnnotation.item_id).where(SqlAnnotation.project_id == project_id,
                                                                        SqlAnnotation.flagged.is_(True))))
        flagged |= set(s.scalars(sa.select(SqlAnnotation.item_id).where(
            SqlAnnotation.project_id == project_id, SqlAnnotation.status == AnswerStatus.FLAGGED)))
        items = s.scalars(sa.select(SqlAnnotationItem).where(
            SqlAnnotationItem.project_id == project_id,
            sa.or_(SqlAnnotationItem.state == ItemState.DISPUTED,
                   sa.and_(SqlAnnotationItem.id.in_(flagged), SqlAnnotationItem.state != ItemState.ADJUDICATED)))
            .order_by(SqlAnnotationItem.position, SqlAnnotationItem.id)).all()
        answers: dict[int, list[Answer]] = {}
        for a in s.scalars(sa.select(SqlAnnotation).where(SqlAnnotation.item_id.in_([i.id for i in items]))
                           .order_by(SqlAnnotation.annotator)):
            answers.setdefault(a.item_id, []).append(to_answer(a))
        return [Dispute(item_id=i.id, row_id=i.row_id, text=i.text, state=i.state, version=i.version,
                        flagged=i.id in flagged, answers=tuple(answers.get(i.id, ()))) for i in items]


def _decide(s: Session, item: SqlAnnotationItem, value: dict[str, Any], *, method: str, note: str,
            actor: Actor, details: dict[str, Any]) -> SqlAdjudication:
    answers = {a.annotator: a.value for a in s.scalars(sa.select(SqlAnnotation).where(
        SqlAnnotation.item_id == item.id, SqlAnnotation.status == AnswerStatus.LABELLED))}
    before = {"state": item.state, "final": item.final}
    decision = SqlAdjudication(project_id=item.project_id, item_id=item.id, method=method, value=value, note=note,
                               decided_by=actor.name)
    s.add(decision)
    item.state, item.final, item.version = ItemState.ADJUDICATED, value, item.version + 1
    s.flush()
    append_entry(s, actor, "annotation.adjudicate", "annotation_item", item.id, before=before,
                 after={"state": item.state, "final": value},
                 details={"project_id": item.project_id, "method": method, "value": value, "decided_by": actor.name,
                          "answers": answers, "note": note, **details})
    return decision


def adjudicate_item(ctx: Context, project_id: int, item_id: int, actor: Actor, *, value: dict[str, Any],
                    expected_version: int, note: str = "") -> Decision:
    """The steward decides one item's label.

    Args:
        ctx: the stores.
        project_id: the project.
        item_id: the item (disputed, flagged or already settled: a steward may overrule).
        actor: the data steward (annotation.adjudicate).
        value: the decided answer, checked against the project's schema.
        expected_version: the item version the steward saw (``Dispute.version``).
        note: why, for the record.

    Raises:
        Forbidden: the actor may not adjudicate. NotFound: no such item.
        InvalidInput: a value outside the schema.
        Conflict: the item changed since (stale version), or the project is closed.
    """
    project = authorize_in_project(ctx, actor, "annotation.adjudicate", project_id)
    schema = get_schema(ctx.db, project.schema_id)
    with ctx.db.session() as s:
        item = s.get(SqlAnnotationItem, item_id, with_for_update=True)
        if item is None or item.project_id != project_id:
            raise NotFound(f"Project {project.name!r} has no item {item_id}.",
                           hint="Open the adjudication queue to see the disputed items.")
        if project_row(s, project_id).state != ProjectState.OPEN:
            raise Conflict(f"Project {project.name!r} is exported; its labels are final.")
        if item.version != expected_version:
            raise Conflict(f"Item {item_id} changed since you loaded it (version {item.version}, you sent "
                           f"{expected_version}).", hint="Reload the adjudication queue and decide again.")
        checked = check_value(schema, value, item.text)
        return _to_decision(_decide(s, item, checked, method="steward", note=str(note)[:2000], actor=actor,
                                    details={}))


def resolve_disputes(ctx: Context, project_id: int, actor: Actor, *, method: str = "majority") -> dict[str, Any]:
    """Decide every disputed item of a project by a consensus method.

    Args:
        ctx: the stores.
        project_id: the project.
        actor: the data steward (annotation.adjudicate), recorded as the decider.
        method: "majority" (ties stay disputed) or "dawid_skene" (every labelled answer
            of the project estimates each annotator's reliability).

    Returns:
        ``{"method", "decided": [item ids], "left": [item ids still disputed],
        "reliability": {annotator: estimate} (Dawid-Skene only)}``.

    Raises:
        Forbidden, NotFound; InvalidInput: an unknown method; Conflict: the project is closed.
    """
    project = authorize_in_project(ctx, actor, "annotation.adjudicate", project_id)
    if method not in METHODS:
        raise InvalidInput(f"Unknown consensus method {method!r}.", hint=f"Use one of: {', '.join(METHODS)}.")
    schema = get_schema(ctx.db, project.schema_id)
    with ctx.db.session() as s:
        if project_row(s, project_id).state != ProjectState.OPEN:
            raise Conflict(f"Project {project.name!r} is exported; its labels are final.")
        disputed = {i.id: i for i in s.scalars(sa.select(SqlAnnotationItem).where(
            SqlAnnotationItem.project_id == project_id, SqlAnnotationItem.state == ItemState.DISPUTED)
            .with_for_update())}
        judgements = [(a.item_id, a.annotator, value_key(a.value)) for a in s.scalars(
            sa.select(SqlAnnotation).where(SqlAnnotation.project_id == project_id,
                                           SqlAnnotation.status == AnswerStatus.LABELLED)
            .order_by(SqlAnnotation.id))]
        reliability: dict[str, float] = {}
        if not disputed:
            return {"method": method, "decided": [], "left": [], "reliability": reliability}
        # Keyed by the item ids the judgements carry (consensus types an item as any Hashable).
        winners: dict[Any, Hashable]
        evidence: dict[Any, dict[str, Any]]
        if method == "majority":
            votes = majority_vote(j for j in judgements if j[0] in disputed)
            winners = {item: r.label for item, r in votes.items() if r.label is not None}
            evidence = {item: {"votes": {str(k): v for k, v in r.votes.items()}} for item, r in votes.items()}
        else:
            categories = (sorted({j[2] for j in judgements} | set(schema.label_names))
                          if schema.kind == "single" else None)
            result = dawid_skene(judgements, categories=categories)
            reliability = {a: round(r, 4) for a, r in result.reliability.items()}
            winners = {item: result.labels[item] for item in disputed}
            evidence = {item: {"posterior": round(float(result.posteriors[result.items.index(item)].max()), 4),
                               "reliability": reliability} for item in disputed}
        decided = []
        for item_id, label in sorted(winners.items()):
            _decide(s, disputed[item_id], key_value(str(label)), method=method, note="", actor=actor,
                    details=evidence[item_id])
            decided.append(item_id)
        left = sorted(set(disputed) - set(decided))
        return {"method": method, "decided": decided, "left": left, "reliability": reliability}


def list_decisions(ctx: Context, project_id: int, actor: Actor) -> list[Decision]:
    """Every adjudication of a project, oldest first (annotation.adjudicate or annotation.manage).

    Raises:
        Forbidden: the actor may do neither in the project's dataset. NotFound: no such project.
    """
    authorize_in_project(ctx, actor, "annotation.adjudicate", project_id, also="annotation.manage")
    with ctx.db.session(readonly=True) as s:
        return [_to_decision(r) for r in s.scalars(sa.select(SqlAdjudication).where(
            SqlAdjudication.project_id == project_id).order_by(SqlAdjudication.id))]
