"""The crawler against a real local HTTP server: host, robots.txt, loops, limits, main text, the job."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import get_job
from chainkeeper.core.worker import Worker
from chainkeeper.data.crawler import canonical_url, crawl, crawl_site, crawl_to_source, extract_main_text
from chainkeeper.data.sources import count_sources, read_source_rows
from chainkeeper.governance.actors import Actor

STEWARD = Actor(name="dana", roles=frozenset({"data_steward"}))

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


@pytest.fixture
def site() -> Iterator[tuple[str, list[str]]]:
    requested: list[str] = []
    handler = type("Handler", (_Handler,), {"requested": requested})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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

    result = crawl_site(base, max_depth=3, max_pages=20, rate_per_s=200)

    assert [p.url.removeprefix(base.rstrip("/")) for p in result.pages] == ["/", "/a", "/b", "/c", "/d"]
    assert result.skipped[base + "private/secret.html"] == "robots.txt"
    assert result.skipped["http://offsite.invalid/page"] == "off-host"
    assert result.skipped[base + "missing"] == "HTTP 404"
    assert "/private/secret.html" not in requested
    assert sorted(p for p in requested if p != "/robots.txt") == ["/", "/a", "/b", "/c", "/d", "/missing"]
    assert requested.count("/") == 1  # the loops back home were not followed


def test_depth_and_page_limits_stop_the_crawl(site: tuple[str, list[str]]) -> None:
    base, _ = site

    shallow = crawl_site(base, max_depth=1, max_pages=20, rate_per_s=200)
    few = crawl_site(base, max_depth=3, max_pages=2, rate_per_s=200)

    assert {p.url.removeprefix(base.rstrip("/")) for p in shallow.pages} == {"/", "/a", "/b"}
    assert len(few.pages) == 2 and few.stopped_by == "max_pages"


def test_rate_limit_spaces_the_requests(site: tuple[str, list[str]]) -> None:
    base, requested = site
    started = time.monotonic()

    crawl_site(base, max_depth=0, max_pages=5, rate_per_s=5)

    assert len(requested) == 2 and time.monotonic() - started >= 0.19  # robots.txt + one page at 5/s


def test_pages_are_stored_as_a_source_with_their_urls_as_origin(ctx: Context, site: tuple[str, list[str]]) -> None:
    base, _ = site

    source, _ = crawl_to_source(ctx, base, actor=STEWARD, max_depth=1, rate_per_s=200)

    assert (source.kind, source.format, source.uri, source.rows_accepted) == ("crawl", "crawl", base, 3)
    rows = read_source_rows(ctx, source.id, include_quarantined=True).to_pylist()
    assert [r["origin"] for r in rows] == [base, base + "a", base + "b"]
    assert rows[2]["text"] == "Item one\n\nItem two"


def test_unreachable_start_url_is_a_clear_error_and_stores_nothing(ctx: Context) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    with pytest.raises(InvalidInput, match=f"Cannot reach http://127.0.0.1:{port}"):
        crawl_to_source(ctx, f"http://127.0.0.1:{port}/", actor=STEWARD, rate_per_s=200)
    with pytest.raises(InvalidInput, match="not an http"):
        crawl(ctx, "ftp://127.0.0.1/", actor=STEWARD)
    assert count_sources(ctx.db) == 0


def test_crawl_job_runs_on_a_worker_and_records_the_source(ctx: Context, site: tuple[str, list[str]],
                                                           tmp_path: Path) -> None:
    base, _ = site
    job = crawl(ctx, base, actor=STEWARD, max_depth=2, max_pages=10, rate_per_s=200)

    Worker(ctx, worker_id="w-test").run_one()

    done = get_job(ctx.db, job.id)
    assert done.state == "succeeded", done.error
    assert done.result is not None and done.result["pages"] == 4 and done.result["source_id"] >= 1
    assert count_sources(ctx.db) == 1
