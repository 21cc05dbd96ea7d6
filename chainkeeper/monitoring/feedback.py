"""Feedback: the true label of a served prediction, attached to its request id.

For a token tagger's prediction the truth is its entities: a list of ``{"type", "start",
"end"}`` spans (offsets into the text as it was sent to predict; ``[]`` when it has
none) instead of a label; they are checked against the text's length and the model's
entity types, stored in ``spans`` with their summary (the types, as the prediction log
shows them) in ``label``, and a prediction is ``correct`` when its entities are exactly
those spans. Live entity F1 (``quality``) reads them.

A human reviewer (a user with ``monitoring.feedback``) or a downstream system (an API
key of the deployment with the ``feedback`` scope) sends ``(request_id, label)`` pairs.
A batch is checked whole before anything is stored: an unknown request id, a request
served by another deployment than the key's, or a label outside the answering model's
label set refuses the whole batch, and nothing is written.

Re-submission and correction policy:

- the same label again for a request id is a no-op (``unchanged``): retries are safe;
- a different label *corrects* the stored one (``corrected``): the row keeps one label,
  ``revisions`` counts the corrections, ``previous_label`` holds the one replaced and
  the ledger records who changed what (the latest word wins; the ledger keeps them all).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Forbidden, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize, projects_allowed
from chainkeeper.monitoring.access import authorize_for_object
from chainkeeper.monitoring.logwriter import flush_writers
from chainkeeper.monitoring.tables import SqlFeedback, SqlPrediction
from chainkeeper.registry import get_model_version
from chainkeeper.serving import (
    entity_types,
    get_deployment_by_name,
    project_of_deployment,
    summarize_entities,
    validate_spans,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.serving import DeploymentKey

__all__ = [
    "MAX_FEEDBACK_ITEMS",
    "SOURCES",
    "Feedback",
    "FeedbackOutcome",
    "get_feedback",
    "list_feedback",
    "model_labels",
    "span_keys",
    "submit_feedback",
]

SOURCES = ("reviewer", "system")
MAX_FEEDBACK_ITEMS = 1000
# Label sets by model artefact digest, kept on the store: an artefact is immutable, so they
# never go stale; one entry per model version ever asked about.
_LABELS = "monitoring.model_labels"


@dataclass(frozen=True)
class Feedback:
    """The stored true label of one prediction, next to what was predicted."""

    request_id: str
    label: str
    predicted: str
    correct: bool
    source: str
    given_by: str
    given_at: datetime
    revisions: int
    previous_label: str | None
    deployment_id: int
    model_version_id: int
    # A tagger's prediction: the true spans and the served ones ({"type", "start", "end"}).
    spans: list[dict[str, Any]] | None = None
    predicted_spans: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class FeedbackOutcome:
    """What one submitted pair did: ``created``, ``unchanged`` or ``corrected``."""

    status: str
    feedback: Feedback


def span_keys(spans: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Spans reduced to what a match compares: ``{"type", "start", "end"}``, sorted (pure)."""
    return sorted(({"type": str(e["type"]), "start": int(e["start"]), "end": int(e["end"])} for e in spans or ()),
                  key=lambda e: (e["start"], e["end"], e["type"]))


def _to_feedback(row: SqlFeedback, prediction: SqlPrediction) -> Feedback:
    predicted_spans = span_keys(prediction.entities) if prediction.entities is not None else None
    correct = (span_keys(row.spans) == predicted_spans if row.spans is not None and predicted_spans is not None
               else row.label == prediction.label)
    return Feedback(request_id=row.request_id, label=row.label, predicted=prediction.label,
                    correct=correct, source=row.source, given_by=row.given_by,
                    given_at=row.given_at, revisions=row.revisions, previous_label=row.previous_label,
                    deployment_id=prediction.deployment_id, model_version_id=prediction.model_version_id,
                    spans=row.spans, predicted_spans=predicted_spans)


def model_labels(ctx: Context, model_version_id: int) -> list[str]:
    """The label set of a model version, read from its stored folder's ``chainkeeper.json``.

    Raises:
        NotFound: no such version. ArtifactError: its files are missing.
    """
    from chainkeeper.monitoring._training import META_FILE  # loads torch

    digest = get_model_version(ctx.db, model_version_id).model_artifact
    cache: dict[str, list[str]] = ctx.state(_LABELS, dict)
    if digest not in cache:  # two threads may both read the file; they store the same list
        meta = json.loads(ctx.artifacts.get_bytes(ctx.artifacts.read_manifest(digest)[META_FILE]))
        cache[digest] = list(meta["labels"])
    return list(cache[digest])


# What one feedback item says is true: a label, or a tagger's entity spans.
Truth = str | list[dict[str, Any]]


