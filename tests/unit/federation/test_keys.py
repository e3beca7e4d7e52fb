"""keys: keyId → key → owner binding, strength, origins and the refetch cool-off, for real.

Uses the signature-verifying :class:`Peer` server of ``test_fetch``: every request the
resolver makes is checked to carry a valid instance-actor signature.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from federation.fetch import Fetcher
from federation.keys import KeyResolutionError, KeyResolver
from federation.ports import KnownKey
from federation.signatures import generate_rsa_keypair
from server.storage.db import Database
from server.storage.fedports import SqliteKeyStore
from tests.conftest import make_instance
from tests.unit.federation import test_fetch as shared
from tests.unit.federation.test_fetch import Peer, actor_doc

# The signature-checking peer server and its fixtures, shared with test_fetch.
peer = shared.peer
transport = shared.transport
fetcher = shared.fetcher
instance_keys = shared.instance_keys
actor_keys = shared.actor_keys

COOLDOWN = 300_000


@dataclass
class MemoryKeyStore:
    keys: dict[str, KnownKey] = field(default_factory=dict)

    async def known_key(self, key_id: str, *, fresh: bool = False) -> KnownKey | None:
        return self.keys.get(key_id)

    async def remember_key(self, key: KnownKey) -> None:
        self.keys[key.key_id] = key


@dataclass
class Clock:
    ms: int = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


@dataclass
class Setup:
    resolver: KeyResolver
    store: MemoryKeyStore
    clock: Clock


@pytest.fixture
def setup(fetcher: Fetcher) -> Setup:
    store, clock = MemoryKeyStore(), Clock()
    return Setup(KeyResolver(fetcher, store, clock, COOLDOWN), store, clock)


@pytest.fixture(scope="module")
def other_keys() -> tuple[str, str]:
    return generate_rsa_keypair()


def weak_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def expect_key_error(kind: str, call: Awaitable[Any]) -> KeyResolutionError:
    with pytest.raises(KeyResolutionError) as info:
        await call
    assert info.value.kind == kind, str(info.value)
    return info.value


# --- the shapes that work --------------------------------------------------------------------


async def test_mastodon_shape_actor_with_fragment_key(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    peer.serve("/users/bob", actor_doc(peer, "bob", actor_keys[1]))
    key_id = peer.url("/users/bob#main-key")
    known, actor = await setup.resolver.resolve_with_actor(key_id)
    assert known.owner_uri == peer.url("/users/bob")
    assert known.public_key_pem == actor_keys[1] and known.fetched_at_ms == setup.clock.ms
    assert actor is not None and actor.inbox == peer.url("/users/bob/inbox")
    assert setup.store.keys[key_id] == known
    # Cached now: no second request.
    assert await setup.resolver.resolve(key_id) == known
    assert await setup.resolver.resolve_with_actor(key_id) == (known, None)
    assert len(peer.seen) == 1


async def test_key_document_with_owner(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/keys/7")
    peer.serve(
        "/keys/7",
        {
            "id": key_id,
            "type": "CryptographicKey",
            "owner": peer.url("/users/carol"),
            "publicKeyPem": actor_keys[1],
        },
    )
    carol = actor_doc(peer, "carol", actor_keys[1])
    carol["publicKey"]["id"] = key_id
    peer.serve("/users/carol", carol)
    known, actor = await setup.resolver.resolve_with_actor(key_id)
    assert known.owner_uri == peer.url("/users/carol") and actor is not None
    assert [s.raw_path for s in peer.seen] == ["/keys/7", "/users/carol"]


async def test_gotosocial_stub_at_the_key_url(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/users/dave/main-key")
    dave = actor_doc(peer, "dave", actor_keys[1])
    dave["publicKey"]["id"] = key_id
    stub = {k: dave[k] for k in ("@context", "id", "type", "preferredUsername", "publicKey")}
    peer.serve("/users/dave/main-key", stub)
    peer.serve("/users/dave", dave)
    known = await setup.resolver.resolve(key_id)
    assert known.owner_uri == peer.url("/users/dave")
    assert [s.raw_path for s in peer.seen] == ["/users/dave/main-key", "/users/dave"]


# --- binding rules -------------------------------------------------------------------------


async def test_actor_whose_key_owner_is_another_actor(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    bob = actor_doc(peer, "bob", actor_keys[1])
    bob["publicKey"]["owner"] = peer.url("/users/mallory")
    peer.serve("/users/bob", bob)
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/bob#main-key")))
    assert setup.store.keys == {}


async def test_owner_must_list_this_key_id(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    # Mallory's key document claims Bob as owner; Bob lists another key (keyId poisoning).
    key_id = peer.url("/keys/mallory")
    peer.serve(
        "/keys/mallory",
        {"id": key_id, "owner": peer.url("/users/bob"), "publicKeyPem": actor_keys[1]},
    )
    peer.serve("/users/bob", actor_doc(peer, "bob", actor_keys[1]))
    await expect_key_error("rejected", setup.resolver.resolve(key_id))
    # Nor does an actor document at a fragment-less URL vouch for a different key id.
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/bob#other-key")))
    assert setup.store.keys == {}


async def test_key_document_and_owner_must_agree_on_the_pem(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str], other_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/keys/7")
    peer.serve(
        "/keys/7", {"id": key_id, "owner": peer.url("/users/c"), "publicKeyPem": other_keys[1]}
    )
    carol = actor_doc(peer, "c", actor_keys[1])
    carol["publicKey"]["id"] = key_id
    peer.serve("/users/c", carol)
    await expect_key_error("rejected", setup.resolver.resolve(key_id))


async def test_owner_on_another_origin_is_never_fetched(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/keys/7")
    peer.serve(
        "/keys/7",
        {
            "id": key_id,
            "owner": peer.url("/users/bob", host="localhost"),
            "publicKeyPem": actor_keys[1],
        },
    )
    await expect_key_error("rejected", setup.resolver.resolve(key_id))
    # A GoToSocial-style stub pointing at another origin is not followed either.
    peer.serve("/users/x/main-key", {"id": peer.url("/users/x", host="localhost")})
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/x/main-key")))
    assert [s.raw_path for s in peer.seen] == ["/keys/7", "/users/x/main-key"]


async def test_key_on_another_origin_than_its_actor(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    bob = actor_doc(peer, "bob", actor_keys[1])
    bob["publicKey"]["id"] = peer.url("/users/bob#main-key", host="localhost")
    peer.serve("/users/bob", bob)
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/bob#main-key")))
    # A keyId on a host that is not allowlisted is refused before any request.
    err = await expect_key_error(
        "policy", setup.resolver.resolve(peer.url("/users/bob#main-key", host="localhost"))
    )
    assert err.status == 403
    assert len(peer.seen) == 1


async def test_weak_keys_are_rejected(peer: Peer, setup: Setup) -> None:
    peer.serve("/users/bob", actor_doc(peer, "bob", weak_public_pem()))
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/bob#main-key")))
    peer.serve(
        "/users/eve",
        actor_doc(peer, "eve", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
    )
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/eve#main-key")))
    assert setup.store.keys == {}


@pytest.mark.parametrize(
    "key_id",
    ["acct:bob@127.0.0.1", "ACCT:bob@localhost", "", "main-key", "ftp://127.0.0.1/k", "x" * 3000],
)
async def test_unresolvable_key_ids(peer: Peer, setup: Setup, key_id: str) -> None:
    await expect_key_error("invalid", setup.resolver.resolve(key_id))
    assert peer.seen == []


async def test_gone_actor(peer: Peer, setup: Setup) -> None:
    peer.serve("/users/bob", {"id": peer.url("/users/bob")}, status=410)
    err = await expect_key_error("gone", setup.resolver.resolve(peer.url("/users/bob#main-key")))
    assert err.status == 410
    peer.serve("/users/ann", {}, status=404)
    err = await expect_key_error("unavailable", setup.resolver.resolve(peer.url("/users/ann#k")))
    assert err.status == 404


# --- cool-off ------------------------------------------------------------------------------


async def test_refresh_at_most_once_per_cooldown(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str], other_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/users/bob#main-key")
    peer.serve("/users/bob", actor_doc(peer, "bob", actor_keys[1]))
    first = await setup.resolver.resolve(key_id)
    peer.serve("/users/bob", actor_doc(peer, "bob", other_keys[1]))  # rotated
    for _ in range(5):  # an attacker sending bad signatures gets the cached key back
        assert await setup.resolver.resolve(key_id, refresh=True) == first
    assert len(peer.seen) == 1
    setup.clock.ms += COOLDOWN
    rotated = await setup.resolver.resolve(key_id, refresh=True)
    assert rotated.public_key_pem == other_keys[1] and setup.store.keys[key_id] == rotated
    assert len(peer.seen) == 2


async def test_a_key_stored_by_another_process_is_used_inside_the_cooldown(
    peer: Peer,
    fetcher: Fetcher,
    tmp_path: Path,
    actor_keys: tuple[str, str],
    other_keys: tuple[str, str],
) -> None:
    """The applier process stores the key an actor's Update announced; the web process,
    which verifies, still holds the old one in memory and may not ask the network inside
    the cool-off. Its refresh reads the key as stored (two handles on one file stand for the
    two processes)."""
    inst = make_instance(tmp_path / "inst")
    web_db, applier_db = Database(inst / "steelyard.sqlite3"), Database(inst / "steelyard.sqlite3")
    await web_db.open()
    await applier_db.open()
    try:
        clock = Clock()
        web = KeyResolver(fetcher, SqliteKeyStore(web_db), clock, COOLDOWN)
        key_id = peer.url("/users/bob#main-key")
        peer.serve("/users/bob", actor_doc(peer, "bob", actor_keys[1]))
        assert (await web.resolve(key_id)).public_key_pem == actor_keys[1]
        rotated = KnownKey(key_id, peer.url("/users/bob"), other_keys[1], clock.ms)
        await SqliteKeyStore(applier_db).remember_key(rotated)
        assert (await web.resolve(key_id)).public_key_pem == actor_keys[1]  # memory, no refresh
        assert (await web.resolve(key_id, refresh=True)).public_key_pem == other_keys[1]
        assert len(peer.seen) == 1  # and the network was not asked again
    finally:
        await web_db.close()
        await applier_db.close()


async def test_the_key_stored_last_is_the_current_one_even_within_a_millisecond(
    tmp_path: Path, actor_keys: tuple[str, str], other_keys: tuple[str, str]
) -> None:
    """A rotation announced in the same millisecond as the old key's fetch, and a rotation
    back: each time the key stored last is the one read back, whatever the keys' order."""
    inst = make_instance(tmp_path / "inst")
    db = Database(inst / "steelyard.sqlite3")
    await db.open()
    try:
        key_id, owner, at = "https://p.example/users/bob#main-key", "https://p.example/users/bob", 5
        for pem in (actor_keys[1], other_keys[1], actor_keys[1], other_keys[1]):
            await SqliteKeyStore(db).remember_key(KnownKey(key_id, owner, pem, at))
            found = await SqliteKeyStore(db).known_key(key_id)
            assert found is not None and found.public_key_pem == pem
    finally:
        await db.close()


