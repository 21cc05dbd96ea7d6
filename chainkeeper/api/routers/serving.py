"""Deployments, rollout, API keys and the predict endpoint. Thin: parse, call ``serving``, answer.

The predict route admits either a user token with the ``predict`` permission (through
the same ``authenticate``/``authorize`` as ``require``) or an API key of that deployment
with the ``predict`` scope (``X-API-Key: ckd_...`` or ``Authorization: Bearer ckd_...``);
its dependency carries the ``predict`` marker, so ``route_decisions`` still sees it.

The predict route is the hot path, so it runs on the event loop and reaches the store
only on a cache miss (credentials, route: see ``serving.caching``): the model call
awaits the micro-batcher, and the answers go to the app's buffered prediction-log
writer. ``ServingState`` (made on first use, closed by this router's lifespan) holds
that writer, the app's Prometheus metrics and the sampler that stores them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from chainkeeper import serving
from chainkeeper.api.auth import (
    api_key_of,
    authenticate,
    bearer_secret,
    cached_actor,
    request_id_of,
    require,
)
from chainkeeper.api.body_limits import body_limit
from chainkeeper.api.deps import Id, get_ctx
from chainkeeper.core.context import Context
from chainkeeper.core.errors import ChainkeeperError, InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.monitoring import (
    UNKNOWN_DEPLOYMENT,
    MetricSampler,
    PredictionLogWriter,
    ServingMetrics,
    name_tagger,
)
from chainkeeper.serving import (
    ProcessGroup,
    RateLimiter,
    SharedRateLimiter,
    check_body_size,
    check_content_type,
    check_texts,
)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start sampling metrics with the server; write the whole prediction log before it stops."""
    state = serving_state(app)
    state.start_sampler()
    yield
    await run_in_threadpool(state.close)


router = APIRouter(tags=["serving"], lifespan=_lifespan)
_state_lock = threading.Lock()

# Header naming the caller for sticky canary routing (same key -> same version).
CALLER_KEY_HEADER = "x-caller-key"
PREDICT_PATH = "/v1/deployments/{name}/predict"


@dataclass
class ServingState:
    """What one app's predict route shares: the log writer, the metrics and their sampler."""

    ctx: Any
    log: PredictionLogWriter
    metrics: ServingMetrics
    sampler: MetricSampler | None = None
    # Deployment names answered at least once: error metrics for other names share one
    # label, so a caller cannot grow the metric set with made-up names.
    known: set[str] = field(default_factory=set)

    group: ProcessGroup | None = None  # the processes of a multi-process server, if any

    def start_sampler(self) -> None:
        interval = self.ctx.settings.metrics_sample_s
        if self.sampler is None and interval:
            self.sampler = MetricSampler(self.ctx.db, self.metrics, interval, group=self.group)

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
        self.log.close()


def serving_state(app: FastAPI) -> ServingState:
    """The app's ``ServingState``, made on first use (app.py stays untouched)."""
    state = getattr(app.state, "serving", None)
    if state is not None:
        return state  # type: ignore[no-any-return]
    with _state_lock:
        state = getattr(app.state, "serving", None)
        if state is None:
            ctx = app.state.ctx
            settings = ctx.settings
            log = PredictionLogWriter(ctx.db, sample_rate=settings.prediction_log_sample_rate,
                                      max_buffered=settings.prediction_log_max_buffered,
                                      names=name_tagger(ctx, app.state.predictors))
            group = getattr(app.state, "group", None)
            metrics = ServingMetrics(runtime_stats=app.state.predictors.stats, log_stats=log.stats, group=group)
            state = app.state.serving = ServingState(ctx, log, metrics, group=group)
    return state


def rate_limiter(request: Request) -> RateLimiter:
    """The context's one limiter of API-key callers, made on first use: in memory, or shared by the
    processes of its group (the predict route's, and the support assistant's messages)."""
    group = getattr(request.app.state, "group", None)
    return get_ctx(request).state(
        "serving.rate_limiter",
        lambda: SharedRateLimiter(group.path / "buckets") if group is not None else RateLimiter(),
    )


