"""Replies, likes, edits, deletes, Undo of everything, duplicates, wall posts, profile
updates and deletions across instances; every modification only from the stored owner."""

from __future__ import annotations

import json

import pytest

from federation.types import AS_PUBLIC
from server.domain import NotificationKind, Visibility
from server.errors import NotFound
from server.services import accounts, following, posting, remote
from server.storage import notifications, posts
from tests.federation.conftest import Trio
from tests.federation.support import (
    Forger,
    actor_by_uri,
    cast,
    copy_of,
    deliveries,
    follow_across,
    home_texts,
    inbox_count,
    instance_key,
    signed_get,
    visible,
)
from tests.support.network import Instance


async def _kinds(instance: Instance, person_id: int) -> list[NotificationKind]:
    """Notification kinds of a person, newest first, follows left out."""
    page = await instance.ctx.db.read(
        notifications.select_notifications, person_id, before=None, limit=50
    )
    return [n.kind for n in page.items if n.kind is not NotificationKind.FOLLOW]


async def _like_count(instance: Instance, post_id: int) -> object:
    return await instance.value("SELECT like_count FROM posts WHERE id = ?", post_id)


async def test_reply_comes_back_to_the_author(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    original = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Who joins the audit?", Visibility.FOLLOWERS)
    )
    await net.settle()
    copy = await copy_of(alpha, original.uri)
    assert copy is not None

    # When alice replies on alpha (bob does not follow her)
    reply = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("I do", Visibility.FOLLOWERS, in_reply_to=copy)
    )
    await net.settle()

    # Then bob's server threads the reply under his post and notifies him
    at_beta = await copy_of(beta, reply.uri)
    assert at_beta is not None
    thread = await beta.ctx.db.read(posts.select_thread, original.id, people.bob.id)
    assert [p.uri for p in thread] == [original.uri, reply.uri]
    assert await _kinds(beta, people.bob.id) == [NotificationKind.REPLY]
    parent = await beta.ctx.db.read(posts.select_post, original.id, people.bob.id)
    assert parent is not None and parent.reply_count == 1
    # but dave (beta, not addressed, not following alice) cannot read it
    assert await visible(beta, at_beta, people.dave) is None


async def test_likes_come_back_and_undo_removes_them(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    original = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Like me", Visibility.FOLLOWERS)
    )
    await net.settle()
    copy = await copy_of(alpha, original.uri)
    assert copy is not None

    # When alice likes bob's post
    await posting.like_post(alpha.ctx, people.alice, copy, like=True)
    await net.settle()

    # Then bob's post counts the like and bob is notified
    liked = await beta.ctx.db.read(posts.select_post, original.id, people.bob.id)
    assert liked is not None and liked.like_count == 1
    assert await _kinds(beta, people.bob.id) == [NotificationKind.LIKE]
    like_uri = await beta.value("SELECT uri FROM likes")

    # When alice unlikes
    await posting.like_post(alpha.ctx, people.alice, copy, like=False)
    await net.settle()

    # Then the Undo{Like} with the same like id removed it
    undo = (await deliveries(alpha, "Undo"))[0]
    assert json.loads(undo["body"])["object"]["id"] == like_uri
    unliked = await beta.ctx.db.read(posts.select_post, original.id, people.bob.id)
    assert unliked is not None and unliked.like_count == 0
    # and bob's notification of it went with it (as on Mastodon)
    assert await _kinds(beta, people.bob.id) == []


