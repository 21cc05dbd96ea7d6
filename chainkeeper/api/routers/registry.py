"""Model versions: list, show, model cards and release gates.

Promotion is a gated request (governance routes); its checks run the release gates.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chainkeeper.api.auth import require
from chainkeeper.api.deps import get_ctx
from chainkeeper.governance.actors import Actor
from chainkeeper.registry import cards, gates, versions
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


@router.get("/api/models/{model_version_id}/card", dependencies=[require("model.read")],
            response_class=PlainTextResponse)
def get_model_card(model_version_id: int, request: Request) -> PlainTextResponse:
    """The version's model card, generated from the registry, as Markdown."""
    text = cards.model_card(get_ctx(request), model_version_id)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.get("/api/models/{model_version_id}/gates", dependencies=[require("model.read")])
def get_model_gates(model_version_id: int, request: Request) -> dict[str, Any]:
    """The thresholds of the version's model name and the results of its latest gate evaluation."""
    db = get_ctx(request).db
    version = versions.get_model_version(db, model_version_id)
    return {"thresholds": asdict(gates.get_gate_thresholds(db, version.name)),
            "results": [asdict(r) for r in gates.latest_gate_results(db, model_version_id)]}


class ThresholdsBody(BaseModel):
    """Thresholds of one model name: a field sent as null unsets that gate; one left out is kept."""

    model_config = ConfigDict(extra="forbid")

    min_macro_f1: float | None = Field(None, ge=0, le=1, description="Minimum test macro-F1.")
    min_slice_macro_f1: float | None = Field(None, ge=0, le=1, description="Minimum macro-F1 of every declared slice.")
    max_drop_vs_production: float | None = Field(
        None, ge=0, le=1, description="Largest allowed drop of test macro-F1 below the production version.")

    @model_validator(mode="after")
    def _something(self) -> ThresholdsBody:
        if not self.model_fields_set:
            raise ValueError("send at least one threshold (null unsets it)")
        return self


@router.put("/api/gates/{name}")
def set_gates(name: str, body: ThresholdsBody, request: Request,
              actor: Actor = require("model.promote.approve", project_from="name")) -> dict[str, Any]:
    """Set the release thresholds of model ``name`` (a release manager's decision)."""
    given = {field: getattr(body, field) for field in body.model_fields_set}
    return asdict(gates.set_gate_thresholds(get_ctx(request), name, actor=actor, **given))
