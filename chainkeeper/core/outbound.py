"""Outbound HTTP: the one client for every request Chainkeeper sends to an address a user chose.

The crawler and alert webhooks fetch URLs that users type; without a policy they reach
whatever the server can reach — its own loopback services, the private network, the
cloud metadata address (issue 15 item 6). ``OutboundClient`` sends every such request
through a policy:

- only ``http`` and ``https``;
- the host name is resolved once, **every** address it resolves to is checked, and the
  connection is made to a checked address (the URL is rewritten to the address; the
  ``Host`` header and, for https, the TLS server name and certificate check keep the
  name), so a name that answers differently a moment later (DNS rebinding) cannot slip
  in between the check and the connection;
- private (RFC 1918, unique local), loopback, link-local (169.254.169.254 among them),
  carrier-grade NAT, multicast, unspecified, reserved and documentation addresses, and
  IPv6 forms that embed one of those IPv4 addresses, are refused unless
  ``outbound_allow`` names the address, its network or the host; ``outbound_deny``
  refuses more and wins over ``outbound_allow``;
- redirects are followed by hand (when asked, at most ``max_redirects``), each hop
  checked again like the first;
- the answer is read up to ``max_bytes`` and within ``timeout_s`` in all.

A refusal is an ``OutboundRefused`` naming the address, why it is refused and the
setting that allows it. Environment proxies (``HTTP_PROXY`` …) and ``.netrc`` are not
used: a proxy would connect on our behalf to addresses we did not check.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from chainkeeper.core.errors import ConfigError, OutboundRefused

if TYPE_CHECKING:
    from chainkeeper.core.settings import Settings

__all__ = [
    "DEFAULT_MAX_BYTES",
    "AddressRules",
    "OutboundClient",
    "OutboundPolicy",
    "Resolver",
    "ResponseTooLarge",
    "blocked_reason",
    "checked_addresses",
    "refuse_if_blocked",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses the host resolves to; a plain function, so tests pass their own.
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# Connection pools kept at once by one client (one per host name).
_MAX_POOLS = 8
_SCHEMES = ("http", "https")
_PRIVATE = "a private address (RFC 1918)"
_DOCUMENTATION = "a documentation address (reserved)"

# Refused unless allowed, most specific first; anything else not globally routable is
# refused too (the fallback in ``blocked_reason``).
_BLOCKED: tuple[tuple[IPNetwork, str], ...] = tuple((ipaddress.ip_network(net), why) for net, why in (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", _PRIVATE),
    ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.169.254/32", "the cloud metadata address (link-local)"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", _PRIVATE),
    ("192.0.0.0/24", "an IETF protocol assignment (reserved)"),
    ("192.0.2.0/24", _DOCUMENTATION),
    ("192.88.99.0/24", "a 6to4 relay address (reserved)"),
    ("192.168.0.0/16", _PRIVATE),
    ("198.18.0.0/15", "a benchmarking address (reserved)"),
    ("198.51.100.0/24", _DOCUMENTATION),
    ("203.0.113.0/24", _DOCUMENTATION),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),  # 255.255.255.255 (broadcast) among them
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address (reserved)"),
    ("2001::/32", "a Teredo tunnel address"),
    ("2001:db8::/32", _DOCUMENTATION),
    ("fc00::/7", "a private address (unique local, RFC 4193)"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address (deprecated)"),
    ("ff00::/8", "a multicast address"),
))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped (``::ffff:a.b.c.d``), NAT64
    (``64:ff9b::a.b.c.d``) or 6to4 (``2002:AABB:CCDD::``) (pure)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def blocked_reason(address: IPAddress) -> str | None:
    """Why an address is refused by default, or None for a public one (pure).

    An IPv6 address that carries an IPv4 address is judged by the IPv4 address.
    """
    inner = _embedded_ipv4(address)
    if inner is not None:
        why = blocked_reason(inner)
        return f"{why}, written as IPv6 ({address})" if why else None
    for network, why in _BLOCKED:
        if address in network:
            return why
    if not address.is_global:
        return "not a public (globally routable) address"
    return None


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True)
class AddressRules:
    """A list of addresses, networks and host names (``hooks.internal``; ``*.corp.example``
    for its sub-domains), as ``outbound_allow`` and ``outbound_deny`` hold them."""

    entries: tuple[str, ...] = ()
    networks: tuple[tuple[str, IPNetwork], ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str], setting: str = "outbound_allow") -> AddressRules:
        """Read the entries of one setting.

        Raises:
            ConfigError: an entry that is neither an address, a network nor a host name.
        """
        networks: list[tuple[str, IPNetwork]] = []
        hosts: list[tuple[str, str]] = []
        kept = tuple(e.strip() for e in entries if e.strip())
        for entry in kept:
            try:
                networks.append((entry, ipaddress.ip_network(entry, strict=False)))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or " " in entry:
                raise ConfigError(f"{setting} entry {entry!r} is not an address, a network or a host name.",
                                  hint="Use e.g. 10.0.0.5, 10.0.0.0/8, ::1, hooks.internal or *.corp.example.")
            hosts.append((entry, _normal_host(entry)))
        return cls(entries=kept, networks=tuple(networks), hosts=tuple(hosts))

    def match(self, host: str, address: IPAddress) -> str | None:
        """The entry that covers ``host`` or ``address`` (or the IPv4 address it embeds), if any (pure)."""
        name = _normal_host(host)
        for entry, pattern in self.hosts:
            if pattern.startswith("*."):
                if name.endswith(pattern[1:]):
                    return entry
            elif name == pattern:
                return entry
        inner = _embedded_ipv4(address)
        for entry, network in self.networks:
            if address in network or (inner is not None and inner in network):
                return entry
        return None


@dataclass(frozen=True)
class OutboundPolicy:
    """Where outbound requests may go: public addresses, plus ``allow``, minus ``deny``."""

    allow: AddressRules = AddressRules()
    deny: AddressRules = AddressRules()

    @classmethod
    def of(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> OutboundPolicy:
        """A policy from lists of entries (addresses, networks, host names).

        Raises:
            ConfigError: an entry that cannot be read.
        """
        return cls(allow=AddressRules.parse(allow, "outbound_allow"), deny=AddressRules.parse(deny, "outbound_deny"))

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        """The policy of ``outbound_allow`` and ``outbound_deny``."""
        return cls.of(settings.outbound_allow, settings.outbound_deny)

    def refusal(self, host: str, address: IPAddress) -> tuple[str, str] | None:
        """Why a request to ``host`` may not connect to ``address``, and what to do; None if it may (pure)."""
        denied = self.deny.match(host, address)
        if denied is not None:
            return (f"it is covered by the outbound_deny entry {denied!r}",
                    f"Remove {denied!r} from outbound_deny (CHAINKEEPER_OUTBOUND_DENY) if this destination "
                    "should be reachable.")
        if self.allow.match(host, address) is not None:
            return None
        why = blocked_reason(address)
        if why is None:
            return None
        plain = _embedded_ipv4(address) or address
        example = f"{host} (this host) or {plain} (this address)" if _is_name(host) else str(plain)
        return (f"it is {why}; outbound requests to private, loopback and link-local addresses are refused "
                "by default", f"If this destination is meant to be reachable, add it (or its network) to "
                f"outbound_allow, e.g. CHAINKEEPER_OUTBOUND_ALLOW={example}.")


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        return True


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to for TCP, in the system resolver's order, each once."""
    seen: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP):
        address = str(sockaddr[0]).split("%")[0]  # an IPv6 scope id (fe80::1%eth0) is not part of the address
        if address not in seen:
            seen.append(address)
    return seen


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]  # a literal address is not looked up
    except ValueError:
        pass
    return [ipaddress.ip_address(a) for a in resolver(host, port)]


