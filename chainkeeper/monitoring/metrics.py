"""Serving metrics: live in Prometheus text format, and sampled into the store for charts and alerts.

Live (``GET /metrics``, one ``ServingMetrics`` per app, its own registry):

======================================================  ==========================================
``chainkeeper_predict_requests_total``                  answered predict requests, by deployment
                                                        and model_version
``chainkeeper_predict_texts_total``                     texts labelled, same labels
``chainkeeper_predict_errors_total``                    requests answered with an error, by
                                                        deployment and status
``chainkeeper_predict_latency_seconds``                 histogram of server-side latency of
                                                        answered requests, by deployment and
                                                        model_version
``chainkeeper_batch_size``                              histogram of texts per model call, by
                                                        model_version (the micro-batcher's own
                                                        counts)
``chainkeeper_batch_queue_depth``                       requests waiting for the model now
``chainkeeper_prediction_log_buffered``                 log records waiting to be written
``chainkeeper_prediction_log_written_total``            log records stored
``chainkeeper_prediction_log_dropped_total``            log records dropped (buffer full or store
                                                        down after retries)
``chainkeeper_prediction_log_names_unchecked_total``    log records stored without the name tagger
                                                        of ``pii_name_model`` (it could not be
                                                        used: regex redaction only)
``process_resident_memory_bytes`` and other process_*   prometheus-client's process collector
======================================================  ==========================================

Stored (``MetricSampler``: every ``metrics_sample_s`` seconds a thread turns two
successive snapshots of that registry into the series of ``METRIC_NAMES`` and inserts
them into ``metric_samples``); read them with ``metric_series``. Rates and quantiles
cover the interval between two samples, not the time since start.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize, projects_allowed
from chainkeeper.monitoring.access import (
    authorize_for_deployment,
    readable_deployment_ids,
)
from chainkeeper.monitoring.tables import SqlMetricSample
from chainkeeper.serving import METRICS_ENV, get_deployment

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.serving import ProcessGroup

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS_S",
    "METRIC_NAMES",
    "MetricPoint",
    "MetricSampler",
    "ServingMetrics",
    "derive_points",
    "histogram_quantile",
    "metric_series",
    "store_points",
]

_log = logging.getLogger(__name__)

# The stored series, by name: what alert rules and charts may ask for. Labels say which
# of "deployment" and "model_version" a series carries.
METRIC_NAMES: dict[str, str] = {
    "requests_per_s": "Predict requests answered per second over the interval (deployment, model_version).",
    "texts_per_s": "Texts labelled per second over the interval (deployment, model_version).",
    "requests_total": "Predict requests answered since the server started (deployment, model_version).",
    "latency_p50_ms": "Median server-side latency of requests in the interval, ms (deployment, model_version).",
    "latency_p95_ms": "95th percentile latency of requests in the interval, ms (deployment, model_version).",
    "latency_p99_ms": "99th percentile latency of requests in the interval, ms (deployment, model_version).",
    "errors_per_s": "Predict requests answered with an error per second over the interval (deployment).",
    "error_rate": "Share of predict requests answered with an error over the interval, 0-1 (deployment).",
    "batch_size_mean": "Mean texts per model call over the interval (model_version).",
    "queue_depth": "Requests waiting for the model when sampled (model_version).",
    "process_resident_memory_bytes": "Resident memory of the server process, bytes.",
    "prediction_log_buffered": "Prediction-log records waiting to be written when sampled.",
    "prediction_log_dropped_total": "Prediction-log records dropped since the server started.",
}

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
                     3.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# A deployment name the store does not know is the caller's text: one label for all.
UNKNOWN_DEPLOYMENT = "(unknown)"

# (prometheus sample name, frozenset of label pairs) -> value
Snapshot = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class MetricPoint:
    """One value of a stored series."""

    name: str
    labels: dict[str, str]
    value: float
    at: datetime


# --- the live registry ----------------------------------------------------------------


class ServingMetrics:
    """The Prometheus registry of one app, and the calls the predict route makes.

    In a multi-process server (``group`` given) the counters and the latency histogram
    live in the group's files (prometheus-client's multiprocess mode), so ``render`` and
    ``snapshot`` answer the totals of every process, and the memory is the group's; the
    batch sizes, queue depth and log-writer figures stay those of the answering process.

    Args:
        runtime_stats: returns, at scrape time, the predictor cache's ``stats()``
            (per model version: batch sizes, queue depth).
        log_stats: returns the prediction-log writer's ``stats()``, or None.
        group: the server's process group, or None for a lone process.
    """

    def __init__(self, *, runtime_stats: Callable[[], dict[int, dict[str, Any]]] | None = None,
                 log_stats: Callable[[], Any] | None = None, group: ProcessGroup | None = None) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Histogram,
            ProcessCollector,
            values,
        )

        self.registry = CollectorRegistry()
        self._requests = Counter("chainkeeper_predict_requests", "Predict requests answered.",
                                 ["deployment", "model_version"], registry=self.registry)
        self._texts = Counter("chainkeeper_predict_texts", "Texts labelled.", ["deployment", "model_version"],
                              registry=self.registry)
        self._errors = Counter("chainkeeper_predict_errors", "Predict requests answered with an error.",
                               ["deployment", "status"], registry=self.registry)
        self._latency = Histogram("chainkeeper_predict_latency_seconds", "Server-side latency of answered requests.",
                                  ["deployment", "model_version"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        if group is None:
            ProcessCollector(registry=self.registry)
            self._readable = self.registry
        else:
            from prometheus_client.multiprocess import MultiProcessCollector

            if values.ValueClass is values.MutexValue:  # a programming error: see serving.processes
                raise RuntimeError(f"{METRICS_ENV} was not set before prometheus_client was imported")
            self._readable = CollectorRegistry()
            # Its __init__ is unannotated in prometheus_client.
            MultiProcessCollector(self._readable, path=str(group.metrics_dir))  # type: ignore[no-untyped-call]
            self._readable.register(_GroupMemoryCollector(group))
        self._readable.register(_RuntimeCollector(runtime_stats, log_stats))
        # Children by label values: .labels() takes a lock and builds a key on every call.
        self._children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self._lock = threading.Lock()

    def observe(self, deployment: str, model_version_id: int, seconds: float, texts: int) -> None:
        """Count one answered request and its latency."""
        key = (deployment, model_version_id)
        children = self._children.get(key)
        if children is None:
            with self._lock:
                version = str(model_version_id)
                children = self._children[key] = (self._requests.labels(deployment, version),
                                                  self._texts.labels(deployment, version),
                                                  self._latency.labels(deployment, version))
        requests, text_count, latency = children
        requests.inc()
        text_count.inc(texts)
        latency.observe(seconds)

    def observe_error(self, deployment: str, status: int) -> None:
        """Count one request answered with an error (use ``UNKNOWN_DEPLOYMENT`` for a name not found)."""
        self._errors.labels(deployment, str(status)).inc()

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self._readable)

    def snapshot(self) -> Snapshot:
        """Every sample of the registry now, keyed by name and labels."""
        out: Snapshot = {}
        for family in self._readable.collect():
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return out


class _GroupMemoryCollector:
    """The resident memory of every live process of a server group, summed."""

    def __init__(self, group: ProcessGroup) -> None:
        self._group = group
        self._page = os.sysconf("SC_PAGE_SIZE")

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        total = 0
        for pid in self._group.pids():
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self._page
            except (OSError, IndexError, ValueError):  # gone meanwhile, or not Linux
                continue
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory of the server's processes.",
                                value=total)


class _RuntimeCollector:
    """Batch sizes, queue depth and the log writer's counters, read when scraped."""

    def __init__(self, runtime_stats: Callable[[], dict[int, dict[str, Any]]] | None,
                 log_stats: Callable[[], Any] | None) -> None:
        self._runtime_stats = runtime_stats
        self._log_stats = log_stats

    def describe(self) -> list[Any]:
        return []  # collected lazily; nothing to check at registration

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        batch = HistogramMetricFamily("chainkeeper_batch_size", "Texts per model call.", labels=["model_version"])
        depth = GaugeMetricFamily("chainkeeper_batch_queue_depth", "Requests waiting for the model.",
                                  labels=["model_version"])
        for version_id, entry in (self._runtime_stats() if self._runtime_stats else {}).items():
            sizes: dict[int, int] = entry.get("batch_sizes") or {}
            if "queue_depth" in entry:
                depth.add_metric([str(version_id)], entry["queue_depth"])
            if sizes:
                buckets = [(str(b), sum(n for s, n in sizes.items() if s <= b)) for b in BATCH_BUCKETS]
                buckets.append(("+Inf", sum(sizes.values())))
                batch.add_metric([str(version_id)], buckets, sum_value=sum(s * n for s, n in sizes.items()))
        yield batch
        yield depth
        stats = self._log_stats() if self._log_stats else None
        if stats is not None:
            yield GaugeMetricFamily("chainkeeper_prediction_log_buffered", "Log records waiting to be written.",
                                    value=stats.buffered)
            yield CounterMetricFamily("chainkeeper_prediction_log_written", "Log records stored.", value=stats.written)
            yield CounterMetricFamily("chainkeeper_prediction_log_dropped",
                                      "Log records dropped: buffer full, or the store failed after retries.",
                                      value=stats.dropped + stats.failed)
            yield CounterMetricFamily("chainkeeper_prediction_log_names_unchecked",
                                      "Log records stored without the person-name tagger (pii_name_model), "
                                      "which could not be used.", value=stats.names_unchecked)


