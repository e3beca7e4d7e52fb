"""Discovery and the GET surface: WebFinger, NodeInfo, actors (key-only to the unsigned, full
to allowed signers), secure mode (401 to unsigned GETs of anything else), content
negotiation for browsers, and Internal content answering exactly like missing content."""

from __future__ import annotations

from typing import Any

from federation.types import AS_ACCEPT
from server.domain import Visibility
from server.errors import InvalidInput
from server.services import accounts, following, posting, remote
from server.storage import federation as fed
from tests.federation.conftest import Trio
from tests.federation.support import (
    cast,
    follow_across,
    instance_key,
    person_key,
    plain_get,
    signed_get,
)
from tests.support.network import Instance


async def _get(instance: Instance, path: str, accept: str = "application/json") -> Any:
    status, doc, headers = await plain_get(instance, path, headers={"Accept": accept})
    return status, doc, headers


async def test_webfinger_answers_for_our_people_only(trio: Trio) -> None:
    people = await cast(trio)
    alpha = trio.alpha

    status, doc, headers = await _get(
        alpha, "/.well-known/webfinger?resource=acct:alice@alpha.example"
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/jrd+json")
    assert doc["subject"] == "acct:alice@alpha.example"
    selfs = [link for link in doc["links"] if link["rel"] == "self"]
    assert selfs == [{"rel": "self", "type": "application/activity+json", "href": people.alice.uri}]
    # by actor URL and with another spelling of the account
    for resource in (people.alice.uri, "acct:ALICE@Alpha.Example"):
        status, doc, _ = await _get(alpha, f"/.well-known/webfinger?resource={resource}")
        assert (status, doc.get("subject")) == (200, "acct:alice@alpha.example"), resource
    # nobody, someone elsewhere, malformed
    for resource, expected in (
        ("acct:nobody@alpha.example", 404),
        ("acct:bob@beta.example", 404),
        ("acct:alice@alpha.example.beta.example", 404),
        ("alice", 400),
        ("acct:alice@alpha.example/x", 400),
    ):
        status, _, _ = await _get(alpha, f"/.well-known/webfinger?resource={resource}")
        assert status == expected, resource
    # a deactivated colleague disappears from discovery
    await accounts.set_active(alpha.ctx, "carol", active=False, by=None)
    status, _, _ = await _get(alpha, "/.well-known/webfinger?resource=acct:carol@alpha.example")
    assert status == 404
    status, _, _ = await _get(alpha, "/users/carol", AS_ACCEPT)
    assert status == 404


async def test_webfinger_finds_the_instance_actor(trio: Trio) -> None:
    """Mastodon checks acct:<preferredUsername>@<host> of a key's owner before it trusts the
    key that signs our fetches; the instance actor must answer like a person does."""
    alpha = trio.alpha
    _, actor, _ = await _get(alpha, "/actor", AS_ACCEPT)
    acct = f"acct:{actor['preferredUsername']}@alpha.example"
    for resource in (acct, actor["id"], acct.upper().replace("ACCT:", "acct:")):
        status, doc, _ = await _get(alpha, f"/.well-known/webfinger?resource={resource}")
        assert status == 200, resource
        assert doc["subject"] == "acct:alpha.example@alpha.example"
        selfs = [link["href"] for link in doc["links"] if link["rel"] == "self"]
        assert selfs == [actor["id"]]
    # and no colleague can take that name
    refused = await _refusal_of(accounts.create_user(alpha.ctx, "alpha.example", "x" * 20))
    assert refused == "The username 'alpha.example' is reserved."


async def _refusal_of(call: Any) -> str:
    try:
        await call
    except InvalidInput as exc:
        return exc.message
    raise AssertionError("accepted")


async def test_remote_lookup_goes_through_webfinger(trio: Trio) -> None:
    people = await cast(trio)
    beta, net = trio.beta, trio.net

    found = await remote.find_person(beta.ctx, "alice@alpha.example")

    assert found.uri == people.alice.uri and found.display_name == "Alice"
    assert [m for m, _ in net.requests_to("alpha.example")] == ["GET", "GET"]
    assert "/.well-known/webfinger?resource=acct:alice@alpha.example" in net.log[0][1]


async def test_nodeinfo_is_minimal(trio: Trio) -> None:
    await cast(trio)
    alpha = trio.alpha

    status, links, _ = await _get(alpha, "/.well-known/nodeinfo")
    assert status == 200
    assert links["links"] == [
        {
            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
            "href": "https://alpha.example/nodeinfo/2.1",
        }
    ]
    status, doc, headers = await _get(alpha, "/nodeinfo/2.1")
    assert status == 200
    assert "nodeinfo.diaspora.software/ns/schema/2.1" in headers["Content-Type"]
    assert doc["version"] == "2.1"
    assert doc["software"]["name"] == "steelyard"
    assert doc["protocols"] == ["activitypub"]
    assert doc["openRegistrations"] is False
    assert doc["usage"] == {"users": {}}  # no statistics
    text = str(doc)
    assert "beta.example" not in text and "gamma.example" not in text  # allowlist not published


async def test_actor_is_key_only_when_unsigned_and_full_when_signed(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, gamma = trio.alpha, trio.beta, trio.gamma

    # Unsigned: just enough to verify alice's signatures
    status, doc, headers = await _get(alpha, "/users/alice", AS_ACCEPT)
    assert status == 200
    assert headers["Content-Type"].startswith("application/activity+json")
    assert "Signature" in headers["Vary"]
    assert set(doc) == {
        "@context",
        "id",
        "type",
        "preferredUsername",
        "inbox",
        "outbox",  # Lemmy cannot read an actor without one
        "publicKey",
    }
    assert doc["outbox"] == f"{people.alice.uri}/outbox"
    assert doc["publicKey"]["id"] == f"{people.alice.uri}#main-key"
    assert doc["publicKey"]["owner"] == people.alice.uri
    assert "BEGIN PUBLIC KEY" in doc["publicKey"]["publicKeyPem"]

    # Signed by an allowed instance: the whole Person
    key_id, pem = await instance_key(beta)
    status, full, _ = await signed_get(alpha, "/users/alice", key_id=key_id, private_key_pem=pem)
    assert status == 200
    assert full["name"] == "Alice"
    assert full["followers"] == f"{people.alice.uri}/followers"
    assert full["endpoints"] == {"sharedInbox": "https://alpha.example/inbox"}
    assert full["discoverable"] is False and full["indexable"] is False
    assert full["publicKey"] == doc["publicKey"]

    # Signed by a host alpha does not allow: 403, and no fetch of gamma's key
    trio.net.log.clear()
    key_id, pem = await instance_key(gamma)
    status, refused, _ = await signed_get(alpha, "/users/alice", key_id=key_id, private_key_pem=pem)
    assert status == 403 and "name" not in refused
    assert trio.net.requests_to("gamma.example") == []

    # Signed, but by a key that is not the keyId's: what an unsigned request gets (Mastodon's
    # barebones actor), never the whole Person
    _, wrong_pem = await person_key(beta, people.bob)
    status, bare, _ = await signed_get(
        alpha, "/users/alice", key_id=key_id.replace("gamma", "beta"), private_key_pem=wrong_pem
    )
    assert status == 200 and bare == doc


async def test_secure_mode_unsigned_gets_are_401(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta = trio.alpha, trio.beta
    public = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Public news", Visibility.PUBLIC)
    )
    paths = [
        "/users/alice/outbox",
        "/users/alice/outbox?page=true",
        "/users/alice/followers",
        "/users/alice/following",
        f"/users/alice/notes/{public.id}",
        f"/users/alice/notes/{public.id}/activity",
    ]
    for path in paths:
        status, doc, _ = await _get(alpha, path, AS_ACCEPT)
        assert status == 401, path
        assert "Public news" not in str(doc)
    # Signed by an allowed peer, the same documents are served
    key_id, pem = await instance_key(beta)
    for path in paths:
        status, doc, _ = await signed_get(alpha, path, key_id=key_id, private_key_pem=pem)
        assert status == 200, path
    status, note, _ = await signed_get(
        alpha, f"/users/alice/notes/{public.id}", key_id=key_id, private_key_pem=pem
    )
    assert note["id"] == public.uri and "Public news" in note["content"]


async def test_browsers_are_sent_to_the_pages(trio: Trio) -> None:
    people = await cast(trio)
    alpha = trio.alpha
    post = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Hello", Visibility.PUBLIC)
    )
    html = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"

    status, _, headers = await _get(alpha, "/users/alice", html)
    assert status in (301, 302, 303, 307, 308)
    assert headers["Location"].endswith("/people/alice")
    status, _, headers = await _get(alpha, f"/users/alice/notes/{post.id}", html)
    assert status in (301, 302, 303, 307, 308)
    assert headers["Location"].endswith(f"/posts/{post.id}")


async def test_internal_content_is_404_to_remote_exactly_like_missing(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    # bob follows alice: he may read her followers-only posts, never her internal ones
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    internal = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Internal memo", Visibility.INTERNAL)
    )
    for_followers = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Followers news", Visibility.FOLLOWERS)
    )
    direct = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("@bob@beta.example psst", Visibility.DIRECT)
    )
    deleted_internal = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Gone memo", Visibility.INTERNAL)
    )
    await posting.delete_post(alpha.ctx, people.alice, deleted_internal.id)
    missing = internal.id + 12345
    bob_key = await person_key(beta, people.bob)
    dave_key = await person_key(beta, people.dave)
    instance = await instance_key(beta)

    async def fetch(key: tuple[str, str], post_id: int, suffix: str = "") -> tuple[int, Any]:
        status, doc, _ = await signed_get(
            alpha, f"/users/alice/notes/{post_id}{suffix}", key_id=key[0], private_key_pem=key[1]
        )
        return status, doc

    baseline = await fetch(bob_key, missing)
    assert baseline[0] == 404
    for key in (bob_key, dave_key, instance):
        for post_id in (internal.id, deleted_internal.id):
            assert await fetch(key, post_id) == baseline
            assert await fetch(key, post_id, "/activity") == await fetch(key, missing, "/activity")
    # Followers posts: the follower reads, others get the same 404
    assert (await fetch(bob_key, for_followers.id))[0] == 200
    assert await fetch(dave_key, for_followers.id) == baseline
    assert await fetch(instance, for_followers.id) == baseline
    # Direct posts: only the addressed
    status, doc = await fetch(bob_key, direct.id)
    assert status == 200 and "psst" in doc["content"]
    assert await fetch(dave_key, direct.id) == baseline
    # and a note id under the wrong author is missing too
    status, _, _ = await signed_get(
        alpha,
        f"/users/carol/notes/{for_followers.id}",
        key_id=bob_key[0],
        private_key_pem=bob_key[1],
    )
    assert status == 404


