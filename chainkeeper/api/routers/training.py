"""Training runs: list, show, live curve points, the HTML report, start and cancel; a
search with its trials. Thin: parse, call ``chainkeeper.training``, answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from chainkeeper.api.auth import require
from chainkeeper.api.deps import MAX_INT64, Id, get_ctx
from chainkeeper.governance.actors import Actor
from chainkeeper.training import (
    Run,
    RunState,
    cancel_run,
    compare_runs,
    find_runs,
    parse_train_config,
    reproduce_run,
    run_points,
    run_report_html,
    show_run,
    show_search,
    start_training_run,
)

router = APIRouter(tags=["training"])


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_version_id: Id = Field(ge=1)
    config: dict[str, Any] = {}
    allow_draft: str | None = Field(
        None, max_length=2000, description="Train on a dataset version that is not released, for this reason "
        "(an experiment: audited, and the model cannot be promoted while the data is unreleased).")
    # No base_model here: over HTTP, runs train on the server's configured base model
    # (CHAINKEEPER_BASE_MODEL). Loading an arbitrary server folder named by a remote
    # caller could read or unpickle files the caller should not reach.


def _run(run: Run) -> dict[str, Any]:
    return {**asdict(run), "finished": run.finished}


@router.get("/api/runs")
def list_runs(request: Request, state: RunState | None = None, dataset_version_id: Id | None = None,
              search_job_id: Id | None = None, limit: int = Query(50, ge=1, le=500),
              actor: Actor = require("run.read")) -> list[dict[str, Any]]:
    """Runs the caller may read, newest first (``search_job_id``: a search's trials and best run)."""
    return [_run(r) for r in find_runs(get_ctx(request), actor=actor, limit=limit, state=state,
                                       dataset_version_id=dataset_version_id, search_job_id=search_job_id)]


@router.get("/api/searches/{job_id}")
def get_search(job_id: Id, request: Request, actor: Actor = require("run.read")) -> dict[str, Any]:
    """A hyper-parameter search: its job, what it optimises, its trials (each a run) and
    the run that trains its best config."""
    found = show_search(get_ctx(request), job_id, actor=actor)
    return {"job": asdict(found.job), "target": asdict(found.target) if found.target else None,
            "trials": [_run(r) for r in found.trials],
            "best_run": _run(found.best_run) if found.best_run is not None else None}


@router.get("/api/runs/{run_id}")
def get_run(run_id: Id, request: Request, actor: Actor = require("run.read")) -> dict[str, Any]:
    """One run with its config, state and metrics."""
    return _run(show_run(get_ctx(request), run_id, actor=actor))


@router.get("/api/runs/{run_id}/metrics")
def run_metrics(run_id: Id, request: Request, name: str | None = None,
                after_id: int = Query(0, ge=0, le=MAX_INT64),
                actor: Actor = require("run.read")) -> dict[str, Any]:
    """The run's curve points (loss, learning_rate, samples_per_s, dev_*) newer than
    ``after_id``; poll with the returned ``last_id`` to follow a live run."""
    points = run_points(get_ctx(request), run_id, actor=actor, name=name, after_id=after_id)
    return {"run_id": run_id, "points": points, "last_id": points[-1]["id"] if points else after_id}


@router.get("/api/runs/{run_id}/report.html", response_class=HTMLResponse)
def run_report(run_id: Id, request: Request, actor: Actor = require("run.read")) -> HTMLResponse:
    """The run's evaluation as a self-contained HTML page."""
    return HTMLResponse(run_report_html(get_ctx(request), run_id, actor=actor))


@router.get("/api/runs/{run_id}/compare/{other_id}")
def compare_two_runs(run_id: Id, other_id: Id, request: Request,
                     actor: Actor = require("run.read")) -> dict[str, Any]:
    """Headline metrics of two runs with ``delta = other - run``."""
    return compare_runs(get_ctx(request), run_id, other_id, actor=actor)


@router.post("/api/runs", status_code=201)
def start_run(body: RunBody, request: Request, actor: Actor = require("run.create")) -> dict[str, Any]:
    """Validate the config, record the run and queue its training job. The dataset version
    must be released (409 otherwise), unless ``allow_draft`` gives the reason for an experiment."""
    config = parse_train_config(body.config)
    run = start_training_run(get_ctx(request), dataset_version_id=body.dataset_version_id, config=config,
                             actor=actor, allow_draft=body.allow_draft)
    return _run(run)


@router.post("/api/runs/{run_id}/cancel")
def cancel(run_id: Id, request: Request, actor: Actor = require("run.cancel")) -> dict[str, Any]:
    """Stop a run: a queued one at once, a running one at its next step."""
    return _run(cancel_run(get_ctx(request), run_id, actor=actor))


@router.post("/api/runs/{run_id}/reproduce", status_code=201)
def reproduce(run_id: Id, request: Request, actor: Actor = require("run.create")) -> dict[str, Any]:
    """Start a new run from a succeeded run's reproducibility record (same data, base
    model, config and seed); compare the two with ``GET /api/runs/{id}/compare/{other}``."""
    return _run(reproduce_run(get_ctx(request), run_id, actor=actor))
