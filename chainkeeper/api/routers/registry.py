"""Model versions: register, list, show, model cards, release gates, exports and the production history.

``POST /api/models`` registers a succeeded run's model as the next version of a name
(``registry.versions.register_model_version``, permission ``model.register``).

Promotion is a gated request (governance routes); its checks run the release gates.
An export is a job: ``POST /api/models/{id}/exports`` answers 202 with the job to follow.
``POST /api/models/{id}/evaluations`` scores a version on an uploaded file of labelled
rows, stores the reading (not the file) and answers it; ``GET`` lists them.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from chainkeeper.api.auth import require
from chainkeeper.api.body_limits import body_limit
from chainkeeper.api.deps import Id, get_ctx
from chainkeeper.api.uploads import saved_upload
from chainkeeper.governance.actors import Actor
from chainkeeper.registry import (
    ModelVersion,
    Stage,
    evaluate_model_version,
    find_model_versions,
    list_model_evaluations,
    model_card,
    register_model_version,
    set_gate_thresholds,
    show_gates,
    show_model_version,
    show_production,
    show_stage_history,
)
from chainkeeper.serving import DEFAULT_MAX_DELTA_POINTS, latest_export, request_export

router = APIRouter(tags=["registry"])
# An evaluation file is read whole into memory by the readers: 64 MiB is ~500k short rows.
# The route's body limit (checked before it is read, chunked or not) holds it to this.
MAX_EVALUATION_BYTES = 64 * 1024 * 1024


def model_version_json(version: ModelVersion) -> dict[str, Any]:
    """A model version as the API shows it."""
    return asdict(version)


@router.get("/api/models")
def list_models(request: Request, name: str | None = Query(None, max_length=128), stage: Stage | None = None,
                limit: int = Query(100, ge=1, le=500), actor: Actor = require("model.read")) -> list[dict[str, Any]]:
    """Model versions the caller may read, newest first; filter by name and stage."""
    found = find_model_versions(get_ctx(request), actor=actor, name=name, stage=stage, limit=limit)
    return [model_version_json(v) for v in found]


class RegisterBody(BaseModel):
    """Which run's model to register, and under which name."""

    model_config = ConfigDict(extra="forbid")

    run_id: Id = Field(ge=1, description="A succeeded training run that produced a model.")
    # The slug rule itself is the service's (validate_model_name): one message for CLI and API.
    name: str = Field(min_length=1, max_length=128, description="The model's name, a lower-case slug, "
                      "e.g. 'support-intents'; the version number is the next under it.")


@router.post("/api/models", status_code=201, summary="Register a run's model as a new version")
def register_model(body: RegisterBody, request: Request, response: Response,
                   actor: Actor = require("model.register")) -> dict[str, Any]:
    """Register a succeeded run's model as the next version of ``name``, as a candidate.

    Refused with 404 for an unknown run, 409 for a run that has not succeeded, has no
    model or is already registered, and 422 for a malformed name; nothing is stored then.
    """
    version = register_model_version(get_ctx(request), run_id=body.run_id, name=body.name, actor=actor)
    response.headers["Location"] = f"/api/models/{version.id}"
    return model_version_json(version)


@router.get("/api/models/production-at")
def production_at(request: Request, name: str = Query(..., max_length=128),
                  when: datetime = Query(..., description="An ISO time with its zone, e.g. 2026-05-03T14:00:00Z."),
                  actor: Actor = require("model.read")) -> dict[str, Any]:
    """What served: the version of model ``name`` in production at ``when`` (null if none),
    read from the stage history, and every production period of the name."""
    history = show_production(get_ctx(request), name, actor=actor, when=when)
    version = history.version_at
    return {"name": name, "when": when, "model_version": model_version_json(version) if version else None,
            "periods": [asdict(p) for p in history.periods]}


@router.get("/api/models/{model_version_id}")
def get_model(model_version_id: Id, request: Request, actor: Actor = require("model.read")) -> dict[str, Any]:
    """One model version with its stage history, oldest move first."""
    ctx = get_ctx(request)
    version = show_model_version(ctx, model_version_id, actor=actor)
    history = [asdict(t) for t in show_stage_history(ctx, model_version_id, actor=actor)]
    return {**model_version_json(version), "history": history}


@router.get("/api/models/{model_version_id}/card", response_class=PlainTextResponse)
def get_model_card(model_version_id: Id, request: Request, actor: Actor = require("model.read")) -> PlainTextResponse:
    """The version's model card, generated from the registry, as Markdown."""
    text = model_card(get_ctx(request), model_version_id, actor=actor)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.get("/api/models/{model_version_id}/gates")
def get_model_gates(model_version_id: Id, request: Request, actor: Actor = require("model.read")) -> dict[str, Any]:
    """The thresholds of the version's model name and the results of its latest gate evaluation."""
    report = show_gates(get_ctx(request), model_version_id, actor=actor)
    return {"thresholds": asdict(report.thresholds), "results": [asdict(r) for r in report.results]}