async def _caller(request: Request, name: str) -> Actor:
    """Who calls the predict route; the store is read (on a worker thread) only on a cache miss."""
    ctx = get_ctx(request)
    secret = api_key_of(request)
    if secret is None:
        actor = cached_actor(request, bearer_secret(request))
        if actor is None:
            actor = await run_in_threadpool(authenticate, request)
        # Serving decides, in the deployment's project; from the route cache (and governance's
        # cached permission matrix) without the store when warm, else on a worker thread.
        if serving.cached_route(ctx, name) is not None:
            serving.authorize_prediction(ctx, name, actor=actor)
        else:
            await run_in_threadpool(lambda: serving.authorize_prediction(ctx, name, actor=actor))
        return actor
    if serving.cached_deployment_key(ctx, secret) is not None:
        key = serving.authenticate_deployment_key(ctx, secret, deployment=name, scope="predict")
    else:
        key = await run_in_threadpool(lambda: serving.authenticate_deployment_key(ctx, secret, deployment=name,
                                                                                  scope="predict"))
    rate_limiter(request).check(key.id, key.rate_per_s, key.burst)
    return Actor(f"apikey:{key.id}:{key.name}", frozenset(), request_id=request_id_of(request))


def _count_error(request: Request, name: str, status: int) -> None:
    state = serving_state(request.app)
    state.metrics.observe_error(name if name in state.known else UNKNOWN_DEPLOYMENT, status)


async def _admit(request: Request, name: str) -> Actor:
    """The caller of a predict request, admitted: allowed to predict, body size within limits."""
    request.state.predict_started = time.perf_counter()
    try:
        actor = await _caller(request, name)
        # Refused before the body is read or any model runs.
        length = request.headers.get("content-length")
        check_body_size(int(length) if length and length.isdigit() else None)
    except ChainkeeperError as error:
        _count_error(request, name, error.status)
        raise
    request.state.actor = actor
    return actor


def predict_caller() -> Any:
    """The predict route's decision: a user allowed ``predict``, or a deployment key with that scope."""

    async def dependency(request: Request) -> Actor:
        return await _admit(request, request.path_params.get("name", ""))

    dependency.chainkeeper_action = "predict"  # type: ignore[attr-defined]
    return Depends(dependency)


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


async def _read_body(request: Request) -> PredictBody:
    """The predict body, parsed and validated by pydantic in one pass.

    Raises:
        UnsupportedMediaType: not JSON. PayloadTooLarge: a body over the limit (checked
            while reading, for bodies sent without a Content-Length). RequestValidationError:
            a 422 listing the fields, as FastAPI would.
    """
    check_content_type(request.headers.get("content-type"))
    chunks, size = [], 0
    try:
        # Read in chunks and stop at the limit: a chunked body has no Content-Length to check first.
        async for chunk in request.stream():
            size += len(chunk)
            check_body_size(size)
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to read an answer; say so in the log line, without a traceback.
        raise InvalidInput("The caller closed the connection before the body was complete.",
                           hint="Send the whole body and wait for the answer.") from None
    raw = b"".join(chunks)
    try:
        return PredictBody.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e.get("loc", ()))} for e in error.errors()]) from None


_PREDICT_OPENAPI = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PredictBody.model_json_schema()}}}}


def deployment_json(ctx: Context, deployment: serving.Deployment, actor: Actor) -> dict[str, Any]:
    """A deployment as the API shows it, with its live route under ``live``."""
    return {**asdict(deployment), "live": serving.rollout_status(ctx, deployment.name, actor=actor).live()}


@router.get("/api/deployments", summary="List deployments with the versions answering their traffic")
def list_deployments(request: Request, limit: int = Query(100, ge=1, le=500),
                     actor: Actor = require("deployment.read")) -> list[dict[str, Any]]:
    """Deployments the caller may read, most recently changed first; each with ``live``: its
    primary version, and the canary (version and share of callers) or shadow version, if one runs."""
    ctx = get_ctx(request)
    return [deployment_json(ctx, d, actor) for d in serving.find_deployments(ctx, actor=actor, limit=limit)]


