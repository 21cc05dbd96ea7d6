"""The job handler table: every kind of long work, with the function that does it.

Each stage owns its handlers; this table, above all of them, names them as functions.
Handlers that need torch or onnxruntime import it when the job runs, so building the
table stays cheap for a CLI command or the API.
"""

from __future__ import annotations

from chainkeeper.annotation import run_prelabel_job
from chainkeeper.core.jobs import sleep_job
from chainkeeper.core.wiring import JobHandler
from chainkeeper.data import run_crawl_job
from chainkeeper.monitoring import run_drift_job, run_evaluate_job
from chainkeeper.serving import run_export_job
from chainkeeper.training import run_search_job, run_training_job


def job_table() -> dict[str, JobHandler]:
    """Job kind -> handler."""
    return {
        "sleep": sleep_job,
        "crawl": run_crawl_job,
        "prelabel": run_prelabel_job,
        "train": run_training_job,
        "search": run_search_job,
        "export": run_export_job,
        "drift": run_drift_job,
        "alerts.evaluate": run_evaluate_job,
    }