async def test_remote_like_of_a_local_post_and_undo_by_someone_else(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    mine = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Quarterly report", Visibility.FOLLOWERS)
    )
    await net.settle()
    at_beta = await copy_of(beta, mine.uri)
    assert at_beta is not None

    await posting.like_post(beta.ctx, people.bob, at_beta, like=True)
    await net.settle()
    assert await _like_count(alpha, mine.id) == 1
    assert NotificationKind.LIKE in await _kinds(alpha, people.alice.id)

    # When dave sends an Undo of bob's Like: ignored
    like_uri = await alpha.value("SELECT uri FROM likes")
    dave = await Forger.of(beta, people.dave)
    inner = {"id": like_uri, "type": "Like", "actor": people.bob.uri, "object": mine.uri}
    assert (await dave.post(alpha, dave.activity("Undo", inner))).status == 202
    # and an Undo by dave that names only the like id: ignored too
    assert (await dave.post(alpha, dave.activity("Undo", like_uri))).status == 202
    await net.settle()
    assert await _like_count(alpha, mine.id) == 1
    assert NotificationKind.LIKE in await _kinds(alpha, people.alice.id)

    # When bob's Undo names only the like id (no embedded Like): it applies
    bob = await Forger.of(beta, people.bob)
    assert (await bob.post(alpha, bob.activity("Undo", like_uri))).status == 202
    await net.settle()
    assert await _like_count(alpha, mine.id) == 0
    assert NotificationKind.LIKE not in await _kinds(alpha, people.alice.id)


async def test_edits_propagate_in_order_and_keep_history(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    original = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Price: 100", Visibility.FOLLOWERS)
    )
    await net.settle()

    # When bob edits, and later edits twice within one millisecond (the clock stands still;
    # both Updates are then sent concurrently and may arrive in either order)
    await posting.edit_post(beta.ctx, people.bob, original.id, "Price: 105")
    await net.settle()
    await posting.edit_post(beta.ctx, people.bob, original.id, "Price: 110")
    await posting.edit_post(beta.ctx, people.bob, original.id, "Price: 120")
    await net.settle()

    # Then alpha shows the last version, and keeps the earlier ones it saw
    copy = await copy_of(alpha, original.uri)
    shown = await visible(alpha, copy, people.alice)
    assert shown is not None and "Price: 120" in shown.content_html
    versions = [v.content_html for v in await alpha.ctx.db.read(posts.select_versions, shown.id)]
    assert "120" in versions[0] and "105" in versions[-2] and "100" in versions[-1]


async def test_stale_or_replayed_update_does_not_overwrite(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    bob = await Forger.of(beta, people.bob)
    note = bob.note("v1", to=[bob.followers], updated="2026-09-21T10:00:00Z")
    await bob.post(alpha, bob.create(note))
    newer = dict(note, content="v3", updated="2026-09-21T12:00:00Z")
    older = dict(note, content="v2", updated="2026-09-21T11:00:00Z")

    # When the newer Update arrives before the older one
    assert (await bob.post(alpha, bob.activity("Update", newer))).status == 202
    assert (await bob.post(alpha, bob.activity("Update", older))).status == 202
    await net.settle()

    # Then the newer content stays
    shown = await visible(alpha, await copy_of(alpha, note["id"]), people.alice)
    assert shown is not None and "v3" in shown.content_html


async def test_update_by_someone_other_than_the_stored_author_is_ignored(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    original = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Bank details: A", Visibility.FOLLOWERS)
    )
    mine = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Alice's own", Visibility.PUBLIC)
    )
    await net.settle()
    copy = await copy_of(alpha, original.uri)

    # When dave (same host as bob) sends an Update of bob's note, attributed to himself or to bob
    dave = await Forger.of(beta, people.dave)
    for author in (people.dave.uri, people.bob.uri):
        forged = {
            "id": original.uri,
            "type": "Note",
            "attributedTo": author,
            "content": "Bank details: EVIL",
            "updated": "2030-01-01T00:00:00Z",
            "to": [f"{people.bob.uri}/followers"],
        }
        assert (await dave.post(alpha, dave.activity("Update", forged))).status == 202
    # and bob sends an Update of alice's local post
    bob = await Forger.of(beta, people.bob)
    local = {
        "id": mine.uri,
        "type": "Note",
        "attributedTo": people.alice.uri,
        "content": "hijacked",
        "updated": "2030-01-01T00:00:00Z",
    }
    assert (await bob.post(alpha, bob.activity("Update", local))).status == 202
    await net.settle()

    # Then nothing changed
    shown = await visible(alpha, copy, people.alice)
    assert shown is not None and "Bank details: A" in shown.content_html
    assert shown.version == 1
    own = await visible(alpha, mine.id, people.alice)
    assert own is not None and "hijacked" not in own.content_html and own.version == 1


