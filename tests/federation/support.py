"""Helpers for the in-process federation tests: people on each instance, reads that assert,
and a forger that sends hand-crafted, really signed requests (negative tests)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.datastructures import Headers

from federation.signatures import sign_request
from federation.types import AS_ACCEPT, AS_PUBLIC
from server.domain import Actor, FollowState, Post
from server.services import following, remote
from server.storage import follows, posts, users
from tests.federation.conftest import Trio
from tests.support.network import Instance, Network

ACTIVITY_JSON = "application/activity+json"
AS_CONTEXT = "https://www.w3.org/ns/activitystreams"


@dataclass
class Cast:
    """alice and carol on alpha, bob and dave on beta, gus on gamma."""

    alice: Actor
    carol: Actor
    bob: Actor
    dave: Actor
    gus: Actor


async def cast(trio: Trio) -> Cast:
    return Cast(
        alice=await trio.alpha.user("alice"),
        carol=await trio.alpha.user("carol"),
        bob=await trio.beta.user("bob"),
        dave=await trio.beta.user("dave"),
        gus=await trio.gamma.user("gus"),
    )


async def follow_across(net: Network, instance: Instance, follower: Actor, handle: str) -> Actor:
    """*follower* (local on *instance*) follows ``name@host``; the network settles."""
    target = await remote.find_person(instance.ctx, handle)
    await following.follow(instance.ctx, follower, target.id)
    await net.settle()
    return target


async def follow_state(
    instance: Instance, follower_id: int, followee_id: int
) -> FollowState | None:
    return await instance.ctx.db.read(follows.select_follow_state, follower_id, followee_id)


async def actor_by_uri(instance: Instance, uri: str) -> Actor | None:
    return await instance.ctx.db.read(users.select_actor_by_uri, uri)


async def copy_of(instance: Instance, uri: str) -> int | None:
    """The local id of the (possibly remote) post with this URI, deleted or not."""
    found = await instance.value("SELECT id FROM posts WHERE uri = ?", uri)
    return int(found) if isinstance(found, int) else None


async def visible(instance: Instance, post_id: int | None, viewer: Actor) -> Post | None:
    if post_id is None:
        return None
    return await instance.ctx.db.read(posts.select_post, post_id, viewer.id)


async def home_texts(instance: Instance, viewer: Actor) -> str:
    page = await instance.ctx.db.read(posts.select_home_feed, viewer.id, before=None, limit=100)
    return "\n".join(p.content_html for p in page.items)


async def profile_texts(instance: Instance, person: Actor, viewer: Actor) -> str:
    page = await instance.ctx.db.read(
        posts.select_profile_feed, person.id, viewer.id, before=None, limit=100
    )
    return "\n".join(p.content_html for p in page.items)


async def deliveries(instance: Instance, activity_type: str | None = None) -> list[dict[str, Any]]:
    """Delivery rows with their activity's type and id, oldest first."""
    rows = await instance.rows(
        "SELECT d.id, d.inbox_url, d.host, d.state, d.attempts, d.last_status, d.last_error,"
        " d.next_attempt_at, o.activity_type, o.activity_id, o.body FROM deliveries d"
        " JOIN outbox_activities o ON o.id = d.outbox_id ORDER BY d.id"
    )
    found = [dict(r) for r in rows]
    if activity_type is not None:
        found = [r for r in found if r["activity_type"] == activity_type]
    return found


async def outbox_count(instance: Instance) -> int:
    value = await instance.value("SELECT count(*) FROM outbox_activities")
    assert isinstance(value, int)
    return value


async def inbox_count(instance: Instance) -> int:
    value = await instance.value("SELECT count(*) FROM inbox_activities")
    assert isinstance(value, int)
    return value


def note_uri_of(post: Post) -> str:
    return post.uri


# --- forging -------------------------------------------------------------------------------


@dataclass
class Sent:
    status: int
    body: dict[str, Any]


