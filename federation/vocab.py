"""ActivityStreams vocabulary: builders of what we emit, parsers of what we receive.

Builders return plain ``dict`` documents in the shapes of PROTOCOL.md; activity and object
ids are the caller's (passed in). Parsers turn untrusted JSON into the DTOs of
:mod:`federation.types`.

Invariants:

- Parsers raise :class:`VocabError` (a ``ValueError``) with a short reason, safe to log, on
  anything malformed, and never any other exception whatever the input.
- One bad optional sub-value never costs the whole document: a Mention without an http(s)
  ``href``, an over-long Hashtag, a recipient that is not a URL, an unreadable ``published``
  or title or poll option is left out (never trusted, never stored). What identifies or binds
  the document (``id``, ``type``, ``actor``, ``attributedTo``, keys, ``updated``) still fails
  it.
- Parsed URLs are absolute http(s) URLs; lists are capped at ``MAX_LIST`` items and strings
  at fixed lengths, so a hostile document cannot make us store unbounded data.
- ``parse_actor`` binds the actor to the URL it was fetched from and every endpoint and the
  key to the actor's origin (SECURITY.md §1.1, CVE-2024-23832); ``parse_note`` requires the
  object and its author on the same origin (FEP-fe34). Binding an activity to its signer is
  the inbox's job.
- Internal content is never serialized: :func:`addressing_for` refuses ``"internal"``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal, NoReturn, ParamSpec, TypeVar
from urllib.parse import urlsplit

from federation.hosts import host_of_url, origin_of_url, same_origin
from federation.types import (
    AS_CONTEXT,
    AS_PUBLIC,
    PUBLIC_ALIASES,
    SECURITY_CONTEXT,
    Activity,
    Attachment,
    RemoteActor,
    RemoteNote,
)
from federation.urls import Urls

__all__ = [
    "ACTOR_TYPES",
    "LINKED_TYPES",
    "MAX_ATTACHMENTS",
    "MAX_LIST",
    "MAX_POLL_OPTIONS",
    "NOTE_TYPES",
    "TITLED_TYPES",
    "AudienceKind",
    "VocabError",
    "accept",
    "add",
    "addressing_for",
    "announce",
    "audience_kind",
    "create",
    "delete",
    "follow",
    "instance_actor",
    "key_only_actor",
    "like",
    "note",
    "note_context",
    "note_title",
    "ordered_collection",
    "ordered_collection_page",
    "parse_activity",
    "parse_actor",
    "parse_note",
    "person",
    "person_context",
    "poll_options",
    "primary_type",
    "reject",
    "strip_fragment",
    "undo",
    "update",
    "with_context",
]

P = ParamSpec("P")
T = TypeVar("T")
Doc = dict[str, Any]
AudienceKind = Literal["public", "unlisted", "followers", "limited", "direct"]

ACTOR_TYPES = frozenset({"Person", "Service", "Application", "Group", "Organization"})
# ChatMessage: Pleroma/Akkoma chats and Lemmy 0.19 private messages; addressed to people only,
# so it reads as a direct message.
# Video (PeerTube), Audio (Funkwhale), Image and Event (Mobilizon, Gancio): what they are is not
# text, so they are read as their title, description and a link to the original, as Mastodon
# converts them (its CONVERTED_TYPES: Image Audio Video Article Page Event).
LINKED_TYPES = frozenset({"Video", "Audio", "Image", "Event"})
NOTE_TYPES = frozenset({"Note", "Article", "Page", "Question", "ChatMessage"}) | LINKED_TYPES
MAX_LIST = 1000
MAX_ATTACHMENTS = 8  # Mastodon allows 4 per post; others a few more
MAX_POLL_OPTIONS = 20  # Mastodon allows 4 by default, Pleroma 20 (CVE-2026-23962: cap them)
# Lemmy posts and blog articles carry a title (``name``); on a Note it is not shown (Mastodon).
TITLED_TYPES = frozenset({"Article", "Page"}) | LINKED_TYPES
_MAX_ATTACHMENT_NAME = 1500  # Mastodon's limit for a media description
_MAX_URL = 2048
_MAX_TYPE = 64
_MAX_NAME = 512
_MAX_SUMMARY = 65_536
_MAX_CONTENT = 524_288
_MAX_PEM = 16_384
_MAX_HASHTAG = 100
# No whitespace, "@", slashes, control or URL-structural characters; 1-64 characters
# (instance actors are often named after their host, so up to 253 for them).
_INSTANCE_ACTOR_TYPES = frozenset({"Application", "Service"})
_USERNAME = re.compile(r"[^\s@/\\?#%:\x00-\x1f\x7f]{1,253}")


def note_context() -> list[Any]:
    """A fresh ``@context`` for notes and the activities that carry them."""
    return [AS_CONTEXT, {"sensitive": "as:sensitive", "Hashtag": "as:Hashtag"}]


def person_context() -> list[Any]:
    """A fresh ``@context`` for our Person documents."""
    return [
        AS_CONTEXT,
        SECURITY_CONTEXT,
        {
            "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
            "toot": "http://joinmastodon.org/ns#",
            "discoverable": "toot:discoverable",
            "indexable": "toot:indexable",
            "sm": "http://smithereen.software/ns#",
            "wall": {"@id": "sm:wall", "@type": "@id"},
        },
    ]


class VocabError(ValueError):
    """A document is malformed or breaks an origin rule; ``reason`` is short and loggable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def strip_fragment(url: str) -> str:
    """*url* without its ``#fragment``."""
    return url.split("#", 1)[0]