# --- from snapshots to stored series (pure) ---------------------------------------------


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a histogram, interpolated linearly inside its bucket (pure).

    Args:
        q: 0-1.
        buckets: (upper bound, cumulative count) sorted by bound, the last bound ``inf``.

    Returns:
        The estimate (the largest finite bound when it falls in the ``+Inf`` bucket),
        or None for an empty histogram.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            in_bucket = cumulative - below
            return lower + (upper - lower) * ((rank - below) / in_bucket if in_bucket > 0 else 1.0)
        lower, below = upper, cumulative
    return lower


def _delta(current: Snapshot, previous: Snapshot | None, key: tuple[str, frozenset[tuple[str, str]]]) -> float:
    """The increase of a counter sample; a counter that went down restarted (from zero)."""
    now = current.get(key, 0.0)
    before = previous.get(key, 0.0) if previous else 0.0
    return now - before if now >= before else now


def _series(snapshot: Snapshot, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in snapshot.items() if n == name}


def derive_points(previous: Snapshot | None, current: Snapshot, seconds: float, at: datetime) -> list[MetricPoint]:
    """The stored series (``METRIC_NAMES``) from two snapshots ``seconds`` apart (pure).

    Args:
        previous: the snapshot before (None: the first one; rates then cover ``seconds``
            since start).
        current: the snapshot now.
        seconds: the time between them.
        at: the time to stamp the points with.
    """
    points: list[MetricPoint] = []
    seconds = max(seconds, 1e-9)

    def add(name: str, labels: dict[str, str], value: float | None) -> None:
        if value is not None:
            points.append(MetricPoint(name, labels, float(value), at))

    answered_by_deployment: dict[str, float] = {}
    for labels in _series(current, "chainkeeper_predict_requests_total"):
        tags = dict(labels)
        key = ("chainkeeper_predict_requests_total", labels)
        answered = _delta(current, previous, key)
        answered_by_deployment[tags["deployment"]] = answered_by_deployment.get(tags["deployment"], 0.0) + answered
        add("requests_total", tags, current[key])
        add("requests_per_s", tags, answered / seconds)
        add("texts_per_s", tags, _delta(current, previous, ("chainkeeper_predict_texts_total", labels)) / seconds)
        buckets = sorted(
            (float(dict(bl)["le"]), _delta(current, previous, ("chainkeeper_predict_latency_seconds_bucket", bl)))
            for bl in _series(current, "chainkeeper_predict_latency_seconds_bucket")
            if {k: v for k, v in bl if k != "le"} == tags)
        for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
            value = histogram_quantile(q, buckets)
            add(name, tags, value * 1000 if value is not None else None)
    errors_by_deployment: dict[str, float] = {}
    for labels in _series(current, "chainkeeper_predict_errors_total"):
        deployment = dict(labels)["deployment"]
        errors_by_deployment[deployment] = (errors_by_deployment.get(deployment, 0.0)
                                            + _delta(current, previous, ("chainkeeper_predict_errors_total", labels)))
    for deployment in sorted(set(answered_by_deployment) | set(errors_by_deployment)):
        errors = errors_by_deployment.get(deployment, 0.0)
        total = errors + answered_by_deployment.get(deployment, 0.0)
        add("errors_per_s", {"deployment": deployment}, errors / seconds)
        add("error_rate", {"deployment": deployment}, errors / total if total else 0.0)
    for labels in _series(current, "chainkeeper_batch_size_count"):
        calls = _delta(current, previous, ("chainkeeper_batch_size_count", labels))
        texts = _delta(current, previous, ("chainkeeper_batch_size_sum", labels))
        add("batch_size_mean", dict(labels), texts / calls if calls else None)
    for labels, value in _series(current, "chainkeeper_batch_queue_depth").items():
        add("queue_depth", dict(labels), value)
    for name, stored in (("process_resident_memory_bytes", "process_resident_memory_bytes"),
                         ("chainkeeper_prediction_log_buffered", "prediction_log_buffered"),
                         ("chainkeeper_prediction_log_dropped_total", "prediction_log_dropped_total")):
        for labels, value in _series(current, name).items():
            add(stored, dict(labels), value)
    return points


