"""fetch: signed GETs against a real aiohttp server on 127.0.0.1, every check on the answer.

The :class:`Peer` server verifies the signature of every request it receives with
``federation.signatures`` and the fixture fails the test if any request was unsigned or
badly signed. ``localhost:<port>`` is the same socket under a different, non-allowlisted
host name: the tests use it as "another origin" and assert it is never contacted.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from federation.aiohttp_transport import AiohttpTransport
from federation.fetch import Fetcher, FetchError
from federation.policy import FederationPolicy
from federation.ports import SigningKey
from federation.signatures import (
    KeyCache,
    SignatureError,
    generate_rsa_keypair,
    prepare_verification,
    verify_signature,
)
from federation.types import AS_ACCEPT

INSTANCE_KEY_ID = "https://steelyard.test/actor#main-key"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: dict[str, str]
    verified: bool


@dataclass
class MemoryAllowlist:
    hosts: set[str]

    async def is_allowed(self, host: str) -> bool:
        return host in self.hosts


@dataclass
class Peer:
    """A partner server: canned answers by path, and a log of what it was asked."""

    port: int
    instance_public_pem: str
    routes: dict[str, Handler] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(
        self,
        path: str,
        doc: Any,
        *,
        status: int = 200,
        content_type: str | None = "application/activity+json",
        headers: dict[str, str] | None = None,
    ) -> None:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.Response(status=status, body=body, headers=headers)
            if content_type is None:
                response.headers.pop("Content-Type", None)
            else:
                response.headers["Content-Type"] = content_type
            return response

        self.routes[path] = handler

    def requests_to(self, path: str) -> int:
        return sum(1 for s in self.seen if s.raw_path.split("?")[0] == path)


@pytest.fixture(scope="module")
def instance_keys() -> tuple[str, str]:
    return generate_rsa_keypair()


@pytest.fixture(scope="module")
def actor_keys() -> tuple[str, str]:
    return generate_rsa_keypair()


@pytest.fixture
async def peer(instance_keys: tuple[str, str]) -> AsyncIterator[Peer]:
    state = Peer(port=0, instance_public_pem=instance_keys[1])

    async def dispatch(request: web.Request) -> web.StreamResponse:
        headers = [(k, v) for k, v in request.headers.items()]
        try:
            pending = prepare_verification(
                request.method,
                request.raw_path,
                headers,
                b"",
                canonical_host=state.host,
                now=time.time(),
            )
            ok = pending.key_id == INSTANCE_KEY_ID and verify_signature(
                pending, state.instance_public_pem
            )
        except SignatureError:
            ok = False
        state.seen.append(Seen(request.method, request.raw_path, dict(request.headers), ok))
        handler = state.routes.get(request.path)
        if handler is None:
            return web.Response(status=404)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()
    unverified = [s.raw_path for s in state.seen if not s.verified]
    assert not unverified, f"requests without a valid signature: {unverified}"


def make_fetcher(
    transport: AiohttpTransport,
    peer: Peer,
    instance_keys: tuple[str, str],
    *,
    development: bool = True,
    max_bytes: int = 1_048_576,
) -> Fetcher:
    policy = FederationPolicy(
        MemoryAllowlist({peer.host}), self_host="steelyard.test", development=development
    )

    async def signer() -> SigningKey:
        return SigningKey(key_id=INSTANCE_KEY_ID, private_key_pem=instance_keys[0])

    return Fetcher(transport, policy, signer, KeyCache(), time.time, max_bytes=max_bytes)


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with AiohttpTransport(
        allow_loopback=True, user_agent="steelyard-test", total_timeout=5.0
    ) as t:
        yield t


@pytest.fixture
def fetcher(transport: AiohttpTransport, peer: Peer, instance_keys: tuple[str, str]) -> Fetcher:
    return make_fetcher(transport, peer, instance_keys)


def actor_doc(peer: Peer, name: str, pem: str, **overrides: Any) -> dict[str, Any]:
    uri = peer.url(f"/users/{name}")
    doc: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": uri,
        "type": "Person",
        "preferredUsername": name,
        "inbox": uri + "/inbox",
        "outbox": uri + "/outbox",
        "followers": uri + "/followers",
        "endpoints": {"sharedInbox": peer.url("/inbox")},
        "publicKey": {"id": uri + "#main-key", "owner": uri, "publicKeyPem": pem},
    }
    doc.update(overrides)
    return doc


async def expect_fetch_error(kind: str, call: Awaitable[Any]) -> FetchError:
    with pytest.raises(FetchError) as info:
        await call
    assert info.value.kind == kind, str(info.value)
    return info.value


# --- fetch_object ----------------------------------------------------------------------------


async def test_signed_fetch_returns_the_document(peer: Peer, fetcher: Fetcher) -> None:
    note = {"id": peer.url("/notes/1"), "type": "Note"}
    peer.serve("/notes/1", note)
    assert await fetcher.fetch_object(peer.url("/notes/1")) == note
    (seen,) = peer.seen
    assert seen.verified and seen.method == "GET"
    assert seen.headers["Accept"] == AS_ACCEPT


async def test_query_strings_are_signed(peer: Peer, fetcher: Fetcher) -> None:
    url = peer.url("/users/bob/outbox?page=true&min_id=0")
    peer.serve("/users/bob/outbox", {"id": url, "type": "OrderedCollectionPage"})
    await fetcher.fetch_object(url)
    assert peer.seen[0].raw_path == "/users/bob/outbox?page=true&min_id=0"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/activity+json; charset=utf-8",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        "application/ld+json;profile=https://www.w3.org/ns/activitystreams;charset=utf-8",
    ],
)
async def test_activitystreams_media_types(peer: Peer, fetcher: Fetcher, content_type: str) -> None:
    peer.serve("/n", {"id": peer.url("/n")}, content_type=content_type)
    assert await fetcher.fetch_object(peer.url("/n"))


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/html", "text/html; charset=utf-8", "application/ld+json", None],
)
async def test_other_media_types_are_rejected(
    peer: Peer, fetcher: Fetcher, content_type: str | None
) -> None:
    # The upload-impersonation class: JSON served as a file is not an object (FEP-96ff).
    peer.serve("/media/x.json", {"id": peer.url("/media/x.json")}, content_type=content_type)
    await expect_fetch_error("content-type", fetcher.fetch_object(peer.url("/media/x.json")))


async def test_document_id_must_be_the_url(peer: Peer, fetcher: Fetcher) -> None:
    peer.serve("/notes/1", {"id": peer.url("/notes/2"), "type": "Note"})
    err = await expect_fetch_error("id-mismatch", fetcher.fetch_object(peer.url("/notes/1")))
    assert err.document_id == peer.url("/notes/2")
    peer.serve("/notes/3", {"type": "Note"})
    err = await expect_fetch_error("id-mismatch", fetcher.fetch_object(peer.url("/notes/3")))
    assert err.document_id is None
    peer.serve("/notes/4", {"id": peer.url("/notes/4", host="localhost")})
    await expect_fetch_error("id-mismatch", fetcher.fetch_object(peer.url("/notes/4")))
    # Fragments are ignored on both sides.
    peer.serve("/users/bob", {"id": peer.url("/users/bob")})
    assert await fetcher.fetch_object(peer.url("/users/bob#main-key"))
    assert peer.seen[-1].raw_path == "/users/bob"


async def test_redirects_are_not_followed(peer: Peer, fetcher: Fetcher) -> None:
    peer.serve("/notes/1", {"id": peer.url("/notes/1")})
    peer.serve("/moved", b"", status=302, headers={"Location": peer.url("/notes/1")})
    err = await expect_fetch_error("redirect", fetcher.fetch_object(peer.url("/moved")))
    assert err.status == 302
    assert peer.requests_to("/notes/1") == 0


async def test_oversize_bodies_are_rejected(
    peer: Peer, transport: AiohttpTransport, instance_keys: tuple[str, str]
) -> None:
    small = make_fetcher(transport, peer, instance_keys, max_bytes=1000)
    peer.serve("/big", {"id": peer.url("/big"), "content": "x" * 5000})
    await expect_fetch_error("too-large", small.fetch_object(peer.url("/big")))

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/activity+json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"id": "' + b"y" * 4000 + b'"}')
        await response.write_eof()
        return response

    peer.routes["/chunked"] = chunked
    await expect_fetch_error("too-large", small.fetch_object(peer.url("/chunked")))


@pytest.mark.parametrize(
    ("status", "kind"), [(410, "gone"), (404, "status"), (401, "status"), (500, "status")]
)
async def test_statuses(peer: Peer, fetcher: Fetcher, status: int, kind: str) -> None:
    peer.serve("/x", {"id": peer.url("/x")}, status=status)
    err = await expect_fetch_error(kind, fetcher.fetch_object(peer.url("/x")))
    assert err.status == status


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"id": 1, "id": 2}', b'{"a": NaN}', b"\xff\xfe", b""]
)
async def test_bad_json_is_rejected(peer: Peer, fetcher: Fetcher, body: bytes) -> None:
    peer.serve("/x", body)
    await expect_fetch_error("json", fetcher.fetch_object(peer.url("/x")))


async def test_policy_refusals_cause_no_network_io(
    peer: Peer, fetcher: Fetcher, transport: AiohttpTransport, instance_keys: tuple[str, str]
) -> None:
    peer.serve("/notes/1", {"id": peer.url("/notes/1")})
    for url, status in [
        (peer.url("/notes/1", host="localhost"), 403),  # same socket, host not allowed
        ("https://steelyard.test/users/alice", 403),  # ourselves
        ("https://partner.example.evil.example/x", 403),
        (f"http://user@127.0.0.1:{peer.port}/notes/1", 400),
        ("ftp://127.0.0.1/x", 400),
    ]:
        err = await expect_fetch_error("policy", fetcher.fetch_object(url))
        assert err.status == status
    production = make_fetcher(transport, peer, instance_keys, development=False)
    err = await expect_fetch_error("policy", production.fetch_object(peer.url("/notes/1")))
    assert err.status == 400
    await expect_fetch_error("policy", production.fetch_actor(peer.url("/users/bob")))
    assert peer.seen == []


# --- fetch_actor -----------------------------------------------------------------------------


async def test_fetch_actor(peer: Peer, fetcher: Fetcher, actor_keys: tuple[str, str]) -> None:
    peer.serve("/users/bob", actor_doc(peer, "bob", actor_keys[1]))
    actor = await fetcher.fetch_actor(peer.url("/users/bob"))
    assert actor.uri == peer.url("/users/bob") and actor.host == peer.host
    assert actor.key_id == peer.url("/users/bob#main-key")


@pytest.mark.parametrize(
    "overrides",
    [
        {"publicKey": {"id": "K", "owner": "O", "publicKeyPem": "P"}},
        {"inbox": "http://localhost:{port}/users/bob/inbox"},
        {"endpoints": {"sharedInbox": "http://localhost:{port}/inbox"}},
        {"type": "Note"},
    ],
)
async def test_fetch_actor_rejects_foreign_bindings(
    peer: Peer, fetcher: Fetcher, actor_keys: tuple[str, str], overrides: dict[str, Any]
) -> None:
    text = json.dumps(overrides).replace("{port}", str(peer.port))
    text = text.replace('"K"', json.dumps(peer.url("/users/bob#main-key")))
    text = text.replace('"O"', json.dumps(peer.url("/users/mallory")))
    text = text.replace('"P"', json.dumps(actor_keys[1]))
    peer.serve("/users/bob", actor_doc(peer, "bob", actor_keys[1], **json.loads(text)))
    await expect_fetch_error("invalid", fetcher.fetch_actor(peer.url("/users/bob")))


# --- webfinger -------------------------------------------------------------------------------


def serve_webfinger(peer: Peer, doc: Any, content_type: str = "application/jrd+json") -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("resource") != f"acct:bob@{peer.host}":
            return web.Response(status=404)
        return web.Response(body=json.dumps(doc).encode(), headers={"Content-Type": content_type})

    peer.routes["/.well-known/webfinger"] = handler


def jrd(peer: Peer, *, subject: str | None = None, href: str | None = None) -> dict[str, Any]:
    return {
        "subject": subject or f"acct:bob@{peer.host}",
        "links": [
            {
                "rel": "self",
                "type": "application/activity+json",
                "href": href or peer.url("/users/bob"),
            }
        ],
    }


@pytest.mark.parametrize("form", ["bob@{host}", "@bob@{host}", "acct:bob@{host}"])
async def test_webfinger(peer: Peer, fetcher: Fetcher, form: str) -> None:
    serve_webfinger(peer, jrd(peer))
    assert await fetcher.webfinger(form.format(host=peer.host)) == peer.url("/users/bob")
    assert peer.seen[-1].raw_path == f"/.well-known/webfinger?resource=acct:bob@{peer.host}"
    assert peer.seen[-1].headers["Accept"].startswith("application/jrd+json")


async def test_webfinger_accepts_plain_json(peer: Peer, fetcher: Fetcher) -> None:
    serve_webfinger(peer, jrd(peer), "application/json; charset=utf-8")
    assert await fetcher.webfinger(f"bob@{peer.host}") == peer.url("/users/bob")


async def test_webfinger_subject_mismatch(peer: Peer, fetcher: Fetcher) -> None:
    serve_webfinger(peer, jrd(peer, subject=f"acct:mallory@{peer.host}"))
    await expect_fetch_error("invalid", fetcher.webfinger(f"bob@{peer.host}"))


async def test_webfinger_self_link_on_another_host(peer: Peer, fetcher: Fetcher) -> None:
    serve_webfinger(peer, jrd(peer, href=peer.url("/users/bob", host="localhost")))
    await expect_fetch_error("invalid", fetcher.webfinger(f"bob@{peer.host}"))


async def test_webfinger_content_type(peer: Peer, fetcher: Fetcher) -> None:
    serve_webfinger(peer, jrd(peer), "text/html")
    await expect_fetch_error("content-type", fetcher.webfinger(f"bob@{peer.host}"))


async def test_webfinger_refusals_before_io(peer: Peer, fetcher: Fetcher) -> None:
    serve_webfinger(peer, jrd(peer))
    await expect_fetch_error("policy", fetcher.webfinger(f"bob@localhost:{peer.port}"))
    await expect_fetch_error("policy", fetcher.webfinger("alice@steelyard.test"))
    for junk in ["bob", "bob@mastodon.so/cial", f"bob@evil.example@{peer.host}", "b b@x.y"]:
        await expect_fetch_error("invalid", fetcher.webfinger(junk))
    assert peer.seen == []
