"""Shapes other servers really send, which an interop probe found refused or half-read:
one bad tag, recipient or date no longer costs the whole post; ``type`` as a list; an actor
with several keys; inbox POSTs labelled ``application/json``; a Date in asctime form; a
verified signed GET resets the sender's circuit; titles and poll options are read.

Every request is really signed and goes through the real inbox of an in-process instance
(real SQLite). A peer that is not a Steelyard (an actor with several keys, a document served
as plain JSON) is a :class:`StaticPeer`: fixed documents at fixed URLs on the test network.
Each relaxation comes with the check it must not weaken.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from federation import vocab
from federation.fetch import FetchError
from federation.types import AS_PUBLIC
from server.domain import Actor, Visibility
from server.services import posting
from server.storage import federation as fed
from tests.federation.conftest import PEER, Peered, Trio
from tests.federation.support import (
    ACTIVITY_JSON,
    AS_CONTEXT,
    Forger,
    Sent,
    cast,
    copy_of,
    digest_of,
    follow_across,
    http_date,
    person_key,
    plain_get,
    raw_post,
    sign_custom,
    signed_get,
    visible,
)
from tests.support.network import Fault, Instance

AS_PROFILE = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
SECURITY_CONTEXT = "https://w3id.org/security/v1"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- helpers ---------------------------------------------------------------------------------


def ms(*moment: int) -> int:
    """Epoch milliseconds of a UTC (year, month, day, hour, minute, second)."""
    return calendar.timegm((*moment, 0, 0, 0)) * 1000


async def send(
    target: Instance,
    activity: Mapping[str, Any],
    *,
    key_id: str,
    private_key_pem: str,
    content_type: str = ACTIVITY_JSON,
    date: str | None = None,
) -> Sent:
    """POST *activity* to *target*'s shared inbox, really signed over ``(request-target) host
    date digest content-type`` with exactly the Date and Content-Type given."""
    body = json.dumps(activity).encode()
    values = {
        "(request-target)": "post /inbox",
        "host": target.host,
        "date": date or http_date(target.ctx.clock.now()),
        "digest": digest_of(body),
        "content-type": content_type,
    }
    headers = {
        "Host": values["host"],
        "Date": values["date"],
        "Digest": values["digest"],
        "Content-Type": content_type,
        "Signature": sign_custom(
            private_key_pem, key_id=key_id, covered=list(values), values=values
        ),
    }
    return await raw_post(target, "/inbox", headers, body)


async def send_as(
    forger: Forger, target: Instance, activity: Mapping[str, Any], **how: Any
) -> Sent:
    return await send(
        target, activity, key_id=forger.key_id, private_key_pem=forger.private_key_pem, **how
    )


def asctime(moment: float) -> str:
    """RFC 9110 asctime-date (``Sun Nov  6 08:49:37 1994``), independent of the locale."""
    t = datetime.fromtimestamp(moment, UTC)
    clock = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{_DAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t.day:>2} {clock} {t.year}"


def rfc850(moment: float) -> str:
    """RFC 850 date (``Sunday, 06-Nov-94 08:49:37 GMT``), the obsolete form."""
    t = datetime.fromtimestamp(moment, UTC)
    day = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    clock = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{day[t.weekday()]}, {t.day:02d}-{_MONTHS[t.month - 1]}-{t.year % 100:02d} {clock} GMT"


async def inbox_rows(instance: Instance, activity_id: str) -> list[tuple[str, str | None]]:
    rows = await instance.rows(
        "SELECT state, last_error FROM inbox_activities WHERE activity_id = ?", activity_id
    )
    return [(str(r[0]), r[1]) for r in rows]


async def tags_of(instance: Instance, post_id: int) -> set[str]:
    rows = await instance.rows("SELECT tag FROM post_tags WHERE post_id = ?", post_id)
    return {str(r[0]) for r in rows}


async def like_count(instance: Instance, post_id: int) -> int:
    value = await instance.value("SELECT like_count FROM posts WHERE id = ?", post_id)
    assert isinstance(value, int)
    return value


@dataclass
class Shout:
    """bob (beta) speaks to alpha, where alice has a public post."""

    alpha: Instance
    beta: Instance
    alice: Actor
    bob: Forger
    post_id: int
    post_uri: str

    def like(self, name: str, kind: Any = "Like") -> dict[str, Any]:
        """bob's Like of alice's post."""
        return {
            "@context": AS_CONTEXT,
            "id": f"{self.bob.actor}#likes/{name}",
            "type": kind,
            "actor": self.bob.actor,
            "object": self.post_uri,
        }


async def shout(trio: Trio) -> Shout:
    people = await cast(trio)
    post = await posting.publish_post(
        trio.alpha.ctx, people.alice, posting.Draft("Audit on Monday", Visibility.PUBLIC)
    )
    bob = await Forger.of(trio.beta, people.bob)
    return Shout(trio.alpha, trio.beta, people.alice, bob, post.id, post.uri)


async def create_arrives(s: Shout, trio: Trio, note: dict[str, Any], **extra: Any) -> int:
    """bob's Create of *note* is accepted, applied without error, and stored: its post id."""
    activity = s.bob.create(note, **extra)
    sent = await send_as(s.bob, s.alpha, activity)
    assert sent.status == 202, sent.body
    await trio.net.settle()
    assert await inbox_rows(s.alpha, activity["id"]) == [("done", None)]
    post_id = await copy_of(s.alpha, note["id"])
    assert post_id is not None, "the post was dropped"
    return post_id


