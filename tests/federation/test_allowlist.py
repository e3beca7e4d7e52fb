"""Every allowlist rule: nothing resolved, fetched or sent to a host that is not allowed; its
requests refused with 403 before any key fetch; hostile spellings do not match; removal
cancels queued deliveries (kept), freezes follows, keeps the archive, refuses at once even
with cached keys; re-allowing unfreezes."""

from __future__ import annotations

import pytest

from server.domain import FollowState, Visibility
from server.errors import Forbidden, InvalidInput
from server.services import following, posting, remote
from server.storage import federation as fed
from tests.federation.conftest import Trio
from tests.federation.support import (
    Forger,
    actor_by_uri,
    cast,
    copy_of,
    deliveries,
    follow_across,
    follow_state,
    home_texts,
    inbox_count,
    instance_key,
    outbox_count,
    signed_get,
)
from tests.support.network import PASSWORD, Fault
from tests.support.web import csrf_of, login


async def test_looking_up_someone_on_a_non_allowed_host_sends_nothing(trio: Trio) -> None:
    people = await cast(trio)
    alpha, net = trio.alpha, trio.net

    with pytest.raises(InvalidInput, match="not allowed to federate"):
        await remote.find_person(alpha.ctx, "gus@gamma.example")

    assert net.requests_to("gamma.example") == []
    assert await actor_by_uri(alpha, people.gus.uri) is None


async def test_mentioning_someone_on_a_non_allowed_host_is_refused(trio: Trio) -> None:
    people = await cast(trio)
    alpha, net = trio.alpha, trio.net
    before = await outbox_count(alpha)

    for visibility in (Visibility.FOLLOWERS, Visibility.PUBLIC, Visibility.DIRECT):
        with pytest.raises(InvalidInput, match=r"gamma\.example is on an instance that is not"):
            await posting.publish_post(
                alpha.ctx, people.alice, posting.Draft("Hi @gus@gamma.example", visibility)
            )

    assert await alpha.value("SELECT count(*) FROM posts") == 0
    assert await outbox_count(alpha) == before
    assert net.requests_to("gamma.example") == []


async def test_the_web_pages_say_why_nothing_was_sent(trio: Trio) -> None:
    await cast(trio)
    alpha, net = trio.alpha, trio.net
    client = alpha.app.test_client()
    await login(client, "alice", PASSWORD)

    # Looking gus up in the directory
    page = await client.get("/people?q=@gus@gamma.example")
    assert page.status_code == 200
    assert "not allowed to federate" in await page.get_data(as_text=True)
    # Writing to him (the composer answers the page's script with the reason)
    token = await csrf_of(client, "/")
    answer = await client.post(
        "/posts",
        form={"text": "@gus@gamma.example hello", "visibility": "direct", "csrf_token": token},
        headers={"X-Requested-With": "steelyard"},
    )
    assert answer.status_code == 400
    assert (
        "gamma.example is on an instance that is not allowed" in (await answer.get_json())["error"]
    )

    assert net.requests_to("gamma.example") == []
    assert await alpha.value("SELECT count(*) FROM posts") == 0


async def test_a_non_allowed_host_cannot_reach_us(trio: Trio) -> None:
    people = await cast(trio)
    alpha, gamma, net = trio.alpha, trio.gamma, trio.net

    # gamma allows alpha, so gus may try to look alice up: alpha refuses the signed fetch
    with pytest.raises(InvalidInput, match="could not be found"):
        await remote.find_person(gamma.ctx, "alice@alpha.example")
    # and a signed POST from gus is refused with 403 before any key fetch
    net.log.clear()
    forger = await Forger.of(gamma, people.gus)
    sent = await forger.post(alpha, forger.activity("Follow", people.alice.uri))
    assert sent.status == 403
    sent = await forger.post(
        alpha, forger.activity("Follow", people.alice.uri), path="/users/alice/inbox"
    )
    assert sent.status == 403
    # a signed GET by gamma's instance actor too
    key_id, pem = await instance_key(gamma)
    status, _, _ = await signed_get(alpha, "/users/alice", key_id=key_id, private_key_pem=pem)
    assert status == 403
    await net.settle()

    assert net.requests_to("gamma.example") == []
    assert await inbox_count(alpha) == 0
    assert await actor_by_uri(alpha, people.gus.uri) is None