async def test_deletes_propagate_and_the_archive_keeps_the_record(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    original = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Oops, wrong figures", Visibility.FOLLOWERS)
    )
    await net.settle()
    copy = await copy_of(alpha, original.uri)
    assert await visible(alpha, copy, people.alice) is not None

    await posting.delete_post(beta.ctx, people.bob, original.id)
    await net.settle()

    # Alice can no longer read it, but alpha keeps the record (archive)
    assert await visible(alpha, copy, people.alice) is None
    assert "wrong figures" not in await home_texts(alpha, people.alice)
    archived = await alpha.rows("SELECT content_html, deleted_at FROM posts WHERE id = ?", copy)
    assert "wrong figures" in archived[0]["content_html"] and archived[0]["deleted_at"]
    # and a replayed Create of the same note (new activity id) does not bring it back
    bob = await Forger.of(beta, people.bob)
    again = bob.note("Oops, wrong figures", to=[bob.followers], note_id=original.uri)
    assert (await bob.post(alpha, bob.create(again))).status == 202
    await net.settle()
    assert await visible(alpha, copy, people.alice) is None
    assert await alpha.value("SELECT count(*) FROM posts WHERE uri = ?", original.uri) == 1


async def test_delete_before_create_leaves_a_tombstone(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    bob = await Forger.of(beta, people.bob)
    note = bob.note("Arrives late", to=[bob.followers])

    # When the Delete overtakes the Create
    tombstone = {"id": note["id"], "type": "Tombstone"}
    assert (await bob.post(alpha, bob.activity("Delete", tombstone))).status == 202
    await net.settle()
    assert (await bob.post(alpha, bob.create(note))).status == 202
    await net.settle()

    # Then the late Create is ignored
    assert await copy_of(alpha, note["id"]) is None
    assert "Arrives late" not in await home_texts(alpha, people.alice)


async def test_delete_by_someone_other_than_the_author_is_ignored(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    original = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Still here", Visibility.FOLLOWERS)
    )
    mine = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Mine", Visibility.PUBLIC)
    )
    await net.settle()

    dave = await Forger.of(beta, people.dave)
    bob = await Forger.of(beta, people.bob)
    gone = {"id": original.uri, "type": "Tombstone"}
    assert (await dave.post(alpha, dave.activity("Delete", gone))).status == 202
    assert (await dave.post(alpha, dave.activity("Delete", original.uri))).status == 202
    mine_gone = {"id": mine.uri, "type": "Tombstone"}
    assert (await bob.post(alpha, bob.activity("Delete", mine_gone))).status == 202
    # nor can bob tombstone a URI on another origin before it exists
    future = {"id": "https://gamma.example/users/gus/notes/1", "type": "Tombstone"}
    assert (await bob.post(alpha, bob.activity("Delete", future))).status == 202
    await net.settle()

    assert await visible(alpha, await copy_of(alpha, original.uri), people.alice) is not None
    assert await visible(alpha, mine.id, people.alice) is not None
    assert await alpha.value("SELECT count(*) FROM tombstones") == 0


