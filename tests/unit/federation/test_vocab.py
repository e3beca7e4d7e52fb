"""vocab: builders match PROTOCOL.md shapes; parsers enforce origins and never crash."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from federation import vocab
from federation.types import AS_PUBLIC, Activity
from federation.urls import Urls
from federation.vocab import (
    VocabError,
    addressing_for,
    audience_kind,
    parse_activity,
    parse_actor,
    parse_note,
)

URLS = Urls("https://acme.example")
ALICE = "https://acme.example/users/alice"
FOLLOWERS = "https://acme.example/users/alice/followers"
BOB = "https://partner.example/users/bob"
BOB_FOLLOWERS = "https://partner.example/users/bob/followers"
PEM = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"

# --- builders against PROTOCOL.md --------------------------------------------------------------

FOLLOW = {
    "@context": "https://www.w3.org/ns/activitystreams",
    "id": "https://acme.example/activities/follow/7f1c",
    "type": "Follow",
    "actor": ALICE,
    "object": BOB,
    "to": [BOB],
}
EMBEDDED_FOLLOW = {
    "id": "https://acme.example/activities/follow/7f1c",
    "type": "Follow",
    "actor": ALICE,
    "object": BOB,
}


def test_follow_accept_undo_match_protocol() -> None:
    built = vocab.follow(activity_id=FOLLOW["id"], actor=ALICE, object_id=BOB)  # type: ignore[arg-type]
    assert built == FOLLOW
    accepted = vocab.accept(
        activity_id="https://partner.example/users/bob#accepts/follows/91",
        actor=BOB,
        obj=EMBEDDED_FOLLOW,
    )
    assert accepted == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": "https://partner.example/users/bob#accepts/follows/91",
        "type": "Accept",
        "actor": BOB,
        "object": EMBEDDED_FOLLOW,
        "to": [ALICE],
    }
    rejected = vocab.reject(activity_id="https://x.example/r", actor=BOB, obj=EMBEDDED_FOLLOW)
    assert rejected["type"] == "Reject" and rejected["object"] == EMBEDDED_FOLLOW
    undone = vocab.undo(
        activity_id="https://acme.example/activities/undo/2b9e",
        actor=ALICE,
        obj={**EMBEDDED_FOLLOW, "@context": "https://www.w3.org/ns/activitystreams"},
    )
    assert undone == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": "https://acme.example/activities/undo/2b9e",
        "type": "Undo",
        "actor": ALICE,
        "object": EMBEDDED_FOLLOW,
    }


PROTOCOL_CREATE = {
    "@context": [
        "https://www.w3.org/ns/activitystreams",
        {"sensitive": "as:sensitive", "Hashtag": "as:Hashtag"},
    ],
    "id": "https://acme.example/users/alice/notes/123/activity",
    "type": "Create",
    "actor": ALICE,
    "published": "2026-03-02T09:00:00Z",
    "to": [FOLLOWERS],
    "cc": [BOB],
    "object": {
        "id": "https://acme.example/users/alice/notes/123",
        "type": "Note",
        "attributedTo": ALICE,
        "published": "2026-03-02T09:00:00Z",
        "to": [FOLLOWERS],
        "cc": [BOB],
        "content": "<p>Working on the Q2 tender</p>",
        "tag": [
            {"type": "Mention", "href": BOB, "name": "@bob@partner.example"},
            {"type": "Hashtag", "href": "https://acme.example/tags/tender", "name": "#tender"},
        ],
        "attachment": [],
        "sensitive": False,
        "url": "https://acme.example/@alice/123",
    },
}


def _alice_note(**extra: Any) -> dict[str, Any]:
    to, cc = addressing_for("followers", actor_followers=FOLLOWERS, mentions=[BOB])
    return vocab.note(
        note_id="https://acme.example/users/alice/notes/123",
        attributed_to=ALICE,
        content_html="<p>Working on the Q2 tender</p>",
        published_iso="2026-03-02T09:00:00Z",
        to=to,
        cc=cc,
        mentions=[(BOB, "@bob@partner.example")],
        hashtags=[("https://acme.example/tags/tender", "tender")],
        url="https://acme.example/@alice/123",
        **extra,
    )


def test_create_note_matches_protocol() -> None:
    built = vocab.create(
        activity_id="https://acme.example/users/alice/notes/123/activity",
        actor=ALICE,
        obj=_alice_note(),
    )
    obj = built.pop("object")
    expected = copy.deepcopy(PROTOCOL_CREATE)
    expected_obj = expected.pop("object")
    assert built == expected
    assert set(obj) - set(expected_obj) == {"inReplyTo"}
    assert obj["inReplyTo"] is None
    assert {k: obj[k] for k in expected_obj} == expected_obj
    # Our own parser reads back what we emit.
    note = parse_note(obj)
    assert note.mentions == (BOB,) and note.hashtags == ("tender",)
    assert audience_kind(note, actor_followers=FOLLOWERS) == "followers"


def test_update_and_delete_match_protocol() -> None:
    edited = _alice_note(updated_iso="2026-03-02T09:30:00Z")
    built = vocab.update(
        activity_id="https://acme.example/users/alice/notes/123#updates/1700000000",
        actor=ALICE,
        obj=edited,
    )
    assert built["type"] == "Update" and built["to"] == [FOLLOWERS] and built["cc"] == [BOB]
    assert built["object"]["updated"] == "2026-03-02T09:30:00Z"
    assert "published" not in built
    deleted = vocab.delete(
        activity_id="https://acme.example/users/alice/notes/123#delete",
        actor=ALICE,
        object_id="https://acme.example/users/alice/notes/123",
        to=[FOLLOWERS],
        cc=[BOB],
    )
    assert deleted == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": "https://acme.example/users/alice/notes/123#delete",
        "type": "Delete",
        "actor": ALICE,
        "to": [FOLLOWERS],
        "cc": [BOB],
        "object": {"id": "https://acme.example/users/alice/notes/123", "type": "Tombstone"},
    }


def test_update_of_a_person_carries_its_context() -> None:
    doc = _person()
    built = vocab.update(activity_id=ALICE + "#updates/1", actor=ALICE, obj=doc, to=[AS_PUBLIC])
    assert built["@context"] == vocab.person_context()
    assert "@context" not in built["object"]


def test_like_announce_add_and_wall_post() -> None:
    assert vocab.like(
        activity_id="https://acme.example/users/alice#likes/77",
        actor=ALICE,
        object_id="https://partner.example/users/bob/statuses/55",
    ) == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": "https://acme.example/users/alice#likes/77",
        "type": "Like",
        "actor": ALICE,
        "object": "https://partner.example/users/bob/statuses/55",
    }
    boost = vocab.announce(
        activity_id="https://acme.example/users/alice/notes/124/activity",
        actor=ALICE,
        obj="https://partner.example/users/bob/statuses/55",
        to=[FOLLOWERS],
        cc=[BOB],
        published_iso="2026-03-02T10:00:00Z",
    )
    assert boost["published"] == "2026-03-02T10:00:00Z" and boost["cc"] == [BOB]
    wall = "https://acme.example/users/alice/wall"
    added = vocab.add(
        activity_id="https://acme.example/users/alice/wall/add/9",
        actor=ALICE,
        object_id="https://partner.example/notes/9",
        target=wall,
        to=[FOLLOWERS, BOB],
    )
    assert added == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": "https://acme.example/users/alice/wall/add/9",
        "type": "Add",
        "actor": ALICE,
        "to": [FOLLOWERS, BOB],
        "object": "https://partner.example/notes/9",
        "target": wall,
    }
    post = vocab.note(
        note_id="https://partner.example/notes/9",
        attributed_to=BOB,
        content_html="<p>@alice congrats</p>",
        published_iso="2026-03-02T09:00:00Z",
        to=[ALICE],
        cc=[FOLLOWERS],
        mentions=[(ALICE, "@alice@acme.example")],
        wall=(wall, ALICE),
    )
    assert post["target"] == {"type": "OrderedCollection", "id": wall, "attributedTo": ALICE}
    parsed = parse_note(post)
    assert parsed.wall_target == wall
    assert audience_kind(parsed, actor_followers=BOB_FOLLOWERS) == "limited"


def _person(**overrides: Any) -> dict[str, Any]:
    return vocab.person(
        URLS,
        username="alice",
        display_name="Alice",
        summary_html="<p>Hi</p>",
        public_key_pem=PEM,
        manually_approves=False,
        published_iso="2026-01-01T00:00:00Z",
        **overrides,
    )


def test_person_shape_and_round_trip() -> None:
    doc = _person(icon_url="https://acme.example/media/a.png")
    assert doc["@context"][:2] == [
        "https://www.w3.org/ns/activitystreams",
        "https://w3id.org/security/v1",
    ]
    assert doc["endpoints"] == {"sharedInbox": "https://acme.example/inbox"}
    assert doc["publicKey"] == {
        "id": ALICE + "#main-key",
        "owner": ALICE,
        "publicKeyPem": PEM,
    }
    assert doc["discoverable"] is False and doc["indexable"] is False
    actor = parse_actor(json.loads(json.dumps(doc)), fetched_url=ALICE + "#main-key")
    assert actor.username == "alice" and actor.host == "acme.example"
    assert actor.inbox == URLS.inbox("alice") and actor.shared_inbox == URLS.shared_inbox
    assert actor.icon_url == "https://acme.example/media/a.png"
    assert actor.url == URLS.profile_page("alice")


def test_key_only_and_instance_actor() -> None:
    key_only = vocab.key_only_actor(
        actor_id=ALICE,
        preferred_username="alice",
        inbox=URLS.inbox("alice"),
        outbox=URLS.outbox("alice"),
        key_id=URLS.key_id("alice"),
        public_key_pem=PEM,
    )
    # outbox: Lemmy's Person cannot be read without one (its fetches are unsigned by default)
    assert set(key_only) == {
        "@context",
        "id",
        "type",
        "preferredUsername",
        "inbox",
        "outbox",
        "publicKey",
    }
    parse_actor(key_only, fetched_url=ALICE)
    app = vocab.instance_actor(Urls("http://127.0.0.1:8000"), PEM, "ACME")
    assert app["type"] == "Application" and app["id"] == "http://127.0.0.1:8000/actor"
    assert app["publicKey"]["id"] == "http://127.0.0.1:8000/actor#main-key"
    assert app["preferredUsername"] == "127.0.0.1"
    actor = parse_actor(app, fetched_url="http://127.0.0.1:8000/actor")
    assert actor.actor_type == "Application"


def test_collections() -> None:
    head = vocab.ordered_collection(FOLLOWERS, None, FOLLOWERS + "?page=1")
    assert "totalItems" not in head and head["first"] == FOLLOWERS + "?page=1"
    assert vocab.ordered_collection(FOLLOWERS, 3, None)["totalItems"] == 3
    page = vocab.ordered_collection_page(FOLLOWERS + "?page=1", FOLLOWERS, (BOB,), None)
    assert page["orderedItems"] == [BOB] and "next" not in page
    assert vocab.ordered_collection_page("a", "b", [], "c")["next"] == "c"


def test_with_context() -> None:
    doc = vocab.with_context(_alice_note())
    assert next(iter(doc)) == "@context" and doc["@context"] == vocab.note_context()


# --- addressing ------------------------------------------------------------------------------


def test_addressing_for() -> None:
    assert addressing_for("public", actor_followers=FOLLOWERS, mentions=[BOB, BOB]) == (
        [AS_PUBLIC],
        [FOLLOWERS, BOB],
    )
    assert addressing_for("unlisted", actor_followers=FOLLOWERS, mentions=[]) == (
        [FOLLOWERS],
        [AS_PUBLIC],
    )
    assert addressing_for("followers", actor_followers=FOLLOWERS, mentions=[BOB]) == (
        [FOLLOWERS],
        [BOB],
    )
    assert addressing_for("direct", actor_followers=FOLLOWERS, mentions=[BOB]) == ([BOB], [])
    for bad in ("internal", "Internal", "", "everyone"):
        with pytest.raises(ValueError):
            addressing_for(bad, actor_followers=FOLLOWERS, mentions=[BOB])
    with pytest.raises(ValueError):
        addressing_for("direct", actor_followers=FOLLOWERS, mentions=[])


def _activity(to: list[str], cc: list[str], tags: list[dict[str, str]] | None = None) -> Activity:
    obj: dict[str, Any] = {"id": "https://partner.example/notes/1", "type": "Note"}
    if tags is not None:
        obj["tag"] = tags
    return parse_activity(
        {
            "id": "https://partner.example/a/1",
            "type": "Create",
            "actor": BOB,
            "to": to,
            "cc": cc,
            "object": obj,
        }
    )


def test_audience_kind_follows_mastodon() -> None:
    def kind(to: list[str], cc: list[str], tags: list[dict[str, str]] | None = None) -> str:
        return audience_kind(_activity(to, cc, tags), actor_followers=BOB_FOLLOWERS)

    assert kind(["as:Public"], [BOB_FOLLOWERS]) == "public"
    assert kind(["Public"], []) == "public"
    assert kind([BOB_FOLLOWERS], [AS_PUBLIC]) == "unlisted"
    assert kind([BOB_FOLLOWERS], [ALICE]) == "followers"
    assert kind([], [BOB_FOLLOWERS]) == "followers"
    mention = [{"type": "Mention", "href": ALICE}]
    assert kind([ALICE], [], mention) == "direct"
    assert kind([ALICE], []) == "limited"
    group = "https://acme.example/groups/projx"
    assert kind([group], [group + "/members"], mention) == "limited"
    # Without the author's followers collection we cannot say "followers": fail closed.
    act = _activity([BOB_FOLLOWERS], [])
    assert audience_kind(act, actor_followers=None) == "limited"


# --- parsers ---------------------------------------------------------------------------------


def test_parse_activity_shapes() -> None:
    act = parse_activity(
        {
            "id": "https://partner.example/a/1",
            "type": "Like",
            "actor": {"id": BOB, "type": "Person"},
            "object": "https://acme.example/users/alice/notes/1",
            "to": "as:Public",
            "cc": [{"id": FOLLOWERS}],
            "published": "2026-03-02T10:00:00.123+01:00",
            "audience": {"id": "https://acme.example/groups/x"},
        }
    )
    assert act.actor == BOB and act.object is None
    assert act.object_id == "https://acme.example/users/alice/notes/1"
    assert act.to == (AS_PUBLIC,) and act.cc == (FOLLOWERS,)
    assert act.audience == "https://acme.example/groups/x"
    embedded = parse_activity({**PROTOCOL_CREATE})
    assert embedded.object is not None and embedded.object_id == PROTOCOL_CREATE["object"]["id"]  # type: ignore[index]
    assert embedded.raw is not None


BAD_ACTIVITIES: list[Any] = [
    None,
    [],
    "x",
    {},
    {"id": "https://p.example/a", "type": "Like"},
    {"id": "https://p.example/a", "actor": BOB},
    {"id": "ftp://p.example/a", "type": "Like", "actor": BOB},
    {"id": "/a", "type": "Like", "actor": BOB},
    {"id": "https://p.example/a", "type": "Like", "actor": "acct:bob@p.example"},
    {"id": "https://p.example/a", "type": "Like", "actor": {"type": "Person"}},
    {"id": "https://p.example/a", "type": "Like", "actor": []},
    {"id": "https://p.example/a", "type": 5, "actor": BOB},
    {"id": "https://p.example/a", "type": "x" * 65, "actor": BOB},
    {"id": "https://user@p.example/a", "type": "Like", "actor": BOB},
    {"id": "https://p.example/a", "type": "Like", "actor": BOB, "to": [BOB] * 1001},
    {"id": "https://p.example/a", "type": "Like", "actor": BOB, "object": 7},
    {"id": "https://p.example/a", "type": "Like", "actor": BOB, "object": {"id": 7}},
    {"id": "https://p.example/" + "a" * 3000, "type": "Like", "actor": BOB},
    {"id": "https://p.example/a b", "type": "Like", "actor": BOB},
    {"id": "https://p.example\t/a", "type": "Like", "actor": BOB},
]


@pytest.mark.parametrize("doc", BAD_ACTIVITIES)
def test_parse_activity_rejects_junk(doc: Any) -> None:
    with pytest.raises(VocabError):
        parse_activity(doc)


def _actor_doc(**overrides: Any) -> dict[str, Any]:
    doc = {
        "id": BOB,
        "type": "Person",
        "preferredUsername": "bob",
        "name": "Bob",
        "inbox": BOB + "/inbox",
        "outbox": BOB + "/outbox",
        "followers": BOB_FOLLOWERS,
        "endpoints": {"sharedInbox": "https://partner.example/inbox"},
        "publicKey": {"id": BOB + "#main-key", "owner": BOB, "publicKeyPem": PEM},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def test_parse_actor_accepts_mastodon_shape() -> None:
    actor = parse_actor(_actor_doc(manuallyApprovesFollowers=True), fetched_url=BOB)
    assert actor.key_id == BOB + "#main-key" and actor.manually_approves
    assert actor.following is None and actor.display_name == "Bob"
    groupish = parse_actor(_actor_doc(type="Group", name=None), fetched_url=BOB)
    assert groupish.display_name == "bob"


def test_parse_actor_reads_a_key_named_by_reference_without_a_pem() -> None:
    """The PEM of a referenced key is the key document's (federation.keys), never assumed."""
    actor = parse_actor(_actor_doc(publicKey=BOB + "/key"), fetched_url=BOB)
    assert actor.key_id == BOB + "/key" and actor.public_key_pem == ""
    several = _actor_doc(publicKey=[BOB + "/key/1", BOB + "/key/2"])
    assert parse_actor(several, fetched_url=BOB, key_id=BOB + "/key/2").key_id == BOB + "/key/2"


