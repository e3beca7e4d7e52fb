"""Posts of every visibility reach exactly their audience, on every instance, and nothing
internal ever leaves. Remote posts show in feeds, threads, profiles and notifications, to
those allowed to read them and to no one else."""

from __future__ import annotations

import pytest

from server.domain import NotificationKind, Visibility
from server.errors import InvalidInput
from server.services import following, posting, remote
from server.storage import notifications, posts
from tests.federation.conftest import Trio
from tests.federation.support import (
    cast,
    copy_of,
    deliveries,
    follow_across,
    home_texts,
    outbox_count,
    profile_texts,
    visible,
)
from tests.support.network import PASSWORD
from tests.support.web import login


async def test_followers_post_reaches_only_followers(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, gamma, net = trio.alpha, trio.beta, trio.gamma, trio.net
    # Given alice (alpha) follows bob (beta); carol (alpha) and gus (gamma) do not
    bob_at_alpha = await follow_across(net, alpha, people.alice, "bob@beta.example")

    # When bob posts for his followers
    post = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Tender figures #q2", Visibility.FOLLOWERS)
    )
    await net.settle()

    # Then it was delivered to alpha (one shared-inbox delivery) and to no other host
    creates = await deliveries(beta, "Create")
    assert [(d["inbox_url"], d["state"]) for d in creates] == [
        ("https://alpha.example/inbox", "delivered")
    ]
    assert net.requests_to("gamma.example", "POST") == []
    assert await copy_of(gamma, post.uri) is None
    # and on alpha the follower reads it: home feed, thread, profile
    copy = await copy_of(alpha, post.uri)
    assert copy is not None
    assert "Tender figures" in await home_texts(alpha, people.alice)
    assert await visible(alpha, copy, people.alice) is not None
    assert "Tender figures" in await profile_texts(alpha, bob_at_alpha, people.alice)
    # but carol, who does not follow bob, reads it nowhere
    assert "Tender figures" not in await home_texts(alpha, people.carol)
    assert await visible(alpha, copy, people.carol) is None
    assert "Tender figures" not in await profile_texts(alpha, bob_at_alpha, people.carol)
    thread = await alpha.ctx.db.read(posts.select_thread, copy, people.carol.id)
    assert thread == []
    tagged = await alpha.ctx.db.read(
        posts.select_tag_feed, "q2", people.carol.id, before=None, limit=10
    )
    assert tagged.items == ()
    # nor does an anonymous visitor
    assert await alpha.ctx.db.read(posts.select_post, copy, None) is None


async def test_followers_post_is_hidden_from_non_followers_in_the_web_pages(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    post = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Only for followers", Visibility.FOLLOWERS)
    )
    await net.settle()
    copy = await copy_of(alpha, post.uri)

    # Carol (signed in on alpha, not a follower) gets 404 for the thread and sees nothing
    client = alpha.app.test_client()
    await login(client, "carol", PASSWORD)
    thread = await client.get(f"/posts/{copy}")
    assert thread.status_code == 404
    assert "Only for followers" not in await thread.get_data(as_text=True)
    profile = await client.get("/people/bob@beta.example")
    assert profile.status_code == 200
    assert "Only for followers" not in await profile.get_data(as_text=True)
    home = await client.get("/")
    assert "Only for followers" not in await home.get_data(as_text=True)

    # while alice sees it on the same pages
    client = alpha.app.test_client()
    await login(client, "alice", PASSWORD)
    assert "Only for followers" in await (await client.get(f"/posts/{copy}")).get_data(as_text=True)
    assert "Only for followers" in await (await client.get("/people/bob@beta.example")).get_data(
        as_text=True
    )
    assert "Only for followers" in await (await client.get("/")).get_data(as_text=True)


async def test_public_post_reaches_followers_and_colleagues_may_read_it(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, gamma, net = trio.alpha, trio.beta, trio.gamma, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    await follow_across(net, gamma, people.gus, "bob@beta.example")

    post = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Press release", Visibility.PUBLIC)
    )
    await net.settle()

    # Delivered to both follower hosts, once each
    hosts = sorted(d["host"] for d in await deliveries(beta, "Create"))
    assert hosts == ["alpha.example", "gamma.example"]
    copy = await copy_of(alpha, post.uri)
    assert "Press release" in await home_texts(alpha, people.alice)
    assert "Press release" in await home_texts(gamma, people.gus)
    # A public post is readable by carol too (thread), though it is not in her home feed
    assert await visible(alpha, copy, people.carol) is not None
    assert "Press release" not in await home_texts(alpha, people.carol)


