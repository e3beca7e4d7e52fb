"""Posting through the web: compose, mentions, hashtags, replies, likes, edits, deletes, walls,
follows, notifications, paging."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

from quart import Quart
from quart.typing import TestClientProtocol as Client

from server.domain import Visibility
from server.services import accounts, backups, following, posting
from server.storage import federation as fed
from server.storage import posts
from tests.conftest import PASSWORD, People, context_of
from tests.support.web import csrf_of, login, post_form


async def _client(app: Quart, name: str) -> Client:
    client = app.test_client()
    await login(client, name, PASSWORD)
    return client


async def _page(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status_code == 200, path
    return await response.get_data(as_text=True)


def _post_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-post-id="(\d+)"', html)]


async def test_compose_mention_hashtag_and_notification(app: Quart, people: People) -> None:
    alice = await _client(app, "alice")
    response = await post_form(
        alice,
        "/posts",
        {
            "text": "Tender prep with @bob #Q2tender https://example.com/spec.",
            "visibility": "internal",
        },
    )
    assert response.status_code == 303
    home = await _page(alice, "/")
    assert 'class="u-url mention"' in home and 'href="http://127.0.0.1:8000/people/bob"' in home
    assert "/tags/q2tender" in home
    assert 'href="https://example.com/spec"' in home
    bob = await _client(app, "bob")
    notes = await _page(bob, "/notifications")
    assert "mentioned you" in notes
    assert (await (await bob.get("/notifications/count")).get_json())["unread"] == 1
    # The badge is in the page itself (no JavaScript needed), on every page
    assert re.search(r'data-unread>1<span class="sr-only"> unread</span>', await _page(bob, "/"))
    assert re.search(r"data-unread hidden>", await _page(alice, "/"))
    tag = await _page(bob, "/tags/q2tender")
    assert "Tender prep" in tag


async def test_a_mention_of_nobody_is_pointed_out_after_posting(app: Quart, people: People) -> None:
    alice = await _client(app, "alice")
    response = await post_form(
        alice, "/posts", {"text": "Thanks @bob and @bobb and @nobody!", "visibility": "internal"}
    )
    assert response.status_code == 303
    home = await _page(alice, "/")
    assert "@bobb, @nobody are not colleagues here" in home
    token = await csrf_of(alice, "/")
    answer = await alice.post(
        "/posts",
        form={"text": "Ping @ghost", "visibility": "internal", "csrf_token": token},
        headers={"X-Requested-With": "steelyard"},
    )
    assert answer.status_code == 201
    assert "@ghost is not a colleague here" in (await answer.get_json())["note"]
    plain = await alice.post(
        "/posts",
        form={"text": "Ping @bob", "visibility": "internal", "csrf_token": token},
        headers={"X-Requested-With": "steelyard"},
    )
    assert "note" not in await plain.get_json()


async def test_mark_all_as_read_marks_only_what_the_page_showed(app: Quart, people: People) -> None:
    ctx = context_of(app)
    await posting.publish_post(ctx, people.bob, posting.Draft("Hi @alice", Visibility.INTERNAL))
    alice = await _client(app, "alice")
    page = await _page(alice, "/notifications")
    upto = re.search(r'name="upto" value="(\d+)"', page)
    assert upto is not None
    # a notification arrives while the page is open
    await posting.publish_post(ctx, people.carol, posting.Draft("Yo @alice", Visibility.INTERNAL))
    token = await csrf_of(alice, "/notifications")
    await alice.post("/notifications/read", form={"upto": upto[1], "csrf_token": token})
    assert (await (await alice.get("/notifications/count")).get_json())["unread"] == 1
    page = await _page(alice, "/notifications")
    upto = re.search(r'name="upto" value="(\d+)"', page)
    assert upto is not None
    token = await csrf_of(alice, "/notifications")
    await alice.post("/notifications/read", form={"upto": upto[1], "csrf_token": token})
    assert (await (await alice.get("/notifications/count")).get_json())["unread"] == 0
    assert "Mark all as read" not in await _page(alice, "/notifications")  # nothing left


async def test_the_cv_keeps_its_line_breaks_and_is_edited_as_it_was_typed(
    app: Quart, people: People
) -> None:
    alice = await _client(app, "alice")
    typed = "Ten years in logistics.\nI like:\n- roadmaps\n\nSee https://example.com"
    await post_form(
        alice,
        "/settings/profile",
        {"display_name": "Alice Example", "bio": typed},
        token_from="/settings/profile",
    )
    profile = await _page(alice, "/people/alice")
    assert "Ten years in logistics.<br>I like:<br>- roadmaps" in profile
    form = await _page(alice, "/settings/profile")
    assert (
        "Ten years in logistics.\nI like:\n- roadmaps\n\nSee https://example.com</textarea>" in form
    )
    assert "&lt;p&gt;" not in form
    # a tag among the lines keeps the lines too, and is then edited as the HTML it became
    await post_form(
        alice,
        "/settings/profile",
        {"display_name": "Alice Example", "bio": "Lead of:\n<b>Tenders</b>\nPricing"},
        token_from="/settings/profile",
    )
    assert "Lead of:<br><b>Tenders</b><br>Pricing" in await _page(alice, "/people/alice")


async def test_home_says_how_to_get_started_until_it_is_done(app: Quart, people: People) -> None:
    """An admin's first sign-in lands on an empty feed: it says where accounts and partners
    are added, and a colleague without a job title is asked for one; done steps go."""
    ctx = context_of(app)
    alice = await _client(app, "alice")  # an admin; bob and carol have accounts already
    home = await _page(alice, "/")
    assert "Getting started with" in home
    assert "Done: </span>Create accounts for your colleagues" in home
    assert 'href="/admin/federation">Allow your partners' in home
    bob = await _client(app, "bob")
    bobs = await _page(bob, "/")
    assert 'href="/settings/profile">Add your job title' in bobs and "/admin/" not in bobs
    await ctx.db.write(fed.upsert_allowed_host, "partner.example", "partner", "", "alice", 1)
    await accounts.update_profile(
        ctx, people.alice.id, {"display_name": "Alice Example", "job_title": "CTO"}, bio_source=None
    )
    home = await _page(alice, "/")
    assert 'href="/admin/backups">Set up nightly backups' in home  # what is left
    await asyncio.to_thread(
        backups.create_backup,
        ctx.config,
        ctx.config.instance_path / "backups",
        now=dt.datetime.now(dt.UTC),
        say=lambda _: None,
    )
    assert "Getting started" not in await _page(alice, "/")
    assert "Getting started" not in await _page(alice, "/?before=99999999999999")
    assert "Getting started" in await _page(bob, "/")


async def test_follow_feed_reply_like_and_notifications(app: Quart, people: People) -> None:
    bob = await _client(app, "bob")
    followed = await post_form(bob, "/people/alice/follow", {})
    assert followed.status_code == 303
    alice = await _client(app, "alice")
    await post_form(
        alice, "/posts", {"text": "Shipping the release today", "visibility": "followers"}
    )
    home = await _page(bob, "/")
    assert "Shipping the release today" in home
    post_id = _post_ids(home)[0]
    reply = await post_form(
        bob, "/posts", {"text": "Good luck!", "in_reply_to": str(post_id), "visibility": "public"}
    )
    assert reply.status_code == 303
    liked = await post_form(bob, f"/posts/{post_id}/like", {"action": "like"})
    assert liked.status_code == 303
    again = await post_form(bob, f"/posts/{post_id}/like", {"action": "like"})
    assert again.status_code == 303
    thread = await _page(alice, f"/posts/{post_id}")
    assert "Good luck!" in thread
    ctx = context_of(app)
    stored = await ctx.db.read(posts.select_post, post_id, people.alice.id)
    assert stored is not None and stored.like_count == 1 and stored.reply_count == 1
    # A reply to a followers-only post is never wider than its parent.
    reply_post = await ctx.db.read(posts.select_thread, post_id, people.alice.id)
    assert reply_post[-1].visibility is Visibility.FOLLOWERS
    notes = await _page(alice, "/notifications")
    assert "followed you" in notes and "replied" in notes and "liked your post" in notes
    followers = await _page(alice, "/people/alice/followers")
    assert "Bob Builder" in followers
    following_page = await _page(bob, "/people/bob/following")
    assert "Alice Example" in following_page


async def test_edit_keeps_history_and_delete_keeps_archive(app: Quart, people: People) -> None:
    ctx = context_of(app)
    post = await posting.publish_post(ctx, people.alice, posting.Draft("First draft"))
    alice = await _client(app, "alice")
    edited = await post_form(
        alice,
        f"/posts/{post.id}/edit",
        {"text": "Second draft"},
        token_from=f"/posts/{post.id}/edit",
    )
    assert edited.status_code == 303
    history = await _page(alice, f"/posts/{post.id}/history")
    assert "First draft" in history and "Second draft" in history
    # Without JavaScript nothing asked yet: the server asks, and nothing is deleted.
    asked = await post_form(alice, f"/posts/{post.id}/delete", {"next": "/people/alice"})
    assert asked.status_code == 200
    question = await asked.get_data(as_text=True)
    assert "Delete this post?" in question and "Second draft" in question
    assert 'name="confirmed" value="yes"' in question
    assert 'name="next" value="/people/alice"' in question
    assert (await alice.get(f"/posts/{post.id}")).status_code == 200
    deleted = await post_form(alice, f"/posts/{post.id}/delete", {"confirmed": "yes"})
    assert deleted.status_code == 303
    assert (await alice.get(f"/posts/{post.id}")).status_code == 404
    versions = await ctx.db.read(posts.select_versions, post.id)
    assert [v.source for v in versions] == ["Second draft", "First draft"]
    archived = await ctx.db.read(posts.select_post_unchecked, post.id)
    assert archived is not None and archived.deleted_at is not None


async def test_other_peoples_posts_cannot_be_edited_or_deleted(app: Quart, people: People) -> None:
    ctx = context_of(app)
    post = await posting.publish_post(ctx, people.alice, posting.Draft("Alice's words"))
    bob = await _client(app, "bob")
    assert (await bob.get(f"/posts/{post.id}/edit")).status_code == 403
    edit = await post_form(bob, f"/posts/{post.id}/edit", {"text": "Bob was here"})
    assert edit.status_code == 403
    for form in ({}, {"confirmed": "yes"}):  # not even asked
        delete = await post_form(bob, f"/posts/{post.id}/delete", form)
        assert delete.status_code == 403
    unchanged = await ctx.db.read(posts.select_post, post.id, people.alice.id)
    assert unchanged is not None and unchanged.source == "Alice's words"


async def test_wall_post_and_owner_removes_it(app: Quart, people: People) -> None:
    bob = await _client(app, "bob")
    wrote = await post_form(
        bob,
        "/posts",
        {"text": "Congrats on the launch!", "wall_owner": "alice", "visibility": "internal"},
        token_from="/people/alice",
    )
    assert wrote.status_code == 303
    alice = await _client(app, "alice")
    profile = await _page(alice, "/people/alice")
    assert "Congrats on the launch!" in profile
    home = await _page(alice, "/")
    assert "Congrats on the launch!" in home
    assert "wrote on your wall" in await _page(alice, "/notifications")
    post_id = _post_ids(profile)[0]
    carol = await _client(app, "carol")
    refused = await post_form(carol, f"/posts/{post_id}/delete", {"confirmed": "yes"})
    assert refused.status_code == 403
    asked = await post_form(alice, f"/posts/{post_id}/delete", {})
    assert "Remove this post from your wall?" in await asked.get_data(as_text=True)
    removed = await post_form(alice, f"/posts/{post_id}/delete", {"confirmed": "yes"})
    assert removed.status_code == 303
    assert "Congrats on the launch!" not in await _page(alice, "/people/alice")


async def test_locked_account_approves_followers(app: Quart, people: People) -> None:
    ctx = context_of(app)
    carol = await _client(app, "carol")
    saved = await post_form(
        carol,
        "/settings/profile",
        {"display_name": "Carol Clerk", "manually_approves": "on"},
        token_from="/settings/profile",
    )
    assert saved.status_code == 303
    bob = await _client(app, "bob")
    await post_form(bob, "/people/carol/follow", {})
    await posting.publish_post(
        ctx, people.carol, posting.Draft("Followers only news", Visibility.FOLLOWERS)
    )
    assert "Followers only news" not in await _page(bob, "/people/carol")
    notes = await _page(carol, "/notifications")
    assert "asked to follow you" in notes
    accepted = await post_form(carol, f"/follow-requests/{people.bob.id}", {"action": "accept"})
    assert accepted.status_code == 303
    assert "Followers only news" in await _page(bob, "/people/carol")
    # The answered request now reads as what it became.
    notes = await _page(carol, "/notifications")
    assert "followed you" in notes and "asked to follow you" not in notes


async def test_a_refused_request_takes_its_notification_back(app: Quart, people: People) -> None:
    carol = await _client(app, "carol")
    await post_form(
        carol,
        "/settings/profile",
        {"display_name": "Carol Clerk", "manually_approves": "on"},
        token_from="/settings/profile",
    )
    bob = await _client(app, "bob")
    await post_form(bob, "/people/carol/follow", {})
    assert (await (await carol.get("/notifications/count")).get_json())["unread"] == 1

    refused = await post_form(carol, f"/follow-requests/{people.bob.id}", {"action": "reject"})

    assert refused.status_code == 303
    assert "asked to follow you" not in await _page(carol, "/notifications")
    assert (await (await carol.get("/notifications/count")).get_json())["unread"] == 0


async def test_unfollowing_takes_the_follow_notification_back(app: Quart, people: People) -> None:
    """As on Mastodon: a follow that ended no longer says "followed you"; following again
    says it once more."""
    bob = await _client(app, "bob")
    alice = await _client(app, "alice")
    await post_form(bob, "/people/alice/follow", {})
    assert "followed you" in await _page(alice, "/notifications")

    unfollowed = await post_form(bob, "/people/alice/follow", {"action": "unfollow"})

    assert unfollowed.status_code == 303
    assert "followed you" not in await _page(alice, "/notifications")
    assert (await (await alice.get("/notifications/count")).get_json())["unread"] == 0
    await post_form(bob, "/people/alice/follow", {})
    assert (await _page(alice, "/notifications")).count("followed you") == 1


async def test_empty_and_oversized_posts_are_refused_and_text_kept(
    app: Quart, people: People
) -> None:
    alice = await _client(app, "alice")
    empty = await post_form(alice, "/posts", {"text": "   "})
    assert empty.status_code == 303
    assert "Write something first." in await _page(alice, "/")
    long_text = "x" * (posting.MAX_POST_CHARS + 1)
    await post_form(alice, "/posts", {"text": long_text})
    home = await _page(alice, "/")
    assert "at most 5000 characters" in home
    bad_vis = await post_form(alice, "/posts", {"text": "hello", "visibility": "everyone"})
    assert bad_vis.status_code == 303
    assert "Unknown visibility." in await _page(alice, "/")
    huge = await post_form(alice, "/posts", {"text": "y" * 400_000})
    assert huge.status_code == 413


async def test_direct_post_needs_a_recipient(app: Quart, people: People) -> None:
    alice = await _client(app, "alice")
    await post_form(alice, "/posts", {"text": "to nobody", "visibility": "direct"})
    assert "must @mention at least one" in await _page(alice, "/")


async def test_paging_walks_the_whole_history(app: Quart, people: People) -> None:
    ctx = context_of(app)
    for i in range(45):
        await posting.publish_post(ctx, people.alice, posting.Draft(f"update number {i}"))
    alice = await _client(app, "alice")
    seen: list[int] = []
    path = "/"
    while True:
        html = await _page(alice, path)
        seen.extend(_post_ids(html))
        match = re.search(r'href="(/\?before=\d+)"', html) or re.search(
            r'href="\?before=(\d+)"', html
        )
        if not match:
            break
        path = match[1] if match[1].startswith("/") else f"/?before={match[1]}"
    assert len(seen) == 45 and seen == sorted(seen, reverse=True)


async def test_people_directory_search(app: Quart, people: People) -> None:
    ctx = context_of(app)
    from server.services import accounts

    await accounts.update_profile(
        ctx,
        people.bob.id,
        {"display_name": "Bob Builder", "job_title": "Site Engineer", "department": "Construction"},
        bio_source="<p>Builds things</p>",
    )
    alice = await _client(app, "alice")
    found = await _page(alice, "/people?q=construction")
    assert "Bob Builder" in found and "Carol Clerk" not in found
    by_title = await _page(alice, "/people?q=site+engineer")
    assert "Bob Builder" in by_title
    everyone = await _page(alice, "/people")
    assert "Carol Clerk" in everyone and "Alice Example" in everyone
    assert "Builds things" in await _page(alice, "/people/bob")


async def test_a_deactivated_colleague_is_out_of_the_directory_by_any_spelling(
    app: Quart, people: People
) -> None:
    ctx = context_of(app)
    from server.services import accounts

    alice = await _client(app, "alice")
    host = ctx.federator.host
    assert "Carol Clerk" in await _page(alice, f"/people?q=@carol@{host}")
    await accounts.set_active(ctx, "carol", active=False, by=None)
    assert "Carol Clerk" not in await _page(alice, "/people?q=carol")
    assert "Carol Clerk" not in await _page(alice, f"/people?q=@carol@{host}")


async def test_unfollow_removes_followers_posts_from_feed(app: Quart, people: People) -> None:
    ctx = context_of(app)
    await following.follow(ctx, people.bob, people.alice.id)
    await posting.publish_post(
        ctx, people.alice, posting.Draft("followers news", Visibility.FOLLOWERS)
    )
    bob = await _client(app, "bob")
    assert "followers news" in await _page(bob, "/")
    await post_form(bob, "/people/alice/follow", {"action": "unfollow"})
    assert "followers news" not in await _page(bob, "/")


async def test_the_unread_badge_stops_counting_at_99_plus(app: Quart, people: People) -> None:
    ctx = context_of(app)
    for n in range(120):
        await posting.publish_post(
            ctx, people.alice, posting.Draft(f"note {n} for @bob", Visibility.INTERNAL)
        )
    bob = await _client(app, "bob")
    assert re.search(r'data-unread>99\+<span class="sr-only"> unread</span>', await _page(bob, "/"))
    # the JSON count (for scripts) is exact
    assert (await (await bob.get("/notifications/count")).get_json())["unread"] == 120


async def test_the_live_stream_starts_with_the_unread_count(app: Quart, people: People) -> None:
    """Read after subscribing, so a notification between page and stream is never missed,
    and a reconnecting page gets what arrived while it was away."""
    ctx = context_of(app)
    await posting.publish_post(ctx, people.alice, posting.Draft("ping @bob", Visibility.INTERNAL))
    bob = await _client(app, "bob")
    received = b""
    async with bob.request("/live") as stream:
        await stream.send_complete()
        while b"event: notifications" not in received or not received.endswith(b"\n\n"):
            received += await asyncio.wait_for(stream.receive(), 5)
        await stream.disconnect()  # the page goes away; the stream ends
    assert received.startswith(b"retry: 3000\n\n")
    assert b"event: notifications\ndata: 1\n\n" in received


async def test_a_deactivated_colleagues_wall_is_closed(app: Quart, people: People) -> None:
    """Nobody could remove what is written there (the owner cannot sign in)."""
    ctx = context_of(app)
    from server.services import accounts

    await accounts.set_active(ctx, "carol", active=False, by=None)
    bob = await _client(app, "bob")
    assert "Write on" not in await _page(bob, "/people/carol")
    refused = await post_form(
        bob, "/posts", {"text": "Hello?", "wall_owner": "carol"}, token_from="/people/bob"
    )
    assert refused.status_code == 303
    assert "the wall is closed" in await _page(bob, "/")
    kept = await ctx.db.read(
        posts.select_profile_feed, people.carol.id, people.bob.id, before=None, limit=5
    )
    assert kept.items == ()


async def test_a_post_card_names_the_author_by_handle_too(app: Quart, people: People) -> None:
    """Two colleagues may share a display name and a title; the handle tells them apart."""
    ctx = context_of(app)
    from server.services import accounts

    for person in (people.alice, people.carol):
        await accounts.update_profile(
            ctx, person.id, {"display_name": "Alice Example", "job_title": "CFO"}, bio_source=""
        )
        await posting.publish_post(ctx, person, posting.Draft("Pay the invoice today"))
    page = await _page(await _client(app, "bob"), "/people/carol")
    assert '<span class="post-handle">@carol</span> · CFO' in page


async def test_cancelling_a_delete_goes_back_to_the_card(app: Quart, people: People) -> None:
    ctx = context_of(app)
    post = await posting.publish_post(ctx, people.alice, posting.Draft("Keep me"))
    alice = await _client(app, "alice")
    token = await csrf_of(alice, "/people/alice")
    asked = await alice.post(
        f"/posts/{post.id}/delete",
        form={"csrf_token": token, "next": "/"},
        headers={"Referer": "http://127.0.0.1:8000/people/alice?before=99"},
    )
    page = await asked.get_data(as_text=True)
    assert f'href="/people/alice?before=99#post-{post.id}">Cancel</a>' in page
    # A referrer from elsewhere is not followed: back to the post itself.
    asked = await alice.post(
        f"/posts/{post.id}/delete",
        form={"csrf_token": token},
        headers={"Referer": "https://evil.example/people/alice"},
    )
    page = await asked.get_data(as_text=True)
    assert f'href="/posts/{post.id}#post-{post.id}">Cancel</a>' in page


async def test_a_post_written_on_an_older_page_lands_on_the_newest(
    app: Quart, people: People
) -> None:
    """The composer on page 2 sends the writer to the first page, where the post shows."""
    ctx = context_of(app)
    older = await posting.publish_post(ctx, people.alice, posting.Draft("Older news"))
    alice = await _client(app, "alice")
    page = await _page(alice, f"/?before={older.id + 1}")
    assert '<input type="hidden" name="next" value="/">' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    answer = await alice.post(
        "/posts",
        form={
            "csrf_token": token.group(1),
            "text": "Fresh news",
            "next": "/",
            "visibility": "internal",
        },
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    assert "Fresh news" in await _page(alice, "/")
