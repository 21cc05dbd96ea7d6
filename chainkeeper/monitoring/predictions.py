"""The prediction log: one record per text served, keyed by the request id returned.

Each record names the deployment and the model version that answered (which may differ
from the deployment's current version by the time someone asks), the time, the
latency, the sha256 of the input, the input itself and the answer. The lineage of a
prediction starts here.

The input text is stored as given for now; redaction of personal data is a later
issue and will change ``prediction_record``, not its callers.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa

from chainkeeper.core.db import Database
from chainkeeper.core.errors import NotFound
from chainkeeper.monitoring.tables import SqlPrediction

__all__ = [
    "PredictionRecord",
    "count_predictions",
    "get_prediction",
    "hash_input",
    "list_predictions",
    "log_predictions",
    "prediction_record",
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

    @property
    def request_id(self) -> str:
        return self.id


def hash_input(text: str) -> str:
    """sha256 (hex) of a text's UTF-8 bytes: finds repeats without reading the text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prediction_record(*, request_id: str, deployment_id: int, model_version_id: int, at: datetime, text: str,
                      label: str, score: float, latency_ms: float) -> PredictionRecord:
    """Build the record of one served text (pure); hashes the input.

    Args:
        request_id: the id returned to the caller (a uuid4 string, 36 characters).
        at: when it was served (aware UTC).
    """
    return PredictionRecord(id=request_id, deployment_id=deployment_id, model_version_id=model_version_id, at=at,
                            input_hash=hash_input(text), input_text=text, label=label, score=float(score),
                            latency_ms=float(latency_ms))


def _to_record(row: SqlPrediction) -> PredictionRecord:
    return PredictionRecord(id=row.id, deployment_id=row.deployment_id, model_version_id=row.model_version_id,
                            at=row.at, input_hash=row.input_hash, input_text=row.input_text, label=row.label,
                            score=row.score, latency_ms=row.latency_ms)


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
        # One executemany statement: a batch of 64 texts is one round trip, not 64.
        s.execute(sa.insert(SqlPrediction), [asdict(r) for r in records])
    return len(records)


def get_prediction(db: Database, request_id: str) -> PredictionRecord:
    """The record of one served text.

    Raises:
        NotFound: no prediction with that request id.
    """
    with db.session() as s:
        row = s.get(SqlPrediction, request_id)
        if row is None:
            raise NotFound(f"There is no prediction with request id {request_id!r}.",
                           hint="Use the request_id from a predict response (each text gets its own).")
        return _to_record(row)


def list_predictions(db: Database, deployment_id: int | None = None, limit: int = 50) -> list[PredictionRecord]:
    """The latest predictions, newest first.

    Args:
        deployment_id: only those served by this deployment.
        limit: at most this many.
    """
    query = sa.select(SqlPrediction).order_by(SqlPrediction.at.desc(), SqlPrediction.id).limit(limit)
    if deployment_id is not None:
        query = query.where(SqlPrediction.deployment_id == deployment_id)
    with db.session() as s:
        return [_to_record(r) for r in s.scalars(query)]


def count_predictions(db: Database, deployment_id: int | None = None) -> int:
    """How many predictions were logged (by one deployment, when given)."""
    query = sa.select(sa.func.count()).select_from(SqlPrediction)
    if deployment_id is not None:
        query = query.where(SqlPrediction.deployment_id == deployment_id)
    with db.session() as s:
        return int(s.execute(query).scalar_one())