async def test_hosts_match_after_normalization_and_hostile_spellings_do_not(
    trio: Trio,
) -> None:
    await cast(trio)
    alpha, net = trio.alpha, trio.net
    allowlist = alpha.ctx.federator.allowlist

    # Same host, other spellings: case, trailing dot
    for same in ("beta.example", "BETA.Example", "beta.example."):
        assert await allowlist.is_allowed(same), same
    # Not the same host: another port, a suffix, a prefix, a look-alike, URL tricks
    hostile = (
        "beta.example:8443",
        "beta.example.gamma.example",
        "evilbeta.example",
        "xn--bta-yedx.example",  # "bеta" with a Cyrillic е
        "bеta.example",
        "beta.example/x",
        "beta.example@gamma.example",
        "gamma.example#beta.example",
        "beta%2eexample",
        "beta.example\t",
        "",
    )
    for spelling in hostile:
        assert not await allowlist.is_allowed(spelling), spelling
    # and through the service a user gets a clear refusal, with no request at all
    for handle in (
        "bob@beta.example:8443",
        "bob@beta.example.gamma.example",
        "bob@bеta.example",
        "bob@gamma.example/beta.example",
        "bob@beta.example@gamma.example",
    ):
        with pytest.raises(InvalidInput):
            await remote.find_person(alpha.ctx, handle)
    assert net.log == []
    # An upper-case spelling of an allowed host is that host
    found = await remote.find_person(alpha.ctx, "bob@BETA.EXAMPLE")
    assert found.uri == "https://beta.example/users/bob"


async def test_signed_request_with_a_look_alike_key_host_is_403_without_fetch(
    trio: Trio,
) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    forger = await Forger.of(beta, people.bob)
    net.log.clear()
    for key_host in ("beta.example.gamma.example", "beta.example:8443", "xn--bta-yedx.example"):
        actor = f"https://{key_host}/users/bob"
        activity = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"https://{key_host}/activities/1",
            "type": "Follow",
            "actor": actor,
            "object": people.alice.uri,
        }
        sent = await forger.post(alpha, activity, key_id=f"{actor}#main-key")
        assert sent.status == 403, key_host
    assert net.log == []


async def test_removing_a_host_cancels_freezes_and_refuses_even_with_cached_keys(
    trio: Trio,
) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    # Given alice and bob follow each other and have exchanged posts (keys are cached)
    bob_at_alpha = await follow_across(net, alpha, people.alice, "bob@beta.example")
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    old = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Before the split", Visibility.PUBLIC)
    )
    await net.settle()
    assert await alpha.value("SELECT count(*) FROM remote_keys WHERE owner_uri = ?", old.author.uri)
    dm = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("@bob@beta.example just us", Visibility.DIRECT)
    )
    await net.settle()
    # and beta is down, so alice's next post waits in alpha's queue
    net.faults["beta.example"] = Fault(status=503)
    queued = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Stuck in the queue", Visibility.FOLLOWERS)
    )
    await net.settle()
    assert [d["state"] for d in await deliveries(alpha, "Create")] == ["delivered", "queued"]
    del net.faults["beta.example"]

    # When alpha's admin removes beta
    cancelled = await alpha.remove("beta.example")

    # Then the queued delivery is cancelled, and kept visible
    assert cancelled == 1
    rows = await deliveries(alpha, "Create")
    assert [(r["state"], r["last_error"]) for r in rows] == [
        ("delivered", None),
        ("cancelled", "host removed from the allowlist"),
    ]
    net.clock.advance(3600)
    await net.settle()
    assert await copy_of(beta, queued.uri) is None
    # and the follows both ways are frozen
    bob_at_alpha_id = bob_at_alpha.id
    assert await follow_state(alpha, people.alice.id, bob_at_alpha_id) is FollowState.FROZEN
    assert await follow_state(alpha, bob_at_alpha_id, people.alice.id) is FollowState.FROZEN
    # and the archived content stays
    archived = await copy_of(alpha, old.uri)
    assert archived is not None
    assert await alpha.value("SELECT deleted_at FROM posts WHERE id = ?", archived) is None
    # and bob's real, signed traffic is refused with 403 although alpha has his key cached
    net.log.clear()
    await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("After the split", Visibility.FOLLOWERS)
    )
    await net.settle()
    refused = [d for d in await deliveries(beta, "Create") if d["last_status"] == 403]
    assert [(d["state"], d["host"]) for d in refused] == [("dead", "alpha.example")]
    forger = await Forger.of(beta, people.bob)
    assert (await forger.post(alpha, forger.activity("Like", queued.uri))).status == 403
    key_id, pem = await instance_key(beta)
    status, _, _ = await signed_get(alpha, "/users/alice", key_id=key_id, private_key_pem=pem)
    assert status == 403
    assert [m for m, _ in net.requests_to("beta.example")] == []  # no key refetch either
    assert "After the split" not in await home_texts(alpha, people.alice)
    # and nothing new is queued for beta (a post, the Delete of the DM bob received), nor
    # can anyone address or follow bob
    await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Nobody at beta hears", Visibility.FOLLOWERS)
    )
    await posting.delete_post(alpha.ctx, people.alice, dm.id)
    assert [d["host"] for d in await deliveries(alpha) if d["state"] == "queued"] == []
    await net.settle()
    assert net.requests_to("beta.example") == []
    with pytest.raises(InvalidInput, match="not allowed"):
        await remote.find_person(alpha.ctx, "bob@beta.example")
    with pytest.raises(InvalidInput, match="not allowed"):
        await posting.publish_post(
            alpha.ctx, people.alice, posting.Draft("@bob@beta.example ping", Visibility.DIRECT)
        )
    with pytest.raises(Forbidden):
        await following.follow(alpha.ctx, people.carol, bob_at_alpha_id)
    # replying to or liking bob's archived post says why instead of silently dropping it
    with pytest.raises(InvalidInput, match="not allowed"):
        await posting.publish_post(
            alpha.ctx,
            people.carol,
            posting.Draft("Reply", Visibility.PUBLIC, in_reply_to=archived),
        )


