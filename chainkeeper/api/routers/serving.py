"""Deployments and the predict endpoint. Thin: parse, call ``serving``, answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from chainkeeper.api.auth import require
from chainkeeper.api.deps import get_ctx
from chainkeeper.governance.actors import Actor
from chainkeeper.serving import deployments

router = APIRouter(tags=["serving"])


class PredictBody(BaseModel):
    """``{"text": "..."}`` for one text, or ``{"texts": ["...", ...]}`` for several."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="One text to label.")
    texts: list[str] | None = Field(None, description="Several texts to label, answered in order.")

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictBody:
        if (self.text is None) == (self.texts is None):
            raise ValueError('send exactly one of "text" (a string) or "texts" (a list of strings)')
        return self

    def as_list(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


@router.get("/api/deployments", dependencies=[require("deployment.read")])
def list_deployments(request: Request, limit: int = Query(100, ge=1, le=500)) -> list[dict[str, Any]]:
    """Deployments, most recently changed first."""
    return [asdict(d) for d in deployments.list_deployments(get_ctx(request).db, limit=limit)]


@router.get("/api/deployments/{name}", dependencies=[require("deployment.read", project_from="name")])
def get_deployment(name: str, request: Request) -> dict[str, Any]:
    """One deployment by name."""
    return asdict(deployments.get_deployment_by_name(get_ctx(request).db, name))


@router.post("/v1/deployments/{name}/predict")
async def predict(name: str, body: PredictBody, request: Request,
                  actor: Actor = require("predict", project_from="name")) -> dict[str, Any]:
    """Label texts with the deployment's model; each text gets a request id, and is logged."""
    # The model call and the log write block: run them on a worker thread so the event
    # loop keeps answering other requests meanwhile.
    served = await run_in_threadpool(deployments.serve_predictions, get_ctx(request), request.app.state.predictors,
                                     name, body.as_list())
    version = served.model_version
    return {
        "deployment": served.deployment.name,
        "model_version": {"id": version.id, "name": version.name, "version": version.version},
        "predictions": [{"request_id": p.request_id, "label": p.label, "score": p.score, "scores": p.scores}
                        for p in served.predictions],
    }
