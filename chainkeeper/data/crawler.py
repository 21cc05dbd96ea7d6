"""A polite web crawler: one host, robots.txt obeyed, depth/page/rate limits, main text only.

``crawl`` queues a job of kind "crawl"; the worker runs ``run_crawl_job``, which walks
the site breadth-first with ``crawl_site`` and stores every page as one row of a source
(origin = the page's URL) through ``ingest.store_records``. ``crawl_to_source`` does the
same in the caller's process (the CLI and tests use it).

Loops are cut by a visited set of canonical URLs (fragment dropped, scheme and host
lower-cased, default port dropped). The text of a page is extracted by
``extract_main_text``: a small readability-style pass with ``html.parser`` that drops
script/style/nav/header/footer/aside/form and keeps headings, paragraphs, list items
and preformatted blocks.

Every request goes through the outbound client (``core.outbound``): a start URL or a link
whose host resolves to a private, loopback or link-local address is refused unless
``outbound_allow`` names it — a refused start URL is an error before anything is stored,
a refused link or redirect target is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import time
import urllib.robotparser
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import httpx

from chainkeeper.core.errors import InvalidInput, OutboundRefused
from chainkeeper.core.jobs import Job, JobHandle, submit_job
from chainkeeper.core.outbound import OutboundClient, OutboundPolicy, refuse_if_blocked
from chainkeeper.data.connectors import ParsedSource, Record
from chainkeeper.data.sources import Source
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["crawl", "crawl_to_source", "crawl_site", "extract_main_text", "canonical_url", "run_crawl_job",
           "CrawlResult", "Page"]

USER_AGENT = "chainkeeper-crawler/1"
# Elements whose text is never the page's content (menus, chrome, code).
_SKIP = {"script", "style", "nav", "footer", "header", "aside", "form", "noscript", "template", "svg", "iframe"}
# Elements whose text is content; each becomes one paragraph of the extracted text.
_BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "pre", "blockquote", "td", "th", "dd", "dt", "figcaption"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_TIMEOUT_S = 10.0
MAX_PAGE_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Page:
    """One fetched page: its canonical URL, depth from the start, title and main text."""

    url: str
    depth: int
    title: str
    text: str


@dataclass(frozen=True)
class CrawlResult:
    """What a crawl saw: pages kept, and URLs skipped with why (robots, off-host, errors)."""

    pages: list[Page] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    stopped_by: str = "done"


def canonical_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of a link (pure): absolute, no fragment, lower-case scheme/host, no default port.

    Args:
        url: the link as written.
        base: the page it was found on, to resolve relative links.

    Returns:
        The canonical URL, or None for links that are not http(s) (mailto:, javascript:, ...).
    """
    absolute = urljoin(base, url.strip()) if base else url.strip()
    absolute, _ = urldefrag(absolute)
    parts = urlsplit(absolute)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address keeps its brackets
    try:
        port = parts.port
    except ValueError:  # a port that is not a number (or out of range)
        return None
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_depth = 0
        self.block_depth = 0
        self.in_title = False
        self.title: list[str] = []
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br" and self.block_depth:
                self.current.append(" ")
            return
        if tag in _SKIP:
            self.skip_depth += 1
        elif tag == "title":
            self.in_title = True
        elif tag in _BLOCKS:
            self._flush()
            self.block_depth += 1
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self.skip_depth:
            self.skip_depth -= 1
        elif tag == "title":
            self.in_title = False
        elif tag in _BLOCKS and self.block_depth:
            self.block_depth -= 1
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.skip_depth and self.block_depth:
            self.current.append(data)

    def _flush(self) -> None:
        text = " ".join("".join(self.current).split())
        if text:
            self.blocks.append(text)
        self.current = []


def extract_main_text(html: str) -> tuple[str, str, list[str]]:
    """The title, main text and links of an HTML page (pure).

    Args:
        html: the page's markup.

    Returns:
        (title, text, hrefs): text is one paragraph per heading/paragraph/list item,
        separated by blank lines; hrefs are the links as written, in page order.
    """
    parser = _Extractor()
    parser.feed(html)
    parser.close()
    parser._flush()
    return " ".join("".join(parser.title).split()), "\n\n".join(parser.blocks), parser.links