class Forger:
    """Sends hand-made activities to an instance's inbox, signed with a key we control.

    By default it speaks as a real person of *origin* with that person's own private key,
    so a well-formed request is accepted; tests then break one thing at a time.
    """

    def __init__(self, origin: Instance, person: Actor, private_key_pem: str) -> None:
        self.origin = origin
        self.person = person
        self.private_key_pem = private_key_pem

    @classmethod
    async def of(cls, origin: Instance, person: Actor) -> Forger:
        pem = await origin.ctx.db.read(users.select_private_key, person.id)
        assert pem is not None
        return cls(origin, person, pem)

    @property
    def actor(self) -> str:
        return self.person.uri

    @property
    def key_id(self) -> str:
        return f"{self.person.uri}#main-key"

    @property
    def followers(self) -> str:
        return f"{self.person.uri}/followers"

    def new_id(self, kind: str = "forged") -> str:
        return f"{self.origin.base}/activities/{kind}/{secrets.token_hex(8)}"

    def note(
        self,
        content: str,
        *,
        to: Sequence[str] = (),
        cc: Sequence[str] = (),
        note_id: str | None = None,
        mentions: Sequence[str] = (),
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "id": note_id or f"{self.person.uri}/notes/{secrets.token_hex(6)}",
            "type": "Note",
            "attributedTo": self.actor,
            "content": content,
            "published": "2026-09-21T10:00:00Z",
            "to": list(to),
            "cc": list(cc),
            "tag": [{"type": "Mention", "href": m, "name": m} for m in mentions],
            **extra,
        }

    def activity(self, kind: str, obj: Any, **extra: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "@context": AS_CONTEXT,
            "id": self.new_id(kind.lower()),
            "type": kind,
            "actor": self.actor,
            "object": obj,
        }
        if isinstance(obj, Mapping) and kind in ("Create", "Update"):
            doc["to"] = obj.get("to", [])
            doc["cc"] = obj.get("cc", [])
        doc.update(extra)
        return doc

    def create(self, note: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        return self.activity("Create", dict(note), **extra)

    def public_note(self, content: str, **extra: Any) -> dict[str, Any]:
        return self.note(content, to=[AS_PUBLIC], cc=[self.followers], **extra)

    def signed_headers(
        self,
        target: Instance,
        path: str,
        body: bytes,
        *,
        key_id: str | None = None,
        private_key_pem: str | None = None,
        now: float | None = None,
        sign_for: str | None = None,
    ) -> dict[str, str]:
        """Headers of a correctly signed POST of *body* to *path* on *target*."""
        return sign_request(
            "POST",
            (sign_for or target.base) + path,
            key_id=key_id or self.key_id,
            private_key_pem=private_key_pem or self.private_key_pem,
            body=body,
            now=target.ctx.clock.now() if now is None else now,
            extra_headers={"Content-Type": ACTIVITY_JSON},
        )

    async def post(
        self,
        target: Instance,
        activity: Mapping[str, Any] | bytes,
        *,
        path: str = "/inbox",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        **signing: Any,
    ) -> Sent:
        """POST *activity* (signed now, unless *headers* are given) to *target*'s inbox.

        *body* replaces what is sent after signing (to tamper with it)."""
        signed_body = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
        sent_headers = dict(
            headers
            if headers is not None
            else self.signed_headers(target, path, signed_body, **signing)
        )
        return await raw_post(target, path, sent_headers, signed_body if body is None else body)


async def raw_post(
    target: Instance,
    path: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
    body: bytes,
) -> Sent:
    """POST as given; a sequence of pairs may repeat a header."""
    client = target.app.test_client()
    sent = Headers(list(headers) if isinstance(headers, Sequence) else list(headers.items()))
    response = await client.post(path, headers=sent, data=body)
    text = await response.get_data(as_text=True)
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        parsed = {"raw": text}
    return Sent(response.status_code, parsed if isinstance(parsed, dict) else {"raw": parsed})


def sign_custom(
    private_key_pem: str,
    *,
    key_id: str,
    covered: Sequence[str],
    values: Mapping[str, str],
    algorithm: str = "rsa-sha256",
) -> str:
    """A Signature header over exactly *covered* (pseudo-headers take their value from
    *values* too, e.g. ``"(request-target)": "post /inbox"``)."""
    lines = [f"{name}: {values[name]}" for name in covered]
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign("\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256())
    return (
        f'keyId="{key_id}",algorithm="{algorithm}",headers="{" ".join(covered)}",'
        f'signature="{base64.b64encode(signature).decode()}"'
    )


def digest_of(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def http_date(now: float) -> str:
    return formatdate(now, usegmt=True)


# --- signed GETs -----------------------------------------------------------------------------


async def signed_get(
    target: Instance,
    path: str,
    *,
    key_id: str,
    private_key_pem: str,
    accept: str = AS_ACCEPT,
) -> tuple[int, dict[str, Any], Headers]:
    headers = sign_request(
        "GET",
        target.base + path,
        key_id=key_id,
        private_key_pem=private_key_pem,
        now=target.ctx.clock.now(),
        extra_headers={"Accept": accept},
    )
    return await plain_get(target, path, headers=headers)


async def plain_get(
    target: Instance, path: str, *, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, Any], Headers]:
    client = target.app.test_client()
    response = await client.get(path, headers=dict(headers or {"Accept": AS_ACCEPT}))
    text = await response.get_data(as_text=True)
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        parsed = {"raw": text}
    doc: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    return response.status_code, doc, response.headers


async def instance_key(instance: Instance) -> tuple[str, str]:
    """(key id, private PEM) of *instance*'s Application actor."""
    key = await instance.ctx.federator.instance_key()
    return key.key_id, key.private_key_pem


async def person_key(instance: Instance, person: Actor) -> tuple[str, str]:
    pem = await instance.ctx.db.read(users.select_private_key, person.id)
    assert pem is not None
    return f"{person.uri}#main-key", pem