# --- the store ---------------------------------------------------------------------------


def store_points(db: Database, points: list[MetricPoint]) -> int:
    """Insert points into ``metric_samples`` in one statement; returns how many."""
    if not points:
        return 0
    with db.session() as s:
        s.execute(sa.insert(SqlMetricSample), [
            {"name": p.name, "labels": p.labels, "deployment": p.labels.get("deployment"), "value": p.value,
             "at": p.at} for p in points])
    return len(points)


def read_metric_series(ctx: Context, name: str, since: datetime, deployment: str | None = None, *,
                       actor: Actor) -> list[MetricPoint]:
    """``metric_series`` for a reader: one deployment's points need ``monitoring.read`` in its
    project; without a deployment, only the points of deployments the actor may read (and,
    for a reader of every project, the series without a deployment label).

    Raises:
        Forbidden: the actor may not read them. NotFound: no such deployment.
        InvalidInput: as ``metric_series``.
    """
    if deployment is not None:
        authorize_for_deployment(ctx.db, actor, "monitoring.read", deployment)
        return metric_series(ctx.db, name, since, deployment)
    readable = readable_deployment_ids(ctx.db, actor)
    points = metric_series(ctx.db, name, since)
    if readable is None:
        return points
    names = {get_deployment(ctx.db, i).name for i in readable}
    return [p for p in points if p.labels.get("deployment") in names]


