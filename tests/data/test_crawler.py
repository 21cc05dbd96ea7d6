"""The crawler against a real local HTTP server: host, robots.txt, loops, limits, main text, the job;
and the outbound policy: internal addresses refused, before anything is fetched or stored.

Loopback is refused to outbound requests by default (issue 15 item 6): the crawls of the
site on 127.0.0.1 here run with ``outbound_allow`` = 127.0.0.1 (``LOOPBACK``, ``open_ctx``).
"""

from __future__ import annotations

import dataclasses
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput, OutboundRefused
from chainkeeper.core.jobs import get_job, list_jobs
from chainkeeper.core.outbound import OutboundClient, OutboundPolicy
from chainkeeper.core.worker import Worker
from chainkeeper.data.crawler import canonical_url, crawl, crawl_site, crawl_to_source, extract_main_text
from chainkeeper.data.sources import count_sources, read_source_rows
from chainkeeper.governance.actors import Actor

STEWARD = Actor(name="dana", roles=frozenset({"data_steward"}))
LOOPBACK = OutboundPolicy.of(allow=["127.0.0.1"])

PAGES = {
    "/robots.txt": ("text/plain", "User-agent: *\nDisallow: /private/\n"),
    "/": ("text/html", """<html><head><title>Home</title><script>var x = 'tracking';</script></head><body>
        <header>Site header</header><nav><a href="/a">Menu A</a></nav>
        <h1>Welcome</h1><p>The home page of the test site.</p>
        <a href="/a">a</a> <a href="b#part">b</a> <a href="/private/secret.html">secret</a>
        <a href="http://offsite.invalid/page">elsewhere</a> <a href="mailto:x@y.z">mail</a>
        <footer>Copyright footer</footer></body></html>"""),
    "/a": ("text/html", '<p>Page A talks about cards.</p><a href="/">home</a><a href="/a#again">self</a>'
                        '<a href="/c">c</a><a href="/missing">gone</a>'),
    "/b": ("text/html", '<aside>Related links</aside><ul><li>Item one</li><li>Item two</li></ul><a href="/b">b</a>'),
    "/c": ("text/html", '<p>Deep page C.</p><a href="/d">d</a>'),
    "/d": ("text/html", "<p>Deeper page D.</p>"),
    "/private/secret.html": ("text/html", "<p>Secret.</p>"),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    requested: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.requested.append(self.path)
        page = PAGES.get(self.path)
        if page is None:
            self.send_error(404)
            return
        body = page[1].encode()
        self.send_response(200)
        self.send_header("Content-Type", f"{page[0]}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def _serve(address: str, handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def site() -> Iterator[tuple[str, list[str]]]:
    requested: list[str] = []
    for port in _serve("127.0.0.1", type("Handler", (_Handler,), {"requested": requested})):
        yield f"http://127.0.0.1:{port}/", requested


@pytest.fixture
def open_ctx(ctx: Context) -> Context:
    """The test's stores, with settings that let the crawler reach the site on 127.0.0.1."""
    return dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"outbound_allow": ["127.0.0.1"]}))


def test_main_text_drops_chrome_and_scripts_and_keeps_headings_and_paragraphs() -> None:
    title, text, links = extract_main_text(PAGES["/"][1])

    assert title == "Home"
    assert text == "Welcome\n\nThe home page of the test site."
    assert links[:2] == ["/a", "/a"] and "mailto:x@y.z" in links


def test_canonical_urls_drop_fragments_and_default_ports() -> None:
    assert canonical_url("b#part", "HTTP://Example.org:80/x/") == "http://example.org/x/b"
    assert canonical_url("https://example.org") == "https://example.org/"
    assert canonical_url("mailto:a@b.c") is None


