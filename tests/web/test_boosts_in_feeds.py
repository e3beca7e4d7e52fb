"""Boosts take a place in home feeds: a post boosted by someone I follow (or by me) shows up,
once, marked with who boosted it, at the time of the boost; paging runs across posts and
boosts; taking the boost back, or deleting the post, takes it out."""

from __future__ import annotations

import asyncio
import re

from quart import Quart

from server.domain import Visibility
from server.live import LiveEvent
from server.services import following, posting
from server.storage import posts
from tests.conftest import PASSWORD, People, context_of
from tests.support.web import login


async def _feed(app: Quart, viewer_id: int, limit: int = 20) -> list[tuple[int, str | None]]:
    """(post id, booster's username) of a viewer's home feed, newest first, all pages."""
    ctx = context_of(app)
    entries: list[tuple[int, str | None]] = []
    before = None
    while True:
        page = await ctx.db.read(posts.select_home_feed, viewer_id, before=before, limit=limit)
        entries += [(p.id, p.boosted_by.username if p.boosted_by else None) for p in page.items]
        if page.next_cursor is None:
            return entries
        before = page.next_cursor


def _drain(queue: asyncio.Queue[LiveEvent]) -> list[LiveEvent]:
    found = []
    while not queue.empty():
        found.append(queue.get_nowait())
    return found


async def test_a_boost_by_someone_i_follow_is_in_my_feed_once(app: Quart, people: People) -> None:
    ctx = context_of(app)
    alice, bob, carol = people.alice, people.bob, people.carol
    await following.follow(ctx, alice, bob.id)  # alice follows bob, not carol
    carols = await posting.publish_post(ctx, carol, posting.Draft("Plant tour", Visibility.PUBLIC))
    bobs = await posting.publish_post(ctx, bob, posting.Draft("Weekly notes", Visibility.PUBLIC))
    assert await _feed(app, alice.id) == [(bobs.id, None)]

    # When bob boosts carol's post (after his own), alice sees it on top, marked
    await posting.boost_post(ctx, bob, carols.id, boost=True)
    assert await _feed(app, alice.id) == [(carols.id, "bob"), (bobs.id, None)]
    # A boost of a post already in her feed (bob's own, or by someone she follows) adds nothing
    await posting.boost_post(ctx, bob, bobs.id, boost=True)
    assert await _feed(app, alice.id) == [(carols.id, "bob"), (bobs.id, None)]
    # and carol sees no boost of her own post in her feed, only the post
    assert await _feed(app, carol.id) == [(carols.id, None)]

    # The page says who boosted it
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    html = await (await client.get("/")).get_data(as_text=True)
    card = html[html.index(f'id="post-{carols.id}"') :]
    assert re.search(r'class="boost-note[^"]*">.*Bob Builder</a> boosted', card[:600], re.S)

    # Taking the boost back takes it out
    await posting.boost_post(ctx, bob, carols.id, boost=False)
    assert await _feed(app, alice.id) == [(bobs.id, None)]


async def test_paging_runs_across_posts_and_boosts(app: Quart, people: People) -> None:
    ctx = context_of(app)
    alice, bob, carol = people.alice, people.bob, people.carol
    await following.follow(ctx, alice, bob.id)
    expected: list[tuple[int, str | None]] = []
    for n in range(7):
        post = await posting.publish_post(ctx, bob, posting.Draft(f"b{n}", Visibility.PUBLIC))
        expected.append((post.id, None))
        other = await posting.publish_post(ctx, carol, posting.Draft(f"c{n}", Visibility.PUBLIC))
        await posting.boost_post(ctx, bob, other.id, boost=True)
        expected.append((other.id, "bob"))
    expected.reverse()
    for limit in (1, 2, 3, 20):
        assert await _feed(app, alice.id, limit) == expected, limit


async def test_a_deleted_post_leaves_the_feed_with_its_boosts(app: Quart, people: People) -> None:
    ctx = context_of(app)
    alice, bob, carol = people.alice, people.bob, people.carol
    await following.follow(ctx, alice, bob.id)
    post = await posting.publish_post(ctx, carol, posting.Draft("Oops", Visibility.PUBLIC))
    await posting.boost_post(ctx, bob, post.id, boost=True)
    assert await _feed(app, alice.id) == [(post.id, "bob")]
    async with ctx.live.subscribe(alice.id) as alices:
        await posting.delete_post(ctx, carol, post.id)
        # her open feed shows it as bob's boost: it hears that it went
        assert [(e.kind, e.data) for e in _drain(alices)] == [("deleted", str(post.id))]
    assert await _feed(app, alice.id) == []


