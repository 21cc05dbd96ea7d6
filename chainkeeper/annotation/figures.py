"""A project's figures: progress, agreement between annotators, and per-annotator figures.

The I/O edge of ``agreement``: it reads the labelled answers of a project and hands
plain judgements to the pure functions there. Classification projects (one label, or
several: a set of labels is compared whole) get Cohen's kappa per pair, Fleiss' kappa,
Krippendorff's alpha and percent agreement; span projects get span-level F1 per pair of
annotators. Per annotator: answers, items/hour (from their save times) and agreement
with the consensus (the settled label of each item).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from itertools import combinations
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.annotation.adjudication import value_key
from chainkeeper.annotation.agreement import (
    Judgement,
    agreement_report,
    annotator_figures,
    span_f1,
)
from chainkeeper.annotation.projects import authorize_in_project
from chainkeeper.annotation.schemas import SchemaKind, get_schema
from chainkeeper.annotation.tables import SqlAnnotation, SqlAnnotationItem
from chainkeeper.annotation.tasks import AnswerStatus, ItemState
from chainkeeper.governance.actors import Actor

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["project_figures", "compute_figures", "item_agreement"]


def item_agreement(values: list[str], final: str | None) -> float | None:
    """Share of an item's answers equal to its final label; None with fewer than two answers (pure)."""
    if len(values) < 2 or final is None:
        return None
    return sum(v == final for v in values) / len(values)


def compute_figures(kind: str, answers: list[tuple[int, str, dict[str, Any], Any]],
                    items: list[tuple[int, str, dict[str, Any] | None]]) -> dict[str, Any]:
    """Progress, agreement and per-annotator figures from plain records (pure).

    Args:
        kind: the schema kind ("single", "multi" or "spans").
        answers: (item id, annotator, value, saved at) of every labelled answer.
        items: (item id, state, final value or None) of every item.

    Returns:
        ``{"progress": {...}, "agreement": {...} | None, "annotators": {...}}``.
    """
    states = Counter(state for _, state, _ in items)
    progress: dict[str, int] = {"items": len(items), "answers": len(answers), **{s: states.get(s, 0) for s in (
        ItemState.OPEN, ItemState.DONE, ItemState.DISPUTED, ItemState.ADJUDICATED)}}
    progress["settled"] = progress[ItemState.DONE] + progress[ItemState.ADJUDICATED]
    judgements = [Judgement(item, who, value_key(value), at) for item, who, value, at in answers]
    consensus: dict[Hashable, Hashable] = {item: value_key(final) for item, _, final in items if final is not None}
    agreement: dict[str, Any] | None = None
    if kind == SchemaKind.SPANS:
        by_annotator: dict[str, dict[Hashable, list[Any]]] = {}
        for item, who, value, _ in answers:
            by_annotator.setdefault(who, {})[item] = value.get("spans", [])
        pairs = {}
        for a, b in combinations(sorted(by_annotator), 2):
            if set(by_annotator[a]) & set(by_annotator[b]):
                pairs[f"{a}|{b}"] = span_f1(by_annotator[a], by_annotator[b])
        f1s = [p["f1"] for p in pairs.values()]
        agreement = {"span_f1": pairs, "span_f1_mean": sum(f1s) / len(f1s) if f1s else None,
                     "notes": [] if pairs else ["No item was annotated by two annotators: set an overlap."]}
    elif judgements:
        agreement = agreement_report(judgements)
    people = {name: {"items": f.items, "items_per_hour": f.items_per_hour, "compared": f.compared,
                     "agreement_with_consensus": f.agreement, "kappa_with_consensus": f.kappa, "note": f.note}
              for name, f in annotator_figures(judgements, consensus).items()} if judgements else {}
    return {"progress": progress, "agreement": agreement, "annotators": people}


def project_figures(ctx: Context, project_id: int, actor: Actor) -> dict[str, Any]:
    """A project's progress, agreement and per-annotator figures.

    Args:
        ctx: the stores.
        project_id: the project.
        actor: a data steward (annotation.manage or annotation.adjudicate in the project's dataset).

    Raises:
        NotFound: no such project. Forbidden: the actor may not see every queue.
    """
    project = authorize_in_project(ctx, actor, "annotation.manage", project_id, also="annotation.adjudicate")
    schema = get_schema(ctx.db, project.schema_id)
    with ctx.db.session(readonly=True) as s:
        answers = [(a.item_id, a.annotator, dict(a.value), a.updated_at) for a in s.scalars(
            sa.select(SqlAnnotation).where(SqlAnnotation.project_id == project_id,
                                           SqlAnnotation.status == AnswerStatus.LABELLED)
            .order_by(SqlAnnotation.id))]
        items = [(i.id, i.state, i.final) for i in s.scalars(
            sa.select(SqlAnnotationItem).where(SqlAnnotationItem.project_id == project_id))]
    return {"project_id": project_id, "schema": f"{schema.name} v{schema.version}", "kind": str(schema.kind),
            **compute_figures(schema.kind, answers, items)}