@pytest.mark.parametrize("kind", ["Application", "Service"])
def test_an_instance_actor_without_preferred_username_is_named_after_its_host(kind: str) -> None:
    """Lemmy 0.19.3's site actor, its signer of fetches, has no preferredUsername."""
    doc = _actor_doc(type=kind, preferredUsername=None)
    assert parse_actor(doc, fetched_url=BOB).username == "partner.example"


EVIL = "https://evil.example"
BAD_ACTORS: list[dict[str, Any]] = [
    _actor_doc(id="https://partner.example/users/mallory"),  # not what was fetched
    _actor_doc(type="Note"),
    _actor_doc(type=None),
    _actor_doc(preferredUsername=None),
    _actor_doc(preferredUsername=""),
    _actor_doc(preferredUsername="bob smith"),
    _actor_doc(preferredUsername="bob@evil.example"),
    _actor_doc(preferredUsername="bob/x"),
    _actor_doc(preferredUsername="b" * 65),
    _actor_doc(preferredUsername=["bob"]),
    _actor_doc(inbox=None),
    _actor_doc(inbox=EVIL + "/inbox"),
    _actor_doc(inbox="http://partner.example/users/bob/inbox"),  # other scheme: other origin
    _actor_doc(inbox="https://partner.example:8443/users/bob/inbox"),
    _actor_doc(outbox=EVIL + "/outbox"),
    _actor_doc(followers=EVIL + "/f"),
    _actor_doc(following=EVIL + "/f"),
    _actor_doc(endpoints={"sharedInbox": EVIL + "/inbox"}),
    _actor_doc(endpoints={"sharedInbox": "https://partner.example.evil.example/inbox"}),
    _actor_doc(publicKey=None),
    _actor_doc(publicKey="x"),
    _actor_doc(publicKey=EVIL + "/keys/bob"),  # a reference must stay on the actor's origin
    _actor_doc(publicKey=[EVIL + "/keys/bob"]),
    _actor_doc(type="Application", preferredUsername=""),
    _actor_doc(publicKey={"id": EVIL + "/k", "owner": BOB, "publicKeyPem": PEM}),
    _actor_doc(publicKey={"id": BOB + "#k", "owner": BOB + "x", "publicKeyPem": PEM}),
    _actor_doc(publicKey={"id": BOB + "#k", "publicKeyPem": PEM}),
    _actor_doc(publicKey={"id": BOB + "#k", "owner": BOB}),
    _actor_doc(publicKey={"id": BOB + "#k", "owner": BOB, "publicKeyPem": ""}),
    _actor_doc(publicKey={"id": BOB + "#k", "owner": BOB, "publicKeyPem": 5}),
    _actor_doc(name=7),
    _actor_doc(summary=["x"]),
]


