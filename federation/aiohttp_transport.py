"""The production HTTP client behind :class:`federation.transport.DeferredTransport`: aiohttp
with the SSRF-guarding resolver, timeouts, size caps and no redirects.

The invariants are those of :mod:`federation.transport`; this module holds the parts that
need aiohttp, so that a server which has not federated yet never imports it (about a sixth of
its cold start on the 2-core machine).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from federation.hosts import origin_of_url
from federation.transport import (
    DEFAULT_MAX_BYTES,
    HttpResponse,
    IPAddress,
    RefusedAddressError,
    TransportError,
    is_allowed_address,
)

__all__ = ["AiohttpTransport", "FilteringResolver"]

_CHUNK = 65_536


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
