"""Sources and dataset versions: list, show, upload a file, read a version's rows.

Thin: parse, call ``chainkeeper.data``, answer. An upload is streamed to a temporary
file under its own name (so row origins read ``name:line``), refused past
``MAX_UPLOAD_BYTES``, imported with ``import_file`` and deleted; a failed import stores
nothing.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from chainkeeper.api.auth import require
from chainkeeper.api.deps import get_ctx
from chainkeeper.core.errors import InvalidInput
from chainkeeper.data import ingest
from chainkeeper.data.sources import Source, get_source, list_sources
from chainkeeper.governance.actors import Actor

router = APIRouter(tags=["data"])

# Uploads beyond this are refused: larger files belong on the server's disk, imported
# with 'chainkeeper data import' (the whole file is read into memory to hash and parse).
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
_CHUNK = 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def source_json(source: Source) -> dict[str, Any]:
    """A source as the API shows it."""
    return {**asdict(source), "name": source.name}


@router.get("/api/sources", dependencies=[require("data.read")])
def api_list_sources(request: Request, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    """Imported sources, newest first."""
    return [source_json(s) for s in list_sources(get_ctx(request).db, limit=limit)]


@router.get("/api/sources/{source_id}", dependencies=[require("data.read")])
def api_get_source(source_id: int, request: Request) -> dict[str, Any]:
    """One source: where it came from, its checksum, format, encoding, counts."""
    return source_json(get_source(get_ctx(request).db, source_id))


@router.post("/api/sources", status_code=201)
async def api_upload_source(
    request: Request,
    file: UploadFile = File(...),
    format: str | None = Form(None),
    text_column: str = Form("text"),
    label_column: str | None = Form("label"),
    split: str | None = Form(None),
    actor: Actor = require("data.import"),
) -> dict[str, Any]:
    """Upload a file (multipart field ``file``) and import it as a source."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_UPLOAD_BYTES + 64 * 1024:
        raise _too_large(int(length))
    name = _SAFE_NAME.sub("_", Path(file.filename or "upload").name).strip("._") or "upload"
    with tempfile.TemporaryDirectory(prefix="ck-upload-") as folder:
        path = Path(folder) / name
        size = 0
        with path.open("wb") as out:
            while chunk := await file.read(_CHUNK):
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise _too_large(size)
                out.write(chunk)
        source = await run_in_threadpool(
            ingest.import_file, get_ctx(request), path, actor=actor, format=format or None, text_column=text_column,
            label_column=label_column or None, split=split or None, uri=f"upload:{name}")
    return source_json(source)


def _too_large(size: int) -> InvalidInput:
    return InvalidInput(f"The upload is too large: {size:,} bytes (the limit is {MAX_UPLOAD_BYTES:,}).",
                        hint="Copy the file to the server and run 'chainkeeper data import PATH' there.")


@router.get("/api/datasets", dependencies=[require("data.read")])
def api_list_datasets(request: Request, name: str | None = Query(None, max_length=128),
                      limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    """Dataset versions, newest first."""
    from chainkeeper.data import versions

    return [asdict(v) for v in versions.list_dataset_versions(get_ctx(request).db, name=name, limit=limit)]


@router.get("/api/datasets/{version_id}", dependencies=[require("data.read")])
def api_get_dataset(version_id: int, request: Request) -> dict[str, Any]:
    """One dataset version: stats, splits, recipe report, state."""
    from chainkeeper.data import versions

    return asdict(versions.get_dataset_version(get_ctx(request).db, version_id))


@router.get("/api/datasets/{version_id}/rows", dependencies=[require("data.read")])
def api_dataset_rows(version_id: int, request: Request, split: str | None = Query(None, max_length=16),
                     limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """A page of a version's rows, optionally of one split."""
    from chainkeeper.data import versions

    table = versions.read_dataset_rows(get_ctx(request), version_id, split or None)
    return {"version_id": version_id, "split": split, "total": table.num_rows, "offset": offset,
            "rows": table.slice(offset, limit).to_pylist()}
