"""Live quality: accuracy, macro-F1 and calibration of served predictions that got feedback.

Predictions of a deployment are grouped into fixed time windows (and by the model
version that answered); the ones with a true label (``monitoring.feedback``) are scored
with the same functions the training stage uses offline (``classification_metrics``,
``calibration_report``), so the live numbers sit next to the model version's test
numbers from the registry on one scale.

Macro-F1 of a window averages over the labels that occur in it (as true or predicted
label), like scikit-learn without ``labels=``: a window of 50 texts cannot have all 77
intents, and averaging zeros for absent ones would say nothing about the model.

A token tagger's predictions are scored on their entities against the feedback spans
(``score_entities``): entity precision, recall and F1 (micro over entities, an entity
counts only with its type and both offsets right — seqeval's rule, so the live F1 sits
next to the test entity F1 of the registry), ``accuracy`` is the share of texts whose
entities are exactly right, ``macro_f1`` averages the F1 of the entity types present and
``ece`` calibrates the text's mean word probability against that exactness.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.monitoring.access import authorize_for_deployment
from chainkeeper.monitoring.feedback import span_keys
from chainkeeper.monitoring.logwriter import flush_writers
from chainkeeper.monitoring.tables import SqlFeedback, SqlPrediction
from chainkeeper.registry import get_model_version
from chainkeeper.serving import get_deployment_by_name
from chainkeeper.training import calibration_report, classification_metrics

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.registry import ModelVersion

__all__ = [
    "LabelledPrediction",
    "LiveQuality",
    "QualityWindow",
    "labelled_predictions",
    "live_quality",
    "offline_quality",
    "parse_window",
    "quality_windows",
    "score_labelled",
    "score_entities",
    "score_window",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}



def time_window(since: datetime | None, until: datetime | None, step: timedelta,
                steps: int) -> tuple[datetime, datetime]:
    """``(since, until]`` with the defaults of the reports: until now, since ``steps`` × ``step`` before.

    Raises:
        InvalidInput: the default start falls outside the calendar (an ``until`` in year 1, a
            window of millennia), instead of an OverflowError.
    """
    until = until or utcnow()
    try:
        return since or until - steps * step, until
    except OverflowError:
        raise InvalidInput(f"A window of {steps} x {step} before {until.isoformat()} starts before year 1.",
                           hint="Give 'since' as well, or a later 'until' or a shorter window.") from None

def parse_window(text: str) -> timedelta:
    """A duration from ``"45s"``, ``"30m"``, ``"1h"`` or ``"7d"`` (pure).

    Raises:
        InvalidInput: any other form, or zero.
    """
    match = _WINDOW.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise InvalidInput(f"Duration {text!r} is not valid.", hint="Write it as NUMBER+UNIT: 45s, 30m, 1h or 7d.")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


@dataclass(frozen=True)
class LabelledPrediction:
    """A logged prediction and its true label (None without feedback)."""

    request_id: str
    at: datetime
    model_version_id: int
    predicted: str
    confidence: float
    truth: str | None
    input_text: str
    latency_ms: float
    # A tagger's prediction: the entities served and the feedback's true spans (None without).
    predicted_spans: list[dict[str, Any]] | None = None
    true_spans: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class QualityWindow:
    """Quality of one model version's predictions in one time window."""

    start: datetime
    end: datetime
    model_version_id: int
    predictions: int
    labelled: int
    accuracy: float | None
    macro_f1: float | None
    ece: float | None
    # A tagger's window: entity-level scores against the feedback spans (None for a classifier).
    entity_precision: float | None = None
    entity_recall: float | None = None
    entity_f1: float | None = None


@dataclass(frozen=True)
class LiveQuality:
    """A deployment's live quality per window, overall, and each version's offline numbers."""

    deployment: str
    window_s: float
    windows: list[QualityWindow]
    overall: list[QualityWindow]
    offline: dict[int, dict[str, float | None]]


