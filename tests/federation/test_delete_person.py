"""Deleting an account for good: Delete{Person} reaches the partner servers that know it."""

from __future__ import annotations

import json

import pytest

from server.errors import Forbidden, InvalidInput
from server.services import accounts
from tests.federation.conftest import Trio
from tests.federation.support import actor_by_uri, deliveries, follow_across


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
