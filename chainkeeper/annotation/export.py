"""Export: a project's settled labels become a new, immutable dataset version.

Every settled item (one answer, agreeing answers, or an adjudication) becomes a row of a
Parquet snapshot with the data stage's columns (``data.snapshot_schema``: the parent
row's text, split, source and line, and the decided label) plus who labelled it, when,
under which schema version, how it was decided and how far its annotators agreed. The
data stage freezes it (``data.freeze_dataset_version``, the one freeze path) as the
next version of the parent dataset's name (or the name given), in state draft, with its
task kind, statistics and quality report, and it is released the usual way.

Task kind: a span project's version is token classification (``tokens`` and ``tags``
are its labels, ``label`` is null), so training picks a tagger; a single- or
multi-label project's is text classification.

Extra columns:

    parent_row_id   int64         the row in the parent version
    annotators      list<string>  who labelled it (sorted)
    labelled_at     timestamp     the last answer's (or the decision's) time, UTC
    schema_id       int64         the label schema version's id
    schema_version  string        e.g. "intents v2" (the newest its answers were made under)
    decided_by      string        how: "single", "agreed", or the adjudicator's name
    method          string        single | agreed | steward | majority | dawid_skene
    agreement       double        share of its answers equal to the label (null: one answer)
    labels          list<string>  the labels of a multi-label answer
    tokens, tags    list<string>  whitespace tokens and BIO tags of a span answer

The project is then closed (``exported``): its labels are the version's, final.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from chainkeeper.annotation.adjudication import value_key
from chainkeeper.annotation.figures import item_agreement, project_figures
from chainkeeper.annotation.projects import (
    ProjectState,
    authorize_in_project,
    project_row,
)
from chainkeeper.annotation.schemas import (
    NAME_PATTERN,
    SchemaKind,
    get_schema,
    list_schemas,
)
from chainkeeper.annotation.spans import bio_tags
from chainkeeper.annotation.tables import (
    SqlAdjudication,
    SqlAnnotation,
    SqlAnnotationItem,
)
from chainkeeper.annotation.tasks import AnswerStatus, ItemState
from chainkeeper.core.errors import Conflict, InvalidInput
from chainkeeper.data import (
    DatasetTask,
    DatasetVersion,
    freeze_dataset_version,
    get_dataset_version,
    read_dataset_rows,
    snapshot_schema,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from chainkeeper.core.context import Context

__all__ = ["export_project", "labelled_table", "EXTRA_COLUMNS"]

EXTRA_COLUMNS = ("parent_row_id", "annotators", "labelled_at", "schema_id", "schema_version", "decided_by",
                 "method", "agreement", "labels", "tokens", "tags")


def task_of(kind: str) -> DatasetTask:
    """The dataset task kind an export of a schema of ``kind`` is for (pure)."""
    return DatasetTask.TOKEN_CLASSIFICATION if kind == SchemaKind.SPANS else DatasetTask.TEXT_CLASSIFICATION


def labelled_table(parent: pa.Table, records: list[dict[str, Any]],
                   task: DatasetTask = DatasetTask.TEXT_CLASSIFICATION) -> pa.Table:
    """The snapshot of the labelled rows (pure).

    Args:
        parent: the parent version's rows.
        records: per settled item, in output order: ``row_id`` (parent's), ``label``
            and the extra columns.
        task: the task kind of the new version (``task_of`` the schema's kind).

    Returns:
        A table with the data stage's snapshot columns of ``task`` and ``EXTRA_COLUMNS``.
    """
    by_id = {r["row_id"]: r for r in parent.select(["row_id", "text", "split", "source_id", "source_line"])
             .to_pylist()}
    extra = [
        pa.field("parent_row_id", pa.int64(), nullable=False), pa.field("annotators", pa.list_(pa.string())),
        pa.field("labelled_at", pa.timestamp("us", tz="UTC")), pa.field("schema_id", pa.int64()),
        pa.field("schema_version", pa.string()), pa.field("decided_by", pa.string()), pa.field("method", pa.string()),
        pa.field("agreement", pa.float64()), pa.field("labels", pa.list_(pa.string())),
        pa.field("tokens", pa.list_(pa.string())), pa.field("tags", pa.list_(pa.string())),
    ]
    base = snapshot_schema(task)
    # A token-classification snapshot has tokens and tags already (not nullable there).
    schema = pa.schema(list(base) + [f for f in extra if f.name not in base.names],
                       metadata={"chainkeeper.labelled": "annotation"})
    rows = []
    for i, rec in enumerate(records):
        src = by_id[rec["row_id"]]
        rows.append({"row_id": i, "text": src["text"], "label": rec["label"], "split": src["split"],
                     "source_id": src["source_id"], "source_line": src["source_line"],
                     "parent_row_id": rec["row_id"], **{k: rec.get(k) for k in EXTRA_COLUMNS if k != "parent_row_id"}})
    return pa.Table.from_pylist(rows, schema=schema)


def _records(s: Any, project_id: int, kind: str, schema_labels: dict[int, str],
             ) -> tuple[list[dict[str, Any]], list[int]]:
    items = s.scalars(sa.select(SqlAnnotationItem).where(SqlAnnotationItem.project_id == project_id)
                      .order_by(SqlAnnotationItem.row_id)).all()
    answers: dict[int, list[SqlAnnotation]] = {}
    for a in s.scalars(sa.select(SqlAnnotation).where(SqlAnnotation.project_id == project_id,
                                                       SqlAnnotation.status == AnswerStatus.LABELLED)):
        answers.setdefault(a.item_id, []).append(a)
    decisions = {d.item_id: d for d in s.scalars(sa.select(SqlAdjudication).where(
        SqlAdjudication.project_id == project_id).order_by(SqlAdjudication.id))}  # the latest wins
    records, disputed = [], []
    for item in items:
        if item.state == ItemState.DISPUTED:
            disputed.append(item.id)
        if item.state not in (ItemState.DONE, ItemState.ADJUDICATED) or item.final is None:
            continue
        given = answers.get(item.id, [])
        decision = decisions.get(item.id) if item.state == ItemState.ADJUDICATED else None
        final = dict(item.final)
        times = [a.updated_at for a in given] + ([decision.decided_at] if decision else [])
        # The newest schema version any of its answers was made under.
        schema_id = max((a.schema_id for a in given), default=None)
        record: dict[str, Any] = {
            "row_id": item.row_id, "annotators": sorted(a.annotator for a in given),
            "labelled_at": max(times) if times else None, "schema_id": schema_id,
            "schema_version": schema_labels.get(schema_id) if schema_id is not None else None,
            "decided_by": decision.decided_by if decision else ("agreed" if len(given) > 1 else "single"),
            "method": decision.method if decision else ("agreed" if len(given) > 1 else "single"),
            "agreement": item_agreement([value_key(a.value) for a in given], value_key(final)),
        }
        if kind == SchemaKind.SINGLE:
            record["label"] = final["label"]
        elif kind == SchemaKind.MULTI:
            record["labels"] = list(final["labels"])
            record["label"] = "|".join(final["labels"])
        else:
            record["tokens"], record["tags"] = bio_tags(item.text, final["spans"])
            record["label"] = None
        records.append(record)
    return records, disputed


def export_project(ctx: Context, project_id: int, actor: Actor, *, name: str | None = None) -> DatasetVersion:
    """Freeze a project's settled labels as a new dataset version and close the project.

    Args:
        ctx: the stores.
        project_id: the project.
        actor: the data steward (annotation.manage and dataset.create, in the project's
            dataset; with ``name``, dataset.create in that dataset too).
        name: the dataset name of the new version; default the parent version's name.

    Returns:
        The new version (draft, token classification for a span project), whose stats
        carry the project's agreement figures.

    Raises:
        Forbidden: the actor may not. NotFound: no such project.
        Conflict: items still await adjudication, or the project was exported already.
        InvalidInput: no item is settled yet (nothing to export), or a bad name.
    """
    project = authorize_in_project(ctx, actor, "annotation.manage", project_id)
    parent = get_dataset_version(ctx.db, project.dataset_version_id)
    target = name or parent.name
    if not NAME_PATTERN.match(target):
        raise InvalidInput(f"Dataset name {target!r} is not valid.",
                           hint="Use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    for dataset in dict.fromkeys((parent.name, target)):
        authorize(ctx.db, actor, "dataset.create", project=dataset)
    if project.state != ProjectState.OPEN:
        raise Conflict(f"Project {project.name!r} was exported already (dataset version "
                       f"{project.exported_version_id}).", hint="Its labels are in that version.")
    schema = get_schema(ctx.db, project.schema_id)
    labels = {v.id: f"{v.name} v{v.version}" for v in list_schemas(ctx.db, name=schema.name)}
    with ctx.db.session(readonly=True) as s:
        records, disputed = _records(s, project_id, schema.kind, labels)
    if disputed:
        raise Conflict(f"{len(disputed)} item(s) of project {project.name!r} still await adjudication "
                       f"(items {', '.join(map(str, disputed[:10]))}{' …' if len(disputed) > 10 else ''}).",
                       hint="Decide them in the adjudication queue, or resolve them by majority or Dawid-Skene.")
    if not records:
        raise InvalidInput(f"Nothing to export: no item of project {project.name!r} is labelled yet.",
                           hint="Label items first; an item is exported once its answers agree or are decided.")
    figures = project_figures(ctx, project_id, actor)
    task = task_of(schema.kind)
    table = labelled_table(read_dataset_rows(ctx, parent.id), records, task)
    rows = table.num_rows

    def close_project(s: Session, version: DatasetVersion) -> None:
        proj = project_row(s, project_id)
        if proj.state != ProjectState.OPEN:
            raise Conflict(f"Project {proj.name!r} was exported meanwhile.", hint="Its labels are in that version.")
        proj.state, proj.exported_version_id = ProjectState.EXPORTED.value, version.id
        append_entry(s, actor, "annotation.export", "annotation_project", project_id,
                     before={"state": ProjectState.OPEN.value},
                     after={"state": proj.state, "dataset_version_id": version.id},
                     details={"rows": rows, "schema_id": schema.id})

    return freeze_dataset_version(
        ctx, table, name=target, task=task, actor=actor, source_ids=parent.source_ids, split_seed=parent.split_seed,
        stats={"declared_splits": sorted(set(table.column("split").to_pylist())), "annotation": {
            "project_id": project_id, "project": project.name, "parent_version_id": parent.id,
            "schema": f"{schema.name} v{schema.version}", "schema_kind": str(schema.kind),
            "items": figures["progress"]["items"], "exported_rows": rows,
            "agreement": figures["agreement"], "annotators": figures["annotators"]}},
        details={"from_annotation_project": project_id, "parent_version_id": parent.id},
        in_transaction=close_project)