def crawl_site(start_url: str, *, max_depth: int = 2, max_pages: int = 50, rate_per_s: float = 2.0,
               same_host: bool = True, policy: OutboundPolicy | None = None, client: OutboundClient | None = None,
               on_page: Callable[[Page, int], None] | None = None,
               check_cancelled: Callable[[], None] | None = None) -> CrawlResult:
    """Walk a site breadth-first from ``start_url`` and return its pages' main text.

    Args:
        start_url: where to start (http or https).
        max_depth: follow links at most this many hops from the start page.
        max_pages: stop after this many pages.
        rate_per_s: at most this many requests per second (robots.txt included).
        same_host: follow links only to the start page's host (and port).
        policy: where requests may go (default: public addresses only); ``OutboundPolicy.from_settings``.
        client: the outbound client (one with ``policy``, timeouts and the page size limit is made when None).
        on_page: called with each page kept and the count so far (progress).
        check_cancelled: called between requests; raises to stop.

    Returns:
        The pages, and the URLs skipped with the reason.

    Raises:
        InvalidInput: a bad start URL, bad limits, or the start page cannot be fetched.
        OutboundRefused: the start URL's address is refused by the policy.
    """
    start = canonical_url(start_url)
    if start is None:
        raise InvalidInput(f"{start_url!r} is not an http(s) URL.", hint="Pass a URL such as https://example.org/.")
    if max_depth < 0 or max_pages < 1 or rate_per_s <= 0:
        raise InvalidInput(f"Bad crawl limits: max_depth={max_depth}, max_pages={max_pages}, rate_per_s={rate_per_s}.",
                           hint="Use max_depth >= 0, max_pages >= 1 and rate_per_s > 0.")
    own_client = client is None
    http = client or OutboundClient(policy, timeout_s=_TIMEOUT_S, max_bytes=MAX_PAGE_BYTES, user_agent=USER_AGENT)
    host = urlsplit(start).netloc
    interval = 1.0 / rate_per_s
    last_request = [0.0]

    def get(url: str) -> httpx.Response:
        wait = last_request[0] + interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last_request[0] = time.monotonic()
        return http.get(url)

    try:
        robots = _robots(get, start)
        pages: list[Page] = []
        skipped: dict[str, str] = {}
        visited = {start}
        queue: deque[tuple[str, int]] = deque([(start, 0)])
        stopped_by = "done"
        while queue:
            if len(pages) >= max_pages:
                stopped_by = "max_pages"
                break
            if check_cancelled is not None:
                check_cancelled()
            url, depth = queue.popleft()
            if not robots.can_fetch(USER_AGENT, url):
                skipped[url] = "robots.txt"
                continue
            try:
                response = get(url)
            except OutboundRefused as exc:
                if url == start:
                    raise
                skipped[url] = f"refused: {exc.message}"
                continue
            except httpx.HTTPError as exc:
                if url == start:
                    raise InvalidInput(f"Cannot reach {start}: {type(exc).__name__}: {exc}.",
                                       hint="Check the URL and that the site is up and reachable from here.") from None
                skipped[url] = f"error: {type(exc).__name__}"
                continue
            if response.is_redirect and "location" in response.headers:
                target = canonical_url(response.headers["location"], url)
                skipped[url] = f"redirect to {target}"
                if target and target not in visited and (not same_host or urlsplit(target).netloc == host):
                    visited.add(target)
                    queue.append((target, depth))
                continue
            if response.status_code >= 400:
                if url == start:
                    raise InvalidInput(f"Cannot crawl {start}: the server answered HTTP {response.status_code}.",
                                       hint="Check the URL.")
                skipped[url] = f"HTTP {response.status_code}"
                continue
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in ("text/html", "application/xhtml+xml", "text/plain") or \
                    len(response.content) > MAX_PAGE_BYTES:
                skipped[url] = f"not a page ({kind or 'no content type'})"
                continue
            links: list[str]
            if kind == "text/plain":
                title, text, links = "", response.text.strip(), []
            else:
                title, text, links = extract_main_text(response.text)
            page = Page(url=url, depth=depth, title=title, text=text)
            pages.append(page)
            if on_page is not None:
                on_page(page, len(pages))
            if depth >= max_depth:
                continue
            for href in links:
                link = canonical_url(href, url)
                if link is None or link in visited:
                    continue
                visited.add(link)  # loops end here: a URL is queued once
                if same_host and urlsplit(link).netloc != host:
                    skipped[link] = "off-host"
                    continue
                queue.append((link, depth + 1))
        return CrawlResult(pages=pages, skipped=skipped, stopped_by=stopped_by)
    finally:
        if own_client:
            http.close()


