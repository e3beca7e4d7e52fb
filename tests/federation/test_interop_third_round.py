"""Third interop round: shapes real senders use that we refused before.

- an actor that names its key by reference only, the PEM in a key document of its own
  (Mastodon resolves this form: ``FetchRemoteKeyService#confirmed_owner?`` compares
  ``value_or_id(owner['publicKey'])`` with the key document's id);
- Lemmy 0.19.3's site actor, which signs Lemmy's fetches (``federation_signed_fetch``) and
  has no ``preferredUsername`` (Lemmy PR #4713);
- a signed GET of one of our actors whose signature we cannot verify gets the key-only
  actor an unsigned GET gets (Mastodon's barebones actor), not 401: the peer needs our key;

Each relaxation comes with the check it must not weaken.
"""

from __future__ import annotations

from typing import Any

from server.domain import Visibility
from server.services import posting
from tests.federation.conftest import PEER, Peered
from tests.federation.support import AS_CONTEXT, actor_by_uri, plain_get, signed_get
from tests.federation.test_interop_keys_and_hosts import like_by
from tests.federation.test_interop_shapes import SECURITY_CONTEXT, like_count, send

ERIN = f"https://{PEER}/users/erin"
ERIN_KEY = f"https://{PEER}/keys/erin-1"


def erin(public_key: Any) -> dict[str, Any]:
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": ERIN,
        "type": "Person",
        "preferredUsername": "erin",
        "name": "Erin",
        "inbox": f"{ERIN}/inbox",
        "outbox": f"{ERIN}/outbox",
        "followers": f"{ERIN}/followers",
        "publicKey": public_key,
    }


def key_document(key_id: str, owner: str, public_pem: str) -> dict[str, Any]:
    # Served without the ActivityStreams context, as Mastodon PR #37826 (2026) says they are.
    return {
        "@context": SECURITY_CONTEXT,
        "id": key_id,
        "type": "Key",
        "owner": owner,
        "publicKeyPem": public_pem,
    }


async def test_a_key_named_by_reference_in_its_own_document_signs(peered: Peered) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    p.serve(ERIN, erin(ERIN_KEY))
    p.serve(ERIN_KEY, key_document(ERIN_KEY, ERIN, public_pem))
    assert (await like_by(p, ERIN, ERIN_KEY, private_pem, 1)).status == 202
    stored = await actor_by_uri(p.alpha, ERIN)
    assert stored is not None and stored.username == "erin"


async def test_a_key_document_claiming_an_owner_that_does_not_name_it_is_refused(
    peered: Peered,
) -> None:
    """Mallory (same server) serves a key document naming Erin as owner: Erin's actor names
    another key, so Mallory's key opens nothing in Erin's name."""
    p = peered
    erin_public, (mal_private, mal_public) = p.keys[0][1], p.keys[1]
    mal_key = f"https://{PEER}/keys/mallory"
    p.serve(ERIN, erin(ERIN_KEY))
    p.serve(ERIN_KEY, key_document(ERIN_KEY, ERIN, erin_public))
    p.serve(mal_key, key_document(mal_key, ERIN, mal_public))
    assert (await like_by(p, ERIN, mal_key, mal_private, 1)).status == 401


async def test_a_referenced_key_is_not_taken_from_an_actors_own_update(peered: Peered) -> None:
    """An Update{Person} naming its key by reference carries no PEM: nothing is stored under
    the key id until the key document itself is fetched (the resolver's rules)."""
    p = peered
    (old_private, old_public), (new_private, new_public) = p.keys[0], p.keys[1]
    p.serve(ERIN, erin(ERIN_KEY))
    p.serve(ERIN_KEY, key_document(ERIN_KEY, ERIN, old_public))
    assert (await like_by(p, ERIN, ERIN_KEY, old_private, 1)).status == 202
    new_key = f"https://{PEER}/keys/erin-2"
    update = {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": f"{ERIN}#updates/1",
        "type": "Update",
        "actor": ERIN,
        "object": erin(new_key),
    }
    sent = await send(p.alpha, update, key_id=ERIN_KEY, private_key_pem=old_private)
    assert sent.status == 202
    await p.net.settle()
    assert await p.alpha.ctx.federator.keys.known_key(new_key) is None
    # Once Erin serves the new key document, it resolves like any other.
    p.serve(ERIN, erin(new_key))
    p.serve(new_key, key_document(new_key, ERIN, new_public))
    post = await posting.publish_post(p.alpha.ctx, p.alice, posting.Draft("Hi", Visibility.PUBLIC))
    like = {"@context": AS_CONTEXT, "id": f"{ERIN}#likes/x", "type": "Like", "actor": ERIN}
    like["object"] = post.uri
    assert (await send(p.alpha, like, key_id=new_key, private_key_pem=new_private)).status == 202
    await p.net.settle()
    assert await like_count(p.alpha, post.id) == 1


