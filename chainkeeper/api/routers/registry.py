"""Model versions: list and show. Promotion is a gated request (governance routes)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request

from chainkeeper.api.auth import require
from chainkeeper.api.deps import get_ctx
from chainkeeper.registry import versions
from chainkeeper.registry.versions import Stage

router = APIRouter(tags=["registry"])


def model_version_json(version: versions.ModelVersion) -> dict[str, Any]:
    """A model version as the API shows it."""
    return asdict(version)


@router.get("/api/models", dependencies=[require("model.read")])
def list_models(request: Request, name: str | None = Query(None, max_length=128), stage: Stage | None = None,
                limit: int = Query(100, ge=1, le=500)) -> list[dict[str, Any]]:
    """Model versions, newest first; filter by name and stage."""
    found = versions.list_model_versions(get_ctx(request).db, name, stage=stage, limit=limit)
    return [model_version_json(v) for v in found]


@router.get("/api/models/{model_version_id}", dependencies=[require("model.read")])
def get_model(model_version_id: int, request: Request) -> dict[str, Any]:
    """One model version with its stage history, oldest move first."""
    db = get_ctx(request).db
    version = versions.get_model_version(db, model_version_id)
    history = [asdict(t) for t in versions.stage_history(db, model_version_id)]
    return {**model_version_json(version), "history": history}