def _default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _check_scheme(url: httpx.URL) -> None:
    if url.scheme not in _SCHEMES or not url.raw_host:
        raise OutboundRefused(f"Refused {str(url)!r}: only http:// and https:// URLs with a host are fetched.",
                              hint="Use a URL such as https://example.org/.")


def checked_addresses(url: httpx.URL, policy: OutboundPolicy, resolver: Resolver) -> list[IPAddress]:
    """Resolve the URL's host and check every address it resolves to.

    Returns:
        The addresses, all allowed, in the resolver's order.

    Raises:
        OutboundRefused: a scheme other than http(s), or any address the policy refuses.
        httpx.ConnectError: the host does not resolve.
    """
    _check_scheme(url)
    host = url.raw_host.decode("ascii")
    try:
        addresses = _resolve(host, _default_port(url), resolver)
    except (OSError, UnicodeError, ValueError) as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from None
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {host}: no address")
    for address in addresses:
        refused = policy.refusal(host, address)
        if refused is not None:
            why, hint = refused
            seen = "" if not _is_name(host) else f" ({host} resolves to {address})"
            raise OutboundRefused(f"Refused to connect to {address} for {str(url)!r}{seen}: {why}.", hint=hint)
    return addresses


def refuse_if_blocked(url: str, policy: OutboundPolicy, resolver: Resolver = system_resolver) -> None:
    """Check a URL before it is stored or queued (a crawl's start, a webhook), so a refusal
    is told at once; a host that does not resolve now is let through (the request checks again).

    Raises:
        OutboundRefused: a scheme other than http(s), or an address the policy refuses.
    """
    try:
        checked_addresses(httpx.URL(url), policy, resolver)
    except (httpx.ConnectError, httpx.InvalidURL):
        pass


