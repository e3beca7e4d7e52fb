"""Deleting an account for good: Delete{Person} reaches the partner servers that know it."""

from __future__ import annotations

import json

import pytest

from server.errors import Forbidden, InvalidInput
from server.services import accounts
from tests.federation.conftest import Trio
from tests.federation.support import Forger, actor_by_uri, cast, deliveries, follow_across


async def test_deleted_account_is_announced_to_followers_and_followees(trio: Trio) -> None:
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    carol = await trio.beta.user("carol")
    await follow_across(trio.net, trio.alpha, alice, "bob@beta.example")  # alice follows bob
    await follow_across(trio.net, trio.beta, carol, "alice@alpha.example")  # carol follows her
    assert bob and carol

    await accounts.delete_user(trio.alpha.ctx, "alice", by=None)
    sent = await deliveries(trio.alpha, "Delete")
    assert len(sent) == 1  # one shared inbox on beta for both relations
    assert sent[0]["host"] == "beta.example"
    assert json.loads(sent[0]["body"])["object"]["id"] == alice.uri
    await trio.net.settle()

    copy = await actor_by_uri(trio.beta, alice.uri)
    assert copy is not None and copy.deleted_at is not None
    # Final here too: she cannot sign in, and cannot be brought back.
    with pytest.raises(Forbidden):
        await accounts.set_active(trio.alpha.ctx, "alice", active=True, by=None)
    with pytest.raises(InvalidInput):
        await accounts.delete_user(trio.alpha.ctx, "alice", by=None)
    account = await trio.alpha.value("SELECT is_active FROM accounts WHERE actor_id = ?", alice.id)
    assert account == 0


async def test_nothing_is_sent_for_an_account_no_partner_knows(trio: Trio) -> None:
    await trio.alpha.user("dave")
    await accounts.delete_user(trio.alpha.ctx, "dave", by=None)
    sent = await deliveries(trio.alpha, "Delete")
    assert sent == []


@pytest.mark.parametrize("how", ["deleted", "deactivated"])
async def test_nobody_follows_or_writes_to_someone_who_left_through_any_inbox(
    trio: Trio, how: str
) -> None:
    """Alice's personal inbox answers 404 once she left; the shared inbox must not take in
    what her own refuses: no follow, no Accept signed in her name, no direct message."""
    people = await cast(trio)
    if how == "deleted":
        await accounts.delete_user(trio.alpha.ctx, "alice", by=None)
    else:
        await accounts.set_active(trio.alpha.ctx, "alice", active=False, by=None)
    await trio.net.settle()
    forger = await Forger.of(trio.beta, people.bob)
    follow = forger.activity("Follow", people.alice.uri, to=[people.alice.uri])
    assert (await forger.post(trio.alpha, follow, path="/users/alice/inbox")).status == 404
    assert (await forger.post(trio.alpha, follow, path="/inbox")).status == 202
    note = forger.note("Still there?", to=[people.alice.uri], mentions=[people.alice.uri])
    assert (await forger.post(trio.alpha, forger.create(note), path="/inbox")).status == 202
    await trio.alpha.ctx.federator.settle_once()
    follow_rows = await trio.alpha.value(
        "SELECT count(*) FROM follows WHERE followee_id = ?", people.alice.id
    )
    assert follow_rows == 0
    assert await deliveries(trio.alpha, "Accept") == []
    received = await trio.alpha.value(
        "SELECT count(*) FROM post_recipients r JOIN posts p ON p.id = r.post_id"
        " WHERE p.uri = ? AND r.actor_id = ?",
        note["id"],
        people.alice.id,
    )
    assert received == 0
    if how == "deactivated":  # back at work: partners can follow her again
        await accounts.set_active(trio.alpha.ctx, "alice", active=True, by=None)
        again = forger.activity("Follow", people.alice.uri, to=[people.alice.uri])
        assert (await forger.post(trio.alpha, again, path="/inbox")).status == 202
        await trio.alpha.ctx.federator.settle_once()
        assert len(await deliveries(trio.alpha, "Accept")) == 1