async def test_direct_post_goes_only_to_the_addressed_persons_inbox(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, gamma, net = trio.alpha, trio.beta, trio.gamma, trio.net
    # Given carol (alpha) and gus (gamma) follow bob, alice does not
    await follow_across(net, alpha, people.carol, "bob@beta.example")
    await follow_across(net, gamma, people.gus, "bob@beta.example")

    # When bob writes a direct post to alice
    post = await posting.publish_post(
        beta.ctx,
        people.bob,
        posting.Draft("@alice@alpha.example the contract draft", Visibility.DIRECT),
    )
    await net.settle()

    # Then exactly one delivery, to alice's own inbox (not the shared one)
    creates = await deliveries(beta, "Create")
    assert [(d["inbox_url"], d["state"]) for d in creates] == [
        ("https://alpha.example/users/alice/inbox", "delivered")
    ]
    assert '"to":["https://alpha.example/users/alice"]' in creates[0]["body"]
    assert "followers" not in creates[0]["body"]
    # and only alice reads it
    copy = await copy_of(alpha, post.uri)
    assert await visible(alpha, copy, people.alice) is not None
    assert await visible(alpha, copy, people.carol) is None
    assert "contract draft" not in await home_texts(alpha, people.carol)
    assert await copy_of(gamma, post.uri) is None
    page = await alpha.ctx.db.read(
        notifications.select_notifications, people.alice.id, before=None, limit=5
    )
    assert [n.kind for n in page.items] == [NotificationKind.MENTION]


async def test_followers_post_mentioning_someone_reaches_them_and_no_other_non_follower(
    trio: Trio,
) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    eve = await alpha.user("eve")
    await follow_across(net, alpha, people.alice, "bob@beta.example")

    post = await posting.publish_post(
        beta.ctx,
        people.bob,
        posting.Draft("Thanks @carol@alpha.example for the figures", Visibility.FOLLOWERS),
    )
    await net.settle()

    # One delivery to alpha's shared inbox serves both alice (follower) and carol (mentioned)
    assert [d["inbox_url"] for d in await deliveries(beta, "Create")] == [
        "https://alpha.example/inbox"
    ]
    copy = await copy_of(alpha, post.uri)
    assert await visible(alpha, copy, people.alice) is not None
    assert await visible(alpha, copy, people.carol) is not None
    assert await visible(alpha, copy, eve) is None
    assert "for the figures" in await home_texts(alpha, people.carol)
    assert "for the figures" not in await home_texts(alpha, eve)


async def test_followers_post_without_remote_followers_leaves_nothing(trio: Trio) -> None:
    people = await cast(trio)
    beta, net = trio.beta, trio.net

    await posting.publish_post(beta.ctx, people.bob, posting.Draft("Nobody out there"))
    await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Nobody follows", Visibility.FOLLOWERS)
    )
    await net.settle()

    # The followers post is recorded in the outbox but queued for no one
    assert await deliveries(beta) == []
    assert net.requests_to("alpha.example", "POST") == []
    assert net.requests_to("gamma.example", "POST") == []


async def test_internal_posts_never_produce_an_outbox_row(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    before = await outbox_count(alpha)
    beta_inbox = len(net.requests_to("beta.example", "POST"))

    # When alice posts internally, edits it, a colleague replies, alice replies "publicly"
    post = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Layoff plans", Visibility.INTERNAL)
    )
    await posting.edit_post(alpha.ctx, people.alice, post.id, "Layoff plans (v2)")
    reply = await posting.publish_post(
        alpha.ctx, people.carol, posting.Draft("Noted", Visibility.PUBLIC, in_reply_to=post.id)
    )
    # Then a reply to an internal post is internal, whatever was asked
    assert reply.visibility is Visibility.INTERNAL
    await posting.like_post(alpha.ctx, people.carol, post.id, like=True)
    await posting.delete_post(alpha.ctx, people.carol, reply.id)
    await posting.delete_post(alpha.ctx, people.alice, post.id)
    await net.settle()

    # Nothing was recorded for federation and nothing reached beta
    assert await outbox_count(alpha) == before
    assert len(net.requests_to("beta.example", "POST")) == beta_inbox
    assert await copy_of(beta, post.uri) is None