def ordering_key(activity: Mapping[str, Any]) -> str | None:
    """What an activity we emit is about, for keeping order per receiving inbox: activities
    with one key must arrive in the order they were made (an Update overtaking its Create is
    dropped by the receiver, an Undo overtaking its Follow leaves a follower).

    A Follow, Like or Announce and its Undo are about the pair (actor, object): receivers
    undo a follow by the relationship and a like by the post, so an unfollow must also
    arrive before the next follow of the same person. Create, Update, Delete, Add and
    Remove are about their object; Accept and Reject (and any other Undo) about the activity
    they answer; anything else starts its own chain, keyed by its own id. None when there is
    no usable id.
    """
    kind = primary_type(activity.get("type"))
    inner = activity.get("object")
    if kind == "Undo" and isinstance(inner, Mapping):
        pair = _pair_key(inner)
        if pair is not None:
            return pair
    pair = _pair_key(activity)
    if pair is not None:
        return pair
    if kind in ("Create", "Update", "Delete", "Add", "Remove", "Undo", "Accept", "Reject"):
        key = inner.get("id") if isinstance(inner, Mapping) else inner
    else:
        key = activity.get("id")
    return key if isinstance(key, str) and key else None


def _pair_key(activity: Mapping[str, Any]) -> str | None:
    """``Follow actor object`` for a Follow, Like or Announce, else None."""
    kind = primary_type(activity.get("type"))
    if kind not in ("Follow", "Like", "Announce"):
        return None
    actor, obj = activity.get("actor"), activity.get("object")
    obj = obj.get("id") if isinstance(obj, Mapping) else obj
    if not isinstance(actor, str) or not isinstance(obj, str):
        return None
    return f"{kind} {actor} {obj}"


# --- builders ---------------------------------------------------------------------------------


def with_context(obj: Mapping[str, Any], context: Any = None) -> Doc:
    """A top-level copy of *obj* with ``@context`` (default: the Note context) first."""
    body = {k: v for k, v in obj.items() if k != "@context"}
    return {"@context": note_context() if context is None else context, **body}


def person(
    urls: Urls,
    *,
    username: str,
    display_name: str,
    summary_html: str,
    public_key_pem: str,
    manually_approves: bool,
    icon_url: str | None = None,
    published_iso: str,
) -> Doc:
    """The full Person document of a local user (served to signed, allowed requesters)."""
    actor_id = urls.actor(username)
    doc: Doc = {
        "@context": person_context(),
        "id": actor_id,
        "type": "Person",
        "preferredUsername": username,
        "name": display_name,
        "summary": summary_html,
        "url": urls.profile_page(username),
        "inbox": urls.inbox(username),
        "outbox": urls.outbox(username),
        "followers": urls.followers(username),
        "following": urls.following(username),
        "endpoints": {"sharedInbox": urls.shared_inbox},
        "wall": urls.wall(username),
        "publicKey": _public_key(urls.key_id(username), actor_id, public_key_pem),
        "manuallyApprovesFollowers": manually_approves,
        "discoverable": False,
        "indexable": False,
        "published": published_iso,
    }
    if icon_url is not None:
        doc["icon"] = {"type": "Image", "url": icon_url}
    return doc


def key_only_actor(
    *,
    actor_id: str,
    preferred_username: str,
    inbox: str,
    outbox: str,
    key_id: str,
    public_key_pem: str,
    actor_type: str = "Person",
) -> Doc:
    """The barebones actor served to unsigned GETs: enough to verify our signatures.

    ``outbox`` is there because Lemmy cannot read an actor without one (its ``Person`` makes
    it mandatory) and fetches actors unsigned by default; the outbox itself still needs a
    signature. Nothing else is added: no name, no collections a peer could list.
    """
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": actor_id,
        "type": actor_type,
        "preferredUsername": preferred_username,
        "inbox": inbox,
        "outbox": outbox,
        "publicKey": _public_key(key_id, actor_id, public_key_pem),
    }


