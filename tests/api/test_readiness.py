"""/readyz follows the workers when it is asked to (issue 15, item 8): 'up' with workers is
ready only while one of them is alive, and answers why not."""

from __future__ import annotations

import os
import socket

from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.jobs import mark_worker_lost, register_worker, worker_heartbeat


def test_readyz_needs_a_live_worker_when_told_to(ctx: Context) -> None:
    needing = open_context(ctx.settings.model_copy(update={"ready_needs_worker": True, "stale_after_s": 30.0}))
    try:
        with TestClient(create_app(needing), raise_server_exceptions=False) as probe:
            none = probe.get("/readyz")
            assert none.status_code == 503 and none.headers["content-type"].startswith("application/problem+json")
            assert none.json()["detail"].startswith("No worker is alive: none has sent a heartbeat in the last 30 s")
            assert "chainkeeper worker" in none.json()["hint"] and none.headers["retry-after"] == "30"

            host = socket.gethostname()
            register_worker(ctx.db, "w1", host, os.getpid())
            assert probe.get("/readyz").json() == {"status": "ready", "store": "sqlite", "workers": 1}

            assert mark_worker_lost(ctx.db, host, os.getpid()) == 1  # 'up' saw its process end
            assert probe.get("/readyz").status_code == 503
            worker_heartbeat(ctx.db, "w1", "stopped")
            assert probe.get("/readyz").status_code == 503
    finally:
        needing.close()


def test_readyz_asks_only_the_store_by_default(ctx: Context) -> None:
    with TestClient(create_app(ctx)) as probe:  # 'serve' alone, or workers elsewhere
        assert probe.get("/readyz").json() == {"status": "ready", "store": "sqlite"}