async def test_replayed_activity_is_a_no_op(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    bob = await Forger.of(beta, people.bob)
    create = bob.create(bob.note("Once", to=[bob.followers]))
    body = json.dumps(create).encode()
    headers = bob.signed_headers(alpha, "/inbox", body)
    before = await inbox_count(alpha)

    # When the very same signed request arrives three times, and once more re-signed
    # with different content under the same activity id
    statuses = [(await bob.post(alpha, body, headers=headers)).status for _ in range(3)]
    changed = dict(create, object=dict(create["object"], content="Twice"))
    statuses.append((await bob.post(alpha, changed)).status)
    await net.settle()

    # Then every answer is 202, one row is archived, one post exists with the first content
    assert statuses == [202, 202, 202, 202]
    assert await inbox_count(alpha) == before + 1
    copy = await copy_of(alpha, create["object"]["id"])
    shown = await visible(alpha, copy, people.alice)
    assert shown is not None and "Once" in shown.content_html
    assert await alpha.value("SELECT count(*) FROM posts") == 1


async def test_duplicate_like_counts_once(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    mine = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Vote here", Visibility.PUBLIC)
    )
    bob = await Forger.of(beta, people.bob)
    for _ in range(2):
        like = bob.activity("Like", mine.uri)  # new id each time, same (actor, object)
        assert (await bob.post(alpha, like)).status == 202
    await net.settle()
    shown = await visible(alpha, mine.id, people.alice)
    assert shown is not None and shown.like_count == 1
    assert await _kinds(alpha, people.alice.id) == [NotificationKind.LIKE]


async def test_announce_and_undo_announce(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    public = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Boost me", Visibility.PUBLIC)
    )
    private = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Do not boost", Visibility.FOLLOWERS)
    )
    bob = await Forger.of(beta, people.bob)
    dave = await Forger.of(beta, people.dave)
    boost = bob.activity("Announce", public.uri, to=[AS_PUBLIC])
    await bob.post(alpha, boost)
    await bob.post(alpha, bob.activity("Announce", private.uri, to=[AS_PUBLIC]))
    await net.settle()
    # Only the public post may be boosted
    assert await alpha.value("SELECT count(*) FROM announces") == 1

    # Undo by someone else: ignored; by bob: applied
    await dave.post(alpha, dave.activity("Undo", dict(boost)))
    await net.settle()
    assert await alpha.value("SELECT count(*) FROM announces") == 1
    await bob.post(alpha, bob.activity("Undo", {k: v for k, v in boost.items() if k != "@context"}))
    await net.settle()
    assert await alpha.value("SELECT count(*) FROM announces") == 0


