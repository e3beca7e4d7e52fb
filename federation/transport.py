"""The only network I/O of Steelyard: outbound HTTP with an SSRF guard and hard limits.

Invariants (SECURITY.md §1.3, §1.6, §4):

- Only global unicast addresses are ever connected to (:func:`is_allowed_address`). Host
  names go through :class:`FilteringResolver`, which drops every non-global address that
  the system resolver returned; aiohttp then connects to exactly the address the resolver
  returned, so the vetted IP is pinned (no DNS-rebinding window). aiohttp skips resolvers
  for IP literals, so literals are checked here before the request. Development instances
  (``allow_loopback=True``) may also reach 127.0.0.0/8 and ::1, nothing else.
- Only https; plain http only with ``allow_loopback`` (development). URLs must be ASCII
  (punycode hosts, percent-encoded paths) and are sent byte for byte as given
  (``yarl.URL(..., encoded=True)``), so the ``(request-target)`` we signed is what goes out.
- Redirects are never followed: a 3xx is returned and the caller decides (hops must be
  re-checked for origin, and signed POSTs are never re-sent elsewhere).
- Timeouts: connect 5 s, per-read 10 s and a total deadline of 30 s covering the body,
  so a slowloris response cannot hold a worker (Mastodon CVE-2023-36461). Bodies are
  capped (Content-Length first, then while reading); compression is refused (we ask for
  ``identity``) so the cap counts the bytes we actually hold.
- No cookies are kept, proxies from the environment are ignored, and the session is
  created lazily inside a running loop, never at import.
- Failures surface as :class:`TransportError` with a ``kind``; nothing else escapes
  :meth:`AiohttpTransport.request` for network trouble. The one retry made here: a peer
  that drops the connection before answering (a stale keep-alive) gets the request once
  more at once, within the same deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from federation.hosts import origin_of_url

__all__ = [
    "AiohttpTransport",
    "FilteringResolver",
    "HttpResponse",
    "RefusedAddressError",
    "Transport",
    "TransportError",
    "TransportErrorKind",
    "is_allowed_address",
]

TransportErrorKind = Literal[
    "bad-url",
    "refused-scheme",
    "refused-address",
    "dns",
    "connect",
    "timeout",
    "tls",
    "too-large",
    "protocol",
]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_BYTES = 1_048_576
_CHUNK = 65_536
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# IANA special-purpose ranges that are not globally reachable but that some Python patch
# levels still call is_global (3.11.7: 192.0.0.8; RFC 9637 documentation; RFC 9602 SRv6).
_NOT_GLOBAL = (
    ipaddress.IPv4Network("192.0.0.0/24"),
    ipaddress.IPv6Network("3fff::/20"),
    ipaddress.IPv6Network("5f00::/16"),
)


class TransportError(Exception):
    """A request failed; ``kind`` says how, for retry and host-health decisions."""

    def __init__(
        self, kind: TransportErrorKind, message: str = "", *, status: int | None = None
    ) -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind: TransportErrorKind = kind
        # The status line, when one was received before the failure (a body too large, an
        # encoding we did not ask for): a 2xx was still an answer.
        self.status = status


class RefusedAddressError(OSError):
    """A name resolved only to addresses we refuse; an OSError so aiohttp wraps it as DNS."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response. ``headers`` has lower-case names; repeats are joined by ", "."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        """The value of header *name* (any case), or None."""
        return self.headers.get(name.lower())


