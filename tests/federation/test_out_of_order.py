"""An Undo that overtakes what it undoes.

A sender retries each delivery on its own schedule (backoff with jitter, several requests at
once per host), so after an outage a partner's Undo{Follow} can reach us before its Follow.
Applied in arrival order, the Follow would stand: a follower who has unfollowed, still sent
followers-only posts. The Undo leaves a tombstone of the id it undoes; the late activity is
then ignored.
"""

from __future__ import annotations

from typing import Any

from federation.types import AS_PUBLIC
from server.domain import Visibility
from server.services import posting
from server.services.federating import iso
from tests.federation.conftest import Trio
from tests.federation.support import Forger
from tests.support.network import Instance


async def _partner(trio: Trio) -> tuple[Forger, Any]:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    return await Forger.of(trio.beta, bob), alice


async def _send(trio: Trio, forger: Forger, activity: dict[str, Any]) -> None:
    assert (await forger.post(trio.alpha, activity)).status == 202
    await trio.net.settle()


async def _count(instance: Instance, sql: str, *params: object) -> int:
    return int(await instance.value(sql, *params))


async def test_an_undo_of_a_follow_that_overtook_it_wins(trio: Trio) -> None:
    forger, alice = await _partner(trio)
    follow = forger.activity("Follow", alice.uri)
    undo = forger.activity("Undo", {k: v for k, v in follow.items() if k != "@context"})

    await _send(trio, forger, undo)
    await _send(trio, forger, follow)

    assert await _count(trio.alpha, "SELECT count(*) FROM follows") == 0
    assert await _count(trio.alpha, "SELECT count(*) FROM notifications") == 0
    # Following again (a new Follow, a new id) works as ever.
    await _send(trio, forger, forger.activity("Follow", alice.uri))
    assert await _count(trio.alpha, "SELECT count(*) FROM follows") == 1


async def test_an_undo_of_a_like_or_boost_that_overtook_it_wins(trio: Trio) -> None:
    forger, alice = await _partner(trio)
    post = await posting.publish_post(
        trio.alpha.ctx, alice, posting.Draft("Quarterly numbers", Visibility.PUBLIC)
    )
    for kind, table in (("Like", "likes"), ("Announce", "announces")):
        late = forger.activity(kind, post.uri, to=[AS_PUBLIC])
        await _send(trio, forger, forger.activity("Undo", late["id"]))
        await _send(trio, forger, late)
        assert await _count(trio.alpha, f"SELECT count(*) FROM {table}") == 0, kind
    assert await _count(trio.alpha, "SELECT count(*) FROM notifications") == 0


async def test_an_undo_remembers_only_ids_on_its_senders_own_origin(trio: Trio) -> None:
    """Otherwise a partner could block another server's future activities by their ids."""
    forger, _alice = await _partner(trio)
    elsewhere = "https://gamma.example/activities/follow/42"

    await _send(trio, forger, forger.activity("Undo", elsewhere))
    await _send(trio, forger, forger.activity("Undo", forger.new_id("like")))

    remembered = await _count(
        trio.alpha, "SELECT count(*) FROM tombstones WHERE uri = ?", elsewhere
    )
    assert remembered == 0
    assert await _count(trio.alpha, "SELECT count(*) FROM tombstones") == 1


async def test_one_actor_cannot_block_another_actors_future_activities(trio: Trio) -> None:
    """A tombstone stops only the actor who left it: mallory, on carol's own server, naming
    carol's future ids in a Delete or an Undo changes nothing for carol."""
    alice = await trio.alpha.user("alice")
    post = await posting.publish_post(
        trio.alpha.ctx, alice, posting.Draft("Open for comments", Visibility.PUBLIC)
    )
    carol = await Forger.of(trio.beta, await trio.beta.user("carol"))
    mallory = await Forger.of(trio.beta, await trio.beta.user("mallory"))
    like = carol.activity("Like", post.uri)
    follow = carol.activity("Follow", alice.uri)
    note = carol.note("Carol's own words", to=[AS_PUBLIC])

    await _send(trio, mallory, mallory.activity("Undo", like["id"]))
    await _send(trio, mallory, mallory.activity("Undo", {"id": follow["id"], "type": "Follow"}))
    await _send(trio, mallory, mallory.activity("Delete", note["id"]))
    for activity in (like, follow, carol.activity("Create", note)):
        await _send(trio, carol, activity)

    assert await _count(trio.alpha, "SELECT count(*) FROM likes") == 1
    assert await _count(trio.alpha, "SELECT count(*) FROM follows") == 1
    assert await _count(trio.alpha, "SELECT count(*) FROM posts WHERE uri = ?", note["id"]) == 1


async def test_an_edit_that_overtook_its_recent_post_is_applied_once_the_post_arrives(
    trio: Trio,
) -> None:
    """A sender that retries its Create later than its Update (Mastodon's queue, a
    Retry-After) must not lose the edit: an Update of a recent note we do not have yet is
    tried again, not dropped."""
    forger, alice = await _partner(trio)
    now = iso(trio.net.clock.now_ms())
    note = forger.note("Offer: draft", to=[alice.uri], mentions=[alice.uri], published=now)
    edited = {**note, "content": "Offer: FINAL", "updated": now}
    update = forger.activity("Update", edited)
    await _send(trio, forger, update)
    state = await trio.alpha.value(
        "SELECT state FROM inbox_activities WHERE activity_id = ?", update["id"]
    )
    assert state == "pending"  # kept for another try, not done and dropped
    await _send(trio, forger, forger.create(note))
    trio.net.clock.advance(11)
    await trio.net.settle()
    text = await trio.alpha.value("SELECT content_html FROM posts WHERE uri = ?", note["id"])
    assert "Offer: FINAL" in str(text)


async def test_an_update_of_an_old_note_we_never_had_is_dropped_at_once(trio: Trio) -> None:
    forger, alice = await _partner(trio)
    note = forger.note("Old news", to=[alice.uri], mentions=[alice.uri])  # months ago
    update = forger.activity("Update", {**note, "updated": "2026-09-21T11:00:00Z"})
    await _send(trio, forger, update)
    state = await trio.alpha.value(
        "SELECT state FROM inbox_activities WHERE activity_id = ?", update["id"]
    )
    assert state == "done"


async def test_an_edit_whose_post_never_comes_is_ignored_after_a_few_tries(trio: Trio) -> None:
    """Routine (a post from before anyone here followed its author): not a failure for the
    admin page, and not retried for long."""
    forger, alice = await _partner(trio)
    now = iso(trio.net.clock.now_ms())
    note = forger.note("Never sent here", to=[alice.uri], mentions=[alice.uri], published=now)
    update = forger.activity("Update", {**note, "content": "edited", "updated": now})
    await _send(trio, forger, update)
    for _ in range(10):
        trio.net.clock.advance(200)
        await trio.net.settle()
    row = await trio.alpha.rows(
        "SELECT state, attempts FROM inbox_activities WHERE activity_id = ?", update["id"]
    )
    assert (row[0][0], row[0][1]) == ("done", 6)