def metric_names(ctx: Context, *, actor: Actor) -> dict[str, str]:
    """The stored series charts and rules may ask for, with their meaning, for a reader of monitoring anywhere.

    Raises:
        Forbidden: the actor may read monitoring nowhere.
    """
    projects_allowed(ctx.db, actor, "monitoring.read")
    return dict(METRIC_NAMES)


def render_metrics(ctx: Context, metrics: ServingMetrics, *, actor: Actor) -> bytes:
    """The process's serving metrics in Prometheus text format; they cover every deployment,
    so reading them needs ``monitoring.read`` everywhere.

    Raises:
        Forbidden: the actor may not read every project's monitoring.
    """
    authorize(ctx.db, actor, "monitoring.read")
    return metrics.render()


def metric_series(db: Database, name: str, since: datetime, deployment: str | None = None, *,
                  until: datetime | None = None) -> list[MetricPoint]:
    """The stored values of one metric since a time, oldest first: what charts and alert rules read.

    Each serving process samples its own registry every ``metrics_sample_s`` seconds,
    so there is one point per label set per sampling time (per deployment and model
    version; ``METRIC_NAMES`` says which labels each name carries, and every point has
    its ``labels``). What a value means:

    * rates (``*_per_s``), ``error_rate``, ``batch_size_mean`` and the latency
      quantiles describe the interval that ends at the point's ``at`` (a quantile is
      missing for an interval without requests; ``error_rate`` is 0 then);
    * ``*_total`` values are cumulative since that process started (a restart drops
      them to zero);
    * ``queue_depth``, ``prediction_log_buffered`` and memory are the value at ``at``.

    With ``deployment`` given, only points labelled with that deployment come back:
    series without a deployment label (memory, the log writer's, ``batch_size_mean``,
    ``queue_depth``) then return none.

    Args:
        db: the store.
        name: one of ``METRIC_NAMES``.
        since: aware UTC; points at or after it.
        deployment: only the points of this deployment (None: every label set).
        until: aware UTC; points before it (None: up to now).

    Returns:
        Points with ``at`` in [since, until), oldest first; within one time, in insertion order.

    Raises:
        InvalidInput: ``name`` is not in ``METRIC_NAMES`` (the message lists them).
    """
    if name not in METRIC_NAMES:
        raise InvalidInput(f"There is no metric named {name!r}.",
                           hint=f"Known metrics: {', '.join(sorted(METRIC_NAMES))}.")
    query = (sa.select(SqlMetricSample).where(SqlMetricSample.name == name, SqlMetricSample.at >= since)
             .order_by(SqlMetricSample.at, SqlMetricSample.id))
    if until is not None:
        query = query.where(SqlMetricSample.at < until)
    if deployment is not None:
        query = query.where(SqlMetricSample.deployment == deployment)
    with db.session() as s:
        return [MetricPoint(r.name, dict(r.labels or {}), r.value, r.at) for r in s.scalars(query)]


