"""The prediction log: one record per text served, keyed by the request id returned.

Each record names the deployment and the model version that answered (which may differ
from the deployment's current version by the time someone asks), the time, the
latency, the sha256 of the input as received, the input with its personal data
redacted (``chainkeeper.data.pii``: e-mails, phone numbers, cards, IBANs, ... become
``[EMAIL]``, ``[PHONE]``, ...; person names become ``[NAME]`` when ``pii_name_model``
names a tagger, ``monitoring.names``), the answer with its top scores. The lineage of a
prediction starts here.

The server does not write here on the request path: it hands records to a
``monitoring.logwriter.PredictionLogWriter``, which samples, redacts and inserts them
in batches on its own thread. The readers below first flush the writers of this
process that write to the same store, so a request id just returned is found at once
by ``get_prediction`` in the same process (another process sees it within the
writer's flush interval). ``purge_predictions`` applies the retention setting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from chainkeeper.core.db import Database
from chainkeeper.core.errors import NotFound
from chainkeeper.core.schema import (
    metadata,  # every stage's tables, for the foreign keys to the log
)
from chainkeeper.data import PLACEHOLDERS, redact_text
from chainkeeper.monitoring.names import add_names, find_names, name_tagger
from chainkeeper.monitoring.tables import SqlPrediction

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = [
    "PredictionRecord",
    "count_predictions",
    "get_prediction",
    "hash_input",
    "list_predictions",
    "log_predictions",
    "log_served_predictions",
    "prediction_record",
    "purge_predictions",
    "redact_input",
]


@dataclass(frozen=True)
class PredictionRecord:
    """One served prediction. ``id`` is the request id the caller received."""

    id: str
    deployment_id: int
    model_version_id: int
    at: datetime
    input_hash: str
    input_text: str
    label: str
    score: float
    latency_ms: float
    # Added with the buffered log (migration 0006); defaults keep older callers working.
    scores: dict[str, float] | None = None
    pii_spans: int = 0
    input_chars: int | None = None
    # Added with token classification (migration 0014): a tagger's entities, None for a classifier.
    entities: list[dict[str, Any]] | None = None

    @property
    def request_id(self) -> str:
        return self.id


def hash_input(text: str) -> str:
    """sha256 (hex) of a text's UTF-8 bytes: finds repeats without reading the text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def redact_input(text: str) -> tuple[str, int]:
    """The text with its personal data replaced by placeholders, and how many spans were (pure).

    Every type of ``data.pii`` is looked for (US phones, SSNs, credentials, CVVs, sort codes
    and account numbers too); a text without the digits or naming words a type needs skips
    that type's detector, so most served texts cost a few microseconds.
    """
    redacted, spans = redact_text(text)
    return redacted, len(spans)


def prediction_record(*, request_id: str, deployment_id: int, model_version_id: int, at: datetime, text: str,
                      label: str, score: float, latency_ms: float, scores: dict[str, float] | None = None,
                      entities: list[dict[str, Any]] | None = None,
                      names: Sequence[tuple[int, int]] = ()) -> PredictionRecord:
    """Build the record of one served text (pure): hashes the input as received, stores it redacted.

    Args:
        request_id: the id returned to the caller (a uuid4 string, 36 characters).
        at: when it was served (aware UTC).
        text: the input as received; only its hash and its redacted form are kept.
        scores: the top labels and probabilities returned to the caller.
        entities: a tagger's answer (``{"type", "start", "end", "text", "score"}`` each);
            kept with their offsets into the input as received (``input_chars`` long) and
            each entity's text redacted as the input is, so no personal data the input
            redaction removes comes back through an entity.
        names: (start, end) of the person names in ``text`` (``names.find_names``): each
            becomes ``[NAME]`` where no regex span covers it.
    """
    # A tagger's entities need the positions of the personal data, not only the redacted text.
    redacted, pii = redact_text(text)
    found = [(p.start, p.end, PLACEHOLDERS[p.kind]) for p in pii]
    if names:
        found = add_names(found, names)
        redacted = _replaced(text, found)
    spans = len(found)
    return PredictionRecord(id=request_id, deployment_id=deployment_id, model_version_id=model_version_id, at=at,
                            input_hash=hash_input(text), input_text=redacted, label=label, score=float(score),
                            latency_ms=float(latency_ms), scores=dict(scores) if scores is not None else None,
                            pii_spans=spans, input_chars=len(text),
                            entities=[_stored_entity(e, text, found) for e in entities] if entities is not None
                            else None)


def _replaced(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, placeholder) span, sorted and apart, replaced."""
    parts, at = [], 0
    for start, end, placeholder in spans:
        parts += [text[at:start], placeholder]
        at = end
    parts.append(text[at:])
    return "".join(parts)


def _stored_entity(entity: dict[str, Any], text: str, pii: list[tuple[int, int, str]]) -> dict[str, Any]:
    """An entity as the log keeps it: its text cut from the input with every piece of personal
    data it overlaps replaced by that data's placeholder (a part of a phone number is redacted
    too, which redacting the entity's text alone would miss)."""
    start, end = int(entity["start"]), int(entity["end"])
    parts, at = [], start
    for p_start, p_end, placeholder in pii:
        if p_end <= start or p_start >= end:
            continue
        parts += [text[at:p_start] if p_start > at else "", placeholder]
        at = max(at, p_end)
    parts.append(text[at:end] if at < end else "")
    return {"type": str(entity["type"]), "start": start, "end": end, "score": float(entity.get("score", 0.0)),
            "text": "".join(parts)}