def _check_items(items: Sequence[tuple[str, Truth]]) -> None:
    if not items:
        raise InvalidInput("There is no feedback to store.",
                           hint='Send {"request_id": "...", "label": "..."} or {"items": [...]}.')
    if len(items) > MAX_FEEDBACK_ITEMS:
        raise InvalidInput(f"{len(items):,} feedback items in one call; at most {MAX_FEEDBACK_ITEMS} are allowed.",
                           hint=f"Send them in batches of up to {MAX_FEEDBACK_ITEMS}.")
    seen: dict[str, Truth] = {}
    for request_id, label in items:
        blank = isinstance(label, str) and not label.strip()
        if not request_id or blank or not isinstance(label, str | list):
            raise InvalidInput(f"Feedback needs a request id and a non-blank label (or a list of entity spans), "
                               f"got {request_id!r}: {label!r}.")
        if seen.setdefault(request_id, label) != label:
            raise InvalidInput(f"Request id {request_id!r} appears twice with different labels "
                               f"({seen[request_id]!r}, {label!r}).", hint="Send one label per request id.")


def _check_truth(ctx: Context, request_id: str, truth: Truth, prediction: SqlPrediction) -> Truth:
    """The truth for one prediction, checked against what its model answers (spans normalised)."""
    labels = model_labels(ctx, prediction.model_version_id)
    if prediction.entities is not None:  # a tagger served it
        types = entity_types(labels)
        if not isinstance(truth, list):
            raise InvalidInput(f"Request id {request_id!r} was answered by a tagger: its feedback is the list of "
                               f"true entity spans, not the label {truth!r}; no feedback was stored.",
                               hint='Send "spans": [{"type": "PER", "start": 0, "end": 5}, ...] ([] for none); '
                               f"types: {', '.join(types)}.")
        try:
            return validate_spans(truth, text_length=int(prediction.input_chars or 0), types=types)
        except InvalidInput as exc:
            raise InvalidInput(f"Request id {request_id!r}: {exc.message} No feedback was stored.",
                               hint=exc.hint) from None
    if not isinstance(truth, str):
        raise InvalidInput(f"Request id {request_id!r} was answered by a classifier: its feedback is one label, "
                           "not entity spans; no feedback was stored.", hint=f"Allowed labels: {', '.join(labels)}.")
    if truth not in labels:
        raise InvalidInput(f"Label {truth!r} for request id {request_id!r} is not one the model knows; "
                           "no feedback was stored.",
                           hint=f"Allowed labels: {', '.join(labels)}.")
    return truth


def submit_feedback(ctx: Context, items: Sequence[tuple[str, Truth]], *, actor: Actor, source: str | None = None,
                    key: DeploymentKey | None = None, deployment: str | None = None) -> list[FeedbackOutcome]:
    """Attach true labels to served predictions (all or none).

    Args:
        items: ``(request_id, label)`` pairs; the request id is the one a predict call returned.
            For a tagger's prediction the label is the list of true entity spans
            (``{"type", "start", "end"}``, offsets into the text as sent; ``[]``: none).
        actor: who sends them: a user allowed ``monitoring.feedback``, or the actor of
            ``key``; recorded as ``given_by``.
        source: ``reviewer`` (a person) or ``system`` (a downstream program); default:
            ``system`` for an API key, else ``reviewer``.
        key: the deployment API key the call came with; it must hold the ``feedback``
            scope, and every request id must have been served by its deployment.
        deployment: when given, every request id must have been served by this deployment.

    Returns:
        One outcome per pair, in order.

    Raises:
        Forbidden: the user may not give feedback in the project of a prediction's
            deployment, or the key lacks the scope.
        NotFound: a request id is unknown (or not the key's deployment's); nothing is stored.
        InvalidInput: a label outside the answering model's labels (the message lists
            them), spans that do not fit the text or the model's entity types, a label
            for a tagger or spans for a classifier, a bad source, an empty or oversized
            batch; nothing is stored.
    """
    if key is None:
        projects_allowed(ctx.db, actor, "monitoring.feedback")  # refused before any lookup
    elif "feedback" not in key.scopes:
        raise Forbidden(f"API key {key.id} ({key.name}) lacks the 'feedback' scope (it has: {', '.join(key.scopes)}).",
                        hint="Issue a key with --scope feedback.")
    source = source or ("system" if key is not None else "reviewer")
    if source not in SOURCES:
        raise InvalidInput(f"Unknown feedback source {source!r}.", hint=f"Sources: {', '.join(SOURCES)}.")
    _check_items(items)
    wanted = list(dict.fromkeys(request_id for request_id, _ in items))
    flush_writers(ctx.db)  # a prediction served a moment ago may still be in this process's log buffer
    with ctx.db.session(readonly=True) as s:
        predictions = {p.id: p for p in s.scalars(sa.select(SqlPrediction).where(SqlPrediction.id.in_(wanted)))}
        s.expunge_all()
    only = key.deployment if key is not None else deployment
    only_id = key.deployment_id if key is not None else _deployment_id(ctx, deployment)
    missing = [r for r in wanted if r not in predictions
               or (only_id is not None and predictions[r].deployment_id != only_id)]
    if missing:
        where = f" by deployment {only!r}" if only is not None else ""
        raise NotFound(f"No prediction was served{where} with request id(s) {', '.join(map(repr, missing[:5]))}"
                       f"{' and more' if len(missing) > 5 else ''}; no feedback was stored.",
                       hint="Use the request_id of each text from the predict response (the log may also have "
                       "sampled that request out or expired it).")
    if key is None:  # a user gives feedback in the project of each prediction's deployment
        for deployment_id in sorted({predictions[r].deployment_id for r in wanted}):
            authorize(ctx.db, actor, "monitoring.feedback", project=project_of_deployment(ctx.db, deployment_id))
    checked = [(request_id, _check_truth(ctx, request_id, truth, predictions[request_id]))
               for request_id, truth in items]
    return _store(ctx.db, checked, predictions, actor=actor, source=source)