@pytest.mark.parametrize("doc", BAD_ACTORS)
def test_parse_actor_enforces_origin_and_shape(doc: dict[str, Any]) -> None:
    with pytest.raises(VocabError):
        parse_actor(doc, fetched_url=BOB)


def test_parse_actor_fetched_url_must_be_sane() -> None:
    with pytest.raises(VocabError):
        parse_actor(_actor_doc(), fetched_url="not a url")


def test_parse_actor_is_lenient_with_display_links() -> None:
    actor = parse_actor(
        _actor_doc(url=[{"type": "Link", "href": "https://partner.example/@bob"}], icon="junk"),
        fetched_url=BOB,
    )
    assert actor.url == "https://partner.example/@bob" and actor.icon_url is None


def _note_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "https://partner.example/notes/9",
        "type": "Note",
        "attributedTo": BOB,
        "content": "<p>hi</p>",
        "to": [ALICE],
        "cc": [BOB_FOLLOWERS],
        "published": "2026-03-02T09:00:00Z",
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def test_parse_note_variants() -> None:
    n = parse_note(
        _note_doc(
            type="Article",
            content=None,
            contentMap={"en": "<p>en</p>", "de": "<p>de</p>"},
            attributedTo=[{"type": "Person", "id": BOB}, {"type": "Group", "id": EVIL}],
            updated="2026-03-02T09:30:00.5+00:00",
            tag=[
                {"type": "Mention", "href": ALICE, "name": "@alice"},
                {"type": "Hashtag", "name": "#Tender"},
                {"type": "Hashtag", "name": "#tender"},
                {"type": "Hashtag", "name": "#two words"},
                {"type": "Emoji", "name": ":x:"},
                "https://partner.example/junk",
            ],
            sensitive=True,
            inReplyTo={"id": "https://acme.example/users/alice/notes/1"},
            summary="cw",
            url="https://partner.example/@bob/9",
        )
    )
    assert n.content_html == "<p>en</p>" and n.attributed_to == BOB
    assert n.published_ms == 1772442000000 and n.updated_ms == 1772443800500
    assert n.mentions == (ALICE,) and n.hashtags == ("tender",)
    assert n.sensitive and n.summary == "cw" and n.type == "Article"
    assert n.in_reply_to == "https://acme.example/users/alice/notes/1"
    assert audience_kind(n, actor_followers=BOB_FOLLOWERS) == "followers"
    bare = parse_note(_note_doc(content=None, published=None, to="as:Public", cc=None))
    assert bare.content_html == "" and bare.published_ms is None and bare.to == (AS_PUBLIC,)
    assert parse_note(_note_doc(tag="https://partner.example/junk")).mentions == ()
    naive = parse_note(_note_doc(published="2026-03-02T09:00:00"))
    assert naive.published_ms == 1772442000000