def instance_actor(urls: Urls, public_key_pem: str, name: str) -> Doc:
    """The instance (Application) actor at ``urls.instance_actor``; it signs our GETs.

    ``preferredUsername`` is the instance's host name (Mastodon's convention, FEP-d556),
    ``name`` the instance's display name.
    """
    actor_id = urls.instance_actor
    return {
        "@context": [
            AS_CONTEXT,
            SECURITY_CONTEXT,
            {"manuallyApprovesFollowers": "as:manuallyApprovesFollowers"},
        ],
        "id": actor_id,
        "type": "Application",
        "preferredUsername": urlsplit(urls.base).hostname or name,
        "name": name,
        "inbox": urls.shared_inbox,
        "endpoints": {"sharedInbox": urls.shared_inbox},
        "manuallyApprovesFollowers": True,
        "publicKey": _public_key(f"{actor_id}#main-key", actor_id, public_key_pem),
    }


def note(
    *,
    note_id: str,
    attributed_to: str,
    content_html: str,
    published_iso: str,
    to: Sequence[str],
    cc: Sequence[str],
    updated_iso: str | None = None,
    in_reply_to: str | None = None,
    mentions: Sequence[tuple[str, str]] = (),
    hashtags: Sequence[tuple[str, str]] = (),
    url: str | None = None,
    summary: str | None = None,
    sensitive: bool = False,
    wall: tuple[str, str] | None = None,
    audience: str | None = None,
    conversation: str | None = None,
) -> Doc:
    """A Note (no ``@context``: embed it, or wrap it with :func:`with_context`).

    *mentions* are ``(actor href, "@user@host")`` pairs, *hashtags* ``(tag page href,
    name)`` pairs (``#`` added if missing), *wall* is ``(wall collection id, wall owner)``
    for a FEP-400e wall post, *conversation* becomes ``context`` (DM threads).
    """
    tags: list[Doc] = [{"type": "Mention", "href": h, "name": n} for h, n in mentions]
    tags += [
        {"type": "Hashtag", "href": h, "name": n if n.startswith("#") else f"#{n}"}
        for h, n in hashtags
    ]
    doc: Doc = {
        "id": note_id,
        "type": "Note",
        "attributedTo": attributed_to,
        "content": content_html,
        "published": published_iso,
        "to": list(to),
        "cc": list(cc),
        "inReplyTo": in_reply_to,
        "tag": tags,
        "attachment": [],
        "sensitive": sensitive,
    }
    optional = {
        "updated": updated_iso,
        "url": url,
        "summary": summary,
        "audience": audience,
        "context": conversation,
    }
    doc.update({k: v for k, v in optional.items() if v is not None})
    if wall is not None:
        doc["target"] = {"type": "OrderedCollection", "id": wall[0], "attributedTo": wall[1]}
    return doc


def create(
    *,
    activity_id: str,
    actor: str,
    obj: Mapping[str, Any],
    to: Sequence[str] | None = None,
    cc: Sequence[str] | None = None,
    audience: str | None = None,
) -> Doc:
    """``Create`` of *obj*; ``to``/``cc``/``published`` default to the object's."""
    return _wrapping("Create", activity_id, actor, obj, to, cc, audience)


def update(
    *,
    activity_id: str,
    actor: str,
    obj: Mapping[str, Any],
    to: Sequence[str] | None = None,
    cc: Sequence[str] | None = None,
    audience: str | None = None,
) -> Doc:
    """``Update`` of *obj* (a Note with ``updated``, or a Person/Group document)."""
    return _wrapping("Update", activity_id, actor, obj, to, cc, audience)


def delete(
    *, activity_id: str, actor: str, object_id: str, to: Sequence[str], cc: Sequence[str] = ()
) -> Doc:
    """``Delete`` of a ``Tombstone`` with *object_id* (a note, or the actor itself)."""
    doc = _activity("Delete", activity_id, actor, to=to, cc=cc)
    doc["object"] = {"id": object_id, "type": "Tombstone"}
    return doc


def follow(*, activity_id: str, actor: str, object_id: str) -> Doc:
    """``Follow`` of *object_id*, addressed to it."""
    doc = _activity("Follow", activity_id, actor, to=[object_id])
    doc["object"] = object_id
    return doc


def accept(
    *, activity_id: str, actor: str, obj: Mapping[str, Any], to: Sequence[str] | None = None
) -> Doc:
    """``Accept`` embedding *obj* (a Follow, Join or Invite); ``to`` defaults to its actor."""
    return _response("Accept", activity_id, actor, obj, to)


def reject(
    *, activity_id: str, actor: str, obj: Mapping[str, Any], to: Sequence[str] | None = None
) -> Doc:
    """``Reject``, same shape as :func:`accept`."""
    return _response("Reject", activity_id, actor, obj, to)


