"""The API app factory: ``create_app(ctx)`` builds the whole HTTP surface around a Context.

No globals and no environment reads: the caller (``chainkeeper serve``, ``up``, the
quickstart, a test) opens the stores once and passes them in; routes reach them
through ``app.state.ctx`` (``chainkeeper.api.deps.get_ctx``). The loaded models live in
``app.state.predictors``, one cache per app.

Routers: health (``/healthz``, ``/readyz``), jobs, registry (``/api/models``), serving
(``/api/deployments``, ``/v1/deployments/{name}/predict``), governance, and the web UI.
Every error answers ``application/problem+json``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

import chainkeeper
from chainkeeper.api.body_limits import BodyLimitMiddleware
from chainkeeper.api.csrf import CsrfMiddleware
from chainkeeper.api.problems import RequestContextMiddleware, install_problem_handlers
from chainkeeper.api.routers import (
    alerts,
    annotation,
    data,
    data_reports,
    governance,
    health,
    jobs,
    metrics,
    monitoring,
    registry,
    schedules,
    serving,
    support,
    training,
)
from chainkeeper.api.security_headers import SecurityHeadersMiddleware
from chainkeeper.core.context import Context
from chainkeeper.serving import PredictorCache
from chainkeeper.web import alerts as alert_pages
from chainkeeper.web import annotation as annotation_pages
from chainkeeper.web import data as data_pages
from chainkeeper.web import models as model_pages
from chainkeeper.web import monitoring as monitoring_pages
from chainkeeper.web import pages, reports
from chainkeeper.web import runs as run_pages
from chainkeeper.web import support as support_pages

__all__ = ["create_app", "include_web_ui"]

log = logging.getLogger("chainkeeper.api")


def create_app(ctx: Context) -> FastAPI:
    """Build the API (and web UI) app around open stores.

    Args:
        ctx: the settings, metadata store and artefact store to serve from; the app
            does not close it (its opener does).

    Returns:
        The ASGI app, ready for uvicorn or an in-process client.
    """
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Let go of the loaded models when the server stops (tests start many apps).
        for version_id in app.state.predictors.loaded():
            app.state.predictors.evict(version_id)

    app = FastAPI(title="Chainkeeper", version=chainkeeper.__version__,
                  summary="The whole chain of a language-model application, with an owner for every link.",
                  lifespan=lifespan)
    app.state.ctx = ctx
    app.state.predictors = PredictorCache(ctx)
    install_problem_handlers(app)
    app.add_middleware(CsrfMiddleware)  # cookie-authenticated forms: same origin and the session's token
    app.add_middleware(BodyLimitMiddleware)  # admits and bounds bodies before any is read; inside the next
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: on every answer, errors included
    for router in _routers():
        app.include_router(router)
    include_web_ui(app)
    app.router.routes[0:0] = serving.FAST_ROUTES  # the hot path is matched first
    return app


def _routers() -> list[APIRouter]:
    """Every API router."""
    return [
        health.router,
        jobs.router,
        data.router,
        data_reports.router,
        registry.router,
        serving.router,
        metrics.router,
        monitoring.router,
        training.router,
        governance.router,
        annotation.router,
        alerts.router,
        schedules.router,
        support.router,
    ]


def include_web_ui(app: FastAPI) -> None:
    """Add the web pages, their static files and the HTML error page."""
    for router in (pages.router, reports.router, data_pages.router, model_pages.router, annotation_pages.router,
                   monitoring_pages.router, alert_pages.router, run_pages.router, support_pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.state.error_page = pages.error_page
