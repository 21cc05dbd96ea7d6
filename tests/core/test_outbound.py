"""The outbound client against real servers on loopback: which addresses it refuses, that it
connects to the address it checked, that redirects are checked at every hop, and that size
and time are bounded (issue 15 item 6).

Loopback is refused by default, so each test allows exactly the loopback address of its
server (127.0.0.1, or 127.0.0.2 where 127.0.0.1 must stay refused). Names are resolved by
a plain function passed as ``resolver``, as a DNS server under someone else's control would
answer.
"""

from __future__ import annotations

import http.server
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from chainkeeper.core.errors import ConfigError, OutboundRefused
from chainkeeper.core.outbound import (
    OutboundClient,
    OutboundPolicy,
    ResponseTooLarge,
    blocked_reason,
    refuse_if_blocked,
)
from chainkeeper.core.settings import load_settings


class _Site(http.server.BaseHTTPRequestHandler):
    """``/`` answers its Host header; ``/loop`` redirects to itself; ``/big`` and ``/chunked``
    are 2 MB; ``/drip`` sends a byte every 0.1 s for 10 s; ``/to?url`` redirects there."""

    seen: list[tuple[str, str]]
    protocol_version = "HTTP/1.1"  # connections are kept alive, as real servers keep them

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append((self.path, self.headers.get("Host", "")))
        if self.path.startswith("/to?"):
            self._answer(302, b"", location=self.path[4:])
        elif self.path == "/loop":
            self._answer(302, b"", location="/loop")
        elif self.path == "/big":
            self._answer(200, b"x" * 2_000_000)
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"186a0\r\n" + b"x" * 100_000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self._answer(200, f"host={self.headers.get('Host')}".encode())

    def _answer(self, status: int, body: bytes, location: str | None = None) -> None:
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # the drip answer outlives its test

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up on purpose (size and time limits) is no news


@contextmanager
def _serving(address: str, wrap: ssl.SSLContext | None = None) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    server = _QuietServer((address, 0), type("Site", (_Site,), {"seen": seen}))
    if wrap is not None:
        server.socket = wrap.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def site() -> Iterator[tuple[int, list[tuple[str, str]]]]:
    with _serving("127.0.0.1") as served:
        yield served


@pytest.fixture
def second_loopback() -> str:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address on this host")
    return "127.0.0.2"


LOOPBACK = OutboundPolicy.of(allow=["127.0.0.1"])


# --- which addresses (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(("address", "why"), [
    pytest.param("127.0.0.1", "loopback", id="loopback"),
    pytest.param("127.8.9.10", "loopback", id="loopback-range"),
    pytest.param("::1", "loopback", id="ipv6-loopback"),
    pytest.param("10.1.2.3", "private address (RFC 1918)", id="rfc1918-10"),
    pytest.param("172.16.5.4", "private address (RFC 1918)", id="rfc1918-172"),
    pytest.param("192.168.1.1", "private address (RFC 1918)", id="rfc1918-192"),
    pytest.param("fd12:3456::1", "unique local", id="ula"),
    pytest.param("169.254.169.254", "cloud metadata", id="metadata"),
    pytest.param("169.254.1.1", "link-local", id="link-local"),
    pytest.param("fe80::1", "link-local", id="ipv6-link-local"),
    pytest.param("100.64.0.1", "carrier-grade NAT", id="cgnat"),
    pytest.param("224.0.0.251", "multicast", id="multicast"),
    pytest.param("ff02::1", "multicast", id="ipv6-multicast"),
    pytest.param("0.0.0.0", "unspecified", id="unspecified"),
    pytest.param("::", "unspecified", id="ipv6-unspecified"),
    pytest.param("240.0.0.1", "reserved", id="reserved"),
    pytest.param("255.255.255.255", "reserved", id="broadcast"),
    pytest.param("192.0.2.7", "documentation", id="test-net"),
    pytest.param("::ffff:127.0.0.1", "loopback address, written as IPv6", id="ipv4-mapped"),
    pytest.param("::ffff:169.254.169.254", "cloud metadata", id="ipv4-mapped-metadata"),
    pytest.param("64:ff9b::a00:1", "private address (RFC 1918), written as IPv6", id="nat64"),
    pytest.param("2002:7f00:1::1", "loopback address, written as IPv6", id="6to4"),
])
def test_internal_addresses_are_refused_by_default_with_the_reason(address: str, why: str) -> None:
    reason = blocked_reason(ipaddress.ip_address(address))
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_allow_and_deny_take_addresses_networks_and_names_and_deny_wins() -> None:
    policy = OutboundPolicy.of(allow=["10.0.0.0/8", "hooks.internal", "*.corp.example", "::1"],
                               deny=["10.9.0.0/16", "bad.corp.example", "8.8.8.8"])
    ip = ipaddress.ip_address

    assert policy.refusal("x", ip("10.1.2.3")) is None
    assert policy.refusal("hooks.internal", ip("192.168.0.9")) is None  # the name is allowed, whatever it resolves to
    assert policy.refusal("HOOKS.internal.", ip("192.168.0.9")) is None
    assert policy.refusal("a.corp.example", ip("172.16.0.1")) is None
    assert policy.refusal("x", ip("::1")) is None
    denied = policy.refusal("x", ip("10.9.1.1"))
    assert denied is not None and "outbound_deny entry '10.9.0.0/16'" in denied[0]
    assert policy.refusal("bad.corp.example", ip("172.16.0.1")) is not None
    assert policy.refusal("dns.example", ip("8.8.8.8")) is not None  # a public address, denied
    assert policy.refusal("corp.example", ip("172.16.0.1")) is not None  # '*.' covers sub-domains only
    with pytest.raises(ConfigError, match="outbound_deny entry 'http://x/'"):
        OutboundPolicy.of(deny=["http://x/"])