def undo(
    *,
    activity_id: str,
    actor: str,
    obj: Mapping[str, Any],
    to: Sequence[str] | None = None,
    cc: Sequence[str] | None = None,
) -> Doc:
    """``Undo`` embedding the inner activity (Follow, Like, Announce, Block, Invite)."""
    doc = _activity("Undo", activity_id, actor, to=to, cc=cc)
    doc["object"] = _embedded(obj)
    return doc


def like(
    *,
    activity_id: str,
    actor: str,
    object_id: str,
    to: Sequence[str] | None = None,
    audience: str | None = None,
) -> Doc:
    doc = _activity("Like", activity_id, actor, to=to, audience=audience)
    doc["object"] = object_id
    return doc


def announce(
    *,
    activity_id: str,
    actor: str,
    obj: str | Mapping[str, Any],
    to: Sequence[str],
    cc: Sequence[str] = (),
    published_iso: str | None = None,
    audience: str | None = None,
) -> Doc:
    """``Announce`` of an object id (a boost) or of an embedded activity (FEP-1b12)."""
    doc = _activity("Announce", activity_id, actor, to=to, cc=cc, audience=audience)
    if published_iso is not None:
        doc["published"] = published_iso
    doc["object"] = obj if isinstance(obj, str) else _embedded(obj)
    return doc


def add(
    *,
    activity_id: str,
    actor: str,
    object_id: str,
    target: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
) -> Doc:
    """``Add`` of *object_id* to the *target* collection (FEP-400e wall, members, mods)."""
    doc = _activity("Add", activity_id, actor, to=to, cc=cc)
    doc["object"] = object_id
    doc["target"] = target
    return doc


def ordered_collection(collection_id: str, total: int | None, first: str | None) -> Doc:
    """An ``OrderedCollection`` head; *total* None hides the count."""
    doc: Doc = {"@context": AS_CONTEXT, "id": collection_id, "type": "OrderedCollection"}
    if total is not None:
        doc["totalItems"] = total
    if first is not None:
        doc["first"] = first
    return doc


def ordered_collection_page(
    page_id: str, part_of: str, items: Sequence[Any], next_page: str | None
) -> Doc:
    doc: Doc = {
        "@context": AS_CONTEXT,
        "id": page_id,
        "type": "OrderedCollectionPage",
        "partOf": part_of,
        "orderedItems": list(items),
    }
    if next_page is not None:
        doc["next"] = next_page
    return doc


def _public_key(key_id: str, owner: str, pem: str) -> Doc:
    return {"id": key_id, "owner": owner, "publicKeyPem": pem}


def _activity(
    kind: str,
    activity_id: str,
    actor: str,
    *,
    to: Sequence[str] | None = None,
    cc: Sequence[str] | None = None,
    audience: str | None = None,
    context: Any = AS_CONTEXT,
) -> Doc:
    doc: Doc = {"@context": context, "id": activity_id, "type": kind, "actor": actor}
    if to is not None:
        doc["to"] = list(to)
    if cc:
        doc["cc"] = list(cc)
    if audience is not None:
        doc["audience"] = audience
    return doc


def _embedded(obj: Mapping[str, Any]) -> Doc:
    return {k: v for k, v in obj.items() if k != "@context"}


def _wrapping(
    kind: str,
    activity_id: str,
    actor: str,
    obj: Mapping[str, Any],
    to: Sequence[str] | None,
    cc: Sequence[str] | None,
    audience: str | None,
) -> Doc:
    # The activity carries the object's @context (a Person's security terms, say).
    context = obj["@context"] if "@context" in obj else note_context()
    to = list(to) if to is not None else list(obj.get("to", []))
    cc = list(cc) if cc is not None else list(obj.get("cc", []))
    doc = _activity(kind, activity_id, actor, to=to, audience=audience, context=context)
    doc["cc"] = cc
    if kind == "Create" and "published" in obj:
        doc["published"] = obj["published"]
    doc["object"] = _embedded(obj)
    return doc


def _response(
    kind: str, activity_id: str, actor: str, obj: Mapping[str, Any], to: Sequence[str] | None
) -> Doc:
    inner = obj.get("actor")
    recipients = list(to) if to is not None else ([inner] if isinstance(inner, str) else [])
    doc = _activity(kind, activity_id, actor, to=recipients)
    doc["object"] = _embedded(obj)
    return doc


# --- addressing -------------------------------------------------------------------------------


