"""Imported sources: the record of one file brought in, and the rows it holds.

A source is immutable once imported: its rows live in one Parquet artefact named by its
sha256 (see ``ingest.py`` for how it is written), and the ``SqlSource`` row says where the
file came from, its checksum and who brought it. This module reads them back; it never
changes them.

The rows artefact holds every data row of the file in file order, accepted or not:

    text               string   the text as it was in the file (cleaning comes later)
    label              string   the label, surrounding whitespace stripped
    line               int64    1-based line of the file where the row starts (header = 1)
    split              string   the split declared at import ("train"/"dev"/"test") or null
    quarantine_reason  string   null for an accepted row, else why it was set aside
                                ("empty_text", "empty_label", "missing_fields", "extra_fields",
                                "invalid_json", "not_an_object", "undecodable")
    origin             string   where the row came from: "file:line", "file#row" (Parquet),
                                a path relative to an imported folder, or a crawled URL
    tokens, tags       list     CoNLL sources only: one sentence's tokens and their tags

Quarantined rows are kept beside the accepted ones (rather than in a second artefact) so
one digest names everything the file held and a steward can review what was set aside.
The Parquet schema metadata records the decoding used (``chainkeeper.encoding``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from chainkeeper.core.db import Database
from chainkeeper.core.errors import ArtifactError, NotFound
from chainkeeper.data.tables import SqlSource
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

SOURCE_FORMAT = "chainkeeper.source/1"
# Columns a caller of read_source_rows() gets for accepted rows.
ROW_COLUMNS = ("text", "label", "line", "split")
# ...and, for a token-labelled (CoNLL) source, these too.
TOKEN_COLUMNS = ("tokens", "tags")

SOURCE_SCHEMA = pa.schema([
    pa.field("text", pa.string()),
    pa.field("label", pa.string()),
    pa.field("line", pa.int64(), nullable=False),
    pa.field("split", pa.string()),
    pa.field("quarantine_reason", pa.string()),
    pa.field("origin", pa.string()),
])


@dataclass(frozen=True)
class Source:
    """One imported file: where it came from, its checksum, its counts, who brought it."""

    id: int
    kind: str
    uri: str
    sha256: str
    rows_accepted: int
    rows_quarantined: int
    rows_artifact: str
    created_by: str
    created_at: datetime
    format: str | None = None
    encoding: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file name of the source (the last part of its URI)."""
        return PurePath(self.uri).name

    def to_dict(self) -> dict[str, Any]:
        """The source as JSON values (times in ISO 8601), with its ``name``: what the API and ``--json`` print."""
        return {**asdict(self), "created_at": self.created_at.isoformat(), "name": self.name}


def to_source(row: SqlSource) -> Source:
    """Convert an ORM row to the ``Source`` value (used inside this stage's sessions)."""
    return Source(id=row.id, kind=row.kind, uri=row.uri, sha256=row.sha256, rows_accepted=row.rows_accepted,
                  rows_quarantined=row.rows_quarantined, rows_artifact=row.rows_artifact,
                  created_by=row.created_by, created_at=row.created_at,
                  format=row.format, encoding=row.encoding, options=dict(row.options or {}))


def get_source(db: Database, source_id: int) -> Source:
    """Return one imported source.

    Args:
        db: the metadata store.
        source_id: the source's id.

    Returns:
        The source.

    Raises:
        NotFound: there is no source with that id.
    """
    with db.session() as s:
        row = s.get(SqlSource, source_id)
        if row is None:
            raise NotFound(f"There is no source with id {source_id}.",
                           hint="Check the id against the list of imported sources.")
        return to_source(row)


def list_sources(db: Database, *, limit: int | None = None) -> list[Source]:
    """Return imported sources, newest first.

    Args:
        db: the metadata store.
        limit: at most this many (all when None).

    Returns:
        The sources, newest first.
    """
    query = sa.select(SqlSource).order_by(SqlSource.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with db.session() as s:
        return [to_source(r) for r in s.scalars(query)]


def count_sources(db: Database) -> int:
    """Return how many sources were imported.

    Args:
        db: the metadata store.

    Returns:
        The number of sources.
    """
    with db.session() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(SqlSource)) or 0)


def find_sources(ctx: Context, *, actor: Actor, limit: int | None = None) -> list[Source]:
    """Imported sources, newest first, for a reader.

    Sources are not bound to a project (one may feed several datasets), so reading them
    takes ``data.read`` from a global role, as importing takes ``data.import``.

    Raises:
        Forbidden: the actor may not read sources.
    """
    authorize(ctx.db, actor, "data.read")
    return list_sources(ctx.db, limit=limit)


def show_source(ctx: Context, source_id: int, *, actor: Actor) -> Source:
    """One source, for a reader (``data.read`` from a global role, see ``find_sources``).

    Raises:
        Forbidden: the actor may not read sources. NotFound: there is no such source.
    """
    authorize(ctx.db, actor, "data.read")
    return get_source(ctx.db, source_id)


def read_source_rows(ctx: Context, source_id: int, *, include_quarantined: bool = False) -> pa.Table:
    """Return the rows of an imported source, read back (and hash-checked) from the artefact store.

    Args:
        ctx: the stores.
        source_id: the source's id.
        include_quarantined: also return the rows set aside at import, with a
            ``quarantine_reason`` column (null for accepted rows).

    Returns:
        A table with columns text, label, line, split (plus tokens and tags for a CoNLL
        source, and quarantine_reason when asked), in file order. Its schema metadata
        carries the decoding used.

    Raises:
        NotFound: no such source, or its artefact is missing from the store.
        ArtifactCorrupted: the artefact no longer matches its digest.
    """
    source = get_source(ctx.db, source_id)
    table = parquet_from_bytes(ctx.artifacts.get_bytes(source.rows_artifact), what=f"source {source_id}")
    if include_quarantined:
        return table
    accepted = table.filter(pc.is_null(table.column("quarantine_reason")))
    return accepted.select([c for c in (*ROW_COLUMNS, *TOKEN_COLUMNS) if c in table.column_names])


def parquet_from_bytes(data: bytes, *, what: str) -> pa.Table:
    """Parse a Parquet blob read from the artefact store.

    Raises:
        ArtifactError: the blob is not Parquet (it was stored by something else).
    """
    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ArtifactError(f"The stored rows of {what} are not a readable Parquet file: {exc}.",
                            hint="Re-import the file; the artefact store holds something else under that digest.") \
            from None