async def test_deleted_public_post_is_gone(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta = trio.alpha, trio.beta
    post = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Soon gone", Visibility.PUBLIC)
    )
    await posting.delete_post(alpha.ctx, people.alice, post.id)
    key_id, pem = await instance_key(beta)

    status, doc, _ = await signed_get(
        alpha, f"/users/alice/notes/{post.id}", key_id=key_id, private_key_pem=pem
    )

    assert status == 410
    assert doc == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": post.uri,
        "type": "Tombstone",
    }


async def test_outbox_lists_public_posts_only(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta = trio.alpha, trio.beta
    texts = {
        Visibility.PUBLIC: "Public one",
        Visibility.FOLLOWERS: "Followers one",
        Visibility.INTERNAL: "Internal one",
    }
    for visibility, text in texts.items():
        await posting.publish_post(alpha.ctx, people.alice, posting.Draft(text, visibility))
    await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("@carol Direct one", Visibility.DIRECT)
    )
    key_id, pem = await instance_key(beta)

    status, page, _ = await signed_get(
        alpha, "/users/alice/outbox?page=true", key_id=key_id, private_key_pem=pem
    )

    assert status == 200
    body = str(page)
    assert "Public one" in body
    for hidden in ("Followers one", "Internal one", "Direct one"):
        assert hidden not in body