# --- 1. one bad sub-field no longer drops the post -------------------------------------------


@pytest.mark.parametrize(
    "bad_mention",
    [
        {"type": "Mention", "name": "@someone"},
        {"type": "Mention", "href": "acct:someone@beta.example", "name": "@someone"},
        {"type": "Mention", "href": "", "name": "@someone"},
    ],
    ids=["no-href", "acct-href", "empty-href"],
)
async def test_a_mention_without_a_usable_href_is_left_out_not_the_post(
    trio: Trio, bad_mention: dict[str, Any]
) -> None:
    s = await shout(trio)
    note = s.bob.public_note("<p>Hi @alice</p>", mentions=[s.alice.uri])
    note["tag"].append(bad_mention)

    post_id = await create_arrives(s, trio, note)

    assert vocab.parse_note(note).mentions == (s.alice.uri,)  # the good one is kept
    row = await s.alpha.rows("SELECT visibility FROM posts WHERE id = ?", post_id)
    assert row[0][0] == Visibility.PUBLIC


async def test_an_overlong_hashtag_is_left_out_not_the_post(trio: Trio) -> None:
    s = await shout(trio)
    note = s.bob.public_note("<p>#audit</p>")
    note["tag"] = [
        {"type": "Hashtag", "href": f"{s.beta.base}/tags/x", "name": "#" + "x" * 450},
        {"type": "Hashtag", "href": f"{s.beta.base}/tags/audit", "name": "#audit"},
        {"type": "Hashtag", "href": f"{s.beta.base}/tags/n", "name": 5},
    ]

    post_id = await create_arrives(s, trio, note)

    assert await tags_of(s.alpha, post_id) == {"audit"}


@pytest.mark.parametrize("where", ["to", "cc"])
async def test_an_empty_recipient_is_left_out_not_the_post(trio: Trio, where: str) -> None:
    s = await shout(trio)
    note = s.bob.public_note("<p>Minutes attached</p>")
    note[where] = [*note[where], "", "acct:alice@alpha.example"]

    post_id = await create_arrives(s, trio, note)

    parsed = vocab.parse_note(note)
    assert (parsed.to, parsed.cc) == ((AS_PUBLIC,), (s.bob.followers,))
    row = await s.alpha.rows("SELECT visibility FROM posts WHERE id = ?", post_id)
    assert row[0][0] == Visibility.PUBLIC