def test_the_settings_read_comma_separated_lists_and_refuse_garbage() -> None:
    settings = load_settings({"CHAINKEEPER_OUTBOUND_ALLOW": "127.0.0.1, 10.0.0.0/8,hooks.internal",
                              "CHAINKEEPER_OUTBOUND_DENY": "10.9.0.0/16"})
    policy = OutboundPolicy.from_settings(settings)

    assert settings.outbound_allow == ["127.0.0.1", "10.0.0.0/8", "hooks.internal"]
    assert policy.refusal("x", ipaddress.ip_address("10.1.1.1")) is None
    assert policy.refusal("x", ipaddress.ip_address("10.9.1.1")) is not None
    assert load_settings({}).outbound_allow == [] and load_settings({}).outbound_deny == []
    with pytest.raises(ConfigError, match="outbound_allow.*'http://10.0.0.1/'"):
        load_settings({"CHAINKEEPER_OUTBOUND_ALLOW": "http://10.0.0.1/"})


# --- the client against real servers -------------------------------------------------------


@pytest.mark.parametrize("url", [
    pytest.param("http://127.0.0.1:{port}/", id="loopback"),
    pytest.param("http://localhost:{port}/", id="localhost"),
    pytest.param("http://[::1]:{port}/", id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/", id="ipv4-mapped"),
    pytest.param("http://0x7f.1:{port}/", id="loopback-in-hex"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata"),
])
def test_the_client_refuses_internal_urls_before_connecting(site: tuple[int, list[tuple[str, str]]],
                                                            url: str) -> None:
    port, seen = site
    with OutboundClient() as client, pytest.raises(OutboundRefused) as refused:
        client.get(url.format(port=port))

    assert refused.value.message.startswith("Refused to connect to ")
    assert "CHAINKEEPER_OUTBOUND_ALLOW=" in (refused.value.hint or "")
    assert seen == []


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "gopher://127.0.0.1:70/"])
def test_only_http_and_https_are_fetched(url: str) -> None:
    with OutboundClient() as client, pytest.raises(OutboundRefused, match="only http:// and https://"):
        client.get(url)


def test_every_address_a_name_resolves_to_is_checked() -> None:
    mixed = OutboundClient(resolver=lambda host, port: ["93.184.216.34", "10.0.0.7"])

    with mixed, pytest.raises(OutboundRefused, match=r"mixed\.example resolves to 10\.0\.0\.7.*RFC 1918"):
        mixed.get("http://mixed.example/")
    with pytest.raises(OutboundRefused, match="10.0.0.7"):
        refuse_if_blocked("http://mixed.example/", OutboundPolicy(), resolver=lambda host, port: ["10.0.0.7"])
    refuse_if_blocked("http://nowhere.invalid/", OutboundPolicy(), resolver=_unresolvable)  # checked again when sent


