"""RFC 9421 HTTP Message Signatures accepted by alpha's inbox and signed GETs (SECURITY.md
§2.3), with requests signed by an independent implementation (``http-message-signatures``,
pyauth), so a shared misreading of the RFC between our parser and a signer of ours cannot
pass unseen.

Each refusal starts from a request that the first tests show is accepted and breaks one
thing; nothing refused reaches the inbound archive.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import HTTPSignatureKeyResolver

from federation.types import AS_PUBLIC
from tests.federation.conftest import Trio
from tests.federation.support import (
    ACTIVITY_JSON,
    AS_ACCEPT,
    Forger,
    Sent,
    cast,
    copy_of,
    inbox_count,
    plain_get,
    raw_post,
)
from tests.support.network import Instance

MASTODON_COVERAGE = ("@method", "@target-uri", "content-digest")
FEDIFY_COVERAGE = ("@method", "@target-uri", "@authority", "host", "date", "content-digest")


@dataclass
class _Message:
    """The request interface the signing library reads (``method``, ``url``, ``headers``)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class _OneKey(HTTPSignatureKeyResolver):  # type: ignore[misc]
    def __init__(self, pem: str) -> None:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self._key = key

    def resolve_private_key(self, key_id: str) -> rsa.RSAPrivateKey:
        return self._key


def rfc9421_headers(
    forger: Forger,
    target: Instance,
    path: str,
    body: bytes | None,
    *,
    covered: Sequence[str] = MASTODON_COVERAGE,
    method: str = "POST",
    created_offset: float = 0,
    expires_in: float | None = None,
    algorithm: type = algorithms.RSA_V1_5_SHA256,
    url: str | None = None,
) -> dict[str, str]:
    """Headers of *path* on *target* signed RFC 9421 style by the pyauth library."""
    now = target.ctx.clock.now() + created_offset
    message = _Message(method, url or target.base + path, {"Host": target.host})
    if method == "POST":
        message.headers["Content-Type"] = ACTIVITY_JSON
    else:
        message.headers["Accept"] = AS_ACCEPT
    message.headers["Date"] = dt.datetime.fromtimestamp(now, dt.UTC).strftime(
        "%a, %d %b %Y %H:%M:%S GMT"
    )
    created = dt.datetime.fromtimestamp(now, dt.UTC)
    expires = None if expires_in is None else created + dt.timedelta(seconds=expires_in)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithm, key_resolver=_OneKey(forger.private_key_pem)
    )
    components = [name for name in covered if name != "content-digest"]
    signer.sign(
        message,
        key_id=forger.key_id,
        created=created,
        expires=expires,
        label="sig1",
        covered_component_ids=components,
        body=body if "content-digest" in covered else None,
    )
    return dict(message.headers)


@pytest.fixture
async def scene(trio: Trio) -> tuple[Trio, Forger]:
    people = await cast(trio)
    forger = await Forger.of(trio.beta, people.bob)
    warm = await forger.post(trio.alpha, _create(forger, "warm-up (cavage)"))
    assert warm.status == 202
    await trio.net.settle()
    return trio, forger


def _create(forger: Forger, text: str) -> dict[str, Any]:
    return forger.create(forger.note(text, to=[AS_PUBLIC], cc=[forger.followers]))


async def _post(
    trio: Trio, forger: Forger, text: str, path: str = "/inbox", **signing: Any
) -> tuple[Sent, dict[str, Any]]:
    activity = _create(forger, text)
    body = json.dumps(activity).encode()
    headers = rfc9421_headers(forger, trio.alpha, path, body, **signing)
    return await raw_post(trio.alpha, path, headers, body), activity


async def _refused(trio: Trio, sent: Sent, status: int, before: int) -> None:
    assert sent.status == status, sent.body
    assert await inbox_count(trio.alpha) == before


@pytest.mark.parametrize("covered", [MASTODON_COVERAGE, FEDIFY_COVERAGE])
async def test_an_rfc9421_signed_create_is_accepted_and_applied(
    scene: tuple[Trio, Forger], covered: tuple[str, ...]
) -> None:
    trio, forger = scene
    for path in ("/inbox", "/users/alice/inbox"):
        sent, activity = await _post(trio, forger, f"RFC 9421 to {path}", path, covered=covered)
        assert sent.status == 202, sent.body
    await trio.net.settle()
    assert await copy_of(trio.alpha, activity["object"]["id"]) is not None


async def test_body_swapped_under_an_rfc9421_signature_is_401(
    scene: tuple[Trio, Forger],
) -> None:
    trio, forger = scene
    before = await inbox_count(trio.alpha)
    signed = json.dumps(_create(forger, "I owe you 10")).encode()
    forged = json.dumps(_create(forger, "I owe you 10000")).encode()
    headers = rfc9421_headers(forger, trio.alpha, "/inbox", signed)
    await _refused(trio, await raw_post(trio.alpha, "/inbox", headers, forged), 401, before)


@pytest.mark.parametrize(
    "covered",
    [
        ("@method", "@target-uri"),  # no content-digest on a POST
        ("@target-uri", "content-digest"),  # no @method
        ("@method", "content-digest"),  # no target at all
        ("@method", "@authority", "content-digest"),  # no path
        ("@method", "@path", "content-digest"),  # no authority
    ],
)
async def test_rfc9421_coverage_rules(scene: tuple[Trio, Forger], covered: tuple[str, ...]) -> None:
    trio, forger = scene
    before = await inbox_count(trio.alpha)
    sent, _ = await _post(trio, forger, "thin coverage", covered=covered)
    await _refused(trio, sent, 401, before)