def _robots(get: Callable[[str], httpx.Response], start: str) -> urllib.robotparser.RobotFileParser:
    parts = urlsplit(start)
    robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
    parser = urllib.robotparser.RobotFileParser(robots_url)
    try:
        response = get(robots_url)
    except httpx.HTTPError as exc:
        raise InvalidInput(f"Cannot reach {parts.scheme}://{parts.netloc}: {type(exc).__name__}: {exc}.",
                           hint="Check the URL and that the site is up and reachable from here.") from None
    if response.status_code in (401, 403):
        # What robotparser.read() does: the site forbids crawling (typeshed leaves the attribute out).
        parser.disallow_all = True  # type: ignore[attr-defined]
    elif response.status_code < 400:
        parser.parse(response.text.splitlines())
    else:
        # No robots.txt: everything is allowed (typeshed leaves the attribute out).
        parser.allow_all = True  # type: ignore[attr-defined]
    return parser


def _validate(start_url: str, max_depth: int, max_pages: int, rate_per_s: float) -> None:
    if canonical_url(start_url) is None:
        raise InvalidInput(f"{start_url!r} is not an http(s) URL.", hint="Pass a URL such as https://example.org/.")
    if max_depth < 0 or max_pages < 1 or rate_per_s <= 0:
        raise InvalidInput(f"Bad crawl limits: max_depth={max_depth}, max_pages={max_pages}, rate_per_s={rate_per_s}.",
                           hint="Use max_depth >= 0, max_pages >= 1 and rate_per_s > 0.")


def crawl(ctx: Context, start_url: str, *, actor: Actor, max_depth: int = 2, max_pages: int = 50,
          rate_per_s: float = 2.0, same_host: bool = True) -> Job:
    """Queue a crawl of ``start_url`` as a job of kind "crawl"; the worker stores the pages as a source.

    Args:
        ctx: the stores.
        start_url: where to start.
        actor: who asks (``data.import`` from a global role, as ``import_file``; the job's
            creator, and the source is recorded for them).
        max_depth, max_pages, rate_per_s, same_host: the limits (see ``crawl_site``).

    Returns:
        The queued job.

    Raises:
        Forbidden: the actor may not import. InvalidInput: a bad URL or bad limits
            (nothing is queued). OutboundRefused: the start URL's address is refused by
            the outbound policy of these settings (the worker's settings check it again).
    """
    authorize(ctx.db, actor, "data.import")
    _validate(start_url, max_depth, max_pages, rate_per_s)
    refuse_if_blocked(start_url, OutboundPolicy.from_settings(ctx.settings))
    params = {"start_url": start_url, "max_depth": max_depth, "max_pages": max_pages, "rate_per_s": rate_per_s,
              "same_host": same_host}
    return submit_job(ctx, "crawl", params, actor=actor.name)


