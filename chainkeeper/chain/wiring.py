"""Build the chain's wiring once and open a context that carries it.

Every entry point — the CLI, the API server, a worker, a test fixture — opens its
context here, so they all run the same job handlers, gates and hooks.
"""

from __future__ import annotations

from typing import Any

from chainkeeper import monitoring, serving
from chainkeeper.annotation import PRELABEL_MODEL_HOOK
from chainkeeper.chain.gates import gate_table
from chainkeeper.chain.jobs import job_table
from chainkeeper.chain.prelabel import prelabel_model
from chainkeeper.core.context import Context
from chainkeeper.core.scheduler import SYSTEM_SCHEDULES_HOOK
from chainkeeper.core.settings import Settings
from chainkeeper.core.wiring import Wiring
from chainkeeper.governance.audit import anchor_schedules
from chainkeeper.governance.ledger_keys import use_ledger_keys
from chainkeeper.registry import DEPLOYMENT_TESTS_HOOK, LATEST_EXPORT_HOOK, SERVING_VERSIONS_HOOK
from chainkeeper.serving import LOG_PREDICTIONS_HOOK

# Each hook is looked up in its stage when it is called, so building the wiring (every
# CLI command and the API do) loads no stage module: the hook names live in light
# ``hooks`` modules, the functions load with their first call.


def _deployment_tests(*args: Any, **kwargs: Any) -> Any:
    return serving.run_deployment_tests(*args, **kwargs)


def _latest_export(*args: Any, **kwargs: Any) -> Any:
    return serving.latest_export(*args, **kwargs)


def _serving_versions(*args: Any, **kwargs: Any) -> Any:
    return serving.serving_versions(*args, **kwargs)


def _log_predictions(*args: Any, **kwargs: Any) -> Any:
    return monitoring.log_served_predictions(*args, **kwargs)


def _system_schedules(settings: Settings) -> Any:
    # The prediction log's retention, and the ledger's periodic anchor (issue 15 item 2).
    return [*monitoring.retention_schedules(settings), *anchor_schedules(settings)]


def build_wiring() -> Wiring:
    """The job handlers, gates and hooks of every stage."""
    wiring = Wiring()
    for kind, handler in job_table().items():
        wiring.register_job(kind, handler)
    wiring.gates.update(gate_table())
    wiring.register_hook(DEPLOYMENT_TESTS_HOOK, _deployment_tests)
    wiring.register_hook(LATEST_EXPORT_HOOK, _latest_export)
    # Registry stages follow the traffic: a version a live route names is never archived.
    wiring.register_hook(SERVING_VERSIONS_HOOK, _serving_versions)
    # Pre-labels need a model version, which annotation (below the registry) cannot load itself.
    wiring.register_hook(PRELABEL_MODEL_HOOK, prelabel_model)
    # Served predictions reach monitoring's log through a hook: serving imports nothing of monitoring.
    wiring.register_hook(LOG_PREDICTIONS_HOOK, _log_predictions)
    # The schedules every scheduler keeps in place (the prediction log's retention).
    wiring.register_hook(SYSTEM_SCHEDULES_HOOK, _system_schedules)
    return wiring


def open_context(settings: Settings, *, check_schema: bool = True) -> Context:
    """``Context.open`` with the chain's wiring.

    Raises:
        ConfigError, StoreError, SchemaError: as ``Context.open``.
    """
    ctx = Context.open(settings, check_schema=check_schema, wiring=build_wiring())
    use_ledger_keys(ctx.db, settings)  # the ledger's HMAC keys, held outside the database (issue 15 item 2)
    return ctx
