"""Second interop round: a key rotated by ``Update{Person}`` works at once, a keyId that is
the actor's own URL, Host spelled with the default port or in capitals, and a ``Create`` that
names its object by a URL that will never answer.

Each relaxation comes with the check it must not weaken (another port, a several-key actor
signing with its bare URL)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from federation.types import AS_PUBLIC
from server.domain import Actor, Visibility
from server.services import posting
from tests.federation.conftest import PEER, Peered, Trio
from tests.federation.support import (
    ACTIVITY_JSON,
    AS_CONTEXT,
    Forger,
    Sent,
    cast,
    digest_of,
    http_date,
    raw_post,
    sign_custom,
)
from tests.federation.test_interop_shapes import (
    MULTI,
    SECURITY_CONTEXT,
    inbox_rows,
    like_count,
    multi_key_actor,
    send,
    send_as,
)
from tests.support.network import Instance

KAY = f"https://{PEER}/users/kay"


def kay(public_pem: str, name: str = "Kay") -> dict[str, Any]:
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": KAY,
        "type": "Person",
        "name": name,
        "preferredUsername": "kay",
        "inbox": f"{KAY}/inbox",
        "publicKey": {"id": f"{KAY}#main-key", "owner": KAY, "publicKeyPem": public_pem},
    }


async def like_by(p: Peered, actor: str, key_id: str, private_pem: str, n: int) -> Sent:
    post = await posting.publish_post(
        p.alpha.ctx, p.alice, posting.Draft(f"Like me {n}", Visibility.PUBLIC)
    )
    like = {
        "@context": AS_CONTEXT,
        "id": f"{actor}#likes/{n}",
        "type": "Like",
        "actor": actor,
        "object": post.uri,
    }
    sent = await send(p.alpha, like, key_id=key_id, private_key_pem=private_pem)
    await p.net.settle()
    if sent.status == 202:
        assert await like_count(p.alpha, post.id) == 1
    return sent


async def test_a_key_rotated_by_update_person_signs_at_once(peered: Peered) -> None:
    """Inside the refetch cool-off (5 minutes) a new key would only be fetched after it;
    the owner's own Update, signed by its current key, brings it now."""
    p = peered
    (old_private, old_public), (new_private, new_public) = p.keys[0], p.keys[1]
    p.serve(KAY, kay(old_public))
    assert (await like_by(p, KAY, f"{KAY}#main-key", old_private, 1)).status == 202
    p.serve(KAY, kay(new_public, "Kay Rotated"))
    update = {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": f"{KAY}#updates/1",
        "type": "Update",
        "actor": KAY,
        "to": [AS_PUBLIC],
        "object": kay(new_public, "Kay Rotated"),
    }
    sent = await send(p.alpha, update, key_id=f"{KAY}#main-key", private_key_pem=old_private)
    assert sent.status == 202
    await p.net.settle()
    p.net.clock.advance(30)
    assert (await like_by(p, KAY, f"{KAY}#main-key", new_private, 2)).status == 202
    # and the old key no longer opens anything
    refused = await like_by(p, KAY, f"{KAY}#main-key", old_private, 3)
    assert refused.status == 401


async def test_a_key_announced_by_someone_else_is_not_taken(peered: Peered) -> None:
    """Only the actor's own Update may bring its key: another actor on the same server
    cannot put its key under kay's key id."""
    p = peered
    (kay_private, kay_public), (mal_private, mal_public) = p.keys[0], p.keys[1]
    mal = f"https://{PEER}/users/mal"
    p.serve(KAY, kay(kay_public))
    p.serve(
        mal,
        {
            **kay(mal_public),
            "id": mal,
            "preferredUsername": "mal",
            "inbox": f"{mal}/inbox",
            "publicKey": {"id": f"{mal}#main-key", "owner": mal, "publicKeyPem": mal_public},
        },
    )
    assert (await like_by(p, KAY, f"{KAY}#main-key", kay_private, 1)).status == 202
    forged = {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": f"{mal}#updates/1",
        "type": "Update",
        "actor": mal,
        "object": kay(mal_public, "Kay, hijacked"),
    }
    await send(p.alpha, forged, key_id=f"{mal}#main-key", private_key_pem=mal_private)
    await p.net.settle()
    known = await p.alpha.ctx.federator.keys.known_key(f"{KAY}#main-key")
    assert known is not None and known.public_key_pem == kay_public
    assert (await like_by(p, KAY, f"{KAY}#main-key", mal_private, 2)).status == 401


