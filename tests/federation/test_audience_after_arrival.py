"""Who may see a partner's post, after it arrives and after it changes: the reply
notification and reply count of a post the reader cannot open, a partner's edit that takes
people out or narrows the audience, a direct message from an actor without a followers URL,
and the notes of a person who left."""

from __future__ import annotations

from quart.typing import TestClientProtocol as Client

from server.domain import Visibility
from server.services import accounts, following, posting
from tests.federation.conftest import Trio
from tests.federation.support import (
    Forger,
    cast,
    copy_of,
    follow_across,
    person_key,
    signed_get,
    visible,
)
from tests.support.network import PASSWORD, Instance
from tests.support.web import login


async def _signed_in(instance: Instance, user: str) -> Client:
    client = instance.app.test_client()
    await login(client, user, PASSWORD)
    return client


async def _page(instance: Instance, user: str, path: str) -> tuple[int, str]:
    response = await (await _signed_in(instance, user)).get(path)
    return response.status_code, await response.get_data(as_text=True)


async def test_a_reply_the_parents_author_cannot_read_neither_notifies_nor_counts(
    trio: Trio,
) -> None:
    """bob answers alice's public question for his followers only, without addressing her
    (Mastodon does this when the @mention is deleted): alice does not follow bob, so the
    reply is not hers to read, in her notifications or as "1 reply" under her post."""
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.carol, "bob@beta.example")  # brings bob's posts
    question = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Who has the numbers?", Visibility.PUBLIC)
    )
    bob = await Forger.of(beta, people.bob)
    reply = bob.note("FOLLOWERS-ONLY-SECRET margin", to=[bob.followers], inReplyTo=question.uri)
    assert (await bob.post(alpha, bob.create(reply))).status == 202
    await net.settle()
    copy = await copy_of(alpha, reply["id"])
    assert copy is not None and await visible(alpha, copy, people.alice) is None
    assert await visible(alpha, copy, people.carol) is not None  # carol follows bob
    _, notes = await _page(alpha, "alice", "/notifications")
    assert "FOLLOWERS-ONLY-SECRET" not in notes and "replied" not in notes
    anonymous = alpha.app.test_client()
    page = await (await anonymous.get(f"/posts/{question.id}")).get_data(as_text=True)
    assert '<span class="sr-only">no replies to the post by ' in page
    _, seen_by_carol = await _page(alpha, "carol", f"/posts/{question.id}")
    assert '<span class="sr-only">1 reply to the post by ' in seen_by_carol
    assert "FOLLOWERS-ONLY-SECRET" in seen_by_carol


async def test_a_direct_reply_to_someone_else_stays_out_of_the_parents_authors_notifications(
    trio: Trio,
) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    question = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Who has the numbers?", Visibility.PUBLIC)
    )
    bob = await Forger.of(beta, people.bob)
    dm = bob.note(
        "DM-SECRET for carol only",
        to=[people.carol.uri],
        mentions=[people.carol.uri],
        inReplyTo=question.uri,
    )
    assert (await bob.post(alpha, bob.create(dm))).status == 202
    await net.settle()
    copy = await copy_of(alpha, dm["id"])
    assert copy is not None and await visible(alpha, copy, people.carol) is not None
    _, alices = await _page(alpha, "alice", "/notifications")
    assert "DM-SECRET" not in alices
    _, carols = await _page(alpha, "carol", "/notifications")
    assert "DM-SECRET" in carols  # the person it is for is told


