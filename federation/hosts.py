"""Host identity: the one canonical spelling of a host, for allowlists and origin checks.

Every comparison of hosts in Steelyard (allowlist matching, "is this key on the actor's
origin", "is this redirect same-origin") goes through :func:`normalize_host` or
:func:`host_of_url` and then compares the results with ``==``. Nothing else may compare
hosts, because ad-hoc normalisation is how others were spoofed (SECURITY.md §1.1:
Mastodon CVE-2023-42451 stripped every ``/``, so ``mastodon.so/cial`` became
``mastodon.social``).

Invariants:

- The canonical form is ASCII: IDNA-encoded (stdlib ``encodings.idna``, i.e. IDNA 2003
  nameprep for Unicode input, so fullwidth and other compatibility spellings compare by
  their IDNA result), lower case, without a trailing dot. IPv4 is dotted quad, IPv6 is
  bracketed and compressed. A port is kept only when one was given, as ``host:port``.
- Anything that is not plainly a host name is rejected with ``ValueError``; nothing is
  "cleaned up" into a different host. That includes userinfo, paths, escapes, whitespace,
  underscores, over-long labels and the legacy numeric IPv4 forms (``127.1``,
  ``2130706433``, ``0x7f000001``) that ``getaddrinfo`` would quietly map to an address.
- Pure functions, no I/O: ``socket.inet_aton`` is used only as a parser.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import unicodedata
from urllib.parse import urlsplit

__all__ = ["host_of_url", "normalize_host", "origin_of_url", "same_origin"]

# Upper bound on what we even try to parse; a real host:port is far shorter.
_MAX_INPUT = 1024
_MAX_HOST = 253
_MAX_LABEL = 63

# Characters that never belong in a host (or host:port) and that are known spoofing tools:
# userinfo, path, query, fragment, escapes, and the backslash WHATWG treats as a slash.
_HOSTILE = frozenset("@/\\%?#")

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(.*))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_URL_CHARACTER = re.compile(r"[\x00-\x20\x7f\\]")


def normalize_host(value: str) -> str:
    """Return the canonical ``host`` or ``host:port`` for *value*, or raise ``ValueError``.

    Accepts ``host``, ``host:port`` and ``[v6]`` / ``[v6]:port``. Two spellings denote the
    same host exactly when their results are equal.
    """
    host, port = _normalize(value)
    return host if port is None else f"{host}:{port}"


def host_of_url(url: str) -> str:
    """Return the canonical host of an http(s) URL, without the scheme's default port.

    Raises ``ValueError`` for other schemes, userinfo, a missing host or a hostile host.
    """
    return origin_of_url(url)[1]


def origin_of_url(url: str) -> tuple[str, str]:
    """Return ``(scheme, host)`` of an http(s) URL; the host is as in :func:`host_of_url`."""
    if not isinstance(url, str) or len(url) > 8192:
        raise ValueError("URL is not a string of sane length")
    # urlsplit silently deletes tabs and newlines and strips leading control characters
    # (bpo-43882), which would let "evil\t.example" pass as "evil.example": refuse them.
    if _BAD_URL_CHARACTER.search(url):
        raise ValueError("URL contains whitespace, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("URL scheme must be http or https")
    netloc = parts.netloc
    if not netloc:
        raise ValueError("URL has no host")
    if "@" in netloc:
        raise ValueError("URL contains userinfo")
    host, port = _normalize(netloc)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return scheme, host
    return scheme, f"{host}:{port}"


def same_origin(a_url: str, b_url: str) -> bool:
    """True when both URLs are valid http(s) URLs with equal scheme and canonical host.

    A malformed URL is never the same origin as anything (fails closed).
    """
    try:
        return origin_of_url(a_url) == origin_of_url(b_url)
    except ValueError:
        return False


def _normalize(value: str) -> tuple[str, int | None]:
    if not isinstance(value, str):
        raise ValueError("host must be a string")
    return _normalize_str(value)


# A pure function of its argument: remembering recent answers saves the per-character checks
# and IDNA work for the few hosts an instance talks to (errors are not remembered).
@functools.lru_cache(maxsize=4096)
def _normalize_str(value: str) -> tuple[str, int | None]:
    if not value or len(value) > _MAX_INPUT:
        raise ValueError("host is empty or too long")
    for ch in value:
        if ch in _HOSTILE or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf"):
            raise ValueError(f"host contains a forbidden character {ch!r}")

    if value.startswith("["):
        match = _BRACKETED.fullmatch(value)
        if match is None:
            raise ValueError("malformed IPv6 literal")
        try:
            address = ipaddress.IPv6Address(match.group(1))
        except ValueError:
            raise ValueError("malformed IPv6 literal") from None
        return f"[{address.compressed}]", _parse_port(match.group(2))

    if value.count(":") > 1:
        raise ValueError("IPv6 literals must be bracketed")
    name, sep, port_text = value.partition(":")
    port = _parse_port(port_text) if sep else None
    return _normalize_name(name), port


def _parse_port(text: str | None) -> int | None:
    if text is None:
        return None
    if _PORT.fullmatch(text) is None:
        raise ValueError("port must be 1 to 5 ASCII digits")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError("port out of range")
    return port


def _normalize_name(name: str) -> str:
    if not name:
        raise ValueError("empty host")
    try:
        # The stdlib codec lower-cases and maps only non-ASCII labels (nameprep) and
        # splits on the ideographic and fullwidth full stops too; ASCII labels pass
        # through unchecked, so every label is validated below after encoding.
        encoded = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("host is not valid IDNA") from None
    host = encoded.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > _MAX_HOST:
        raise ValueError("host is empty or longer than 253 characters")

    if _looks_numeric(host):
        return _canonical_ipv4(host)

    labels = host.split(".")
    for label in labels:
        _check_label(label)
    if labels[-1].isdigit():
        # RFC 3696 §2: a top-level label is never all-numeric; such names are IPv4 forms.
        raise ValueError("all-numeric top-level label")
    return host


def _looks_numeric(host: str) -> bool:
    if all(ch.isdigit() or ch == "." for ch in host):
        return True
    # inet_aton accepts hex and octal forms such as 0x7f000001 that getaddrinfo would
    # resolve to an address; a host it can parse is an address spelling, not a name.
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _canonical_ipv4(host: str) -> str:
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError("non-canonical numeric host") from None
    if str(address) != host:
        raise ValueError("non-canonical numeric host")
    return host


def _check_label(label: str) -> None:
    if not label or len(label) > _MAX_LABEL:
        raise ValueError("host label is empty or longer than 63 characters")
    if _LDH_LABEL.fullmatch(label) is None:
        raise ValueError(f"host label {label!r} is not letters, digits and inner hyphens")
    if label[2:4] == "--":
        if not label.startswith("xn--"):
            # RFC 5891 §4.2.3.1 reserves "??--" labels; only IDNA A-labels are valid.
            raise ValueError(f"reserved host label {label!r}")
        _check_a_label(label)


def _check_a_label(label: str) -> None:
    # An A-label must be canonical punycode of a real Unicode label, otherwise two ASCII
    # spellings could stand for one name (or for garbage) and defeat exact comparison.
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        raise ValueError(f"invalid punycode label {label!r}") from None
    if not decoded or decoded.isascii():
        raise ValueError(f"punycode label {label!r} does not encode a Unicode label")
    if decoded.encode("punycode").decode("ascii") != label[4:]:
        raise ValueError(f"non-canonical punycode label {label!r}")
    for ch in decoded:
        if ch.isascii():
            if not (ch.islower() or ch.isdigit() or ch == "-"):
                raise ValueError(f"punycode label {label!r} decodes to invalid ASCII")
        elif unicodedata.category(ch)[0] in ("C", "Z"):
            raise ValueError(f"punycode label {label!r} decodes to control or space")