async def test_an_actor_cannot_announce_a_key_under_another_actors_key_id(
    peered: Peered,
) -> None:
    """mal's own Update names kay's key id with kay's public key (anyone can copy it): kay
    must not become "not the owner of his own key" (every later activity of his refused)."""
    p = peered
    (kay_private, kay_public), (mal_private, mal_public) = p.keys[0], p.keys[1]
    mal = f"https://{PEER}/users/mal"

    def mal_doc(public_pem: str, key_id: str) -> dict[str, Any]:
        return {
            **kay(public_pem),
            "id": mal,
            "preferredUsername": "mal",
            "inbox": f"{mal}/inbox",
            "publicKey": {"id": key_id, "owner": mal, "publicKeyPem": public_pem},
        }

    p.serve(KAY, kay(kay_public))
    p.serve(mal, mal_doc(mal_public, f"{mal}#main-key"))
    assert (await like_by(p, KAY, f"{KAY}#main-key", kay_private, 1)).status == 202
    for n, pem in enumerate((kay_public, mal_public)):
        update = {
            "@context": [AS_CONTEXT, SECURITY_CONTEXT],
            "id": f"{mal}#updates/{n}",
            "type": "Update",
            "actor": mal,
            "object": mal_doc(pem, f"{KAY}#main-key"),
        }
        sent = await send(p.alpha, update, key_id=f"{mal}#main-key", private_key_pem=mal_private)
        assert sent.status == 202
        await p.net.settle()
    known = await p.alpha.ctx.federator.keys.known_key(f"{KAY}#main-key")
    assert known is not None and (known.owner_uri, known.public_key_pem) == (KAY, kay_public)
    p.net.clock.advance(3600)
    assert (await like_by(p, KAY, f"{KAY}#main-key", kay_private, 2)).status == 202


async def test_a_key_id_that_is_the_actors_own_url_names_its_one_key(peered: Peered) -> None:
    p = peered
    private, public = p.keys[0]
    p.serve(KAY, kay(public))
    assert (await like_by(p, KAY, KAY, private, 1)).status == 202


async def test_an_actor_with_several_keys_cannot_sign_with_its_bare_url(peered: Peered) -> None:
    """Which of the keys would be meant? None is taken."""
    p = peered
    p.serve(MULTI, multi_key_actor([k[1] for k in p.keys[:2]]))
    assert (await like_by(p, MULTI, MULTI, p.keys[0][0], 1)).status == 401


async def post_with_host(target: Instance, forger: Forger, author: Actor, host: str) -> Sent:
    """A Like POSTed with *host* as the Host header, signed over exactly that value."""
    post = await posting.publish_post(
        target.ctx, author, posting.Draft("Which host?", Visibility.PUBLIC)
    )
    body = json.dumps(forger.activity("Like", post.uri)).encode()
    values = {
        "(request-target)": "post /inbox",
        "host": host,
        "date": http_date(target.ctx.clock.now()),
        "digest": digest_of(body),
    }
    headers = {
        "Host": host,
        "Date": values["date"],
        "Digest": values["digest"],
        "Content-Type": ACTIVITY_JSON,
        "Signature": sign_custom(
            forger.private_key_pem, key_id=forger.key_id, covered=list(values), values=values
        ),
    }
    return await raw_post(target, "/inbox", headers, body)


@pytest.mark.parametrize(
    ("spelling", "status"),
    [
        ("{host}", 202),
        ("{host}:443", 202),  # the scheme's default port, as RFC 9110 allows
        ("{upper}", 202),
        ("{host}:8443", 401),  # another port is another server
        ("other.example", 401),
    ],
)
async def test_host_is_compared_canonically_and_verified_as_sent(
    trio: Trio, spelling: str, status: int
) -> None:
    people = await cast(trio)
    bob = await Forger.of(trio.beta, people.bob)
    host = trio.alpha.host
    spelled = spelling.format(host=host, upper=host.upper())
    sent = await post_with_host(trio.alpha, bob, people.alice, spelled)
    assert sent.status == status, sent.body


async def test_a_create_whose_object_url_never_answers_is_ignored_not_retried(
    trio: Trio,
) -> None:
    """A 404 will not change: the row is done at once (one fetch), not retried for hours."""
    people = await cast(trio)
    bob = await Forger.of(trio.beta, people.bob)
    create = bob.activity("Create", f"{people.bob.uri}/notes/999999999", to=[AS_PUBLIC])
    assert (await send_as(bob, trio.alpha, create)).status == 202
    await trio.net.settle()
    rows = await inbox_rows(trio.alpha, create["id"])
    assert len(rows) == 1 and rows[0][0] == "done", rows