# --- Lemmy 0.19.3: a site actor without preferredUsername signs its fetches -----------------

LEMMY_SITE = f"https://{PEER}/"


def lemmy_site(public_pem: str, kind: str = "Application") -> dict[str, Any]:
    """Lemmy 0.19.3's ``Instance`` (crates/apub/src/protocol/objects/instance.rs): no
    preferredUsername, the site name in ``name``, the sidebar in ``content``."""
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "type": kind,
        "id": LEMMY_SITE,
        "name": "Delta Lemmy",
        "inbox": f"{LEMMY_SITE}inbox",
        "outbox": f"{LEMMY_SITE}site_outbox",
        "publicKey": {
            "id": f"{LEMMY_SITE}#main-key",
            "owner": LEMMY_SITE,
            "publicKeyPem": public_pem,
        },
        "content": "<p>Sidebar</p>",
        "published": "2023-06-01T10:00:00.000000+00:00",
    }


async def test_a_lemmy_site_actor_without_preferred_username_may_sign_fetches(
    peered: Peered,
) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    p.serve(LEMMY_SITE, lemmy_site(public_pem))
    status, doc, _ = await signed_get(
        p.alpha, "/users/alice", key_id=f"{LEMMY_SITE}#main-key", private_key_pem=private_pem
    )
    assert status == 200
    assert doc["followers"].endswith("/users/alice/followers")  # the full Person


async def test_a_person_without_preferred_username_is_still_refused(peered: Peered) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    nameless = erin({"id": f"{ERIN}#main-key", "owner": ERIN, "publicKeyPem": public_pem})
    del nameless["preferredUsername"]
    p.serve(ERIN, nameless)
    assert (await like_by(p, ERIN, f"{ERIN}#main-key", private_pem, 1)).status == 401


# --- a signature we cannot verify still gets the key-only actor ------------------------------


async def test_an_unverifiable_signed_get_of_an_actor_gets_the_key_only_form(
    peered: Peered,
) -> None:
    """Its key cannot be obtained (here: the peer answers 404 for it; in the wild also an
    Ed25519-only signer or one whose clock is off): Mastodon answers such a request with its
    barebones actor, and so do we. Everything else still needs a verified signature."""
    p = peered
    private_pem, _ = p.keys[0]
    unknown_key = f"https://{PEER}/users/ghost#main-key"
    status, unsigned, _ = await plain_get(p.alpha, "/users/alice")
    assert status == 200
    status, doc, _ = await signed_get(
        p.alpha, "/users/alice", key_id=unknown_key, private_key_pem=private_pem
    )
    assert status == 200 and doc == unsigned
    assert "followers" not in doc and "name" not in doc
    status, _, _ = await signed_get(
        p.alpha, "/users/alice/outbox", key_id=unknown_key, private_key_pem=private_pem
    )
    assert status == 401


async def test_a_host_that_is_not_allowed_still_gets_403_for_an_actor(peered: Peered) -> None:
    p = peered
    private_pem, _ = p.keys[0]
    status, doc, _ = await signed_get(
        p.alpha,
        "/users/alice",
        key_id="https://elsewhere.example/actor#main-key",
        private_key_pem=private_pem,
    )
    assert status == 403 and "publicKey" not in doc
