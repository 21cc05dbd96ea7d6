"""The job handler table: every kind of long work, with the function that does it.

Each stage owns its handlers; this table, above all of them, names them. Recurring work
is not a kind of its own: a schedule (``core.scheduler``) queues one of these per period.

The stages are imported as packages and each handler is looked up when its job runs
(``annotation.run_prelabel_job`` loads ``annotation.prelabel`` then, not here), so
building the table — which every CLI command and the API do when they open a context —
loads no stage module, let alone torch or onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainkeeper import annotation, data, monitoring, serving, training
from chainkeeper.core.jobs import JobHandle, sleep_job
from chainkeeper.core.wiring import JobHandler
from chainkeeper.governance.audit import run_anchor_job

if TYPE_CHECKING:
    from chainkeeper.core.context import Context


def _crawl(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return data.run_crawl_job(ctx, job)


def _prelabel(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return annotation.run_prelabel_job(ctx, job)


def _train(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return training.run_training_job(ctx, job)


def _search(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return training.run_search_job(ctx, job)


def _export(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return serving.run_export_job(ctx, job)


def _drift(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return monitoring.run_drift_job(ctx, job)


def _evaluate_rules(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return monitoring.run_evaluate_job(ctx, job)


def _deliver_webhook(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return monitoring.run_delivery_job(ctx, job)


def _purge_predictions(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return monitoring.run_retention_job(ctx, job)


def _anchor_ledger(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return run_anchor_job(ctx, job)


def job_table() -> dict[str, JobHandler]:
    """Job kind -> handler."""
    return {
        "sleep": sleep_job,
        "crawl": _crawl,
        "prelabel": _prelabel,
        "train": _train,
        "search": _search,
        "export": _export,
        "drift": _drift,
        "alerts.evaluate": _evaluate_rules,
        "webhook.deliver": _deliver_webhook,
        "predictions.purge": _purge_predictions,
        "audit.anchor": _anchor_ledger,
    }