async def test_a_left_out_recipient_never_widens_the_audience(trio: Trio) -> None:
    s = await shout(trio)
    carol = trio.alpha.people["carol"]
    # A direct message to alice; the junk recipients must not make it readable by carol.
    note = s.bob.note("<p>Just you</p>", to=[s.alice.uri, "", "Public "], mentions=[s.alice.uri])

    post_id = await create_arrives(s, trio, note)

    row = await s.alpha.rows("SELECT visibility FROM posts WHERE id = ?", post_id)
    assert row[0][0] == Visibility.DIRECT
    recipients = await s.alpha.rows(
        "SELECT actor_id FROM post_recipients WHERE post_id = ?", post_id
    )
    assert {r[0] for r in recipients} == {s.alice.id}
    assert await visible(s.alpha, post_id, s.alice) is not None
    assert await visible(s.alpha, post_id, carol) is None


async def test_published_as_an_http_date_is_read(trio: Trio) -> None:
    s = await shout(trio)
    note = s.bob.public_note("<p>Dated the old way</p>", published="Thu, 01 Jan 2026 10:00:00 GMT")

    await create_arrives(s, trio, note, published=note["published"])

    assert vocab.parse_note(note).published_ms == ms(2026, 1, 1, 10, 0, 0)
    activity = vocab.parse_activity(s.bob.create(note, published=note["published"]))
    assert activity.published == "Thu, 01 Jan 2026 10:00:00 GMT"


@pytest.mark.parametrize("published", ["yesterday", "2026-13-45", 5, ["2026-01-01T00:00:00Z"]])
async def test_an_unreadable_published_falls_back_to_arrival(trio: Trio, published: Any) -> None:
    s = await shout(trio)
    note = s.bob.public_note("<p>Undated</p>", published=published)

    await create_arrives(s, trio, note, published=published)

    assert vocab.parse_note(note).published_ms is None
    assert vocab.parse_activity(s.bob.create(note, published=published)).published is None


def test_updated_still_has_to_be_readable() -> None:
    """``updated`` decides whether an Update replaces what we have: never guessed."""
    note = {
        "id": "https://beta.example/users/bob/notes/1",
        "type": "Note",
        "attributedTo": "https://beta.example/users/bob",
        "content": "<p>x</p>",
    }
    assert vocab.parse_note({**note, "updated": "Thu, 01 Jan 2026 10:00:00 GMT"}).updated_ms == ms(
        2026, 1, 1, 10, 0, 0
    )
    with pytest.raises(vocab.VocabError):
        vocab.parse_note({**note, "updated": "yesterday"})


# --- 2. type as a list ---------------------------------------------------------------------


async def test_an_activity_typed_as_a_list_is_read_like_a_string(trio: Trio) -> None:
    s = await shout(trio)
    like = s.like("listed", ["Like"])

    sent = await send_as(s.bob, s.alpha, like)
    await trio.net.settle()

    assert sent.status == 202, sent.body
    assert await inbox_rows(s.alpha, like["id"]) == [("done", None)]
    assert await like_count(s.alpha, s.post_id) == 1


async def test_a_create_typed_as_a_list_still_needs_its_object_on_the_actors_host(
    trio: Trio,
) -> None:
    s = await shout(trio)
    note = s.bob.public_note("<p>Not mine</p>", note_id="https://gamma.example/users/gus/notes/1")
    activity = s.bob.create(note) | {"type": ["Create"]}

    sent = await send_as(s.bob, s.alpha, activity)

    assert (sent.status, sent.body.get("error")) == (
        403,
        "created object is not on the actor's host",
    )
    assert await inbox_rows(s.alpha, activity["id"]) == []