class ResponseTooLarge(httpx.HTTPError):
    """The answer is larger than the client reads (``max_bytes``)."""


class _CheckedTransport(httpx.BaseTransport):
    """Resolves each request's host, checks every address and connects to a checked one.

    Connections are pooled per host name: the pool knows only the address, and a TLS
    connection checked for one name must not carry a request for another name that
    happens to resolve to the same address.
    """

    def __init__(self, policy: OutboundPolicy, resolver: Resolver,
                 make_inner: Callable[[], httpx.BaseTransport]) -> None:
        self._policy, self._resolver, self._make_inner = policy, resolver, make_inner
        self._pools: dict[str, httpx.BaseTransport] = {}

    def _pool(self, host: str) -> httpx.BaseTransport:
        if host not in self._pools:
            if len(self._pools) >= _MAX_POOLS:  # the oldest goes: a crawl stays on one host
                self._pools.pop(next(iter(self._pools))).close()
            self._pools[host] = self._make_inner()
        return self._pools[host]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        addresses = checked_addresses(request.url, self._policy, self._resolver)
        host = request.url.raw_host.decode("ascii")
        # The Host header is already the name (httpx set it from the URL); https checks the
        # certificate against the name given as the TLS server name, not against the address.
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = host
        failure: httpx.ConnectError | None = None
        for address in addresses:  # the next address when one refuses the connection
            pinned = httpx.Request(request.method, request.url.copy_with(host=str(address)),
                                   headers=request.headers, stream=request.stream, extensions=extensions)
            try:
                return self._pool(host).handle_request(pinned)
            except httpx.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class OutboundClient:
    """The HTTP client for user-chosen URLs: the policy above, bounded size and time.

    Args:
        policy: where requests may go (``OutboundPolicy.from_settings``); default public addresses only.
        timeout_s: the most one request (redirects and reading included) may take.
        connect_timeout_s: the most opening one connection may take.
        max_bytes: the largest answer read; a larger one raises ``ResponseTooLarge``.
        max_redirects: redirects followed at most, when a request asks to follow them.
        user_agent: the ``User-Agent`` header.
        resolver: host name to addresses (default the system's; tests pass a plain function).
        verify: check TLS certificates (tests of a local https server may pass an ``ssl.SSLContext``).
    """

    def __init__(self, policy: OutboundPolicy | None = None, *, timeout_s: float = 10.0,
                 connect_timeout_s: float = 5.0, max_bytes: int = DEFAULT_MAX_BYTES, max_redirects: int = 5,
                 user_agent: str = "chainkeeper/1", resolver: Resolver = system_resolver,
                 verify: bool | ssl.SSLContext = True) -> None:
        self.policy = policy or OutboundPolicy()
        self.timeout_s, self.max_bytes, self.max_redirects = timeout_s, max_bytes, max_redirects
        # One TLS context for every pool (making one reads the CA bundle).
        tls = httpx.create_ssl_context(verify=verify, trust_env=False)

        def pool() -> httpx.BaseTransport:
            return httpx.HTTPTransport(verify=tls, trust_env=False)

        self._http = httpx.Client(
            transport=_CheckedTransport(self.policy, resolver, pool), trust_env=False, follow_redirects=False,
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
            # Ask for the body as it is: a compressed answer could inflate past max_bytes within one chunk.
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"})

    def __enter__(self) -> OutboundClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def get(self, url: str, *, headers: Mapping[str, str] | None = None,
            follow_redirects: bool = False) -> httpx.Response:
        """``request("GET", …)``."""
        return self.request("GET", url, headers=headers, follow_redirects=follow_redirects)

    def post(self, url: str, *, content: bytes, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """``request("POST", …)``; a redirect is answered, not followed."""
        return self.request("POST", url, content=content, headers=headers)

    def request(self, method: str, url: str, *, content: bytes | None = None,
                headers: Mapping[str, str] | None = None, follow_redirects: bool = False) -> httpx.Response:
        """Send one request where the policy allows it and read the answer, bounded.

        Args:
            method: the HTTP method.
            url: an http(s) URL.
            content: the body to send.
            headers: extra request headers.
            follow_redirects: follow redirects of a GET or HEAD (each target checked again),
                at most ``max_redirects``; otherwise a redirect is the answer.

        Returns:
            The answer, read in full (``.content``, ``.text``); ``.url`` is the last URL asked.

        Raises:
            OutboundRefused: a scheme other than http(s), or an address the policy refuses
                (at any hop).
            ResponseTooLarge: an answer over ``max_bytes``.
            httpx.HTTPError: the host does not resolve, the connection fails, a timeout
                (``timeout_s`` in all), too many redirects.
        """
        deadline = time.monotonic() + self.timeout_s
        follow = follow_redirects and method in ("GET", "HEAD")
        target = httpx.URL(url)
        for _hop in range(self.max_redirects + 1):
            _check_scheme(target)  # a redirect may point anywhere
            left = deadline - time.monotonic()
            if left <= 0:
                raise httpx.ReadTimeout(f"{url} took longer than {self.timeout_s:g} s in all")
            request = self._http.build_request(method, target, content=content, headers=headers,
                                               timeout=httpx.Timeout(left, connect=min(left, 5.0)))
            response = self._http.send(request, stream=True)
            try:
                if follow and response.is_redirect and "location" in response.headers:
                    target = target.join(response.headers["location"])
                    continue
                body = self._read(response, deadline)
            finally:
                response.close()
            return httpx.Response(response.status_code, headers=_plain_headers(response.headers), content=body,
                                  request=request)
        raise httpx.TooManyRedirects(f"{url} redirected more than {self.max_redirects} times")

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ResponseTooLarge(f"the answer of {response.url} is {int(declared):,} bytes, more than the "
                                   f"{self.max_bytes:,} read")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise ResponseTooLarge(f"the answer of {response.url} is more than the {self.max_bytes:,} bytes read")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"reading {response.url} took longer than {self.timeout_s:g} s in all")
            chunks.append(chunk)
        return b"".join(chunks)


def _plain_headers(headers: httpx.Headers) -> httpx.Headers:
    """The headers of an answer whose body was already decoded and read (no encoding, no framing)."""
    return httpx.Headers([(k, v) for k, v in headers.multi_items()
                          if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")])