class Transport(Protocol):
    """The seam for all outbound HTTP; tests substitute an in-process router."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> HttpResponse: ...


def is_allowed_address(ip: IPAddress, *, allow_loopback: bool) -> bool:
    """True when *ip* may be connected to: global unicast only (plus loopback in dev).

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64) must be acceptable
    both as themselves and for every embedded IPv4 address.
    """
    if allow_loopback and (
        (ip.version == 4 and ip in _LOOPBACK_V4) or (ip.version == 6 and ip == _LOOPBACK_V6)
    ):
        return True
    return all(_is_global_unicast(candidate) for candidate in (ip, *_embedded_ipv4(ip)))


def _is_global_unicast(ip: IPAddress) -> bool:
    # is_global alone is not enough in 3.11: 224.0.0.1 and 64:ff9b::7f00:1 are "global".
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return False
    if ip.is_link_local or ip.is_private or ip.is_loopback:
        return False
    if any(ip.version == net.version and ip in net for net in _NOT_GLOBAL):
        return False
    return not (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


class FilteringResolver(AbstractResolver):
    """Resolves with the system resolver, then keeps only addresses we may connect to."""

    def __init__(self, *, allow_loopback: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_loopback = allow_loopback
        # ThreadedResolver binds to the running loop, so this is constructed inside it.
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [result for result in results if self._allowed(result["host"])]
        if not allowed:
            raise RefusedAddressError(f"{host} resolves to no allowed address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()

    def _allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return is_allowed_address(ip, allow_loopback=self._allow_loopback)


class AiohttpTransport:
    """The production :class:`Transport`. Call :meth:`close` (or use ``async with``)."""

    def __init__(
        self,
        *,
        allow_loopback: bool,
        user_agent: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        total_timeout: float = 30.0,
        limit: int = 100,
        limit_per_host: int = 8,
        ssl_context: ssl.SSLContext | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        """*resolver* replaces the system resolver (tests); its answers are still filtered
        and it is closed with the transport."""
        self._allow_loopback = allow_loopback
        self._user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(
            total=total_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._total_timeout = total_timeout
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._ssl_context = ssl_context
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._filter: FilteringResolver | None = None

    async def start(self) -> None:
        """Create the session now (it is otherwise created on the first request)."""
        self._ensure_session()

    async def close(self) -> None:
        """Close the session and its connections; a later request starts a new one."""
        session, self._session = self._session, None
        resolver, self._filter = self._filter, None
        if session is not None:
            await session.close()
        if resolver is not None:
            # The connector does not close a resolver it was given.
            await resolver.close()

    async def __aenter__(self) -> AiohttpTransport:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> HttpResponse:
        """Send one request, never following redirects; raise :class:`TransportError`."""
        target = self._checked_url(url)
        send_headers = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
        send_headers["Accept-Encoding"] = "identity"
        if not any(k.lower() == "user-agent" for k in send_headers):
            send_headers["User-Agent"] = self._user_agent
        session = self._ensure_session()
        try:
            # Belt and braces with ClientTimeout.total: this deadline certainly covers
            # reading the body, which is where a slowloris peer stalls.
            async with asyncio.timeout(self._total_timeout):
                try:
                    return await _send(session, method, target, send_headers, body, max_bytes)
                except aiohttp.ServerDisconnectedError:
                    # The peer closed a pooled keep-alive connection as we reused it, before
                    # answering: once more on a new connection, now, rather than a retry
                    # minutes later. Safe for our POSTs too: receivers dedupe activity ids.
                    return await _send(session, method, target, send_headers, body, max_bytes)
        except TransportError:
            raise
        except TimeoutError:
            raise TransportError("timeout", "deadline exceeded") from None
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, RefusedAddressError):
                raise TransportError("refused-address", str(exc.os_error)) from None
            raise TransportError("dns", str(exc)) from None
        except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch, ssl.SSLError) as exc:
            raise TransportError("tls", str(exc)) from None
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
            raise TransportError("connect", str(exc)) from None
        except aiohttp.InvalidURL as exc:
            raise TransportError("bad-url", str(exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError("protocol", str(exc)) from None

    def _checked_url(self, url: str) -> URL:
        if not url.isascii():
            raise TransportError("bad-url", "URL must be ASCII (punycode host, encoded path)")
        try:
            scheme, _host = origin_of_url(url)
            hostname = urlsplit(url).hostname or ""
        except ValueError as exc:
            raise TransportError("bad-url", str(exc)) from None
        if scheme != "https" and not self._allow_loopback:
            raise TransportError("refused-scheme", "plain http is for development only")
        try:
            literal: IPAddress | None = ipaddress.ip_address(hostname)
        except ValueError:
            literal = None
        # aiohttp does not consult the resolver for IP literals: check them here.
        if literal is not None and not is_allowed_address(
            literal, allow_loopback=self._allow_loopback
        ):
            raise TransportError("refused-address", f"{literal} is not a public address")
        try:
            return URL(url.split("#", 1)[0], encoded=True)
        except ValueError as exc:
            raise TransportError("bad-url", str(exc)) from None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._filter is None:
                self._filter = FilteringResolver(
                    allow_loopback=self._allow_loopback, inner=self._resolver
                )
            connector = aiohttp.TCPConnector(
                resolver=self._filter,
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                ssl=self._ssl_context if self._ssl_context is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    target: URL,
    headers: Mapping[str, str],
    body: bytes | None,
    max_bytes: int,
) -> HttpResponse:
    async with session.request(
        method, target, headers=headers, data=body, allow_redirects=False
    ) as response:
        return await _complete(response, max_bytes)


async def _complete(response: aiohttp.ClientResponse, max_bytes: int) -> HttpResponse:
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise TransportError(
            "protocol", f"unrequested Content-Encoding {encoding}", status=response.status
        )
    length = response.content_length
    if length is not None and length > max_bytes:
        raise TransportError(
            "too-large", f"Content-Length {length} exceeds {max_bytes}", status=response.status
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise TransportError(
                "too-large", f"body exceeds {max_bytes} bytes", status=response.status
            )
        chunks.append(chunk)
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpResponse(
        status=response.status,
        headers=MappingProxyType(headers),
        body=b"".join(chunks),
        url=str(response.url),
    )