def addressing_for(
    visibility: str, *, actor_followers: str, mentions: Sequence[str]
) -> tuple[list[str], list[str]]:
    """``(to, cc)`` for a post of *visibility* (PROTOCOL.md §3).

    ``public``, ``unlisted``, ``followers`` or ``direct``; ``internal`` (never serialized)
    and anything else raise ``ValueError``, as does a ``direct`` post without recipients.
    """
    people = list(dict.fromkeys(m for m in mentions if m != actor_followers))
    if visibility == "public":
        return [AS_PUBLIC], [actor_followers, *people]
    if visibility == "unlisted":
        return [actor_followers], [AS_PUBLIC, *people]
    if visibility == "followers":
        return [actor_followers], people
    if visibility == "direct":
        if not people:
            raise ValueError("a direct post needs at least one recipient")
        return people, []
    if visibility == "internal":
        raise ValueError("internal content is never serialized")
    raise ValueError(f"unknown visibility {visibility!r}")


def audience_kind(item: Activity | RemoteNote, *, actor_followers: str | None) -> AudienceKind:
    """Mastodon's visibility inference from ``to``/``cc`` (PROTOCOL.md §3).

    ``public`` (Public in ``to``), ``unlisted`` (Public in ``cc`` only), ``followers`` (the
    author's followers collection addressed; unknown when *actor_followers* is None),
    ``direct`` (every recipient Mention-tagged, or no recipient at all) or ``limited``
    (explicit recipients not all tagged: group and wall posts). For an :class:`Activity`
    the tags of an embedded object count.
    """
    addressing = item.addressing
    if addressing.public_in_to:
        return "public"
    if addressing.public_in_cc:
        return "unlisted"
    recipients = addressing.recipients
    if actor_followers is not None and actor_followers in recipients:
        return "followers"
    mentioned = set(item.mentions if isinstance(item, RemoteNote) else _embedded_mentions(item))
    return "direct" if all(r in mentioned for r in recipients) else "limited"


def _embedded_mentions(activity: Activity) -> tuple[str, ...]:
    if activity.object is None:
        return ()
    try:
        return _mentions_and_hashtags(activity.object.get("tag"))[0]
    except (VocabError, AttributeError, TypeError):
        return ()


# --- parsers ----------------------------------------------------------------------------------


def parse_activity(doc: Mapping[str, Any]) -> Activity:
    """Parse an activity envelope: ``id``, ``type`` and ``actor`` are required."""
    return _guarded(_parse_activity, doc)


def parse_actor(
    doc: Mapping[str, Any], *, fetched_url: str, key_id: str | None = None
) -> RemoteActor:
    """Parse an actor fetched from *fetched_url*, enforcing the origin rules.

    An actor may publish several keys (``publicKey`` as a list): the one whose ``id`` is
    *key_id* is taken (the first when *key_id* is None or no entry has it, which a caller
    binding a key id then refuses). The chosen key passes every rule a single key does.
    A key given only by reference (``"publicKey": "<key id>"``) is returned with an empty
    ``public_key_pem``: the PEM is the key document's, read by :mod:`federation.keys`.
    """
    return _guarded(_parse_actor, doc, fetched_url, key_id)


def parse_note(obj: Mapping[str, Any]) -> RemoteNote:
    """Parse a Note, Article, Page, Question, ChatMessage, Video, Audio, Image or Event."""
    return _guarded(_parse_note, obj)


def primary_type(value: Any) -> str | None:
    """The type name of an ActivityStreams ``type`` value, or None when it has none.

    A string, or the first item of a list of at most 8 (JSON-LD allows several types:
    ``["Like"]``, ``["Note", "https://example.org/ns#Extra"]``); 1 to 64 characters. The
    one rule for every reader of ``type``: the inbox, the parsers and the handlers must
    agree on what an activity is, or a check made for one type could be skipped by another.
    """
    if isinstance(value, list) and value and len(value) <= 8:
        value = value[0]
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TYPE:
        return None
    return value


def note_title(obj: Mapping[str, Any]) -> str | None:
    """The title of an Article, Page or one of ``LINKED_TYPES`` (its ``name``, else the first
    ``nameMap`` value).

    Plain text, at most 512 characters; None for other types and for a missing, empty or
    malformed title (left out, never failing the note). Escape it when rendering.
    """
    if not isinstance(obj, Mapping) or primary_type(obj.get("type")) not in TITLED_TYPES:
        return None
    return _plain_name(obj)


