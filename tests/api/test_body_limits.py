"""Bodies are admitted and bounded before they are read (issue 15, item 1), over real sockets.

A real uvicorn server on a loopback port; the client writes a body lazily (a generator of
up to 200 MiB) and stops as soon as the server answers, so each test shows how much the
server let in before it answered: a server that read first would take the whole body.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, UploadFile
from fastapi.routing import APIRoute, iter_route_contexts

from chainkeeper.api.app import create_app
from chainkeeper.api.auth import PUBLIC, route_decisions
from chainkeeper.api.body_limits import DEFAULT_BODY_BYTES, PUBLIC_BODY_BYTES, route_body_limits
from chainkeeper.api.problems import PROBLEM_JSON
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.api.uploads import saved_upload
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import Settings
from chainkeeper.data.sources import count_sources
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.serving.limits import DEFAULT_LIMITS

MIB = 1024 * 1024
UPLOAD_CAP = 512 * 1024  # max_upload_bytes of these tests' server
# What the kernel may buffer between the two ends of a loopback connection (both socket
# buffers) before the server reads anything: a body that got no further was not read.
KERNEL_SLACK = 16 * MIB
BOUNDARY = "ck-test-boundary"
CSV_HEAD = b"text,label\n"
CSV_ROWS = b"".join(f"message {i} about my card,lost_card\n".encode() for i in range(40))


@pytest.fixture
def server(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Server]:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where uploads would be spooled and copied
    ctx = open_context(settings.model_copy(update={"max_upload_bytes": UPLOAD_CAP}))
    app = create_app(ctx)
    running = start_server_in_thread(app, host="127.0.0.1", port=0)
    try:
        yield Server(ctx, app, running, temp)
    finally:
        running.stop()
        ctx.close()


@dataclass
class Server:
    ctx: Context
    app: FastAPI
    running: RunningServer
    temp: Path

    def token(self, name: str, role: str) -> str:
        create_user(self.ctx.db, name, roles=[role])
        return issue_token(self.ctx.db, name, name="test").secret

    def artefacts(self) -> list[Path]:
        return sorted(p for p in self.ctx.artifacts.root.rglob("*") if p.is_file())  # type: ignore[attr-defined]

    def leftovers(self) -> list[Path]:
        return list(self.temp.iterdir())


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # bytes the client got onto the connection (head included) before the answer
    closed: bool = False  # the server closed the connection after answering

    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"].startswith(PROBLEM_JSON), self.headers
        problem: dict[str, Any] = json.loads(self.body)
        assert problem["status"] == self.status and problem["request_id"] == self.headers["x-request-id"]
        return problem


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    def head(self, port: int) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
                 *(f"{k}: {v}" for k, v in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port: int, request: Request, body: Iterator[bytes], *, chunked: bool, finish: bool = True,
             wait_s: float = 20.0) -> Answer:
    """Write ``request`` and then ``body`` lazily, stopping as soon as the server answers; read the answer.

    ``finish=False`` never ends a chunked body: only a server that answers without reading
    it all can reply.
    """
    head = request.head(port)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    pending, sent, done = head, 0, False
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if pending or not done else [], [], 0.5)
            if readable:
                break  # the server answered (or closed): send no more
            if not writable:
                continue
            if not pending:
                chunk = next(body, None)
                if chunk is None:
                    done = True
                    pending = b"0\r\n\r\n" if chunked and finish else b""
                else:
                    pending = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
            try:
                count = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent, pending = sent + count, pending[count:]
        else:
            raise AssertionError(f"no answer within {wait_s} s after sending {sent:,} bytes")
        return _read_answer(sock, sent)
    finally:
        sock.close()


def _read_answer(sock: socket.socket, sent: int) -> Answer:
    sock.setblocking(True)
    sock.settimeout(10)
    data, closed = b"", False
    while True:
        try:
            more = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            closed = True
            break
        if not more:
            closed = True
            break
        data += more
        head, _, rest = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length and len(rest) >= int(length.group(1)) and b"connection: close" not in head.lower():
            break
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return Answer(int(status_line.split()[1]), headers, rest, sent, closed)


def lazy(total: int, chunk: bytes) -> Iterator[bytes]:
    """``total`` bytes as repeats of ``chunk``, made only as they are sent."""
    for _ in range(total // len(chunk)):
        yield chunk


def multipart_head(name: str = "intents.csv") -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"split\"\r\n\r\ntrain\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()


def multipart_tail() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def endless_upload(total: int) -> Iterator[bytes]:
    yield multipart_head() + CSV_HEAD
    yield from lazy(total, CSV_ROWS)


def rss() -> int:
    """This process's resident memory (the server runs in one of its threads)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- refused before the body is read -------------------------------------------------------------


