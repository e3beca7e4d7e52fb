"""Data transfer objects of the federation layer, and the ActivityStreams constants.

The parsers in :mod:`federation.vocab` turn untrusted JSON into these objects; the rest of
the pipeline and the application only ever see these, never raw remote dictionaries (except
``Activity.raw``, kept for the archive).

Invariants:

- Every DTO is a frozen, slotted dataclass; sequences are tuples. A DTO built by a parser
  holds only validated values: URLs are absolute http(s) URLs, ``host`` fields are
  canonical (:func:`federation.hosts.host_of_url`), public-addressing aliases are replaced
  by :data:`AS_PUBLIC`.
- HTML fields (``summary_html``, ``content_html``) are raw and unsanitized: the application
  sanitizes them before anyone sees them.
- Pure data and pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AS_ACCEPT",
    "AS_CONTEXT",
    "AS_MEDIA_TYPES",
    "AS_PUBLIC",
    "PUBLIC_ALIASES",
    "SECURITY_CONTEXT",
    "Activity",
    "Addressing",
    "RemoteActor",
    "RemoteNote",
    "is_activitystreams_media_type",
    "is_public",
    "parse_media_type",
]

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
AS_PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
# Compacted spellings seen in the wild for the same collection (AS2 §5.6 / Mastodon).
PUBLIC_ALIASES = frozenset({AS_PUBLIC, "as:Public", "Public"})
AS_MEDIA_TYPES: tuple[str, ...] = (
    "application/activity+json",
    'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
)
# What we send as Accept when fetching objects and actors.
AS_ACCEPT = ", ".join(AS_MEDIA_TYPES)

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_MAX_MEDIA_TYPE = 1024


def is_public(iri: str) -> bool:
    """True when *iri* names the public collection in any accepted spelling."""
    return iri in PUBLIC_ALIASES


@dataclass(frozen=True, slots=True)
class Addressing:
    """The ``to`` and ``cc`` of an activity or object, aliases already normalized."""

    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()

    @property
    def recipients(self) -> tuple[str, ...]:
        """``to`` then ``cc``, without duplicates, in order."""
        return tuple(dict.fromkeys((*self.to, *self.cc)))

    @property
    def public_in_to(self) -> bool:
        return any(is_public(iri) for iri in self.to)

    @property
    def public_in_cc(self) -> bool:
        return any(is_public(iri) for iri in self.cc)

    @property
    def is_public(self) -> bool:
        """Public or unlisted: addressed to the public collection somewhere."""
        return self.public_in_to or self.public_in_cc


@dataclass(frozen=True, slots=True)
class RemoteActor:
    """An actor document fetched from its own origin and validated by ``parse_actor``."""

    uri: str
    actor_type: str
    username: str
    host: str
    display_name: str
    summary_html: str
    inbox: str
    shared_inbox: str | None
    outbox: str | None
    followers: str | None
    following: str | None
    key_id: str
    public_key_pem: str  # "" when the actor names its key by reference only (key document)
    manually_approves: bool
    url: str | None
    icon_url: str | None
    wall: str | None = None  # FEP-400e wall collection (Smithereen's "wall")


@dataclass(frozen=True, slots=True)
class Activity:
    """The envelope of a received activity. ``object`` is the embedded object, if any.

    ``object_id`` is the object's id whether it was given as a string or embedded (None when
    there is no object or the embedded object has no id). ``raw`` is the whole document.
    """

    id: str
    type: str
    actor: str
    object_id: str | None
    object: Mapping[str, Any] | None
    target: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    audience: str | None
    published: str | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def addressing(self) -> Addressing:
        return Addressing(self.to, self.cc)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A media attachment of a remote note: where it is, what kind, and its description."""

    url: str
    media_type: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class RemoteNote:
    """A Note-like object as parsed by ``parse_note``: Note, Article, Page, Question,
    ChatMessage, or a Video, Audio, Image or Event (``federation.vocab.LINKED_TYPES``).

    ``mentions`` are the ``href`` of the Mention tags; ``hashtags`` are lower-case names
    without ``#``; ``wall_target`` is the FEP-400e target collection id.
    """

    id: str
    attributed_to: str
    content_html: str
    summary: str | None
    in_reply_to: str | None
    published_ms: int | None
    updated_ms: int | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    mentions: tuple[str, ...]
    hashtags: tuple[str, ...]
    wall_target: str | None
    url: str | None
    sensitive: bool
    type: str = "Note"
    audience: str | None = None
    conversation: str | None = None
    attachments: tuple[Attachment, ...] = ()
    title: str | None = None  # an Article's or Page's ``name``: plain text, escape it
    poll_options: tuple[str, ...] = ()  # a Question's option names: plain text, escape them
    starts_ms: int | None = None  # an Event's ``startTime``, epoch ms (None: none or unreadable)

    @property
    def addressing(self) -> Addressing:
        return Addressing(self.to, self.cc)


