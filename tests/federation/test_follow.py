"""Following across instances: both ways, locked accounts, reject, unfollow (Undo), and the
rules on Accept (only for a Follow we sent, only from its target)."""

from __future__ import annotations

from server.domain import FollowState, NotificationKind, Visibility
from server.services import following, posting, remote
from server.storage import follows, notifications
from tests.federation.conftest import Trio
from tests.federation.support import (
    Forger,
    actor_by_uri,
    cast,
    deliveries,
    follow_across,
    follow_state,
    home_texts,
)
from tests.support.network import PASSWORD
from tests.support.web import login


async def test_follow_both_ways(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net

    # When alice follows bob and bob follows alice back
    bob_at_alpha = await follow_across(net, alpha, people.alice, "bob@beta.example")
    alice_at_beta = await follow_across(net, beta, people.bob, "alice@alpha.example")

    # Then both sides agree on both relationships
    assert await follow_state(alpha, people.alice.id, bob_at_alpha.id) is FollowState.ACCEPTED
    assert await follow_state(beta, alice_at_beta.id, people.bob.id) is FollowState.ACCEPTED
    assert await follow_state(beta, people.bob.id, alice_at_beta.id) is FollowState.ACCEPTED
    assert await follow_state(alpha, bob_at_alpha.id, people.alice.id) is FollowState.ACCEPTED
    # and each followee was told
    for instance, person in ((beta, people.bob), (alpha, people.alice)):
        page = await instance.ctx.db.read(
            notifications.select_notifications, person.id, before=None, limit=10
        )
        assert [n.kind for n in page.items] == [NotificationKind.FOLLOW]
    # and posts flow both ways
    await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("From bob", Visibility.FOLLOWERS)
    )
    await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("From alice", Visibility.FOLLOWERS)
    )
    await net.settle()
    assert "From bob" in await home_texts(alpha, people.alice)
    assert "From alice" in await home_texts(beta, people.bob)


async def test_locked_account_keeps_remote_follow_pending_until_accepted(trio: Trio) -> None:
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    alice = await alpha.user("alice")
    bob = await beta.user("bob", locked=True)

    # Given alice asks to follow locked bob
    bob_at_alpha = await follow_across(net, alpha, alice, "bob@beta.example")

    # Then the request waits on both sides, bob is asked, and no Accept left beta
    alice_at_beta = await actor_by_uri(beta, alice.uri)
    assert alice_at_beta is not None
    assert await follow_state(alpha, alice.id, bob_at_alpha.id) is FollowState.PENDING
    assert await follow_state(beta, alice_at_beta.id, bob.id) is FollowState.PENDING
    assert await deliveries(beta, "Accept") == []
    page = await beta.ctx.db.read(notifications.select_notifications, bob.id, before=None, limit=5)
    assert [n.kind for n in page.items] == [NotificationKind.FOLLOW_REQUEST]
    # and bob's followers-only posts do not reach alice meanwhile
    await posting.publish_post(beta.ctx, bob, posting.Draft("Too early", Visibility.FOLLOWERS))
    await net.settle()
    assert "Too early" not in await home_texts(alpha, alice)
    assert [d for d in await deliveries(beta, "Create") if d["host"] == "alpha.example"] == []

    # When bob accepts in the UI (the service)
    await following.answer_request(beta.ctx, bob, alice_at_beta.id, accept=True)
    await net.settle()

    # Then the Accept goes out and alice's side is accepted
    accepts = await deliveries(beta, "Accept")
    assert [(d["inbox_url"], d["state"]) for d in accepts] == [
        ("https://alpha.example/users/alice/inbox", "delivered")
    ]
    assert await follow_state(alpha, alice.id, bob_at_alpha.id) is FollowState.ACCEPTED
    assert await follow_state(beta, alice_at_beta.id, bob.id) is FollowState.ACCEPTED
    await posting.publish_post(beta.ctx, bob, posting.Draft("Now welcome", Visibility.FOLLOWERS))
    await net.settle()
    assert "Now welcome" in await home_texts(alpha, alice)


