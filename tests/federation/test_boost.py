"""Boosts (Announce) and their Undo, both directions; only public posts can be boosted."""

from __future__ import annotations

import pytest

from federation import vocab
from federation.types import AS_PUBLIC
from server.domain import NotificationKind, Visibility
from server.errors import Forbidden
from server.services import following, inbound, posting, remote
from server.storage import notifications, posts
from tests.federation.conftest import Trio
from tests.federation.support import Forger, follow_across


async def _announces(instance, post_uri: str) -> int:  # type: ignore[no-untyped-def]
    def count(conn):  # type: ignore[no-untyped-def]
        return conn.execute(
            "SELECT count(*) FROM announces a JOIN posts p ON p.id = a.post_id WHERE p.uri = ?",
            (post_uri,),
        ).fetchone()[0]

    return int(await instance.ctx.db.read(count))


async def _boost_notices(instance, recipient_id: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Who the recipient was told boosted one of their posts, oldest first."""
    page = await instance.ctx.db.read(
        notifications.select_notifications, recipient_id, before=None, limit=50
    )
    return [n.actor.id for n in reversed(page.items) if n.kind is NotificationKind.BOOST]


async def test_boost_and_undo_reach_the_author_and_followers(trio: Trio) -> None:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    carol = await trio.beta.user("carol")
    # Given carol (beta) follows alice (alpha), alice follows bob (beta), bob posts publicly
    alice_on_beta = await remote.find_person(trio.beta.ctx, "alice@alpha.example")
    await following.follow(trio.beta.ctx, carol, alice_on_beta.id)
    bob_on_alpha = await remote.find_person(trio.alpha.ctx, "bob@beta.example")
    await following.follow(trio.alpha.ctx, alice, bob_on_alpha.id)
    await trio.net.settle()
    post = await posting.publish_post(
        trio.beta.ctx, bob, posting.Draft("Public launch notes", Visibility.PUBLIC)
    )
    await trio.net.settle()
    local_copy = await trio.alpha.ctx.db.read(
        lambda c: c.execute("SELECT id FROM posts WHERE uri = ?", (post.uri,)).fetchone()[0]
    )
    # When alice boosts bob's post on alpha
    boosted = await posting.boost_post(trio.alpha.ctx, alice, local_copy, boost=True)
    assert boosted.boosted_by_viewer
    await trio.net.settle()
    # Then beta (the author's instance) records the Announce once, and tells bob
    assert await _announces(trio.beta, post.uri) == 1
    assert await _boost_notices(trio.beta, bob.id) == [alice_on_beta.id]
    # And boosting twice changes nothing
    await posting.boost_post(trio.alpha.ctx, alice, local_copy, boost=True)
    await trio.net.settle()
    assert await _announces(trio.beta, post.uri) == 1
    assert await _boost_notices(trio.beta, bob.id) == [alice_on_beta.id]
    # When alice takes it back, the Undo removes it there too, with bob's notification
    await posting.boost_post(trio.alpha.ctx, alice, local_copy, boost=False)
    await trio.net.settle()
    assert await _announces(trio.beta, post.uri) == 0
    assert await _boost_notices(trio.beta, bob.id) == []


@pytest.mark.parametrize(
    "visibility", [Visibility.INTERNAL, Visibility.FOLLOWERS, Visibility.DIRECT]
)
async def test_only_public_posts_can_be_boosted(trio: Trio, visibility: Visibility) -> None:
    alice = await trio.alpha.user("alice")
    await trio.alpha.user("dora")
    post = await posting.publish_post(
        trio.alpha.ctx, alice, posting.Draft("not for sharing @dora", visibility)
    )
    with pytest.raises(Forbidden):
        await posting.boost_post(trio.alpha.ctx, alice, post.id, boost=True)
    outbox = await trio.alpha.ctx.db.read(
        lambda c: c.execute(
            "SELECT count(*) FROM outbox_activities WHERE activity_type = 'Announce'"
        ).fetchone()[0]
    )
    assert outbox == 0


async def test_a_partners_boost_brings_the_post_into_followers_feeds(trio: Trio) -> None:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    dave = await trio.beta.user("dave")
    # Given alice (alpha) follows bob (beta) but not dave, and dave posts publicly
    await follow_across(trio.net, trio.alpha, alice, "bob@beta.example")
    post = await posting.publish_post(
        trio.beta.ctx, dave, posting.Draft("Tender results are out", Visibility.PUBLIC)
    )
    await trio.net.settle()
    assert await _announces(trio.alpha, post.uri) == 0  # alpha has not even got the post
    # When bob boosts it (alice has her feed open)
    async with trio.alpha.ctx.live.subscribe(alice.id) as alices_feed:
        await posting.boost_post(trio.beta.ctx, bob, post.id, boost=True)
        await trio.net.settle()
        event = alices_feed.get_nowait()
    bob_on_alpha = await remote.find_person(trio.alpha.ctx, "bob@beta.example")
    copy = await trio.alpha.value("SELECT id FROM posts WHERE uri = ?", post.uri)
    assert (event.kind, event.data) == ("post", f"{copy}:{bob_on_alpha.id}")
    # Then alpha fetched the post from beta and alice's feed shows it, boosted by bob
    page = await trio.alpha.ctx.db.read(posts.select_home_feed, alice.id, before=None, limit=10)
    assert [(p.uri, p.boosted_by and p.boosted_by.uri) for p in page.items] == [(post.uri, bob.uri)]
    assert "Tender results are out" in page.items[0].content_html
    # and when he takes it back, it leaves her feed
    await posting.boost_post(trio.beta.ctx, bob, post.id, boost=False)
    await trio.net.settle()
    page = await trio.alpha.ctx.db.read(posts.select_home_feed, alice.id, before=None, limit=10)
    assert page.items == ()


async def test_a_boost_of_a_post_on_a_host_not_allowed_fetches_nothing(trio: Trio) -> None:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    await follow_across(trio.net, trio.alpha, alice, "bob@beta.example")
    forger = await Forger.of(trio.beta, bob)
    # gamma is not on alpha's allowlist
    boost = forger.activity("Announce", "https://gamma.example/users/gus/notes/1", to=[AS_PUBLIC])
    assert (await forger.post(trio.alpha, boost)).status == 202
    await trio.net.settle()
    assert trio.net.requests_to("gamma.example") == []
    page = await trio.alpha.ctx.db.read(posts.select_home_feed, alice.id, before=None, limit=10)
    assert page.items == ()
    retried = await trio.alpha.value(
        "SELECT count(*) FROM inbox_activities WHERE last_error IS NOT NULL"
    )
    assert retried == 0  # ignored for good, not retried


async def test_an_old_post_fetched_for_a_boost_keeps_its_place_in_time(trio: Trio) -> None:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    dave = await trio.beta.user("dave")
    await follow_across(trio.net, trio.alpha, alice, "bob@beta.example")
    published = trio.net.clock.now_ms()
    post = await posting.publish_post(
        trio.beta.ctx, dave, posting.Draft("Last year's results", Visibility.PUBLIC)
    )
    await trio.net.settle()
    recent = await posting.publish_post(
        trio.beta.ctx, bob, posting.Draft("This week", Visibility.PUBLIC)
    )
    trio.net.clock.advance(40 * 24 * 3600)  # forty days later, bob boosts dave's old post
    await trio.net.settle()
    forger = await Forger.of(trio.beta, bob)
    # (the boost names the post with a fragment: it is stored under its own id)
    boost = forger.activity("Announce", f"{post.uri}#from-a-boost", to=[AS_PUBLIC])
    assert (await forger.post(trio.alpha, boost)).status == 202
    await trio.net.settle()

    assert await _announces(trio.alpha, post.uri) == 1
    created = await trio.alpha.value("SELECT created_at FROM posts WHERE uri = ?", post.uri)
    assert isinstance(created, int) and published - 1000 <= created <= published + 1000
    # In alice's feed the boost is on top (it is new); dave's old post is not news
    page = await trio.alpha.ctx.db.read(posts.select_home_feed, alice.id, before=None, limit=10)
    assert [(p.uri, p.boosted_by is not None) for p in page.items] == [
        (post.uri, True),
        (recent.uri, False),
    ]
    # and nobody was notified of it
    notified = await trio.alpha.value(
        "SELECT count(*) FROM notifications n JOIN posts p ON p.id = n.post_id WHERE p.uri = ?",
        post.uri,
    )
    assert notified == 0


async def test_a_boosted_post_that_is_not_public_is_not_kept(trio: Trio) -> None:
    # A partner that serves a followers-only note to our instance actor (Mastodon may, when
    # our users follow the author) must not get it into our feeds through a boost.
    await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    bob_on_alpha = await remote.find_person(trio.alpha.ctx, "bob@beta.example")
    forger = await Forger.of(trio.beta, bob)
    for audience in ([forger.followers], [trio.alpha.base + "/users/alice"]):
        note = vocab.parse_note(forger.note("For my followers only", to=audience))
        with pytest.raises(inbound.Ignored, match="not public"):
            await inbound._store_note(trio.alpha.ctx, note, bob_on_alpha, for_boost=True)
        assert await trio.alpha.value("SELECT count(*) FROM posts WHERE uri = ?", note.id) == 0


async def test_a_partners_boost_of_a_deleted_post_is_not_kept_or_notified(trio: Trio) -> None:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    post = await posting.publish_post(
        trio.alpha.ctx, alice, posting.Draft("Gone soon", Visibility.PUBLIC)
    )
    await posting.delete_post(trio.alpha.ctx, alice, post.id)
    forger = await Forger.of(trio.beta, bob)
    boost = forger.activity("Announce", post.uri, to=[AS_PUBLIC])
    assert (await forger.post(trio.alpha, boost)).status == 202
    await trio.net.settle()
    assert await _announces(trio.alpha, post.uri) == 0
    assert await _boost_notices(trio.alpha, alice.id) == []


async def test_a_partners_undo_of_a_boost_updates_the_authors_open_badge(trio: Trio) -> None:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    post = await posting.publish_post(
        trio.alpha.ctx, alice, posting.Draft("Worth sharing", Visibility.PUBLIC)
    )
    forger = await Forger.of(trio.beta, bob)
    boost = forger.activity("Announce", post.uri, to=[AS_PUBLIC])
    assert (await forger.post(trio.alpha, boost)).status == 202
    await trio.net.settle()
    assert len(await _boost_notices(trio.alpha, alice.id)) == 1
    async with trio.alpha.ctx.live.subscribe(alice.id) as alices_pages:
        undo = forger.activity("Undo", boost["id"])
        assert (await forger.post(trio.alpha, undo)).status == 202
        await trio.net.settle()
        heard = []
        while not alices_pages.empty():
            heard.append(alices_pages.get_nowait())
    assert await _boost_notices(trio.alpha, alice.id) == []
    assert [(e.kind, e.data) for e in heard] == [("notifications", "0")]


@pytest.mark.parametrize("kind", ["EmojiReact", "http://litepub.social/ns#EmojiReact"])
async def test_a_pleroma_emoji_reaction_counts_as_a_like(trio: Trio, kind: str) -> None:
    """As Misskey's reaction Likes already do: the author hears 'liked your post'; the Undo
    of the reaction takes it back, and never a Like the same person gave separately."""
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    post = await posting.publish_post(
        trio.alpha.ctx, alice, posting.Draft("Shipped!", Visibility.PUBLIC)
    )
    forger = await Forger.of(trio.beta, bob)
    react = forger.activity(kind, post.uri, content="🔥")

    assert (await forger.post(trio.alpha, react)).status == 202
    await trio.net.settle()

    likes = await trio.alpha.value("SELECT like_count FROM posts WHERE id = ?", post.id)
    assert likes == 1
    assert await trio.alpha.value("SELECT kind FROM notifications") == "like"
    undo = forger.activity("Undo", {k: v for k, v in react.items() if k != "@context"})
    assert (await forger.post(trio.alpha, undo)).status == 202
    await trio.net.settle()
    assert await trio.alpha.value("SELECT like_count FROM posts WHERE id = ?", post.id) == 0

    # A Like and a reaction by one person: one like; undoing the reaction keeps the Like.
    await forger.post(trio.alpha, forger.activity("Like", post.uri))
    second = forger.activity(kind, post.uri, content="🎉")
    await forger.post(trio.alpha, second)
    await forger.post(
        trio.alpha,
        forger.activity("Undo", {k: v for k, v in second.items() if k != "@context"}),
    )
    await trio.net.settle()
    assert await trio.alpha.value("SELECT like_count FROM posts WHERE id = ?", post.id) == 1