class MetricSampler:
    """A thread that stores the series of ``METRIC_NAMES`` every ``interval_s`` seconds.

    In a multi-process server every process runs one, and only the process holding the
    group's ``sampler.lock`` stores (its ``metrics`` answer the group's totals); when it
    dies, the lock is free and the next process to try takes over.

    Args:
        db: the store (``metric_samples``).
        metrics: the registry to sample.
        interval_s: seconds between samples.
        group: the server's process group, or None for a lone process.
    """

    def __init__(self, db: Database, metrics: ServingMetrics, interval_s: float,
                 group: ProcessGroup | None = None) -> None:
        if interval_s <= 0:
            raise InvalidInput(f"The metrics sampling interval is {interval_s} s; it must be positive.",
                               hint="E.g. 15 (seconds).")
        self.db = db
        self.metrics = metrics
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._previous: Snapshot | None = None
        self._previous_at = time.monotonic()
        self._lock_fd = os.open(group.path / "sampler.lock", os.O_RDWR | os.O_CREAT, 0o600) if group else None
        self._leading = group is None
        self._thread = threading.Thread(target=self._run, name="metric-sampler", daemon=True)
        self._thread.start()

    def _lead(self) -> bool:
        """Whether this process stores the samples (always, alone; else once it holds the lock)."""
        if self._leading or self._lock_fd is None:
            return self._leading
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._leading = True
        # The group's counters ran before this process led: its first sample is only the
        # base the next one's rates start from (not rates from zero over a wrong span).
        self._previous, self._previous_at = self.metrics.snapshot(), time.monotonic()
        return False

    def sample_now(self) -> list[MetricPoint]:
        """Take one sample and store it; returns what was stored (nothing while another process samples)."""
        if not self._lead():
            return []
        now = time.monotonic()
        current = self.metrics.snapshot()
        points = derive_points(self._previous, current, now - self._previous_at, utcnow())
        store_points(self.db, points)
        self._previous, self._previous_at = current, now
        return points

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample_now()
            except Exception:  # noqa: BLE001 - a missed sample is logged; serving goes on
                _log.warning("storing a metrics sample failed", exc_info=True)

    def close(self, timeout: float = 5.0) -> None:
        """Stop sampling (takes one last sample, so a short-lived server leaves a point)."""
        self._stop.set()
        self._thread.join(timeout)
        try:
            self.sample_now()
        except Exception:  # noqa: BLE001 - shutting down; nothing to retry with
            _log.warning("storing the last metrics sample failed", exc_info=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # frees the lock for the processes that go on