def _unresolvable(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_an_allowed_name_is_fetched_from_the_checked_address_with_its_host_header(
        site: tuple[int, list[tuple[str, str]]]) -> None:
    port, seen = site
    with OutboundClient(LOOPBACK, resolver=lambda host, _: ["127.0.0.1"]) as client:
        answer = client.get(f"http://hooks.example:{port}/")

    assert answer.status_code == 200 and answer.text == f"host=hooks.example:{port}"
    assert str(answer.url) == f"http://hooks.example:{port}/"
    assert seen == [("/", f"hooks.example:{port}")]


def test_the_connection_goes_to_the_address_checked_not_to_a_later_dns_answer(second_loopback: str) -> None:
    """DNS rebinding: the name answers an allowed address when checked, then 127.0.0.1. The
    request is sent to the checked one; the resolver is asked once per request."""
    answers: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        answers.append(host)
        return [second_loopback] if len(answers) == 1 else ["127.0.0.1"]

    with _serving(second_loopback) as (port, seen), _serving("127.0.0.1") as (secret_port, secret_seen):
        client = OutboundClient(OutboundPolicy.of(allow=[second_loopback]), resolver=rebinding)
        assert client.get(f"http://rebind.example:{port}/").status_code == 200
        with pytest.raises(OutboundRefused, match="rebind.example resolves to 127.0.0.1"):
            client.get(f"http://rebind.example:{secret_port}/")
        client.close()

    assert answers == ["rebind.example", "rebind.example"]
    assert seen == [("/", f"rebind.example:{port}")] and secret_seen == []


def test_a_redirect_to_a_refused_address_is_refused_at_that_hop(second_loopback: str,
                                                                site: tuple[int, list[tuple[str, str]]]) -> None:
    secret_port, secret_seen = site
    with _serving(second_loopback) as (port, seen):
        client = OutboundClient(OutboundPolicy.of(allow=[second_loopback]))
        with pytest.raises(OutboundRefused, match="Refused to connect to 127.0.0.1.*loopback"):
            client.get(f"http://{second_loopback}:{port}/to?http://127.0.0.1:{secret_port}/", follow_redirects=True)
        with pytest.raises(OutboundRefused, match="only http:// and https://"):
            client.get(f"http://{second_loopback}:{port}/to?file:///etc/passwd", follow_redirects=True)
        # Not following, the redirect is the answer: the caller decides (the crawler checks its target).
        answer = client.get(f"http://{second_loopback}:{port}/to?http://127.0.0.1:{secret_port}/")
        client.close()

    assert answer.status_code == 302 and len(seen) == 3 and secret_seen == []


def test_redirects_are_followed_a_bounded_number_of_times(site: tuple[int, list[tuple[str, str]]]) -> None:
    port, seen = site
    with OutboundClient(LOOPBACK, max_redirects=3) as client:
        with pytest.raises(httpx.TooManyRedirects):
            client.get(f"http://127.0.0.1:{port}/loop", follow_redirects=True)
        followed = client.get(f"http://127.0.0.1:{port}/to?/", follow_redirects=True)

    assert [path for path, _ in seen[:4]] == ["/loop"] * 4  # the first request and three redirects
    assert followed.text == f"host=127.0.0.1:{port}" and str(followed.url) == f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("path", ["/big", "/chunked"])
def test_an_answer_larger_than_the_limit_is_not_read(site: tuple[int, list[tuple[str, str]]], path: str) -> None:
    port, _ = site
    with OutboundClient(LOOPBACK, max_bytes=1_000_000) as client, pytest.raises(ResponseTooLarge, match="1,000,000"):
        client.get(f"http://127.0.0.1:{port}{path}")


def test_a_slow_answer_is_cut_at_the_total_time_limit(site: tuple[int, list[tuple[str, str]]]) -> None:
    port, _ = site
    started = time.monotonic()
    with OutboundClient(LOOPBACK, timeout_s=0.5) as client, pytest.raises(httpx.TimeoutException):
        client.get(f"http://127.0.0.1:{port}/drip")  # each byte well within the read timeout

    assert time.monotonic() - started < 2.0  # not the 10 s the server would take


def test_proxy_variables_of_the_environment_are_not_used(site: tuple[int, list[tuple[str, str]]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would connect on our behalf to addresses we never checked."""
    port, seen = site
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nobody listens there
    with OutboundClient(LOOPBACK) as client:
        assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert len(seen) == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_checks_the_certificate_against_the_name_while_connecting_to_the_address(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=hooks.example", "-addext", "subjectAltName=DNS:hooks.example", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []

    def note_server_name(sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    server_tls.sni_callback = note_server_name
    trust = ssl.create_default_context(cafile=str(cert))

    with _serving("127.0.0.1", wrap=server_tls) as (port, seen):
        client = OutboundClient(LOOPBACK, resolver=lambda host, _: ["127.0.0.1"], verify=trust)
        answer = client.get(f"https://hooks.example:{port}/")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|IP address mismatch"):
            client.get(f"https://127.0.0.1:{port}/")  # the certificate names hooks.example, not the address
        # Another name at the same address gets a connection (and a check) of its own, not the
        # kept-alive one that was checked for hooks.example.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|mismatch"):
            client.get(f"https://other.example:{port}/")
        client.close()

    assert answer.text == f"host=hooks.example:{port}"
    assert names[0] == "hooks.example" and seen == [("/", f"hooks.example:{port}")]