def _to_record(row: SqlPrediction) -> PredictionRecord:
    return PredictionRecord(id=row.id, deployment_id=row.deployment_id, model_version_id=row.model_version_id,
                            at=row.at, input_hash=row.input_hash, input_text=row.input_text, label=row.label,
                            score=row.score, latency_ms=row.latency_ms, scores=row.scores, pii_spans=row.pii_spans,
                            input_chars=row.input_chars, entities=row.entities)


def _flush_writers(db: Database) -> None:
    """Read-your-writes within a process: write what this process's log writers still hold."""
    from chainkeeper.monitoring.logwriter import (
        flush_writers,  # the writer imports this module
    )

    flush_writers(db)


def log_predictions(db: Database, records: list[PredictionRecord]) -> int:
    """Store records in one bulk insert (one transaction).

    Args:
        records: what was served; an empty list writes nothing.

    Returns:
        How many records were written.

    Raises:
        StoreError: the store is unreachable, or a request id is already logged.
    """
    if not records:
        return 0
    with db.session() as s:
        # One executemany statement: a batch of 64 texts is one round trip, not 64. The
        # records are flat and frozen: a shallow dict each (asdict would deep-copy scores).
        s.execute(sa.insert(_table()), [dict(vars(r)) for r in records])
    return len(records)


def log_served_predictions(ctx: Context, items: list[dict[str, Any]]) -> int:
    """Store the answers serving hands over when it has no buffered writer (the
    ``serving.log_predictions`` hook, registered by ``chain.wiring``); returns how many.

    Args:
        items: one dict per answer with ``prediction_record``'s arguments.

    With ``pii_name_model`` set, the names are tagged here, by the context's own copy of
    the model (a server's writer tags them on its thread instead).
    """
    names = find_names(name_tagger(ctx), items)
    return log_predictions(ctx.db, [prediction_record(**item, names=found)
                                    for item, found in zip(items, names, strict=True)])


def get_prediction(db: Database, request_id: str) -> PredictionRecord:
    """The record of one served text.

    Raises:
        NotFound: no prediction with that request id.
    """
    _flush_writers(db)
    with db.session() as s:
        row = s.get(SqlPrediction, request_id)
        if row is None:
            raise NotFound(f"There is no prediction with request id {request_id!r}.",
                           hint="Use the request_id from a predict response (each text gets its own).")
        return _to_record(row)


def list_predictions(db: Database, deployment_id: int | None = None, limit: int = 50, *,
                     since: datetime | None = None) -> list[PredictionRecord]:
    """The latest predictions, newest first.

    Args:
        deployment_id: only those served by this deployment.
        limit: at most this many.
        since: only those served at or after this time (aware UTC).
    """
    _flush_writers(db)
    query = sa.select(SqlPrediction).order_by(SqlPrediction.at.desc(), SqlPrediction.id).limit(limit)
    if deployment_id is not None:
        query = query.where(SqlPrediction.deployment_id == deployment_id)
    if since is not None:
        query = query.where(SqlPrediction.at >= since)
    with db.session() as s:
        return [_to_record(r) for r in s.scalars(query)]


def count_predictions(db: Database, deployment_id: int | None = None) -> int:
    """How many predictions were logged (by one deployment, when given)."""
    _flush_writers(db)
    query = sa.select(sa.func.count()).select_from(SqlPrediction)
    if deployment_id is not None:
        query = query.where(SqlPrediction.deployment_id == deployment_id)
    with db.session() as s:
        return int(s.execute(query).scalar_one())


def purge_predictions(db: Database, before: datetime) -> int:
    """Delete the records served before ``before``: the retention of the prediction log.

    Records that another table points at (feedback given on a request id, for example)
    are kept: a ground-truth label outlives the retention window, and deleting its
    prediction would break that reference.

    Args:
        before: aware UTC; records with ``at`` earlier than this go.

    Returns:
        How many records were deleted.
    """
    table = _table()
    query = sa.delete(table).where(table.c.at < before)
    for fk in _references_to(table):
        query = query.where(table.c.id.not_in(sa.select(fk.parent).where(fk.parent.is_not(None))))
    with db.session() as s:
        # A DELETE answers a CursorResult (its rowcount); Session.execute is typed as the generic Result.
        return int(cast(CursorResult[Any], s.execute(query)).rowcount or 0)


def _table() -> sa.Table:
    """The predictions table (declarative typing names a mapped class's table a FromClause)."""
    return cast(sa.Table, SqlPrediction.__table__)


def _references_to(table: Any) -> list[Any]:
    """Foreign keys of other tables that point at ``table`` (every stage's tables, registered)."""
    return [fk for other in metadata.tables.values() if other is not table
            for fk in other.foreign_keys if fk.column.table is table]
