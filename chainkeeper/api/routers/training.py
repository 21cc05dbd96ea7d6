"""Training runs: list, show, live curve points, the HTML report, start and cancel.
Thin: parse, call ``chainkeeper.training``, answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from chainkeeper.api.auth import require
from chainkeeper.api.deps import get_ctx
from chainkeeper.governance.actors import Actor
from chainkeeper.training import runs as training_runs
from chainkeeper.training.config import parse_train_config

router = APIRouter(tags=["training"])


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_version_id: int = Field(ge=1)
    config: dict[str, Any] = {}
    # No base_model here: over HTTP, runs train on the server's configured base model
    # (CHAINKEEPER_BASE_MODEL). Loading an arbitrary server folder named by a remote
    # caller could read or unpickle files the caller should not reach.


def _run(run: training_runs.Run) -> dict[str, Any]:
    return {**asdict(run), "finished": run.finished}


@router.get("/api/runs", dependencies=[require("run.read")])
def list_runs(request: Request, state: training_runs.RunState | None = None,
              dataset_version_id: int | None = None, limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    """Runs, newest first."""
    return [_run(r) for r in training_runs.list_runs(get_ctx(request).db, limit, state=state,
                                                     dataset_version_id=dataset_version_id)]


@router.get("/api/runs/{run_id}", dependencies=[require("run.read")])
def get_run(run_id: int, request: Request) -> dict[str, Any]:
    """One run with its config, state and metrics."""
    return _run(training_runs.get_run(get_ctx(request).db, run_id))


@router.get("/api/runs/{run_id}/metrics", dependencies=[require("run.read")])
def run_metrics(run_id: int, request: Request, name: str | None = None,
                after_id: int = Query(0, ge=0)) -> dict[str, Any]:
    """The run's curve points (loss, learning_rate, samples_per_s, dev_*) newer than
    ``after_id``; poll with the returned ``last_id`` to follow a live run."""
    points = training_runs.run_points(get_ctx(request).db, run_id, name=name, after_id=after_id)
    return {"run_id": run_id, "points": points, "last_id": points[-1]["id"] if points else after_id}


@router.get("/api/runs/{run_id}/report.html", dependencies=[require("run.read")], response_class=HTMLResponse)
def run_report(run_id: int, request: Request) -> HTMLResponse:
    """The run's evaluation as a self-contained HTML page."""
    return HTMLResponse(training_runs.run_report_html(get_ctx(request).db, run_id))


@router.get("/api/runs/{run_id}/compare/{other_id}", dependencies=[require("run.read")])
def compare_runs(run_id: int, other_id: int, request: Request) -> dict[str, Any]:
    """Headline metrics of two runs with ``delta = other - run``."""
    return training_runs.compare_runs(get_ctx(request).db, run_id, other_id)


@router.post("/api/runs", status_code=201)
def start_run(body: RunBody, request: Request, actor: Actor = require("run.create")) -> dict[str, Any]:
    """Validate the config, record the run and queue its training job."""
    config = parse_train_config(body.config)
    run = training_runs.start_training_run(
        get_ctx(request), dataset_version_id=body.dataset_version_id, config=config, actor=actor)
    return _run(run)


@router.post("/api/runs/{run_id}/cancel")
def cancel_run(run_id: int, request: Request, actor: Actor = require("run.cancel")) -> dict[str, Any]:
    """Stop a run: a queued one at once, a running one at its next step."""
    return _run(training_runs.cancel_run(get_ctx(request), run_id, actor=actor))


@router.post("/api/runs/{run_id}/reproduce", status_code=201)
def reproduce_run(run_id: int, request: Request, actor: Actor = require("run.create")) -> dict[str, Any]:
    """Start a new run from a succeeded run's reproducibility record (same data, base
    model, config and seed); compare the two with ``GET /api/runs/{id}/compare/{other}``."""
    from chainkeeper.training.reproducibility import reproduce_run as reproduce

    return _run(reproduce(get_ctx(request), run_id, actor=actor))