def test_primary_type_is_one_rule_for_activities_and_objects() -> None:
    assert vocab.primary_type("Like") == "Like"
    assert vocab.primary_type(["Like"]) == "Like"
    assert vocab.primary_type(["Note", "https://example.org/ns#Extra"]) in vocab.NOTE_TYPES
    for junk in (None, "", [], [5], ["x" * 65], ["Note"] * 9, {"type": "Note"}, 5):
        assert vocab.primary_type(junk) is None
    activity = vocab.parse_activity(
        {"id": "https://beta.example/a", "type": ["Like"], "actor": "https://beta.example/u"}
    )
    assert activity.type == "Like"


# --- 3. an actor with several keys -----------------------------------------------------------

MULTI = f"https://{PEER}/users/multi"


def multi_key_actor(public_pems: list[str], owners: list[str] | None = None) -> dict[str, Any]:
    names = ["main-key", "key2", "key3"]
    owners = owners or [MULTI] * len(public_pems)
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": MULTI,
        "type": "Person",
        "preferredUsername": "multi",
        "inbox": f"{MULTI}/inbox",
        "publicKey": [
            {"id": f"{MULTI}#{name}", "owner": owner, "publicKeyPem": pem}
            for name, pem, owner in zip(names, public_pems, owners, strict=False)
        ],
    }


async def like_from_peer(p: Peered, key_name: str, private_pem: str) -> tuple[Sent, int]:
    post = await posting.publish_post(
        p.alpha.ctx, p.alice, posting.Draft("Sign with any key", Visibility.PUBLIC)
    )
    like = {
        "@context": AS_CONTEXT,
        "id": f"{MULTI}#likes/{key_name}",
        "type": "Like",
        "actor": MULTI,
        "object": post.uri,
    }
    sent = await send(p.alpha, like, key_id=f"{MULTI}#{key_name}", private_key_pem=private_pem)
    await p.net.settle()
    return sent, await like_count(p.alpha, post.id)


@pytest.mark.parametrize(("key_name", "index"), [("main-key", 0), ("key2", 1)])
async def test_an_actor_with_several_keys_may_sign_with_any_of_them(
    peered: Peered, key_name: str, index: int
) -> None:
    p = peered
    p.serve(MULTI, multi_key_actor([k[1] for k in p.keys[:2]]))

    sent, likes = await like_from_peer(p, key_name, p.keys[index][0])

    assert sent.status == 202, sent.body
    assert likes == 1
    known = await p.alpha.ctx.federator.keys.known_key(f"{MULTI}#{key_name}")
    assert known is not None and known.owner_uri == MULTI
    assert known.public_key_pem == p.keys[index][1]


async def test_a_key_the_actor_does_not_list_is_refused(peered: Peered) -> None:
    p = peered
    p.serve(MULTI, multi_key_actor([k[1] for k in p.keys[:2]]))

    sent, likes = await like_from_peer(p, "key3", p.keys[2][0])

    assert sent.status == 401
    assert likes == 0


async def test_a_listed_key_owned_by_someone_else_is_refused(peered: Peered) -> None:
    p = peered
    pems = [k[1] for k in p.keys[:2]]
    p.serve(MULTI, multi_key_actor(pems, owners=[MULTI, f"https://{PEER}/users/other"]))

    sent, likes = await like_from_peer(p, "key2", p.keys[1][0])

    assert sent.status == 401
    assert likes == 0


async def test_a_listed_key_signing_for_another_actor_is_refused(peered: Peered) -> None:
    p = peered
    p.serve(MULTI, multi_key_actor([k[1] for k in p.keys[:2]]))
    post = await posting.publish_post(
        p.alpha.ctx, p.alice, posting.Draft("Whose like?", Visibility.PUBLIC)
    )
    other = f"https://{PEER}/users/other"
    like = {"id": f"{other}#likes/1", "type": "Like", "actor": other, "object": post.uri}

    sent = await send(p.alpha, like, key_id=f"{MULTI}#key2", private_key_pem=p.keys[1][0])

    assert sent.status == 401
    assert sent.body.get("error") == "signing key does not belong to the activity's actor"


