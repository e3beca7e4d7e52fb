"""Discovery documents: WebFinger, host-meta and NodeInfo, built and parsed. No I/O.

Invariants:

- :func:`parse_acct` accepts only ``[@|acct:]user@host[:port]`` with an ASCII username and a
  host that :func:`federation.hosts.normalize_host` accepts; anything else is a
  :class:`~federation.vocab.VocabError`. Nothing hostile is "cleaned up" into a valid name
  (SECURITY.md §1.1, CVE-2023-42451).
- :func:`parse_webfinger` binds the answer to the question: the ``subject`` (or an alias) is
  the requested account and the ActivityStreams ``self`` link is on the expected host
  (SECURITY.md §1.1, "WebFinger spoofing").
- NodeInfo is minimal: no usage figures, no allowlist, ``openRegistrations: false``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import quoteattr

from federation.hosts import host_of_url, normalize_host
from federation.types import is_activitystreams_media_type
from federation.vocab import VocabError

__all__ = [
    "NODEINFO_REL",
    "PROFILE_PAGE_REL",
    "host_meta_xml",
    "nodeinfo",
    "nodeinfo_links",
    "parse_acct",
    "parse_webfinger",
    "webfinger_document",
]

NODEINFO_REL = "http://nodeinfo.diaspora.software/ns/schema/2.1"
PROFILE_PAGE_REL = "http://webfinger.net/rel/profile-page"
_AS_TYPE_PROPERTY = "https://www.w3.org/ns/activitystreams#type"
_USERNAME = re.compile(r"[A-Za-z0-9_.~-]{1,64}")
_MAX_ACCT = 320
_MAX_LINKS = 100


def parse_acct(value: str) -> tuple[str, str]:
    """``(username, canonical host)`` of ``@user@host``, ``user@host`` or ``acct:user@host``.

    The username keeps its case (servers compare it case-insensitively); the host is
    normalized and may carry a port.
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_ACCT:
        raise VocabError("account is not a string of sane length")
    text = value
    if text[:5].lower() == "acct:":
        text = text[5:]
    elif text.startswith("@"):
        text = text[1:]
    if text.count("@") != 1:
        raise VocabError("account must be user@host")
    username, host = text.split("@")
    if _USERNAME.fullmatch(username) is None:
        raise VocabError("malformed username")
    try:
        return username, normalize_host(host)
    except ValueError:
        raise VocabError("malformed host") from None


def webfinger_document(
    *, subject: str, actor_uri: str, profile_url: str, actor_type: str | None = None
) -> dict[str, Any]:
    """The JRD for *subject* (``acct:user@host``). A ``Group`` *actor_type* is advertised
    in the self link's properties, as Lemmy does."""
    self_link: dict[str, Any] = {
        "rel": "self",
        "type": "application/activity+json",
        "href": actor_uri,
    }
    if actor_type is not None:
        self_link["properties"] = {_AS_TYPE_PROPERTY: actor_type}
    return {
        "subject": subject,
        "aliases": [actor_uri, profile_url] if profile_url != actor_uri else [actor_uri],
        "links": [
            {"rel": PROFILE_PAGE_REL, "type": "text/html", "href": profile_url},
            self_link,
        ],
    }


def parse_webfinger(doc: Mapping[str, Any], *, requested: str, expected_host: str) -> str:
    """The ActivityStreams ``self`` href of a JRD answering *requested* (``acct:u@h``).

    The subject must be *requested* (case-insensitive, host normalized) or *requested* must
    be among the aliases; the chosen link (the last ``self`` link with an ActivityStreams
    type, as Mastodon picks) must be on *expected_host*. Raises :class:`VocabError`.
    """
    try:
        return _parse_webfinger(doc, requested, expected_host)
    except VocabError:
        raise
    except Exception as exc:
        raise VocabError("malformed WebFinger document") from exc


def _parse_webfinger(doc: Mapping[str, Any], requested: str, expected_host: str) -> str:
    if not isinstance(doc, Mapping):
        raise VocabError("WebFinger answer is not a JSON object")
    wanted = _account_key(requested)
    if wanted is None:
        raise VocabError("requested account is malformed")
    names = [doc.get("subject")]
    aliases = doc.get("aliases")
    if isinstance(aliases, list):
        names.extend(aliases[:_MAX_LINKS])
    if not any(isinstance(n, str) and _account_key(n) == wanted for n in names):
        raise VocabError("WebFinger subject is not the requested account")
    links = doc.get("links")
    if not isinstance(links, list) or len(links) > _MAX_LINKS:
        raise VocabError("WebFinger links missing or too many")
    candidates = [
        link.get("href")
        for link in links
        if isinstance(link, Mapping)
        and link.get("rel") == "self"
        and isinstance(link.get("type"), str)
        and is_activitystreams_media_type(link["type"])
    ]
    if not candidates:
        raise VocabError("WebFinger has no ActivityStreams self link")
    href = candidates[-1]
    if not isinstance(href, str) or len(href) > 2048:
        raise VocabError("self link href is malformed")
    try:
        on_host = host_of_url(href) == normalize_host(expected_host)
    except ValueError:
        raise VocabError("self link href is not an http(s) URL") from None
    if not on_host:
        raise VocabError("self link is not on the account's host")
    return href


def _account_key(value: str) -> tuple[str, str] | None:
    # Only acct: URIs can name the account; an http alias is not an account name.
    if value[:5].lower() != "acct:":
        return None
    try:
        username, host = parse_acct(value)
    except VocabError:
        return None
    return username.lower(), host


def host_meta_xml(base: str) -> str:
    """The XRD host-meta pointing at our WebFinger endpoint (*base* is our base URL)."""
    template = quoteattr(f"{base}/.well-known/webfinger?resource={{uri}}")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" type="application/jrd+json" template={template}/>\n'
        "</XRD>\n"
    )


def nodeinfo_links(base: str) -> dict[str, Any]:
    """``/.well-known/nodeinfo``: one link to our NodeInfo 2.1 document."""
    return {"links": [{"rel": NODEINFO_REL, "href": f"{base}/nodeinfo/2.1"}]}


def nodeinfo(name: str, version: str) -> dict[str, Any]:
    """Minimal NodeInfo 2.1 (FEP-0151): no statistics, closed registrations."""
    return {
        "version": "2.1",
        "software": {"name": "steelyard", "version": version},
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": False,
        "usage": {"users": {}},
        "metadata": {"nodeName": name, "federation": {"enabled": True}},
    }