BAD_NOTES: list[dict[str, Any]] = [
    _note_doc(type="Person"),
    _note_doc(id=None),
    _note_doc(attributedTo=None),
    _note_doc(attributedTo=EVIL + "/users/x"),  # author on another origin than the note
    _note_doc(attributedTo=[]),
    _note_doc(content=5),
    _note_doc(content="x" * 600_000),
    _note_doc(updated=["x"]),
    _note_doc(tag=[{}] * 1001),
    _note_doc(inReplyTo=5),
    _note_doc(target={"type": "OrderedCollection"}),
]


@pytest.mark.parametrize(
    ("field", "value"),
    [("to", [[BOB]]), ("to", ["javascript:x"]), ("to", [{"a": 1}]), ("to", [""])],
)
def test_an_unusable_recipient_of_an_activity_is_left_out(field: str, value: Any) -> None:
    """Leaving a recipient out never widens who may read; the activity itself stands."""
    act = parse_activity({"id": "https://p.example/a", "type": "Like", "actor": BOB, field: value})
    assert act.to == ()


@pytest.mark.parametrize("published", ["yesterday", 5, "2026-13-45"])
def test_an_unreadable_published_is_left_out(published: Any) -> None:
    act = parse_activity(
        {"id": "https://p.example/a", "type": "Like", "actor": BOB, "published": published}
    )
    assert act.published is None
    assert parse_note(_note_doc(published=published)).published_ms is None