async def test_internal_post_cannot_mention_a_remote_person(trio: Trio) -> None:
    people = await cast(trio)
    alpha = trio.alpha
    await remote.find_person(alpha.ctx, "bob@beta.example")
    before = await outbox_count(alpha)

    with pytest.raises(InvalidInput, match="Internal posts stay on this instance"):
        await posting.publish_post(
            alpha.ctx,
            people.alice,
            posting.Draft("@bob@beta.example secret", Visibility.INTERNAL),
        )

    assert await alpha.value("SELECT count(*) FROM posts") == 0
    assert await outbox_count(alpha) == before


async def test_remote_posts_show_in_feed_thread_profile_and_notifications(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    # alice posts; bob replies from beta; bob also posts on his own
    mine = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Kick-off on Monday", Visibility.FOLLOWERS)
    )
    await net.settle()
    at_beta = await copy_of(beta, mine.uri)
    assert at_beta is not None
    await posting.publish_post(
        beta.ctx,
        people.bob,
        posting.Draft("Count me in", Visibility.FOLLOWERS, in_reply_to=at_beta),
    )
    await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Partner news", Visibility.FOLLOWERS)
    )
    await net.settle()

    client = alpha.app.test_client()
    await login(client, "alice", PASSWORD)
    # Home feed
    assert "Partner news" in await (await client.get("/")).get_data(as_text=True)
    # Thread of alice's post holds bob's reply
    thread = await (await client.get(f"/posts/{mine.id}")).get_data(as_text=True)
    assert "Count me in" in thread
    # bob has a profile page on alpha
    profile = await client.get("/people/bob@beta.example")
    assert profile.status_code == 200
    body = await profile.get_data(as_text=True)
    assert "Partner news" in body and "Bob" in body
    # and the reply is a notification for alice
    notes = await (await client.get("/notifications")).get_data(as_text=True)
    assert "Count me in" in notes
    page = await alpha.ctx.db.read(
        notifications.select_notifications, people.alice.id, before=None, limit=10
    )
    assert NotificationKind.REPLY in [n.kind for n in page.items]


async def test_a_pending_follow_grants_nothing(trio: Trio) -> None:
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    alice = await alpha.user("alice")
    carol = await alpha.user("carol")
    bob = await beta.user("bob", locked=True)
    # Given carol's request to locked bob was accepted, and alice's is still pending
    await follow_across(net, alpha, carol, "bob@beta.example")
    carol_at_beta = await remote.find_person(beta.ctx, "carol@alpha.example")
    await following.answer_request(beta.ctx, bob, carol_at_beta.id, accept=True)
    await follow_across(net, alpha, alice, "bob@beta.example")

    # When bob posts for his followers (alpha gets a copy, for carol)
    post = await posting.publish_post(
        beta.ctx, bob, posting.Draft("Followers only", Visibility.FOLLOWERS)
    )
    await net.settle()

    # Then carol reads it and alice, whose request is pending, does not
    copy = await copy_of(alpha, post.uri)
    assert await visible(alpha, copy, carol) is not None
    assert await visible(alpha, copy, alice) is None
    assert "Followers only" not in await home_texts(alpha, alice)


async def test_reply_to_a_direct_post_stays_between_its_people(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, gamma, net = trio.alpha, trio.beta, trio.gamma, trio.net
    # bob's followers: carol (alpha), gus (gamma); alice does not follow bob
    await follow_across(net, alpha, people.carol, "bob@beta.example")
    await follow_across(net, gamma, people.gus, "bob@beta.example")
    dm = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("@bob@beta.example salary?", Visibility.DIRECT)
    )
    await net.settle()
    at_beta = await copy_of(beta, dm.uri)
    assert await visible(beta, at_beta, people.bob) is not None
    assert await visible(beta, at_beta, people.dave) is None

    # When bob replies, asking for the most public visibility
    reply = await posting.publish_post(
        beta.ctx,
        people.bob,
        posting.Draft("Not here", Visibility.PUBLIC, in_reply_to=at_beta),
    )
    await net.settle()

    # Then the reply is direct, to alice's own inbox only
    assert reply.visibility is Visibility.DIRECT
    rows = [d for d in await deliveries(beta, "Create") if d["activity_id"].startswith(reply.uri)]
    assert [d["inbox_url"] for d in rows] == ["https://alpha.example/users/alice/inbox"]
    copy = await copy_of(alpha, reply.uri)
    assert await visible(alpha, copy, people.alice) is not None
    assert await visible(alpha, copy, people.carol) is None
    assert await copy_of(gamma, reply.uri) is None
    thread = await alpha.ctx.db.read(posts.select_thread, dm.id, people.alice.id)
    assert [p.uri for p in thread] == [dm.uri, reply.uri]