def test_crawl_stays_on_host_obeys_robots_and_cuts_loops(site: tuple[str, list[str]]) -> None:
    base, requested = site

    result = crawl_site(base, max_depth=3, max_pages=20, rate_per_s=200, policy=LOOPBACK)

    assert [p.url.removeprefix(base.rstrip("/")) for p in result.pages] == ["/", "/a", "/b", "/c", "/d"]
    assert result.skipped[base + "private/secret.html"] == "robots.txt"
    assert result.skipped["http://offsite.invalid/page"] == "off-host"
    assert result.skipped[base + "missing"] == "HTTP 404"
    assert "/private/secret.html" not in requested
    assert sorted(p for p in requested if p != "/robots.txt") == ["/", "/a", "/b", "/c", "/d", "/missing"]
    assert requested.count("/") == 1  # the loops back home were not followed


def test_depth_and_page_limits_stop_the_crawl(site: tuple[str, list[str]]) -> None:
    base, _ = site

    shallow = crawl_site(base, max_depth=1, max_pages=20, rate_per_s=200, policy=LOOPBACK)
    few = crawl_site(base, max_depth=3, max_pages=2, rate_per_s=200, policy=LOOPBACK)

    assert {p.url.removeprefix(base.rstrip("/")) for p in shallow.pages} == {"/", "/a", "/b"}
    assert len(few.pages) == 2 and few.stopped_by == "max_pages"


def test_rate_limit_spaces_the_requests(site: tuple[str, list[str]]) -> None:
    base, requested = site
    started = time.monotonic()

    crawl_site(base, max_depth=0, max_pages=5, rate_per_s=5, policy=LOOPBACK)

    assert len(requested) == 2 and time.monotonic() - started >= 0.19  # robots.txt + one page at 5/s


def test_pages_are_stored_as_a_source_with_their_urls_as_origin(open_ctx: Context,
                                                                   site: tuple[str, list[str]]) -> None:
    base, _ = site
    ctx = open_ctx

    source, _ = crawl_to_source(ctx, base, actor=STEWARD, max_depth=1, rate_per_s=200)

    assert (source.kind, source.format, source.uri, source.rows_accepted) == ("crawl", "crawl", base, 3)
    rows = read_source_rows(ctx, source.id, include_quarantined=True).to_pylist()
    assert [r["origin"] for r in rows] == [base, base + "a", base + "b"]
    assert rows[2]["text"] == "Item one\n\nItem two"


def test_unreachable_start_url_is_a_clear_error_and_stores_nothing(open_ctx: Context) -> None:
    ctx = open_ctx
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    with pytest.raises(InvalidInput, match=f"Cannot reach http://127.0.0.1:{port}"):
        crawl_to_source(ctx, f"http://127.0.0.1:{port}/", actor=STEWARD, rate_per_s=200)
    with pytest.raises(InvalidInput, match="not an http"):
        crawl(ctx, "ftp://127.0.0.1/", actor=STEWARD)
    assert count_sources(ctx.db) == 0


def test_crawl_job_runs_on_a_worker_and_records_the_source(open_ctx: Context, site: tuple[str, list[str]],
                                                           tmp_path: Path) -> None:
    base, _ = site
    ctx = open_ctx
    job = crawl(ctx, base, actor=STEWARD, max_depth=2, max_pages=10, rate_per_s=200)

    Worker(ctx, worker_id="w-test").run_one()

    done = get_job(ctx.db, job.id)
    assert done.state == "succeeded", done.error
    assert done.result is not None and done.result["pages"] == 4 and done.result["source_id"] >= 1
    assert count_sources(ctx.db) == 1


# --- the outbound policy (issue 15 item 6) -------------------------------------------------


def _to_loopback(host: str, port: int) -> list[str]:
    """A resolver (a plain function) for which every name is 127.0.0.1, as a hostile DNS answer would be."""
    return ["127.0.0.1"]