async def test_inbound_accepted_before_removal_is_not_applied_after(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    forger = await Forger.of(beta, people.bob)
    note = forger.note("Arrived just before", to=[forger.followers])
    # Accepted (202) and archived, but not yet applied
    assert (await forger.post(alpha, forger.create(note))).status == 202

    await alpha.remove("beta.example")
    await net.settle()

    assert await copy_of(alpha, note["id"]) is None
    assert await inbox_count(alpha) >= 1  # the raw record stays in the archive


async def test_reallowing_a_host_unfreezes_its_follows(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    bob_at_alpha = await follow_across(net, alpha, people.alice, "bob@beta.example")
    await alpha.remove("beta.example")
    assert await follow_state(alpha, people.alice.id, bob_at_alpha.id) is FollowState.FROZEN

    await alpha.allow("beta.example")

    assert await follow_state(alpha, people.alice.id, bob_at_alpha.id) is FollowState.ACCEPTED
    await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("We are back", Visibility.FOLLOWERS)
    )
    await net.settle()
    assert "We are back" in await home_texts(alpha, people.alice)


async def test_pending_requests_do_not_come_back_accepted_after_removal(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    locked = await alpha.user("lena", locked=True)
    await beta.user("dora", locked=True)
    # bob asks locked lena (alpha); alice asks locked dora (beta): both pending
    await follow_across(net, beta, people.bob, "lena@alpha.example")
    dora_at_alpha = await follow_across(net, alpha, people.alice, "dora@beta.example")
    bob_at_alpha = await actor_by_uri(alpha, people.bob.uri)
    assert bob_at_alpha is not None
    assert await follow_state(alpha, bob_at_alpha.id, locked.id) is FollowState.PENDING
    assert await follow_state(alpha, people.alice.id, dora_at_alpha.id) is FollowState.PENDING

    # When beta is removed: lena cannot accept bob meanwhile
    await alpha.remove("beta.example")
    with pytest.raises(Forbidden, match="not allowed"):
        await following.answer_request(alpha.ctx, locked, bob_at_alpha.id, accept=True)
    # and when beta is allowed again, nobody became a follower without approval
    await alpha.allow("beta.example")
    assert await follow_state(alpha, bob_at_alpha.id, locked.id) is FollowState.PENDING
    assert await follow_state(alpha, people.alice.id, dora_at_alpha.id) is FollowState.PENDING


async def test_nothing_is_sent_to_a_removed_host_even_if_requeued(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    net.faults["beta.example"] = Fault(status=410)
    await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Refused once", Visibility.FOLLOWERS)
    )
    await net.settle()
    assert [d["state"] for d in await deliveries(alpha, "Create")] == ["dead"]
    del net.faults["beta.example"]
    await alpha.remove("beta.example")
    net.log.clear()

    # When the storage-level resend puts every dead delivery back (all hosts)
    assert await alpha.ctx.db.write(fed.resend_held, None, alpha.ctx.clock.now_ms()) == (1, 0)
    await net.settle()

    # Then the worker does not send it: it is cancelled instead
    assert [d["state"] for d in await deliveries(alpha, "Create")] == ["cancelled"]
    assert net.requests_to("beta.example") == []
