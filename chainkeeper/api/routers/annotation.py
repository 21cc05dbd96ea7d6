"""Annotation: schemas, projects, queues, answers, adjudication, figures, pre-labels, export.

Thin: parse, call ``chainkeeper.annotation``, answer; the services decide who may, in
the project of the annotation project's dataset. Routes that both annotators and data
stewards use (a project's summary, a queue) are declared with ``system.read`` and the
service decides who sees what: an annotator their own queue, a steward any.
The labelling page of the web UI calls these same routes.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from chainkeeper import annotation
from chainkeeper.annotation import AnswerStatus, Project, Task
from chainkeeper.api.auth import require
from chainkeeper.api.deps import MAX_INT64, Id, get_ctx
from chainkeeper.governance.actors import Actor

router = APIRouter(tags=["annotation"])

_PROJECT = "/api/annotation/projects/{project_id}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchemaBody(_Body):
    name: str = Field(..., max_length=128, description="Schema name; defining it again adds a version.")
    kind: str = Field(..., description="single, multi or spans.")
    labels: list[str | dict[str, Any]] = Field(..., description='Names, "name: description", or {name, description}.')
    guidelines: str = Field("", description="Instructions shown to annotators.")


class ProjectBody(_Body):
    name: str = Field(..., max_length=128)
    dataset_version_id: Id
    schema_id: Id
    row_filter: dict[str, Any] = Field(default_factory=dict,
                                       description="split, labels, row_ids, text_contains, limit.")
    overlap_k: int = Field(1, ge=1, le=20)
    overlap_fraction: float = Field(0.0, ge=0, le=1)
    queue_order: str = Field("random", description="random, active or metadata.")
    order_key: str | None = Field(None, max_length=64)
    seed: int = 13


class SchemaChangeBody(_Body):
    schema_id: Id = Field(..., description="Another version of the project's schema.")


class AssignBody(_Body):
    annotators: list[str] = Field(..., min_length=1, max_length=200)
    batch_size: int = Field(50, ge=1, le=10_000)


class AnswerBody(_Body):
    expected_version: int = Field(..., ge=0, le=MAX_INT64,
                                  description="The version of your answer you last saw (0: none).")
    value: dict[str, Any] | None = Field(None, description='{"label"}, {"labels"} or {"spans"}.')
    skip: bool = False
    flag: bool = False
    comment: str = Field("", max_length=2000)
    seconds: float | None = Field(None, ge=0)


class DecisionBody(_Body):
    value: dict[str, Any]
    expected_version: int = Field(..., ge=0, le=MAX_INT64)
    note: str = Field("", max_length=2000)


class ResolveBody(_Body):
    method: str = Field("majority", description="majority or dawid_skene.")


class PrelabelBody(_Body):
    model_version_id: Id
    strategy: str = Field("least_confidence", description="least_confidence, margin or entropy.")


class ExportBody(_Body):
    name: str | None = Field(None, max_length=128, description="Dataset name; default the parent version's.")


def _project_json(project: Project) -> dict[str, Any]:
    return asdict(project)


def _task_json(task: Task) -> dict[str, Any]:
    return asdict(task)


@router.get("/api/annotation/schemas")
def list_schemas(request: Request, name: str | None = Query(None, max_length=128),
                 actor: Actor = require("annotation.manage")) -> list[dict[str, Any]]:
    """Label schema versions, newest first."""
    return [asdict(s) for s in annotation.find_schemas(get_ctx(request).db, actor=actor, name=name)]


@router.post("/api/annotation/schemas", status_code=201)
def define_schema(body: SchemaBody, request: Request, actor: Actor = require("annotation.manage")) -> dict[str, Any]:
    """Define a schema, or the next version of one."""
    return asdict(annotation.define_schema(get_ctx(request).db, name=body.name, kind=body.kind, labels=body.labels,
                                        guidelines=body.guidelines, actor=actor))


@router.get("/api/annotation/projects")
def list_projects(request: Request, dataset: str | None = Query(None, max_length=128),
                  actor: Actor = require("system.read")) -> list[dict[str, Any]]:
    """Projects you work on: those of the datasets where you manage annotation, and those with your queue."""
    return [_project_json(p) for p in annotation.find_projects(get_ctx(request), actor=actor, dataset=dataset)]


@router.post("/api/annotation/projects", status_code=201)
def create_project(body: ProjectBody, request: Request, actor: Actor = require("annotation.manage")) -> dict[str, Any]:
    """Create a project from a dataset version (or a filter of it)."""
    return _project_json(annotation.create_project(get_ctx(request), actor=actor, **body.model_dump()))


@router.get(_PROJECT)
def get_project(project_id: Id, request: Request, actor: Actor = require("system.read")) -> dict[str, Any]:
    """A project with its schema (labels, guidelines)."""
    project, schema = annotation.show_project(get_ctx(request), project_id, actor=actor)
    return {**_project_json(project), "schema": asdict(schema)}


@router.put(_PROJECT + "/schema")
def change_schema(project_id: Id, body: SchemaChangeBody, request: Request,
                  actor: Actor = require("annotation.manage")) -> dict[str, Any]:
    """Move the project to another version of its schema; earlier answers keep theirs."""
    return _project_json(annotation.change_schema(get_ctx(request), project_id, body.schema_id, actor=actor))


@router.post(_PROJECT + "/assign")
def assign(project_id: Id, body: AssignBody, request: Request,
           actor: Actor = require("annotation.manage")) -> dict[str, Any]:
    """Deal the unassigned items to annotators, in queue order and batches."""
    added = annotation.assign_batches(get_ctx(request), project_id, annotators=body.annotators, actor=actor,
                                    batch_size=body.batch_size)
    return {"assigned": added}


@router.get(_PROJECT + "/queue")
def queue(project_id: Id, request: Request, annotator: str | None = Query(None, max_length=128),
          actor: Actor = require("system.read")) -> dict[str, Any]:
    """Your queue (a data steward may name any ``annotator``), in order."""
    found = annotation.annotator_queue(get_ctx(request), project_id, actor, annotator=annotator)
    answered = sum(1 for t in found if t.answer is not None and t.answer.status == AnswerStatus.LABELLED)
    return {"project_id": project_id, "annotator": annotator or actor.name, "total": len(found),
            "labelled": answered, "items": [_task_json(t) for t in found]}


@router.get(_PROJECT + "/items/{item_id}")
def get_item(project_id: Id, item_id: Id, request: Request,
             actor: Actor = require("annotation.label")) -> dict[str, Any]:
    """One item of your queue, with your answer and its version."""
    return _task_json(annotation.get_task(get_ctx(request), project_id, item_id, actor))


@router.put(_PROJECT + "/items/{item_id}/answer")
def save_answer(project_id: Id, item_id: Id, body: AnswerBody, request: Request,
                actor: Actor = require("annotation.label")) -> dict[str, Any]:
    """Save your answer; a stale ``expected_version`` answers 409 and changes nothing."""
    answer = annotation.save_annotation(get_ctx(request), project_id, item_id, actor, **body.model_dump())
    return asdict(answer)


@router.get(_PROJECT + "/disputes")
def disputes(project_id: Id, request: Request,
             actor: Actor = require("annotation.adjudicate")) -> list[dict[str, Any]]:
    """The adjudication queue: disputed and flagged items with every answer."""
    return [asdict(d) for d in annotation.adjudication_queue(get_ctx(request), project_id, actor)]


@router.post(_PROJECT + "/items/{item_id}/decision")
def decide(project_id: Id, item_id: Id, body: DecisionBody, request: Request,
           actor: Actor = require("annotation.adjudicate")) -> dict[str, Any]:
    """Decide one item (recorded with the decider in the audit ledger)."""
    return asdict(annotation.adjudicate_item(get_ctx(request), project_id, item_id, actor, value=body.value,
                                               expected_version=body.expected_version, note=body.note))


@router.post(_PROJECT + "/resolve")
def resolve(project_id: Id, body: ResolveBody, request: Request,
            actor: Actor = require("annotation.adjudicate")) -> dict[str, Any]:
    """Decide every disputed item by majority vote or Dawid-Skene."""
    return annotation.resolve_disputes(get_ctx(request), project_id, actor, method=body.method)


@router.get(_PROJECT + "/figures")
def project_figures(project_id: Id, request: Request,
                    actor: Actor = require("annotation.manage")) -> dict[str, Any]:
    """Progress, agreement (kappas, alpha, span F1) and per-annotator figures."""
    return annotation.project_figures(get_ctx(request), project_id, actor)


@router.post(_PROJECT + "/prelabel", status_code=202)
def start_prelabel(project_id: Id, body: PrelabelBody, request: Request,
                   actor: Actor = require("annotation.manage")) -> dict[str, Any]:
    """Queue a pre-labelling job with a registered model version."""
    job = annotation.submit_prelabel(get_ctx(request), project_id, body.model_version_id, actor, strategy=body.strategy)
    return asdict(job)


@router.post(_PROJECT + "/export", status_code=201)
async def export_project(project_id: Id, body: ExportBody, request: Request,
                         actor: Actor = require("annotation.manage")) -> dict[str, Any]:
    """Freeze the settled labels as a new dataset version and close the project."""
    version = await run_in_threadpool(annotation.export_project, get_ctx(request), project_id, actor, name=body.name)
    return asdict(version)


@router.get("/api/annotation/lineage/{dataset_version_id}/rows/{row_id}")
def row_lineage(dataset_version_id: Id, row_id: Id, request: Request,
                actor: Actor = require("lineage.read")) -> dict[str, Any]:
    """A labelled row back to its annotators, adjudicator and parent row."""
    return annotation.row_lineage(get_ctx(request), dataset_version_id, row_id, actor).to_dict()