# --- 4. inbox Content-Type -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        ACTIVITY_JSON,
        AS_PROFILE,
        "application/json",
        "application/json; charset=utf-8",
        "application/ld+json",
        'application/ld+json; profile="https://example.com/other"',
        "Application/LD+JSON; charset=utf-8",
    ],
)
async def test_inbox_takes_activities_labelled_as_any_json(trio: Trio, content_type: str) -> None:
    s = await shout(trio)
    like = s.like("ct")

    sent = await send_as(s.bob, s.alpha, like, content_type=content_type)
    await trio.net.settle()

    assert sent.status == 202, sent.body
    assert await like_count(s.alpha, s.post_id) == 1


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/html", "application/x-www-form-urlencoded", "application/activity+jsonx"],
)
async def test_inbox_still_refuses_what_is_not_json(trio: Trio, content_type: str) -> None:
    s = await shout(trio)
    like = s.like("ct")

    sent = await send_as(s.bob, s.alpha, like, content_type=content_type)

    assert sent.status == 415
    assert await inbox_rows(s.alpha, like["id"]) == []


async def test_inbox_body_is_still_strict_json_whatever_the_label(trio: Trio) -> None:
    s = await shout(trio)
    body = b'{"id": "x", "id": "y", "type": "Like"}'  # a duplicate key
    values = {
        "(request-target)": "post /inbox",
        "host": s.alpha.host,
        "date": http_date(s.alpha.ctx.clock.now()),
        "digest": digest_of(body),
        "content-type": "application/json",
    }
    signature = sign_custom(
        s.bob.private_key_pem, key_id=s.bob.key_id, covered=list(values), values=values
    )
    headers = {name.title(): value for name, value in values.items() if name != "(request-target)"}

    sent = await raw_post(s.alpha, "/inbox", {**headers, "Signature": signature}, body)

    assert sent.status == 400


@pytest.mark.parametrize("media_type", ["application/json", "application/ld+json", "text/plain"])
async def test_fetched_documents_still_need_an_activitystreams_media_type(
    peered: Peered, media_type: str
) -> None:
    p = peered
    pems = [k[1] for k in p.keys[:2]]
    p.serve(MULTI, multi_key_actor(pems), media_type=media_type)

    with pytest.raises(FetchError) as refused:
        await p.alpha.ctx.federator.fetcher.fetch_actor(MULTI)
    assert refused.value.kind == "content-type"
    # and so a key served that way verifies nothing
    sent, likes = await like_from_peer(p, "main-key", p.keys[0][0])
    assert (sent.status, likes) == (401, 0)


# --- 5. Date in any HTTP-date form -----------------------------------------------------------


@pytest.mark.parametrize("days", [0, 16], ids=["two-digit-day", "space-padded-day"])
async def test_a_date_in_asctime_form_is_accepted(trio: Trio, days: int) -> None:
    trio.net.clock.advance(days * 86_400)  # 2026-09-21, or 2026-10-07 ("Oct  7")
    s = await shout(trio)
    date = asctime(s.alpha.ctx.clock.now())
    assert ("  " in date) == (days == 16)
    like = s.like("d")

    sent = await send_as(s.bob, s.alpha, like, date=date)

    assert sent.status == 202, sent.body


async def test_a_date_in_rfc850_form_is_accepted(trio: Trio) -> None:
    s = await shout(trio)
    like = s.like("d")

    sent = await send_as(s.bob, s.alpha, like, date=rfc850(s.alpha.ctx.clock.now()))

    assert sent.status == 202, sent.body