def test_unusable_tags_and_recipients_of_a_note_are_left_out() -> None:
    note = parse_note(
        _note_doc(
            to=5,
            tag=[
                {"type": "Mention", "href": "bob"},
                {"type": "Mention", "href": ALICE},
                {"type": "Hashtag", "name": 5},
                {"type": "Hashtag", "name": "#kept"},
            ],
        )
    )
    assert note.to == () and note.mentions == (ALICE,) and note.hashtags == ("kept",)


@pytest.mark.parametrize("doc", BAD_NOTES)
def test_parse_note_rejects(doc: dict[str, Any]) -> None:
    with pytest.raises(VocabError):
        parse_note(doc)


# --- fuzz: hand-rolled, deterministic --------------------------------------------------------

_ATOMS: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "x",
    "as:Public",
    "acct:bob@partner.example",
    "https://partner.example/users/bob",
    "https://partner.example/users/bob#main-key",
    "http://[::1]:99999/x",
    "https://ex\u00e4mple.com/\u0000",
    "\u202e",
    "2026-03-02T09:00:00Z",
    "9" * 30,
    [],
    {},
]
_KEYS = [
    "id",
    "type",
    "actor",
    "object",
    "to",
    "cc",
    "tag",
    "publicKey",
    "inbox",
    "endpoints",
    "preferredUsername",
    "attributedTo",
    "content",
    "contentMap",
    "published",
    "updated",
    "owner",
    "publicKeyPem",
    "href",
    "name",
    "target",
    "url",
    "icon",
]