@router.get("/api/deployments/{name}", summary="One deployment with the versions answering its traffic")
def get_deployment(name: str, request: Request, actor: Actor = require("deployment.read")) -> dict[str, Any]:
    """One deployment by name, with its live route as in the list."""
    ctx = get_ctx(request)
    return deployment_json(ctx, serving.show_deployment(ctx, name, actor=actor), actor)


# The hot path admits the caller (user or API key) and checks the size itself before it
# reads (``_admit``, ``_read_body``); the body-limit middleware passes it through.
@router.post(PREDICT_PATH, openapi_extra=_PREDICT_OPENAPI,
             dependencies=[body_limit(1_000_000, admits_before_reading=True)])  # = RequestLimits.max_body_bytes
async def predict(name: str, request: Request, actor: Actor = predict_caller()) -> JSONResponse:
    """Label texts with the deployment's model; each text gets a request id, and is logged.

    A token tagger's deployment answers each text's ``entities`` as well:
    ``[{"type", "start", "end", "text", "score"}]``, ``text == input[start:end]``."""
    return await _answer(request, name)


async def _predict_fast(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    await _admit(request, name)
    return await _answer(request, name)


# The predict route once more, as a plain Starlette route for the front of the app's
# routes (``create_app``): the same admission and answer without FastAPI's dependency
# solving and without matching every other route first — 3-9 % less server CPU per
# request (docs/serving.md). The route above stays for the OpenAPI schema and the
# authorization matrix (``route_decisions``); both run ``_admit`` then ``_answer``.
FAST_ROUTES = [Route(PREDICT_PATH, _predict_fast, methods=["POST"])]


async def _answer(request: Request, name: str) -> JSONResponse:
    """Read the body, label the texts, log them, count them, answer."""
    state = serving_state(request.app)
    started: float = request.state.predict_started
    try:
        texts = (await _read_body(request)).as_list()
        check_texts(texts)
        served = await serving.aserve_predictions(
            get_ctx(request), request.app.state.predictors, name, texts,
            caller_key=request.headers.get(CALLER_KEY_HEADER), log=state.log, started=started)
    except ChainkeeperError as error:
        _count_error(request, name, error.status)
        raise
    except RequestValidationError:
        _count_error(request, name, 422)
        raise
    version = served.model_version
    state.known.add(name)
    state.metrics.observe(name, version.id, time.perf_counter() - started, len(texts))
    # A JSONResponse of plain values: no response model to validate and re-encode.
    return JSONResponse({
        "deployment": served.deployment.name,
        "model_version": {"id": version.id, "name": version.name, "version": version.version},
        "predictions": [_prediction_json(p) for p in served.predictions],
    })


def _prediction_json(p: serving.ServedPrediction) -> dict[str, Any]:
    """One text's answer; a tagger's also lists its ``entities`` (type, start, end, text, score),
    with offsets into the text as sent (docs/serving.md)."""
    out = {"request_id": p.request_id, "label": p.label, "score": p.score, "scores": p.scores}
    if p.entities is not None:
        out["entities"] = p.entities
    return out


# --- rollout ---------------------------------------------------------------------------


class CanaryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_version_id: Id = Field(description="The candidate: a staging or production version of the same model.")
    percent: int = Field(ge=1, le=99, description="Share of callers (sticky by X-Caller-Key) the candidate answers.")


class ShadowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_version_id: Id = Field(description="The candidate that sees every request; its answers are only logged.")


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=2000, description="Why, kept in the registry history.")


def route_json(route: serving.Route) -> dict[str, Any]:
    """A route as the API shows it."""
    return asdict(route)


@router.get("/api/deployments/{name}/rollout")
def get_rollout(name: str, request: Request, actor: Actor = require("deployment.read")) -> dict[str, Any]:
    """The deployment's live route, its versions and the recent routes."""
    status = serving.rollout_status(get_ctx(request), name, actor=actor)
    return {"deployment": name, "route": route_json(status.route), "primary": serving.version_ref(status.primary),
            "candidate": serving.version_ref(status.candidate) if status.candidate else None,
            "history": [route_json(r) for r in status.history]}


