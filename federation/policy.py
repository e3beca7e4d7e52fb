"""Allowlist decisions for outbound federation: which hosts and URLs we may talk to.

Invariants:

- Hosts are compared only in their canonical form (:func:`federation.hosts.normalize_host`,
  ``host:port`` when a port is given): ``partner.example:8443`` is not
  ``partner.example``, and ``partner.example.evil.example`` is not ``partner.example``.
- Our own host is never a federation peer (Akkoma 2024.03: no fetch of our own domain).
- Plain http is allowed only on a development instance and only to loopback hosts
  (``localhost``, ``127.0.0.0/8``, ``[::1]``); everything else must be https.
- :class:`PolicyError` carries the HTTP status the refusal maps to: 400 for a malformed or
  refused URL, 403 for a host that is not allowed.
"""

from __future__ import annotations

import ipaddress

from federation.hosts import normalize_host, origin_of_url
from federation.ports import Allowlist

__all__ = ["FederationPolicy", "PolicyError"]


class PolicyError(Exception):
    """A host or URL we refuse to federate with; ``status`` is 400 or 403."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class FederationPolicy:
    """Checks hosts and URLs against the allowlist before any network I/O."""

    __slots__ = ("_allowlist", "_development", "_self_host")

    def __init__(self, allowlist: Allowlist, *, self_host: str, development: bool) -> None:
        """*self_host* is our canonical ``host[:port]``; a malformed one is a ValueError."""
        self._allowlist = allowlist
        self._self_host = normalize_host(self_host)
        self._development = development

    @property
    def self_host(self) -> str:
        return self._self_host

    @property
    def development(self) -> bool:
        return self._development

    async def check_host(self, host: str) -> str:
        """The canonical form of *host* if we may federate with it, else :class:`PolicyError`."""
        canonical = _canonical(host)
        if canonical == self._self_host:
            raise PolicyError(403, "that is our own host")
        if not await self._allowlist.is_allowed(canonical):
            raise PolicyError(403, f"host {canonical} is not allowed")
        return canonical

    async def check_url(self, url: str) -> str:
        """The canonical host of *url* if we may fetch or deliver to it.

        https, or http to a loopback host on a development instance; then the host must pass
        :meth:`check_host`. Default ports are dropped (``https://h:443/`` is host ``h``).
        """
        try:
            scheme, host = origin_of_url(url)
        except ValueError:
            raise PolicyError(400, "not an absolute http(s) URL") from None
        if scheme != "https" and not (self._development and _is_loopback(host)):
            raise PolicyError(400, "plain http is refused")
        return await self.check_host(host)

    async def allows_url(self, url: str) -> bool:
        """:meth:`check_url` as a predicate, for filtering recipients."""
        try:
            await self.check_url(url)
        except PolicyError:
            return False
        return True

    def scheme_for(self, host: str) -> str:
        """``http`` for loopback hosts of a development instance, otherwise ``https``."""
        canonical = _canonical(host)
        return "http" if self._development and _is_loopback(canonical) else "https"


def _canonical(host: str) -> str:
    try:
        return normalize_host(host)
    except (ValueError, TypeError):
        raise PolicyError(400, "malformed host") from None


def _is_loopback(canonical_host: str) -> bool:
    name = canonical_host
    if name.startswith("["):
        name = name[1 : name.index("]")]
    else:
        name = name.rsplit(":", 1)[0] if ":" in name else name
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