@pytest.mark.parametrize("start", [
    pytest.param("http://127.0.0.1:{port}/", id="loopback"),
    pytest.param("http://localhost:{port}/", id="localhost"),
    pytest.param("http://[::1]:{port}/", id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/", id="ipv4-mapped-ipv6"),
    pytest.param("http://2130706433:{port}/", id="loopback-as-a-number"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="cloud-metadata"),
])
def test_a_crawl_of_an_internal_address_is_refused_and_stores_nothing(ctx: Context, site: tuple[str, list[str]],
                                                                      start: str) -> None:
    base, requested = site
    url = start.format(port=base.rsplit(":", 1)[1].rstrip("/"))

    with pytest.raises(OutboundRefused) as refused:
        crawl_to_source(ctx, url, actor=STEWARD, rate_per_s=200)
    with pytest.raises(OutboundRefused):
        crawl(ctx, url, actor=STEWARD)  # refused when asked, before a job is queued

    assert "Refused to connect to" in refused.value.message
    assert "refused by default" in refused.value.message and "outbound_allow" in (refused.value.hint or "")
    assert requested == [] and count_sources(ctx.db) == 0 and list_jobs(ctx.db) == []


def test_a_name_that_resolves_to_loopback_is_refused(ctx: Context, site: tuple[str, list[str]]) -> None:
    base, requested = site
    port = base.rsplit(":", 1)[1].rstrip("/")
    client = OutboundClient(OutboundPolicy.from_settings(ctx.settings), resolver=_to_loopback)

    with pytest.raises(OutboundRefused, match=r"intranet\.example resolves to 127\.0\.0\.1.*loopback"):
        crawl_to_source(ctx, f"http://intranet.example:{port}/", actor=STEWARD, rate_per_s=200, client=client)

    assert requested == [] and count_sources(ctx.db) == 0


def test_the_worker_refuses_what_its_settings_refuse(open_ctx: Context, ctx: Context,
                                                     site: tuple[str, list[str]]) -> None:
    base, requested = site
    job = crawl(open_ctx, base, actor=STEWARD, rate_per_s=200)  # queued where loopback was allowed

    Worker(ctx, worker_id="w-strict").run_one()  # a worker whose settings refuse it

    done = get_job(ctx.db, job.id)
    assert done.state == "failed" and "Refused to connect to 127.0.0.1" in (done.error or "")
    assert requested == [] and count_sources(ctx.db) == 0


@pytest.fixture
def second_loopback() -> str:
    """127.0.0.2, a loopback address of its own: allowing it alone lets a test reach one
    server while 127.0.0.1 stays refused."""
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address on this host")
    return "127.0.0.2"


def test_a_redirect_from_an_allowed_site_to_loopback_is_refused_at_the_hop(
        ctx: Context, site: tuple[str, list[str]], second_loopback: str) -> None:
    """A public-looking site (allowed: a name resolving to 127.0.0.2, named in outbound_allow)
    redirects to the secret site on 127.0.0.1: the hop is checked again and refused."""
    secret_base, secret_requested = site
    front_requested: list[str] = []

    class Front(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            front_requested.append(self.path)
            if self.path == "/robots.txt":
                self.send_error(404)
                return
            self.send_response(302)
            self.send_header("Location", secret_base + "private/secret.html")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    policy = OutboundPolicy.of(allow=["www.public.example"])
    for port in _serve(second_loopback, Front):
        client = OutboundClient(policy, resolver=lambda host, _: [second_loopback] if host == "www.public.example"
                                else ["127.0.0.1"])
        start = f"http://www.public.example:{port}/"

        with pytest.raises(InvalidInput, match="found no pages"):
            crawl_to_source(ctx, start, actor=STEWARD, rate_per_s=200, same_host=False, client=client)
        result = crawl_site(start, rate_per_s=200, same_host=False, client=client)
        with pytest.raises(OutboundRefused, match="127.0.0.1.*loopback"):
            client.get(start, follow_redirects=True)

    assert front_requested.count("/") == 3  # the first hop was reached each time ...
    assert secret_requested == []  # ... the second never
    target = secret_base + "private/secret.html"
    assert result.skipped[start] == f"redirect to {target}"
    assert result.skipped[target].startswith("refused: Refused to connect to 127.0.0.1")
    assert count_sources(ctx.db) == 0
