"""Outbound HTTP to addresses someone else chose, with an SSRF guard.

Feed and CAP URLs, webhook URLs, the images an alert points at and the pages behind link cards
are all addresses Clarion did not choose. Fetched naively, a hostile or careless one makes
Clarion read its own network (a database admin page, a router, the cloud metadata service at
169.254.169.254) and, for images, even post what it read in public.

The guard works at connect time, after DNS resolution: the host name is resolved once, every
address it resolves to is checked, and the connection is made to the checked address itself
(TLS still verifies the host name). A name that resolves to a public address when checked and
a private one a moment later (DNS rebinding) cannot slip through, and each redirect is a new
connection, checked the same way. Only globally routable addresses pass, unless a network is
listed in `clarion.allow_networks` (an internal CAP server, a webhook receiver on the LAN).
Environment proxies are not used for guarded clients: a proxy would connect on our behalf,
unchecked.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class BlockedAddress(httpcore.ConnectError):
    """A connection refused by the guard (httpx reports it as a ConnectError)."""


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_networks(values: Iterable[str]) -> list[Network]:
    """CIDR strings ("10.0.0.0/8", "127.0.0.1") as networks; ValueError names a bad one."""
    out: list[Network] = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP network such as 10.0.0.0/8") from None
    return out


NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and reaches (mapped, 6to4, NAT64, the
    deprecated IPv4-compatible form), if any: where a connection to it really goes."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1
    if ip.sixtofour is not None:
        return ip.sixtofour  # 2002:7f00:1::
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)  # 64:ff9b::7f00:1, ::7f00:1
    return None


def permitted(address: str, allow: Sequence[Network] = ()) -> bool:
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if any(ip in net for net in allow):
        return True
    if isinstance(ip, ipaddress.IPv6Address) and (inner := embedded_ipv4(ip)) is not None:
        # The IPv4 address inside decides, both ways: 64:ff9b::a9fe:a9fe is the cloud
        # metadata service behind a NAT64 gateway.
        return permitted(str(inner), allow)
    # IANA's special-purpose registries decide (private, loopback, link-local (cloud
    # metadata), CGNAT, reserved, documentation, deprecated site-local, local-use NAT64…), and
    # only 2000::/3 is global unicast IPv6: `clarion.special_addresses`.
    from clarion.special_addresses import globally_reachable

    return globally_reachable(ip)


class BadAddress(ValueError):
    """An address the HTTP client cannot read (`0177.0.0.1`, a malformed host)."""


class TooLarge(ValueError):
    """An answer larger than allowed, counted after decompression."""


class Bounded:
    """A whole answer read under a byte and a time budget (what `bounded_get` returns)."""

    def __init__(self, status_code: int, headers: httpx.Headers, content: bytes, url: str) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.url = url

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        from clarion import safejson

        return safejson.loads(self.content)


def read_limited(resp: httpx.Response, *, max_bytes: int, deadline: float, what: str) -> bytes:
    """A streamed answer's body, decoded as it arrives (`clarion.decoding`: at most 64 KiB
    made at a time, whatever the encoding), refused once more than `max_bytes` decoded bytes
    have come (TooLarge) or past `deadline` (httpx.ReadTimeout, a server dripping a byte at a
    time defeats per-read timeouts). DecodingError for a body that does not decode."""
    from clarion.decoding import decoded

    chunks: list[bytes] = []
    size = 0
    if resp.is_stream_consumed:  # an answer made in memory (a replay's transport): no stream
        source = iter([resp.content])
        encoding = None  # httpx has decoded it already
    else:
        source, encoding = resp.iter_raw(), resp.headers.get("content-encoding")
    for chunk in decoded(source, encoding):
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"{what} sent more than {max_bytes:,} bytes")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout(f"{what} took longer to answer than allowed")
        chunks.append(chunk)
    return b"".join(chunks)


def bounded_get(
    http: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> Bounded:
    """GET `url`, reading at most `max_bytes` of the *decoded* body (a 8 KiB zstd answer may
    inflate to gigabytes) and for at most `seconds` in all. TooLarge, DecodingError or
    httpx.TimeoutException otherwise."""
    from clarion.decoding import ACCEPT_ENCODING

    deadline = time.monotonic() + seconds
    asked = {"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:  # not an HTTPError: callers catch ValueError for it
        raise BadAddress(f"{url[:200]} is not an address that can be fetched: {exc}") from None
    with http.stream("GET", url, headers=asked) as resp:
        body = read_limited(resp, max_bytes=max_bytes, deadline=deadline, what=url)
        return Bounded(resp.status_code, resp.headers, body, str(resp.url))


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, allow: Sequence[Network], resolver: Resolver) -> None:
        self.allow = list(allow)
        self.resolver = resolver
        self.inner = httpcore.SyncBackend()  # public since httpcore 1.0

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        refused = [a for a in addresses if not permitted(a, self.allow)]
        if refused or not addresses:
            raise BlockedAddress(
                f"refused to connect to {host} ({', '.join(refused) or 'no address'}): a private, "
                "loopback, link-local or otherwise non-public address; list its network in "
                "clarion.allow_networks if it is meant to be reached"
            )
        last: Exception | None = None
        for address in addresses:  # connect to the address checked, never a fresh lookup
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise BlockedAddress("unix sockets are not reachable through the guard")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    def __init__(
        self, allow: Sequence[Network] = (), resolver: Resolver = resolve, **kwargs: Any
    ) -> None:
        super().__init__(trust_env=False, **kwargs)
        limits = kwargs.get("limits", httpx.Limits(max_connections=20))
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allow, resolver),
        )


def guarded_client(
    allow: Sequence[Network] = (),
    *,
    resolver: Resolver = resolve,
    **kwargs: Any,
) -> httpx.Client:
    """An httpx client whose every connection (and every redirect) passes the guard."""
    return httpx.Client(transport=GuardedTransport(allow, resolver), trust_env=False, **kwargs)