def parse_media_type(value: str) -> tuple[str, dict[str, str]] | None:
    """Parse one ``type/subtype; name=value`` header value (RFC 9110 §8.3.1).

    Returns the lower-case media type and its parameters (lower-case names, unquoted
    values), or None when the value is malformed, lists several media types (a repeated
    header joined by a comma) or repeats a parameter.
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_MEDIA_TYPE:
        return None
    if not value.isascii() or any(ord(ch) < 0x20 and ch != "\t" for ch in value):
        return None
    pieces = _split_params(value)
    if pieces is None:
        return None
    head, *raw_params = pieces
    mtype, slash, subtype = head.strip(" \t").lower().partition("/")
    if not slash or not _is_token(mtype) or not _is_token(subtype):
        return None
    params: dict[str, str] = {}
    for raw in raw_params:
        raw = raw.strip(" \t")
        if not raw:
            continue
        name, eq, val = raw.partition("=")
        name = name.lower()
        if not eq or not _is_token(name) or name in params:
            return None
        if val.startswith('"'):
            unquoted = _unquote(val)
            if unquoted is None:
                return None
            val = unquoted
        elif not val or any(ch <= " " or ch in '"\\' or ch == "\x7f" for ch in val):
            # RFC 9110 wants a token; we also take a bare URL (profile=https://…).
            return None
        params[name] = val
    return f"{mtype}/{subtype}", params


def is_activitystreams_media_type(value: str | None) -> bool:
    """True for ``application/activity+json`` (any parameters, e.g. charset) or
    ``application/ld+json`` whose ``profile`` lists the ActivityStreams profile.

    A missing, malformed or repeated Content-Type is not ActivityStreams (SECURITY.md §1.1).
    """
    if value is None:
        return False
    parsed = parse_media_type(value)
    if parsed is None:
        return False
    mtype, params = parsed
    if mtype == "application/activity+json":
        return True
    if mtype == "application/ld+json":
        return AS_CONTEXT in params.get("profile", "").split()
    return False


def _split_params(value: str) -> list[str] | None:
    # Split on ";" outside quoted strings; a "," outside quotes means two media types.
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif quoted:
            current.append(ch)
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            current.append(ch)
            quoted = True
        elif ch == ";":
            pieces.append("".join(current))
            current = []
        elif ch == ",":
            return None
        else:
            current.append(ch)
    if quoted or escaped:
        return None
    pieces.append("".join(current))
    return pieces


def _unquote(text: str) -> str | None:
    # *text* starts with '"'; the matching closing quote must be its last character.
    out: list[str] = []
    escaped = False
    for index, ch in enumerate(text[1:], start=1):
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return "".join(out) if index == len(text) - 1 else None
        else:
            out.append(ch)
    return None


def _is_token(text: str) -> bool:
    return bool(text) and all(ch in _TOKEN_CHARS for ch in text)
