"""The API app factory: ``create_app(ctx)`` builds the whole HTTP surface around a Context.

No globals and no environment reads: the caller (``chainkeeper serve``, ``up``, the
quickstart, a test) opens the stores once and passes them in; routes reach them
through ``app.state.ctx`` (``chainkeeper.api.deps.get_ctx``). The loaded models live in
``app.state.predictors``, one cache per app.

Routers: health (``/healthz``, ``/readyz``), jobs, registry (``/api/models``), serving
(``/api/deployments``, ``/v1/deployments/{name}/predict``), governance, and the web UI. Every error answers ``application/problem+json``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

import chainkeeper
from chainkeeper.api.problems import RequestContextMiddleware, install_problem_handlers
from chainkeeper.core.context import Context

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
    from chainkeeper.serving.runtime import PredictorCache  # imports torch: only when an app is built

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
    app.add_middleware(RequestContextMiddleware)
    for router in _routers():
        app.include_router(router)
    include_web_ui(app)
    from chainkeeper.api.routers import serving

    app.router.routes[0:0] = serving.FAST_ROUTES  # the hot path is matched first
    return app


def _routers() -> list[APIRouter]:
    """Every API router, one import per line (stages add theirs here)."""
    from chainkeeper.api.routers import alerts
    from chainkeeper.api.routers import annotation
    from chainkeeper.api.routers import data
    from chainkeeper.api.routers import data_reports
    from chainkeeper.api.routers import governance
    from chainkeeper.api.routers import health
    from chainkeeper.api.routers import jobs
    from chainkeeper.api.routers import registry
    from chainkeeper.api.routers import metrics
    from chainkeeper.api.routers import monitoring
    from chainkeeper.api.routers import serving
    from chainkeeper.api.routers import training

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
    ]


def include_web_ui(app: FastAPI) -> None:
    """Add the web pages, their static files and the HTML error page."""
    from fastapi.staticfiles import StaticFiles

    from chainkeeper.web import pages, reports

    app.include_router(pages.router)
    app.include_router(reports.router)
    from chainkeeper.web import data as data_pages  # /data, /data/versions/{id}

    app.include_router(data_pages.router)
    from chainkeeper.web import models as model_pages  # /models, /deployments

    app.include_router(model_pages.router)
    from chainkeeper.web import annotation as annotation_pages  # /annotate

    app.include_router(annotation_pages.router)
    from chainkeeper.web import monitoring as monitoring_pages  # /monitoring

    app.include_router(monitoring_pages.router)
    from chainkeeper.web import alerts as alert_pages  # /monitoring/alerts

    app.include_router(alert_pages.router)
    from chainkeeper.web import runs as run_pages  # /runs, /runs/{id}

    app.include_router(run_pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.state.error_page = pages.error_page