def _deployment_id(ctx: Context, deployment: str | None) -> int | None:
    return get_deployment_by_name(ctx.db, deployment).id if deployment is not None else None


def _store(db: Database, items: Sequence[tuple[str, Truth]], predictions: dict[str, SqlPrediction], *,
           actor: Actor, source: str) -> list[FeedbackOutcome]:
    outcomes = []
    now = utcnow()
    with db.session() as s:
        existing = {f.request_id: f for f in s.scalars(
            sa.select(SqlFeedback).where(SqlFeedback.request_id.in_([r for r, _ in items])))}
        for request_id, truth in items:
            spans = truth if isinstance(truth, list) else None
            label = summarize_entities(spans) if spans is not None else str(truth)
            row = existing.get(request_id)
            before: dict[str, Any] | None
            if row is not None and row.label == label and row.spans == spans:
                outcomes.append(FeedbackOutcome("unchanged", _to_feedback(row, predictions[request_id])))
                continue
            if row is None:
                row = existing[request_id] = SqlFeedback(request_id=request_id, label=label, source=source,
                                                         given_by=actor.name, given_at=now, revisions=0, spans=spans)
                s.add(row)
                status, before = "created", None
            else:
                before = {"label": row.label, "given_by": row.given_by}
                if row.spans is not None:
                    before["spans"] = row.spans
                row.previous_label, row.label, row.revisions = row.label, label, row.revisions + 1
                row.spans = spans
                row.source, row.given_by, row.given_at = source, actor.name, now
                status = "corrected"
            s.flush()
            after: dict[str, Any] = {"label": label, "given_by": actor.name}
            details: dict[str, Any] = {"label": label, "source": source, "predicted": predictions[request_id].label}
            if spans is not None:
                after["spans"] = details["spans"] = spans
            append_entry(s, actor, "monitoring.feedback" if status == "created" else "monitoring.feedback.correct",
                         "prediction", request_id, before=before, after=after, details=details)
            outcomes.append(FeedbackOutcome(status, _to_feedback(row, predictions[request_id])))
    return outcomes


def get_feedback(db: Database, request_id: str) -> Feedback:
    """The feedback stored for one request id.

    Raises:
        NotFound: no feedback (or no prediction) with that request id.
    """
    with db.session(readonly=True) as s:
        found = s.execute(sa.select(SqlFeedback, SqlPrediction).join(
            SqlPrediction, SqlPrediction.id == SqlFeedback.request_id).where(SqlFeedback.request_id == request_id)
        ).first()
        if found is None:
            raise NotFound(f"There is no feedback for request id {request_id!r}.",
                           hint="Attach a label with 'chainkeeper monitor feedback REQUEST_ID LABEL'.")
        return _to_feedback(*found)


def show_feedback(ctx: Context, request_id: str, *, actor: Actor) -> Feedback:
    """The feedback stored for one request id, for a reader (``monitoring.read`` in the
    project of the deployment that served it).

    Raises:
        Forbidden: the actor may not read it. NotFound: no feedback (or no prediction) with that request id.
    """
    authorize_for_object(ctx.db, actor, "monitoring.read", lambda: get_feedback(ctx.db, request_id).deployment_id)
    return get_feedback(ctx.db, request_id)


def list_feedback(db: Database, *, deployment_id: int | None = None, limit: int = 100) -> list[Feedback]:
    """Stored feedback, most recently given first."""
    query = (sa.select(SqlFeedback, SqlPrediction).join(SqlPrediction, SqlPrediction.id == SqlFeedback.request_id)
             .order_by(SqlFeedback.given_at.desc(), SqlFeedback.id.desc()).limit(limit))
    if deployment_id is not None:
        query = query.where(SqlPrediction.deployment_id == deployment_id)
    with db.session(readonly=True) as s:
        return [_to_feedback(f, p) for f, p in s.execute(query).all()]