async def test_failures_are_not_retried_inside_the_cooldown(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/users/bob#main-key")
    await expect_key_error("unavailable", setup.resolver.resolve(key_id))
    peer.serve("/users/bob", actor_doc(peer, "bob", actor_keys[1]))
    await expect_key_error("cooldown", setup.resolver.resolve(key_id))
    await expect_key_error("cooldown", setup.resolver.resolve(key_id, refresh=True))
    assert len(peer.seen) == 1
    setup.clock.ms += COOLDOWN + 1
    assert (await setup.resolver.resolve(key_id)).public_key_pem == actor_keys[1]
    assert len(peer.seen) == 2


async def test_fetches_to_one_host_are_budgeted_whatever_the_key_ids(
    peer: Peer, fetcher: Fetcher
) -> None:
    """Anyone can name a keyId: ever new paths on a partner must not each become a signed
    GET from us to that partner."""
    clock = Clock()
    resolver = KeyResolver(
        fetcher, MemoryKeyStore(), clock, COOLDOWN, host_budget=3, host_refill_ms=1_000
    )
    for n in range(3):
        await expect_key_error("unavailable", resolver.resolve(peer.url(f"/any/{n}#k")))
    assert len(peer.seen) == 3

    await expect_key_error("cooldown", resolver.resolve(peer.url("/any/3#k")))
    assert len(peer.seen) == 3  # refused without asking the partner
    clock.ms += 1_000
    await expect_key_error("unavailable", resolver.resolve(peer.url("/any/4#k")))
    assert len(peer.seen) == 4


async def test_concurrent_resolutions_share_one_fetch(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    peer.serve("/users/bob", actor_doc(peer, "bob", actor_keys[1]))
    key_id = peer.url("/users/bob#main-key")
    results = await asyncio.gather(*(setup.resolver.resolve(key_id) for _ in range(5)))
    assert len({r.public_key_pem for r in results}) == 1
    assert len(peer.seen) == 1


@pytest.mark.parametrize(
    "doc",
    [
        {"type": ["Person"], "publicKey": 5},
        {"type": {"x": 1}},
        {"owner": 5},
        {"owner": ["x"], "publicKeyPem": 1},
        {"publicKeyPem": "x"},
        {"publicKey": [], "inbox": []},
    ],
)
async def test_hostile_documents_at_the_key_url(
    peer: Peer, setup: Setup, doc: dict[str, Any]
) -> None:
    peer.serve("/users/bob", {"id": peer.url("/users/bob"), **doc})
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/bob#main-key")))
    assert setup.store.keys == {}


# --- a key named by reference only ---------------------------------------------------------
# ``"publicKey": "<key id>"`` in the actor, the PEM in a key document of its own: the JSON-LD
# form of the same link, which Mastodon resolves (FetchRemoteKeyService compares
# ``value_or_id(owner['publicKey'])`` with the key document's id, and ProcessAccountService
# fetches a referenced key). Both documents must name each other.


def key_document(peer: Peer, path: str, owner: str, pem: str) -> dict[str, Any]:
    return {
        "@context": "https://w3id.org/security/v1",
        "id": peer.url(path),
        "type": "Key",
        "owner": peer.url(owner),
        "publicKeyPem": pem,
    }


async def test_owner_naming_its_key_by_reference(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/keys/erin")
    peer.serve("/keys/erin", key_document(peer, "/keys/erin", "/users/erin", actor_keys[1]))
    peer.serve("/users/erin", actor_doc(peer, "erin", "", publicKey=key_id))
    known, actor = await setup.resolver.resolve_with_actor(key_id)
    assert known.owner_uri == peer.url("/users/erin")
    assert known.public_key_pem == actor_keys[1]
    assert actor is not None and actor.key_id == key_id
    assert [s.raw_path for s in peer.seen] == ["/keys/erin", "/users/erin"]


async def test_owner_listing_references_among_several_keys(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/keys/erin/2")
    peer.serve("/keys/erin/2", key_document(peer, "/keys/erin/2", "/users/erin", actor_keys[1]))
    erin = actor_doc(peer, "erin", "", publicKey=[peer.url("/keys/erin/1"), key_id])
    peer.serve("/users/erin", erin)
    assert (await setup.resolver.resolve(key_id)).public_key_pem == actor_keys[1]


async def test_a_referenced_key_needs_the_owner_to_name_it(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    # Mallory serves a key document claiming Erin; Erin references another key.
    key_id = peer.url("/keys/mallory")
    peer.serve("/keys/mallory", key_document(peer, "/keys/mallory", "/users/erin", actor_keys[1]))
    peer.serve("/users/erin", actor_doc(peer, "erin", "", publicKey=peer.url("/keys/erin")))
    await expect_key_error("rejected", setup.resolver.resolve(key_id))
    assert setup.store.keys == {}


async def test_a_referenced_key_on_another_origin_is_refused(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    elsewhere = peer.url("/keys/erin", host="localhost")
    peer.serve("/users/erin", actor_doc(peer, "erin", "", publicKey=elsewhere))
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/erin#main-key")))
    await expect_key_error("rejected", setup.resolver.resolve(peer.url("/users/erin")))
    assert setup.store.keys == {}


async def test_an_actor_that_only_references_its_key_verifies_nothing_itself(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    # The keyId names the actor (or a fragment of it) while the actor merely points at that
    # id: no PEM anywhere, so no key; and nothing is fetched beyond the actor.
    ref = peer.url("/users/erin#main-key")
    peer.serve("/users/erin", actor_doc(peer, "erin", "", publicKey=ref))
    await expect_key_error("rejected", setup.resolver.resolve(ref))
    assert setup.store.keys == {}
    assert [s.raw_path for s in peer.seen] == ["/users/erin"]


async def test_a_referenced_key_document_without_a_pem_is_refused(
    peer: Peer, setup: Setup, actor_keys: tuple[str, str]
) -> None:
    key_id = peer.url("/keys/erin")
    doc = key_document(peer, "/keys/erin", "/users/erin", actor_keys[1])
    del doc["publicKeyPem"]
    peer.serve("/keys/erin", doc)
    peer.serve("/users/erin", actor_doc(peer, "erin", "", publicKey=key_id))
    await expect_key_error("rejected", setup.resolver.resolve(key_id))
    assert setup.store.keys == {}