async def test_authority_and_path_are_an_accepted_target(scene: tuple[Trio, Forger]) -> None:
    trio, forger = scene
    covered = ("@method", "@authority", "@path", "content-digest")
    sent, _ = await _post(trio, forger, "authority and path", covered=covered)
    assert sent.status == 202, sent.body


async def test_rfc9421_time_rules(scene: tuple[Trio, Forger]) -> None:
    trio, forger = scene
    before = await inbox_count(trio.alpha)
    for offset in (-2 * 3600, 2 * 3600):  # created outside the window, either way
        sent, _ = await _post(trio, forger, "stale", created_offset=offset)
        await _refused(trio, sent, 401, before)
    # expired ten minutes ago: expires is honoured, with five minutes for clock skew only
    sent, _ = await _post(trio, forger, "expired", created_offset=-1200, expires_in=600)
    await _refused(trio, sent, 401, before)
    # expiring before it was made
    sent, _ = await _post(trio, forger, "backwards", expires_in=-60)
    await _refused(trio, sent, 401, before)
    # expired a minute ago: within the skew
    sent, _ = await _post(trio, forger, "just expired", created_offset=-120, expires_in=60)
    assert sent.status == 202, sent.body


async def test_a_signature_for_another_server_is_401(scene: tuple[Trio, Forger]) -> None:
    trio, forger = scene
    before = await inbox_count(trio.alpha)
    sent, _ = await _post(trio, forger, "meant for evil", url="https://evil.example/inbox")
    await _refused(trio, sent, 401, before)


async def test_an_algorithm_other_than_rsa_v1_5_sha256_is_401(
    scene: tuple[Trio, Forger],
) -> None:
    trio, forger = scene
    before = await inbox_count(trio.alpha)
    sent, _ = await _post(trio, forger, "pss", algorithm=algorithms.RSA_PSS_SHA512)
    await _refused(trio, sent, 401, before)


async def test_rfc9421_key_of_another_actor_is_refused(scene: tuple[Trio, Forger]) -> None:
    trio, forger = scene
    before = await inbox_count(trio.alpha)
    dave = await trio.beta.user("dave2")
    activity = _create(forger, "speaking for dave")
    activity["actor"] = dave.uri
    activity["object"]["attributedTo"] = dave.uri
    body = json.dumps(activity).encode()
    headers = rfc9421_headers(forger, trio.alpha, "/inbox", body)
    await _refused(trio, await raw_post(trio.alpha, "/inbox", headers, body), 401, before)


async def test_rfc9421_from_a_host_not_allowed_is_403(trio: Trio) -> None:
    people = await cast(trio)
    gus = await Forger.of(trio.gamma, people.gus)
    before = await inbox_count(trio.alpha)
    body = json.dumps(_create(gus, "from gamma")).encode()
    headers = rfc9421_headers(gus, trio.alpha, "/inbox", body)
    await _refused(trio, await raw_post(trio.alpha, "/inbox", headers, body), 403, before)


async def test_malformed_or_doubled_signature_fields_are_refused(
    scene: tuple[Trio, Forger],
) -> None:
    trio, forger = scene
    before = await inbox_count(trio.alpha)
    body = json.dumps(_create(forger, "mangled")).encode()
    good = rfc9421_headers(forger, trio.alpha, "/inbox", body)
    mangled = [
        {**good, "Signature-Input": good["Signature-Input"].replace("(", "[")},
        {**good, "Signature": good["Signature"].replace("sig1=", "sig2=")},
        {**good, "Signature-Input": good["Signature-Input"].replace(";created=", ";made=")},
        {**good, "Signature-Input": good["Signature-Input"].replace(";keyid=", ";kid=")},
        {
            **good,
            "Signature-Input": good["Signature-Input"].replace(
                '"content-digest"', '"content-digest";sf'
            ),
        },
    ]
    for headers in mangled:
        await _refused(trio, await raw_post(trio.alpha, "/inbox", headers, body), 401, before)
    doubled = [*good.items(), ("Signature-Input", good["Signature-Input"])]
    await _refused(trio, await raw_post(trio.alpha, "/inbox", doubled, body), 400, before)


async def test_an_rfc9421_signed_get_is_authenticated(scene: tuple[Trio, Forger]) -> None:
    trio, forger = scene
    alice_path = "/users/alice"
    unsigned, _, _ = await plain_get(trio.alpha, alice_path + "/outbox")
    assert unsigned == 401
    headers = rfc9421_headers(
        forger,
        trio.alpha,
        alice_path + "/outbox",
        None,
        method="GET",
        covered=("@method", "@target-uri"),
    )
    status, doc, _ = await plain_get(trio.alpha, alice_path + "/outbox", headers=headers)
    assert status == 200, doc
    assert doc.get("type") == "OrderedCollection"


async def test_an_rfc9421_signed_head_is_verified_as_head(scene: tuple[Trio, Forger]) -> None:
    trio, forger = scene
    path = "/users/alice/outbox"
    headers = rfc9421_headers(
        forger, trio.alpha, path, None, method="HEAD", covered=("@method", "@target-uri")
    )
    response = await trio.alpha.app.test_client().head(path, headers=headers)
    assert response.status_code == 200