async def test_a_profile_shows_the_persons_boosts(app: Quart, people: People) -> None:
    ctx = context_of(app)
    alice, bob, carol = people.alice, people.bob, people.carol
    first = await posting.publish_post(ctx, carol, posting.Draft("Plant tour", Visibility.PUBLIC))
    own = await posting.publish_post(ctx, bob, posting.Draft("My notes", Visibility.PUBLIC))
    await posting.boost_post(ctx, bob, first.id, boost=True)
    await posting.boost_post(ctx, bob, own.id, boost=True)  # his own post: shown once

    page = await ctx.db.read(posts.select_profile_feed, bob.id, alice.id, before=None, limit=1)
    assert [(p.id, p.boosted_by and p.boosted_by.username) for p in page.items] == [
        (first.id, "bob")
    ]
    rest = await ctx.db.read(
        posts.select_profile_feed, bob.id, alice.id, before=page.next_cursor, limit=5
    )
    assert [(p.id, p.boosted_by) for p in rest.items] == [(own.id, None)]
    assert rest.next_cursor is None
    # carol's own profile shows her post, not bob's boost of it
    mine = await ctx.db.read(posts.select_profile_feed, carol.id, alice.id, before=None, limit=5)
    assert [(p.id, p.boosted_by) for p in mine.items] == [(first.id, None)]


async def test_a_boost_reaches_open_feeds_live_with_its_booster(app: Quart, people: People) -> None:
    ctx = context_of(app)
    alice, bob, carol = people.alice, people.bob, people.carol
    await following.follow(ctx, alice, bob.id)
    post = await posting.publish_post(ctx, carol, posting.Draft("Plant tour", Visibility.PUBLIC))
    async with ctx.live.subscribe(alice.id) as alices, ctx.live.subscribe(carol.id) as carols:
        await posting.boost_post(ctx, bob, post.id, boost=True)
        event = await asyncio.wait_for(alices.get(), 2)
        assert (event.kind, event.data) == ("post", f"{post.id}:{bob.id}")
        # carol does not follow bob: no post for her feed, only her unread count (a boost)
        assert [(e.kind, e.data) for e in _drain(carols)] == [("notifications", "1")]

    # The card for that event says who boosted it; a made-up booster is ignored.
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    boosted = await (await client.get(f"/posts/{post.id}/card?via={bob.id}")).get_data(as_text=True)
    assert "Bob Builder</a> boosted" in boosted
    for via in (str(carol.id), "x", "9" * 30, "99999999999999999999", "%C2%B2", "%D9%A3"):
        plain = await (await client.get(f"/posts/{post.id}/card?via={via}")).get_data(as_text=True)
        assert "boosted</p>" not in plain and f'id="post-{post.id}"' in plain


async def test_a_live_boost_of_a_post_already_in_my_feed_inserts_nothing(
    app: Quart, people: People
) -> None:
    ctx = context_of(app)
    alice, bob, carol = people.alice, people.bob, people.carol
    await following.follow(ctx, alice, bob.id)
    await following.follow(ctx, alice, carol.id)
    post = await posting.publish_post(ctx, carol, posting.Draft("Old news", Visibility.PUBLIC))
    await posting.boost_post(ctx, bob, post.id, boost=True)
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    # alice follows carol: the post is in her feed at its own place, never as bob's boost
    answer = await client.get(f"/posts/{post.id}/card?via={bob.id}")
    assert answer.status_code == 204
    assert await _feed(app, alice.id) == [(post.id, None)]


async def test_the_author_is_told_of_a_boost_once_and_not_of_their_own(
    app: Quart, people: People
) -> None:
    ctx = context_of(app)
    bob, carol = people.bob, people.carol
    carols = await posting.publish_post(ctx, carol, posting.Draft("Plant tour", Visibility.PUBLIC))
    # Boosting one's own post tells nobody
    await posting.boost_post(ctx, carol, carols.id, boost=True)
    client = app.test_client()
    await login(client, "carol", PASSWORD)
    assert (await (await client.get("/notifications/count")).get_json())["unread"] == 0
    # When bob boosts it (twice: the second changes nothing), carol is told once
    await posting.boost_post(ctx, bob, carols.id, boost=True)
    await posting.boost_post(ctx, bob, carols.id, boost=True)
    assert (await (await client.get("/notifications/count")).get_json())["unread"] == 1
    html = await (await client.get("/notifications")).get_data(as_text=True)
    assert re.search(r"Bob Builder</a>\s*boosted your post", html), html
    # Taking the boost back takes its notification back (her open pages hear the count
    # drop); a like and unlike likewise
    async with ctx.live.subscribe(carol.id) as carols_pages:
        await posting.boost_post(ctx, bob, carols.id, boost=False)
        assert [(e.kind, e.data) for e in _drain(carols_pages)] == [("notifications", "0")]
    await posting.like_post(ctx, bob, carols.id, like=True)
    html = await (await client.get("/notifications")).get_data(as_text=True)
    assert "boosted your post" not in html and "liked your post" in html
    await posting.like_post(ctx, bob, carols.id, like=False)
    html = await (await client.get("/notifications")).get_data(as_text=True)
    assert "liked your post" not in html and "No notifications yet" in html
    assert (await (await client.get("/notifications/count")).get_json())["unread"] == 0