def crawl_to_source(ctx: Context, start_url: str, *, actor: Actor, max_depth: int = 2, max_pages: int = 50,
                    rate_per_s: float = 2.0, same_host: bool = True, client: OutboundClient | None = None,
                    on_page: Callable[[Page, int], None] | None = None,
                    check_cancelled: Callable[[], None] | None = None) -> tuple[Source, CrawlResult]:
    """Crawl a site now and store its pages as one source (kind "crawl", origin = each page's URL).

    ``actor`` needs ``data.import`` (see ``crawl``); the other arguments are ``crawl_site``'s.

    Returns:
        The recorded source and what the crawl saw.

    Raises:
        Forbidden: the actor may not import. InvalidInput: a bad URL or limits, an
            unreachable start page, or no page with text. OutboundRefused: the start
            URL's address is refused by the outbound policy (``ctx.settings``). Nothing
            is stored on any error.
    """
    authorize(ctx.db, actor, "data.import")
    return _crawl_and_store(ctx, start_url, actor=actor, max_depth=max_depth, max_pages=max_pages,
                            rate_per_s=rate_per_s, same_host=same_host, client=client, on_page=on_page,
                            check_cancelled=check_cancelled)


def _crawl_and_store(ctx: Context, start_url: str, *, actor: Actor, max_depth: int, max_pages: int,
                     rate_per_s: float, same_host: bool, client: OutboundClient | None = None,
                     on_page: Callable[[Page, int], None] | None = None,
                     check_cancelled: Callable[[], None] | None = None) -> tuple[Source, CrawlResult]:
    from chainkeeper.data.ingest import (
        store_records,  # ingest imports pyarrow; keep this module light
    )

    _validate(start_url, max_depth, max_pages, rate_per_s)
    result = crawl_site(start_url, max_depth=max_depth, max_pages=max_pages, rate_per_s=rate_per_s,
                        same_host=same_host, policy=OutboundPolicy.from_settings(ctx.settings), client=client,
                        on_page=on_page, check_cancelled=check_cancelled)
    records = [Record(text=p.text, label=None, line=p.depth, origin=p.url,
                      quarantine_reason=None if p.text.strip() else "empty_text") for p in result.pages]
    digest = hashlib.sha256()
    for p in result.pages:
        digest.update(p.url.encode() + b"\0" + p.text.encode() + b"\0")
    parsed = ParsedSource(format="crawl", encoding="utf-8", records=records,
                          options={"max_depth": max_depth, "max_pages": max_pages, "rate_per_s": rate_per_s,
                                   "same_host": same_host, "stopped_by": result.stopped_by,
                                   "skipped": dict(list(result.skipped.items())[:200])})
    if not records:
        raise InvalidInput(f"The crawl of {start_url} found no pages ({len(result.skipped)} URLs skipped).",
                           hint="Check robots.txt and the start URL.")
    source = store_records(ctx, parsed, uri=canonical_url(start_url) or start_url, sha256=digest.hexdigest(),
                           actor=actor, kind="crawl", schema={"text": "text", "label": None})
    return source, result


def run_crawl_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Job handler for kind "crawl": params start_url, max_depth, max_pages, rate_per_s, same_host.

    ``crawl`` authorised the job's creator when it queued the job; the source is theirs.
    """
    params = job.params
    if "start_url" not in params:
        raise InvalidInput("The crawl job has no start_url.", hint='Submit {"start_url": "https://..."}.')
    actor = Actor(job.job.created_by)
    max_pages = int(params.get("max_pages", 50))

    def on_page(page: Page, count: int) -> None:
        job.progress(min(99.0, 100.0 * count / max_pages), f"{count} pages")
        job.log(f"fetched {page.url} (depth {page.depth}, {len(page.text)} chars)")

    source, result = _crawl_and_store(
        ctx, str(params["start_url"]), actor=actor, max_depth=int(params.get("max_depth", 2)), max_pages=max_pages,
        rate_per_s=float(params.get("rate_per_s", 2.0)), same_host=bool(params.get("same_host", True)),
        on_page=on_page, check_cancelled=job.check_cancelled)
    return {"source_id": source.id, "pages": len(result.pages), "skipped": len(result.skipped),
            "stopped_by": result.stopped_by}
