"""Two instances in one process: follow across, posts reach exactly their audience."""

from __future__ import annotations

from server.domain import FollowState, Visibility
from server.services import following, posting, remote
from server.storage import follows, posts
from tests.federation.conftest import Trio


async def test_follow_remote_person_and_receive_their_posts(trio: Trio) -> None:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    ctx_a, ctx_b = trio.alpha.ctx, trio.beta.ctx
    remote_bob = await remote.find_person(ctx_a, "bob@beta.example")
    assert remote_bob.uri == "https://beta.example/users/bob"
    state = await following.follow(ctx_a, alice, remote_bob.id)
    assert state is FollowState.PENDING
    await trio.net.settle()
    assert (
        await ctx_a.db.read(follows.select_follow_state, alice.id, remote_bob.id)
        is FollowState.ACCEPTED
    )
    # Bob posts for his followers; alice (remote follower) receives it.
    await posting.publish_post(ctx_b, bob, posting.Draft("Partner update", Visibility.FOLLOWERS))
    await posting.publish_post(ctx_b, bob, posting.Draft("Internal only", Visibility.INTERNAL))
    await trio.net.settle()
    page = await ctx_a.db.read(posts.select_home_feed, alice.id, before=None, limit=20)
    texts = [p.content_html for p in page.items]
    assert any("Partner update" in t for t in texts)
    assert not any("Internal only" in t for t in texts)
