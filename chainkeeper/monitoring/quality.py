"""Live quality: accuracy, macro-F1 and calibration of served predictions that got feedback.

Predictions of a deployment are grouped into fixed time windows (and by the model
version that answered); the ones with a true label (``monitoring.feedback``) are scored
with the same functions the training stage uses offline (``classification_metrics``,
``calibration_report``), so the live numbers sit next to the model version's test
numbers from the registry on one scale.

Macro-F1 of a window averages over the labels that occur in it (as true or predicted
label), like scikit-learn without ``labels=``: a window of 50 texts cannot have all 77
intents, and averaging zeros for absent ones would say nothing about the model.
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
    "score_window",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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
        labelled = [m for m in members if m.truth is not None]
        scores = score_window([m.truth for m in labelled], [m.predicted for m in labelled],  # type: ignore[misc]
                              [m.confidence for m in labelled])
        start = _EPOCH + index * window
        out.append(QualityWindow(start=start, end=start + window, model_version_id=version_id,
                                 predictions=len(members), labelled=scores["labelled"], accuracy=scores["accuracy"],
                                 macro_f1=scores["macro_f1"], ece=scores["ece"]))
    return out


def offline_quality(version: ModelVersion) -> dict[str, float | None]:
    """The version's test-split numbers from the registry (None where the run stored none)."""
    test = version.metrics.get("test") or {}

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, int | float) else None

    return {"accuracy": number(test.get("accuracy")), "macro_f1": number(test.get("macro_f1")),
            "ece": number((test.get("calibration") or {}).get("ece"))}


def labelled_predictions(db: Database, deployment_id: int, *, since: datetime | None = None,
                         until: datetime | None = None, limit: int = 100_000) -> list[LabelledPrediction]:
    """A deployment's logged predictions in ``(since, until]`` with their feedback, oldest first."""
    flush_writers(db)  # read this process's buffered log records too
    query = (sa.select(SqlPrediction, SqlFeedback.label)
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
                                   latency_ms=p.latency_ms)
                for p, truth in s.execute(query).all()]
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
    until = until or utcnow()
    since = since or until - 24 * window
    rows = labelled_predictions(db, dep.id, since=since, until=until)
    windows = quality_windows(rows, window)
    versions = sorted({w.model_version_id for w in windows} | {dep.model_version_id})
    overall = []
    for version_id in versions:
        members = [r for r in rows if r.model_version_id == version_id]
        if members:
            labelled = [m for m in members if m.truth is not None]
            scores = score_window([m.truth for m in labelled], [m.predicted for m in labelled],  # type: ignore[misc]
                                  [m.confidence for m in labelled])
            overall.append(QualityWindow(start=since, end=until, model_version_id=version_id,
                                         predictions=len(members), **scores))
    return LiveQuality(deployment=deployment, window_s=window.total_seconds(), windows=windows, overall=overall,
                       offline={v: offline_quality(get_model_version(db, v)) for v in versions})
