"""Every signature rule, through the real HTTP inbox routes of alpha (SECURITY.md §2.2).

Each test starts from a request that alpha would accept (see the first test) and breaks one
thing, so each fails if the check it names is removed. A refused request leaves nothing in
the inbound archive and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from federation.types import AS_PUBLIC
from tests.federation.conftest import Trio
from tests.federation.support import (
    ACTIVITY_JSON,
    Cast,
    Forger,
    Sent,
    cast,
    copy_of,
    digest_of,
    http_date,
    inbox_count,
    raw_post,
    sign_custom,
)
from tests.support.network import Instance


@pytest.fixture
async def scene(trio: Trio) -> tuple[Trio, Cast, Forger]:
    people = await cast(trio)
    forger = await Forger.of(trio.beta, people.bob)
    # alpha already knows bob (and his key): most refusals must not depend on a fetch
    first = await forger.post(trio.alpha, _create(forger, "warm-up"))
    assert first.status == 202
    await trio.net.settle()
    return trio, people, forger


def _create(forger: Forger, text: str) -> dict[str, Any]:
    return forger.create(forger.note(text, to=[AS_PUBLIC], cc=[forger.followers]))


async def _refused(alpha: Instance, sent: Sent, status: int, before: int) -> None:
    assert sent.status == status, sent.body
    assert await inbox_count(alpha) == before
    assert "error" in sent.body


async def test_a_well_signed_post_is_accepted(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, _, forger = scene
    for path in ("/inbox", "/users/alice/inbox"):
        activity = _create(forger, f"All good at {path}")
        sent = await forger.post(trio.alpha, activity, path=path)
        assert sent.status == 202
    await trio.net.settle()
    assert await copy_of(trio.alpha, activity["object"]["id"]) is not None


async def test_unsigned_post_is_401(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, _, forger = scene
    before = await inbox_count(trio.alpha)
    body = json.dumps(_create(forger, "unsigned")).encode()
    for path in ("/inbox", "/users/alice/inbox"):
        sent = await raw_post(trio.alpha, path, {"Content-Type": ACTIVITY_JSON}, body)
        await _refused(trio.alpha, sent, 401, before)


async def test_body_swapped_under_a_valid_signature_is_401(
    scene: tuple[Trio, Cast, Forger],
) -> None:
    trio, _, forger = scene
    before = await inbox_count(trio.alpha)
    signed = json.dumps(_create(forger, "I owe you 10")).encode()
    forged = json.dumps(_create(forger, "I owe you 10000")).encode()
    headers = forger.signed_headers(trio.alpha, "/inbox", signed)

    # The signed Digest no longer matches the body
    sent = await forger.post(trio.alpha, signed, headers=headers, body=forged)
    await _refused(trio.alpha, sent, 401, before)
    # and a Digest recomputed for the new body is not the one that was signed
    sent = await forger.post(
        trio.alpha, signed, headers={**headers, "Digest": digest_of(forged)}, body=forged
    )
    await _refused(trio.alpha, sent, 401, before)


async def _custom(
    trio: Trio,
    forger: Forger,
    covered: list[str],
    *,
    path: str = "/inbox",
    host: str = "alpha.example",
    date_offset: float = 0,
    algorithm: str = "rsa-sha256",
    key_id: str | None = None,
    activity: dict[str, Any] | None = None,
) -> Sent:
    """A POST signed over exactly *covered*, otherwise correct."""
    body = json.dumps(activity or _create(forger, "custom")).encode()
    values = {
        "(request-target)": f"post {path}",
        "host": host,
        "date": http_date(trio.alpha.ctx.clock.now() + date_offset),
        "digest": digest_of(body),
        "content-type": ACTIVITY_JSON,
    }
    signature = sign_custom(
        forger.private_key_pem,
        key_id=key_id or forger.key_id,
        covered=covered,
        values=values,
        algorithm=algorithm,
    )
    headers = {
        "Host": host,
        "Date": values["date"],
        "Digest": values["digest"],
        "Content-Type": ACTIVITY_JSON,
        "Signature": signature,
    }
    return await raw_post(trio.alpha, path, headers, body)


FULL = ["(request-target)", "host", "date", "digest"]


async def test_custom_signature_baseline_is_accepted(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, _, forger = scene
    assert (await _custom(trio, forger, FULL)).status == 202
    assert (await _custom(trio, forger, FULL, algorithm="hs2019")).status == 202


@pytest.mark.parametrize("missing", ["digest", "host", "(request-target)", "date"])
async def test_required_headers_must_be_signed(
    scene: tuple[Trio, Cast, Forger], missing: str
) -> None:
    trio, _, forger = scene
    before = await inbox_count(trio.alpha)
    covered = [h for h in FULL if h != missing]
    await _refused(trio.alpha, await _custom(trio, forger, covered), 401, before)


async def test_signature_for_another_path_is_401(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, _, forger = scene
    before = await inbox_count(trio.alpha)
    body = json.dumps(_create(forger, "elsewhere")).encode()
    headers = forger.signed_headers(trio.alpha, "/users/carol/inbox", body)
    sent = await forger.post(trio.alpha, body, headers=headers, path="/inbox")
    await _refused(trio.alpha, sent, 401, before)


@pytest.mark.parametrize("offset", [-2 * 3600, -66 * 60, 61 * 60, 2 * 3600])
async def test_date_outside_the_window_is_401(
    scene: tuple[Trio, Cast, Forger], offset: float
) -> None:
    trio, _, forger = scene
    before = await inbox_count(trio.alpha)
    await _refused(trio.alpha, await _custom(trio, forger, FULL, date_offset=offset), 401, before)
    # while a request from 10 minutes ago (slow queue, clock skew) is fine
    assert (await _custom(trio, forger, FULL, date_offset=-600)).status == 202


async def test_signature_made_for_another_host_is_401(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, _, forger = scene
    before = await inbox_count(trio.alpha)
    body = json.dumps(_create(forger, "meant for gamma")).encode()
    # Signed for gamma (a replay of a request captured there), sent to alpha as is
    headers = forger.signed_headers(trio.alpha, "/inbox", body, sign_for="https://gamma.example")
    assert headers["Host"] == "gamma.example"
    sent = await forger.post(trio.alpha, body, headers=headers)
    await _refused(trio.alpha, sent, 401, before)
    # and with alpha's Host header substituted
    sent = await forger.post(trio.alpha, body, headers={**headers, "Host": "alpha.example"})
    await _refused(trio.alpha, sent, 401, before)


async def test_key_of_another_actor_is_401(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, people, forger = scene
    alpha, beta = trio.alpha, trio.beta
    dave = await Forger.of(beta, people.dave)
    assert dave.private_key_pem != forger.private_key_pem
    before = await inbox_count(alpha)

    # bob signs with his own key but claims dave's key id, speaking as dave
    as_dave = dave.create(dave.note("I resign", to=[AS_PUBLIC]))
    sent = await forger.post(alpha, as_dave, key_id=dave.key_id)
    await _refused(alpha, sent, 401, before)
    # bob signs correctly as himself, but the activity's actor is dave
    sent = await forger.post(alpha, as_dave)
    await _refused(alpha, sent, 401, before)
    # bob's key id with dave's private key
    sent = await forger.post(alpha, _create(forger, "x"), private_key_pem=dave.private_key_pem)
    await _refused(alpha, sent, 401, before)
    await trio.net.settle()
    assert await copy_of(alpha, as_dave["object"]["id"]) is None


async def test_origins_must_match_the_signer(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, people, forger = scene
    alpha = trio.alpha
    before = await inbox_count(alpha)
    gus = people.gus.uri

    # actor on another host than the key
    other_actor = dict(_create(forger, "as gus"), actor=gus)
    await _refused(alpha, await forger.post(alpha, other_actor), 403, before)
    # the whole activity on another host (consistent in itself) than the signing key
    note = {**forger.note("as gus"), "id": f"{gus}/notes/1", "attributedTo": gus}
    elsewhere = {**forger.create(note), "id": "https://gamma.example/a/1", "actor": gus}
    await _refused(alpha, await forger.post(alpha, elsewhere), 403, before)
    # activity id on another host than the actor
    other_id = dict(_create(forger, "id elsewhere"), id="https://gamma.example/activities/9")
    await _refused(alpha, await forger.post(alpha, other_id), 403, before)
    # created object on another host
    note = forger.note("object elsewhere", to=[AS_PUBLIC], note_id="https://gamma.example/n/1")
    await _refused(alpha, await forger.post(alpha, forger.create(note)), 403, before)


async def test_algorithm_other_than_rsa_sha256_or_hs2019_is_401(
    scene: tuple[Trio, Cast, Forger],
) -> None:
    trio, _, forger = scene
    before = await inbox_count(trio.alpha)
    for algorithm in ("hmac-sha256", "rsa-sha1", "ed25519"):
        sent = await _custom(trio, forger, FULL, algorithm=algorithm)
        await _refused(trio.alpha, sent, 401, before)


async def test_non_allowed_host_is_403_before_any_key_fetch(trio: Trio) -> None:
    people = await cast(trio)
    alpha, gamma, net = trio.alpha, trio.gamma, trio.net
    gus = await Forger.of(gamma, people.gus)
    net.log.clear()

    sent = await gus.post(alpha, _create(gus, "hello from gamma"))

    assert sent.status == 403
    assert net.requests_to("gamma.example") == []
    assert await inbox_count(alpha) == 0


async def test_unknown_key_that_cannot_be_fetched_is_401(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, _, forger = scene
    before = await inbox_count(trio.alpha)
    activity = dict(_create(forger, "ghost"), actor="https://beta.example/users/nobody")
    sent = await forger.post(
        trio.alpha, activity, key_id="https://beta.example/users/nobody#main-key"
    )
    await _refused(trio.alpha, sent, 401, before)


async def test_framing_rules(scene: tuple[Trio, Cast, Forger]) -> None:
    trio, _, forger = scene
    alpha = trio.alpha
    before = await inbox_count(alpha)
    body = json.dumps(_create(forger, "framing")).encode()
    headers = forger.signed_headers(alpha, "/inbox", body)

    # Not JSON at all
    sent = await forger.post(alpha, body, headers={**headers, "Content-Type": "text/plain"})
    await _refused(alpha, sent, 415, before)
    # Two Signature headers (only the first would be looked at by a naive reader)
    pairs = [*headers.items(), ("Signature", headers["Signature"])]
    await _refused(alpha, await raw_post(alpha, "/inbox", pairs, body), 400, before)
    # Two Date headers
    pairs = [*headers.items(), ("Date", http_date(alpha.ctx.clock.now() - 7200))]
    await _refused(alpha, await raw_post(alpha, "/inbox", pairs, body), 400, before)
    # Over 256 KB
    huge = json.dumps(_create(forger, "x" * 300_000)).encode()
    sent = await forger.post(alpha, huge)
    await _refused(alpha, sent, 413, before)
    # Not JSON at all, correctly signed
    sent = await forger.post(alpha, b"<xml/>")
    await _refused(alpha, sent, 400, before)


async def test_an_origin_spelled_with_its_default_port_is_the_same_origin(
    scene: tuple[Trio, Cast, Forger],
) -> None:
    """https://beta.example:443/… is beta.example: the inbox lets it in, and applying it
    compares origins the same way (it once compared the raw host strings and dropped it)."""
    trio, _, forger = scene
    note = forger.note(
        "spelled with :443", to=[AS_PUBLIC], note_id="https://beta.example:443/notes/443"
    )
    assert (await forger.post(trio.alpha, forger.create(note))).status == 202
    await trio.alpha.ctx.federator.settle_once()
    stored = await trio.alpha.value(
        "SELECT count(*) FROM posts WHERE content_html LIKE '%spelled with :443%'"
    )
    assert stored == 1
