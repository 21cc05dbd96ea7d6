"""A real uvicorn server on a free loopback port: an HTTP predict round trip, port errors."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from chainkeeper.api.app import create_app
from chainkeeper.api.server import RunningServer, check_port_free, serve, start_server_in_thread
from chainkeeper.core.context import Context
from chainkeeper.core.errors import ServiceUnavailable
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.predictions import get_prediction
from chainkeeper.serving.deployments import deploy_model_version
from tests.model_rows import LABELS, RELEASER, in_production, save_tiny_classifier


@pytest.fixture
def listener() -> Iterator[int]:
    """Another process's server, as far as we can tell: a socket listening on a loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def running(ctx: Context) -> Iterator[RunningServer]:
    server = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    yield server
    server.stop()


def test_a_real_server_answers_a_predict_request_over_http(
    ctx: Context, running: RunningServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    version = in_production(ctx, "intents",
                            model_artifact=ctx.artifacts.put_tree(save_tiny_classifier(tiny_model_dir, tmp_path / "m")))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    create_user(ctx.db, "olive", roles=["operator"])
    token = issue_token(ctx.db, "olive", name="test").secret

    assert running.port != 0 and running.url == f"http://127.0.0.1:{running.port}"
    with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        answer = client.post("/v1/deployments/support/predict", json={"texts": ["lost card", "hello there"]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"]
    predictions = answer.json()["predictions"]
    assert [p["label"] in LABELS for p in predictions] == [True, True]
    assert get_prediction(ctx.db, predictions[1]["request_id"]).input_text == "hello there"


def test_stop_closes_the_port(running: RunningServer) -> None:
    assert httpx.get(f"{running.url}/healthz").status_code == 200
    running.stop()
    assert not running.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.url}/healthz", timeout=2)
    check_port_free("127.0.0.1", running.port)  # free again (TIME_WAIT does not count)


def test_a_port_in_use_is_a_clear_error(ctx: Context, listener: int) -> None:
    app = create_app(ctx)
    for attempt in (lambda: start_server_in_thread(app, port=listener), lambda: serve(app, "127.0.0.1", listener),
                    lambda: check_port_free("127.0.0.1", listener)):
        with pytest.raises(ServiceUnavailable) as caught:
            attempt()
        assert caught.value.message == f"Port {listener} on 127.0.0.1 is already in use."
        assert "Stop the other process or pass --port" in (caught.value.hint or "")


def test_an_address_not_on_this_machine_is_a_clear_error(ctx: Context) -> None:
    with pytest.raises(ServiceUnavailable, match="Cannot listen on 192.0.2.1:0") as caught:
        start_server_in_thread(create_app(ctx), host="192.0.2.1", port=0)  # TEST-NET-1, never local
    assert "--host" in (caught.value.hint or "")


def test_a_server_whose_startup_fails_raises_instead_of_exiting() -> None:
    @asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("cannot start")
        yield

    with pytest.raises(ServiceUnavailable, match="did not start"):
        start_server_in_thread(FastAPI(lifespan=broken), port=0, log_level="critical")
