"""Signals: the named numbers an alert rule can watch, read per deployment over a window.

A signal is a metric or a check result reduced to one value for one deployment over the
last ``window``: p99 latency, error rate, live accuracy, a drift statistic. Alert rules
name a signal; ``known_signals`` is the catalogue they are checked against, so a rule on
a name that does not exist is refused with the list of names that do.

Every reader takes ``(ctx, deployment_id, since, now)`` and returns a float, or None when
there is no data in the window (a rule without data neither fires nor resolves).

Sources, each read through its stage's public functions:

- the prediction log (``monitoring.predictions``): latency percentiles, mean
  confidence, request count;
- the stored metric series (``monitoring.metrics``), when present: every name in
  ``METRIC_NAMES``, the mean of its points in the window;
- live quality from feedback (``monitoring.quality``) and stored drift results
  (``monitoring.drift``), when present.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.monitoring.tables import SqlPrediction
from chainkeeper.serving import get_deployment

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["Reader", "Signal", "known_signals", "percentile", "read_signal"]

Reader = Callable[["Context", int, datetime, datetime], "float | None"]


@dataclass(frozen=True)
class Signal:
    """A named value a rule can watch."""

    name: str
    description: str
    read: Reader
    source: str


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation, as numpy's default (pure).

    Returns:
        None for an empty list.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- the prediction log ----------------------------------------------------------------


def _logged(ctx: Context, deployment_id: int, since: datetime, now: datetime, column: Any) -> list[float]:
    query = sa.select(column).where(SqlPrediction.deployment_id == deployment_id, SqlPrediction.at > since,
                                    SqlPrediction.at <= now)
    with ctx.db.session(readonly=True) as s:
        return [float(v) for v in s.scalars(query)]


def _latency(q: float) -> Reader:
    def read(ctx: Context, deployment_id: int, since: datetime, now: datetime) -> float | None:
        return percentile(_logged(ctx, deployment_id, since, now, SqlPrediction.latency_ms), q)
    return read


def _mean_confidence(ctx: Context, deployment_id: int, since: datetime, now: datetime) -> float | None:
    scores = _logged(ctx, deployment_id, since, now, SqlPrediction.score)
    return sum(scores) / len(scores) if scores else None


def _requests(ctx: Context, deployment_id: int, since: datetime, now: datetime) -> float | None:
    return float(len(_logged(ctx, deployment_id, since, now, SqlPrediction.latency_ms)))


_LOG_SIGNALS = [
    Signal("prediction_latency_p50_ms", "median latency of logged predictions (ms)", _latency(50), "prediction log"),
    Signal("prediction_latency_p99_ms", "99th percentile latency of logged predictions (ms)", _latency(99),
           "prediction log"),
    Signal("mean_confidence", "mean confidence (top score) of logged predictions", _mean_confidence,
           "prediction log"),
    Signal("prediction_count", "predictions logged in the window", _requests, "prediction log"),
]


# --- other monitoring modules, when installed ------------------------------------------


def _optional(module: str) -> Any:
    """A sibling monitoring module, or None while it is not part of this install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise  # the module exists but one of its imports is missing: a real error
        return None


def _series_signals() -> list[Signal]:
    metrics = _optional("chainkeeper.monitoring.metrics")
    if metrics is None:
        return []

    def reader(name: str) -> Reader:
        def read(ctx: Context, deployment_id: int, since: datetime, now: datetime) -> float | None:
            points = metrics.metric_series(ctx.db, name, since, deployment=get_deployment(ctx.db, deployment_id).name,
                                           until=now)
            if not points:
                return None
            if name.endswith("_total"):  # cumulative: the newest value says it all
                return float(points[-1].value)
            mean: float = sum(p.value for p in points) / len(points)
            return mean
        return read

    return [Signal(name, f"{about} Mean over the window (newest value for *_total).", reader(name), "metric series")
            for name, about in metrics.METRIC_NAMES.items()]


def _drift_signals() -> list[Signal]:
    drift = _optional("chainkeeper.monitoring.drift_jobs")
    if drift is None:
        return []
    from chainkeeper.monitoring.drift import ALL_CHECKS

    def reader(check: str, field: str) -> Reader:
        def read(ctx: Context, deployment_id: int, since: datetime, now: datetime) -> float | None:
            name = get_deployment(ctx.db, deployment_id).name
            newest = drift.list_drift_results(ctx.db, name, check=check, limit=1)
            if not newest or not since < newest[0].window_end <= now:
                return None  # no check of a window that ended inside this one
            return float(getattr(newest[0], field))
        return read

    out = []
    for check in ALL_CHECKS:
        out.append(Signal(f"drift.{check}", f"statistic of the newest {check} drift check", reader(check, "statistic"),
                          "drift checks"))
        out.append(Signal(f"drift.{check}.drifted", f"1 if the newest {check} drift check fired, else 0",
                          reader(check, "drifted"), "drift checks"))
    return out


def _quality_signals() -> list[Signal]:
    quality = _optional("chainkeeper.monitoring.quality")
    if quality is None:
        return []

    def reader(field: str) -> Reader:
        def read(ctx: Context, deployment_id: int, since: datetime, now: datetime) -> float | None:
            rows = [r for r in quality.labelled_predictions(ctx.db, deployment_id, since=since, until=now)
                    if r.truth is not None or r.true_spans is not None]
            value = quality.score_labelled(rows).get(field)
            return None if value is None else float(value)
        return read

    fields = (("accuracy", "accuracy (a tagger's: the share of texts with exactly the true entities)"),
              ("macro_f1", "macro-F1 (a tagger's: over entity types)"),
              ("ece", "expected calibration error"),
              ("entity_f1", "a tagger's entity F1 (exact type and offsets)"),
              ("entity_precision", "a tagger's entity precision"),
              ("entity_recall", "a tagger's entity recall"))
    return [Signal(f"live_{field}", f"{what} of the predictions with feedback in the window", reader(field),
                   "feedback") for field, what in fields]


def known_signals() -> dict[str, Signal]:
    """Every signal a rule may name, by name."""
    signals = [*_LOG_SIGNALS, *_series_signals(), *_drift_signals(), *_quality_signals()]
    return {s.name: s for s in signals}


def read_signal(ctx: Context, name: str, deployment_id: int, since: datetime, now: datetime) -> float | None:
    """The current value of one signal for one deployment (None: no data in the window).

    Raises:
        KeyError: an unknown signal (rules are checked when created, see ``alerts``).
    """
    return known_signals()[name].read(ctx, deployment_id, since, now)
