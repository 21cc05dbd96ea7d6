"""Sources and dataset versions: list, show, upload a file, queue a crawl, create a version, read its rows.

Thin: parse, call ``chainkeeper.data``, answer; the services decide who may. An upload's
body is bounded by the ``max_upload_bytes`` setting before it is read, chunked or not
(``chainkeeper.api.body_limits``); the file is copied to a private temporary file under its
own name (so row origins read ``name:line``, ``chainkeeper.api.uploads``), imported with
``import_file`` and deleted; a failed import stores nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from chainkeeper.api.auth import require
from chainkeeper.api.body_limits import body_limit
from chainkeeper.api.deps import MAX_INT64, Id, get_ctx
from chainkeeper.api.uploads import saved_upload
from chainkeeper.data import (
    crawl,
    create_dataset_version,
    find_dataset_versions,
    find_sources,
    import_file,
    read_dataset_page,
    show_dataset_version,
    show_source,
)
from chainkeeper.governance.actors import Actor

router = APIRouter(tags=["data"])


@router.get("/api/sources")
def api_list_sources(request: Request, limit: int = Query(100, ge=1, le=1000),
                     actor: Actor = require("data.read")) -> list[dict[str, Any]]:
    """Imported sources, newest first."""
    return [s.to_dict() for s in find_sources(get_ctx(request), actor=actor, limit=limit)]


@router.get("/api/sources/{source_id}")
def api_get_source(source_id: Id, request: Request, actor: Actor = require("data.read")) -> dict[str, Any]:
    """One source: where it came from, its checksum, format, encoding, counts."""
    return show_source(get_ctx(request), source_id, actor=actor).to_dict()


# Larger files belong on the server's disk, imported with 'chainkeeper data import' (the
# importer reads the whole file into memory to hash and parse it).
@router.post("/api/sources", status_code=201, dependencies=[body_limit(
    "max_upload_bytes", hint="Copy the file to the server and run 'chainkeeper data import PATH' there.")])
async def api_upload_source(
    request: Request,
    file: UploadFile = File(...),
    format: str | None = Form(None),
    text_column: str = Form("text"),
    label_column: str | None = Form("label"),
    no_label: bool = Form(False),
    split: str | None = Form(None),
    actor: Actor = require("data.import"),
) -> dict[str, Any]:
    """Upload a file (multipart field ``file``) and import it as a source (``no_label``: unlabelled text)."""
    async with saved_upload(file, prefix="ck-upload-") as path:
        source = await run_in_threadpool(
            import_file, get_ctx(request), path, actor=actor, format=format or None, text_column=text_column,
            label_column=None if no_label else label_column or None, split=split or None, uri=f"upload:{path.name}")
    return source.to_dict()


class CrawlBody(BaseModel):
    """A crawl to queue: the start page and the limits (see ``crawler.crawl_site``)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2048)
    max_depth: int = 2
    max_pages: int = 50
    rate_per_s: float = 2.0
    same_host: bool = True


@router.post("/api/sources/crawl", status_code=202)
def api_crawl(body: CrawlBody, request: Request, actor: Actor = require("data.import")) -> dict[str, Any]:
    """Queue a crawl (a job of kind "crawl"); a worker stores the pages as a source."""
    job = crawl(get_ctx(request), body.url, actor=actor, max_depth=body.max_depth, max_pages=body.max_pages,
                rate_per_s=body.rate_per_s, same_host=body.same_host)
    return asdict(job)


@router.get("/api/datasets")
def api_list_datasets(request: Request, name: str | None = Query(None, max_length=128),
                      limit: int = Query(100, ge=1, le=1000),
                      actor: Actor = require("data.read")) -> list[dict[str, Any]]:
    """Dataset versions you may read, newest first."""
    return [v.to_dict() for v in find_dataset_versions(get_ctx(request), actor=actor, name=name, limit=limit)]


class VersionBody(BaseModel):
    """A dataset version to create (see ``chainkeeper.data.create_dataset_version``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=128)
    source_ids: list[Id] = Field(min_length=1, max_length=1000)
    recipe: list[str | dict[str, Any]] | None = None
    seed: int = 13
    fractions: dict[str, float] | None = None
    task: str | None = Field(None, max_length=32)
    # Personal data is redacted unless this is false (the opt-out is recorded on the version).
    redact: bool = True


@router.post("/api/datasets", status_code=201)
async def api_create_dataset(body: VersionBody, request: Request,
                             actor: Actor = require("dataset.create")) -> dict[str, Any]:
    """Clean, split and freeze sources as the next version of a dataset; a failure stores nothing."""
    # Reads, cleans and writes every row: off the event loop.
    version = await run_in_threadpool(
        create_dataset_version, get_ctx(request), name=body.name, source_ids=body.source_ids, actor=actor,
        recipe=body.recipe, seed=body.seed, fractions=body.fractions, task=body.task, redact=body.redact)
    return version.to_dict()


@router.get("/api/datasets/{version_id}")
def api_get_dataset(version_id: Id, request: Request, actor: Actor = require("data.read")) -> dict[str, Any]:
    """One dataset version: stats, splits, recipe report, state."""
    return show_dataset_version(get_ctx(request), version_id, actor=actor).to_dict()


@router.get("/api/datasets/{version_id}/rows")
def api_dataset_rows(version_id: Id, request: Request, split: str | None = Query(None, max_length=16),
                     limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0, le=MAX_INT64),
                     actor: Actor = require("data.read")) -> dict[str, Any]:
    """A page of a version's rows, optionally of one split."""
    total, rows = read_dataset_page(get_ctx(request), version_id, actor=actor, split=split or None, offset=offset,
                                    limit=limit)
    return {"version_id": version_id, "split": split, "total": total, "offset": offset, "rows": rows}
