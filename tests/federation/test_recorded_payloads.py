"""Recorded payloads from Mastodon, Lemmy, Pleroma, GoToSocial and Smithereen (their public
test data and documentation, kept verbatim in ``payloads/``; sources in ``payloads/README.md``)
parse, and apply on one of our in-process instances.

Parsing runs on the documents exactly as recorded. To apply one, the document is moved onto
our test network with :func:`rehost`: the sender's origin becomes a fake ``*.example`` origin
on alpha's allowlist, whose actor is stored directly in alpha's database (nothing is fetched),
and the people it addresses become alpha's own users. The activity then goes straight to
``inbound.handle`` (HTTP signatures are deliberately bypassed: they are covered elsewhere) and
the effect is read back from storage.
"""

from __future__ import annotations

import calendar
import itertools
import json
import logging
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from federation import vocab
from federation.hosts import host_of_url, origin_of_url
from federation.ports import StoredInbound
from federation.types import AS_PUBLIC, RemoteActor
from server.domain import Actor, FollowState, Visibility
from server.services import inbound, posting, remote
from server.storage import follows, posts, users
from tests.federation.conftest import Trio
from tests.support.network import Instance

PAYLOADS = Path(__file__).parent / "payloads"
Doc = dict[str, Any]

ACTIVITY_FIXTURES = [
    "lemmy_accept.json",
    "lemmy_create_chat_message_0.19.json",
    "lemmy_create_private_message.json",
    "lemmy_follow.json",
    "lemmy_undo_follow.json",
    "mastodon_create_direct_message.json",
    "mastodon_create_note_followers_only.json",
    "mastodon_create_note_unlisted_reply.json",
    "mastodon_delete_tombstone.json",
    "mastodon_follow.json",
    "mastodon_like.json",
    "mastodon_undo_follow.json",
    "mastodon_undo_like.json",
    "mastodon_update_person.json",
    "pleroma_create_note.json",
    "smithereen_create_note.json",
]
NOTE_FIXTURES = [
    "mastodon_docs_hashtag_note.json",
    "mastodon_note_mentions_hashtags.json",
    "smithereen_docs_wall_post_note.json",
]
ACTOR_FIXTURES = ["gotosocial_person.json", "smithereen_person.json"]