@router.post("/api/deployments/{name}/canary")
def start_canary(name: str, body: CanaryBody, request: Request,
                 actor: Actor = require("deployment.rollout")) -> dict[str, Any]:
    """Send a share of callers to a candidate version."""
    return route_json(serving.start_canary(get_ctx(request), name, body.model_version_id, percent=body.percent,
                                           actor=actor))


@router.post("/api/deployments/{name}/shadow")
def start_shadow(name: str, body: ShadowBody, request: Request,
                 actor: Actor = require("deployment.rollout")) -> dict[str, Any]:
    """Let a candidate see every request; its answers are logged, not returned."""
    return route_json(serving.start_shadow(get_ctx(request), name, body.model_version_id, actor=actor))


@router.post("/api/deployments/{name}/promote")
def promote_rollout(name: str, request: Request,
                    actor: Actor = require("deployment.rollout")) -> dict[str, Any]:
    """Make the canary or shadow candidate (already in production in the registry) answer all traffic."""
    return route_json(serving.promote_rollout(get_ctx(request), name, actor=actor))


@router.post("/api/deployments/{name}/rollback")
def rollback(name: str, request: Request, body: RollbackBody | None = None,
             actor: Actor = require("deployment.rollback")) -> dict[str, Any]:
    """Drop a canary or shadow, or return to the version served before the last switch."""
    return route_json(serving.rollback_deployment(get_ctx(request), name, actor=actor,
                                                  comment=body.comment if body else ""))


@router.get("/api/deployments/{name}/shadow-predictions")
def shadow_predictions(name: str, request: Request, limit: int = Query(100, ge=1, le=1000),
                       actor: Actor = require("deployment.read")) -> list[dict[str, Any]]:
    """What a shadow candidate answered, next to what was served, newest first."""
    return [asdict(p) for p in serving.list_shadow_predictions(get_ctx(request), name, actor=actor, limit=limit)]


# --- API keys --------------------------------------------------------------------------


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Who or what uses the key.")
    scopes: list[str] = Field(min_length=1, description=f"Any of: {', '.join(serving.SCOPES)}.")
    rate: str | None = Field(None, description="Requests allowed, e.g. '50/s' or '600/min'; none: unlimited.")
    burst: int | None = Field(None, ge=1, le=serving.MAX_BURST,
                              description="Requests allowed at once (default: one second's worth).")
    expires_in_days: float | None = Field(None, gt=0, le=serving.MAX_KEY_LIFETIME.days,
                                          description="Expire after this many days.")


def key_json(key: serving.DeploymentKey) -> dict[str, Any]:
    """A key as the API shows it: never its secret."""
    return {**asdict(key), "active": key.active}


@router.post("/api/deployments/{name}/keys", status_code=201)
def create_key(name: str, body: KeyBody, request: Request,
               actor: Actor = require("apikey.manage")) -> dict[str, Any]:
    """Issue an API key for the deployment; the secret is in this answer only."""
    issued = serving.create_deployment_key(
        get_ctx(request), name, name=body.name, actor=actor, scopes=body.scopes,
        rate_per_s=serving.parse_rate(body.rate) if body.rate else None, burst=body.burst,
        expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days else None)
    return {**key_json(issued.key), "secret": issued.secret}


@router.get("/api/deployments/{name}/keys")
def list_keys(name: str, request: Request, actor: Actor = require("apikey.manage")) -> list[dict[str, Any]]:
    """The deployment's API keys, revoked ones included."""
    return [key_json(k) for k in serving.list_deployment_keys(get_ctx(request), name, actor=actor)]


@router.delete("/api/deployments/{name}/keys/{key_id}")
def revoke_key(name: str, key_id: Id, request: Request,
               actor: Actor = require("apikey.manage")) -> dict[str, Any]:
    """Revoke a key at once."""
    return key_json(serving.revoke_deployment_key(get_ctx(request), name, key_id, actor=actor))


@router.get("/v1/deployments/{name}")
def deployment_readiness(name: str, request: Request, actor: Actor = require("deployment.read")) -> dict[str, Any]:
    """Readiness of one deployment: ``ready`` is true once its model is loaded and warmed up
    (a first call starts the load in the background)."""
    return serving.deployment_readiness(get_ctx(request), request.app.state.predictors, name, actor=actor)