async def test_locked_account_rejects_remote_follow(trio: Trio) -> None:
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    alice = await alpha.user("alice")
    bob = await beta.user("bob", locked=True)
    bob_at_alpha = await follow_across(net, alpha, alice, "bob@beta.example")
    alice_at_beta = await actor_by_uri(beta, alice.uri)
    assert alice_at_beta is not None

    # When bob declines
    await following.answer_request(beta.ctx, bob, alice_at_beta.id, accept=False)
    await net.settle()

    # Then a Reject reached alpha and the request is gone on both sides
    assert [d["state"] for d in await deliveries(beta, "Reject")] == ["delivered"]
    assert await follow_state(alpha, alice.id, bob_at_alpha.id) is None
    assert await follow_state(beta, alice_at_beta.id, bob.id) is None


async def test_reject_after_accept_removes_the_follower(trio: Trio) -> None:
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    alice = await alpha.user("alice")
    bob = await beta.user("bob")
    bob_at_alpha = await follow_across(net, alpha, alice, "bob@beta.example")
    assert await follow_state(alpha, alice.id, bob_at_alpha.id) is FollowState.ACCEPTED
    follow_id = await alpha.value(
        "SELECT uri FROM follows WHERE follower_id = ? AND followee_id = ?",
        alice.id,
        bob_at_alpha.id,
    )

    # When bob's server later sends Reject{Follow} (removing a follower)
    forger = await Forger.of(beta, bob)
    inner = {"id": follow_id, "type": "Follow", "actor": alice.uri, "object": bob.uri}
    sent = await forger.post(alpha, forger.activity("Reject", inner, to=[alice.uri]))
    await net.settle()

    # Then alice no longer follows bob
    assert sent.status == 202
    assert await follow_state(alpha, alice.id, bob_at_alpha.id) is None


async def test_unfollow_sends_undo_and_stops_deliveries(trio: Trio) -> None:
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    alice = await alpha.user("alice")
    bob = await beta.user("bob")
    bob_at_alpha = await follow_across(net, alpha, alice, "bob@beta.example")
    alice_at_beta = await actor_by_uri(beta, alice.uri)
    assert alice_at_beta is not None
    assert await follow_state(beta, alice_at_beta.id, bob.id) is FollowState.ACCEPTED

    # When alice unfollows
    await following.unfollow(alpha.ctx, alice, bob_at_alpha.id)
    await net.settle()

    # Then an Undo{Follow} embedding her Follow reached beta and the follow is gone there
    undos = await deliveries(alpha, "Undo")
    assert [(d["host"], d["state"]) for d in undos] == [("beta.example", "delivered")]
    assert '"type":"Follow"' in undos[0]["body"]
    assert await follow_state(beta, alice_at_beta.id, bob.id) is None
    # and bob's next followers-only post is not sent to alpha
    await posting.publish_post(beta.ctx, bob, posting.Draft("After", Visibility.FOLLOWERS))
    await net.settle()
    assert [d for d in await deliveries(beta, "Create") if d["host"] == "alpha.example"] == []


async def test_repeated_follow_is_one_relationship_and_gets_accept_again(trio: Trio) -> None:
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    alice = await alpha.user("alice")
    bob = await beta.user("bob")
    await remote.find_person(beta.ctx, "alice@alpha.example")  # beta knows alice's keys
    forger = await Forger.of(beta, bob)

    # When bob's Follow arrives twice with different ids (its Accept was lost, say)
    for _ in range(2):
        sent = await forger.post(alpha, forger.activity("Follow", alice.uri, to=[alice.uri]))
        assert sent.status == 202
    await net.settle()

    # Then there is one relationship, one notification, and each Follow got an Accept
    bob_at_alpha = await actor_by_uri(alpha, bob.uri)
    assert bob_at_alpha is not None
    assert await alpha.value("SELECT count(*) FROM follows") == 1
    assert await follow_state(alpha, bob_at_alpha.id, alice.id) is FollowState.ACCEPTED
    page = await alpha.ctx.db.read(
        notifications.select_notifications, alice.id, before=None, limit=10
    )
    assert len(page.items) == 1
    assert [d["state"] for d in await deliveries(alpha, "Accept")] == ["delivered", "delivered"]