def score_window(truth: Sequence[str], predicted: Sequence[str], confidences: Sequence[float]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over the labels present) and ECE of labelled predictions (pure).

    Returns:
        ``{"labelled", "accuracy", "macro_f1", "ece"}``; the scores are None without rows.
    """
    if not truth:
        return {"labelled": 0, "accuracy": None, "macro_f1": None, "ece": None}
    labels = sorted(set(truth) | set(predicted))
    metrics = classification_metrics(list(truth), list(predicted), labels)
    ece = calibration_report(list(confidences), [t == p for t, p in zip(truth, predicted, strict=True)])["ece"]
    return {"labelled": len(truth), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "ece": ece}


def score_entities(truth: Sequence[Sequence[Any]], predicted: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Entity-level scores of tagged texts against their true spans (pure).

    An entity matches only with its type and both offsets equal (seqeval's rule on spans).

    Args:
        truth, predicted: per text, its spans (``{"type", "start", "end"}``, more keys ignored).

    Returns:
        ``{"labelled", "entity_precision", "entity_recall", "entity_f1", "exact_match",
        "macro_f1", "per_type": {type: f1}}``; a score is None when there is nothing to
        divide by (no entity on either side), and every score is None without texts.
    """
    if len(truth) != len(predicted):
        raise InvalidInput(f"{len(truth)} true span lists for {len(predicted)} predictions.")
    tp = fp = fn = 0
    counts: dict[str, list[int]] = {}  # type -> [tp, fp, fn]
    exact = 0
    for t, p in zip(truth, predicted, strict=True):
        gold = {(e["type"], e["start"], e["end"]) for e in span_keys(t)}
        guess = {(e["type"], e["start"], e["end"]) for e in span_keys(p)}
        exact += gold == guess
        for kind, *_ in gold | guess:
            counts.setdefault(kind, [0, 0, 0])
        for key in gold & guess:
            counts[key[0]][0] += 1
        for key in guess - gold:
            counts[key[0]][1] += 1
        for key in gold - guess:
            counts[key[0]][2] += 1
        tp, fp, fn = tp + len(gold & guess), fp + len(guess - gold), fn + len(gold - guess)

    def f1(a: int, b: int, c: int) -> float | None:
        return 2 * a / (2 * a + b + c) if a + b + c else None

    per_type = {kind: f1(*c) for kind, c in sorted(counts.items())}
    present = [v for v in per_type.values() if v is not None]
    n = len(truth)
    return {"labelled": n, "entity_precision": tp / (tp + fp) if tp + fp else None,
            "entity_recall": tp / (tp + fn) if tp + fn else None, "entity_f1": f1(tp, fp, fn),
            "exact_match": exact / n if n else None, "macro_f1": sum(present) / len(present) if present else None,
            "per_type": per_type}


def score_labelled(members: Sequence[LabelledPrediction]) -> dict[str, Any]:
    """A window's scores: entity-level for a tagger's predictions with feedback spans, else by label."""
    tagged = [m for m in members if m.true_spans is not None and m.predicted_spans is not None]
    if tagged:
        e = score_entities([m.true_spans or [] for m in tagged], [m.predicted_spans or [] for m in tagged])
        right = [span_keys(m.true_spans) == span_keys(m.predicted_spans) for m in tagged]
        ece = calibration_report([m.confidence for m in tagged], right)["ece"]
        return {"labelled": len(tagged), "accuracy": e["exact_match"], "macro_f1": e["macro_f1"], "ece": ece,
                "entity_precision": e["entity_precision"], "entity_recall": e["entity_recall"],
                "entity_f1": e["entity_f1"]}
    labelled = [m for m in members if m.truth is not None]
    return score_window([m.truth for m in labelled], [m.predicted for m in labelled],  # type: ignore[misc]
                        [m.confidence for m in labelled])