def load(name: str) -> Doc:
    doc = json.loads((PAYLOADS / name).read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def ms(*moment: int) -> int:
    """Epoch milliseconds of a UTC (year, month, day, hour, minute, second)."""
    return calendar.timegm((*moment, 0, 0, 0)) * 1000


# --- (a) every recorded document parses, and says what the JSON says -------------------------


def test_every_fixture_is_listed_with_its_source() -> None:
    fixtures = sorted(p.name for p in PAYLOADS.glob("*.json"))
    assert fixtures == sorted(ACTIVITY_FIXTURES + NOTE_FIXTURES + ACTOR_FIXTURES)
    readme = (PAYLOADS / "README.md").read_text(encoding="utf-8")
    for name in fixtures:
        assert f"`{name}`" in readme, f"{name} has no source in payloads/README.md"


@pytest.mark.parametrize("name", ACTIVITY_FIXTURES)
def test_activity_envelope_parses(name: str) -> None:
    doc = load(name)
    activity = vocab.parse_activity(doc)
    assert activity.id == doc["id"]
    assert activity.type == doc["type"]
    assert activity.actor == doc["actor"]
    obj = doc["object"]
    assert activity.object_id == (obj["id"] if isinstance(obj, dict) else obj)
    assert activity.object == (obj if isinstance(obj, dict) else None)


def _notes() -> Iterator[Any]:
    for name in ACTIVITY_FIXTURES:
        obj = load(name)["object"]
        kind = load(name)["type"]
        if (
            isinstance(obj, dict)
            and kind in ("Create", "Update")
            and (obj["type"] not in vocab.ACTOR_TYPES)
        ):
            yield name
    yield from NOTE_FIXTURES


def _note_of(name: str) -> Doc:
    doc = load(name)
    return doc["object"] if "actor" in doc else doc


@pytest.mark.parametrize("name", list(_notes()))
def test_note_parses(name: str) -> None:
    obj = _note_of(name)
    note = vocab.parse_note(obj)
    assert note.id == obj["id"]
    assert note.attributed_to == obj["attributedTo"]
    assert note.type == obj["type"]
    assert note.content_html == obj["content"]


@pytest.mark.parametrize("name", [*ACTOR_FIXTURES, "mastodon_update_person.json"])
def test_actor_document_parses(name: str) -> None:
    doc = load(name)
    if doc["type"] == "Update":
        doc = doc["object"]
    actor = vocab.parse_actor(doc, fetched_url=doc["id"])
    assert actor.uri == doc["id"]
    assert actor.username == doc["preferredUsername"]
    assert actor.inbox == doc["inbox"]
    assert actor.key_id == doc["publicKey"]["id"]
    assert actor.public_key_pem == doc["publicKey"]["publicKeyPem"]
    assert actor.host == host_of_url(doc["id"])


def test_mastodon_unlisted_reply_fields() -> None:
    doc = load("mastodon_create_note_unlisted_reply.json")
    activity = vocab.parse_activity(doc)
    assert activity.to == ("https://mastodon.madrid/users/felix/followers",)
    assert activity.cc == (AS_PUBLIC, "https://mamot.fr/users/retiolus")
    assert activity.published == "2021-11-05T11:46:50Z"
    note = vocab.parse_note(doc["object"])
    assert note.id == "https://mastodon.madrid/users/felix/statuses/107224289116410645"
    assert note.in_reply_to == "https://mamot.fr/users/retiolus/statuses/107224244380204526"
    assert note.url == "https://mastodon.madrid/@felix/107224289116410645"
    assert note.mentions == ("https://mamot.fr/users/retiolus",)
    assert note.hashtags == ()
    assert note.summary is None
    assert note.sensitive is False
    assert note.published_ms == ms(2021, 11, 5, 11, 46, 50)
    # content wins over contentMap (they differ in this recording: "neverbeendisappointed")
    assert "i have never been disappointed by a thinkpad" in note.content_html
    assert note.conversation is None  # an ostatus tag: URI, not a URL
    followers = "https://mastodon.madrid/users/felix/followers"
    assert vocab.audience_kind(note, actor_followers=followers) == "unlisted"
    assert vocab.audience_kind(activity, actor_followers=followers) == "unlisted"


def test_mastodon_followers_only_fields() -> None:
    doc = load("mastodon_create_note_followers_only.json")
    activity = vocab.parse_activity(doc)
    followers = "https://fedi.aeracode.org/users/testmover/followers"
    assert activity.to == (followers,)  # a bare string in the recording
    assert activity.cc == ()
    note = vocab.parse_note(doc["object"])
    assert note.content_html == "<p>This is a followers-only post!</p>"
    assert note.mentions == note.hashtags == ()
    assert vocab.audience_kind(note, actor_followers=followers) == "followers"


def test_mastodon_delete_fields() -> None:
    activity = vocab.parse_activity(load("mastodon_delete_tombstone.json"))
    assert activity.type == "Delete"
    assert activity.object_id == (
        "https://fedi.aeracode.org/users/testmover/statuses/110758610463118408"
    )
    assert activity.object is not None and activity.object["type"] == "Tombstone"
    assert activity.to == (AS_PUBLIC,)  # "as:Public" in the recording


def test_mastodon_note_with_mentions_and_hashtags_fields() -> None:
    note = vocab.parse_note(load("mastodon_note_mentions_hashtags.json"))
    assert note.attributed_to == "https://fedi.aeracode.org/users/andrew"
    assert note.mentions == ("https://jointakahe.takahe.social/@takahe@jointakahe.org/",)
    assert note.hashtags == ("hashtags", "morehashtags")  # the Emoji tag is not one
    assert note.summary == "Testing post, pictures of cats"
    assert note.sensitive is True
    assert note.to == ("https://fedi.aeracode.org/users/andrew/followers",)
    assert note.cc == (AS_PUBLIC, "https://jointakahe.takahe.social/@takahe@jointakahe.org/")
    assert note.published_ms == ms(2023, 11, 15, 22, 15, 51)
    assert vocab.audience_kind(note, actor_followers=note.to[0]) == "unlisted"


def test_mastodon_direct_message_fields() -> None:
    activity = vocab.parse_activity(load("mastodon_create_direct_message.json"))
    assert activity.to == ("https://ds9.lemmy.ml/u/banme",)
    assert activity.cc == ()
    assert activity.object is not None
    note = vocab.parse_note(activity.object)
    assert note.mentions == ("https://ds9.lemmy.ml/u/banme",)
    assert note.in_reply_to == "https://ds9.lemmy.ml/post/11000"
    followers = "https://mastodon.world/users/nutomic/followers"
    assert vocab.audience_kind(note, actor_followers=followers) == "direct"
    assert vocab.audience_kind(activity, actor_followers=followers) == "direct"


def test_mastodon_like_and_undo_fields() -> None:
    like = vocab.parse_activity(load("mastodon_like.json"))
    assert like.object_id == "https://ds9.lemmy.ml/post/147"
    assert like.object is None
    assert like.to == like.cc == ()
    undo = vocab.parse_activity(load("mastodon_undo_like.json"))
    assert undo.object is not None and undo.object["type"] == "Like"
    assert undo.object_id == "https://mastodon.madrid/users/felix#likes/212341"
    assert undo.object["object"] == like.object_id


def test_follow_and_undo_follow_pairs() -> None:
    follow = vocab.parse_activity(load("mastodon_follow.json"))
    undo = vocab.parse_activity(load("mastodon_undo_follow.json"))
    assert follow.object_id == "https://ds9.lemmy.ml/c/testcom"
    assert undo.object_id == follow.id  # the same Follow, embedded
    lemmy_follow = vocab.parse_activity(load("lemmy_follow.json"))
    assert lemmy_follow.to == ("http://enterprise.lemmy.ml/c/main",)  # plain http in Lemmy's tests
    accept = vocab.parse_activity(load("lemmy_accept.json"))
    assert accept.actor == lemmy_follow.object_id
    assert accept.object_id == lemmy_follow.id
    lemmy_undo = vocab.parse_activity(load("lemmy_undo_follow.json"))
    assert lemmy_undo.object is not None and lemmy_undo.object["type"] == "Follow"
    assert lemmy_undo.object["object"] == lemmy_follow.object_id


def test_mastodon_update_person_fields() -> None:
    activity = vocab.parse_activity(load("mastodon_update_person.json"))
    assert activity.to == (AS_PUBLIC,)
    assert activity.object is not None
    actor = vocab.parse_actor(activity.object, fetched_url=activity.actor)
    assert actor.display_name == "Test Mover"
    assert actor.actor_type == "Person"
    assert actor.followers == "https://fedi.aeracode.org/users/testmover/followers"
    assert actor.shared_inbox == "https://fedi.aeracode.org/inbox"
    assert actor.url == "https://fedi.aeracode.org/@testmover"
    assert actor.summary_html == ""
    assert actor.manually_approves is False


def test_mastodon_docs_hashtag_note_fields() -> None:
    note = vocab.parse_note(load("mastodon_docs_hashtag_note.json"))
    assert note.hashtags == ("cats",)
    assert note.to == note.cc == ()
    assert note.attributed_to == "https://example.com"


def test_lemmy_private_messages_fields() -> None:
    activity = vocab.parse_activity(load("lemmy_create_private_message.json"))
    assert activity.object is not None
    note = vocab.parse_note(activity.object)
    assert note.to == ("http://ds9.lemmy.ml/u/lemmy_alpha",)
    assert note.mentions == ()  # Lemmy does not tag the recipient
    assert note.published_ms == ms(2021, 10, 29, 15, 31, 56) + 58
    assert vocab.audience_kind(note, actor_followers=None) == "limited"
    chat = vocab.parse_activity(load("lemmy_create_chat_message_0.19.json"))
    assert chat.to == ("https://voyager.lemmy.ml/u/nutomic",)
    assert chat.object is not None and chat.object["type"] == "ChatMessage"


def test_pleroma_note_fields() -> None:
    activity = vocab.parse_activity(load("pleroma_create_note.json"))
    assert activity.object is not None
    note = vocab.parse_note(activity.object)
    assert note.to == ("https://enterprise.lemmy.ml/u/picard", AS_PUBLIC)
    assert note.mentions == ("https://enterprise.lemmy.ml/u/picard",)
    assert note.summary is None  # "" in the recording
    assert note.conversation == "https://greenish.red/contexts/f6244742-0526-4b84-ac4f-ceadf1fb4e56"
    assert note.published_ms == ms(2021, 10, 26, 10, 28, 35) + 602
    assert vocab.audience_kind(note, actor_followers=None) == "public"


def test_gotosocial_actor_fields() -> None:
    doc = load("gotosocial_person.json")
    actor = vocab.parse_actor(doc, fetched_url=doc["id"])
    assert actor.username == "1happyturtle"
    assert actor.display_name == "happy little turtle :3"
    assert actor.manually_approves is True
    assert actor.shared_inbox is None  # GoToSocial has no shared inbox
    assert actor.summary_html == "<p>i post about things that concern me</p>"
    assert actor.url == "http://example.org/@1happyturtle"


def test_smithereen_fields() -> None:
    doc = load("smithereen_person.json")
    actor = vocab.parse_actor(doc, fetched_url=doc["id"])
    assert actor.username == "grishka"
    assert actor.display_name == "Григорий Клюшников"
    assert actor.shared_inbox == "https://friends.grishka.me/activitypub/sharedInbox"
    assert actor.icon_url == doc["icon"]["url"]
    activity = vocab.parse_activity(load("smithereen_create_note.json"))
    assert activity.object is not None
    note = vocab.parse_note(activity.object)
    assert note.mentions == ("https://ds9.lemmy.ml/u/nutomic",)  # a Mention without a name
    assert vocab.audience_kind(note, actor_followers=actor.followers) == "public"
    wall = vocab.parse_note(load("smithereen_docs_wall_post_note.json"))
    assert wall.wall_target == "http://smithereen.local:8080/users/4/wall"
    assert wall.cc == (AS_PUBLIC, "http://smithereen.local:8080/users/4")
    assert wall.content_html == "<p>Test.</p>"
    assert vocab.audience_kind(wall, actor_followers=None) == "unlisted"


# --- (b) moving a recording onto the test network and applying it ----------------------------


def fake_origin(url: str) -> str:
    """``https://mastodon.madrid`` → ``https://mastodon-madrid.example`` (ports kept apart)."""
    host = host_of_url(url)
    return "https://" + re.sub(r"[.:]", "-", host) + ".example"


def rehost(doc: Any, mapping: Mapping[str, str]) -> Any:
    """A deep copy of *doc* with every URL prefix of *mapping* replaced, wherever it occurs
    (ids, addressing, tags, inside HTML). Longest prefix first, only at a URL boundary, in one
    pass (a replacement is never replaced again)."""
    keys = sorted(mapping, key=len, reverse=True)
    pattern = re.compile("(" + "|".join(map(re.escape, keys)) + r")(?=$|[/#?\"'<\s])")

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda m: mapping[m.group(1)], value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    return fix(doc)


@dataclass
class Scene:
    """How one recording maps onto alpha: ``mapping`` rewrites it, ``people`` are the local
    users that stand in for the addressed foreign people (original URI → our user)."""

    alpha: Instance
    mapping: dict[str, str]
    people: dict[str, Actor]

    def __call__(self, doc: Any) -> Any:
        return rehost(doc, self.mapping)

    async def remote_actor(
        self,
        original_uri: str,
        *,
        doc: Doc | None = None,
        actor_type: str = "Person",
        display_name: str | None = None,
    ) -> Actor:
        """Store the sender in alpha's database: parsed from its recorded actor document when
        there is one, else with Mastodon's conventional endpoints."""
        uri = self(original_uri)
        if doc is not None:
            parsed = vocab.parse_actor(self(doc), fetched_url=uri)
        else:
            scheme, host = origin_of_url(uri)
            username = uri.rstrip("/").rsplit("/", 1)[-1]
            parsed = RemoteActor(
                uri=uri,
                actor_type=actor_type,
                username=username,
                host=host,
                display_name=display_name or username,
                summary_html="",
                inbox=f"{uri}/inbox",
                shared_inbox=f"{scheme}://{host}/inbox",
                outbox=f"{uri}/outbox",
                followers=f"{uri}/followers",
                following=f"{uri}/following",
                key_id=f"{uri}#main-key",
                public_key_pem=load("gotosocial_person.json")["publicKey"]["publicKeyPem"],
                manually_approves=False,
                url=None,
                icon_url=None,
            )
        return await remote.store_actor(self.alpha.ctx, parsed)


async def scene(
    alpha: Instance,
    *,
    senders: Sequence[str],
    people: Mapping[str, str] | None = None,
    locked: Sequence[str] = (),
) -> Scene:
    """*senders*: origins of the foreign servers speaking (moved to fake origins alpha allows);
    *people*: foreign actor URI → username of the alpha user standing in for them."""
    mapping: dict[str, str] = {}
    locals_: dict[str, Actor] = {}
    for original, name in (people or {}).items():
        person = alpha.people.get(name) or await alpha.user(name, locked=name in locked)
        mapping[original] = person.uri
        locals_[original] = person
    for origin in senders:
        fake = fake_origin(origin)
        mapping[origin] = fake
        await alpha.allow(host_of_url(fake))
    return Scene(alpha, mapping, locals_)


_inbound_ids = itertools.count(1)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _inbound_log() -> Iterator[list[str]]:
    logger = logging.getLogger("steelyard.inbound")
    capture, level = _Capture(), logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        yield capture.messages
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)