def _junk(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.45:
        return rng.choice(_ATOMS)
    if roll < 0.7:
        return [_junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(_KEYS): _junk(rng, depth + 1) for _ in range(rng.randint(0, 8))}


def _mutate(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        key = rng.choice([*out, *_KEYS])
        if rng.random() < 0.2:
            out.pop(key, None)
        else:
            out[key] = _junk(rng)
    return out


def test_parsers_only_ever_raise_vocab_error() -> None:
    rng = random.Random(4242)
    seeds = [PROTOCOL_CREATE, PROTOCOL_CREATE["object"], _actor_doc(), _note_doc()]
    for _ in range(4000):
        doc = _mutate(rng, rng.choice(seeds)) if rng.random() < 0.7 else _junk(rng)  # type: ignore[arg-type]
        for parse in (
            parse_activity,
            parse_note,
            lambda d: parse_actor(d, fetched_url=BOB),
        ):
            try:
                result = parse(doc)
            except VocabError:
                continue
            if isinstance(result, Activity):
                audience_kind(result, actor_followers=BOB_FOLLOWERS)


def test_note_attachments_are_parsed_leniently_and_bounded() -> None:
    image = {
        "type": "Document",
        "mediaType": "image/png",
        "url": "https://media.partner.example/a.png",
        "name": "A chart",
    }
    n = parse_note(
        _note_doc(
            attachment=[
                image,
                {"type": "Video", "url": [{"type": "Link", "href": "https://m.partner.example/v"}]},
                {"type": "Image", "url": "javascript:alert(1)"},  # no http(s) URL: left out
                {"type": "Document", "url": "https://m.partner.example/" + "x" * 3000},  # too long
                "https://partner.example/bare-string",  # not an object: left out
                {"type": "Document", "name": "no url"},
                {"type": "Audio", "url": "https://m.partner.example/a", "name": 42, "mediaType": 7},
            ]
        )
    )
    assert [(a.url, a.media_type, a.description) for a in n.attachments] == [
        ("https://media.partner.example/a.png", "image/png", "A chart"),
        ("https://m.partner.example/v", None, None),
        ("https://m.partner.example/a", None, None),
    ]
    assert parse_note(_note_doc(attachment=image)).attachments[0].description == "A chart"
    many = parse_note(_note_doc(attachment=[image] * 50))
    assert len(many.attachments) == vocab.MAX_ATTACHMENTS
    assert parse_note(_note_doc()).attachments == ()


def test_an_advertised_wall_is_kept_only_on_the_actors_origin() -> None:
    def wall_of(value: Any) -> str | None:
        return parse_actor(_actor_doc(wall=value), fetched_url=BOB).wall

    assert wall_of(f"{BOB}/wall") == f"{BOB}/wall"
    assert wall_of(f"{EVIL}/users/bob/wall") is None  # another origin: ignored, not trusted
    assert wall_of("javascript:alert(1)") is None
    assert wall_of({"id": f"{BOB}/wall"}) is None
    assert wall_of(None) is None


def test_our_person_document_names_its_wall() -> None:
    doc = vocab.person(
        URLS,
        username="alice",
        display_name="Alice",
        summary_html="",
        public_key_pem="PEM",
        manually_approves=False,
        published_iso="2026-01-01T00:00:00Z",
    )
    assert doc["wall"] == "https://acme.example/users/alice/wall"


def test_markdown_content_is_text_with_its_paragraphs() -> None:
    """PeerTube labels a video's description ``text/markdown``: escaped, never rendered."""
    markdown = "Intro **bold**\r\n\r\n<script>x</script>\nline two\n \n"
    parsed = parse_note(_note_doc(mediaType="text/markdown", content=markdown))
    assert parsed.content_html == (
        "<p>Intro **bold**</p><p>&lt;script&gt;x&lt;/script&gt;<br>line two</p>"
    )
    html_note = parse_note(_note_doc(mediaType="text/html", content="<p>a<br>b</p>"))
    assert html_note.content_html == "<p>a<br>b</p>"
    assert parse_note(_note_doc(content="<p>a</p>")).content_html == "<p>a</p>"
