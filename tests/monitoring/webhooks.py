"""Test helper: a real webhook receiver on 127.0.0.1 (the ``receiver`` fixture; import it where used).

Given its rule's secret, the receiver checks each message's signature as the receiver in
the docs does (its own code, not ``monitoring.signing``), so a test sees what a real one
would accept. Loopback is refused to outbound requests by default (issue 15 item 6):
``allowing_loopback`` gives a context whose settings let webhooks reach the receiver.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chainkeeper.core.context import Context

REPLAY_WINDOW_S = 300


def allowing_loopback(ctx: Context) -> Context:
    """The same stores, with settings that let outbound requests reach 127.0.0.1."""
    return dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"outbound_allow": ["127.0.0.1"]}))


def signature_ok(secret: str, header: str, body: bytes, now: float) -> bool:
    """A receiver's check of ``X-Chainkeeper-Signature: t=<unix time>,v1=<hex HMAC-SHA256>``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
        return False
    if abs(now - int(parts["t"])) > REPLAY_WINDOW_S:
        return False
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@dataclass
class Receiver:
    """A webhook receiver: a real HTTP server in a thread, recording what it was sent."""

    url: str = ""
    status: int = 200
    # Answer 503 to this many posts first (a receiver that recovers).
    fail_first: int = 0
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    # The rule's secret: when set, each message's signature is checked (its outcome in ``verified``).
    secret: str | None = None
    verified: list[bool] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(state.delay_s)
            state.received.append(json.loads(body))
            state.headers.append(dict(self.headers))
            state.bodies.append(body)
            if state.secret is not None:
                state.verified.append(signature_ok(state.secret, self.headers.get("X-Chainkeeper-Signature", ""),
                                                   body, time.time()))
            if state.secret is not None and not state.verified[-1]:
                self.send_response(401)  # what a receiver does with a message it cannot trust
            else:
                self.send_response(503 if len(state.received) <= state.fail_first else state.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()