@pytest.mark.parametrize(
    ("shift", "form", "reason"),
    [
        (-2 * 3600, "asctime", "Date is too old"),
        (2 * 3600, "asctime", "Date is in the future"),
        (0, "no-zone", "unparseable Date"),
        (0, "minus-zero", "unparseable Date"),
        (0, "asctime-comma", "unparseable Date"),
    ],
)
async def test_the_date_window_and_zone_rules_still_hold(
    trio: Trio, shift: int, form: str, reason: str
) -> None:
    s = await shout(trio)
    now = s.alpha.ctx.clock.now() + shift
    fixdate = http_date(now)
    date = {
        "asctime": asctime(now),
        "no-zone": fixdate.removesuffix(" GMT"),
        "minus-zero": fixdate.replace("GMT", "-0000"),
        "asctime-comma": asctime(now).replace(" ", ", ", 1),  # not asctime: has no zone
    }[form]
    like = s.like("d")

    sent = await send_as(s.bob, s.alpha, like, date=date)

    assert (sent.status, sent.body.get("error")) == (401, reason)


# --- 6. a verified signed GET resets the sender's circuit ------------------------------------


async def circuit(instance: Instance, host: str) -> tuple[int, int]:
    rows = await instance.rows(
        "SELECT consecutive_failures, circuit_open_until FROM host_health WHERE host = ?", host
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


async def test_a_verified_signed_get_closes_the_circuit_and_nothing_else_does(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    # Given beta's circuit for alpha is open (ten deliveries failed in a row)
    net.faults["alpha.example"] = Fault(error="connect")
    for n in range(10):
        await posting.publish_post(
            beta.ctx, people.bob, posting.Draft(f"P{n}", Visibility.FOLLOWERS)
        )
    await net.settle()
    failures, open_until = await circuit(beta, "alpha.example")
    assert failures == 10 and open_until > net.clock.now_ms()
    key_id, pem = await person_key(alpha, people.alice)
    _, wrong_pem = await person_key(alpha, people.carol)

    # When alpha's GETs fail verification, are unsigned, or come from another host
    bad = await signed_get(beta, "/users/bob/outbox", key_id=key_id, private_key_pem=wrong_pem)
    unsigned = await plain_get(beta, "/users/bob/outbox")
    gus_key = await person_key(trio.gamma, people.gus)
    other = await signed_get(
        beta, "/users/bob/outbox", key_id=gus_key[0], private_key_pem=gus_key[1]
    )

    # Then they are refused and the circuit stays open
    assert (bad[0], unsigned[0]) == (401, 401)
    assert other[0] == 200  # gamma is allowed, but it is not alpha
    assert await circuit(beta, "alpha.example") == (10, open_until)

    # When alpha makes a signed GET that verifies (the network to alpha is still down)
    status, _, _ = await signed_get(beta, "/users/bob/outbox", key_id=key_id, private_key_pem=pem)

    # Then the circuit is closed and alpha's queue is due at once
    assert status == 200
    assert await circuit(beta, "alpha.example") == (0, 0)
    due = await beta.rows(
        "SELECT count(*) FROM deliveries WHERE host = 'alpha.example' AND state = 'queued'"
        " AND next_attempt_at = 0"
    )
    assert due[0][0] == 10
    del net.faults["alpha.example"]
    await net.settle()
    assert await circuit(beta, "alpha.example") == (0, 0)
    health = (await beta.ctx.db.read(fed.select_host_health))["alpha.example"]
    assert health.circuit_open_until == 0


# --- 7. titles and poll options ------------------------------------------------------------


def _object(kind: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": "https://beta.example/post/1",
        "type": kind,
        "attributedTo": "https://beta.example/u/bob",
        "content": "<p>body</p>",
        **extra,
    }


def test_article_and_page_titles_are_read_as_plain_text() -> None:
    assert vocab.note_title(_object("Page", name="A Lemmy post")) == "A Lemmy post"
    assert vocab.note_title(_object(["Article"], name="<b>Q3</b> & more")) == "<b>Q3</b> & more"
    assert vocab.note_title(_object("Article", nameMap={"de": "Bericht"})) == "Bericht"
    # A Note's name is not a title (Mastodon shows none); junk titles are left out.
    assert vocab.note_title(_object("Note", name="not a title")) is None
    for junk in ("", "   ", "x" * 513, 5, ["t"], None):
        assert vocab.note_title(_object("Page", name=junk)) is None
    # and the note itself still parses, whatever its title
    assert vocab.parse_note(_object("Page", name="x" * 5000)).content_html == "<p>body</p>"


def test_question_options_are_read_from_one_of_or_any_of() -> None:
    def option(name: Any) -> dict[str, Any]:
        return {"type": "Note", "name": name, "replies": {"type": "Collection", "totalItems": 0}}

    single = _object("Question", oneOf=[option("yes"), option("no")], endTime="2026-02-01T00:00Z")
    assert vocab.poll_options(single) == ("yes", "no")
    multiple = _object("Question", anyOf=[option("a"), option("x" * 600), "c", option("a")])
    assert vocab.poll_options(multiple) == ("a",)
    many = _object("Question", oneOf=[option(f"o{n}") for n in range(50)])
    assert len(vocab.poll_options(many)) == vocab.MAX_POLL_OPTIONS
    assert vocab.poll_options(_object("Note", oneOf=[option("yes")])) == ()
    assert vocab.poll_options(_object("Question", oneOf="yes")) == ()
    assert vocab.parse_note(single).type == "Question"


async def test_a_titled_page_and_a_poll_are_stored(trio: Trio) -> None:
    s = await shout(trio)
    page = s.bob.public_note("<p>article body</p>", type="Page", name="Article Title XYZ")
    poll = s.bob.public_note(
        "<p>poll?</p>",
        type="Question",
        oneOf=[{"type": "Note", "name": "yes"}, {"type": "Note", "name": "no"}],
        endTime="2026-10-01T00:00:00Z",
    )

    page_id = await create_arrives(s, trio, page)
    poll_id = await create_arrives(s, trio, poll)

    assert vocab.note_title(page) == "Article Title XYZ"
    assert vocab.poll_options(poll) == ("yes", "no")
    # Shown with the post, as plain text (escaped), not dropped.
    shown = await s.alpha.value("SELECT content_html FROM posts WHERE id = ?", page_id)
    assert shown == "<p><strong>Article Title XYZ</strong></p><p>article body</p>"
    shown = await s.alpha.value("SELECT content_html FROM posts WHERE id = ?", poll_id)
    assert shown == "<p>poll?</p><p><strong>Poll</strong></p><ul><li>yes</li><li>no</li></ul>"


async def test_a_title_and_poll_options_are_shown_as_text_never_markup(trio: Trio) -> None:
    s = await shout(trio)
    page = s.bob.public_note("<p>body</p>", type="Article", name="<img src=x onerror=alert(1)>")
    poll = s.bob.public_note("<p>q</p>", type="Question", anyOf=[{"name": "<b>bold</b>"}])

    page_id = await create_arrives(s, trio, page)
    poll_id = await create_arrives(s, trio, poll)

    shown = await s.alpha.value("SELECT content_html FROM posts WHERE id = ?", page_id)
    assert "<img" not in str(shown) and "&lt;img src=x onerror=alert(1)&gt;" in str(shown)
    shown = await s.alpha.value("SELECT content_html FROM posts WHERE id = ?", poll_id)
    assert "<b>" not in str(shown) and "&lt;b&gt;bold&lt;/b&gt;" in str(shown)


async def test_a_note_typed_as_a_list_is_stored(trio: Trio) -> None:
    """The handlers read ``type`` by the parsers' rule (its first entry), not as a string."""
    s = await shout(trio)
    note = s.bob.public_note("<p>typed twice</p>", type=["Note", "https://example.org/ns#Extra"])

    await create_arrives(s, trio, note)