async def test_accept_for_a_follow_never_sent_is_ignored(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    bob_at_alpha = await remote.find_person(alpha.ctx, "bob@beta.example")
    forger = await Forger.of(beta, people.bob)

    # When bob accepts a Follow alice never sent (unknown id, embedded)
    made_up = {
        "id": "https://alpha.example/activities/follow/0000",
        "type": "Follow",
        "actor": people.alice.uri,
        "object": people.bob.uri,
    }
    sent = await forger.post(alpha, forger.activity("Accept", made_up, to=[people.alice.uri]))
    # and an Accept that names only an unknown Follow id
    bare = forger.activity("Accept", "https://alpha.example/activities/follow/1111")
    sent_bare = await forger.post(alpha, bare)
    await net.settle()

    # Then both are received (202) but no relationship appears
    assert (sent.status, sent_bare.status) == (202, 202)
    assert await follow_state(alpha, people.alice.id, bob_at_alpha.id) is None
    assert await alpha.value("SELECT count(*) FROM follows") == 0


async def test_accept_must_come_from_the_follows_target(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    dave = await beta.user("dave2", locked=True)
    # Given alice's request to locked dave2 is pending
    dave_at_alpha = await follow_across(net, alpha, people.alice, "dave2@beta.example")
    assert await follow_state(alpha, people.alice.id, dave_at_alpha.id) is FollowState.PENDING
    follow_id = await alpha.value(
        "SELECT uri FROM follows WHERE follower_id = ? AND followee_id = ?",
        people.alice.id,
        dave_at_alpha.id,
    )
    assert isinstance(follow_id, str)

    # When bob (same host, not the target) sends an Accept of that very Follow
    forger = await Forger.of(beta, people.bob)
    inner = {"id": follow_id, "type": "Follow", "actor": people.alice.uri, "object": dave.uri}
    sent = await forger.post(alpha, forger.activity("Accept", inner, to=[people.alice.uri]))
    by_id = await forger.post(alpha, forger.activity("Accept", follow_id))
    await net.settle()

    # Then the request stays pending: only dave2 can accept it
    assert (sent.status, by_id.status) == (202, 202)
    assert await follow_state(alpha, people.alice.id, dave_at_alpha.id) is FollowState.PENDING
    bob_at_alpha = await actor_by_uri(alpha, people.bob.uri)
    assert bob_at_alpha is not None
    assert await follow_state(alpha, people.alice.id, bob_at_alpha.id) is None


async def test_remote_undo_follow_removes_the_follower(trio: Trio) -> None:
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    alice = await alpha.user("alice")
    bob = await beta.user("bob")
    dave = await beta.user("dave")
    alice_at_beta = await follow_across(net, beta, bob, "alice@alpha.example")
    bob_at_alpha = await actor_by_uri(alpha, bob.uri)
    assert bob_at_alpha is not None
    follow_id = await alpha.value("SELECT uri FROM follows WHERE follower_id = ?", bob_at_alpha.id)

    # When dave (same host) sends Undo of bob's Follow: ignored
    dave_forger = await Forger.of(beta, dave)
    inner = {"id": follow_id, "type": "Follow", "actor": bob.uri, "object": alice.uri}
    assert (await dave_forger.post(alpha, dave_forger.activity("Undo", inner))).status == 202
    assert (await dave_forger.post(alpha, dave_forger.activity("Undo", follow_id))).status == 202
    await net.settle()
    assert await follow_state(alpha, bob_at_alpha.id, alice.id) is FollowState.ACCEPTED

    # When bob unfollows through his own server
    await following.unfollow(beta.ctx, bob, alice_at_beta.id)
    await net.settle()

    # Then alpha forgets the follower
    assert await follow_state(alpha, bob_at_alpha.id, alice.id) is None
    assert await alpha.ctx.db.read(follows.count_follows, alice.id) == (0, 0)


async def test_a_partners_profile_names_the_relation_and_host(trio: Trio) -> None:
    """Which company someone works for matters: the badge says how their server is allowed
    (partner, supplier, customer) and which host it is, or that it no longer is."""
    await cast(trio)
    alpha = trio.alpha
    await alpha.allow("beta.example", "supplier")
    await remote.find_person(alpha.ctx, "bob@beta.example")
    client = alpha.app.test_client()
    await login(client, "alice", PASSWORD)
    page = await (await client.get("/people/bob@beta.example")).get_data(as_text=True)
    assert '<span class="badge">Supplier · beta.example</span>' in page
    await alpha.remove("beta.example")
    page = await (await client.get("/people/bob@beta.example")).get_data(as_text=True)
    assert "beta.example: no longer allowed" in page