def poll_options(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The option names of a Question (``oneOf``, else ``anyOf``), in order, deduplicated.

    Plain text, each at most 512 characters, at most ``MAX_POLL_OPTIONS``; a malformed option
    is left out. Empty for other types. Escape them when rendering.
    """
    if not isinstance(obj, Mapping) or primary_type(obj.get("type")) != "Question":
        return ()
    choices = obj.get("oneOf")
    if not isinstance(choices, list):
        choices = obj.get("anyOf")
    if not isinstance(choices, list):
        return ()
    found: list[str] = []
    for choice in choices[:MAX_LIST]:
        name = _plain_name(choice) if isinstance(choice, Mapping) else None
        if name is not None and name not in found:
            found.append(name)
            if len(found) == MAX_POLL_OPTIONS:
                break
    return tuple(found)


def _plain_name(obj: Mapping[str, Any]) -> str | None:
    name = obj.get("name")
    name_map = obj.get("nameMap")
    if name is None and isinstance(name_map, Mapping):
        name = next((v for v in name_map.values() if isinstance(v, str)), None)
    if not isinstance(name, str) or len(name) > _MAX_NAME or not name.strip():
        return None
    return name


def _guarded(parse: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return parse(*args, **kwargs)
    except VocabError:
        raise
    except Exception as exc:
        # The promise is "a DTO or VocabError", whatever a hostile document contains.
        raise VocabError("malformed document") from exc


def _parse_activity(doc: Mapping[str, Any]) -> Activity:
    doc = _mapping(doc, "activity")
    obj = doc.get("object")
    embedded: Mapping[str, Any] | None = None
    if isinstance(obj, Mapping):
        embedded = obj
        object_id = _opt_url(obj.get("id"), "object.id")
    else:
        object_id = _opt_ref(obj, "object")
    published = doc.get("published")
    if _published_ms(published) is None:
        published = None  # unreadable: left out, like any bad optional value
    return Activity(
        id=_url(doc.get("id"), "id"),
        type=_type_name(doc.get("type")),
        actor=_ref(doc.get("actor"), "actor"),
        object_id=object_id,
        object=embedded,
        target=_opt_ref(doc.get("target"), "target"),
        to=_recipients(doc.get("to"), "to"),
        cc=_recipients(doc.get("cc"), "cc"),
        audience=_opt_ref(doc.get("audience"), "audience"),
        published=published,
        raw=doc,
    )


def _parse_actor(doc: Mapping[str, Any], fetched_url: str, wanted_key: str | None) -> RemoteActor:
    doc = _mapping(doc, "actor")
    uri = _url(doc.get("id"), "id")
    if strip_fragment(uri) != strip_fragment(_url(fetched_url, "fetched URL")):
        _fail("actor id does not match the URL it was fetched from")
    actor_type = _type_name(doc.get("type"))
    if actor_type not in ACTOR_TYPES:
        _fail(f"{actor_type} is not an actor type")
    username = doc.get("preferredUsername")
    instance_actor = actor_type in _INSTANCE_ACTOR_TYPES
    if username is None and instance_actor:
        # Lemmy 0.19.3's site actor (its signed-fetch signer) has no preferredUsername
        # (Lemmy PR #4713 made it optional for that reason): name it after its host, as
        # Mastodon names its own instance actor. A person still needs one.
        username = urlsplit(uri).hostname
    limit = 253 if instance_actor else 64
    if not isinstance(username, str) or len(username) > limit or not _USERNAME.fullmatch(username):
        _fail("preferredUsername missing or malformed")

    def endpoint(value: Any, what: str, *, required: bool = False) -> str | None:
        if value is None and not required:
            return None
        url = _url(value, what)
        if not same_origin(url, uri):
            _fail(f"{what} is not on the actor's origin")
        return url

    endpoints = doc.get("endpoints")
    shared = endpoints.get("sharedInbox") if isinstance(endpoints, Mapping) else None
    key = doc.get("publicKey")
    if isinstance(key, list) and key:
        # Several keys (a rotation in progress, a key per device): the one asked for.
        listed = (k for k in key[:MAX_LIST] if _key_ref(k) == wanted_key)
        key = next(listed, key[0])
    if isinstance(key, str):
        # The key named by its id only, its PEM served by a key document of its own (the
        # JSON-LD form of the same link; Mastodon resolves it too). The PEM stays empty
        # here: only the key resolver may fill it in, from that document, once the document
        # names this actor as its owner. An empty PEM verifies nothing.
        key_id = endpoint(key, "publicKey", required=True)
        pem = ""
    elif isinstance(key, Mapping):
        key_id = endpoint(key.get("id"), "publicKey.id", required=True)
        if key.get("owner") != uri:
            _fail("publicKey.owner is not the actor")
        pem = _text(key.get("publicKeyPem"), "publicKeyPem", _MAX_PEM) or ""
        if not pem:
            _fail("publicKeyPem missing")
    else:
        _fail("publicKey missing")
    inbox = endpoint(doc.get("inbox"), "inbox", required=True)
    assert inbox is not None and key_id is not None
    return RemoteActor(
        uri=uri,
        actor_type=actor_type,
        username=username,
        host=host_of_url(uri),
        display_name=_text(doc.get("name"), "name", _MAX_NAME) or username,
        summary_html=_text(doc.get("summary"), "summary", _MAX_SUMMARY) or "",
        inbox=inbox,
        shared_inbox=endpoint(shared, "sharedInbox"),
        outbox=endpoint(doc.get("outbox"), "outbox"),
        followers=endpoint(doc.get("followers"), "followers"),
        following=endpoint(doc.get("following"), "following"),
        key_id=key_id,
        public_key_pem=pem,
        manually_approves=doc.get("manuallyApprovesFollowers") is True,
        url=_link(doc.get("url")),
        icon_url=_link(doc.get("icon")),
        wall=_same_origin_or_none(doc.get("wall"), uri),
    )


def _key_ref(value: Any) -> Any:
    """The id of one ``publicKey`` entry: the entry itself when it is a reference."""
    return value.get("id") if isinstance(value, Mapping) else value


def _same_origin_or_none(value: Any, actor_uri: str) -> str | None:
    """Lenient, for optional extensions: an http(s) URL on the actor's origin, else None."""
    if not _is_url(value):  # a string, within the URL length cap, absolute http(s)
        return None
    assert isinstance(value, str)
    return value if same_origin(value, actor_uri) else None


def _parse_note(obj: Mapping[str, Any]) -> RemoteNote:
    obj = _mapping(obj, "object")
    kind = _type_name(obj.get("type"))
    if kind not in NOTE_TYPES:
        _fail(f"{kind} is not a note type")
    note_id = _url(obj.get("id"), "id")
    author = _ref(obj.get("attributedTo"), "attributedTo")
    if not same_origin(note_id, author):
        _fail("object and author are on different origins")
    content = obj.get("content")
    content_map = obj.get("contentMap")
    if content is None and isinstance(content_map, Mapping):
        content = next((v for v in content_map.values() if isinstance(v, str)), None)
    content = _text(content, "content", _MAX_CONTENT)
    if content and _is_text_source(obj.get("mediaType")):
        # PeerTube sends a video's description as Markdown (mediaType text/markdown): it is
        # text, not HTML, so it is escaped and its paragraphs and lines kept.
        content = _text(_text_as_html(content), "content", _MAX_CONTENT)
    mentions, hashtags = _mentions_and_hashtags(obj.get("tag"))
    context = obj.get("context")
    return RemoteNote(
        id=note_id,
        attributed_to=author,
        content_html=content or "",
        summary=_text(obj.get("summary"), "summary", _MAX_SUMMARY) or None,
        in_reply_to=_opt_ref(obj.get("inReplyTo"), "inReplyTo"),
        published_ms=_published_ms(obj.get("published")),
        updated_ms=_iso_ms(obj.get("updated"), "updated"),
        to=_recipients(obj.get("to"), "to"),
        cc=_recipients(obj.get("cc"), "cc"),
        mentions=mentions,
        hashtags=hashtags,
        wall_target=_opt_ref(obj.get("target"), "target"),
        url=_link(obj.get("url")),
        sensitive=obj.get("sensitive") is True,
        type=kind,
        audience=_opt_ref(obj.get("audience"), "audience"),
        conversation=context if isinstance(context, str) and _is_url(context) else None,
        attachments=_attachments(obj.get("attachment")),
        title=note_title(obj),
        poll_options=poll_options(obj),
        starts_ms=_date_ms(obj.get("startTime")) if kind == "Event" else None,
    )


def _is_text_source(media_type: Any) -> bool:
    """True when ``mediaType`` says ``content`` is Markdown, not HTML (PeerTube's videos).
    Only Markdown: a server that labels HTML otherwise would see its markup as text."""
    if not isinstance(media_type, str) or len(media_type) > 100:
        return False
    return media_type.split(";", 1)[0].strip().lower() == "text/markdown"


def _text_as_html(text: str) -> str:
    """*text* escaped, its blank-line-separated paragraphs as ``<p>``, its lines as ``<br>``
    (Markdown is not rendered: it reads well enough as text, and renders nothing unsafe)."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = (html.escape(block.strip()).replace("\n", "<br>") for block in blocks)
    return "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs if paragraph)


def _attachments(value: Any) -> tuple[Attachment, ...]:
    """Lenient: media with an http(s) URL (Mastodon's Document/Image/Video/Audio, Link);
    anything else, and anything beyond ``MAX_ATTACHMENTS``, is left out."""
    items = value if isinstance(value, list) else [value]
    found: list[Attachment] = []
    for item in items[: MAX_ATTACHMENTS * 2]:
        if not isinstance(item, Mapping):
            continue
        url = _link(item)  # its href (a Link) or url (Document, Image…), first http(s) one
        if url is None or len(url) > _MAX_URL:
            continue
        media_type = item.get("mediaType")
        name = item.get("name")
        found.append(
            Attachment(
                url=url,
                media_type=media_type
                if isinstance(media_type, str) and len(media_type) < 100
                else None,
                description=name[:_MAX_ATTACHMENT_NAME] if isinstance(name, str) and name else None,
            )
        )
        if len(found) == MAX_ATTACHMENTS:
            break
    return tuple(found)


def _fail(reason: str) -> NoReturn:
    raise VocabError(reason)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(f"{what} is not a JSON object")
    return value


def _is_url(value: Any) -> bool:
    if not isinstance(value, str) or not value or len(value) > _MAX_URL:
        return False
    try:
        origin_of_url(value)
    except ValueError:
        return False
    return True


def _url(value: Any, what: str) -> str:
    if not _is_url(value):
        _fail(f"{what} is not an absolute http(s) URL")
    assert isinstance(value, str)
    return value


def _opt_url(value: Any, what: str) -> str | None:
    return None if value is None else _url(value, what)


def _ref(value: Any, what: str) -> str:
    """A URL, an object with a URL ``id``, or a non-empty list whose first item is either."""
    if isinstance(value, list):
        if not value or len(value) > MAX_LIST:
            _fail(f"{what} is an empty or over-long list")
        value = value[0]
    if isinstance(value, Mapping):
        value = value.get("id")
    return _url(value, what)


def _opt_ref(value: Any, what: str) -> str | None:
    return None if value is None else _ref(value, what)


def _text(value: Any, what: str, max_len: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        _fail(f"{what} is not a string of at most {max_len} characters")
    return value


def _type_name(value: Any) -> str:
    name = primary_type(value)
    if name is None:
        _fail("type missing or malformed")
    return name


def _recipients(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_LIST:
        _fail(f"{what} lists too many recipients")
    found: list[str] = []
    for item in items:
        iri = item.get("id") if isinstance(item, Mapping) else item
        if isinstance(iri, str) and iri in PUBLIC_ALIASES:
            found.append(AS_PUBLIC)
        elif isinstance(iri, str) and _is_url(iri):
            found.append(iri)
        # Anything else ("", an acct: URI, junk) addresses nobody we could reach: left out.
        # Leaving a recipient out never widens who may read the post.
    return tuple(dict.fromkeys(found))


def _mentions_and_hashtags(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    tags = value if isinstance(value, list) else [value]
    if len(tags) > MAX_LIST:
        _fail("too many tags")
    mentions: list[str] = []
    hashtags: list[str] = []
    for tag in tags:
        if not isinstance(tag, Mapping):
            continue  # a bare link or junk: not a tag we act on
        # A tag we cannot use (no http(s) href, a name too long) is left out, not fatal.
        if tag.get("type") == "Mention":
            href = tag.get("href")
            if isinstance(href, str) and _is_url(href):
                mentions.append(href)
        elif tag.get("type") == "Hashtag":
            name = tag.get("name")
            if not isinstance(name, str) or len(name) > 4 * _MAX_HASHTAG:
                continue
            name = name.strip().removeprefix("#").lower()
            if 0 < len(name) <= _MAX_HASHTAG and not any(c.isspace() or c == "#" for c in name):
                hashtags.append(name)
    return tuple(dict.fromkeys(mentions)), tuple(dict.fromkeys(hashtags))


def _link(value: Any, depth: int = 0) -> str | None:
    """Lenient: the first http(s) URL of a url/icon property (string, Link, Image, list)."""
    if depth > 3:
        return None
    if isinstance(value, str):
        return value if _is_url(value) else None
    if isinstance(value, Mapping):
        return _link(value.get("href"), depth + 1) or _link(value.get("url"), depth + 1)
    if isinstance(value, list):
        for item in value[:8]:
            found = _link(item, depth + 1)
            if found is not None:
                return found
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_ms(value: Any, what: str) -> int | None:
    """A date-time (:func:`_date_ms`) to epoch milliseconds; fails on an unreadable one.

    For ``updated``, which decides whether an Update replaces what we have."""
    if value is None:
        return None
    moment = _date_ms(value)
    if moment is None:
        _fail(f"{what} is not an ISO-8601 date-time")
    return moment


def _published_ms(value: Any) -> int | None:
    """``published`` in epoch milliseconds, or None when missing or unreadable: it only
    places a post in time (callers fall back to its arrival), so it never fails the post."""
    return _date_ms(value)


def _date_ms(value: Any) -> int | None:
    """ISO-8601 (AS2) or an RFC 1123 / RFC 850 HTTP date, seen in the wild, to epoch
    milliseconds; a time without a zone is taken as UTC. None when it is neither."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        # Through UTC first: "9999-12-31T23:59:59-14:00" is a valid string but lies past the
        # last datetime; a moment no datetime can hold would fail whoever shows it later.
        return (moment.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)
    except (OverflowError, ValueError):
        return None