async def test_follower_lists_show_a_partner_only_its_own_people(trio: Trio) -> None:
    """Who of our colleagues follows whom, and who at other partners does, is not a
    partner's business: it sees the totals and its own people."""
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    await following.follow(alpha.ctx, people.carol, people.alice.id)
    await following.follow(alpha.ctx, people.alice, people.carol.id)
    key_id, pem = await instance_key(beta)

    async def items(path: str) -> tuple[int, list[str]]:
        _, root, _ = await signed_get(alpha, path, key_id=key_id, private_key_pem=pem)
        _, page, _ = await signed_get(
            alpha, f"{path}?page=true", key_id=key_id, private_key_pem=pem
        )
        return root["totalItems"], page["orderedItems"]

    assert await items("/users/alice/followers") == (2, [people.bob.uri])
    assert await items("/users/alice/following") == (1, [])


async def test_a_deleted_actors_signature_opens_nothing(trio: Trio) -> None:
    """After its server sent Delete{Person}, the actor's still-cached key reads nothing."""
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, beta, people.bob, "alice@alpha.example")
    post = await posting.publish_post(
        alpha.ctx, people.alice, posting.Draft("Followers news", Visibility.FOLLOWERS)
    )
    key_id, pem = await person_key(beta, people.bob)
    path = f"/users/alice/notes/{post.id}"
    assert (await signed_get(alpha, path, key_id=key_id, private_key_pem=pem))[0] == 200
    bob_on_alpha = await remote.find_person(alpha.ctx, "bob@beta.example")

    await alpha.ctx.db.write(fed.mark_actor_deleted, bob_on_alpha.id, alpha.ctx.clock.now_ms())

    status, _, _ = await signed_get(alpha, path, key_id=key_id, private_key_pem=pem)
    assert status == 401