async def test_a_notification_shows_no_text_its_reader_may_not_open(trio: Trio) -> None:
    """The snippet is checked when shown, not trusted to when the notification was made: a
    notification row about a post its reader may not open (made by hand here) shows no text
    until they may."""
    people = await cast(trio)
    alpha = trio.alpha
    secret = await posting.publish_post(
        alpha.ctx, people.carol, posting.Draft("SNIPPET-SECRET", Visibility.FOLLOWERS)
    )
    await alpha.ctx.db.write(
        lambda c: c.execute(
            "INSERT INTO notifications (recipient_id, kind, actor_id, post_id, created_at)"
            " VALUES (?, 'mention', ?, ?, 1)",
            (people.alice.id, people.carol.id, secret.id),
        )
    )
    _, before = await _page(alpha, "alice", "/notifications")
    assert "Carol" in before and "SNIPPET-SECRET" not in before
    await following.follow(alpha.ctx, people.alice, people.carol.id)
    _, after = await _page(alpha, "alice", "/notifications")
    assert "SNIPPET-SECRET" in after


async def test_a_partners_edit_that_takes_a_mention_out_takes_that_person_out(
    trio: Trio,
) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    bob = await Forger.of(beta, people.bob)
    note = bob.note(
        "Draft offer v1",
        to=[people.alice.uri, people.carol.uri],
        mentions=[people.alice.uri, people.carol.uri],
        published="2026-09-21T10:00:00Z",
    )
    assert (await bob.post(alpha, bob.create(note))).status == 202
    await net.settle()
    copy = await copy_of(alpha, note["id"])
    assert copy is not None and await visible(alpha, copy, people.carol) is not None
    edited = {
        **note,
        "content": "EDITED-FOR-ALICE-ONLY final price",
        "to": [people.alice.uri],
        "tag": [{"type": "Mention", "href": people.alice.uri, "name": "@alice"}],
        "updated": "2026-09-21T11:00:00Z",
    }
    assert (await bob.post(alpha, bob.activity("Update", edited))).status == 202
    await net.settle()
    assert await visible(alpha, copy, people.carol) is None
    status, _ = await _page(alpha, "carol", f"/posts/{copy}")
    assert status == 404
    _, carols = await _page(alpha, "carol", "/notifications")
    assert "Draft offer" not in carols and "EDITED-FOR-ALICE-ONLY" not in carols
    shown = await visible(alpha, copy, people.alice)
    assert shown is not None and "EDITED-FOR-ALICE-ONLY" in shown.content_html