class ThresholdsBody(BaseModel):
    """Thresholds of one model name: a field sent as null unsets that gate; one left out is kept."""

    model_config = ConfigDict(extra="forbid")

    min_macro_f1: float | None = Field(None, ge=0, le=1, description="Minimum test macro-F1.")
    min_slice_macro_f1: float | None = Field(None, ge=0, le=1, description="Minimum macro-F1 of every declared slice.")
    max_drop_vs_production: float | None = Field(
        None, ge=0, le=1, description="Largest allowed drop of test macro-F1 below the production version.")
    max_p95_latency_ms: float | None = Field(
        None, gt=0, le=600_000, description="p95 latency budget of the deployment tests (ms); turns them on.")
    latency_batch_size: int | None = Field(None, ge=1, le=512, description="Texts per call the budget holds for.")
    max_export_delta_points: float | None = Field(
        None, ge=0, le=100, description="Accuracy points the served export may lose against PyTorch (default 0.5).")

    @model_validator(mode="after")
    def _something(self) -> ThresholdsBody:
        if not self.model_fields_set:
            raise ValueError("send at least one threshold (null unsets it)")
        return self


@router.put("/api/gates/{name}")
def set_gates(name: str, body: ThresholdsBody, request: Request,
              actor: Actor = require("model.promote.approve")) -> dict[str, Any]:
    """Set the release thresholds of model ``name`` (a release manager's decision)."""
    given = {field: getattr(body, field) for field in body.model_fields_set}
    return asdict(set_gate_thresholds(get_ctx(request), name, actor=actor, **given))


class ExportBody(BaseModel):
    """What to export: ONNX always, int8 on request, and the accuracy gate."""

    model_config = ConfigDict(extra="forbid")

    int8: bool = Field(default=False, description="Also produce the dynamic-int8 form.")
    max_delta_points: float = Field(default=DEFAULT_MAX_DELTA_POINTS, ge=0, le=100,
                                    description="Accuracy points a form may lose against PyTorch.")


@router.post("/api/models/{model_version_id}/exports", status_code=202)
def start_export(model_version_id: Id, request: Request, body: ExportBody | None = None,
                 actor: Actor = require("model.export")) -> JSONResponse:
    """Queue the ONNX export of a version as a job; follow it at ``/api/jobs/{id}``."""
    body = body or ExportBody()
    job = request_export(get_ctx(request), model_version_id, actor=actor, quantize=body.int8,
                                 max_delta_points=body.max_delta_points)
    return JSONResponse(status_code=202, headers={"Location": f"/api/jobs/{job.id}"},
                        content={"job_id": job.id, "state": str(job.state), "kind": job.kind, "params": job.params,
                                 "follow": f"/api/jobs/{job.id}"})


@router.get("/api/models/{model_version_id}/exports")
def get_exports(model_version_id: Id, request: Request, actor: Actor = require("model.read")) -> dict[str, Any]:
    """The version's latest export of its current files: each form's accuracy, delta and latency."""
    ctx = get_ctx(request)
    version = show_model_version(ctx, model_version_id, actor=actor)
    latest = latest_export(ctx, version.id, version.model_artifact)
    return {"model_version_id": version.id,
            "latest": {**asdict(latest), "best_engine": latest.best_engine()} if latest else None}


@router.get("/api/models/{model_version_id}/evaluations", summary="Stored evaluations of a model version")
def list_evaluations(model_version_id: Id, request: Request,
                     actor: Actor = require("model.read")) -> list[dict[str, Any]]:
    """The version's stored evaluations on files, newest first."""
    return [asdict(e) for e in list_model_evaluations(get_ctx(request), model_version_id, actor=actor)]


@router.post("/api/models/{model_version_id}/evaluations", summary="Evaluate a model version on a file",
             dependencies=[body_limit(MAX_EVALUATION_BYTES, hint="Evaluate a sample, or run 'chainkeeper models "
                                      "evaluate' on the host.")])
async def evaluate_model(model_version_id: Id, request: Request, file: UploadFile = File(...),
                         format: str | None = Form(None, description="csv, tsv, jsonl, json, parquet or conll; "
                                                   "default from the file name's extension."),
                         text_column: str = Form("text"), label_column: str = Form("label"),
                         oos_label: str = Form("oos", description="The out-of-scope label, reported apart."),
                         actor: Actor = require("model.read")) -> dict[str, Any]:
    """Score the version's model on an uploaded file (multipart field ``file``) of labelled
    rows: the metrics of a run's test report, and in-scope accuracy with out-of-scope
    recall and precision when the labels hold ``oos_label``. The reading is stored (with the
    file's SHA-256, not the file); 422 for a label the model does not know or a file it
    cannot read."""
    async with saved_upload(file, prefix="ck-evaluate-") as path:
        result = await run_in_threadpool(
            evaluate_model_version, get_ctx(request), model_version_id, path, actor=actor, format=format or None,
            text_column=text_column, label_column=label_column, out_of_scope_label=oos_label, name=path.name)
    return asdict(result)
