"""Lineage of a labelled row: from a row a model trained on back to its annotators.

A dataset version exported by an annotation project (``export``) records the project in
its stats and each row's ``parent_row_id``. ``row_lineage`` follows them: the row, the
project and schema version it was labelled under, every annotator's answer (who, what,
when), the adjudication (who decided, how), and the parent version's row. The nodes are
the governance ``LineageNode`` tree, so they print and serialise like the rest of the
chain's lineage (``chain.lineage.run_row_lineage`` starts from a training run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.compute as pc
import sqlalchemy as sa

from chainkeeper.annotation.projects import get_project
from chainkeeper.annotation.schemas import get_schema
from chainkeeper.annotation.tables import (
    SqlAdjudication,
    SqlAnnotation,
    SqlAnnotationItem,
)
from chainkeeper.core.errors import InvalidInput, NotFound
from chainkeeper.data import (
    get_dataset_version,
    project_of_dataset_version,
    read_dataset_rows,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.lineage import LineageNode
from chainkeeper.governance.permissions import authorize_object

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["row_lineage"]


def row_lineage(ctx: Context, dataset_version_id: int, row_id: int, actor: Actor) -> LineageNode:
    """The lineage of one row of a labelled dataset version.

    Args:
        ctx: the stores.
        dataset_version_id: a version exported from an annotation project.
        row_id: the row's ``row_id`` in that version.
        actor: who asks (lineage.read in the version's project).

    Returns:
        A tree: the row → its annotation project (schema version) → one node per
        answer (annotator, value, time) and per adjudication (decider, method) → the
        parent version's row.

    Raises:
        Forbidden: the actor may not read this dataset's lineage. NotFound: no such version or row.
        InvalidInput: the version was not labelled by an annotation project.
    """
    authorize_object(ctx.db, actor, "lineage.read", lambda: project_of_dataset_version(ctx.db, dataset_version_id))
    version = get_dataset_version(ctx.db, dataset_version_id)
    info = version.stats.get("annotation")
    if not info:
        raise InvalidInput(f"Dataset version {version.name} v{version.version} was not labelled by an annotation "
                           "project, so its rows have no annotators to trace.",
                           hint="Trace a version made by 'chainkeeper annotate export'.")
    table = read_dataset_rows(ctx, dataset_version_id)
    # A row id beyond 64 bits is no row (and pyarrow refuses to compare with it).
    in_range = -(2**63) <= row_id < 2**63
    found = table.filter(pc.equal(table.column("row_id"), row_id)).to_pylist() if in_range else []
    if not found:
        raise NotFound(f"Dataset version {version.name} v{version.version} has no row {row_id}.",
                       hint=f"Row ids run from 0 to {table.num_rows - 1}.")
    row = found[0]
    project = get_project(ctx.db, int(info["project_id"]))
    schema = get_schema(ctx.db, project.schema_id)
    node = LineageNode("dataset_row", f"{version.id}:{row_id}",
                       f"row {row_id} of {version.name} v{version.version}: {row['label'] or '(spans)'!s} "
                       f"({row['method']}, labelled by {', '.join(row['annotators'] or []) or '-'})",
                       {"text": row["text"], "label": row["label"], "split": row["split"],
                        "annotators": row["annotators"], "agreement": row["agreement"],
                        "schema_version": row["schema_version"]})
    project_node = LineageNode("annotation_project", str(project.id),
                               f"annotation project {project.name}, schema {schema.name} v{schema.version} "
                               f"({schema.kind}), created by {project.created_by}",
                               {"schema_id": schema.id, "overlap_k": project.overlap_k,
                                "queue_order": str(project.queue_order)})
    node.children.append(project_node)
    with ctx.db.session(readonly=True) as s:
        item = s.scalar(sa.select(SqlAnnotationItem).where(SqlAnnotationItem.project_id == project.id,
                                                           SqlAnnotationItem.row_id == row["parent_row_id"]))
        assert item is not None  # the export wrote this row from this item
        for a in s.scalars(sa.select(SqlAnnotation).where(SqlAnnotation.item_id == item.id)
                           .order_by(SqlAnnotation.annotator)):
            project_node.children.append(LineageNode(
                "annotation", str(a.id), f"{a.annotator} answered {a.value or a.status} at "
                f"{a.updated_at:%Y-%m-%d %H:%M:%S} UTC (schema id {a.schema_id}, version {a.version})",
                {"annotator": a.annotator, "value": a.value, "status": a.status, "at": a.updated_at.isoformat(),
                 "schema_id": a.schema_id}))
        for d in s.scalars(sa.select(SqlAdjudication).where(SqlAdjudication.item_id == item.id)
                           .order_by(SqlAdjudication.id)):
            project_node.children.append(LineageNode(
                "adjudication", str(d.id), f"{d.decided_by} decided {d.value} by {d.method} at "
                f"{d.decided_at:%Y-%m-%d %H:%M:%S} UTC", {"decided_by": d.decided_by, "method": d.method,
                                                         "value": d.value, "at": d.decided_at.isoformat()}))
    parent = get_dataset_version(ctx.db, project.dataset_version_id)
    node.children.append(LineageNode("dataset_row", f"{parent.id}:{row['parent_row_id']}",
                                      f"row {row['parent_row_id']} of {parent.name} v{parent.version} (source "
                                      f"{row['source_id']}, line {row['source_line']})",
                                      {"source_id": row["source_id"], "source_line": row["source_line"]}))
    return node

