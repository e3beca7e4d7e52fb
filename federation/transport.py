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
  :meth:`AiohttpTransport.request` (in :mod:`federation.aiohttp_transport`, loaded on the
  first request by :class:`DeferredTransport`) for network trouble. The one retry made here: a peer
  that drops the connection before answering (a stale keep-alive) gets the request once
  more at once, within the same deadline.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from federation.aiohttp_transport import AiohttpTransport

__all__ = [
    "DeferredTransport",
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


class DeferredTransport:
    """The production :class:`Transport`: an :class:`~federation.aiohttp_transport.AiohttpTransport`
    made, with aiohttp imported, on the first request. A server starts without loading its HTTP
    client; one that never federates never loads it. Call :meth:`close` when done."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._client: AiohttpTransport | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> HttpResponse:
        if self._client is None:
            from federation.aiohttp_transport import AiohttpTransport

            self._client = AiohttpTransport(**self._options)
        return await self._client.request(
            method, url, headers=headers, body=body, max_bytes=max_bytes
        )

    async def close(self) -> None:
        """Close the client's connections, if it was ever made; a later request reopens."""
        if self._client is not None:
            await self._client.close()
