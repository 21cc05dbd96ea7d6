"""Label schemas: what annotators may answer, versioned.

A schema has a kind (``single``: one label per item; ``multi``: any number of labels;
``spans``: labelled character spans, exported as BIO tags), labels with a description
each, and guidelines text shown on the labelling page. ``define_schema`` on a name that
exists adds the next version; annotations keep the id of the version they were made
under, so changing a schema never rewrites what was labelled.

Schemas are shared definitions, not bound to a project (one may serve projects on many
datasets), so defining and listing them takes ``annotation.manage`` from a global role.

``check_value`` is pure: it turns what an annotator sent into the stored value, or says
exactly what is wrong with it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from chainkeeper.annotation.tables import SqlLabelSchema
from chainkeeper.core.db import Database
from chainkeeper.core.errors import InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize

__all__ = ["SchemaKind", "LabelDef", "LabelSchema", "define_schema", "get_schema", "list_schemas", "find_schemas",
           "check_value", "parse_labels", "MAX_LABELS", "NAME_PATTERN"]

# Names of schemas, projects and exported datasets (the data stage's rule for dataset names).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Digit keys 1-9 choose the first nine labels on the page; more labels are still typed or clicked.
MAX_LABELS = 200
MAX_GUIDELINES = 20_000


class SchemaKind(enum.StrEnum):
    SINGLE = "single"
    MULTI = "multi"
    SPANS = "spans"


@dataclass(frozen=True)
class LabelDef:
    """One label and what it means."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class LabelSchema:
    """One version of a label schema (mirrors ``SqlLabelSchema``)."""

    id: int
    name: str
    version: int
    kind: SchemaKind
    labels: tuple[LabelDef, ...]
    guidelines: str
    created_by: str
    created_at: datetime

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]


def _to_schema(row: SqlLabelSchema) -> LabelSchema:
    return LabelSchema(id=row.id, name=row.name, version=row.version, kind=SchemaKind(row.kind),
                       labels=tuple(LabelDef(**label) for label in row.labels), guidelines=row.guidelines,
                       created_by=row.created_by, created_at=row.created_at)