async def deliver(instance: Instance, activity: Doc) -> list[str]:
    """Apply *activity* as the dispatcher would after a verified POST; returns what the inbound
    handler logged (it logs, and applies nothing, when it ignores an activity)."""
    actor = activity["actor"]
    actor_uri = actor if isinstance(actor, str) else actor["id"]
    item = StoredInbound(
        id=next(_inbound_ids),
        activity=activity,
        actor_uri=actor_uri,
        origin_host=host_of_url(actor_uri),
        attempts=1,
    )
    with _inbound_log() as messages:
        await inbound.handle(instance.ctx, item)
    return messages


def create_for(note: Doc) -> Doc:
    """The Create{Note} Mastodon wraps a recorded Note in (same addressing), for the recordings
    that are bare objects."""
    body = {k: v for k, v in note.items() if k != "@context"}
    activity: Doc = {"@context": note.get("@context", "https://www.w3.org/ns/activitystreams")}
    activity.update(
        id=f"{note['id']}/activity",
        type="Create",
        actor=note["attributedTo"],
        to=note.get("to", []),
        cc=note.get("cc", []),
        object=body,
    )
    return activity


async def query(instance: Instance, sql: str, *params: object) -> list[sqlite3.Row]:
    def read(conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return conn.execute(sql, params).fetchall()

    return await instance.ctx.db.read(read)


async def post_row(instance: Instance, uri: str) -> sqlite3.Row:
    found = await query(instance, "SELECT * FROM posts WHERE uri = ?", uri)
    assert len(found) == 1, f"expected one post {uri}, found {len(found)}"
    return found[0]


async def recipients(instance: Instance, post_id: int) -> set[int]:
    rows = await query(instance, "SELECT actor_id FROM post_recipients WHERE post_id = ?", post_id)
    return {int(r[0]) for r in rows}


async def tags(instance: Instance, post_id: int) -> set[str]:
    rows = await query(instance, "SELECT tag FROM post_tags WHERE post_id = ?", post_id)
    return {str(r[0]) for r in rows}


async def notification_kinds(instance: Instance, person: Actor) -> list[str]:
    rows = await query(
        instance, "SELECT kind FROM notifications WHERE recipient_id = ? ORDER BY id", person.id
    )
    return [str(r[0]) for r in rows]


async def can_read(instance: Instance, post_id: int, viewer: Actor) -> bool:
    found = await instance.ctx.db.read(posts.select_post, post_id, viewer.id)
    return found is not None


async def in_home_feed(instance: Instance, post_id: int, viewer: Actor) -> bool:
    page = await instance.ctx.db.read(posts.select_home_feed, viewer.id, before=None, limit=100)
    return any(p.id == post_id for p in page.items)


def sanitized(instance: Instance, html: str) -> str:
    return instance.ctx.text.sanitize_remote(html)


# --- Create{Note} ------------------------------------------------------------------------------


async def test_mastodon_unlisted_reply_is_stored_for_the_mentioned_colleague(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["https://mastodon.madrid"],
        people={"https://mamot.fr/users/retiolus": "retiolus"},
    )
    retiolus = s.people["https://mamot.fr/users/retiolus"]
    # retiolus's status felix answers is one of retiolus's posts here.
    parent = await posting.publish_post(
        alpha.ctx, retiolus, posting.Draft("Which laptop should I buy?", Visibility.PUBLIC)
    )
    s.mapping["https://mamot.fr/users/retiolus/statuses/107224244380204526"] = parent.uri
    await s.remote_actor("https://mastodon.madrid/users/felix")
    activity = s(load("mastodon_create_note_unlisted_reply.json"))

    log = await deliver(alpha, activity)
    await deliver(alpha, activity)  # a repeat changes nothing

    note = activity["object"]
    row = await post_row(alpha, note["id"])
    assert not log
    assert row["visibility"] == Visibility.PUBLIC  # unlisted is readable like public here
    assert row["content_html"] == sanitized(alpha, note["content"])
    assert "i have never been disappointed by a thinkpad" in row["content_html"]
    assert row["url"] == "https://mastodon-madrid.example/@felix/107224289116410645"
    assert row["in_reply_to_uri"] == parent.uri
    assert row["in_reply_to_id"] == parent.id
    assert row["thread_root_id"] == parent.id
    assert row["deleted_at"] is None
    assert await recipients(alpha, row["id"]) == {retiolus.id}
    # The reply mentions the person replied to: one notification, a reply.
    assert await notification_kinds(alpha, retiolus) == ["reply"]
    assert await can_read(alpha, row["id"], retiolus)
    thread = await alpha.ctx.db.read(posts.select_thread, parent.id, retiolus.id)
    assert row["id"] in {p.id for p in thread}


async def _tagged_note(alpha: Instance) -> tuple[Doc, Actor, sqlite3.Row]:
    s = await scene(
        alpha,
        senders=["https://fedi.aeracode.org"],
        people={"https://jointakahe.takahe.social/@takahe@jointakahe.org/": "takahe"},
    )
    takahe = s.people["https://jointakahe.takahe.social/@takahe@jointakahe.org/"]
    await s.remote_actor("https://fedi.aeracode.org/users/andrew", display_name="Andrew Godwin")
    note = s(load("mastodon_note_mentions_hashtags.json"))
    assert not await deliver(alpha, create_for(note))
    return note, takahe, await post_row(alpha, note["id"])


async def test_mastodon_note_with_hashtags_and_a_mention(trio: Trio) -> None:
    alpha = trio.alpha
    note, takahe, row = await _tagged_note(alpha)

    assert row["visibility"] == Visibility.PUBLIC
    assert await tags(alpha, row["id"]) == {"hashtags", "morehashtags"}
    assert await recipients(alpha, row["id"]) == {takahe.id}
    assert await notification_kinds(alpha, takahe) == ["mention"]
    # Sanitized once, on arrival: Mastodon's translate="no" goes, the microformats stay.
    # The content warning comes first, then the content, sanitized once on arrival.
    warning, _, rest = row["content_html"].partition("</strong></p>")
    assert warning.startswith("<p><strong>Content warning: ")
    assert rest.startswith(sanitized(alpha, note["content"]))
    assert "translate=" not in row["content_html"]
    assert 'class="mention hashtag"' in row["content_html"]
    assert "I have included pictures of cats for your enjoyment." in row["content_html"]
    assert await in_home_feed(alpha, row["id"], takahe)


async def test_mastodon_content_warning_is_kept(trio: Trio) -> None:
    _note, _takahe, row = await _tagged_note(trio.alpha)
    assert "Testing post, pictures of cats" in row["content_html"]


async def test_mastodon_attachments_are_listed_as_links_with_their_descriptions(
    trio: Trio,
) -> None:
    note, _takahe, row = await _tagged_note(trio.alpha)
    content = row["content_html"]
    assert content.endswith("</ul>")
    for media in note["attachment"]:
        assert f'<a href="{media["url"]}" rel="nofollow noopener noreferrer">' in content
        assert f"Image: {media['name']}</a>" in content
    assert "<img" not in content  # nothing is loaded from the partner's media server


async def test_mastodon_followers_only_post_then_its_delete(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(alpha, senders=["https://fedi.aeracode.org"])
    follower, stranger = await alpha.user("carol"), await alpha.user("dave")
    # The sender as its recorded actor document (Update{Person}'s object) describes it.
    testmover = await s.remote_actor(
        "https://fedi.aeracode.org/users/testmover",
        doc=load("mastodon_update_person.json")["object"],
    )
    await alpha.ctx.db.write(
        follows.insert_follow,
        follower.id,
        testmover.id,
        state=FollowState.ACCEPTED,
        uri=None,
        now_ms=alpha.ctx.clock.now_ms(),
    )
    create = s(load("mastodon_create_note_followers_only.json"))

    assert not await deliver(alpha, create)

    row = await post_row(alpha, create["object"]["id"])
    assert row["visibility"] == Visibility.FOLLOWERS
    assert row["content_html"] == "<p>This is a followers-only post!</p>"
    assert await can_read(alpha, row["id"], follower)
    assert await in_home_feed(alpha, row["id"], follower)
    assert not await can_read(alpha, row["id"], stranger)

    # When the recorded Delete{Tombstone} of the same status arrives
    assert not await deliver(alpha, s(load("mastodon_delete_tombstone.json")))

    row = await post_row(alpha, create["object"]["id"])
    assert row["deleted_at"] is not None  # hidden, the record kept for the archive
    assert not await can_read(alpha, row["id"], follower)
    tombstones = await query(alpha, "SELECT uri FROM tombstones WHERE uri = ?", row["uri"])
    assert len(tombstones) == 1
    # A late or replayed Create does not bring it back
    await deliver(alpha, create)
    row = await post_row(alpha, create["object"]["id"])
    assert row["deleted_at"] is not None


async def test_mastodon_direct_message(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["https://mastodon.world"],
        people={"https://ds9.lemmy.ml/u/banme": "banme"},
    )
    banme, stranger = s.people["https://ds9.lemmy.ml/u/banme"], await alpha.user("dave")
    await s.remote_actor("https://mastodon.world/users/nutomic")
    activity = s(load("mastodon_create_direct_message.json"))

    assert not await deliver(alpha, activity)

    row = await post_row(alpha, activity["object"]["id"])
    assert row["visibility"] == Visibility.DIRECT
    assert await recipients(alpha, row["id"]) == {banme.id}
    assert await can_read(alpha, row["id"], banme)
    assert await in_home_feed(alpha, row["id"], banme)
    assert not await can_read(alpha, row["id"], stranger)
    assert await notification_kinds(alpha, banme) == ["mention"]
    assert "osefioespjdfksasdwasdkflasewasdsdfsdfsdfsd" in row["content_html"]


async def test_lemmy_private_message_without_a_mention_tag(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["http://enterprise.lemmy.ml"],
        people={"http://ds9.lemmy.ml/u/lemmy_alpha": "lemmy_alpha"},
    )
    recipient, stranger = s.people["http://ds9.lemmy.ml/u/lemmy_alpha"], await alpha.user("dave")
    await s.remote_actor("http://enterprise.lemmy.ml/u/lemmy_beta")
    activity = s(load("lemmy_create_private_message.json"))

    assert not await deliver(alpha, activity)

    row = await post_row(alpha, activity["object"]["id"])
    assert row["visibility"] == Visibility.DIRECT
    assert row["content_html"] == "hello"
    assert await recipients(alpha, row["id"]) == {recipient.id}
    assert await can_read(alpha, row["id"], recipient)
    assert await in_home_feed(alpha, row["id"], recipient)
    assert not await can_read(alpha, row["id"], stranger)
    # No Mention tag, so no notification: the message is only in the home feed.
    assert await notification_kinds(alpha, recipient) == []


async def test_lemmy_019_chat_message_is_stored_as_a_direct_message(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["https://enterprise.lemmy.ml"],
        people={"https://voyager.lemmy.ml/u/nutomic": "nutomic"},
    )
    recipient = s.people["https://voyager.lemmy.ml/u/nutomic"]
    await s.remote_actor("https://enterprise.lemmy.ml/u/nutomic")
    activity = s(load("lemmy_create_chat_message_0.19.json"))

    log = await deliver(alpha, activity)

    found = await query(alpha, "SELECT id FROM posts WHERE uri = ?", activity["object"]["id"])
    assert found, log
    assert await recipients(alpha, found[0]["id"]) == {recipient.id}


async def test_pleroma_public_note_with_a_mention(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["https://greenish.red"],
        people={"https://enterprise.lemmy.ml/u/picard": "picard"},
    )
    picard = s.people["https://enterprise.lemmy.ml/u/picard"]
    await s.remote_actor("https://greenish.red/users/nutomic")
    activity = s(load("pleroma_create_note.json"))

    assert not await deliver(alpha, activity)

    row = await post_row(alpha, activity["object"]["id"])
    assert row["visibility"] == Visibility.PUBLIC
    assert await recipients(alpha, row["id"]) == {picard.id}
    assert await notification_kinds(alpha, picard) == ["mention"]
    assert row["content_html"] == sanitized(alpha, activity["object"]["content"])
    assert "data-user" not in row["content_html"]  # Pleroma's attribute is not kept
    assert f'href="{picard.uri}"' in row["content_html"]
    assert row["content_html"].endswith(" test")


async def test_smithereen_reply_with_a_nameless_mention(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["https://friends.grishka.me"],
        people={"https://ds9.lemmy.ml/u/nutomic": "nutomic"},
    )
    nutomic = s.people["https://ds9.lemmy.ml/u/nutomic"]
    grishka = await s.remote_actor(
        "https://friends.grishka.me/users/1", doc=load("smithereen_person.json")
    )
    activity = s(load("smithereen_create_note.json"))

    assert not await deliver(alpha, activity)

    row = await post_row(alpha, activity["object"]["id"])
    assert row["author_id"] == grishka.id
    assert grishka.display_name == "Григорий Клюшников"
    assert row["visibility"] == Visibility.PUBLIC
    assert row["content_html"] == "<p>So does this federate now?</p>"
    assert await notification_kinds(alpha, nutomic) == ["mention"]


async def test_smithereen_wall_post_on_a_colleagues_wall(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["http://smithereen.local:8080"],
        people={"http://smithereen.local:8080/users/4": "wallowner"},
    )
    owner = s.people["http://smithereen.local:8080/users/4"]
    await s.remote_actor("http://smithereen.local:8080/users/1")
    note = s(load("smithereen_docs_wall_post_note.json"))
    assert note["target"]["id"] == f"{owner.uri}/wall"

    assert not await deliver(alpha, create_for(note))

    row = await post_row(alpha, note["id"])
    assert row["wall_owner_id"] == owner.id
    assert row["visibility"] == Visibility.PUBLIC
    assert row["content_html"] == "<p>Test.</p>"
    assert await notification_kinds(alpha, owner) == ["wall"]


# --- Like, Undo{Like} --------------------------------------------------------------------------


async def _liked_post(trio: Trio) -> tuple[Scene, Actor, int]:
    """alice's public post on alpha stands in for the Lemmy post felix liked."""
    alpha = trio.alpha
    alice = await alpha.user("alice")
    post = await posting.publish_post(
        alpha.ctx, alice, posting.Draft("Quarterly numbers are out.", Visibility.PUBLIC)
    )
    s = await scene(alpha, senders=["https://mastodon.madrid"])
    s.mapping["https://ds9.lemmy.ml/post/147"] = post.uri
    await s.remote_actor("https://mastodon.madrid/users/felix")
    return s, alice, post.id


async def _likes(instance: Instance, post_id: int) -> tuple[int, list[str]]:
    count = (await query(instance, "SELECT like_count FROM posts WHERE id = ?", post_id))[0][0]
    uris = await query(instance, "SELECT uri FROM likes WHERE post_id = ?", post_id)
    return int(count), [str(r[0]) for r in uris]


async def test_mastodon_like_is_counted_and_notified(trio: Trio) -> None:
    s, alice, post_id = await _liked_post(trio)
    like = s(load("mastodon_like.json"))

    assert not await deliver(trio.alpha, like)
    await deliver(trio.alpha, like)  # a repeat is not a second like

    assert await _likes(trio.alpha, post_id) == (1, [like["id"]])
    assert await notification_kinds(trio.alpha, alice) == ["like"]


async def test_mastodon_undo_like_removes_it(trio: Trio) -> None:
    s, alice, post_id = await _liked_post(trio)
    undo = s(load("mastodon_undo_like.json"))
    # The Like this Undo embeds (recorded as sent, minus the envelope's @context) comes first.
    assert not await deliver(trio.alpha, undo["object"])
    assert await _likes(trio.alpha, post_id) == (1, [undo["object"]["id"]])

    assert await notification_kinds(trio.alpha, alice) == ["like"]
    assert not await deliver(trio.alpha, undo)

    assert await _likes(trio.alpha, post_id) == (0, [])
    assert await notification_kinds(trio.alpha, alice) == []


async def test_mastodon_undo_like_with_another_like_id_removes_it(trio: Trio) -> None:
    s, _alice, post_id = await _liked_post(trio)
    await deliver(trio.alpha, s(load("mastodon_like.json")))  # #likes/212340
    assert (await _likes(trio.alpha, post_id))[0] == 1

    log = await deliver(trio.alpha, s(load("mastodon_undo_like.json")))  # undoes #likes/212341

    assert await _likes(trio.alpha, post_id) == (0, []), log


# --- Follow, Accept, Undo{Follow} --------------------------------------------------------------


async def _accept_queued_for(instance: Instance, follow_id: str) -> list[dict[str, Any]]:
    rows = await query(
        instance,
        "SELECT o.body, d.inbox_url, d.host, d.state FROM outbox_activities o"
        " JOIN deliveries d ON d.outbox_id = o.id WHERE o.activity_type = 'Accept'",
    )
    found = []
    for row in rows:
        body = json.loads(row["body"])
        if body["object"]["id"] == follow_id:
            found.append({**dict(row), "body": body})
    return found


async def test_mastodon_follow_is_accepted_then_undone(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["https://masto.asonix.dog"],
        people={"https://ds9.lemmy.ml/c/testcom": "testcom"},
    )
    testcom = s.people["https://ds9.lemmy.ml/c/testcom"]
    asonix = await s.remote_actor("https://masto.asonix.dog/users/asonix")
    follow = s(load("mastodon_follow.json"))

    assert not await deliver(alpha, follow)

    state = await alpha.ctx.db.read(follows.select_follow_state, asonix.id, testcom.id)
    assert state is FollowState.ACCEPTED
    assert await notification_kinds(alpha, testcom) == ["follow"]
    [accept] = await _accept_queued_for(alpha, follow["id"])
    assert accept["body"]["actor"] == testcom.uri
    assert accept["body"]["object"]["actor"] == asonix.uri
    assert accept["inbox_url"] == "https://masto-asonix-dog.example/users/asonix/inbox"
    assert accept["host"] == "masto-asonix-dog.example"
    assert accept["state"] == "queued"

    assert not await deliver(alpha, s(load("mastodon_undo_follow.json")))

    assert await alpha.ctx.db.read(follows.select_follow_state, asonix.id, testcom.id) is None
    assert await notification_kinds(alpha, testcom) == []  # "followed you" went with it


async def test_lemmy_follow_and_undo_follow(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["http://ds9.lemmy.ml"],
        people={"http://enterprise.lemmy.ml/c/main": "main"},
    )
    main = s.people["http://enterprise.lemmy.ml/c/main"]
    follower = await s.remote_actor("http://ds9.lemmy.ml/u/lemmy_alpha")
    follow = s(load("lemmy_follow.json"))

    assert not await deliver(alpha, follow)

    state = await alpha.ctx.db.read(follows.select_follow_state, follower.id, main.id)
    assert state is FollowState.ACCEPTED
    assert await alpha.ctx.db.read(follows.select_follow_uri, follower.id, main.id) == follow["id"]
    assert len(await _accept_queued_for(alpha, follow["id"])) == 1

    # Lemmy's recorded Undo embeds another Follow id of the same (actor, object) pair.
    undo = s(load("lemmy_undo_follow.json"))
    assert undo["object"]["id"] != follow["id"]
    assert await notification_kinds(alpha, main) == ["follow"]
    assert not await deliver(alpha, undo)

    assert await alpha.ctx.db.read(follows.select_follow_state, follower.id, main.id) is None
    assert await notification_kinds(alpha, main) == []


async def test_lemmy_follow_of_a_locked_colleague_waits_for_approval(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["http://ds9.lemmy.ml"],
        people={"http://enterprise.lemmy.ml/c/main": "main"},
        locked=["main"],
    )
    main = s.people["http://enterprise.lemmy.ml/c/main"]
    follower = await s.remote_actor("http://ds9.lemmy.ml/u/lemmy_alpha")
    follow = s(load("lemmy_follow.json"))

    assert not await deliver(alpha, follow)

    state = await alpha.ctx.db.read(follows.select_follow_state, follower.id, main.id)
    assert state is FollowState.PENDING
    assert await notification_kinds(alpha, main) == ["follow_request"]
    assert await _accept_queued_for(alpha, follow["id"]) == []


@pytest.mark.parametrize("stored_uri", ["recorded", "ours"])
async def test_lemmy_accept_of_our_follow(trio: Trio, stored_uri: str) -> None:
    """Roles reversed: ds9's lemmy_alpha is ours and followed the community; the Accept is
    matched by the Follow's id, or (when we stored another id) by its actor and object."""
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["http://enterprise.lemmy.ml"],
        people={"http://ds9.lemmy.ml/u/lemmy_alpha": "lemmy_alpha"},
    )
    s.mapping["http://ds9.lemmy.ml"] = alpha.base  # the Follow's id is on our side too
    ours = s.people["http://ds9.lemmy.ml/u/lemmy_alpha"]
    community = await s.remote_actor("http://enterprise.lemmy.ml/c/main", actor_type="Group")
    accept = s(load("lemmy_accept.json"))
    follow_id = accept["object"]["id"]
    assert follow_id.startswith(f"{alpha.base}/activities/follow/")
    await alpha.ctx.db.write(
        follows.insert_follow,
        ours.id,
        community.id,
        state=FollowState.PENDING,
        uri=follow_id if stored_uri == "recorded" else f"{alpha.base}/activities/follow/ours",
        now_ms=alpha.ctx.clock.now_ms(),
    )

    assert not await deliver(alpha, accept)

    state = await alpha.ctx.db.read(follows.select_follow_state, ours.id, community.id)
    assert state is FollowState.ACCEPTED


# --- Update{Person} ----------------------------------------------------------------------------


async def test_mastodon_update_person_refreshes_the_profile(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(alpha, senders=["https://fedi.aeracode.org"])
    uri = s("https://fedi.aeracode.org/users/testmover")
    before = await s.remote_actor(
        "https://fedi.aeracode.org/users/testmover", display_name="testmover (cached)"
    )
    assert before.display_name == "testmover (cached)"
    update = s(load("mastodon_update_person.json"))

    assert not await deliver(alpha, update)

    after = await alpha.ctx.db.read(users.select_actor_by_uri, uri)
    assert after is not None and after.id == before.id
    assert after.display_name == "Test Mover"
    assert after.profile_url == "https://fedi-aeracode-org.example/@testmover"
    endpoints = await query(
        alpha, "SELECT followers_url, shared_inbox_url, key_id FROM actors WHERE id = ?", after.id
    )
    assert dict(endpoints[0]) == {
        "followers_url": f"{uri}/followers",
        "shared_inbox_url": "https://fedi-aeracode-org.example/inbox",
        "key_id": f"{uri}#main-key",
    }


async def test_hostile_attachment_descriptions_render_inert(trio: Trio) -> None:
    alpha = trio.alpha
    s = await scene(
        alpha,
        senders=["https://fedi.aeracode.org"],
        people={"https://jointakahe.takahe.social/@takahe@jointakahe.org/": "takahe"},
    )
    await s.remote_actor("https://fedi.aeracode.org/users/andrew", display_name="Andrew Godwin")
    note = s(load("mastodon_note_mentions_hashtags.json"))
    note["attachment"] = [
        {
            "type": "Document",
            "mediaType": "image/png",
            "url": 'https://cdn.example/x.png"><script>alert(1)</script>',
            "name": "<img src=x onerror=alert(1)> chart",
        },
        {"type": "Document", "mediaType": "image/png", "url": "javascript:alert(1)", "name": "js"},
    ]
    assert not await deliver(alpha, create_for(note))
    content = (await post_row(alpha, note["id"]))["content_html"]
    assert "<script" not in content and "<img" not in content and "javascript:" not in content
    assert "Image: &lt;img src=x onerror=alert(1)&gt; chart</a>" in content
    assert ">js<" not in content  # an attachment without an http(s) URL is left out
