"""Writing on a partner's wall (FEP-400e, outbound): a colleague on alpha writes on the wall
of bob on beta, from bob's profile page; Internal never leaves; a removed host gets nothing;
bob removing it (Delete) or refusing it (Reject{Create}) deletes it at alpha, and nobody else
can."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from server.domain import NotificationKind, Visibility
from server.errors import InvalidInput
from server.services import posting, remote
from server.storage import notifications, posts
from tests.federation.conftest import Trio
from tests.federation.support import (
    Forger,
    cast,
    copy_of,
    deliveries,
    instance_key,
    outbox_count,
    signed_get,
)
from tests.support.network import PASSWORD
from tests.support.web import csrf_of, login

_OPTION = re.compile(r'<option value="(\w+)"( selected)?>')


async def test_a_colleague_writes_on_a_partners_wall(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await remote.find_person(alpha.ctx, "bob@beta.example")
    client = alpha.app.test_client()
    await login(client, "alice", PASSWORD)

    # bob's profile on alpha offers his wall, without Internal, Followers chosen
    page = await (await client.get("/people/bob@beta.example")).get_data(as_text=True)
    assert 'name="wall_owner" value="bob@beta.example"' in page
    wall_form = page[page.index('id="wall"') :]
    options = _OPTION.findall(wall_form[: wall_form.index("</form>")])
    assert [value for value, _ in options] == ["followers", "public", "direct"]
    assert [value for value, chosen in options if chosen] == ["followers"]

    # When alice writes there
    token = await csrf_of(client, "/people/bob@beta.example")
    answer = await client.post(
        "/posts",
        form={
            "text": "Congratulations on the new plant!",
            "visibility": "public",
            "wall_owner": "bob@beta.example",
            "next": "/people/bob@beta.example",
            "csrf_token": token,
        },
    )
    assert answer.status_code == 303
    await net.settle()

    # Then the Create names bob's wall as its target (FEP-400e)
    create = json.loads((await deliveries(alpha, "Create"))[0]["body"])
    bob_uri = people.bob.uri  # bob as beta knows him
    assert create["object"]["target"]["id"] == f"{bob_uri}/wall"
    assert create["object"]["target"]["attributedTo"] == bob_uri
    # and on beta the post is on bob's wall, and he is told
    wall = await beta.ctx.db.read(
        posts.select_wall, people.bob.id, people.bob.id, before=None, limit=10
    )
    assert [p.content_html for p in wall.items] == ["<p>Congratulations on the new plant!</p>"]
    kinds = await beta.ctx.db.read(
        notifications.select_notifications, people.bob.id, before=None, limit=10
    )
    # once: the Create mentions him too, but he hears "wrote on your wall" only
    assert [n.kind for n in kinds.items] == [NotificationKind.WALL]
    # and beta acknowledged it with an Add to alice's server
    adds = await deliveries(beta, "Add")
    assert [(d["inbox_url"], d["state"]) for d in adds] == [
        ("https://alpha.example/inbox", "delivered")
    ]
    # and alpha shows it on bob's wall too
    page = await (await client.get("/people/bob@beta.example")).get_data(as_text=True)
    assert "Congratulations on the new plant!" in page


async def test_an_internal_post_on_a_partners_wall_is_refused(trio: Trio) -> None:
    await cast(trio)
    alpha, net = trio.alpha, trio.net
    alice = alpha.people["alice"]
    await remote.find_person(alpha.ctx, "bob@beta.example")
    before = await outbox_count(alpha)
    with pytest.raises(InvalidInput, match="Internal posts never leave this instance"):
        await posting.publish_post(
            alpha.ctx,
            alice,
            posting.Draft("Secret plans", Visibility.INTERNAL, wall_owner="bob@beta.example"),
        )
    assert await alpha.value("SELECT count(*) FROM posts") == 0
    assert await outbox_count(alpha) == before
    await net.settle()
    assert net.requests_to("beta.example", "POST") == []


async def test_no_wall_posts_to_a_removed_host(trio: Trio) -> None:
    await cast(trio)
    alpha, net = trio.alpha, trio.net
    alice = alpha.people["alice"]
    await remote.find_person(alpha.ctx, "bob@beta.example")
    await alpha.remove("beta.example")
    sent_before = len(net.requests_to("beta.example", "POST"))

    with pytest.raises(InvalidInput, match="not allowed"):
        await posting.publish_post(
            alpha.ctx,
            alice,
            posting.Draft("Hello?", Visibility.PUBLIC, wall_owner="bob@beta.example"),
        )
    assert await alpha.value("SELECT count(*) FROM posts") == 0
    # and bob's profile no longer offers his wall
    client = alpha.app.test_client()
    await login(client, "alice", PASSWORD)
    page = await (await client.get("/people/bob@beta.example")).get_data(as_text=True)
    assert 'name="wall_owner"' not in page
    await net.settle()
    assert len(net.requests_to("beta.example", "POST")) == sent_before


async def _alice_writes_on_bobs_wall(trio: Trio, text: str) -> tuple[int, int]:
    """(alice's post id on alpha, its copy's id on beta), after the network settled."""
    await cast(trio)
    alice = trio.alpha.people["alice"]
    await remote.find_person(trio.alpha.ctx, "bob@beta.example")
    post = await posting.publish_post(
        trio.alpha.ctx,
        alice,
        posting.Draft(text, Visibility.PUBLIC, wall_owner="bob@beta.example"),
    )
    await trio.net.settle()
    copy = await copy_of(trio.beta, post.uri)
    assert copy is not None
    return post.id, copy


async def test_the_wall_owner_removing_a_partners_post_deletes_it_at_its_author(
    trio: Trio,
) -> None:
    post_id, copy = await _alice_writes_on_bobs_wall(trio, "Wrong wall, sorry")
    bob = trio.beta.people["bob"]

    await posting.delete_post(trio.beta.ctx, bob, copy)
    await trio.net.settle()

    # beta told alpha with bob's Delete (FEP-400e: the owner may delete a post on the wall)
    removal = json.loads((await deliveries(trio.beta, "Delete"))[0]["body"])
    assert removal["actor"] == bob.uri
    # and alpha deleted alice's post (kept for the archive) and told everyone it went to
    deleted_at = await trio.alpha.value("SELECT deleted_at FROM posts WHERE id = ?", post_id)
    assert deleted_at is not None
    assert [d["state"] for d in await deliveries(trio.alpha, "Delete")] == ["delivered"]


async def test_a_reject_of_the_create_from_the_wall_owner_deletes_the_post(trio: Trio) -> None:
    post_id, _ = await _alice_writes_on_bobs_wall(trio, "Not welcome here")
    post_uri = await trio.alpha.value("SELECT uri FROM posts WHERE id = ?", post_id)
    dave = await trio.beta.user("dave2")
    bob = await Forger.of(trio.beta, trio.beta.people["bob"])
    not_owner = await Forger.of(trio.beta, dave)

    # Someone else on the partner's server can neither refuse nor delete it
    refusal = not_owner.activity("Reject", {"type": "Create", "object": post_uri})
    assert (await not_owner.post(trio.alpha, refusal)).status == 202
    deletion = not_owner.activity("Delete", {"id": post_uri, "type": "Tombstone"})
    assert (await not_owner.post(trio.alpha, deletion)).status == 202
    await trio.net.settle()
    assert await trio.alpha.value("SELECT deleted_at FROM posts WHERE id = ?", post_id) is None

    # The wall owner can, naming our Create by its id
    refusal = bob.activity("Reject", f"{post_uri}/activity")
    assert (await bob.post(trio.alpha, refusal)).status == 202
    await trio.net.settle()
    assert await trio.alpha.value("SELECT deleted_at FROM posts WHERE id = ?", post_id) is not None


async def test_walls_are_advertised_and_serve_their_public_posts(trio: Trio) -> None:
    await cast(trio)
    alpha, beta = trio.alpha, trio.beta
    alice, carol = alpha.people["alice"], alpha.people["carol"]
    key_id, pem = await instance_key(beta)

    # alice's actor document names her wall (FEP-400e, Smithereen's "wall" term)
    status, person, _ = await signed_get(alpha, "/users/alice", key_id=key_id, private_key_pem=pem)
    assert status == 200
    assert person["wall"] == alpha.ctx.urls.wall("alice")
    terms = [t for t in person["@context"] if isinstance(t, dict) and "wall" in t]
    assert terms and terms[0]["wall"] == {"@id": "sm:wall", "@type": "@id"}

    # and the wall lists its public posts only
    shown = await posting.publish_post(
        alpha.ctx, carol, posting.Draft("Welcome aboard", Visibility.PUBLIC, wall_owner="alice")
    )
    await posting.publish_post(
        alpha.ctx, carol, posting.Draft("Internal note", Visibility.INTERNAL, wall_owner="alice")
    )
    await posting.publish_post(
        alpha.ctx, carol, posting.Draft("For followers", Visibility.FOLLOWERS, wall_owner="alice")
    )
    await posting.publish_post(alpha.ctx, alice, posting.Draft("Own post", Visibility.PUBLIC))
    status, root, _ = await signed_get(
        alpha, "/users/alice/wall", key_id=key_id, private_key_pem=pem
    )
    assert status == 200 and root["type"] == "OrderedCollection"
    status, page, _ = await signed_get(
        alpha, "/users/alice/wall?page=true", key_id=key_id, private_key_pem=pem
    )
    assert status == 200 and page["orderedItems"] == [shown.uri]
    # Secure mode: nothing without a signature
    unsigned = await alpha.app.test_client().get(
        "/users/alice/wall?page=true", headers={"Accept": "application/activity+json"}
    )
    assert unsigned.status_code == 401


async def test_a_partners_advertised_wall_is_the_target(trio: Trio) -> None:
    await cast(trio)
    alpha = trio.alpha
    bob = await remote.find_person(alpha.ctx, "bob@beta.example")
    # beta advertises bob's wall, and alpha stored it
    stored = await alpha.value("SELECT wall_url FROM actors WHERE id = ?", bob.id)
    assert stored == trio.beta.ctx.urls.wall("bob")
    # A partner whose wall lives elsewhere on its origin is written to there
    elsewhere = "https://beta.example/walls/bob-7"

    def move(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE actors SET wall_url = ? WHERE id = ?", (elsewhere, bob.id))

    await alpha.ctx.db.write(move)
    await posting.publish_post(
        alpha.ctx,
        alpha.people["alice"],
        posting.Draft("Hello", Visibility.FOLLOWERS, wall_owner="bob@beta.example"),
    )
    create = json.loads((await deliveries(alpha, "Create"))[0]["body"])
    assert create["object"]["target"]["id"] == elsewhere