async def test_a_partners_edit_narrows_the_audience_and_never_widens_it(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    bob = await Forger.of(beta, people.bob)
    note = bob.public_note("Public teaser")
    assert (await bob.post(alpha, bob.create(note))).status == 202
    await net.settle()
    copy = await copy_of(alpha, note["id"])
    assert copy is not None
    narrowed = {
        **note,
        "content": "NOW-FOLLOWERS-ONLY details",
        "to": [bob.followers],
        "cc": [],
        "updated": "2026-09-21T11:00:00Z",
    }
    assert (await bob.post(alpha, bob.activity("Update", narrowed))).status == 202
    await net.settle()
    assert (await alpha.app.test_client().get(f"/posts/{copy}")).status_code == 404
    shown = await visible(alpha, copy, people.alice)  # a follower still reads it
    assert shown is not None and shown.visibility is Visibility.FOLLOWERS
    widened = {**note, "content": "PUBLIC-AGAIN", "updated": "2026-09-21T12:00:00Z"}
    assert (await bob.post(alpha, bob.activity("Update", widened))).status == 202
    await net.settle()
    assert (await alpha.app.test_client().get(f"/posts/{copy}")).status_code == 404
    history = await alpha.value(
        "SELECT group_concat(visibility, ',') FROM post_versions WHERE post_id = ?", copy
    )
    assert history == "public,followers,followers"


async def test_a_direct_message_from_an_actor_without_a_followers_url_stays_direct(
    trio: Trio,
) -> None:
    """bovine serves actors without ``followers``, so an addressed collection on the author's
    origin is taken for it; a mentioned person (dave, not yet known here) never is."""
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    await alpha.ctx.db.write(
        lambda c: c.execute(
            "UPDATE actors SET followers_url = NULL WHERE uri = ?", (people.bob.uri,)
        )
    )
    bob = await Forger.of(beta, people.bob)
    dm = bob.note(
        "GROUP-DM-SECRET for dave and carol",
        to=[people.dave.uri, people.carol.uri],
        mentions=[people.dave.uri, people.carol.uri],
    )
    assert (await bob.post(alpha, bob.create(dm))).status == 202
    await net.settle()
    copy = await copy_of(alpha, dm["id"])
    assert copy is not None
    assert await alpha.value("SELECT visibility FROM posts WHERE id = ?", copy) == "direct"
    assert await visible(alpha, copy, people.alice) is None
    assert await visible(alpha, copy, people.carol) is not None


async def test_notes_of_a_person_who_left_answer_like_their_actor(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta = trio.alpha, trio.beta
    kept = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Public before leaving", Visibility.PUBLIC)
    )
    gone = await posting.publish_post(
        alpha.ctx, people.carol, posting.Draft("Public before deletion", Visibility.PUBLIC)
    )
    key_id, pem = await person_key(beta, people.bob)
    for post in (kept, gone):
        path = post.uri.removeprefix(alpha.base)
        assert (await signed_get(alpha, path, key_id=key_id, private_key_pem=pem))[0] == 200
    await accounts.set_active(alpha.ctx, "alice", active=False, by=None)
    await accounts.delete_user(alpha.ctx, "carol", by=None)
    for post in (kept, gone):
        path = post.uri.removeprefix(alpha.base)
        for suffix in ("", "/activity"):
            status, _, _ = await signed_get(
                alpha, path + suffix, key_id=key_id, private_key_pem=pem
            )
            assert status == 404, (post.uri, suffix)
    # On the web: the deleted account's public post is no longer published to the world,
    # and stays for colleagues (the archive); a deactivated colleague's stays public.
    anonymous = alpha.app.test_client()
    assert (await anonymous.get(f"/posts/{gone.id}")).status_code == 404
    assert (await anonymous.get(f"/posts/{kept.id}")).status_code == 200
    await alpha.user("erin")
    status, page = await _page(alpha, "erin", f"/posts/{gone.id}")
    assert (status, "Public before deletion" in page) == (200, True)


async def test_open_feeds_hear_of_edits_and_deletions_local_and_remote(trio: Trio) -> None:
    """A card left open must not keep showing (and offering to like) what changed or went:
    the feeds that may show the post are told, and nobody else."""
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await following.follow(alpha.ctx, people.carol, people.alice.id)
    await follow_across(net, alpha, people.carol, "bob@beta.example")
    local = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("local v1", Visibility.FOLLOWERS)
    )
    bob = await Forger.of(beta, people.bob)
    note = bob.note("remote v1", to=[bob.followers], published="2026-09-21T10:00:00Z")
    assert (await bob.post(alpha, bob.create(note))).status == 202
    await net.settle()
    copy = await copy_of(alpha, note["id"])
    assert copy is not None
    live = alpha.ctx.live
    async with live.subscribe(people.carol.id) as carols, live.subscribe(people.alice.id) as own:
        await posting.edit_post(alpha.ctx, people.alice, local.id, "local v2")
        await posting.delete_post(alpha.ctx, people.alice, local.id)
        edited = {**note, "content": "remote v2", "updated": "2026-09-21T11:00:00Z"}
        assert (await bob.post(alpha, bob.activity("Update", edited))).status == 202
        await net.settle()
        assert (await bob.post(alpha, bob.activity("Delete", note["id"]))).status == 202
        await net.settle()
        heard = [carols.get_nowait() for _ in range(carols.qsize())]
        told = [e for e in heard if e.kind in ("edited", "deleted")]
        assert [(e.kind, e.data) for e in told] == [
            ("edited", str(local.id)),
            ("deleted", str(local.id)),
            ("edited", str(copy)),
            ("deleted", str(copy)),
        ]
        mine = [own.get_nowait() for _ in range(own.qsize())]
        assert [e.kind for e in mine if e.kind in ("edited", "deleted")] == ["edited", "deleted"]
