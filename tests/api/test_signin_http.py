"""Sign-in over real HTTP (issue 15 item 5): a uvicorn server on a loopback port. The
address the throttle and the ledger see is the connecting one, unless it is a proxy
named in ``trusted_proxies``; a throttled sign-in is a 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.errors import ConfigError
from chainkeeper.core.settings import Settings, load_settings
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.passwords import set_password
from chainkeeper.governance.throttle import PAIR
from chainkeeper.governance.users import create_user

PASSWORD = "correct horse battery"
WRONG = {"user": "carol", "password": "wrong guess!"}


def _serve(ctx: Context) -> Iterator[tuple[Context, RunningServer]]:
    create_user(ctx.db, "carol", roles=["auditor"])
    set_password(ctx.db, "carol", PASSWORD)
    server = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    yield ctx, server
    server.stop()


@pytest.fixture
def direct(ctx: Context) -> Iterator[tuple[Context, RunningServer]]:
    """The default: no trusted proxy."""
    yield from _serve(ctx)


@pytest.fixture
def behind_proxy(settings: Settings) -> Iterator[tuple[Context, RunningServer]]:
    """A reverse proxy on this host, declared as an operator would: in the environment."""
    ctx = open_context(load_settings({"CHAINKEEPER_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}, home=settings.home))
    yield from _serve(ctx)
    ctx.close()


def _failed_addresses(ctx: Context) -> list[str]:
    return [e.details["address"] for e in list_entries(ctx.db) if e.action == "login.failed"]


def test_x_forwarded_for_is_ignored_unless_from_a_trusted_proxy(direct: tuple[Context, RunningServer]) -> None:
    """Before: uvicorn believed X-Forwarded-For from 127.0.0.1, so each try could claim
    a new address (no per-address limit) and the ledger recorded the lie."""
    ctx, server = direct
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(PAIR.free):
            answer = client.post("/api/login", json=WRONG, headers={"X-Forwarded-For": f"203.0.113.{i}"})
            assert answer.status_code == 401
        refused = client.post("/api/login", json={"user": "carol", "password": PASSWORD},
                              headers={"X-Forwarded-For": "203.0.113.99"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["detail"] == "Too many failed sign-ins as 'carol' from this address."
    assert problem["hint"].startswith("Try again in 1 s")
    assert _failed_addresses(ctx) == ["127.0.0.1"]


def test_x_forwarded_for_from_a_trusted_proxy_is_the_address(behind_proxy: tuple[Context, RunningServer]) -> None:
    ctx, server = behind_proxy
    attacker, user = {"X-Forwarded-For": "203.0.113.9"}, {"X-Forwarded-For": "198.51.100.7"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(PAIR.free):
            assert client.post("/api/login", json=WRONG, headers=attacker).status_code == 401
        refused = client.post("/api/login", json={"user": "carol", "password": PASSWORD}, headers=attacker)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        # The user behind the same proxy, at another address, is not locked out.
        signed_in = client.post("/api/login", json={"user": "carol", "password": PASSWORD}, headers=user)
    assert signed_in.status_code == 200 and signed_in.json()["user"] == "carol"
    assert _failed_addresses(ctx) == ["203.0.113.9"]
    [success] = [e for e in list_entries(ctx.db) if e.action == "login.succeeded"]
    assert success.details["address"] == "198.51.100.7"


def test_the_sign_in_page_says_when_to_try_again(direct: tuple[Context, RunningServer]) -> None:
    _, server = direct
    form = {**WRONG, "next": "/"}
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        for _ in range(PAIR.free):
            assert client.post("/login", data=form).status_code == 401
        page = client.post("/login", data=form)
    assert page.status_code == 429 and page.headers["retry-after"] == "1"
    assert page.headers["content-type"].startswith("text/html") and "Try again in 1 s" in page.text


def test_a_trusted_proxy_must_be_an_address_or_network(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="'proxy.internal' is not an IP address or network"):
        load_settings({"CHAINKEEPER_TRUSTED_PROXIES": "127.0.0.1,proxy.internal"}, home=settings.home)