def test_a_200_mib_json_body_without_a_token_is_answered_401_before_it_is_read(server: Server) -> None:
    before = rss()
    answer = exchange(server.running.port, Request("POST", "/api/datasets", {
        "Content-Type": "application/json", "Content-Length": str(200 * MIB)}),
        lazy(200 * MIB, b" " * 65536), chunked=False)

    assert answer.status == 401 and "signed-in user" in answer.problem()["detail"]
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.sent < KERNEL_SLACK, f"the server let in {answer.sent:,} bytes before answering"
    assert answer.closed  # nothing more of the body is read
    assert rss() - before < 64 * MIB


def test_a_chunked_upload_without_a_token_is_refused_and_nothing_reaches_the_disk(server: Server) -> None:
    before = server.artefacts()

    answer = exchange(server.running.port, Request("POST", "/api/sources", {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"}),
        endless_upload(300 * MIB), chunked=True)

    assert answer.status == 401 and answer.problem()["hint"]
    assert answer.sent < KERNEL_SLACK and answer.closed
    assert count_sources(server.ctx.db) == 0 and server.artefacts() == before and server.leftovers() == []


def test_a_caller_without_the_permission_is_answered_403_before_the_body(server: Server) -> None:
    token = server.token("ann", "annotator")

    answer = exchange(server.running.port, Request("POST", "/api/sources", {
        "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Transfer-Encoding": "chunked"}), endless_upload(300 * MIB), chunked=True, finish=False)

    assert answer.status == 403 and "data.import" in answer.problem()["detail"]
    assert answer.sent < KERNEL_SLACK and count_sources(server.ctx.db) == 0


def test_every_route_refuses_an_anonymous_body_it_has_not_read(server: Server) -> None:
    """A chunked body that never ends: only a server that answers before reading can reply."""
    checked = []
    for (method, path), action in sorted(route_decisions(server.app).items()):
        if method not in {"POST", "PUT", "PATCH", "DELETE"} or action == PUBLIC:
            continue
        url = re.sub(r"\{[^}]+\}", "1", path)
        answer = exchange(server.running.port, Request(method, url, {
            "Content-Type": "application/json", "Transfer-Encoding": "chunked"}),
            iter([b'{"a": ']), chunked=True, finish=False, wait_s=5)
        assert answer.status == 401, (method, path, answer.status, answer.body[:200])
        answer.problem()
        checked.append(path)
    assert len(checked) > 50 and "/v1/deployments/{name}/feedback" in checked


# --- size limits --------------------------------------------------------------------------------


def test_a_json_body_over_the_default_limit_is_413_naming_the_limit(server: Server) -> None:
    token = server.token("dana", "data_steward")
    request = Request("POST", "/api/datasets", {"Authorization": f"Bearer {token}",
                                               "Content-Type": "application/json"})

    by_length = exchange(server.running.port, Request(request.method, request.path, {
        **request.headers, "Content-Length": str(200 * MIB)}), lazy(200 * MIB, b" " * 65536), chunked=False)
    chunked = exchange(server.running.port, Request(request.method, request.path, {
        **request.headers, "Transfer-Encoding": "chunked"}), lazy(200 * MIB, b" " * 65536), chunked=True)

    for answer in (by_length, chunked):
        problem = answer.problem()
        assert answer.status == 413 and answer.closed
        assert "1 MiB (1,048,576 bytes)" in problem["detail"] and "POST /api/datasets" in problem["detail"]
        assert problem["hint"] == "Send a smaller body: split a batch into several requests."
    assert by_length.problem()["detail"].startswith("The request body has 209,715,200 bytes; POST /api/datasets "
                                                    "accepts at most 1 MiB")
    assert by_length.sent < KERNEL_SLACK  # answered from the header, before the body
    assert chunked.sent < DEFAULT_BODY_BYTES + KERNEL_SLACK


def test_a_chunked_upload_over_the_cap_is_413_and_stores_nothing(server: Server) -> None:
    token = server.token("dana", "data_steward")
    before = server.artefacts()

    answer = exchange(server.running.port, Request("POST", "/api/sources", {
        "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Transfer-Encoding": "chunked"}), endless_upload(200 * MIB), chunked=True)

    problem = answer.problem()
    assert answer.status == 413 and answer.closed
    assert f"passed {UPLOAD_CAP:,} bytes, the most POST /api/sources accepts" in problem["detail"]
    assert "chainkeeper data import" in problem["hint"]
    assert answer.sent < UPLOAD_CAP + KERNEL_SLACK
    assert count_sources(server.ctx.db) == 0 and server.artefacts() == before and server.leftovers() == []


def test_an_evaluation_upload_over_its_limit_is_413_from_the_header(server: Server) -> None:
    token = server.token("olive", "operator")

    answer = exchange(server.running.port, Request("POST", "/api/models/1/evaluations", {
        "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(64 * MIB + 1)}), lazy(64 * MIB, b"x" * 65536), chunked=False)

    assert answer.status == 413 and answer.sent < KERNEL_SLACK
    assert "accepts at most 64 MiB" in answer.problem()["detail"]


def test_an_upload_within_the_cap_still_works_chunked_and_with_a_length(server: Server) -> None:
    token = server.token("dana", "data_steward")
    body = multipart_head() + CSV_HEAD + CSV_ROWS * 3 + multipart_tail()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    with httpx.Client(base_url=server.running.url, headers=headers, timeout=30) as client:
        with_length = client.post("/api/sources", content=body)
        chunked = client.post("/api/sources", content=iter([body[:1000], body[1000:]]))

    assert with_length.request.headers["content-length"] == str(len(body))
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    for answer in (with_length, chunked):
        assert answer.status_code == 201, answer.text
        assert answer.json()["rows_accepted"] == 120 and answer.json()["uri"] == "upload:intents.csv"
    assert count_sources(server.ctx.db) == 2 and server.leftovers() == []


def test_a_support_message_over_its_limit_is_413_before_it_is_read(server: Server) -> None:
    """A 100 kB message: refused from the header (or, chunked, at 32 KiB), after the caller was admitted."""
    headers = {"Authorization": f"Bearer {server.token('olive', 'operator')}", "Content-Type": "application/json"}
    path = "/v1/apps/helpdesk/messages"

    by_length = exchange(server.running.port, Request("POST", path, {**headers, "Content-Length": str(100_000)}),
                         lazy(100_000, b" " * 1000), chunked=False)
    chunked = exchange(server.running.port, Request("POST", path, {**headers, "Transfer-Encoding": "chunked"}),
                       lazy(100_000, b" " * 1000), chunked=True)
    anonymous = exchange(server.running.port, Request("POST", path, {"Content-Type": "application/json",
                                                                     "Content-Length": str(100_000)}),
                         lazy(100_000, b" " * 1000), chunked=False)

    for answer in (by_length, chunked):
        problem = answer.problem()
        assert answer.status == 413 and answer.closed
        assert "32,768 bytes" in problem["detail"] and f"POST {'/v1/apps/{name}/messages'}" in problem["detail"]
        assert "at most 2,000 characters" in problem["hint"]
    assert by_length.sent < KERNEL_SLACK and by_length.problem()["detail"].startswith("The request body has 100,000")
    assert anonymous.status == 401 and "signed-in user" in anonymous.problem()["detail"]


# --- answers the same as the route's own ----------------------------------------------------------


@pytest.mark.parametrize(("path", "role", "accept", "status"), [
    pytest.param("/api/datasets", None, "application/json", 401, id="api-no-token"),
    pytest.param("/api/datasets", "annotator", "application/json", 403, id="api-no-permission"),
    pytest.param("/annotate/projects", None, "text/html", 303, id="page-no-session"),
    pytest.param("/annotate/projects", "annotator", "text/html", 403, id="page-no-permission"),
])
def test_an_early_refusal_is_the_answer_the_route_gives(server: Server, path: str, role: str | None, accept: str,
                                                         status: int) -> None:
    headers = {"Accept": accept, "Content-Type": "application/x-www-form-urlencoded"}
    if role is not None:
        headers["Authorization"] = f"Bearer {server.token('someone', role)}"

    # No body: the route answers itself. A large body: the middleware, before reading it.
    routed = exchange(server.running.port, Request("POST", path, {**headers, "Content-Length": "0"}),
                      iter(()), chunked=False)
    early = exchange(server.running.port, Request("POST", path, {**headers, "Content-Length": str(100 * MIB)}),
                     lazy(100 * MIB, b"x" * 65536), chunked=False)

    assert routed.status == early.status == status
    assert routed.headers.get("content-type") == early.headers.get("content-type")
    assert routed.headers.get("location") == early.headers.get("location")
    if "json" in early.headers.get("content-type", ""):
        routed_problem, early_problem = routed.problem(), early.problem()
        assert {**routed_problem, "request_id": ""} == {**early_problem, "request_id": ""}
    else:
        assert routed.body.replace(routed.headers["x-request-id"].encode(), b"") == \
            early.body.replace(early.headers["x-request-id"].encode(), b"")
    assert early.sent < KERNEL_SLACK and early.closed


# --- every route has a known limit ---------------------------------------------------------------


def test_every_route_has_a_known_body_limit(ctx: Context) -> None:
    app = create_app(ctx)
    limits = route_body_limits(app)
    decisions = route_decisions(app)

    assert set(limits) == set(decisions)
    for key, limit in limits.items():
        assert limit.resolve(ctx.settings) >= 1, key
        if not limit.declared:
            expected = PUBLIC_BODY_BYTES if decisions[key] == PUBLIC else DEFAULT_BODY_BYTES
            assert limit.max_bytes == expected, key
    # Routes that take files declare their limit where they are declared.
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and any(
                "UploadFile" in str(p.field_info.annotation) for p in route.dependant.body_params):
            assert all(limits[(m, str(route.path))].declared for m in route.methods or ()), route.path
    assert limits[("POST", "/api/sources")].resolve(ctx.settings) == ctx.settings.max_upload_bytes == 256 * MIB
    assert limits[("POST", "/api/models/{model_version_id}/evaluations")].max_bytes == 64 * MIB
    predict = limits[("POST", "/v1/deployments/{name}/predict")]
    assert predict.admits_before_reading and predict.max_bytes == DEFAULT_LIMITS.max_body_bytes
    # The support assistant's routes with a body: a customer's message is small, and bounded small.
    message = limits[("POST", "/v1/apps/{name}/messages")]
    assert message.declared and not message.admits_before_reading and message.max_bytes == 32 * 1024
    for key in (("POST", "/api/apps/support"), ("PATCH", "/api/apps/support/{name}"),
                ("POST", "/api/support/conversations/{conversation_id}/resolve")):
        assert limits[key].declared and limits[key].max_bytes == 64 * 1024, key


# --- the upload's copy on disk --------------------------------------------------------------------


def test_an_upload_is_copied_to_a_private_file_that_is_removed_afterwards(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    upload = UploadFile(io.BytesIO(CSV_HEAD + CSV_ROWS), filename="../../etc/my intents.csv")
    old_umask = os.umask(0)  # the modes must not depend on the server's umask
    try:
        async def copy() -> tuple[Path, int, int, bytes]:
            async with saved_upload(upload, prefix="ck-upload-") as path:
                return path, path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777, path.read_bytes()

        path, file_mode, folder_mode, content = asyncio.run(copy())
    finally:
        os.umask(old_umask)

    assert (path.name, path.parent.parent) == ("my_intents.csv", tmp_path)
    assert (file_mode, folder_mode) == (0o600, 0o700) and content == CSV_HEAD + CSV_ROWS
    assert not path.exists() and list(tmp_path.iterdir()) == []