def quality_windows(rows: Sequence[LabelledPrediction], window: timedelta) -> list[QualityWindow]:
    """Group predictions into windows aligned to the epoch and score each (pure).

    Returns:
        One entry per (window, model version) that has predictions, oldest first.
    """
    if window <= timedelta(0):
        raise InvalidInput(f"A quality window must be positive, got {window}.", hint="E.g. --window 1h.")
    groups: dict[tuple[int, int], list[LabelledPrediction]] = {}
    for row in rows:
        index = int((row.at - _EPOCH) / window)
        groups.setdefault((index, row.model_version_id), []).append(row)
    out = []
    for (index, version_id), members in sorted(groups.items()):
        start = _EPOCH + index * window
        out.append(QualityWindow(start=start, end=start + window, model_version_id=version_id,
                                 predictions=len(members), **score_labelled(members)))
    return out


def offline_quality(version: ModelVersion) -> dict[str, float | None]:
    """The version's test-split numbers from the registry (None where the run stored none);
    a tagger's ``entity_f1`` is its test entity F1."""
    test = version.metrics.get("test") or {}

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, int | float) else None

    out = {"accuracy": number(test.get("accuracy")), "macro_f1": number(test.get("macro_f1")),
           "ece": number((test.get("calibration") or {}).get("ece"))}
    if "per_type" in test:  # a tagger: its test entity F1
        out["entity_f1"] = number(test.get("f1"))
    return out


def labelled_predictions(db: Database, deployment_id: int, *, since: datetime | None = None,
                         until: datetime | None = None, limit: int = 100_000) -> list[LabelledPrediction]:
    """A deployment's logged predictions in ``(since, until]`` with their feedback, oldest first."""
    flush_writers(db)  # read this process's buffered log records too
    query = (sa.select(SqlPrediction, SqlFeedback.label, SqlFeedback.spans)
             .outerjoin(SqlFeedback, SqlFeedback.request_id == SqlPrediction.id)
             .where(SqlPrediction.deployment_id == deployment_id)
             .order_by(SqlPrediction.at.desc(), SqlPrediction.id).limit(limit))
    if since is not None:
        query = query.where(SqlPrediction.at > since)
    if until is not None:
        query = query.where(SqlPrediction.at <= until)
    with db.session(readonly=True) as s:
        rows = [LabelledPrediction(request_id=p.id, at=p.at, model_version_id=p.model_version_id, predicted=p.label,
                                   confidence=p.score, truth=truth, input_text=p.input_text,
                                   latency_ms=p.latency_ms, predicted_spans=p.entities, true_spans=spans)
                for p, truth, spans in s.execute(query).all()]
    return rows[::-1]


def live_quality(ctx: Context, deployment: str, *, actor: Actor, window: timedelta = timedelta(hours=1),
                 since: datetime | None = None, until: datetime | None = None) -> LiveQuality:
    """Live quality of a deployment per window, against each answering version's offline numbers.

    Args:
        actor: who reads (``monitoring.read`` in the deployment's project).
        window: the length of each window (aligned to the epoch: 1h windows start on the hour).
        since: from this time (default: 24 windows back from ``until``).
        until: up to this time (default: now).

    Raises:
        Forbidden: the actor may not read it.
        NotFound: no such deployment. InvalidInput: a non-positive window.
    """
    authorize_for_deployment(ctx.db, actor, "monitoring.read", deployment)
    db = ctx.db
    if window <= timedelta(0):
        raise InvalidInput(f"A quality window must be positive, got {window}.", hint="E.g. --window 1h.")
    dep = get_deployment_by_name(db, deployment)
    since, until = time_window(since, until, window, 24)
    rows = labelled_predictions(db, dep.id, since=since, until=until)
    windows = quality_windows(rows, window)
    versions = sorted({w.model_version_id for w in windows} | {dep.model_version_id})
    overall = []
    for version_id in versions:
        members = [r for r in rows if r.model_version_id == version_id]
        if members:
            overall.append(QualityWindow(start=since, end=until, model_version_id=version_id,
                                         predictions=len(members), **score_labelled(members)))
    return LiveQuality(deployment=deployment, window_s=window.total_seconds(), windows=windows, overall=overall,
                       offline={v: offline_quality(get_model_version(db, v)) for v in versions})