def parse_labels(labels: Sequence[str | Mapping[str, Any] | LabelDef]) -> list[LabelDef]:
    """Labels as given (names, ``{"name", "description"}`` or ``LabelDef``), checked (pure).

    A string ``"name: description"`` carries its description after the first colon.

    Raises:
        InvalidInput: no labels, too many, an empty or repeated name.
    """
    if isinstance(labels, (str, bytes)) or not labels:
        raise InvalidInput("A label schema needs at least one label.",
                           hint='Give labels as names or {"name": ..., "description": ...}.')
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"{len(labels)} labels; a schema holds at most {MAX_LABELS}.")
    out: list[LabelDef] = []
    for raw in labels:
        if isinstance(raw, LabelDef):
            label = raw
        elif isinstance(raw, str):
            name, _, description = raw.partition(":")
            label = LabelDef(name.strip(), description.strip())
        elif isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            label = LabelDef(raw["name"].strip(), str(raw.get("description") or "").strip())
        else:
            raise InvalidInput(f"Label {raw!r} is neither a name nor {{'name': ..., 'description': ...}}.")
        if not label.name or len(label.name) > 128 or "|" in label.name:
            raise InvalidInput(f"Label name {label.name!r} is not valid.",
                               hint="Use 1-128 characters, without '|' (it joins multi-label answers).")
        out.append(label)
    names = [label.name for label in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInput(f"Label(s) {', '.join(map(repr, repeated))} appear more than once.",
                           hint="Name each label once.")
    return out


def define_schema(db: Database, *, name: str, kind: str, labels: Sequence[str | Mapping[str, Any] | LabelDef],
                  actor: Actor, guidelines: str = "") -> LabelSchema:
    """Create a schema, or the next version of an existing one.

    Args:
        db: the metadata store.
        name: the schema's name; versions count up per name.
        kind: "single", "multi" or "spans".
        labels: the labels, in the order the page shows (and numbers) them.
        actor: who defines it (annotation.manage, from a global role).
        guidelines: instructions shown to annotators.

    Returns:
        The new version.

    Raises:
        Forbidden: the actor may not manage annotation.
        InvalidInput: a bad name, kind, label list or guidelines. Nothing is stored.
    """
    authorize(db, actor, "annotation.manage")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInput(f"Schema name {name!r} is not valid.",
                           hint="Use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    if kind not in set(SchemaKind):
        raise InvalidInput(f"Unknown schema kind {kind!r}.", hint=f"Use one of: {', '.join(SchemaKind)}.")
    defs = parse_labels(labels)
    if not isinstance(guidelines, str) or len(guidelines) > MAX_GUIDELINES:
        raise InvalidInput(f"Guidelines must be text of at most {MAX_GUIDELINES:,} characters.")
    with db.session() as s:
        latest = s.scalar(sa.select(sa.func.max(SqlLabelSchema.version)).where(SqlLabelSchema.name == name))
        row = SqlLabelSchema(name=name, version=(latest or 0) + 1, kind=str(kind),
                             labels=[{"name": d.name, "description": d.description} for d in defs],
                             guidelines=guidelines, created_by=actor.name)
        s.add(row)
        s.flush()
        append_entry(s, actor, "annotation.schema.define", "label_schema", row.id,
                     after={"name": name, "version": row.version, "kind": row.kind, "labels": row.labels})
        return _to_schema(row)


def get_schema(db: Database, schema_id: int) -> LabelSchema:
    """One schema version.

    Raises:
        NotFound: there is no such schema version.
    """
    with db.session(readonly=True) as s:
        row = s.get(SqlLabelSchema, schema_id)
        if row is None:
            raise NotFound(f"There is no label schema with id {schema_id}.",
                           hint="List schemas with 'chainkeeper annotate schemas'.")
        return _to_schema(row)


def list_schemas(db: Database, *, name: str | None = None) -> list[LabelSchema]:
    """Schema versions, newest first (of one name when given)."""
    query = sa.select(SqlLabelSchema).order_by(SqlLabelSchema.id.desc())
    if name is not None:
        query = query.where(SqlLabelSchema.name == name)
    with db.session(readonly=True) as s:
        return [_to_schema(r) for r in s.scalars(query)]


def find_schemas(db: Database, *, actor: Actor, name: str | None = None) -> list[LabelSchema]:
    """Schema versions, newest first (of one name when given), for a steward
    (annotation.manage, from a global role: schemas are shared definitions).

    Raises:
        Forbidden: the actor may not manage annotation everywhere.
    """
    authorize(db, actor, "annotation.manage")
    return list_schemas(db, name=name)


def check_value(schema: LabelSchema, value: Any, text: str) -> dict[str, Any]:
    """The stored form of an annotator's answer, checked against the schema (pure).

    Args:
        schema: the schema version the answer is made under.
        value: ``{"label": name}`` (single), ``{"labels": [names]}`` (multi) or
            ``{"spans": [[start, end, label], ...]}`` (spans; character offsets into
            ``text``, end exclusive).
        text: the item's text (spans must lie inside it and not overlap).

    Returns:
        The normalised value: multi-labels sorted, spans sorted by start.

    Raises:
        InvalidInput: the wrong shape for the schema's kind, a label outside the schema,
            or a span out of range or overlapping another.
    """
    known = schema.label_names
    hint = f"Labels of {schema.name} v{schema.version}: {', '.join(known[:20])}{' …' if len(known) > 20 else ''}."

    def check_label(label: Any) -> str:
        if label not in known:
            raise InvalidInput(f"Label {label!r} is not in schema {schema.name} v{schema.version}.", hint=hint)
        return str(label)

    if not isinstance(value, Mapping):
        raise InvalidInput(f"An answer is a JSON object, got {type(value).__name__}.",
                           hint='Send {"label": ...}, {"labels": [...]} or {"spans": [[start, end, label]]}.')
    if schema.kind == SchemaKind.SINGLE:
        if set(value) != {"label"}:
            raise InvalidInput(f"Schema {schema.name} takes one label per item: send {{\"label\": name}}.", hint=hint)
        return {"label": check_label(value["label"])}
    if schema.kind == SchemaKind.MULTI:
        labels = value.get("labels")
        if set(value) != {"labels"} or not isinstance(labels, list):
            raise InvalidInput(f"Schema {schema.name} takes a list of labels: send {{\"labels\": [names]}}.",
                               hint=hint)
        return {"labels": sorted({check_label(label) for label in labels})}
    spans = value.get("spans")
    if set(value) != {"spans"} or not isinstance(spans, list):
        raise InvalidInput(f"Schema {schema.name} takes spans: send {{\"spans\": [[start, end, label], ...]}}.",
                           hint=hint)
    out: list[list[Any]] = []
    for raw in spans:
        if (not isinstance(raw, (list, tuple)) or len(raw) != 3 or isinstance(raw[0], bool)
                or not isinstance(raw[0], int) or isinstance(raw[1], bool) or not isinstance(raw[1], int)):
            raise InvalidInput(f"Span {raw!r} is not [start, end, label] with integer offsets.")
        start, end, label = raw
        if not 0 <= start < end <= len(text):
            raise InvalidInput(f"Span {raw!r} is outside the text (0-{len(text)}) or empty.",
                               hint="Offsets count characters; end is exclusive and larger than start.")
        out.append([start, end, check_label(label)])
    out.sort()
    for previous, current in zip(out, out[1:], strict=False):
        if current[0] < previous[1]:
            raise InvalidInput(f"Spans {previous} and {current} overlap.", hint="Entity spans may not overlap.")
    return {"spans": out}
