"""The inbox trust boundary: every rule of SECURITY.md §2.2 as a test that fails without it.

Requests are signed for real with ``sign_request`` and real RSA keys; the key source, the
allowlist and the store are in-memory fakes that count their calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from federation import inbox as inbox_module
from federation.inbox import InboxReceiver, InboxResult, VerifiedRequester, is_activity_media_type
from federation.ports import KnownKey
from federation.signatures import KeyCache, generate_rsa_keypair, sign_request
from tests.unit.federation.memory_ports import MemoryAllowlist, MemoryInboxStore

NOW = 1_800_000_000.0
OURS = "beta.example"
CT = "application/activity+json"
ALICE = "https://alpha.example/users/alice"
BOB = "https://alpha.example/users/bob"
CAROL = "https://gamma.example/users/carol"
MALLORY = "https://evil.example/users/mallory"
LOCAL = "https://beta.example/users/dave"

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Pairs:
    alice: tuple[str, str]
    bob: tuple[str, str]
    carol: tuple[str, str]


@pytest.fixture(scope="module")
def pairs() -> Pairs:
    # Generation is slow: three pairs for the whole module; Mallory reuses Carol's.
    return Pairs(generate_rsa_keypair(), generate_rsa_keypair(), generate_rsa_keypair())


class FakeKeys:
    """A KeySource: ``cached`` answers plain resolves, ``fresh`` answers refreshes."""

    def __init__(self, keys: dict[str, KnownKey]) -> None:
        self.cached = dict(keys)
        self.fresh = dict(keys)
        self.calls: list[tuple[str, bool]] = []
        self.broken = False

    async def resolve(self, key_id: str, *, refresh: bool = False) -> KnownKey:
        self.calls.append((key_id, refresh))
        if self.broken:
            raise RuntimeError("unexpected failure inside the key source")
        source = self.fresh if refresh else self.cached
        if key_id not in source:
            raise LookupError(f"no key {key_id}")
        if refresh:
            self.cached[key_id] = source[key_id]
        return source[key_id]

    async def known_key(self, key_id: str) -> KnownKey | None:
        if self.broken:
            raise RuntimeError("unexpected failure inside the key source")
        return self.cached.get(key_id)


def known(actor: str, pair: tuple[str, str]) -> KnownKey:
    return KnownKey(f"{actor}#main-key", actor, pair[1], 0)


@dataclass
class World:
    receiver: InboxReceiver
    allowlist: MemoryAllowlist
    keys: FakeKeys
    store: MemoryInboxStore
    pairs: Pairs

    def private(self, actor: str) -> str:
        return {
            ALICE: self.pairs.alice,
            BOB: self.pairs.bob,
            CAROL: self.pairs.carol,
            MALLORY: self.pairs.carol,
        }[actor][0]

    def sign(
        self,
        body: bytes,
        *,
        signer: str = ALICE,
        key_id: str | None = None,
        now: float = NOW,
        content_type: str | None = CT,
        target: str = "/inbox",
        host: str = OURS,
        method: str = "POST",
    ) -> Headers:
        extra = {"Content-Type": content_type} if content_type is not None else {}
        headers = sign_request(
            method,
            f"https://{host}{target}",
            key_id=key_id or f"{signer}#main-key",
            private_key_pem=self.private(signer),
            body=body if method == "POST" else None,
            now=now,
            extra_headers=extra,
        )
        return list(headers.items())

    async def post(
        self, body: bytes, headers: Sequence[tuple[str, str]], target: str = "/inbox"
    ) -> InboxResult:
        return await self.receiver.receive(
            method="POST", raw_target=target, headers=headers, body=body
        )

    async def deliver(self, doc: dict[str, Any], **kwargs: Any) -> InboxResult:
        body = encode(doc)
        return await self.post(body, self.sign(body, **kwargs))


@pytest.fixture
def world(pairs: Pairs) -> World:
    allowlist = MemoryAllowlist("alpha.example", "gamma.example")
    keys = FakeKeys(
        {
            k.key_id: k
            for k in (known(ALICE, pairs.alice), known(BOB, pairs.bob), known(CAROL, pairs.carol))
        }
    )
    store = MemoryInboxStore()
    receiver = InboxReceiver(
        canonical_host=OURS,
        allowlist=allowlist,
        keys=keys,
        store=store,
        now=lambda: NOW,
        key_cache=KeyCache(),
    )
    return World(receiver, allowlist, keys, store, pairs)


def follow(actor: str = ALICE, activity_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": activity_id or f"{actor}/follows/1",
        "type": "Follow",
        "actor": actor,
        "object": LOCAL,
        **extra,
    }


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def assert_refused(world: World, result: InboxResult, status: int) -> None:
    assert result.status == status, result
    assert world.store.rows == []
    assert world.store.spoke == []


# --- the happy path ------------------------------------------------------------------------


async def test_valid_activity_is_archived_then_accepted(world: World) -> None:
    body = encode(follow())
    headers = world.sign(body)
    result = await world.post(body, headers)
    assert result == InboxResult(202, "accepted", f"{ALICE}/follows/1")
    (row,) = world.store.rows
    record = row.record
    assert record.activity_id == f"{ALICE}/follows/1"
    assert record.activity_type == "Follow"
    assert record.actor_uri == ALICE
    assert record.origin_host == "alpha.example"
    assert record.key_id == f"{ALICE}#main-key"
    assert record.target == "/inbox"
    assert record.body == body
    assert list(record.headers) == headers
    assert record.received_at_ms == int(NOW * 1000)
    assert world.store.spoke == [("alpha.example", int(NOW * 1000))]
    assert world.keys.calls == [(f"{ALICE}#main-key", False)]


async def test_personal_inbox_target_is_archived(world: World) -> None:
    body = encode(follow())
    headers = world.sign(body, target="/users/dave/inbox")
    result = await world.receiver.receive(
        method="POST",
        raw_target="/users/dave/inbox",
        headers=headers,
        body=body,
        path_owner="dave",
    )
    assert result.status == 202
    assert world.store.rows[0].record.target == "/users/dave/inbox"


async def test_actor_may_be_an_embedded_object(world: World) -> None:
    result = await world.deliver(follow(actor=ALICE) | {"actor": {"id": ALICE, "type": "Person"}})
    assert result.status == 202


async def test_ld_json_with_activitystreams_profile_is_accepted(world: World) -> None:
    ld = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
    assert (await world.deliver(follow(), content_type=ld)).status == 202
    assert (
        await world.deliver(follow(activity_id=f"{ALICE}/2"), content_type=CT + "; charset=utf-8")
    ).status == 202


# --- 401: authentication ---------------------------------------------------------------------


async def test_unsigned_post_is_401(world: World) -> None:
    body = encode(follow())
    headers = [(n, v) for n, v in world.sign(body) if n != "Signature"]
    assert_refused(world, await world.post(body, headers), 401)
    assert world.keys.calls == []


async def test_tampered_body_is_401(world: World) -> None:
    body = encode(follow())
    headers = world.sign(body)
    tampered = encode(follow(object="https://beta.example/users/erin"))
    assert_refused(world, await world.post(tampered, headers), 401)


async def test_stale_or_future_date_is_401(world: World) -> None:
    assert_refused(world, await world.deliver(follow(), now=NOW - 2 * 3600), 401)
    assert_refused(world, await world.deliver(follow(), now=NOW + 2 * 3600), 401)


async def test_signature_for_another_host_or_target_is_401(world: World) -> None:
    assert_refused(world, await world.deliver(follow(), host="gamma.example"), 401)
    body = encode(follow())
    headers = world.sign(body, target="/users/dave/inbox")
    assert_refused(world, await world.post(body, headers, target="/inbox"), 401)


async def test_key_of_actor_a_for_activity_of_actor_b_is_401(world: World) -> None:
    # Alice's key, correctly signed, but the activity claims to be Bob's (same host).
    result = await world.deliver(follow(actor=BOB), signer=ALICE)
    assert_refused(world, result, 401)


async def test_signature_by_wrong_key_is_401_after_one_refresh(world: World) -> None:
    # Signed with Bob's private key but naming Alice's keyId.
    result = await world.deliver(follow(), signer=BOB, key_id=f"{ALICE}#main-key")
    assert_refused(world, result, 401)
    assert world.keys.calls == [(f"{ALICE}#main-key", False), (f"{ALICE}#main-key", True)]


async def test_rotated_key_verifies_after_exactly_one_refresh(world: World) -> None:
    stale = known(ALICE, world.pairs.bob)  # what we cached before Alice rotated
    world.keys.cached[stale.key_id] = stale
    result = await world.deliver(follow())
    assert result.status == 202
    assert world.keys.calls == [(stale.key_id, False), (stale.key_id, True)]
    # The refreshed key is now cached: the next request needs no refresh.
    await world.deliver(follow(activity_id=f"{ALICE}/follows/2"))
    assert world.keys.calls[2:] == [(stale.key_id, False)]


async def test_unknown_key_is_401(world: World) -> None:
    result = await world.deliver(follow(), key_id=f"{ALICE}#other-key")
    assert_refused(world, result, 401)


async def test_key_source_returning_another_key_is_401(world: World) -> None:
    key_id = f"{ALICE}#main-key"
    world.keys.cached[key_id] = KnownKey(f"{ALICE}#second", ALICE, world.pairs.alice[1], 0)
    world.keys.fresh[key_id] = world.keys.cached[key_id]
    assert_refused(world, await world.deliver(follow()), 401)


async def test_key_source_failing_unexpectedly_is_401(world: World) -> None:
    world.keys.broken = True
    assert_refused(world, await world.deliver(follow()), 401)


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "garbage",
        'keyId="https://alpha.example/users/alice#main-key"',
        'keyId="https://alpha.example/users/alice#main-key",signature="!!!"',
        'keyId="x",keyId="y",signature="AAAA"',
        'keyId="acct:alice@alpha.example",headers="(request-target) host date digest",'
        'signature="AAAA"',
        'keyId="https://alpha.example/k",algorithm="hmac-sha256",'
        'headers="(request-target) host date digest",signature="AAAA"',
        "a" * 10_000,
        'keyId="https://alpha.example/ké",signature="AAAA"',
    ],
)
async def test_garbage_signature_headers_are_4xx(world: World, signature: str) -> None:
    body = encode(follow())
    headers = [(n, signature if n == "Signature" else v) for n, v in world.sign(body)]
    result = await world.post(body, headers)
    assert 400 <= result.status < 500
    assert world.store.rows == []


async def test_non_ascii_header_values_are_4xx(world: World) -> None:
    body = encode(follow())
    headers = [
        (n, "Fri, 15 Jan 2027 08:00:00 GMT\u00e9" if n == "Date" else v)
        for n, v in world.sign(body)
    ]
    result = await world.post(body, headers)
    assert 400 <= result.status < 500
    headers = [*world.sign(body), ("X-Note", "caf\u00e9")]
    assert (await world.post(body, headers)).status == 202  # an unsigned extra is harmless


@pytest.mark.parametrize("name", ["Date", "Signature", "Digest", "Host", "Content-Type"])
async def test_duplicated_singleton_headers_are_400(world: World, name: str) -> None:
    body = encode(follow())
    headers = world.sign(body)
    value = dict(headers)[name]
    assert_refused(world, await world.post(body, [*headers, (name, value)]), 400)


# --- 403: allowlist and origins --------------------------------------------------------------


async def test_host_not_allowed_is_403_before_any_key_fetch_or_parse(world: World) -> None:
    assert_refused(world, await world.deliver(follow(actor=MALLORY), signer=MALLORY), 403)
    # Even a body that is not JSON: the allowlist answers before the parser runs.
    body = b"{not json"
    assert_refused(world, await world.post(body, world.sign(body, signer=MALLORY)), 403)
    assert world.keys.calls == []
    assert world.allowlist.calls == ["evil.example", "evil.example"]


async def test_allowlist_failure_is_503_not_403(world: World) -> None:
    world.allowlist.fail = True
    assert_refused(world, await world.deliver(follow()), 503)
    assert world.keys.calls == []


async def test_key_host_differs_from_actor_host_is_403(world: World) -> None:
    # Carol (gamma, allowed) signs an activity whose actor is on alpha.
    result = await world.deliver(follow(actor=ALICE), signer=CAROL)
    assert_refused(world, result, 403)
    assert world.keys.calls == []


async def test_activity_id_on_another_host_is_403(world: World) -> None:
    result = await world.deliver(follow(activity_id="https://gamma.example/follows/1"))
    assert_refused(world, result, 403)


async def test_created_object_on_another_host_is_403(world: World) -> None:
    create = follow(activity_id=f"{ALICE}/creates/1", type="Create")
    create["object"] = {"id": "https://gamma.example/notes/1", "type": "Note"}
    assert_refused(world, await world.deliver(create), 403)
    create["object"] = {"id": f"{ALICE}/notes/1", "type": "Note"}
    assert (await world.deliver(create)).status == 202


# --- 400, 413, 415: shape --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[" * 2000 + b"]" * 2000,
        b'{"a":' * 40 + b"1" + b"}" * 40,
        b'{"id":"https://alpha.example/users/alice/1","id":"https://alpha.example/2"}',
        b'{"id": NaN}',
        b"\xff\xfe",
        b"[]",
    ],
    ids=["invalid", "deep-array", "deep-object", "duplicate-key", "nan", "not-utf8", "array"],
)
async def test_malformed_json_is_400(world: World, body: bytes) -> None:
    assert_refused(world, await world.post(body, world.sign(body)), 400)
    assert world.keys.calls == []


@pytest.mark.parametrize(
    "change",
    [
        {"id": None},
        {"type": None},
        {"actor": None},
        {"id": 7},
        {"type": [7]},
        {"actor": {"type": "Person"}},
        {"actor": [ALICE]},
        {"actor": "acct:alice@alpha.example"},
        {"id": "urn:uuid:1"},
    ],
)
async def test_missing_or_malformed_id_type_actor_is_400(
    world: World, change: dict[str, Any]
) -> None:
    doc = follow()
    for key, value in change.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    assert_refused(world, await world.deliver(doc), 400)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/activity+jsonx",
        "application/jsonx",
    ],
)
async def test_wrong_content_type_is_415(world: World, content_type: str | None) -> None:
    assert_refused(world, await world.deliver(follow(), content_type=content_type), 415)


def test_media_type_parsing() -> None:
    assert is_activity_media_type("Application/Activity+JSON")
    assert is_activity_media_type(
        'application/ld+json;profile="https://www.w3.org/ns/activitystreams https://x.example"'
    )
    assert is_activity_media_type(
        "application/ld+json; profile=https://www.w3.org/ns/activitystreams"
    )
    assert not is_activity_media_type("application/ld+json; charset=utf-8")


async def test_oversize_body_is_413(world: World) -> None:
    doc = follow(summary="x" * 300_000)
    assert_refused(world, await world.deliver(doc), 413)
    assert world.allowlist.calls == []


async def test_oversize_content_length_is_413_and_mismatch_400(world: World) -> None:
    body = encode(follow())
    headers = world.sign(body)
    assert_refused(world, await world.post(body, [*headers, ("Content-Length", "9999999")]), 413)
    assert_refused(world, await world.post(body, [*headers, ("Content-Length", "12")]), 400)
    assert_refused(world, await world.post(body, [*headers, ("Content-Length", "1e3")]), 400)
    ok = [*headers, ("Content-Length", str(len(body)))]
    assert (await world.post(body, ok)).status == 202


# --- idempotency and durability --------------------------------------------------------------


async def test_duplicate_activity_is_202_and_stored_once(world: World) -> None:
    first = await world.deliver(follow())
    second = await world.deliver(follow())
    assert (first.status, second.status) == (202, 202)
    assert second.reason == "accepted (duplicate)"
    assert len(world.store.rows) == 1


async def test_store_failure_is_503_never_202(world: World) -> None:
    world.store.fail_store = True
    result = await world.deliver(follow())
    assert result.status == 503
    assert world.store.rows == []


async def test_host_spoke_failure_does_not_lose_the_activity(world: World) -> None:
    async def broken(host: str, now_ms: int) -> None:
        raise OSError("disk I/O error")

    world.store.host_spoke = broken  # type: ignore[method-assign]
    assert (await world.deliver(follow())).status == 202
    assert len(world.store.rows) == 1


async def test_unexpected_exception_is_a_result_not_a_raise(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(body: bytes, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(inbox_module, "loads_activity", explode)
    assert_refused(world, await world.deliver(follow()), 400)


# --- Delete of an actor (§2.2 step 11) -------------------------------------------------------


def delete_actor(actor: str) -> dict[str, Any]:
    return {"id": f"{actor}#delete", "type": "Delete", "actor": actor, "object": actor}


async def test_delete_of_unknown_actor_is_202_noop(world: World) -> None:
    gone = "https://alpha.example/users/gone"
    result = await world.deliver(delete_actor(gone), signer=ALICE, key_id=f"{gone}#main-key")
    assert result.status == 202
    assert world.store.rows == []
    assert world.store.spoke == []


async def test_delete_of_someone_else_with_unknown_key_is_401(world: World) -> None:
    gone = "https://alpha.example/users/gone"
    doc = delete_actor(gone) | {"object": f"{gone}/notes/1"}
    result = await world.deliver(doc, signer=ALICE, key_id=f"{gone}#main-key")
    assert_refused(world, result, 401)


async def test_delete_of_known_actor_is_verified_and_stored(world: World) -> None:
    result = await world.deliver(delete_actor(ALICE) | {"object": {"id": ALICE}})
    assert result.status == 202
    assert len(world.store.rows) == 1
    forged = await world.deliver(
        delete_actor(BOB) | {"id": f"{BOB}#delete2"}, signer=ALICE, key_id=f"{BOB}#main-key"
    )
    assert forged.status == 401
    # Still 401 when the key cannot be fetched again (the actor's server is down, or says
    # the actor is gone): a known key that does not verify never earns the no-op's 202.
    del world.keys.fresh[f"{BOB}#main-key"]
    again = await world.deliver(
        delete_actor(BOB) | {"id": f"{BOB}#delete3"}, signer=ALICE, key_id=f"{BOB}#main-key"
    )
    assert again.status == 401
    assert len(world.store.rows) == 1


# --- signed GET (secure mode) ----------------------------------------------------------------


async def get(world: World, headers: Headers, target: str = "/users/dave") -> object:
    return await world.receiver.verify_get(raw_target=target, headers=headers)


async def test_signed_get_names_the_signer(world: World) -> None:
    headers = world.sign(b"", method="GET", target="/users/dave", content_type=None)
    assert await get(world, headers) == VerifiedRequester(
        ALICE, "alpha.example", f"{ALICE}#main-key"
    )
    # A verified signed GET shows the host is up, as an inbox POST does (closes its circuit).
    assert world.store.spoke == [("alpha.example", int(NOW * 1000))]


async def test_signed_get_refusals(world: World) -> None:
    unsigned = [
        (n, v)
        for n, v in world.sign(b"", method="GET", target="/users/dave", content_type=None)
        if n != "Signature"
    ]
    result = await get(world, unsigned)
    assert isinstance(result, InboxResult) and result.status == 401

    evil = world.sign(b"", method="GET", signer=MALLORY, target="/users/dave", content_type=None)
    result = await get(world, evil)
    assert isinstance(result, InboxResult) and result.status == 403
    assert world.keys.calls == []

    wrong = world.sign(
        b"",
        method="GET",
        signer=BOB,
        key_id=f"{ALICE}#main-key",
        target="/users/dave",
        content_type=None,
    )
    result = await get(world, wrong)
    assert isinstance(result, InboxResult) and result.status == 401
    assert world.keys.calls[-1] == (f"{ALICE}#main-key", True)

    stale = world.sign(b"", method="GET", target="/users/dave", now=NOW - 7200, content_type=None)
    result = await get(world, stale)
    assert isinstance(result, InboxResult) and result.status == 401


async def test_signed_get_key_owner_on_another_host_is_401(world: World) -> None:
    key_id = f"{ALICE}#main-key"
    world.keys.cached[key_id] = KnownKey(key_id, CAROL, world.pairs.alice[1], 0)
    headers = world.sign(b"", method="GET", target="/users/dave", content_type=None)
    result = await get(world, headers)
    assert isinstance(result, InboxResult) and result.status == 401


# --- logging ---------------------------------------------------------------------------------


async def test_logs_name_activity_and_host_never_bodies_or_keys(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="federation.inbox")
    world.store.fail_store = True
    await world.deliver(follow(summary="SECRET-CONTENT"))
    await world.deliver(follow(actor=BOB, summary="SECRET-CONTENT"), signer=ALICE)
    assert f"{ALICE}/follows/1" in caplog.text
    assert "alpha.example" in caplog.text
    assert "SECRET-CONTENT" not in caplog.text
    assert "PRIVATE KEY" not in caplog.text and "PUBLIC KEY" not in caplog.text
    assert "signature=" not in caplog.text