async def test_create_of_someone_elses_note_is_ignored(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    bob = await Forger.of(beta, people.bob)

    # bob sends a Create of a note attributed to dave (same host)
    note = {**bob.note("Dave says: approved", to=[AS_PUBLIC]), "attributedTo": people.dave.uri}
    assert (await bob.post(alpha, bob.create(note))).status == 202
    await net.settle()

    assert await copy_of(alpha, note["id"]) is None


async def test_inbound_html_is_sanitized_on_arrival(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    bob = await Forger.of(beta, people.bob)
    hostile = (
        '<p>Hello <script>alert(1)</script><img src=x onerror="alert(2)">'
        '<a href="javascript:alert(3)" onclick="x()">link</a>'
        '<a href="https://beta.example/ok" class="mention">ok</a></p>'
    )
    note = bob.note(hostile, to=[bob.followers])
    await bob.post(alpha, bob.create(note))
    await net.settle()

    stored = await alpha.value("SELECT content_html FROM posts WHERE uri = ?", note["id"])
    assert isinstance(stored, str)
    for bad in ("<script", "onerror", "onclick", "javascript:", "<img"):
        assert bad not in stored
    assert 'href="https://beta.example/ok"' in stored and "Hello" in stored

    # An Update is sanitized the same way
    edited = dict(note, content='<p>v2<iframe src="https://evil.example"></iframe></p>')
    edited["updated"] = "2030-01-01T00:00:00Z"
    await bob.post(alpha, bob.activity("Update", edited))
    await net.settle()
    stored = await alpha.value("SELECT content_html FROM posts WHERE uri = ?", note["id"])
    assert isinstance(stored, str) and "v2" in stored and "iframe" not in stored


async def test_wall_post_from_a_partner(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    bob = await Forger.of(beta, people.bob)
    wall = f"{people.alice.uri}/wall"

    # When bob writes on alice's wall (FEP-400e target), addressed to her
    note = bob.note(
        "Congrats on the launch!",
        to=[people.alice.uri],
        cc=[f"{people.alice.uri}/followers"],
        mentions=[people.alice.uri],
        target={"type": "OrderedCollection", "id": wall, "attributedTo": people.alice.uri},
    )
    assert (await bob.post(alpha, bob.create(note))).status == 202
    # and onto carol's wall without addressing her (not a wall post then)
    sneaky = bob.note(
        "Sneaky",
        to=[people.alice.uri],
        mentions=[people.alice.uri],
        target={"type": "OrderedCollection", "id": f"{people.carol.uri}/wall"},
    )
    assert (await bob.post(alpha, bob.create(sneaky))).status == 202
    await net.settle()

    # Then the post is on alice's wall and she is told
    page = await alpha.ctx.db.read(
        posts.select_wall, people.alice.id, people.alice.id, before=None, limit=10
    )
    assert [p.uri for p in page.items] == [note["id"]]
    assert NotificationKind.WALL in await _kinds(alpha, people.alice.id)
    carol_wall = await alpha.ctx.db.read(
        posts.select_wall, people.carol.id, people.carol.id, before=None, limit=10
    )
    assert carol_wall.items == ()
    # and alice's server acknowledges it with an Add to the author
    adds = await deliveries(alpha, "Add")
    assert [(d["inbox_url"], d["state"]) for d in adds] == [
        ("https://beta.example/inbox", "delivered")
    ]
    add = json.loads(adds[0]["body"])
    assert (add["object"], add["target"], add["actor"]) == (note["id"], wall, people.alice.uri)


async def test_update_of_person_refreshes_the_profile_sanitized(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta = trio.alpha, trio.beta
    bob_at_alpha = await remote.find_person(alpha.ctx, "bob@beta.example")
    bob = await Forger.of(beta, people.bob)
    status, person = await _actor_document(trio, "bob")
    assert status == 200

    # When bob's Update{Person} carries a new name and a hostile summary
    updated = dict(person, name="Robert", summary="<p>CFO<script>x()</script></p>")
    assert (await bob.post(alpha, bob.activity("Update", updated))).status == 202
    # and bob tries to update dave's profile, and to move his own inbox elsewhere
    dave_doc = (await _actor_document(trio, "dave"))[1]
    await remote.find_person(alpha.ctx, "dave@beta.example")
    await bob.post(alpha, bob.activity("Update", dict(dave_doc, name="Hacked")))
    moved = dict(updated, name="Moved", inbox="https://gamma.example/inbox")
    await bob.post(alpha, bob.activity("Update", moved))
    await trio.net.settle()

    # Then only the legitimate update applied, sanitized
    row = (await alpha.rows("SELECT * FROM actors WHERE id = ?", bob_at_alpha.id))[0]
    assert row["display_name"] == "Robert"
    assert "CFO" in row["bio_html"] and "script" not in row["bio_html"]
    assert row["inbox_url"] == "https://beta.example/users/bob/inbox"
    dave_row = (await alpha.rows("SELECT * FROM actors WHERE uri = ?", people.dave.uri))[0]
    assert dave_row["display_name"] == "Dave"


async def test_delete_of_person(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    bob = await Forger.of(beta, people.bob)
    dave = await Forger.of(beta, people.dave)

    # Someone else cannot delete bob
    await dave.post(alpha, dave.activity("Delete", people.bob.uri))
    await net.settle()
    still = await actor_by_uri(alpha, people.bob.uri)
    assert still is not None and still.deleted_at is None

    # When bob's account is deleted on beta (Delete{Person} of himself)
    sent = await bob.post(alpha, bob.activity("Delete", people.bob.uri, to=[AS_PUBLIC]))
    await net.settle()
    assert sent.status == 202

    # Then alpha marks him deleted, keeps the record, stops delivering to him
    gone = await actor_by_uri(alpha, people.bob.uri)
    assert gone is not None and gone.deleted_at is not None
    before = len(await deliveries(alpha, "Create"))
    await posting.publish_post(alpha.ctx, people.alice, posting.Draft("After bob left"))
    await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("For followers", Visibility.FOLLOWERS)
    )
    await net.settle()
    assert len(await deliveries(alpha, "Create")) == before
    # nobody can follow him any more
    with pytest.raises(NotFound):
        await following.follow(alpha.ctx, people.carol, gone.id)
    # and anything more signed by him is not applied
    await bob.post(alpha, bob.create(bob.note("Ghost", to=[AS_PUBLIC], cc=[bob.followers])))
    await net.settle()
    assert await alpha.value("SELECT count(*) FROM posts WHERE author_id = ?", gone.id) == 0


async def test_delete_of_unknown_actor_is_a_no_op_without_fetch(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    ghost = await beta.user("ghost")
    forger = await Forger.of(beta, ghost)
    net.log.clear()

    sent = await forger.post(alpha, forger.activity("Delete", ghost.uri))
    await net.settle()

    # Alpha never heard of ghost: 202, nothing stored, and no request to beta for the key
    assert sent.status == 202
    assert net.requests_to("beta.example") == []
    assert await actor_by_uri(alpha, ghost.uri) is None
    assert await inbox_count(alpha) == 0
    assert await alpha.value("SELECT count(*) FROM actors WHERE is_local = 0") == 0
    assert people.alice.deleted_at is None


async def _actor_document(trio: Trio, username: str) -> tuple[int, dict[str, object]]:
    key_id, pem = await instance_key(trio.alpha)
    status, doc, _ = await signed_get(
        trio.beta, f"/users/{username}", key_id=key_id, private_key_pem=pem
    )
    return status, doc


async def test_partners_cannot_interact_with_posts_they_cannot_see(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    internal = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Internal memo", Visibility.INTERNAL)
    )
    private = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("For my followers", Visibility.FOLLOWERS)
    )
    bob = await Forger.of(beta, people.bob)

    # When bob (who follows no one here) guesses the URIs and replies to and likes them
    for target in (internal, private):
        reply = bob.note("Guessed!", to=[people.alice.uri], inReplyTo=target.uri)
        assert (await bob.post(alpha, bob.create(reply))).status == 202
        assert (await bob.post(alpha, bob.activity("Like", target.uri))).status == 202
    await net.settle()

    # Then nothing is attached to those posts and alice is told nothing about them
    for target in (internal, private):
        shown = await visible(alpha, target.id, people.alice)
        assert shown is not None and (shown.reply_count, shown.like_count) == (0, 0)
        thread = await alpha.ctx.db.read(posts.select_thread, target.id, people.alice.id)
        assert [p.id for p in thread] == [target.id]
    assert NotificationKind.REPLY not in await _kinds(alpha, people.alice.id)
    assert NotificationKind.LIKE not in await _kinds(alpha, people.alice.id)


async def test_profile_edit_sends_update_of_person_to_followers(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, gamma, net = trio.alpha, trio.beta, trio.gamma, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    await follow_across(net, alpha, people.carol, "bob@beta.example")

    # When bob edits his profile
    await accounts.update_profile(
        beta.ctx,
        people.bob.id,
        {"display_name": "Robert B.", "job_title": "Buyer"},
        bio_source="Procurement, **EMEA**",
    )
    await net.settle()

    # Then one Update{Person} reached alpha (shared inbox) and none went elsewhere
    updates = await deliveries(beta, "Update")
    assert [(d["inbox_url"], d["state"]) for d in updates] == [
        ("https://alpha.example/inbox", "delivered")
    ]
    bob_at_alpha = await actor_by_uri(alpha, people.bob.uri)
    assert bob_at_alpha is not None and bob_at_alpha.display_name == "Robert B."
    assert "Procurement" in bob_at_alpha.bio_html
    assert await actor_by_uri(gamma, people.bob.uri) is None


async def test_wall_post_addressed_to_the_owners_followers_reaches_them(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    eve = await alpha.user("eve")
    # carol (alpha) and dave (beta) follow alice; eve does not
    await posting.publish_post(alpha.ctx, people.carol, posting.Draft("hi"))
    await following.follow(alpha.ctx, people.carol, people.alice.id)
    await follow_across(net, beta, people.dave, "alice@alpha.example")
    bob = await Forger.of(beta, people.bob)
    wall = f"{people.alice.uri}/wall"
    note = bob.note(
        "Welcome to the team!",
        to=[people.alice.uri],
        cc=[f"{people.alice.uri}/followers"],
        mentions=[people.alice.uri],
        target={"type": "OrderedCollection", "id": wall, "attributedTo": people.alice.uri},
    )
    await bob.post(alpha, bob.create(note))
    await net.settle()

    copy = await copy_of(alpha, note["id"])
    assert await visible(alpha, copy, people.alice) is not None
    assert await visible(alpha, copy, people.carol) is not None
    assert await visible(alpha, copy, eve) is None
    # The Add told the author and alice's followers elsewhere (beta: one shared inbox)
    adds = await deliveries(alpha, "Add")
    assert [d["inbox_url"] for d in adds] == ["https://beta.example/inbox"]
    add = json.loads(adds[0]["body"])
    assert add["to"] == [f"{people.alice.uri}/followers", people.bob.uri]
